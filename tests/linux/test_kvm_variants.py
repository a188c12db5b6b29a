"""Each named variant, its eras, and writing a new one."""

from __future__ import annotations

import pytest

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux.kvm import kernel
from memtypes.linux.kvm.explain import explain
from memtypes.linux.kvm.variants import VARIANTS, Variant, applies, register

V8 = Features()
GRACE = Features(fwb=True, dic=True)
MTEH = Features(fwb=True, dic=True, mte=True)


def ex(spec, host, backing, **kw):
    return explain(kernel(spec), host, backing, **kw)


@pytest.mark.parametrize("spec", ["5.15+normal-nc-for-all-io", "6.12+normal-nc-for-all-io", "7.1+normal-nc-for-all-io"])
def test_normal_nc_for_all_io(spec):
    assert ex(spec, GRACE, "vfio-platform-mmio").fault.s2 == "NC"
    assert ex(spec, GRACE, "gicv2-gicv").fault.s2 == "NC"
    assert ex(spec, GRACE, "vfio-pci-bar").fault.s2 == "NC"


@pytest.mark.parametrize("spec", ["5.15+device-as-cacheable", "6.12+device-as-cacheable"])
def test_device_as_cacheable(spec):
    f = ex(spec, GRACE, "vfio-pci-bar").fault
    assert (f.s2, f.memattr) == ("NORMAL", 6)
    assert ex(spec, GRACE, "vfio-pci-bar", fault="exec").fault.result == "pabt"


@pytest.mark.parametrize("spec", ["6.12+cacheable-pfnmap-no-fwb-check", "6.17+cacheable-pfnmap-no-fwb-check"])
def test_cacheable_pfnmap_no_fwb_check(spec):
    e = ex(spec, V8, "nvgrace-usemem")
    assert e.memslot.ok and (e.fault.s2, e.fault.memattr, e.fault.dclean) == ("NORMAL", 0xF, True)
    assert ex(spec, V8, "vfio-pci-bar").fault.s2 == "NC"


def test_cpfn_memslot_flag_adds_cap_243():
    """The brief / M-cpfn v4: the memslot-flag series also added KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED
    (243) alongside the flag, so the variant answers it even on 6.9-6.16 (mainline: 0 there)."""
    from memtypes.linux.kvm import KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED as CAP, check_extension
    for spec in ("6.12+cpfn-memslot-flag", "6.17+cpfn-memslot-flag"):
        r = kernel(spec).rules
        assert check_extension(r, GRACE, CAP)[:2] == (1, None)
        assert check_extension(r, Features(fwb=True), CAP)[:2] == (0, None)
        assert check_extension(r, GRACE, CAP, vm_fd=False)[:2] == (None, "-EINVAL")
        assert check_extension(r, GRACE, CAP)[2].unverified
    assert check_extension(kernel("6.12").rules, GRACE, CAP)[:2] == (0, None)


def test_cpfn_memslot_flag():
    e = ex("6.12+cpfn-memslot-flag", GRACE, "nvgrace-usemem")
    assert e.fault.s2 == "DEVICE"
    e = ex("6.12+cpfn-memslot-flag", GRACE, "nvgrace-usemem", slot_flags="cacheable_pfnmap")
    assert e.fault.s2 == "NORMAL"
    e = ex("6.17+cpfn-memslot-flag", V8, "nvgrace-usemem", slot_flags="cacheable_pfnmap")
    assert (e.memslot.errno, e.memslot.rule) == ("-EINVAL", "P4")
    assert ex("6.17+cpfn-memslot-flag", V8, "nvgrace-usemem").fault.s2 == "DEVICE"


def test_nvidia_vma_memtype():
    assert ex("6.12+nvidia-vma-memtype", GRACE, "nvgrace-usemem").fault.s2 == "NORMAL"
    assert ex("6.12+nvidia-vma-memtype", GRACE, "nvgrace-resmem").fault.s2 == "NC"
    assert ex("6.6+nvidia-vma-memtype", GRACE, "vfio-pci-bar").fault.s2 == "NC"
    assert ex("6.12+nvidia-vma-memtype", GRACE, "vfio-platform-mmio").fault.s2 == "DEVICE"
    e = ex("6.12+nvidia-vma-memtype", Features(dic=True), "nvgrace-usemem")
    assert e.fault.errno == "-EINVAL"
    assert e.fault.reasons[-1].rule == "kvm/user_mem_abort/nv-nofwb-einval"


def test_nvidia_nofwb_einval_scope_and_order():
    """Section 2.5 / S-NV 05400664e522: "no FWB and !pfn_valid(pfn) gives -EINVAL at fault time", for
    every memory type (not only cacheable VMAs), and it is checked under the MMU lock, after the
    -ENOEXEC (device = !MapMem), THP and MTE steps."""
    nofwb = Features(dic=True)
    for backing in ("vfio-pci-bar", "nvgrace-resmem", "vfio-platform-mmio", "nvgrace-usemem"):
        f = ex("6.12+nvidia-vma-memtype", nofwb, backing).fault
        assert (f.result, f.errno) == ("error", "-EINVAL"), backing
        f = ex("6.12+nvidia-vma-memtype", nofwb, backing, fault="exec").fault
        assert (f.result, f.errno) == ("pabt", "-ENOEXEC"), backing      # exec && device first
    # RAM (pfn_valid) is unaffected on a non-FWB host
    assert ex("6.12+nvidia-vma-memtype", nofwb, "anon").fault.s2 == "NORMAL"
    # FWB host: no -EINVAL
    assert ex("6.6+nvidia-vma-memtype", GRACE, "vfio-pci-bar").fault.s2 == "NC"


@pytest.mark.parametrize("spec", ["5.10+mte-rfc-2020", "6.12+mte-rfc-2020", "6.17+mte-rfc-2020"])
def test_mte_rfc_2020(spec):
    e = ex(spec, MTEH, "file", vm_mte=True)
    assert e.vm_mte == ("ok", None) and e.memslot.ok and e.fault.mte_sanitised
    e = ex(spec, MTEH, "pmem", vm_mte=True)
    assert e.memslot.ok
    if spec.startswith(("5.10", "6.17")):      # pmem is Normal at stage 2 (pfn_valid / not PFNMAP)
        assert e.fault.s2 == "NORMAL" and e.fault.tagged


def test_mte_memslot_check_only():
    e = ex("6.12+mte-memslot-check-only", MTEH, "anon", vm_mte=True, remap="file")
    assert e.fault.s2 == "NORMAL" and e.fault.mte_sanitised
    assert ex("6.12+mte-memslot-check-only", MTEH, "file", vm_mte=True).memslot.rule == "P3'"
    e = ex("6.17+mte-memslot-check-only", MTEH, "anon", vm_mte=True, remap="pmem")
    assert e.fault.s2 == "NORMAL" and e.fault.tagged


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_eras_documented(name):
    v = VARIANTS[name]
    assert v.eras and v.why is not None
    for era in v.eras:
        assert applies(era, name)
        assert kernel(f"{era if era != '5.13' else '5.10'}+{name}").variant == name


def test_variant_not_in_era():
    with pytest.raises(InputError, match="does not apply"):
        kernel("5.15+cpfn-memslot-flag")


def test_user_variant_in_a_few_lines():
    register(Variant("test-nc-platform", ("6.9",), {"nc_without_flag": True},
                     Reason("variant/test", "a test", "platform MMIO NC too")))
    try:
        assert ex("6.12+test-nc-platform", GRACE, "vfio-platform-mmio").fault.s2 == "NC"
        assert ex("6.12", GRACE, "vfio-platform-mmio").fault.s2 == "DEVICE"
    finally:
        del VARIANTS["test-nc-platform"]
    with pytest.raises(ValueError):
        register(Variant("bad", ("6.9",), {"no_such_switch": True}))
