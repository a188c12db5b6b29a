"""The table-driven families (passthrough, mte, migration) give the same answers on both
explorers, for every era and variant at their defaults and on larger instances; the
table-driven contract (writes among reads, domains closed under the moves) holds for them."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")

from memtypes.check.families import migration, mte, passthrough      # noqa: E402
from memtypes.explore import explore, vector                          # noqa: E402
from memtypes.explore.table import TableModel                         # noqa: E402

FAMS = (passthrough.FAMILY, mte.FAMILY, migration.FAMILY)


def summary(r):
    return (r.states, r.depth, r.transitions, r.complete,
            {n: t.actions for n, t in r.violations.items()},
            {n: t.actions for n, t in r.reached.items()})


def jobs():
    for fam in FAMS:
        for k in fam.kernels:
            for v in ("mainline",) + fam.variants:
                if fam.applies_to(k, v):
                    yield pytest.param(fam, k, v, id=f"{fam.name}-{k}-{v}")


@pytest.mark.parametrize("fam,kernel,variant", list(jobs()))
def test_every_job_same_on_both_explorers(fam, kernel, variant):
    m = fam.build(kernel, variant, dict(fam.default_params))
    assert isinstance(m, TableModel)
    a = explore(m, backend="serial")
    b = explore(fam.build(kernel, variant, dict(fam.default_params)), backend="vector")
    assert summary(a) == summary(b)


@pytest.mark.parametrize("fam,kernel,variant", [(passthrough.FAMILY, "6.9", "mainline"),
                                                (mte.FAMILY, "6.18", "mainline"),
                                                (passthrough.FAMILY, "6.17", "cpfn-memslot-flag")])
def test_two_slots_same_on_both_explorers(fam, kernel, variant):
    p = dict(fam.default_params, slots=2)
    a = explore(fam.build(kernel, variant, p), backend="serial")
    b = explore(fam.build(kernel, variant, p), backend="vector")
    assert summary(a) == summary(b)
    assert a.states > 1000


def test_three_slots_on_inferred_domains(monkeypatch):
    """Three interchangeable slots, packed over the inferred domains (as ``memtypes bench``
    runs the family), on a small region set so that the serial run stays short."""
    monkeypatch.setattr(vector, "DENSE_CODES", 1 << 10)
    p = {"hosts": ["grace", "armv8.5-mte"], "regions": ["anon", "vfio-pci-bar", "nvgrace-usemem"], "slots": 3}
    a = explore(mte.build("6.9", "mainline", p), backend="serial")
    m = mte.build("6.9", "mainline", p)
    b = explore(m, backend="vector")
    assert summary(a) == summary(b)
    doms = m.value_domains()
    assert len(doms[passthrough.SLOT0]) < len(m.columns[passthrough.SLOT0].values)


@pytest.mark.parametrize("fam", FAMS, ids=lambda f: f.name)
def test_inferred_domains_cover_every_reachable_value(fam):
    m = fam.build(fam.kernels[-1], "mainline", dict(fam.default_params))
    keep: dict = {}
    explore(m, backend="serial", _keep=keep)
    seen = set()
    todo = list(m.init_states())
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(m.next_states(s))
    doms = m.value_domains()
    for c, col in enumerate(m.columns):
        assert {s[c] for s in seen} <= set(doms[c]), col.name


@pytest.mark.parametrize("fam", FAMS, ids=lambda f: f.name)
def test_groups_read_what_they_write(fam):
    m = fam.build(fam.kernels[-1], "mainline", dict(fam.default_params))
    for g in m.groups:
        assert set(g.writes) <= set(g.reads), g.name


def test_slots_param_bounds():
    from memtypes.errors import InputError
    for bad in (0, 6, "2", True):
        with pytest.raises(InputError):
            passthrough.build("6.9", "mainline", {"slots": bad})
    assert passthrough.build("6.9", "mainline", {"slots": 5}).nslots == 5
