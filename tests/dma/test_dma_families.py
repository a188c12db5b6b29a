"""The dma-type1 and dma-iommufd checker families: BFS verdicts per variant (small bounds)."""

from __future__ import annotations

from collections import deque

import pytest

from memtypes.check.families.dma_iommufd import FAMILY as FD
from memtypes.check.families.dma_type1 import FAMILY as T1
from memtypes.explore.model import Action

ALWAYS = ("device-reads-owner-data", "host-consistent-after-unpin", "coherency-reported")


def bfs(model):
    init = model.init_states()
    parent = {s: None for s in init}
    q = deque(init)
    props = model.properties()
    viol, reached = {}, set()
    while q:
        s = q.popleft()
        for p in props:
            ok = p.check(s)
            if p.kind == "always" and not ok and p.name not in viol:
                viol[p.name] = s
            elif p.kind == "sometimes" and ok:
                reached.add(p.name)
        for a, n in model.successors(s):
            assert isinstance(a, Action)
            if n not in parent:
                parent[n] = (s, a)
                q.append(n)
    return parent, viol, reached


def trace(parent, s):
    out = []
    while parent[s] is not None:
        ps, a = parent[s]
        out.append((ps, a, s))
        s = ps
    return out[::-1]


EXPECT_T1 = {"mainline": {"device-reads-owner-data", "host-consistent-after-unpin"},
             "vfio-flush-v1": set(), "vfio-flush-reviewed": set()}
EXPECT_FD = {"mainline": {"device-reads-owner-data", "host-consistent-after-unpin"},
             "vfio-flush-v1": {"device-reads-owner-data", "host-consistent-after-unpin"},
             "vfio-flush-reviewed": set()}


@pytest.mark.parametrize("kernel", ["6.9", "5.14"])
@pytest.mark.parametrize("variant", ["mainline", "vfio-flush-v1", "vfio-flush-reviewed"])
def test_type1_family(kernel, variant):
    assert T1.applies_to(kernel, variant)
    m = T1.build(kernel, variant, dict(T1.default_params))
    parent, viol, reached = bfs(m)
    exp = set(EXPECT_T1[variant])
    if kernel == "5.14":
        exp.add("coherency-reported")          # TV24: FILE_ADD before attach, <= v6.1
    assert set(viol) == exp
    assert reached == {"device-read-happened", "page-unpinned", "nc-domain-attached"}
    for name, s in viol.items():
        steps = trace(parent, s)
        assert steps and all(isinstance(m.describe(a, b, c), str) for a, b, c in steps)
        # replaying the actions from the initial state reaches the same state
        r = m.init_states()[0]
        for _ps, a, _n in steps:
            r = m.next_state(r, a)
        assert r == s


@pytest.mark.parametrize("extra", [{}, {"destroy": True}])
@pytest.mark.parametrize("variant", ["mainline", "vfio-flush-v1", "vfio-flush-reviewed"])
def test_iommufd_family(variant, extra):
    m = FD.build("6.9", variant, {**FD.default_params, **extra})
    parent, viol, reached = bfs(m)
    assert set(viol) == EXPECT_FD[variant]
    assert reached == {"device-read-happened", "page-unpinned", "nc-domain-attached"}
    if variant == "vfio-flush-v1":
        steps = trace(parent, viol["device-reads-owner-data"])
        text = " / ".join(f"{a}: {m.describe(p, a, n)}" for p, a, n in steps)
        assert "read" in text and "=S" in text


def test_describe_lists_flushes_and_reads():
    m = T1.build("6.9", "vfio-flush-reviewed", dict(T1.default_params))
    s = m.init_states()[0]
    acts = {str(a): a for a in m.actions(s)}
    a = acts["vfio.attach(group=gnc)"]
    assert m.describe(s, a) == "F@fgsp-pre(K0,K1); F@fgsp-post(K0,K1)"
    s = m.next_state(s, a)
    a = next(x for x in m.actions(s) if x.name == "map_dma" and not x.arg("fail"))
    assert m.describe(s, a) == "zero-fill(P0); F@pin_map(P0)"
    s = m.next_state(s, a)
    a = next(x for x in m.actions(s) if x.name == "dev_read" and x.actor == "gnc")
    assert m.describe(s, a) == "gnc read P0=0; no flush"
    assert "P0[" in m.format_state(s)


def test_families_metadata_and_json_params():
    import json
    for fam in (T1, FD):
        json.dumps(dict(fam.default_params))
        assert fam.variants == ("vfio-flush-v1", "vfio-flush-reviewed")
        assert set(fam.properties) == set(ALWAYS)
        names = {p.name for p in fam.build(fam.kernels[-1], "mainline",
                                           dict(fam.default_params)).properties()}
        assert set(ALWAYS) <= names


def test_states_hashable_and_actions_deterministic():
    for fam in (T1, FD):
        m = fam.build(fam.kernels[-1], "vfio-flush-v1", dict(fam.default_params))
        s = m.init_states()[0]
        for _ in range(6):
            hash(s)
            a1, a2 = m.actions(s), m.actions(s)
            assert a1 == a2 and a1
            s = m.next_state(s, a1[0]) or s


@pytest.mark.parametrize("table", [True, False])
def test_iommufd_family_reaches_tv27_in_v1(table):
    from memtypes.explore.model import act
    m = FD.build("6.9", "vfio-flush-v1", dict(FD.default_params, table=table))
    s = m.init_states()[0]
    path = [act("iommufd", "ioas_map", ioas="A", iova=0, pages=2),
            act("iommufd", "ioas_copy", src="A", src_iova=0, pages=1, dst="B", dst_iova=0),
            act("iommufd", "hwpt_alloc", ioas="B", dev="hcc", fail="add_domain"),
            act("iommufd", "hwpt_alloc", ioas="B", dev="hnc"),
            act("hnc", "dev_read", iova=0)]
    for a in path:
        assert a in m.actions(s)
        s = m.next_state(s, a)
    s = m.to_fd(s) if table else s                       # (the table form's row, as an iommufd state)
    assert s.bad_read and s.ioas[1][3] == 0             # counter wrapped back to 0 with hnc in B
