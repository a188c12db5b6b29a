"""TV26 (kernel-vfio.md 2.2, 2.3, 5 item 2, 7): the Intel VT-d in-place "upgrade" of a non-CC
iommufd hwpt when a CC-capable device attaches.  <= v6.6 (before e645c20e8e9c): a second-stage
domain with mappings is upgraded, its old PTEs keep SNP=0; v6.7+: -EINVAL (has_mappings);
first stage: PGSNP covers every mapping, allowed in every era.  The 6.6.y backport of the fix is
UNVERIFIED; the model splits at 6.7."""

from __future__ import annotations

import pytest

from memtypes.check.families.dma_iommufd import FAMILY as FD
from memtypes.linux.dma import Group, iommufd, make_env, reads, run

A, B, C = "vfio-upstream", "vfio-flush-v1", "vfio-flush-reviewed"
GROUPS = (Group("hnc", nc=True), Group("hcc"))
SETUP = [("hwpt_alloc", "A", "hnc"), ("ioas_map", "A", 0, 0, 1), ("dev_detach", "hnc"),
         ("dev_attach", "hcc", "hnc")]
AFTER = [("guest_write", 0, "G"), ("dev_read", "hcc", 0),           # old IOVA
         ("ioas_map", "A", 1, 1, 1), ("guest_write", 1, "G"), ("dev_read", "hcc", 1),  # new
         ("kvm_add", "hcc")]


def go(kernel, variant=A, fs=False, ops=None):
    env = make_env(variant, kernel, groups=GROUPS, npages=2)
    s0 = iommufd.initial(env, ("A",))
    setup = [("hwpt_alloc", "A", "hnc", {"fs": True})] + SETUP[1:] if fs else SETUP
    steps = run(env, setup + (AFTER if ops is None else ops), state=s0)
    return env, steps


@pytest.mark.parametrize("kernel", ["6.2", "6.6"])
def test_upgrade_succeeds_old_ptes_stale(kernel):
    env, st = go(kernel)
    att = st[3]
    assert not att.errors
    h = iommufd.hwpt_of(att.state, "hnc")[1]
    assert h[1] is False and h[4] == (0,) and h[5] == ("hcc",)   # reported CC, IOVA 0 SNP=0
    rd = reads([e for x in st for e in x.events])
    # old IOVA: non-snooped, DRAM still holds S under the dirty G line; new IOVA: snooped -> G
    assert rd == [("hcc", "P0", "S"), ("hcc", "P1", "G")]
    assert iommufd.stale_path(st[-1].state)
    assert st[-1].state.kvm_nc is False                       # KVM told "coherent" too (v6.2+)
    # unmapping the old IOVA removes the SNP=0 PTE; a remap is snooped
    env2, st2 = go(kernel, ops=[("ioas_unmap", "A", 0, 1), ("ioas_map", "A", 0, 0, 1),
                                ("guest_write", 0, "G"), ("dev_read", "hcc", 0)])
    assert not iommufd.stale_path(st2[-1].state)
    assert reads(st2[-1].events) == [("hcc", "P0", "G")]


@pytest.mark.parametrize("kernel", ["6.7", "6.9", "6.11"])
def test_upgrade_refused_with_mappings(kernel):
    env, st = go(kernel)
    att = st[3]
    assert att.errors == [("err", "EINVAL", "iommufd_hwpt_paging_enforce_cc (has_mappings)")]
    assert iommufd.dev_hwpt(att.state, "hcc") is None
    assert iommufd.hwpt_of(att.state, "hnc")[1][1] is True  # still NC, unchanged
    assert not iommufd.stale_path(st[-1].state)


@pytest.mark.parametrize("kernel", ["6.12", "6.12.118", "7.2", "7.3"])
def test_capable_device_joins_nc_hwpt_without_upgrade(kernel):
    """6.12.118, 7.2.13, 7.3.4: iommufd_hw_pagetable_attach() never asks the domain to enforce
    coherency, so the CC-capable device joins the non-CC hwpt as it is (no -EINVAL, no upgrade);
    its DMA is non-snooped at every IOVA, while KVM, told about its file alone, hears "coherent"
    (device_iommu_capable)."""
    env, st = go(kernel)
    att = st[3]
    assert not att.errors
    assert not iommufd.attach_upgrades(env)
    h = iommufd.hwpt_of(att.state, "hnc")[1]
    assert h[1] is True and h[5] == ("hcc",)                   # still NC, hcc on it
    rd = reads([e for x in st for e in x.events])
    assert rd == [("hcc", "P0", "S"), ("hcc", "P1", "S")]     # both IOVAs non-snooped
    assert not iommufd.stale_path(st[-1].state)
    assert st[-1].state.kvm_nc is False


def test_has_mappings_is_sticky_but_empty_domain_upgrades():
    # v6.7+: unmapped again -> still refused (has_mappings never cleared, UNVERIFIED)
    env = make_env(A, "6.9", groups=GROUPS, npages=2)
    s0 = iommufd.initial(env, ("A",))
    st = run(env, [("hwpt_alloc", "A", "hnc"), ("ioas_map", "A", 0, 0, 1),
                   ("ioas_unmap", "A", 0, 1), ("dev_detach", "hnc"),
                   ("dev_attach", "hcc", "hnc")], state=s0)
    assert st[-1].errors
    # never mapped: the upgrade is allowed; later maps are snooped
    st = run(env, [("hwpt_alloc", "A", "hnc"), ("dev_detach", "hnc"), ("dev_attach", "hcc", "hnc"),
                   ("ioas_map", "A", 0, 0, 1), ("guest_write", 0, "G"), ("dev_read", "hcc", 0)],
             state=s0)
    assert not any(x.errors for x in st)
    assert reads(st[-1].events) == [("hcc", "P0", "G")]


@pytest.mark.parametrize("kernel", ["6.2", "6.9"])
def test_first_stage_upgrade_snoops_everything(kernel):
    env, st = go(kernel, fs=True)
    assert not st[3].errors
    h = iommufd.hwpt_of(st[3].state, "hnc")[1]
    assert h[1] is False and h[4] == ()
    assert reads([e for x in st for e in x.events]) == [("hcc", "P0", "G"), ("hcc", "P1", "G")]
    assert not iommufd.stale_path(st[-1].state)


def test_upgrade_refused_while_non_sc_device_attached_and_reverse():
    env = make_env(A, "6.2", groups=GROUPS + (Group("hnc2", nc=True),), npages=2)
    s0 = iommufd.initial(env, ("A",))
    st = run(env, [("hwpt_alloc", "A", "hnc"), ("dev_attach", "hcc", "hnc")], state=s0)
    assert st[-1].errors[0][1] == "EINVAL"              # hnc (no Snoop Control) still attached
    st = run(env, [("hwpt_alloc", "A", "hcc"), ("dev_attach", "hnc2", "hcc")], state=s0)
    assert st[-1].errors[0][2].startswith("intel_iommu_attach_device")   # 9d6ab26a75f4


@pytest.mark.parametrize("v", [B, C])
def test_upgrade_with_flush_variants(v):
    # the fill into the NC hwpt flushed (b)(c), so the stale old-IOVA read is the zero fill, not S
    env, st = go("6.2", v)
    rd = reads([e for x in st for e in x.events])
    assert rd == [("hcc", "P0", "0"), ("hcc", "P1", "G")]
    assert iommufd.stale_path(st[-1].state)


def _bfs(m):
    from collections import deque
    init = m.init_states()
    seen, q, viol = set(init), deque(init), set()
    while q:
        s = q.popleft()
        for p in m.properties():
            if p.kind == "always" and not p.check(s):
                viol.add(p.name)
        for _a, n in m.successors(s):
            if n not in seen:
                seen.add(n)
                q.append(n)
    return len(seen), viol


@pytest.mark.parametrize("variant", ["mainline", "vfio-flush-v1", "vfio-flush-reviewed"])
def test_family_tv26_param(variant):
    base = {**FD.default_params, "tv26": True}
    n62, v62 = _bfs(FD.build("6.2", variant, base))
    n69, v69 = _bfs(FD.build("6.9", variant, base))
    nfs, vfs = _bfs(FD.build("6.2", variant, {**base, "stage": "first"}))
    n0, v0 = _bfs(FD.build("6.2", variant, dict(FD.default_params)))
    assert n62 > n0 and n69 > 0 and nfs > 0
    assert "coherency-reported" in v62                     # <= v6.6: upgrade under mappings
    assert "coherency-reported" not in v69                 # v6.7+: -EINVAL
    assert "coherency-reported" not in vfs                 # first stage: PGSNP
    assert "coherency-reported" not in v0                  # default params: off
    assert v62 - {"coherency-reported"} == v0


def test_family_tv26_via_run_matrix_and_bad_stage():
    from memtypes.check.runner import run_matrix
    r = run_matrix([FD], kernel="6.2", variant="vfio-flush-reviewed", workers=1,
                   params={"dma-iommufd": {"tv26": True}})
    viol = {x.property for x in r.violations}
    assert viol == {"coherency-reported"}
    with pytest.raises(ValueError):
        FD.build("6.2", "mainline", {**FD.default_params, "stage": "third"})
