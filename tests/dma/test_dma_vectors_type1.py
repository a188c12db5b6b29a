"""kernel-vfio.md section 7 vectors for VFIO type1 (TV01-TV19), in the three variants."""

from __future__ import annotations

import pytest

from memtypes.linux.dma import Group, flushes, make_env, reads, run, type1
from memtypes.arch import cache

A, B, C = "vfio-upstream", "vfio-flush-v1", "vfio-flush-reviewed"
ALL = (A, B, C)
FGSP = [("F@fgsp-pre", ("K0", "K1")), ("F@fgsp-post", ("K0", "K1"))]
NC = Group("g1", nc=True)
CC = Group("g1", nc=False)


def go(variant, groups, ops, npages=4, **kw):
    env = make_env(variant, "6.9", groups=groups, npages=npages, **kw.pop("envkw", {}))
    steps = run(env, ops, **kw)
    evs = [e for st in steps for e in st.events]
    return env, steps, flushes(evs), reads(evs)


@pytest.mark.parametrize("v", ALL)
def test_tv01_zero_fill_leak(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 0, 1), ("dev_read", "g1", 0)])
    if v == A:
        assert fl == [] and rd == [("g1", "P0", "S")]
        assert st[-1].state.bad_read
    else:
        assert fl == FGSP + [("F@pin_map", ("P0",))] and rd == [("g1", "P0", "0")]
    if v == C:
        assert st[-1].state.nc_count == 1


@pytest.mark.parametrize("v", ALL)
def test_tv02_cc_only(v):
    env, st, fl, rd = go(v, [CC], [("attach", "g1"), ("map", 0, 1), ("dev_read", "g1", 0)])
    assert fl == [] and rd == [("g1", "P0", "0")]


@pytest.mark.parametrize("v", ALL)
def test_tv03_cc_then_nc_replay(v):
    g = [Group("g1"), Group("g2", nc=True)]
    env, st, fl, rd = go(v, g, [("attach", "g1"), ("map", 0, 1), ("attach", "g2"),
                                ("dev_read", "g2", 0)])
    if v == A:
        assert fl == [] and rd == [("g2", "P0", "S")]
    else:
        assert fl == FGSP + [("F@replay", ("P0",))] and rd == [("g2", "P0", "0")]
        assert st[1].state.dmas[0][3] is False and st[2].state.dmas[0][3] is True


@pytest.mark.parametrize("v", ALL)
def test_tv04_nc_then_cc(v):
    g = [Group("g1", nc=True), Group("g2")]
    env, st, fl, rd = go(v, g, [("attach", "g1"), ("map", 0, 1), ("attach", "g2"),
                                ("dev_read", "g1", 0), ("dev_read", "g2", 0)])
    assert st[2].events == () or v == A or all(e[0] not in ("F@replay", "F@fgsp-pre")
                                                for e in st[2].events)
    if v == A:
        assert fl == [] and rd == [("g1", "P0", "S"), ("g2", "P0", "0")]
    else:
        assert fl == FGSP + [("F@pin_map", ("P0",))]
        assert rd == [("g1", "P0", "0"), ("g2", "P0", "0")]
        assert st[2].state.dmas[0][3] is True          # I6: CC attach never clears the flag


@pytest.mark.parametrize("v", ALL)
def test_tv05_merge(v):
    g = [Group("g1", nc=True), Group("g2", nc=True)]
    env, st, fl, rd = go(v, g, [("attach", "g1"), ("attach", "g2"), ("map", 0, 1),
                                ("dev_read", "g2", 0)])
    assert len(st[1].state.domains) == 1 and st[1].events == ()
    if v == A:
        assert fl == [] and rd == [("g2", "P0", "S")]
    else:
        assert fl == FGSP + [("F@pin_map", ("P0",))] and rd == [("g2", "P0", "0")]
    if v == C:
        assert st[-1].state.nc_count == 1


@pytest.mark.parametrize("v", ALL)
def test_tv06_clean_stale_reuse(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 0, 1), ("guest_read", 0),
                                   ("dev_write", "g1", 0, "B"), ("unmap", 0, 1),
                                   ("host_read", 0)], init={0: "A"})
    assert ("guest", "P0", "A") in rd
    if v == A:
        assert fl == [] and rd[-1] == ("host", "P0", "A->B")
        assert cache.is_stale(st[-1].state.lines[0])
    else:
        assert fl == FGSP + [("F@pin_map", ("P0",)), ("F@unpin", ("P0",))]
        assert rd[-1] == ("host", "P0", "B")


@pytest.mark.parametrize("v", ALL)
def test_tv08_map_after_nc_gone(v):
    g = [Group("g1"), Group("g2", nc=True, ops="other")]
    env, st, fl, rd = go(v, g, [("attach", "g1"), ("attach", "g2"), ("detach", "g2"),
                                ("map", 1, 1), ("dev_read", "g1", 1), ("unmap", 1, 1)])
    assert fl == ([] if v == A else FGSP)
    assert rd == [("g1", "P1", "0")]


@pytest.mark.parametrize("v", ALL)
def test_tv09_dirty_line_beats_device_write(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 0, 1), ("guest_write", 0, "G"),
                                   ("dev_write", "g1", 0, "B"), ("unmap", 0, 1), ("evict", 0),
                                   ("host_read", 0)])
    assert rd == [("host", "P0", "G")]
    if v != A:
        assert fl == FGSP + [("F@pin_map", ("P0",)), ("F@unpin", ("P0",))]


@pytest.mark.parametrize("v", ALL)
def test_tv10_guest_side_coherency(v):
    env, st, fl, rd = go(v, [NC], [("kvm_add", "g1"), ("attach", "g1"), ("map", 0, 1),
                                   ("guest_write", 0, "G"), ("dev_read", "g1", 0), ("wbinvd",),
                                   ("dev_read", "g1", 0)])
    assert st[0].state.kvm_nc and ("wbinvd", True) in st[5].events
    assert rd == [("g1", "P0", "S" if v == A else "0"), ("g1", "P0", "G")]


@pytest.mark.parametrize("v", ALL)
def test_tv11_pin_map_unwind(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 0, 4, {"fail_at": 1})],
                         envkw={"chunk": 2})
    assert st[1].errors and st[1].state.dmas == () and st[1].state.pins == (0, 0, 0, 0)
    if v == A:
        assert fl == []
    else:
        assert fl == FGSP + [("F@pin_map", ("P0", "P1")), ("F@pin_map", ("P2", "P3")),
                             ("F@unpin", ("P2", "P3")), ("F@unpin", ("P0", "P1"))]


@pytest.mark.parametrize("v", ALL)
def test_tv13_dma_before_domain(v):
    g = [Group("m", emulated=True), Group("g1", nc=True)]
    env, st, fl, rd = go(v, g, [("attach", "m"), ("map", 0, 1), ("attach", "g1"),
                                ("dev_read", "g1", 0)])
    assert st[1].state.dmas == ((0, 1, False, False),) and st[1].state.pins[0] == 0
    if v == A:
        assert fl == [] and rd == [("g1", "P0", "S")]
    else:
        assert fl == FGSP + [("F@replay", ("P0",))] and rd == [("g1", "P0", "0")]


@pytest.mark.parametrize("v", ALL)
def test_tv14_detach_last_domain(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 0, 1), ("guest_read", 0),
                                   ("dev_write", "g1", 0, "B"), ("detach", "g1"),
                                   ("host_read", 0)], init={0: "A"})
    if v == A:
        assert fl == [] and rd[-1] == ("host", "P0", "A->B")
    else:
        assert fl == FGSP + [("F@pin_map", ("P0",)), ("F@unpin", ("P0",))]
        assert rd[-1] == ("host", "P0", "B")
    assert st[-1].state.nc_count == 0 and st[-1].state.dmas == ()


@pytest.mark.parametrize("v", ALL)
def test_tv16_release(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 0, 1), ("release",)])
    assert fl == ([] if v == A else FGSP + [("F@pin_map", ("P0",)), ("F@unpin", ("P0",))])
    assert st[-1].state.nc_count == 0 and not st[-1].state.domains


@pytest.mark.parametrize("v", ALL)
@pytest.mark.parametrize("probe", ["read", "W"])
def test_tv17_fgsp_window(v, probe):
    env, st, fl, rd = go(v, [NC], [("attach", "g1", {"probe": probe})])
    k0 = st[0].state.lines[env.k0]
    if v == A:
        assert rd == [("fgsp-probe", "K0", "S'")] and fl == []
        assert st[0].state.bad_read
    else:
        assert rd == [("fgsp-probe", "K0", "0")] and fl == FGSP
        assert k0 == (("0" if probe == "read" else "W"), "I", "")


@pytest.mark.parametrize("v", ALL)
def test_tv18_mmio_bar(v):
    env, st, fl, rd = go(v, [NC], [("attach", "g1"), ("map", 3, 1), ("unmap", 3, 1)],
                         envkw={"uncached": (3,)})
    skips = [e for s_ in st for e in s_.events if e[0] == "skip"]
    if v == A:
        assert fl == [] and skips == []
    else:
        assert fl == FGSP + [("F@pin_map", ("P3",)), ("F@unpin", ("P3",))]
        assert skips == [("skip", "P3"), ("skip", "P3")]
    assert not any(e[0] == "zero" for s_ in st for e in s_.events)


@pytest.mark.parametrize("v", ALL)
def test_tv19_cc_iommu(v):
    g = [Group("m", emulated=True), Group("g1"), Group("g2", nc=True), Group("g3", nc=True,
                                                                                ops="x")]
    env = make_env(v, "6.9", groups=g, npages=1)
    s = type1.initial(env)
    vals = [type1.cc_iommu(env, s)]
    for op in [("attach", "m"), ("attach", "g1"), ("attach", "g2"), ("detach", "g2"),
               ("attach", "g3")]:
        s = run(env, [op], state=s)[-1].state
        vals.append(type1.cc_iommu(env, s))
    assert vals == [0, 1, 1, 0, 1, 0]
