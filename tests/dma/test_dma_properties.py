"""Hypothesis: random operation sequences through type1 and iommufd.

* vfio-flush-reviewed: a non-snooping device never reads a previous owner's value (S, S'),
  and unpinned pages never carry a stale clean line;
* I5: VFIO_DMA_CC_IOMMU == (no NC domain), every variant;
* I4 (reviewed): ``noncoherent_domains`` == number of NC domains (type1) and the iommufd
  counter == number of NC hwpts of each IOAS.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memtypes.arch import cache
from memtypes.linux.dma import Group, apply, iommufd, make_env, type1

VARS = ("vfio-upstream", "vfio-flush-v1", "vfio-flush-reviewed")
GROUPS = (Group("gcc"), Group("gnc", nc=True), Group("gnc2", nc=True, ops="other"),
          Group("gcc2", ops="other"), Group("m", emulated=True))
NP = 3

T1_OPS = []
for g in ("gcc", "gnc", "gnc2", "gcc2", "m"):
    T1_OPS += [("attach", g), ("attach", g, {"fail_at": 0}), ("attach", g, {"fail_at": 1}),
               ("attach", g, {"probe": "W"}), ("detach", g)]
for st_, n in ((0, 1), (1, 2), (0, 3), (2, 1)):
    T1_OPS += [("map", st_, n), ("map", st_, n, {"fail_at": 1}), ("unmap", st_, n)]
for p in range(NP):
    T1_OPS += [("guest_read", p), ("guest_write", p, "G"), ("evict", p), ("host_read", p)]
    for g in ("gcc", "gnc", "gnc2", "gcc2"):
        T1_OPS += [("dev_read", g, p), ("dev_write", g, p, "B")]
T1_OPS += [("release",), ("kvm_add", "gnc"), ("kvm_del", "gnc"), ("wbinvd",),
           ("evict", NP), ("evict", NP + 1)]

FD_GROUPS = (Group("hcc"), Group("hnc", nc=True), Group("hnc2", nc=True))
FD_OPS = []
for io in ("A", "B"):
    for h in ("hcc", "hnc", "hnc2"):
        FD_OPS += [("hwpt_alloc", io, h), ("hwpt_alloc", io, h, {"fail": True})]
    FD_OPS += [("ioas_map", io, 0, 0, 3), ("ioas_map", io, 4, 1, 2, {"fail": True}),
               ("ioas_map", io, 4, 1, 2), ("ioas_unmap", io, 0, 3), ("ioas_unmap", io, 0, 8),
               ("ioas_unmap", io, 4, 2)]
for h in ("hcc", "hnc", "hnc2"):
    FD_OPS.append(("hwpt_destroy", h))
    for i in (0, 1, 2, 4, 5, 6, 7):
        FD_OPS += [("dev_read", h, i), ("dev_write", h, i, "B")]
FD_OPS += [("ioas_copy", "A", 0, 1, "B", 6), ("ioas_copy", "A", 1, 2, "B", 6),
           ("ioas_copy", "B", 0, 2, "A", 6), ("ioas_copy", "B", 4, 1, "A", 7),
           ("ioas_copy", "A", 4, 2, "B", 6, {"fail": True})]
for p in range(NP):
    FD_OPS += [("guest_read", p), ("guest_write", p, "G"), ("evict", p), ("host_read", p)]


def _runs(env, s, idx, ops, check):
    for i in idx:
        op = ops[i % len(ops)]
        if op[0] in ("guest_read", "guest_write") and not _pinned(env, s, op[1]):
            continue                          # the guest touches only its pinned (mapped) RAM
        if op[0] == "host_read" and _pinned(env, s, op[1]):
            continue                          # host reuse only after unpin
        s, ev = apply(env, s, op)
        check(env, s, ev)
    return s


def _pinned(env, s, p):
    if isinstance(s, type1.T1):
        return s.pins[p] > 0
    return iommufd.pinned(env, s)[p]


def _check_t1(env, s, ev):
    nc = type1.nc_domains(s)
    if s.iommu:
        assert type1.cc_iommu(env, s) == (0 if nc else 1)              # I5
    if env.variant == 2:
        assert s.nc_count == nc                                          # I4
        assert not s.bad_read
        for p in range(env.npages):
            if s.pins[p] == 0:
                assert not cache.is_stale(s.lines[p])
    assert all(x >= 0 for x in s.pins)


def _check_fd(env, s, ev):
    for io in s.ioas:
        if env.variant == 2:
            assert io[3] == sum(1 for h in io[2] if h[1])                # I4 (iommufd)
    if env.variant == 2:
        assert not s.bad_read
        pin = iommufd.pinned(env, s)
        for p in range(env.npages):
            if not pin[p]:
                assert not cache.is_stale(s.lines[p])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VARS), st.lists(st.integers(0, 10_000), max_size=40))
def test_type1_random(variant, idx):
    env = make_env(variant, "6.9", groups=GROUPS, npages=NP, chunk=2)
    _runs(env, type1.initial(env), idx, T1_OPS, _check_t1)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VARS), st.lists(st.integers(0, 10_000), max_size=40))
def test_iommufd_random(variant, idx):
    env = make_env(variant, "6.9", groups=FD_GROUPS, npages=NP)
    _runs(env, iommufd.initial(env), idx, FD_OPS, _check_fd)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=30))
def test_v1_and_reviewed_type1_flush_identically(idx):
    """Section 1.8: for type1, flush points and data outcomes of (c) are identical to (b)."""
    e1 = make_env("vfio-flush-v1", "6.9", groups=GROUPS, npages=NP, chunk=2)
    e2 = make_env("vfio-flush-reviewed", "6.9", groups=GROUPS, npages=NP, chunk=2)
    s1, s2 = type1.initial(e1), type1.initial(e2)
    for i in idx:
        op = T1_OPS[i % len(T1_OPS)]
        if op[0] in ("guest_read", "guest_write") and s1.pins[op[1]] == 0:
            continue
        s1, ev1 = apply(e1, s1, op)
        s2, ev2 = apply(e2, s2, op)
        assert ev1 == ev2 and s1.lines == s2.lines
