"""Issue 16: eras through 7.3, point releases, newer-than-model versions, the backings real hosts
produce, --hva-align / read-perm / pKVM inputs and the caps() answers.  Sources: the Debian trees
6.1.192, 6.12.118, 7.2.13, 7.3.4 (docs/kernels.md)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from memtypes.arch.features import Features
from memtypes.errors import InputError
from memtypes.linux import drivers
from memtypes.linux.kvm import eras
from memtypes.linux.kvm.arm import (
    KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, KVM_CAP_ARM_MTE, KVM_CAP_ARM_VM_IPA_SIZE, KVM_CAP_GUEST_MEMFD,
    KVM_CAP_SYNC_MMU, KVM_CAP_USER_MEMORY2, caps, check_extension, enable_cap,
)
from memtypes.linux.kvm.eras import ERA_7_1, ERA_7_2, kernel, rules_for_version
from memtypes.linux.kvm.explain import explain
from memtypes.linux.kvm.kvm_host import Vm
from memtypes.linux.version import KernelVersion, beyond_model

V8 = Features()
GRACE = Features(fwb=True, dic=True)
MTEH = Features(fwb=True, dic=True, mte=True)
PKVM = Features(fwb=True, dic=True, mte=True, pkvm=True)


# --- eras and versions -------------------------------------------------------------------------------
def test_era_7_2_changes_only_what_it_names():
    changed = {f.name for f in fields(eras.Rules)
               if getattr(ERA_7_1, f.name) != getattr(ERA_7_2, f.name)}
    assert changed == {"era", "span", "first", "changed_by", "pfnmap_host_leaf", "thp_adjust_device",
                       "perm_read_relax", "gmem_mte_excl", "pkvm_ext_filter_all", "nvgrace_huge_fault",
                       "source_read"}
    assert all("7.2.13" in r.source or r.unverified for r in ERA_7_2.changed_by)
    assert ERA_7_2.span == "7.2-7.3"


@pytest.mark.parametrize("spec,assumed", [("7.4", "7.3"), ("8.0", "7.3"), ("7.3.9", "7.3.4"),
                                          ("6.12.200", "6.12.118"), ("6.1.300", "6.1.192")])
def test_newer_than_the_model_gets_the_newest_rules_and_a_mark(spec, assumed):
    k = kernel(spec)
    assert str(k.assumed) == assumed
    assert k.mark == f"newer than the model, assuming {assumed}"
    assert k.rules == kernel(assumed).rules
    assert k.as_dict()["note"] == k.mark and spec in k.label() and assumed in k.label()


@pytest.mark.parametrize("spec", ["7.3", "7.3.4", "v7.3-rc7", "6.12.118", "6.12.117", "6.1.192", "7.1.5"])
def test_known_versions_have_no_mark(spec):
    k = kernel(spec)
    assert k.mark is None and k.as_dict()["note"] is None
    assert beyond_model(k.version) is None


@pytest.mark.parametrize("spec", ["6.12.x", "6.12.-1", "7", "7.3.4.1", "4.19"])
def test_malformed_or_too_old(spec):
    with pytest.raises(InputError):
        kernel(spec)


# --- point releases ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,leaf,device_thp", [
    ("6.1.190", False, False), ("6.1.191", True, False), ("6.1.192", True, False),
    ("6.12.112", False, False), ("6.12.113", True, True), ("6.12.117", True, True), ("6.12.118", True, True),
    ("6.17", False, False), ("7.1", False, False), ("7.2", True, True), ("7.3", True, True)])
def test_pfnmap_size_backports(spec, leaf, device_thp):
    r = kernel(spec).rules
    assert (r.pfnmap_host_leaf, r.thp_adjust_device) == (leaf, device_thp)


@pytest.mark.parametrize("spec,size", [("6.12.112", "PMD"), ("6.12.113", "PAGE"), ("6.12.118", "PAGE"),
                                       ("7.3", "PAGE"), ("6.1.190", "PMD"), ("6.1.192", "PAGE")])
def test_sysfs_bar_block_came_from_vm_pgoff(spec, size):
    """remap_pfn_range() fills resourceN with PTEs: only the old vm_pgoff sizing made it a block."""
    f = explain(kernel(spec), GRACE, "pci-sysfs-resource").fault
    assert (f.s2, f.size) == ("DEVICE", size)


@pytest.mark.parametrize("spec,align,size", [
    ("7.3", "2M", "PMD"), ("7.3", "1G", "PMD"), ("7.3", "4K", "PAGE"),
    ("6.12.118", "2M", "PMD"), ("6.12.118", "4K", "PAGE"),
    ("6.12.100", "2M", "PMD"), ("6.12.100", "4K", "PAGE"),
    ("6.1.192", "2M", "PAGE"), ("6.1.100", "2M", "PMD"), ("5.10", "2M", "PAGE")])
def test_vfio_bar_block_follows_the_host_mapping(spec, align, size):
    assert explain(kernel(spec), GRACE, "vfio-pci-bar", hva_align=align).fault.size == size


@pytest.mark.parametrize("spec,size", [("6.12.118", "PAGE"), ("7.3", "PMD")])
def test_nvgrace_host_leaf(spec, size):
    """nvgrace-gpu: remap_pfn_range() in 6.12.118, a huge_fault handler in 7.2.13."""
    assert explain(kernel(spec), GRACE, "nvgrace-resmem").fault.size == size


@pytest.mark.parametrize("align,size", [("2M", "PMD"), ("4K", "PAGE")])
def test_thp_needs_the_hva_aligned(align, size):
    assert explain(kernel("6.12"), GRACE, "anon", hva_align=align).fault.size == size


def test_bad_hva_align():
    with pytest.raises(InputError):
        explain(kernel("7.3"), GRACE, "anon", hva_align="3M")


# --- 7.2 rules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,result,errno", [("6.12", "error", "-EFAULT"), ("7.1", "error", "-EFAULT"),
                                               ("7.2", "map", None), ("7.3", "map", None)])
def test_read_permission_fault(spec, result, errno):
    f = explain(kernel(spec), GRACE, "anon", fault="read-perm").fault
    assert (f.result, f.errno) == (result, errno)
    if result == "map":
        assert not f.mte_sanitised and not f.dclean


# 6.17: no guest_memfd slots on arm64 (P5); 6.18-7.1: observed by memtypes conform on Debian 6.18.5-7.1.13; 7.2/7.3: read in the source
@pytest.mark.parametrize("spec,rule", [("6.17", "P5"), ("6.18.15", "P8"), ("7.1", "P8"), ("7.2", "P8"),
                                       ("7.3", "P8")])
def test_guest_memfd_slot_in_mte_vm(spec, rule):
    e = explain(kernel(spec), MTEH, "guest-memfd", vm_mte=True, slot_flags="gmem_only")
    assert e.vm_mte == ("ok", None)
    assert e.memslot.rule == rule
    assert e.memslot.ok is (rule is None)


@pytest.mark.parametrize("spec,errno", [("6.18.15", None), ("7.1", None), ("7.2", "-EINVAL"), ("7.3", "-EINVAL")])
def test_mte_refused_once_a_gmem_slot_exists(spec, errno):
    r = kernel(spec).rules
    assert enable_cap(r, MTEH, Vm(gmem_slot=True), KVM_CAP_ARM_MTE)[1] == errno
    assert enable_cap(r, MTEH, Vm(), KVM_CAP_ARM_MTE)[1] is None


# --- backings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,backing,rule", [
    ("6.1", "hugetlb", None), ("6.12", "hugetlb", "P3'"), ("6.13", "hugetlb", None), ("7.3", "hugetlb", None),
    ("6.1", "devzero-private", None), ("6.2", "devzero-private", "P3'"), ("7.3", "devzero-private", "P3'"),
    ("6.1", "memfd-private", None), ("7.3", "memfd-private", None),
    ("6.1", "memfd-shared", "P3"), ("6.2", "memfd-shared", None),
    ("6.1", "file-shared", "P3"), ("7.3", "file-shared", "P3'"),
    ("6.1", "file-private", None), ("6.2", "file-private", "P3'"), ("6.2", "file", "P3'"),
    ("7.3", "pci-sysfs-resource-wc", "P3'")])
def test_mte_vm_memslot_by_backing(spec, backing, rule):
    e = explain(kernel(spec), MTEH, backing, vm_mte=True)
    assert e.memslot.rule == rule
    if rule is None:
        assert e.fault.mapped and e.fault.mte_sanitised


@pytest.mark.parametrize("spec", ["5.14", "6.9", "6.17", "7.3"])
@pytest.mark.parametrize("kind", ["pci-sysfs-resource", "pci-sysfs-resource-wc"])
def test_sysfs_resource_stays_device(spec, kind):
    """realkernel.md: resourceN_wc is still Device-nGnRE at stage 2 (no VM_ALLOW_ANY_UNCACHED)."""
    f = explain(kernel(spec), GRACE, kind).fault
    assert (f.s2, f.memattr) == ("DEVICE", 1)
    b = drivers.mmap(kind, any_uc=True)
    assert not b.vma.allow_any_uc and b.vma.pfnmap
    assert b.vma.memtype == ("NORMAL_NC" if kind.endswith("-wc") else "DEVICE_nGnRE")


def test_file_is_a_deprecated_alias_of_file_private():
    old, new = drivers.mmap("file", any_uc=True), drivers.mmap("file-private", any_uc=True)
    assert (old.vma.flags, old.vma.memtype, old.phys) == (new.vma.flags, new.vma.memtype, new.phys)
    assert drivers.DEPRECATED["file"] == "file-private"
    assert any(r.rule == "drivers/file-deprecated" for r in old.notes)


def test_cdev_bar_is_the_group_bar():
    a, b = drivers.mmap("vfio-pci-bar", any_uc=True), drivers.mmap("vfio-pci-cdev-bar", any_uc=True)
    assert (a.vma.flags, a.vma.memtype, a.vma.huge) == (b.vma.flags, b.vma.memtype, b.vma.huge)
    for spec in ("6.12", "7.3"):
        fa = explain(kernel(spec), GRACE, "vfio-pci-bar").fault
        fb = explain(kernel(spec), GRACE, "vfio-pci-cdev-bar").fault
        assert (fa.s2, fa.size) == (fb.s2, fb.size)


@pytest.mark.parametrize("backing,result,errno", [
    ("anon", "map", None), ("memfd-private", "map", None), ("devzero-private", "map", None),
    ("file-private", "map", None), ("file-shared", "error", "-EFAULT"), ("hugetlb", "error", "-EIO"),
    ("vfio-pci-bar", "error", "-EFAULT")])
def test_protected_vm_pins(backing, result, errno):
    e = explain(kernel("7.3"), PKVM, backing, protected=True)
    assert (e.fault.result, e.fault.errno, e.fault.where) == (result, errno, "pkvm_mem_abort")


# --- pKVM and capabilities --------------------------------------------------------------------------
def test_pkvm_host_refuses_mte_for_every_guest():
    e = explain(kernel("7.3"), PKVM, "anon", vm_mte=True)
    assert e.vm_mte == ("error", "-EINVAL")
    assert explain(kernel("6.12"), PKVM, "anon", vm_mte=True).vm_mte == ("ok", None)


def test_protected_needs_pkvm():
    with pytest.raises(InputError):
        explain(kernel("7.3"), MTEH, "anon", protected=True)


def _cap(d, num):
    return next(c for c in d["caps"] if c["cap"] == num)


def test_caps_7_3():
    d = caps(kernel("7.3"), GRACE, ipa_limit=44)
    assert (_cap(d, KVM_CAP_SYNC_MMU)["system"], _cap(d, KVM_CAP_SYNC_MMU)["vm"]) == (1, 1)
    c = _cap(d, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED)
    assert (c["system"], c["system_errno"], c["vm"]) == (-22, "-EINVAL", 1)
    assert _cap(d, KVM_CAP_ARM_VM_IPA_SIZE)["vm"] == 44
    assert _cap(d, KVM_CAP_GUEST_MEMFD)["vm"] == 1 and _cap(d, KVM_CAP_USER_MEMORY2)["vm"] == 1
    assert _cap(d, 244)["vm"] == 3 and _cap(d, 245)["vm"] == 1
    assert d["kernel"]["version"] == "7.3" and d == caps(kernel("7.3"), GRACE, ipa_limit=44)


def test_caps_6_12():
    d = caps(kernel("6.12.118"), Features(fwb=True, dic=False, mte=True))
    assert _cap(d, KVM_CAP_ARM_MTE)["vm"] == 1
    assert _cap(d, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED)["vm"] == 0      # unknown before 6.17
    assert _cap(d, KVM_CAP_GUEST_MEMFD)["vm"] == 0 and _cap(d, KVM_CAP_USER_MEMORY2)["vm"] == 1
    assert _cap(d, KVM_CAP_ARM_VM_IPA_SIZE)["vm"] is None
    assert _cap(caps(kernel("6.1"), MTEH), KVM_CAP_USER_MEMORY2)["vm"] == 0


def test_caps_under_pkvm():
    r = kernel("7.3").rules
    assert check_extension(r, PKVM, KVM_CAP_ARM_MTE, vm_fd=False)[0] == 0
    assert check_extension(r, PKVM, KVM_CAP_ARM_MTE)[0] == 0
    assert check_extension(r, PKVM, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED)[0] == 1
    assert check_extension(r, PKVM, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, protected=True)[0] == 0
    assert check_extension(r, PKVM, KVM_CAP_ARM_VM_IPA_SIZE, protected=True, ipa_limit=40)[0] == 40
    assert check_extension(r, PKVM, KVM_CAP_SYNC_MMU, protected=True)[0] == 1     # generic, unfiltered


def test_rules_for_version_is_pure():
    v = KernelVersion(6, 12, 118)
    assert rules_for_version(v) == rules_for_version(v) == kernel("6.12.118").rules


@pytest.mark.parametrize("spec,errno", [("6.1", "-EPERM"), ("6.12", "-EPERM"), ("7.3", "-EPERM"), ("5.10", None)])
def test_gicv_on_pkvm_host(spec, errno):
    """kvm_phys_addr_ioremap() returns -EPERM under is_protected_kvm_enabled() in 6.1.192, 6.12.118,
    7.2.13 and 7.3.4 (the reference placed it in 7.1 only)."""
    f = explain(kernel(spec), PKVM, "gicv2-gicv").fault
    assert f.errno == errno
    assert explain(kernel(spec), GRACE, "gicv2-gicv").fault.s2 == "DEVICE"


def test_backports_table_locates_each_change():
    """Each backport's first release has the change and the release before it does not."""
    for b in eras.BACKPORTS:
        before = kernel(f"{b.series[0]}.{b.series[1]}.{b.first - 1}").rules
        at = kernel(f"{b.series[0]}.{b.series[1]}.{b.first}").rules
        for field, value in b.changes:
            assert getattr(at, field) == value and getattr(before, field) != value
        assert set(b.reasons) <= set(at.changed_by) and not set(b.reasons) & set(before.changed_by)
