"""type1 emulated (mdev) groups: VFIO_PIN_PAGES / VFIO_UNPIN_PAGES and UNMAP_DMA with external
pins (kernel-vfio.md 3.1 pfn_list, 3.2)."""

from __future__ import annotations

import pytest

from memtypes.check.families.dma_type1 import FAMILY as T1
from memtypes.linux.dma import Group, flushes, make_env, reads, run

A, B, C = "vfio-upstream", "vfio-flush-v1", "vfio-flush-reviewed"
GROUPS = (Group("m", emulated=True), Group("gnc", nc=True))


def go(ops, v=C, npages=2):
    env = make_env(v, "6.9", groups=GROUPS, npages=npages)
    return env, run(env, ops)


def test_pin_refcount_one_page_pin():
    env, st = go([("attach", "m"), ("map", 0, 2), ("pin_pages", "m", 0), ("pin_pages", "m", 0),
                  ("unpin_pages", "m", 0)])
    assert st[1].state.pins == (0, 0)                  # no IOMMU domain: nothing pinned (TV13)
    assert st[2].events == (("zero", ("P0",)),)        # the external pin faults the page in
    assert (st[2].state.vpfn, st[2].state.pins) == ((1, 0), (1, 0))
    assert (st[3].state.vpfn, st[3].state.pins) == ((2, 0), (1, 0))   # ref++, no second pin
    assert (st[4].state.vpfn, st[4].state.pins) == ((1, 0), (1, 0))
    assert all(not x.flushes for x in st)              # emulated access is CPU-coherent


def test_pin_errors():
    env, st = go([("attach", "gnc"), ("map", 0, 1), ("pin_pages", "m", 0)])
    assert st[-1].errors and st[-1].errors[0][1] == "EINVAL"    # no emulated device
    env, st = go([("attach", "m"), ("pin_pages", "m", 1), ("unpin_pages", "m", 0)])
    assert [x.errors[0][1] for x in st[1:]] == ["EINVAL", "EINVAL"]


def test_host_reuse_only_after_last_unpin():
    env, st = go([("attach", "m"), ("map", 0, 1), ("pin_pages", "m", 0), ("pin_pages", "m", 0),
                  ("unpin_pages", "m", 0)])
    s = st[-1].state
    assert s.pins[0] == 1 and not s.unpinned           # still held by the vpfn
    s2 = run(env, [("unpin_pages", "m", 0)], state=s)[-1].state
    assert s2.pins[0] == 0 and s2.vpfn[0] == 0 and s2.unpinned


@pytest.mark.parametrize("v", [A, B, C])
def test_unmap_notifies_then_unmaps(v):
    env, st = go([("attach", "gnc"), ("attach", "m"), ("map", 0, 1), ("pin_pages", "m", 0),
                  ("pin_pages", "m", 0), ("unmap", 0, 1)], v=v)
    assert st[4].state.pins[0] == 2                     # IOMMU pin + one vpfn pin
    ev = st[-1].events
    assert ev[0] == ("notify", ("P0",))
    fl = flushes(ev)
    assert fl == ([] if v == A else [("F@unpin", ("P0",))])
    if fl:
        assert ev.index(fl[0]) > 0                      # notify first, then vfio_remove_dma
    s = st[-1].state
    assert s.pins == (0, 0) and s.vpfn == (0, 0) and s.dmas == () and s.unpinned


def test_unmap_without_external_pins_does_not_notify():
    env, st = go([("attach", "gnc"), ("attach", "m"), ("map", 0, 1), ("unmap", 0, 1)])
    assert not any(e[0] == "notify" for e in st[-1].events)


def test_emulated_read_is_coherent_and_detach_release_drop_pins():
    env, st = go([("attach", "m"), ("map", 0, 1), ("pin_pages", "m", 0), ("guest_write", 0, "G"),
                  ("dev_read", "m", 0), ("detach", "m")])
    assert reads(st[4].events) == [("m", "P0", "G")]   # through the CPU: the cache value
    assert st[-1].state.pins == (0, 0) and st[-1].state.vpfn == (0, 0)
    env, st = go([("attach", "m"), ("attach", "gnc"), ("map", 0, 1), ("pin_pages", "m", 0),
                  ("release",)])
    assert st[-1].state.pins == (0, 0) and st[-1].state.vpfn == (0, 0)


def test_detach_last_domain_keeps_external_pin():
    # unmap_unpin_reaccount: the IOMMU pin goes (funnel flush), the vpfn pin stays
    env, st = go([("attach", "m"), ("attach", "gnc"), ("map", 0, 1), ("pin_pages", "m", 0),
                  ("detach", "gnc")])
    assert flushes(st[-1].events) == [("F@unpin", ("P0",))]
    assert st[-1].state.pins[0] == 1 and st[-1].state.vpfn[0] == 1


def test_family_emulated_param():
    from collections import deque
    assert T1.default_params["emulated"] is False
    for variant, bad in (("mainline", True), ("vfio-flush-reviewed", False)):
        m = T1.build("6.9", variant, {**T1.default_params, "emulated": True})
        m0 = T1.build("6.9", variant, dict(T1.default_params))
        counts = []
        for mm in (m, m0):
            init = mm.init_states()
            seen, q, viol, reached = set(init), deque(init), set(), set()
            while q:
                s = q.popleft()
                for p in mm.properties():
                    ok = p.check(s)
                    if p.kind == "always" and not ok:
                        viol.add(p.name)
                    elif p.kind == "sometimes" and ok:
                        reached.add(p.name)
                for _a, n in mm.successors(s):
                    if n not in seen:
                        seen.add(n)
                        q.append(n)
            counts.append((len(seen), viol, reached))
        (n1, v1, r1), (n0, v0, _r0) = counts
        assert n1 > n0 and v1 == v0
        assert "external-pin-held" in r1
        assert ("device-reads-owner-data" in v1) == bad
