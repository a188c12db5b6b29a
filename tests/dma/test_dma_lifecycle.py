"""Own vectors: each lifecycle path and each injected failure, plus the cache model."""

from __future__ import annotations

import pytest

from memtypes.arch import cache
from memtypes.linux.dma import Group, flushes, iommufd, make_env, reads, run, type1, variants
from memtypes.errors import InputError

B, C = "vfio-flush-v1", "vfio-flush-reviewed"
FGSP = [("F@fgsp-pre", ("K0", "K1")), ("F@fgsp-post", ("K0", "K1"))]


def fl(steps):
    return flushes([e for s in steps for e in s.events])


# -- arch/cache ------------------------------------------------------------------------------

def test_cache_semantics():
    ln = cache.line("S")
    ln, v = cache.cpu_read(ln)
    assert v == "S" and ln == ("S", "C", "S")
    ln = cache.cpu_write(ln, "0")
    assert cache.ns_read(ln) == "S" and cache.snoop_read(ln) == "0"
    assert cache.clean(ln) == ("0", "C", "0")
    assert cache.invalidate(ln) == ("S", "I", "")
    assert cache.flush(ln) == ("0", "I", "")
    st = cache.ns_write(("A", "C", "A"), "B")
    assert cache.is_stale(st) and cache.host_view(st) == "A->B"
    assert cache.evict(st) == ("B", "I", "") and cache.snoop_write(st, "X") == ("X", "I", "")
    with pytest.raises(ValueError):
        cache.line("S", "Q", "x")


def test_variant_names():
    assert variants.variant_code("mainline") == 0
    with pytest.raises(InputError):
        variants.variant_code("bogus")


# -- type1 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("v", [B, C])
def test_tv12_replay_failure_unwind(v):
    """Replay into a new NC domain fails on the 2nd iommu_map: dma0 (already iommu_mapped via the
    CC domain) keeps its flag (over-flush only); the failed attach leaves no NC domain."""
    env = make_env(v, "6.9", groups=[Group("g1"), Group("g2", nc=True)], npages=2)
    steps = run(env, [("attach", "g1"), ("map", 0, 1), ("map", 1, 1),
                      ("attach", "g2", {"fail_at": 1}), ("unmap", 0, 2)])
    s = steps[3].state
    assert steps[3].errors and type1.nc_domains(s) == 0 and s.nc_count == 0
    assert s.dmas == ((0, 1, True, True), (1, 1, True, True))
    assert fl(steps[3:4]) == FGSP + [("F@replay", ("P0",)), ("F@replay", ("P1",))]
    assert fl(steps[4:]) == [("F@unpin", ("P0",)), ("F@unpin", ("P1",))]   # over-flush


@pytest.mark.parametrize("v", [B, C])
def test_replay_failure_unpins_not_mapped_dma(v):
    env = make_env(v, "6.9", groups=[Group("m", emulated=True), Group("g1", nc=True)], npages=2)
    steps = run(env, [("attach", "m"), ("map", 0, 2), ("attach", "g1", {"fail_at": 0})])
    s = steps[-1].state
    assert s.pins == (0, 0) and s.dmas == ((0, 2, False, False),) and not s.domains
    assert fl(steps) == FGSP + [("F@replay", ("P0", "P1")), ("F@unpin", ("P0", "P1"))]


@pytest.mark.parametrize("v", [B, C])
def test_detach_non_last_nc_domain_keeps_pages(v):
    env = make_env(v, "6.9", groups=[Group("g1"), Group("g2", nc=True)], npages=1)
    steps = run(env, [("attach", "g1"), ("attach", "g2"), ("map", 0, 1), ("detach", "g2"),
                      ("unmap", 0, 1)])
    assert steps[3].events == () and steps[3].state.pins == (1,)
    assert fl(steps[3:]) == [("F@unpin", ("P0",))]          # sticky flag: flush at unpin
    assert steps[3].state.nc_count == 0 and type1.cc_iommu(env, steps[3].state) == 1


@pytest.mark.parametrize("v", [B, C])
def test_detach_last_domain_with_emulated_reaccounts(v):
    env = make_env(v, "6.9", groups=[Group("m", emulated=True), Group("g1", nc=True)], npages=1)
    steps = run(env, [("attach", "m"), ("attach", "g1"), ("map", 0, 1), ("detach", "g1"),
                      ("attach", "g1")])
    s = steps[3].state
    assert s.dmas == ((0, 1, False, False),) and s.pins == (0,)
    assert fl(steps[3:4]) == [("F@unpin", ("P0",))]
    assert fl(steps[4:]) == FGSP + [("F@replay", ("P0",))]


def test_emulated_detach_last_removes_dmas():
    env = make_env(C, "6.9", groups=[Group("m", emulated=True)], npages=1)
    steps = run(env, [("attach", "m"), ("map", 0, 1), ("detach", "m")])
    assert steps[-1].state.dmas == () and fl(steps) == []


def test_type1_errors():
    env = make_env(C, "6.9", groups=[Group("g1", nc=True)], npages=3)
    steps = run(env, [("map", 0, 1), ("attach", "g1"), ("attach", "g1"), ("map", 0, 2),
                      ("map", 1, 1), ("unmap", 0, 1), ("detach", "nope" if False else "g1"),
                      ("dev_read", "g1", 0)])
    codes = [s.errors[0][1] if s.errors else None for s in steps]
    assert codes == ["EINVAL", None, "EBUSY", None, "EEXIST", "EINVAL", None, "FAULT"]


@pytest.mark.parametrize("v", [B, C])
def test_cc_merge_then_nc_separate(v):
    env = make_env(v, "6.9", groups=[Group("a"), Group("b"), Group("n", nc=True)], npages=1)
    steps = run(env, [("attach", "a"), ("attach", "b"), ("attach", "n"), ("cc_iommu",)])
    assert [len(s.state.domains) for s in steps[:3]] == [1, 1, 2]
    assert reads(steps[-1].events) == [("VFIO_DMA_CC_IOMMU", "", 0)]
    assert steps[-1].state.domains[0][0] == "n"             # new domains at the head


# -- iommufd ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("v", [B, C])
def test_iommufd_map_failure_unwinds(v):
    env = make_env(v, "6.9", groups=[Group("h", nc=True)], npages=2)
    steps = run(env, [("hwpt_alloc", "A", "h"), ("ioas_map", "A", 0, 0, 2, {"fail": True})],
                state=iommufd.initial(env))
    s = steps[-1].state
    assert steps[-1].errors and s.pages == () and not any(iommufd.pinned(env, s))
    assert fl(steps) == [("F@fill_domains", ("P0", "P1")), ("F@batch_unpin", ("P0", "P1"))]
    assert s.lines[0] == ("0", "I", "")


@pytest.mark.parametrize("v", [B, C])
def test_iommufd_copy_failure_keeps_source(v):
    env = make_env(v, "6.9", groups=[Group("c"), Group("h", nc=True)], npages=2)
    steps = run(env, [("hwpt_alloc", "A", "c"), ("ioas_map", "A", 0, 0, 2),
                      ("hwpt_alloc", "B", "h"), ("ioas_copy", "A", 0, 2, "B", 0, {"fail": True})],
                state=iommufd.initial(env))
    s = steps[-1].state
    assert steps[-1].errors and len(s.pages) == 1 and s.ioas[1][1] == ()
    assert iommufd.pinned(env, s) == [True, True]
    assert fl(steps[3:]) == [("F@fill_domains", ("P0", "P1"))]   # no unpin: A still holds


@pytest.mark.parametrize("v", [B, C])
def test_iommufd_destroy_last_hwpt_unpins(v):
    env = make_env(v, "6.9", groups=[Group("h", nc=True)], npages=1)
    steps = run(env, [("hwpt_alloc", "A", "h"), ("ioas_map", "A", 0, 0, 1), ("guest_read", 0),
                      ("dev_write", "h", 0, "B"), ("hwpt_destroy", "h"), ("host_read", 0)],
                state=iommufd.initial(env))
    assert fl(steps) == [("F@fill_domains", ("P0",)), ("F@batch_unpin", ("P0",))]
    assert reads(steps[-1].events) == [("host", "P0", "B")]
    assert steps[-1].state.ioas[0][3] == 0


def test_iommufd_unmap_errors():
    env = make_env(C, "6.9", groups=[Group("h", nc=True)], npages=2)
    steps = run(env, [("ioas_map", "A", 0, 0, 2), ("ioas_unmap", "A", 0, 1),
                      ("ioas_unmap", "B", 0, 1), ("ioas_map", "A", 1, 0, 1),
                      ("ioas_copy", "A", 1, 2, "B", 0)], state=iommufd.initial(env))
    assert [s.errors[0][1] if s.errors else None for s in steps] == \
        [None, "EINVAL", "ENOENT", "EEXIST", "ENOENT"]


def test_iommufd_reviewed_no_skip_for_shared_pages_in_fill_domain():
    env = make_env(C, "6.9", groups=[Group("c"), Group("h", nc=True)], npages=2)
    steps = run(env, [("ioas_map", "A", 0, 0, 2), ("ioas_copy", "A", 0, 1, "A", 4),
                      ("hwpt_alloc", "A", "h")], state=iommufd.initial(env))
    assert fl(steps) == [("F@fill_domain", ("P0", "P1")), ("F@fill_domain", ("P0",))]
