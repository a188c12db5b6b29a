"""The benchmark helper and the CLI command on the synthetic model."""

from __future__ import annotations

import json

from memtypes.explore.bench import bench_model, reachable_states
from memtypes.explore.toy import Counters


def test_explore_bench_model_fields():
    r = bench_model(Counters(5, 3), seconds=0.5)
    assert r["states"] == 4 ** 5 and r["complete"]
    assert r["raw_states_per_sec"] > 0 and r["explorer_states_per_sec"] > 0
    assert 0 < r["ratio"] < 10
    assert 0 < r["visited_bytes_per_state"] < 200
    json.dumps(r)


def test_explore_reachable_states():
    assert len(reachable_states(Counters(3, 2))) == 27
    assert len(reachable_states(Counters(3, 2), limit=5)) == 5


def test_explore_bench_cli_json(capsys):
    from memtypes.cli import main
    rc = main(["bench", "--json", "--family", "counters", "--seconds", "0.5"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["results"][0]["model"].startswith("counters")


def test_explore_bench_cli_bad_seconds(capsys):
    from memtypes.cli import main
    assert main(["bench", "--seconds", "0"]) == 2
