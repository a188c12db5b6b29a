"""The benchmark helper and the CLI command on the synthetic model."""

from __future__ import annotations

import json

import pytest

from memtypes.explore.bench import bench_model, reachable_states
from memtypes.explore.toy import Counters, TableCounters


def test_explore_bench_model_fields():
    r = bench_model(Counters(5, 3), seconds=0.5)
    assert r["states"] == 4 ** 5 and r["complete"] and r["explorer"] == "serial"
    assert r["raw_states_per_sec"] > 0 and r["explorer_states_per_sec"] > 0
    assert 0 < r["ratio"] < 10
    assert 0 < r["visited_bytes_per_state"] < 200
    json.dumps(r)


def test_explore_bench_vector_model_fields(monkeypatch):
    vector = pytest.importorskip("memtypes.explore.vector")
    pytest.importorskip("numpy")
    monkeypatch.setattr(vector, "SMALL_CODES", 0)       # 4**6 codes: small, but use numpy here
    r = bench_model(TableCounters(6, 3), seconds=0.5, rebuild=lambda: TableCounters(6, 3))
    assert r["states"] == 4 ** 6 and r["complete"] and r["explorer"] == "vector"
    assert r["transitions_per_state"] > 4 and r["ratio"] > 0
    assert r["meets_target"] == (r["ratio"] >= 1 / 3)
    # a 4 B packed code and a 4 B parent index per state, plus a bitmap over 4**6 codes
    assert r["visited_bytes_per_state"] == pytest.approx(8 + 4 ** 6 / 8 / 4 ** 6, abs=0.1)
    json.dumps(r)


def test_explore_bench_family_models_are_fresh_and_scaled():
    from memtypes.explore.bench import default_models
    models = dict(default_models("passthrough"))
    (label, build), = models.items()
    assert "slots=4" in label
    a, b = build(), build()
    assert a is not b and a.nslots == 4


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


def test_explore_bench_cli_table_names_the_bench_size(capsys):
    """The text table shows the model's label as is (``[slots=4]`` is not Rich markup)."""
    pytest.importorskip("numpy")
    from memtypes.cli import main
    assert main(["bench", "--family", "passthrough", "--seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    from memtypes.check.family import ERAS
    assert f"passthrough {ERAS[-1]} [slots=4]" in out and "vector" in out and "peak" in out
