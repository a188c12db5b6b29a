"""Symmetry reduction declared by a model (``TableModel.symmetric``: interchangeable columns,
one representative per orbit): against the same model searched without it, the same verdicts
and the same shortest-trace lengths, and the reduction factor the vector explorer reports
(states represented per state stored) is exact: the representatives' orbits add up to the
unreduced search's states.  Families: passthrough and mte (slots) and migration (a fleet's
VMs, whose unreduced model must start from every order of its VMs)."""

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


def fleet(kernel, variant="mainline", **params):
    """A migration fleet builder (the family's ``vms`` > 1) over the default params."""
    fam = {f.name: f for f in families()}["migration"]
    return lambda: fam.build(kernel, variant, dict(fam.default_params, **params))


@pytest.mark.parametrize("kernel,variant", [("6.9", "mainline"),                    # stable-memtype violated
                                            ("7.1", "mainline"),                    # fails-early violated
                                            ("7.1", "cpfn-memslot-flag")])          # nothing violated
def test_migration_fleet_two_vms(kernel, variant):
    """The fleet's VMs share nothing, so its unreduced search is the single-VM model's states
    squared, and its representatives are the unordered pairs: the same verdicts and
    shortest-trace lengths with and without the reduction, and the orbits add up exactly."""
    one = explore(fleet(kernel, variant, vms=1)(), backend="vector").states
    r, u, us = reduced_and_not(fleet(kernel, variant, vms=2))
    assert u.states == us.states == r.orbits == one ** 2
    assert r.states == one * (one + 1) // 2
    assert r.symmetry_factor == pytest.approx(2 * one / (one + 1))
    assert lengths(r) == lengths(u) == lengths(us)
    assert set(r.violations) == set(u.violations) and set(r.reached) == set(u.reached)
    assert r.reached


@pytest.mark.parametrize("bits", [None, 3])
def test_migration_fleet_three_vms(monkeypatch, bits):
    """Three VMs (orbits of sizes 1, 3 and 6), packed narrow and forced wide: the
    representatives are the multisets of single-VM states, their orbits the ordered triples."""
    if bits is not None:
        from memtypes.explore import vector
        monkeypatch.setattr(vector, "WORD_BITS", bits)
    small = dict(hosts=["grace"], regions=["anon", "vfio-pci-bar"])
    one = explore(fleet("6.9", vms=1, **small)(), backend="vector").states
    r, u, us = reduced_and_not(fleet("6.9", vms=3, **small))
    assert u.states == us.states == r.orbits == one ** 3
    assert r.states == one * (one + 1) * (one + 2) // 6
    assert lengths(r) == lengths(u) == lengths(us) and r.violations


def test_migration_fleet_initial_states_are_closed_under_swapping_vms():
    """Without its declaration the fleet starts from every order of its VMs (it used to start
    from the ascending ones only, so its 'unreduced' search missed every state whose VMs
    descend: 10,252 states at 7.1 and 2 VMs for 19,600); with it, one row per orbit."""
    m, u = fleet("7.1", vms=2)(), fleet("7.1", vms=2)()
    u.symmetric = ()
    ui, mi = u.init_states(), m.init_states()
    assert {(b, a) for a, b in ui} == set(ui) and len(set(ui)) == len(ui)
    assert {m.canon(s) for s in ui} == set(mi) and len(set(mi)) == len(mi)
    assert len(ui) == len(m.configs) ** 2 and len(mi) == len(m.configs) * (len(m.configs) + 1) // 2
