"""The migration family: state counts, verdicts and counterexamples per (kernel, variant)."""

from __future__ import annotations


import pytest

from memtypes.check import registry
from memtypes.check.families.migration import FAMILY, build
from memtypes.check.runner import Job, plan, run_job
from memtypes.errors import InputError

PROPS = ("migration-fails-early", "memtype-stable-across-migration")

# (kernel, variant) -> (states, fails-early, memtype-stable)
EXPECTED = {
    ("5.13", "mainline"): (64, "holds", "holds"),
    ("5.14", "mainline"): (128, "holds", "holds"),
    ("6.2", "mainline"): (128, "holds", "holds"),
    ("6.9", "mainline"): (152, "holds", "violated"),       # vfio BAR 6.2 DEVICE -> 6.9 NC
    ("6.17", "mainline"): (170, "violated", "violated"),   # MIXEDMAP late -EFAULT; usemem DEVICE -> NORMAL
    ("6.18", "mainline"): (140, "violated", "holds"),
    ("7.1", "mainline"): (140, "violated", "holds"),
    ("6.17", "cpfn-memslot-flag"): (200, "holds", "holds"),
    ("7.1", "cacheable-pfnmap-no-fwb-check"): (208, "holds", "holds"),
}


def job(kernel, variant="mainline", params=None):
    return run_job(FAMILY, Job("migration", kernel, variant), {**FAMILY.default_params, **(params or {})},
                   max_depth=None, max_states=50_000, props=PROPS)


def test_registered():
    assert registry.family("migration") is FAMILY
    assert set(FAMILY.properties) == set(PROPS)


def test_plan_rows():
    labels = [j.label for j in plan([FAMILY])]
    assert labels[:4] == ["5.13", "5.14", "6.2", "6.9"]
    assert "6.9+cpfn-memslot-flag" in labels and "6.2+cpfn-memslot-flag" not in labels
    assert "5.14+cacheable-pfnmap-no-fwb-check" not in labels


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_expected_verdicts(key):
    r = job(*key)
    states, fe, ms = EXPECTED[key]
    v = {p.property: p.verdict for p in r.results}
    assert (r.states, v[PROPS[0]], v[PROPS[1]]) == (states, fe, ms)
    assert r.complete and all(r.sometimes.values())


def test_counterexamples_617():
    r = job("6.17")
    by = {p.property: p for p in r.results}
    fe = by["migration-fails-early"]
    assert [s["action"] for s in fe.trace] == ["create_vm", "create_memslots", "resume", "access"]
    assert "mixedmap-cacheable" in fe.trace[-1]["describe"] and "-EFAULT" in fe.trace[-1]["describe"]
    assert "armv8.0 6.17" in fe.trace[-1]["describe"]
    ms = by["memtype-stable-across-migration"]
    assert "nvgrace-usemem: grace 6.9 (S2 DEVICE) -> grace 6.17" in ms.trace[-1]["describe"]
    assert "NORMAL" in ms.trace[-1]["describe"]


def test_checked_path_is_refused_early():
    m = build("6.17", "mainline", FAMILY.default_params)
    # every state reached after vmm.check_caps never fails after resume
    seen, todo = set(), [s for s in m.init_states()]
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        for a, n in m.successors(s):
            todo.append(n)
    assert any(s[1] == 1 and s[2] == 6 for s in seen)          # refused at the cap check
    assert not any(s[1] == 1 and s[2] == 7 for s in seen)      # never a late failure when checked


def test_params_small_and_guest_s1():
    r = job("6.17", params={"hosts": ["grace"], "regions": ["anon"]})
    assert [p.verdict for p in r.results] == ["holds", "holds"]
    r = job("6.17", params={"hosts": ["grace", "armv8.0"], "regions": ["anon"], "guest_s1": ["Normal-NC"]})
    assert {p.property: p.verdict for p in r.results}["memtype-stable-across-migration"] == "violated"


def test_mte_param():
    params = {"hosts": ["armv8.5-mte", "grace"], "regions": ["anon"], "mte": [True]}
    r = job("6.9", params=params)
    v = {p.property: p.verdict for p in r.results}
    assert v == {"migration-fails-early": "holds", "memtype-stable-across-migration": "holds"}
    m = build("6.9", "mainline", params)
    # the MTE VM only starts on the MTE host
    assert {(c.src, c.dst) for c in m.configs} == {("armv8.5-mte", "armv8.5-mte"), ("armv8.5-mte", "grace")}
    names = set()
    todo, seen = list(m.init_states()), set()
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        for a, n in m.successors(s):
            names.add(a.name)
            todo.append(n)
            if a.name == "create_vm" and m.configs[s[0]].dst == "grace":
                assert n[2] == 6                                   # refused at KVM_ENABLE_CAP
            if a.name == "check_caps" and m.configs[s[0]].dst == "grace":
                assert n[2] == 6                                   # refused at the cap 205 check
    assert "restore_tags" in names


def test_bad_region_param():
    with pytest.raises(InputError):
        build("6.17", "mainline", {"regions": ["nope"]})


def test_describe_and_format():
    m = build("6.17", "mainline", FAMILY.default_params)
    s = m.init_states()[0]
    a, n = next(iter(m.successors(s)))
    assert isinstance(m.describe(s, a, n), str) and "->" in m.format_state(s)


@pytest.mark.parametrize("kernel,variant", [("6.9", "mainline"), ("6.17", "mainline"),
                                            ("7.1", "cacheable-pfnmap-no-fwb-check")])
def test_a_fleet_of_independent_vms_is_every_multiset_of_single_vm_states(kernel, variant):
    """``vms=2``: two VMs interleaved, interchangeable.  They share nothing, so the reachable
    states are exactly the unordered pairs of one VM's reachable states, the verdicts are one
    VM's, and the shortest counterexample moves one VM only, as long as one VM's."""
    from memtypes.explore import explore
    one = explore(build(kernel, variant, FAMILY.default_params), backend="serial")
    fleet_model = build(kernel, variant, {**FAMILY.default_params, "vms": 2})
    fleet = explore(fleet_model, backend="serial")
    n = one.states
    assert fleet.states == n * (n + 1) // 2
    assert set(fleet.violations) == set(one.violations)
    for name, t in fleet.violations.items():
        assert len(t.actions) == len(one.violations[name].actions)
        assert len({dict(a.args)["vm"] for a in t.actions}) == 1
        assert "vm" in fleet_model.describe(t.states[-2], t.actions[-1], t.states[-1])


@pytest.mark.parametrize("kernel,vms,one", [("6.9", 2, 152), ("5.13", 3, 64)])
def test_a_fleet_on_both_explorers(kernel, vms, one):
    pytest.importorskip("numpy")
    from memtypes.explore import explore
    p = {**FAMILY.default_params, "vms": vms}
    a = explore(build(kernel, "mainline", p), backend="serial")
    b = explore(build(kernel, "mainline", p), backend="vector")
    assert (a.states, a.transitions, a.depth) == (b.states, b.transitions, b.depth)
    assert {n: t.actions for n, t in a.violations.items()} == {n: t.actions for n, t in b.violations.items()}
    from math import comb
    assert a.states == comb(one + vms - 1, vms)           # multisets of one VM's states


def test_vms_below_one_is_refused():
    with pytest.raises(InputError, match="vms"):
        build("6.9", "mainline", {**FAMILY.default_params, "vms": 0})
