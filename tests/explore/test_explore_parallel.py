"""The multi-process mode gives the serial mode's counts and shortest trace lengths."""

from __future__ import annotations

import pytest

from memtypes.explore import explore, replay
from memtypes.explore.search import stable_fingerprint
from memtypes.explore.toy import Counters, Graph, Lock


@pytest.mark.parametrize("model", [Counters(4, 3, bad=6), Lock(3),
                                   Graph({0: [1, 2], 1: [3], 2: [3], 3: [0], 7: [3]},
                                         inits=[0, 7], bad=[3], goal=[2])],
                         ids=["counters", "lock", "graph"])
def test_explore_parallel_matches_serial(model):
    s = explore(model)
    p = explore(model, workers=2)
    assert (p.states, p.transitions, p.depth, p.complete) == \
        (s.states, s.transitions, s.depth, s.complete)
    assert {k: len(v) for k, v in p.violations.items()} == \
        {k: len(v) for k, v in s.violations.items()}
    assert {k: len(v) for k, v in p.reached.items()} == {k: len(v) for k, v in s.reached.items()}
    for t in list(p.violations.values()) + list(p.reached.values()):
        assert replay(model, t.init_index, t.actions) == t.states
    assert p.stats()["workers"] == 2


def test_explore_parallel_bounds():
    m = Counters(3, 2)
    p = explore(m, workers=2, max_depth=3)
    assert (p.states, p.depth, p.complete) == (17, 3, False)
    p = explore(m, workers=2, max_depth=6)
    assert (p.states, p.complete) == (27, True)


def test_stable_fingerprint_is_seed_independent():
    import subprocess
    import sys
    code = ("from memtypes.explore.search import stable_fingerprint\n"
            "from memtypes.explore.toy import Lock\n"
            "print(stable_fingerprint(Lock(2))((('x', 1), 'y')))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
            for seed in ("1", "2")}
    assert len(outs) == 1 and outs.pop().strip().isdigit()
    assert stable_fingerprint(Lock(2))((("x", 1), "y")) >= 0
