"""The table-driven form of dma-iommufd against the model over linux/dma/iommufd.py itself: the
same reachable states (as iommufd states), transitions, depth, verdicts and shortest traces, for
every kernel and variant on the defaults, for each of the family's switches on one job, and at
three pages (where the walks meet several areas and pages objects) on the vectorised explorer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from memtypes.check.families import dma_iommufd as F
from memtypes.check.families.dma_iommufd_table import IommufdTable
from memtypes.check.families.dma_type1 import DmaModel
from memtypes.explore import explore, replay
from memtypes.explore.bench import reachable_states

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dma_compare import summary  # noqa: E402


def both(kernel, variant, **params):
    p = dict(F.FAMILY.default_params, **params)
    ref, tab = F.build(kernel, variant, dict(p, table=False)), F.build(kernel, variant, p)
    assert isinstance(ref, DmaModel) and isinstance(tab, IommufdTable)
    return ref, tab


def agree(ref, tab, backend="serial"):
    a = explore(ref, backend="serial")
    keep: dict = {}
    b = explore(tab, backend=backend, **({"_keep": keep} if backend == "vector" else {}))
    assert summary(a) == summary(b)
    rows = keep["engine"].decode_many(keep["fps"]) if backend == "vector" else reachable_states(tab)
    assert set(reachable_states(ref)) == {tab.to_fd(r) for r in rows}
    if backend == "serial":
        for t in list(b.violations.values()) + list(b.reached.values()):   # traces replay on both
            assert [tab.to_fd(s) for s in t.states] == replay(ref, t.init_index, t.actions)
    return a


JOBS = [(k, v) for k in F.KERNELS for v in ("mainline",) + F.VARIANTS]


@pytest.mark.parametrize("kernel,variant", JOBS)
def test_defaults_same_as_the_iommufd_model(kernel, variant):
    agree(*both(kernel, variant))


@pytest.mark.parametrize("kernel,variant,params", [
    ("6.2", "vfio-flush-v1", {"tv26": True}),                       # in-place upgrade, SNP=0 PTEs
    ("6.9", "vfio-flush-reviewed", {"tv26": True}),                 # has_mappings refuses it
    ("6.2", "mainline", {"tv26": True, "stage": "first"}),
    ("6.9", "vfio-flush-v1", {"destroy": True, "map_fail": True}),
    ("6.2", "mainline", {"cc_reads": True, "guest_write": True}),
    ("6.2", "vfio-flush-reviewed", {"data_pages": [0, 1]}),
    ("6.9", "vfio-flush-v1", {"kvm": False, "fail": False}),
])
def test_switches_same_as_the_iommufd_model(kernel, variant, params):
    agree(*both(kernel, variant, **params))


def test_three_pages_vector_same_as_the_iommufd_model():
    """Three pages: v1's per-pages-object bit over several sub-slices (TV22) and pages objects
    kept alive by B's copies after A's unmap.  (One job: the iommufd model takes seconds at
    three pages; the switches are compared at two pages above.)"""
    pytest.importorskip("numpy")
    ref, tab = both("6.9", "vfio-flush-v1", pages=3)
    a = agree(ref, tab, backend="vector")
    assert a.states > 20_000 and "device-reads-owner-data" in a.violations


def test_three_pages_table_form_same_on_both_explorers():
    pytest.importorskip("numpy")
    p = dict(F.FAMILY.default_params, pages=3, tv26=True)
    a = explore(F.build("6.9", "mainline", p), backend="serial")
    b = explore(F.build("6.9", "mainline", p), backend="vector")
    assert summary(a) == summary(b) and a.states > 20_000


def test_an_op_that_changes_an_undeclared_column_is_refused(monkeypatch):
    from memtypes.check.families import dma_iommufd_table as T
    real = T._local

    def narrow(name, page):
        reads, writes = real(name, page)
        return (reads, ()) if name == "guest_read" else (reads, writes)
    monkeypatch.setattr(T, "_local", narrow)
    _, tab = both("6.9", "mainline")
    with pytest.raises(AssertionError, match="undeclared column"):
        explore(tab, backend="serial")


def test_describe_and_format_state_are_the_iommufd_model_s():
    ref, tab = both("6.2", "vfio-flush-v1", tv26=True)
    r = explore(tab, backend="serial")
    assert r.violations
    for t in r.violations.values():
        for s, a, n in zip(t.states, t.actions, t.states[1:]):
            assert tab.describe(s, a, n) == ref.describe(tab.to_fd(s), a, tab.to_fd(n))
            assert tab.format_state(s) == ref.format_state(tab.to_fd(s))


def test_alphabets_the_table_form_does_not_model_are_refused():
    from memtypes.explore.model import act
    name, env, s0, alpha, props = F.parts("6.9", "mainline", dict(F.FAMILY.default_params))
    for op in [("ioas_map", "B", 0, 0, 2), ("ioas_map", "A", 1, 0, 1), ("ioas_unmap", "A", 0, 1),
               ("ioas_copy", "A", 0, 1, "B", 1), ("wbinvd",)]:
        with pytest.raises(ValueError, match="has no op"):
            IommufdTable(name, env, s0, alpha + [(act("x", "y"), op, lambda s: True)], props)
    twice = [(act("iommufd", "hwpt_alloc", ioas="B", dev="hcc"), ("hwpt_alloc", "B", "hcc"),
              lambda s: True)]
    with pytest.raises(ValueError, match="two IOASes"):
        IommufdTable(name, env, s0, alpha + twice, props)


@settings(max_examples=40, deadline=None)
@given(kernel=st.sampled_from(F.KERNELS), variant=st.sampled_from(("mainline",) + F.VARIANTS),
       tv26=st.booleans(), destroy=st.booleans(), map_fail=st.booleans(),
       picks=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=40))
def test_random_walks_at_four_pages_match_the_iommufd_model(kernel, variant, tv26, destroy, map_fail,
                                                              picks):
    """Four pages are beyond an exhaustive comparison in a test: walk both forms along the same
    random enabled actions instead, and compare the states and the enabled actions at each step."""
    ref, tab = both(kernel, variant, pages=4, tv26=tv26, destroy=destroy, map_fail=map_fail,
                    data_pages=[0, 3], guest_write=True)
    s, t = ref.init_states()[0], tab.init_states()[0]
    for k in picks:
        a1 = dict(ref.successors(s))
        a2 = dict(tab.successors(t))
        assert set(a1) == set(a2)
        assert all(tab.to_fd(a2[a]) == a1[a] for a in a1)
        if not a1:
            break
        a = sorted(a1, key=str)[k % len(a1)]
        s, t = a1[a], a2[a]
