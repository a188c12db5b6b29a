"""kernel-vfio.md section 7 vectors for iommufd (TV20-TV23, TV27) and KVM (TV24, TV25)."""

from __future__ import annotations

import pytest

from memtypes.linux.dma import Group, flushes, iommufd, make_env, reads, run, x86_kvm
from memtypes.linux.version import parse_version

A, B, C = "vfio-upstream", "vfio-flush-v1", "vfio-flush-reviewed"
ALL = (A, B, C)


def go(v, groups, ops, npages=8, ioases=("A", "B"), kernel="6.9", init=None):
    env = make_env(v, kernel, groups=groups, npages=npages)
    s0 = iommufd.initial(env, ioases, init)
    steps = run(env, ops, state=s0)
    evs = [e for st in steps for e in st.events]
    return env, steps, flushes(evs), reads(evs)


@pytest.mark.parametrize("v", ALL)
def test_tv20_map_into_nc(v):
    env, st, fl, rd = go(v, [Group("h", nc=True)], [("hwpt_alloc", "A", "h"),
                                                    ("ioas_map", "A", 0, 0, 1),
                                                    ("dev_read", "h", 0)])
    if v == A:
        assert fl == [] and rd == [("h", "P0", "S")]
    else:
        assert fl == [("F@fill_domains", ("P0",))] and rd == [("h", "P0", "0")]
        assert st[1].state.pages[0][3] is True
    if v != A:
        assert st[-1].state.ioas[0][3] == 1


@pytest.mark.parametrize("v", ALL)
def test_tv21_new_hwpts_on_populated_ioas(v):
    g = [Group("h1"), Group("h2", nc=True), Group("h3", nc=True)]
    env, st, fl, rd = go(v, g, [("hwpt_alloc", "A", "h1"), ("ioas_map", "A", 0, 0, 1),
                                ("hwpt_alloc", "A", "h2"), ("hwpt_alloc", "A", "h3"),
                                ("dev_read", "h2", 0), ("dev_read", "h3", 0)])
    exp = {A: [], B: [("F@fill_domain", ("P0",))],
           C: [("F@fill_domain", ("P0",)), ("F@fill_domain", ("P0",))]}[v]
    assert fl == exp
    assert [r[2] for r in rd] == (["S", "S"] if v == A else ["0", "0"])


@pytest.mark.parametrize("v", ALL)
def test_tv22_sub_slice_copy(v):
    g = [Group("h1"), Group("h2", nc=True)]
    env, st, fl, rd = go(v, g, [("hwpt_alloc", "A", "h1"), ("ioas_map", "A", 0, 0, 8),
                                ("hwpt_alloc", "B", "h2"), ("ioas_copy", "A", 0, 4, "B", 0),
                                ("ioas_copy", "A", 4, 4, "B", 4), ("dev_read", "h2", 4)])
    lo, hi = tuple(f"P{i}" for i in range(4)), tuple(f"P{i}" for i in range(4, 8))
    assert len(st[-1].state.pages) == 1                 # one pages object, three areas
    if v == A:
        assert fl == [] and rd == [("h2", "P4", "S")]
    elif v == B:
        assert fl == [("F@fill_domains", lo)] and rd == [("h2", "P4", "S")]
        assert st[-1].state.bad_read
    else:
        assert fl == [("F@fill_domains", lo), ("F@fill_domains", hi)]
        assert rd == [("h2", "P4", "0")]


@pytest.mark.parametrize("v", ALL)
def test_tv23_nc_hwpt_destroyed_before_unmap(v):
    g = [Group("h1"), Group("h2", nc=True)]
    env, st, fl, rd = go(v, g, [("hwpt_alloc", "A", "h1"), ("hwpt_alloc", "A", "h2"),
                                ("ioas_map", "A", 0, 0, 1), ("guest_read", 0),
                                ("dev_write", "h2", 0, "B"), ("hwpt_destroy", "h2"),
                                ("ioas_unmap", "A", 0, 1), ("host_read", 0)], init={0: "A"})
    assert st[5].events == ()                            # destroy: unmap only, still pinned
    if v == A:
        assert fl == [] and rd[-1] == ("host", "P0", "A->B")
    else:
        assert fl == [("F@fill_domains", ("P0",)), ("F@batch_unpin", ("P0",))]
        assert rd[-1] == ("host", "P0", "B")


@pytest.mark.parametrize("v", ALL)
def test_tv27_counter_underflow(v):
    g = [Group("h1"), Group("h3", nc=True)]
    env, st, fl, rd = go(v, g, [("ioas_map", "A", 0, 0, 1), ("hwpt_alloc", "A", "h1",
                                                            {"fail": True}),
                                ("hwpt_alloc", "A", "h3"), ("ioas_map", "A", 1, 1, 1),
                                ("dev_read", "h3", 1)])
    cnt = [s.state.ioas[0][3] for s in st]
    if v == A:
        assert fl == [] and rd == [("h3", "P1", "S")]
    elif v == B:
        assert cnt[1] == (1 << 32) - 1 and cnt[2] == 0
        assert fl == [] and rd == [("h3", "P1", "S")]
    else:
        assert cnt[1:4] == [0, 1, 1]
        assert fl == [("F@fill_domain", ("P0",)), ("F@fill_domains", ("P1",))]
        assert rd == [("h3", "P1", "0")]


@pytest.mark.parametrize("kernel,expect", [("6.1", "0"), ("5.19", "0"), ("6.2", "G"),
                                           ("6.9", "G")])
@pytest.mark.parametrize("v", ALL)
def test_tv24_kvm_vfio_ordering(v, kernel, expect):
    env = make_env(v, kernel, groups=[Group("g1", nc=True)], npages=1)
    steps = run(env, [("kvm_add", "g1"), ("attach", "g1"), ("map", 0, 1),
                      ("guest_write", 0, "G"), ("wbinvd",), ("dev_read", "g1", 0)])
    assert steps[-1].state.kvm_nc == (expect == "G")
    assert ("wbinvd", expect == "G") in steps[4].events
    assert reads(steps[-1].events) == [("g1", "P0", expect if v != A or expect == "G" else "S")]


@pytest.mark.parametrize("kernel", ["6.1", "6.9"])
def test_tv24_normal_qemu_order_registers(kernel):
    env = make_env("vfio-upstream", kernel, groups=[Group("g1", nc=True)], npages=1)
    steps = run(env, [("attach", "g1"), ("kvm_add", "g1")])
    assert steps[-1].events == (("kvm", "register"),)


@pytest.mark.parametrize("kernel,honoured", [("6.6", False), ("6.7", True), ("6.10", True),
                                             ("6.11", True), ("6.15", True), ("6.16", True)])
def test_tv25_ept_memtype_after_hotplug(kernel, honoured):
    kv = parse_version(kernel)
    assert x86_kvm.guest_pat_honoured_after_hotplug(kv, faulted_before=True) is honoured
    ln = ("old", "I", "")
    nl = x86_kvm.guest_store(ln, "v", honoured, "WC")
    assert (nl[0] == "v") is honoured                   # NS read sees v only if PAT honoured


@pytest.mark.parametrize("kernel,has_nc,ipat", [("6.6", False, True), ("6.6", True, False),
                                                ("6.12", False, True), ("6.12", True, False),
                                                ("6.16", False, True), ("6.16", True, False)])
def test_ept_ipat_table(kernel, has_nc, ipat):
    assert x86_kvm.ept_memtype(parse_version(kernel), has_nc)[1] is ipat


def test_wbinvd_nop_without_nc():
    lines = (("S", "D", "G"),)
    assert x86_kvm.guest_wbinvd(lines, False, 1)[0] == lines
    assert x86_kvm.guest_wbinvd(lines, True, 1)[0] == (("G", "I", ""),)
