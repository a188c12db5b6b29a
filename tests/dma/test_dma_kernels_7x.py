"""Issue 16 on the DMA side, read against 6.12.118, 7.2.13 and 7.3.4: an mdev group is reported
non-coherent to KVM (v6.2+), type1 attach has no fgsp test from 7.2, the x86 IGNORE_GUEST_PAT quirk
from 6.12.78, and both DMA families check 7.2."""

from __future__ import annotations

import pytest

from memtypes.check.families.dma_iommufd import FAMILY as FD
from memtypes.check.families.dma_type1 import FAMILY as T1, parts
from memtypes.linux.dma import Group, kvm_vfio, make_env, run, type1, x86_kvm
from memtypes.linux.version import KernelVersion

GROUPS = (Group("m", emulated=True), Group("gcc"))


@pytest.mark.parametrize("kernel,nc", [("6.2", True), ("6.9", True), ("7.3", True)])
def test_mdev_group_file_add_registers_noncoherent(kernel, nc):
    env = make_env("vfio-upstream", kernel, groups=GROUPS, npages=1)
    st = run(env, [("attach", "m"), ("attach", "gcc"), ("kvm_add", "m")])
    assert st[-1].state.kvm_nc is nc
    assert st[-1].events == (("kvm", "register"),)
    assert kvm_vfio.file_enforced_coherent(env, st[-1].state, "gcc")


def test_mdev_group_before_6_2_follows_the_container():
    """<= v6.1: VFIO_DMA_CC_IOMMU of the container; only coherent domains: coherent."""
    env = make_env("vfio-upstream", "5.19", groups=GROUPS, npages=1)
    st = run(env, [("attach", "m"), ("attach", "gcc"), ("kvm_add", "m")])
    assert st[-1].state.kvm_nc is False


@pytest.mark.parametrize("kernel,fgsp", [("6.9", True), ("6.12.118", True), ("7.2", False), ("7.3", False)])
def test_fgsp_window(kernel, fgsp):
    env = make_env("vfio-upstream", kernel, groups=(Group("gnc", nc=True),), npages=1)
    assert type1.has_fgsp(env) is fgsp
    st = run(env, [("attach", "gnc", {"probe": "read"})])
    assert any(e[1] == "fgsp-probe" for e in st[0].events if e[0] == "read") is fgsp
    assert st[0].state.dev_read is fgsp
    ops = [op for _a, op, _g in parts(kernel, "mainline", T1.default_params)[3]]
    assert (("attach", "gnc", {"probe": "read"}) in ops) is fgsp


@pytest.mark.parametrize("v,quirk_rule", [((6, 12, 77), False), ((6, 12, 78), True), ((6, 12, 118), True),
                                          ((6, 15, 0), False), ((7, 3, 0), True)])
def test_ignore_guest_pat_quirk_backport(v, quirk_rule):
    """With the quirk disabled on a self-snoop CPU and no NC DMA, the quirk rule honours guest PAT."""
    mt, ipat, why = x86_kvm.ept_memtype(KernelVersion(*v), False, ignore_guest_pat_quirk=False)
    assert (not ipat) is quirk_rule
    assert ("6.16-noquirk" in why.rule) is quirk_rule


def test_families_check_7_2():
    assert "7.2" in T1.kernels and "7.2" in FD.kernels
