"""The explorer on small models with known state counts and shortest traces."""

from __future__ import annotations

import pytest

from memtypes.explore import Action, ExploreResult, Trace, explore, replay
from memtypes.explore.model import Property
from memtypes.explore.toy import Counters, Graph, Lock


@pytest.mark.parametrize("n,k", [(1, 1), (2, 3), (3, 2), (4, 3), (5, 2)])
def test_explore_counters_state_count(n, k):
    r = explore(Counters(n, k))
    assert r.states == (k + 1) ** n
    assert r.depth == n * k
    assert r.complete
    assert r.violations == {}
    assert len(r.reached["all-max"]) == n * k
    assert r.transitions == n * k * (k + 1) ** (n - 1)  # each counter below k, summed


def test_explore_counters_violation_shortest_and_replay():
    m = Counters(4, 3, bad=5)
    r = explore(m)
    t = r.violations["sum-below"]
    assert isinstance(t, Trace)
    assert len(t) == 5 and len(t.states) == 6
    assert sum(t.states[-1]) == 5
    assert replay(m, t.init_index, t.actions) == t.states
    assert all(set(s) == {"actor", "action", "detail"} for s in t.steps())
    assert t.steps()[0]["actor"] == "c" and t.steps()[0]["action"] == "inc"


def test_explore_lock_counterexample():
    m = Lock(2)
    r = explore(m)
    t = r.violations["mutex"]
    assert len(t) == 4
    assert [s["action"] for s in t.steps()] == ["read", "read", "take", "take"]
    assert t.states[-1][0] == (2, 2)
    assert len(r.reached["someone-in"]) == 2
    assert "never" not in r.reached  # a sometimes-target never reached
    assert r.complete


def test_explore_multiple_initial_states():
    g = Graph({0: [1], 1: [2], 2: [3], 10: [11], 11: [3]}, inits=[0, 10, 0], bad=[3], goal=[11])
    r = explore(g)
    assert r.states == 6  # 0, 1, 2, 3, 10, 11
    t = r.violations["not-bad"]
    assert len(t) == 2 and t.init_index == 1 and t.states == [10, 11, 3]
    assert r.reached["goal"].init_index == 1 and len(r.reached["goal"]) == 1


def test_explore_violation_in_initial_state_has_length_zero():
    g = Graph({0: [1]}, inits=[5, 0], bad=[0])
    r = explore(g)
    t = r.violations["not-bad"]
    assert len(t) == 0 and t.init_index == 1 and t.states == [0]


def test_explore_depth_bound():
    m = Counters(3, 2)
    r = explore(m, max_depth=3)
    assert not r.complete and r.truncated_by == "max_depth"
    assert r.depth == 3
    assert r.states == 1 + 3 + 6 + 7  # states with sum <= 3
    exact = explore(m, max_depth=6)  # the true depth: nothing lies beyond
    assert exact.complete and exact.states == 27


def test_explore_state_bound():
    r = explore(Counters(3, 2), max_states=10)
    assert r.states == 10 and not r.complete and r.truncated_by == "max_states"
    r = explore(Counters(3, 2), max_states=27)
    assert r.states == 27 and r.complete


def test_explore_stop_on_violation():
    r = explore(Counters(4, 3, bad=2), stop_on_violation=True)
    assert not r.complete and r.truncated_by == "violation"
    assert len(r.violations["sum-below"]) == 2
    assert r.states < 4 ** 4


def test_explore_stats_and_progress():
    calls = []
    r = explore(Counters(3, 2), progress=lambda s, d, f: calls.append((s, d, f)))
    st = r.stats()
    assert set(st) >= {"states", "transitions", "depth", "seconds", "complete", "states_per_sec",
                       "collision_probability", "workers"}
    assert st["collision_probability"] == pytest.approx(27 ** 2 / 2 ** 65)
    assert calls and calls[-1][0] == 27
    assert isinstance(r, ExploreResult)


def test_replay_rejects_disabled_action():
    m = Counters(2, 1)
    with pytest.raises(ValueError):
        replay(m, 0, [Action("c", "inc", (("i", 0),)), Action("c", "inc", (("i", 0),))])
    with pytest.raises(ValueError):
        replay(m, 3, [])


class _Plain:
    """A model with only actions/next_state (no successors fast path), None = no change."""

    name = "plain"

    def init_states(self):
        return [("a", 0)]

    def actions(self, s):
        return [Action("x", "step"), Action("x", "noop")]

    def next_state(self, s, a):
        if a.name == "noop" or s[1] >= 3:
            return None
        return ("a", s[1] + 1)

    def properties(self):
        return [Property("small", "always", lambda s: s[1] < 3)]


def test_explore_plain_protocol_and_none_next_state():
    r = explore(_Plain())
    assert r.states == 4 and r.transitions == 3
    assert len(r.violations["small"]) == 3
    assert [a.name for a in r.violations["small"].actions] == ["step"] * 3
