"""Each memslot rule (P0-P7), the error-order rules of section 2.2, the logging/THP W rule, CMOs."""

from __future__ import annotations

import pytest

from memtypes.arch.features import Features
from memtypes.errors import InputError
from memtypes.linux.drivers import mmap
from memtypes.linux.kvm import Fault, Slot, Vm, kernel, kvm_arch_prepare_memory_region, user_mem_abort
from memtypes.linux.kvm.explain import explain
from memtypes.linux.kvm.kvm_host import KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY

V8 = Features()
GRACE = Features(fwb=True, dic=True)
MTEH = Features(fwb=True, dic=True, mte=True)


def R(v):
    return kernel(v).rules


def vma(kind, v="6.17"):
    return mmap(kind, any_uc=R(v).normal_nc).vma


def slot_check(v, host=V8, vm=Vm(), slot=Slot(), vmas=(), change="create"):
    return kvm_arch_prepare_memory_region(R(v), host, vm, change, slot, vmas)


@pytest.mark.parametrize("v,end_ok", [("5.10", False), ("6.6", True)])
def test_p1_ipa_limit(v, end_ok):
    limit = 1 << (40 - 12)
    r = slot_check(v, slot=Slot(base_gfn=limit - 512, npages=512))
    assert r.ok is end_ok            # '>=' (v5.8 text) vs '>' (v6.x)
    r = slot_check(v, slot=Slot(base_gfn=limit, npages=512))
    assert (r.errno, r.rule) == ("-EFAULT", "P1")
    assert any(x.unverified for x in r.reasons)


def test_p2_only_for_pfnmap():
    s = Slot(flags=KVM_MEM_LOG_DIRTY_PAGES)
    assert slot_check("6.12", slot=s, vmas=(vma("anon"),)).ok
    assert slot_check("6.12", slot=s, vmas=(vma("devmem-ram"),)).rule == "P2"


def test_p3_order_before_pfnmap_block_and_first_failing_vma():
    # MTE check runs before P2 in the same VMA; the walk stops at the first failure
    s = Slot(flags=KVM_MEM_LOG_DIRTY_PAGES)
    r = slot_check("6.6", MTEH, Vm(mte=True), s, (vma("anon"), None, vma("vfio-pci-bar")))
    assert r.rule == "P3'"
    r = slot_check("6.6", MTEH, Vm(), s, (vma("anon"), None, vma("vfio-pci-bar")))
    assert r.rule == "P2"
    assert slot_check("6.6", MTEH, Vm(mte=True), Slot(), (None,)).ok   # holes skipped


def test_p3_shared_5_14_vs_p3prime():
    assert slot_check("5.15", MTEH, Vm(mte=True), vmas=(vma("shmem"),)).rule == "P3"
    assert slot_check("5.15", MTEH, Vm(mte=True), vmas=(vma("file"),)).ok
    assert slot_check("6.2", MTEH, Vm(mte=True), vmas=(vma("file"),)).rule == "P3'"


@pytest.mark.parametrize("v", ["6.17", "6.18", "7.1"])
def test_p4_cacheable_pfnmap(v):
    assert slot_check(v, V8, vmas=(vma("devmem-ram"),)).rule == "P4"      # only the VMA is tested
    assert slot_check(v, GRACE, vmas=(vma("devmem-ram"),)).ok
    assert slot_check(v, V8, vmas=(vma("vfio-pci-bar"),)).ok              # non-cacheable VMA
    assert slot_check(v, V8, vmas=(vma("mixedmap-cacheable"),)).ok        # MIXEDMAP: fault time
    f = user_mem_abort(R(v), V8, Vm(), Slot(), vma("mixedmap-cacheable"), Fault())
    assert (f.errno, f.where) == ("-EFAULT", "user_mem_abort")


def test_p4_absent_before_6_17():
    assert slot_check("6.12", V8, vmas=(vma("nvgrace-usemem", "6.12"),)).ok


def test_p5_before_vma_walk():
    s = Slot(gmem=True, gmem_only=False)
    r = slot_check("6.18", MTEH, Vm(mte=True), s, (vma("file"),))
    assert r.rule == "P5"


def test_p6_p7_pkvm():
    pvm = Vm(protected=True, hyp_vm_exists=True)
    assert slot_check("7.1", vm=pvm, change="delete").rule == "P6"
    assert slot_check("7.1", vm=pvm, change="move").rule == "P6"
    assert slot_check("7.1", vm=Vm(protected=True), change="delete").ok
    assert slot_check("6.18", vm=pvm, change="delete").ok
    for fl in (KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY):
        r = slot_check("7.1", vm=Vm(protected=True), slot=Slot(flags=fl), vmas=(vma("anon"),))
        assert (r.errno, r.rule) == ("-EPERM", "P7")
    assert slot_check("7.1", vm=Vm(), slot=Slot(flags=KVM_MEM_READONLY)).ok


def test_delete_returns_early():
    assert slot_check("6.6", MTEH, Vm(mte=True), vmas=(vma("vfio-pci-bar"),), change="delete").ok


def test_p0_premap_readonly_and_devmem():
    r = slot_check("5.10", slot=Slot(flags=KVM_MEM_READONLY), vmas=(vma("devmem-ram", "5.10"),))
    assert r.ok and r.premapped.s2 == "DEVICE" and not r.premapped.w
    assert slot_check("5.15", vmas=(vma("devmem-ram", "5.15"),)).premapped is None


# --- error order (section 2.2) ------------------------------------------------------------------------
@pytest.mark.parametrize("v,leak", [("6.17", True), ("6.17.2", False), ("6.18", False)])
def test_cacheable_pfnmap_efault_before_exec(v, leak):
    f = user_mem_abort(R(v), V8, Vm(), Slot(), vma("mixedmap-cacheable"), Fault(exec=True))
    assert (f.result, f.errno) == ("error", "-EFAULT")
    assert any(r.rule == "kvm/user_mem_abort/page-leak" for r in f.reasons) is leak


@pytest.mark.parametrize("v", ["5.15", "6.6", "6.12", "6.17", "7.1"])
def test_enoexec_before_mte_and_lock(v):
    f = user_mem_abort(R(v), MTEH, Vm(mte=True), Slot(), vma("vfio-pci-bar", v), Fault(exec=True, race=True))
    assert f.result == "pabt"


@pytest.mark.parametrize("v,expect", [("6.6", "retry"), ("6.18", "retry"), ("7.1", "error")])
def test_mte_efault_after_lock_until_7_0(v, expect):
    f = user_mem_abort(R(v), MTEH, Vm(mte=True), Slot(), vma("file"), Fault(race=True))
    assert f.result == expect
    f = user_mem_abort(R(v), MTEH, Vm(mte=True), Slot(), vma("file"), Fault())
    assert (f.result, f.errno) == ("error", "-EFAULT")


def test_mte_fault_recheck_after_remap():
    """The VMM mmaps a disallowed VMA over a slot after creating it: -EFAULT at fault time."""
    e = explain(kernel("6.12"), MTEH, "anon", vm_mte=True, remap="file")
    assert e.memslot.ok and (e.fault.errno, e.fault.where) == ("-EFAULT", "user_mem_abort")
    e = explain(kernel("5.15"), MTEH, "anon", vm_mte=True, remap="shmem")
    assert e.fault.errno == "-EFAULT"
    e = explain(kernel("5.15"), MTEH, "anon", vm_mte=True, remap="file")
    assert e.fault.mte_sanitised


def test_mte_online_page_5_14():
    f = user_mem_abort(R("5.15"), MTEH, Vm(mte=True), Slot(), vma("pmem", "5.15"), Fault())
    # pmem is not MapMem: device path in 5.14-6.16, no MTE branch
    assert f.s2 == "DEVICE"
    f = user_mem_abort(R("6.17"), MTEH, Vm(mte=True), Slot(), vma("pmem"), Fault())
    assert f.errno == "-EFAULT"


def test_hwpoison_sigbus():
    f = user_mem_abort(R("6.12"), V8, Vm(), Slot(), vma("anon"), Fault(hwpoison=True))
    assert f.result == "sigbus"


# --- W under logging, THP ----------------------------------------------------------------------------
@pytest.mark.parametrize("v,w", [("6.17", False), ("6.18", False), ("7.1", True)])
def test_w_rule_logging_cacheable_mixedmap(v, w):
    s = Slot(flags=KVM_MEM_LOG_DIRTY_PAGES)
    f = user_mem_abort(R(v), GRACE, Vm(), s, vma("mixedmap-cacheable"), Fault())
    assert f.s2 == "NORMAL" and f.w is w and f.size == "PAGE"


def test_force_nc_keeps_w_under_logging_and_no_thp():
    s = Slot(flags=KVM_MEM_LOG_DIRTY_PAGES)
    f = user_mem_abort(R("6.12"), GRACE, Vm(), s, vma("mixedmap-uncached", "6.12"), Fault())
    assert f.s2 == "NC" and f.w and f.size == "PAGE"


def test_readonly_slot_not_writable():
    f = user_mem_abort(R("6.12"), GRACE, Vm(), Slot(flags=KVM_MEM_READONLY), vma("anon"), Fault(write=True))
    assert not f.w


def test_thp_only_without_force_pte():
    assert user_mem_abort(R("6.12"), V8, Vm(), Slot(), vma("anon"), Fault()).size == "PMD"
    assert user_mem_abort(R("6.12"), V8, Vm(), Slot(), vma("file"), Fault()).size == "PAGE"
    assert user_mem_abort(R("5.10"), V8, Vm(), Slot(), vma("vfio-pci-bar", "5.10"), Fault()).size == "PAGE"


# --- CMO (section 5.4) -------------------------------------------------------------------------------
@pytest.mark.parametrize("host,fault,dclean,iinval", [
    (V8, Fault(), True, False), (V8, Fault(exec=True), True, True),
    (Features(fwb=True), Fault(exec=True), False, True), (Features(dic=True), Fault(), True, False),
    (GRACE, Fault(exec=True), False, False)])
def test_cmo_normal(host, fault, dclean, iinval):
    f = user_mem_abort(R("6.12"), host, Vm(), Slot(), vma("anon"), fault)
    assert (f.dclean, f.iinval) == (dclean, iinval)


def test_cmo_none_for_nc_device_and_perm_relax():
    f = user_mem_abort(R("6.12"), V8, Vm(), Slot(), vma("vfio-pci-bar", "6.12"), Fault())
    assert (f.dclean, f.iinval) == (False, False)
    f = user_mem_abort(R("6.12"), V8, Vm(), Slot(), vma("anon"), Fault(perm=True, exec=True))
    assert (f.dclean, f.iinval) == (False, True)


# --- kernel lookup -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,era", [("5.0", "5.13"), ("5.13", "5.13"), ("5.14", "5.14"), ("6.1", "5.14"),
                                      ("6.8", "6.2"), ("6.9", "6.9"), ("6.16", "6.9"), ("6.17.3", "6.17"),
                                      ("7.0", "6.18"), ("7.1", "7.1"),
                                      ("7.2", "7.2"), ("7.3", "7.2"), ("v7.3-rc7", "7.2"), ("6.12.118", "6.9")])
def test_era_lookup(spec, era):
    assert kernel(spec).era == era


@pytest.mark.parametrize("spec", ["4.19", "6.12.x", "6.12.-1", "six", "6.12+nope", "5.10+cpfn-memslot-flag"])
def test_bad_kernel(spec):
    with pytest.raises(InputError):
        kernel(spec)


def test_readonly_write_is_mmio_exit():
    e = explain(kernel("6.12"), GRACE, "anon", slot_flags="readonly", fault="write")
    assert (e.fault.result, e.fault.where) == ("skipped", "io_mem_abort")
    e = explain(kernel("6.12"), GRACE, "anon", slot_flags="readonly")
    assert e.fault.result == "map" and not e.fault.w


def test_gicv_exec_is_pabt():
    e = explain(kernel("6.12"), GRACE, "gicv2-gicv", fault="exec")
    assert e.fault.result == "pabt"
