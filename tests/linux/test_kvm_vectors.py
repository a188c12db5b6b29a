"""Every test vector of reference/kernel-kvm.md section 10, over the columns A-G."""

from __future__ import annotations

import pytest

from memtypes.arch.features import Features
from memtypes.linux.kvm import (
    KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, KVM_CAP_ARM_MTE, Fault, Slot, Vm, check_extension, enable_cap,
    kernel, kvm_handle_guest_abort, mte_copy_tags,
)
from memtypes.linux.drivers import mmap
from memtypes.linux.kvm.explain import explain

COLS = {"A": "5.10", "B": "5.15", "C": "6.6", "D": "6.12", "E": "6.17", "F": "6.18", "G": "7.1"}
ALL = tuple(COLS)
V8 = Features()                                   # FWB=0 DIC=0
GRACE = Features(fwb=True, dic=True)
MTEH = Features(fwb=True, dic=True, mte=True)
MTE_NOFWB = Features(mte=True)


def ex(col, host, backing, **kw):
    return explain(kernel(COLS[col]), host, backing, **kw)


def rules_of(ex_):
    return {r.rule for r in ex_.reasons}


@pytest.mark.parametrize("col", ALL)
def test_tv1_anon_ram_nofwb(col):
    e = ex(col, V8, "anon")
    f = e.fault
    assert (f.result, f.s2, f.memattr, f.x, f.dclean) == ("map", "NORMAL", 0xF, False, True)
    assert (f.errno, f.iinval) == (None, False)
    assert "kvm/user_mem_abort/attr-normal" in rules_of(e)
    if col == "A":
        assert "kvm/user_mem_abort/clean_dcache" in rules_of(e)       # "dclean in user_mem_abort"
        assert "pgtable/cmo/dclean" not in rules_of(e)
    else:
        assert "pgtable/cmo/dclean" in rules_of(e)                    # "dclean PoC" in the walker


@pytest.mark.parametrize("col", ALL)
def test_tv2_anon_ram_fwb_dic(col):
    e = ex(col, GRACE, "anon")
    f = e.fault
    assert (f.result, f.s2, f.memattr, f.x, f.dclean, f.iinval) == ("map", "NORMAL", 6, True, False, False)
    assert {"kvm/user_mem_abort/x-dic", "pgtable/memattr/fwb-normal"} <= rules_of(e)


@pytest.mark.parametrize("col", ALL)
def test_tv3_exec_fault(col):
    e = ex(col, V8, "anon", fault="exec")
    f = e.fault
    assert (f.result, f.s2, f.memattr, f.x, f.dclean, f.iinval) == ("map", "NORMAL", 0xF, True, True, True)
    assert "kvm/user_mem_abort/x-exec" in rules_of(e)
    assert ("kvm/user_mem_abort/invalidate_icache" if col == "A" else "pgtable/cmo/iinval") in rules_of(e)


@pytest.mark.parametrize("col", ALL)
def test_tv4_logging_thp(col):
    f = ex(col, V8, "anon", slot_flags="log_dirty").fault
    assert (f.s2, f.size, f.w) == ("NORMAL", "PAGE", False)
    # without logging THP gives a block, and a write fault keeps W
    assert ex(col, V8, "anon").fault.size == "PMD"
    assert ex(col, V8, "anon", slot_flags="log_dirty", fault="write").fault.w


@pytest.mark.parametrize("col", ALL)
def test_tv5_mte_anon(col):
    e = ex(col, MTEH, "anon", vm_mte=True)
    assert check_extension(kernel(COLS[col]).rules, MTEH, KVM_CAP_ARM_MTE)[0] == (0 if col == "A" else 1)
    if col == "A":
        assert e.vm_mte == ("error", "-EINVAL")
        assert not e.fault.mte_sanitised
    elif col == "G":
        assert (e.fault.s2, e.fault.mte_sanitised) == ("NORMAL", True)
        assert "kvm/kvm_s2_fault_map/sanitise_mte_tags" in rules_of(e)   # "sanitise in kvm_s2_fault_map"
    else:
        assert e.vm_mte == ("ok", None)
        assert (e.fault.s2, e.fault.mte_sanitised) == ("NORMAL", True)


@pytest.mark.parametrize("col", ALL[1:])
def test_tv6_mte_shmem(col):
    e = ex(col, MTEH, "shmem", vm_mte=True)
    if col == "B":
        assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P3")
        assert e.fault.result == "skipped"
    else:
        assert e.memslot.ok and (e.fault.s2, e.fault.mte_sanitised) == ("NORMAL", True)


@pytest.mark.parametrize("col", ALL[1:])
def test_tv7_mte_private_file(col):
    e = ex(col, MTEH, "file", vm_mte=True)
    if col == "B":
        assert e.memslot.ok and (e.fault.s2, e.fault.mte_sanitised) == ("NORMAL", True)
    else:
        assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P3'")


@pytest.mark.parametrize("col", ALL[1:])
def test_tv9_mte_vfio_bar(col):
    e = ex(col, MTEH, "vfio-pci-bar", vm_mte=True)
    assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P3" if col == "B" else "P3'")


TV10 = {"A": "DEVICE", "B": "DEVICE", "C": "DEVICE", "D": "NC", "E": "NC", "F": "NC", "G": "NC"}


@pytest.mark.parametrize("col", ALL)
@pytest.mark.parametrize("host", [V8, GRACE], ids=["nofwb", "fwb"])
def test_tv10_tv11_vfio_pci_bar(col, host):
    e = ex(col, host, "vfio-pci-bar")
    f = e.fault
    assert (f.result, f.s2, f.memattr) == ("map", TV10[col], 1 if TV10[col] == "DEVICE" else 5)
    assert (f.errno, f.x, f.dclean, f.iinval) == (None, False, False, False)
    assert e.memslot.ok
    if col in "DEFG":
        assert "kvm/user_mem_abort/attr-nc" in rules_of(e)
    if col == "A":
        assert e.memslot.premapped is not None and f.where == "kvm_phys_addr_ioremap"
    if col == "B":
        assert f.size == "PMD"


@pytest.mark.parametrize("col", ALL)
def test_tv12_vfio_exec(col):
    e = ex(col, V8, "vfio-pci-bar", fault="exec")
    f = e.fault
    assert (f.result, f.errno, f.where) == ("pabt", "-ENOEXEC", "user_mem_abort")
    assert "kvm/user_mem_abort/exec-device" in rules_of(e)


@pytest.mark.parametrize("col", ALL)
def test_tv13_vfio_logging(col):
    e = ex(col, V8, "vfio-pci-bar", slot_flags="log_dirty")
    assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P2")


@pytest.mark.parametrize("col", ALL)
def test_tv14_vfio_platform(col):
    for host in (V8, GRACE):
        e = ex(col, host, "vfio-platform-mmio")
        f = e.fault
        assert (f.result, f.s2, f.memattr, f.x, f.dclean) == ("map", "DEVICE", 1, False, False)
        if col in "DEFG":
            assert "kvm/user_mem_abort/attr-device-noflag" in rules_of(e)


@pytest.mark.parametrize("col", ALL)
def test_tv15_nvgrace_resmem(col):
    e = ex(col, GRACE, "nvgrace-resmem")
    if col in "ABC":
        assert e.memslot is None and e.fault.result == "skipped"
    else:
        assert (e.fault.s2, e.fault.memattr) == ("NC", 5)
        assert (e.fault.x, e.fault.dclean, e.fault.iinval) == (False, False, False)


@pytest.mark.parametrize("col", "DEFG")
def test_tv16_nvgrace_usemem_grace(col):
    e = ex(col, GRACE, "nvgrace-usemem")
    f = e.fault
    assert e.memslot.ok and f.result == "map"
    if col == "D":
        assert (f.s2, f.memattr, f.x) == ("DEVICE", 1, False)
    else:
        assert (f.s2, f.memattr, f.x, f.dclean, f.iinval) == ("NORMAL", 6, True, False, False)
        assert f.size == "PMD"
        assert "kvm/user_mem_abort/cacheable-pfnmap" in rules_of(e)


@pytest.mark.parametrize("col", "DEFG")
@pytest.mark.parametrize("host", [V8, Features(fwb=True), Features(dic=True)], ids=["v8", "fwb-only", "dic-only"])
def test_tv17_nvgrace_usemem_no_fwb_dic(col, host):
    e = ex(col, host, "nvgrace-usemem")
    if col == "D":
        assert e.fault.s2 == "DEVICE"
    else:
        assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P4")


TV20 = {"A": "DEVICE", "B": "DEVICE", "C": "DEVICE", "D": "NC", "E": "NC", "F": "NC", "G": "NC"}


@pytest.mark.parametrize("col", ALL)
def test_tv20_mixedmap_uncached(col):
    e = ex(col, GRACE, "mixedmap-uncached")
    assert (e.fault.result, e.fault.s2, e.fault.memattr, e.fault.x) == (
        "map", TV20[col], 5 if TV20[col] == "NC" else 1, False)
    if col in "EFG":
        assert "kvm/user_mem_abort/s2_force_noncacheable" in rules_of(e)


@pytest.mark.parametrize("col", "EFG")
def test_tv24_gmem_only_exec(col):
    e = ex(col, V8, "guest-memfd", slot_flags="gmem_only", fault="exec")
    if col == "E":
        assert not e.memslot.ok and any(r.unverified for r in e.memslot.reasons)
    else:
        f = e.fault
        assert (f.result, f.s2, f.size, f.x, f.w, f.where) == ("map", "NORMAL", "PAGE", True, True, "gmem_abort")
        assert f.iinval


@pytest.mark.parametrize("col", "EFG")
def test_tv25_gmem_private_only(col):
    e = ex(col, V8, "guest-memfd")
    assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P5")
    if col == "E":
        assert any(r.unverified for r in e.memslot.reasons)


@pytest.mark.parametrize("col", "FG")
def test_tv26_mte_gmem_unsanitised(col):
    # TV26 as the reference wrote it (MTE first, then the slot) is refused by real 6.18.5-7.1.13 kernels
    # (P8, memtypes conform); its point, a guest_memfd page mapped without sanitised tags, is still
    # reached with MTE enabled after the slot, which those kernels grant
    e = ex(col, MTEH, "guest-memfd", vm_mte=True, slot_flags="gmem_only")
    assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P8")
    e = ex(col, MTEH, "guest-memfd", mte_after_memslot=True, slot_flags="gmem_only")
    assert e.memslot.ok and e.vm_mte_after == ("ok", None)
    assert e.fault.s2 == "NORMAL" and not e.fault.mte_sanitised
    r = [r for r in e.reasons if r.rule == "kvm/gmem_abort/no-mte"]
    assert r and r[0].unverified


@pytest.mark.parametrize("col", ALL)
@pytest.mark.parametrize("host", [V8, GRACE, Features(fwb=True)], ids=["v8", "grace", "fwb-only"])
def test_tv27_tv28_cap_243(col, host):
    rules = kernel(COLS[col]).rules
    val, err, _ = check_extension(rules, host, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, vm_fd=True)
    sval, serr, _ = check_extension(rules, host, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, vm_fd=False)
    if col in "ABCD":
        assert (val, err, sval, serr) == (0, None, 0, None)
    else:
        assert (val, err) == (int(host.fwb and host.dic), None)
        assert (sval, serr) == (None, "-EINVAL")


@pytest.mark.parametrize("col", ALL[1:])
def test_tv29_mte_after_vcpu(col):
    rules = kernel(COLS[col]).rules
    vm, err, _ = enable_cap(rules, MTEH, Vm(created_vcpus=1), KVM_CAP_ARM_MTE)
    assert err == "-EINVAL" and not vm.mte
    vm, err, _ = enable_cap(rules, MTEH, Vm(), KVM_CAP_ARM_MTE)
    assert err is None and vm.mte
    assert enable_cap(rules, V8, Vm(), KVM_CAP_ARM_MTE)[1] == "-EINVAL"
    # column G: "pKVM: always -EINVAL from 7.0" (any guest on a pKVM host)
    vm, err, _ = enable_cap(rules, MTEH, Vm(pkvm=True), KVM_CAP_ARM_MTE)
    assert (err is None) is (col != "G") and vm.mte is (col != "G")


def test_tv29_pkvm_7_0_inside_column_f():
    """Column F spans 6.18-7.0; the pKVM refusal starts at 7.0."""
    assert enable_cap(kernel("6.18").rules, MTEH, Vm(pkvm=True), KVM_CAP_ARM_MTE)[1] is None
    assert enable_cap(kernel("7.0").rules, MTEH, Vm(pkvm=True), KVM_CAP_ARM_MTE)[1] == "-EINVAL"


@pytest.mark.parametrize("version,expect", [
    ("5.15", None), ("6.6", None), ("6.9", None), ("6.11", None), ("6.12", "-EBUSY"), ("6.16", "-EBUSY"),
    ("6.17", "-EBUSY"), ("6.18", "-EBUSY"), ("7.1", "-EBUSY")])
def test_tv30_copy_tags_under_logging(version, expect):
    rules = kernel(version).rules
    assert mte_copy_tags(rules, Vm(mte=True), to_guest=True, logging=True)[0] == expect
    assert mte_copy_tags(rules, Vm(mte=True), to_guest=False, logging=True)[0] is None


@pytest.mark.parametrize("col", ALL[1:])
def test_tv31_copy_tags_einval(col):
    rules = kernel(COLS[col]).rules
    assert mte_copy_tags(rules, Vm(mte=True), to_guest=False, aligned=False)[0] == "-EINVAL"
    assert mte_copy_tags(rules, Vm(mte=False), to_guest=False)[0] == "-EINVAL"


@pytest.mark.parametrize("col", ALL)
def test_tv32_perm_read_fault(col):
    rules = kernel(COLS[col]).rules
    f = kvm_handle_guest_abort(rules, V8, Vm(), Slot(), mmap("anon", any_uc=False), Fault(perm=True))
    assert (f.result, f.errno) == ("error", "-EFAULT")


@pytest.mark.parametrize("col", ALL)
def test_tv33_hole(col):
    e = ex(col, V8, "hole")
    assert e.memslot.ok and (e.fault.result, e.fault.errno, e.fault.where) == ("error", "-EFAULT", "user_mem_abort")


@pytest.mark.parametrize("col", ALL)
def test_tv34_gicv(col):
    for host in (V8, GRACE):
        e = ex(col, host, "gicv2-gicv")
        assert e.memslot is None and (e.fault.s2, e.fault.where) == ("DEVICE", "kvm_phys_addr_ioremap")
        assert (e.fault.memattr, e.fault.x, e.fault.dclean) == (1, False, False)


def test_tv36_pkvm_pfnmap():
    rules = kernel("7.1").rules
    f = kvm_handle_guest_abort(rules, GRACE, Vm(protected=True), Slot(), mmap("vfio-pci-bar", any_uc=True), Fault())
    assert (f.result, f.errno, f.where) == ("error", "-EFAULT", "pkvm_mem_abort")
    f = kvm_handle_guest_abort(rules, GRACE, Vm(protected=True), Slot(), mmap("anon", any_uc=True), Fault())
    assert (f.s2, f.x) == ("NORMAL", True)


@pytest.mark.parametrize("col", ALL)
def test_guest_table_fwb_forces_wb(col):
    """The M-nc combination table: S2 FWB_NORMAL forces WB; S2 NC keeps Device."""
    g = dict(ex(col, GRACE, "anon").guest)
    assert g["Normal-NC"] == "Normal-WB" and g["Device-nGnRE"] == "Normal-WB"
    if col >= "D":
        g = dict(ex(col, GRACE, "vfio-pci-bar").guest)
        assert g["Normal-WB"] == "Normal-NC" and g["Device-nGnRE"] == "Device-nGnRE"
