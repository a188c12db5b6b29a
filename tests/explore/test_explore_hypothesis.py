"""Random explicit graphs: state counts and shortest counterexample lengths equal an
independent BFS."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from memtypes.explore import explore, replay
from memtypes.explore.toy import Graph


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 25))
    edges = {u: draw(st.lists(st.integers(0, n - 1), max_size=4)) for u in range(n)}
    inits = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
    bad = draw(st.sets(st.integers(0, n - 1), max_size=3))
    goal = draw(st.sets(st.integers(0, n - 1), max_size=3))
    return edges, inits, bad, goal


def _dist(edges, inits):
    d = {}
    q = deque()
    for s in inits:
        if s not in d:
            d[s] = 0
            q.append(s)
    while q:
        u = q.popleft()
        for v in edges.get(u, ()):
            if v != u and v not in d:
                d[v] = d[u] + 1
                q.append(v)
    return d


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_explore_random_graphs_match_independent_bfs(g):
    edges, inits, bad, goal = g
    m = Graph(edges, inits, bad=bad, goal=goal)
    r = explore(m)
    d = _dist(edges, inits)
    assert r.states == len(d)
    assert r.complete
    assert r.depth == max(d.values())
    reach_bad = [d[b] for b in bad if b in d]
    if reach_bad:
        t = r.violations["not-bad"]
        assert len(t) == min(reach_bad)
        assert t.states[-1] in bad
        assert replay(m, t.init_index, t.actions) == t.states
    else:
        assert "not-bad" not in r.violations
    reach_goal = [d[x] for x in goal if x in d]
    if reach_goal:
        assert len(r.reached["goal"]) == min(reach_goal)
    else:
        assert "goal" not in r.reached


@settings(max_examples=15, deadline=None)
@given(graphs())
def test_explore_random_graphs_parallel_matches_serial(g):
    edges, inits, bad, goal = g
    m = Graph(edges, inits, bad=bad, goal=goal)
    s, p = explore(m), explore(m, workers=2)
    assert (p.states, p.transitions, p.depth) == (s.states, s.transitions, s.depth)
    assert {k: len(v) for k, v in p.violations.items()} == \
        {k: len(v) for k, v in s.violations.items()}
    assert {k: len(v) for k, v in p.reached.items()} == {k: len(v) for k, v in s.reached.items()}
