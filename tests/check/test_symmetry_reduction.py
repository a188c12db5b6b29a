"""Symmetry reduction declared by a model (``TableModel.symmetric``: interchangeable columns,
one representative per orbit): against the same model searched without it, the same verdicts
and the same shortest-trace lengths, and the reduction factor the vector explorer reports
(states represented per state stored) is exact: the representatives' orbits add up to the
unreduced search's states."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy")

from memtypes.check.registry import families                                  # noqa: E402
from memtypes.explore import explore                                          # noqa: E402
from memtypes.explore.toy import TableCounters                                # noqa: E402


def lengths(r):
    return ({k: len(t) for k, t in r.violations.items()}, {k: len(t) for k, t in r.reached.items()})


def reduced_and_not(build):
    m, u = build(), build()
    assert m.symmetric
    u.symmetric = ()                       # the same model, every column apart
    return explore(m, backend="vector"), explore(u, backend="vector"), explore(u, backend="serial")


def test_counters_pairs():
    r, u, us = reduced_and_not(lambda: TableCounters(6, 3, bad=7, symmetric=True))
    assert (r.states, u.states, r.orbits) == (10 ** 3, 4 ** 6, 4 ** 6)
    assert r.symmetry_factor == pytest.approx(4.096)
    assert lengths(r) == lengths(u) == lengths(us) and r.violations
    assert u.orbits is None and u.symmetry_factor is None


@pytest.mark.parametrize("family,kernel,params", [("passthrough", "6.9", {"slots": 2}),
                                                  ("passthrough", "6.17", {"slots": 2}),
                                                  ("mte", "7.1", {"slots": 2})])
def test_families_with_interchangeable_slots(family, kernel, params):
    fam = {f.name: f for f in families()}[family]
    p = dict(fam.default_params, **params)
    r, u, us = reduced_and_not(lambda: fam.build(kernel, "mainline", dict(p)))
    assert u.states == us.states and r.orbits == u.states
    assert 1.5 < r.symmetry_factor < 2          # two slots: at most two states per orbit
    assert lengths(r) == lengths(u) == lengths(us)
    assert set(r.violations) == set(u.violations) and set(r.reached) == set(u.reached)
