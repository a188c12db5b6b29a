"""Regression tests from the branch-by-branch review against reference/kernel-kvm.md.

Each test names the section it checks and would have failed before the matching fix."""

from __future__ import annotations

import importlib
import re

import pytest

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.drivers import mmap
from memtypes.linux.kvm import (
    KVM_CAP_ARM_MTE, KVM_CAP_GUEST_MEMFD_FLAGS, Fault, Slot, Vm, check_extension, enable_cap, kernel,
    kvm_handle_guest_abort, user_mem_abort,
)
from memtypes.linux.kvm.explain import explain
from memtypes.linux.kvm.kvm_host import KVM_MEM_READONLY

V8 = Features()
GRACE = Features(fwb=True, dic=True)
MTEH = Features(fwb=True, dic=True, mte=True)


def R(v):
    return kernel(v).rules


def rules_of(reasons):
    return [r.rule for r in reasons]


# --- section 1 / 4 / TV29: 7.0 lies inside the 6.18-7.0 era -----------------------------------------
@pytest.mark.parametrize("version,refused", [("6.18", False), ("6.19", False), ("7.0", True), ("7.1", True)])
def test_pkvm_refuses_mte_for_every_guest_from_7_0(version, refused):
    """Section 1 (v7.0) and section 4: "from 7.0 'Do not allow KVM_CAP_ARM_MTE for any guest in
    pKVM'"; TV29 column G.  7.0 is in the 6.18-7.0 era, so the switch is an intra-era refinement."""
    rules = R(version)
    assert rules.pkvm_no_mte is refused and rules.ls64_dabt is refused
    vm, err, why = enable_cap(rules, MTEH, Vm(pkvm=True), KVM_CAP_ARM_MTE)
    if refused:
        assert (err, vm.mte, why.rule) == ("-EINVAL", False, "kvm/enable_cap/arm-mte-pkvm")
    else:
        assert err is None and vm.mte
    # a non-pKVM host is unaffected in every version
    assert enable_cap(rules, MTEH, Vm(), KVM_CAP_ARM_MTE)[1] is None
    # a protected VM was always refused
    assert enable_cap(rules, MTEH, Vm(protected=True), KVM_CAP_ARM_MTE)[1] == "-EINVAL"


def test_7_0_reason_only_from_7_0():
    assert "era/7.0/fwb-for-all" not in rules_of(R("6.18").changed_by)
    assert "era/7.0/fwb-for-all" in rules_of(R("7.0").changed_by)
    assert "era/7.0/fwb-for-all" in rules_of(R("7.1").changed_by)


# --- section 11: UNVERIFIED items the model touches are visible in explain ---------------------------
@pytest.mark.parametrize("version,flagged", [("5.15", True), ("6.1", False), ("6.5", True), ("6.6", False),
                                             ("6.8", False), ("6.12", False), ("5.10", False)])
def test_pfn_is_map_memory_version_unverified(version, flagged):
    """Section 1 (~v5.14) and 11: the version where kvm_is_device_pfn() became !pfn_is_map_memory is
    UNVERIFIED; it decides pmem (pfn_valid but not memblock memory) before 6.6 (S-6.6 has it); 6.1 was read in 6.1.192."""
    e = explain(kernel(version), V8, "pmem")
    hit = [r for r in e.reasons if r.rule == "kvm/user_mem_abort/device-map-memory-version"]
    assert bool(hit) is flagged and all(r.unverified for r in hit)
    # RAM, where both tests agree, carries no such note
    assert not any(r.rule == "kvm/user_mem_abort/device-map-memory-version"
                   for r in explain(kernel(version), V8, "anon").reasons)


def test_w_on_read_fault_is_an_unverified_input():
    """Section 11: "W on read faults depends on the GUP 'writable' result; the model should treat it
    as an input"."""
    e = explain(kernel("6.12"), GRACE, "anon")
    r = [x for x in e.reasons if x.rule == "kvm/user_mem_abort/w-gup-writable"]
    assert e.fault.w and r and r[0].unverified
    e = explain(kernel("6.12"), GRACE, "anon", fault="write")
    assert e.fault.w and not any(x.rule == "kvm/user_mem_abort/w-gup-writable" for x in e.reasons)


def test_nvgrace_resmem_mig_bug_unverified():
    """Section 6 / 11: resmem exists only with has_mig_hw_bug (UNVERIFIED for newer GPUs)."""
    e = explain(kernel("6.12"), GRACE, "nvgrace-resmem")
    assert any(r.rule == "vfio/nvgrace_gpu/has_mig_hw_bug" and r.unverified for r in e.reasons)


def test_gmem_abort_assumptions_unverified():
    """Section 2.3 / 11: the 6.18 gmem_abort body and its error values are partly unverified."""
    rules = R("6.18")
    gslot = Slot(gmem=True, gmem_only=True)
    b = mmap("guest-memfd", any_uc=True)
    f = kvm_handle_guest_abort(rules, GRACE, Vm(), gslot, b, Fault(hwpoison=True))
    assert f.where == "gmem_abort" and all(r.unverified for r in f.reasons[1:])
    f = kvm_handle_guest_abort(rules, GRACE, Vm(), gslot, b, Fault(perm=True))
    assert (f.errno, f.where) == ("-EFAULT", "gmem_abort") and f.reasons[-1].unverified


def test_guest_memfd_flags_cap_value():
    """Section 7: KVM_CAP_GUEST_MEMFD_FLAGS reports the flags (MMAP | INIT_SHARED), not a boolean."""
    val, err, why = check_extension(R("6.18"), GRACE, KVM_CAP_GUEST_MEMFD_FLAGS)
    assert (val, err) == (0b11, None) and why.unverified
    assert check_extension(R("6.17"), GRACE, KVM_CAP_GUEST_MEMFD_FLAGS)[:2] == (0, None)


# --- section 2.4 / kvm_handle_guest_abort: write to a read-only slot --------------------------------
@pytest.mark.parametrize("perm", [False, True])
def test_readonly_write_goes_to_io_mem_abort_even_on_perm_fault(perm):
    """kvm_handle_guest_abort(): `write_fault && !writable` -> io_mem_abort() before user_mem_abort(),
    for translation and permission faults alike (S-5.8, S-6.17; seen also in S-NV)."""
    f = kvm_handle_guest_abort(R("6.12"), GRACE, Vm(), Slot(flags=KVM_MEM_READONLY), mmap("anon", any_uc=True),
                               Fault(write=True, perm=perm))
    assert (f.result, f.where) == ("skipped", "io_mem_abort")


# --- section 2.2 / 5.4: <=5.13 CMOs are inline in user_mem_abort ------------------------------------
def test_le_5_13_cmo_reasons_are_inline():
    """Section 1 (<=5.13: "CMOs done inside user_mem_abort()"; 5.14 moved them into the walker)."""
    f = user_mem_abort(R("5.10"), V8, Vm(), Slot(), mmap("anon", any_uc=False).vma, Fault(exec=True))
    rs = rules_of(f.reasons)
    assert (f.dclean, f.iinval) == (True, True)
    assert "kvm/user_mem_abort/clean_dcache" in rs and "kvm/user_mem_abort/invalidate_icache" in rs
    assert "pgtable/cmo/dclean" not in rs and "pgtable/cmo/iinval" not in rs
    f = user_mem_abort(R("5.15"), V8, Vm(), Slot(), mmap("anon", any_uc=False).vma, Fault(exec=True))
    rs = rules_of(f.reasons)
    assert "pgtable/cmo/dclean" in rs and "kvm/user_mem_abort/clean_dcache" not in rs


# --- section 2.2 item 3 / TV5 G: 7.1 hoists the check, sanitises in kvm_s2_fault_map ----------------
def test_7_1_mte_check_hoisted_sanitise_at_map():
    f = user_mem_abort(R("7.1"), MTEH, Vm(mte=True), Slot(), mmap("anon", any_uc=True).vma, Fault())
    rs = rules_of(f.reasons)
    assert f.mte_sanitised
    assert rs.index("kvm/kvm_s2_fault_compute_prot/mte") < rs.index("kvm/kvm_s2_fault_map/sanitise_mte_tags")
    assert "kvm/sanitise_mte_tags" not in rs
    # a race after the hoisted check: retried, nothing sanitised
    f = user_mem_abort(R("7.1"), MTEH, Vm(mte=True), Slot(), mmap("anon", any_uc=True).vma, Fault(race=True))
    assert f.result == "retry" and not f.mte_sanitised


# --- explain: nvgrace-gpu is a 6.9 driver, whatever variant turns NC on ------------------------------
def test_nvgrace_absent_before_6_9_even_with_nc_variant():
    """Section 1 (v6.9: nvgrace-gpu driver added) and TV15 columns A-C."""
    e = explain(kernel("5.15+normal-nc-for-all-io"), GRACE, "nvgrace-resmem")
    assert e.memslot is None and e.memslot_na == "driver not in this kernel"
    # NVIDIA's 6.8-based kernels carry the driver (section 2.5)
    assert explain(kernel("6.6+nvidia-vma-memtype"), GRACE, "nvgrace-usemem").fault.s2 == "NORMAL"


# --- every Reason cites a kernel file/function and a version or commit ------------------------------
_MODS = ["memtypes.linux.mm", "memtypes.linux.drivers"] + [
    "memtypes.linux.kvm." + m for m in (
        "arm", "eras", "explain", "gmem_abort", "guest", "handle_guest_abort", "kvm_host", "pgtable",
        "phys_addr_ioremap", "pkvm_mem_abort", "prepare_memory_region", "user_mem_abort", "variants")]
_FILE = re.compile(r"\.(c|h)\b|/|variant |KVM_CAP")
_VER = re.compile(r"\bv?\d+\.\d+(\.y)?\b|\b[0-9a-f]{12}\b|\bS-(5\.8|6\.6|6\.17|7\.0|7\.1|pgt|mmuh|guest|vfio|nvg|NV)\b"
                  r"|\bM-[a-z0-9]+|updates for|\b20\d\d\b|variant ")
_STRIP = re.compile(r"sections? [\d., and]+|TV\d+")


def _all_reasons():
    for m in _MODS:
        for name, v in vars(importlib.import_module(m)).items():
            vals = v.values() if isinstance(v, dict) else v if isinstance(v, (tuple, list)) else (v,)
            for x in vals:
                if isinstance(x, Reason):
                    yield f"{m}.{name}", x
    from memtypes.linux.kvm.variants import VARIANTS
    for n, var in VARIANTS.items():
        if var.why:
            yield f"variant {n}", var.why


def test_every_reason_cites_source_and_version():
    bad = []
    for where, r in _all_reasons():
        src = _STRIP.sub("", r.source)
        need_file = not r.rule.startswith(("era/", "variant/"))
        if (need_file and not _FILE.search(r.source)) or not _VER.search(src):
            bad.append(f"{where}: {r.source}")
    assert not bad, "\n".join(bad)


def test_mte_memslot_check_only_keeps_5_14_online_page_test():
    """Section 4: in 5.14-6.1 sanitise_mte_tags() itself returned -EFAULT when pfn_to_online_page()
    failed; the variant drops only the fault-time VMA re-check, not that page test."""
    from memtypes.linux import mm
    offline = mm.Phys("offline-ram", True, True, False, False, False, True, True)
    vma = mm.Vma("anon", mm.VM_MTE_ALLOWED, mm.NORMAL, offline)
    for spec, expect in (("5.15", "-EFAULT"), ("5.15+mte-memslot-check-only", "-EFAULT")):
        f = user_mem_abort(R(spec), MTEH, Vm(mte=True), Slot(), vma, Fault())
        assert f.errno == expect, spec
    # a VM_SHARED VMA is what the variant no longer re-checks
    shared = mm.Vma("shmem", mm.VM_SHARED | mm.VM_MTE_ALLOWED, mm.NORMAL, mm.RAM_TAGGED)
    assert user_mem_abort(R("5.15"), MTEH, Vm(mte=True), Slot(), shared, Fault()).errno == "-EFAULT"
    assert user_mem_abort(R("5.15+mte-memslot-check-only"), MTEH, Vm(mte=True), Slot(), shared,
                          Fault()).mte_sanitised


@pytest.mark.parametrize("version,eperm", [("5.13", False), ("5.15", True), ("6.1", True), ("6.18", True),
                                           ("7.0", True), ("7.1", True)])
def test_tv34_gicv_eperm_under_pkvm(version, eperm):
    """TV34 column G: "D (-EPERM under pKVM)"; the -EPERM is in kvm_phys_addr_ioremap() of 6.1.192,
    6.12.118, 7.2.13 and 7.3.4 too, so it is not a 7.1 change (<= 5.13 not read: no -EPERM modelled);
    without pKVM the GICV frame stays DEVICE everywhere."""
    b = mmap("gicv2-gicv", any_uc=True)
    f = kvm_handle_guest_abort(R(version), GRACE, Vm(pkvm=True), Slot(), b, Fault())
    if eperm:
        assert (f.result, f.errno, f.where) == ("error", "-EPERM", "kvm_phys_addr_ioremap")
        assert f.reasons[0].unverified is (version == "5.15")      # 6.1 read in 6.1.192; 5.14-6.0 not
    else:
        assert f.s2 == "DEVICE"
    assert kvm_handle_guest_abort(R(version), GRACE, Vm(), Slot(), b, Fault()).s2 == "DEVICE"
