"""The table-driven form of dma-type1 against the model over linux/dma/type1.py itself: for
every kernel and variant, the same reachable states (as type1 states), transitions, depth,
verdicts and shortest traces, on the serial explorer at one page and on both explorers at two
pages (where attach, detach and release walk more than one dma)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from memtypes.check.families import dma_type1 as F
from memtypes.check.families.dma_type1 import DmaModel
from memtypes.check.families.dma_type1_table import Type1Table
from memtypes.explore import explore, replay
from memtypes.explore.bench import reachable_states

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dma_compare import summary  # noqa: E402


def both(kernel, variant, **params):
    p = dict(F.FAMILY.default_params, **params)
    ref, tab = F.build(kernel, variant, dict(p, table=False)), F.build(kernel, variant, p)
    assert isinstance(ref, DmaModel) and isinstance(tab, Type1Table)
    return ref, tab, p


def same_states(ref, tab):
    assert set(reachable_states(ref)) == {tab.to_t1(r) for r in reachable_states(tab)}


JOBS = [(k, v) for k in F.KERNELS for v in ("mainline",) + F.VARIANTS]


@pytest.mark.parametrize("kernel,variant", JOBS)
def test_one_page_same_as_the_type1_model(kernel, variant):
    ref, tab, _ = both(kernel, variant)
    a, b = explore(ref, backend="serial"), explore(tab, backend="serial")
    assert summary(a) == summary(b)
    same_states(ref, tab)
    for t in list(b.violations.values()) + list(b.reached.values()):   # traces replay on both
        assert [tab.to_t1(s) for s in t.states] == replay(ref, t.init_index, t.actions)


@pytest.mark.parametrize("kernel,variant", [("6.9", "vfio-flush-v1")])
def test_two_pages_vector_same_as_the_type1_model(kernel, variant):
    """(One job: the type1 model takes seconds at two pages; every job is compared at one page
    above, and the two explorers on the table form at two pages below.)"""
    pytest.importorskip("numpy")
    ref, tab, p = both(kernel, variant, pages=2)
    a = explore(ref, backend="serial")
    keep: dict = {}
    c = explore(tab, backend="vector", _keep=keep)
    assert summary(a) == summary(c)
    assert a.states > 30_000
    rows = keep["engine"].decode_many(keep["fps"])
    assert set(reachable_states(ref)) == {tab.to_t1(r) for r in rows}


@pytest.mark.parametrize("kernel,variant", [("5.14", "mainline"), ("6.2", "vfio-flush-reviewed")])
def test_two_pages_table_form_same_on_both_explorers(kernel, variant):
    pytest.importorskip("numpy")
    p = dict(F.FAMILY.default_params, pages=2)
    a = explore(F.build(kernel, variant, p), backend="serial")
    b = explore(F.build(kernel, variant, p), backend="vector")
    assert summary(a) == summary(b) and a.states > 30_000


def test_probe_and_failures_off_and_kvm_off():
    ref, tab, _ = both("6.2", "vfio-flush-v1", probe=False, fail=False, kvm=False)
    assert summary(explore(ref, backend="serial")) == summary(explore(tab, backend="serial"))
    same_states(ref, tab)


def test_emulated_groups_use_the_type1_model():
    assert isinstance(F.build("6.9", "mainline", dict(F.FAMILY.default_params, emulated=True)), DmaModel)


def test_an_op_that_changes_an_undeclared_column_is_refused(monkeypatch):
    """The single-page ops are the driver's functions on a rebuilt state: one that writes
    outside what it declares is a model error, not a silent loss."""
    from memtypes.check.families import dma_type1_table as T
    real = T._local

    def narrow(name, page):
        reads, writes = real(name, page)
        if name == "guest_write":
            return reads, ()
        return reads, writes
    monkeypatch.setattr(T, "_local", narrow)
    _, tab, _ = both("6.9", "mainline")
    with pytest.raises(AssertionError, match="undeclared column"):
        explore(tab, backend="serial")


def test_describe_and_format_state_are_the_type1_model_s():
    ref, tab, _ = both("6.9", "vfio-flush-v1")
    r = explore(tab, backend="serial")
    t = r.violations["host-consistent-after-unpin"] if "host-consistent-after-unpin" in r.violations \
        else next(iter(r.reached.values()))
    for s, a, n in zip(t.states, t.actions, t.states[1:]):
        assert tab.describe(s, a, n) == ref.describe(tab.to_t1(s), a, tab.to_t1(n))
        assert tab.format_state(s) == ref.format_state(tab.to_t1(s))


def test_settings_the_table_form_does_not_model_are_refused():
    """Groups that could share a domain, a probe that writes, an op it has no columns for."""
    from memtypes.linux.dma import Group, make_env
    from memtypes.explore.model import act
    name, env, s0, alpha, props = F.parts("6.9", "mainline", dict(F.FAMILY.default_params))
    same_kind = make_env("vfio-upstream", "6.9", npages=1, groups=(Group("gcc"), Group("gnc")))
    with pytest.raises(ValueError, match="never share a domain"):
        Type1Table(name, same_kind, alpha, props)
    writes = [(act("vfio", "attach", group="gnc"), ("attach", "gnc", {"probe": "X"}), lambda s: True)]
    with pytest.raises(ValueError, match="cannot attach"):
        Type1Table(name, env, writes, props)
    wb = [(act("guest", "wbinvd"), ("wbinvd",), lambda s: True)]
    with pytest.raises(ValueError, match="no op 'wbinvd'"):
        Type1Table(name, env, wb, props)
