"""The memory bound: the vectorised explorer spills its stored states to memory-mapped files
past it and finds the same states, order, verdicts and traces (narrow and wide codes), its
temporary folder removed on every exit path (Ctrl-C included); the serial explorer stops with
:class:`MemoryBound`; sizes parse; ``--max-memory`` on the command line."""

from __future__ import annotations

import json
import os

import pytest

np = pytest.importorskip("numpy")

from memtypes.explore import explore                                          # noqa: E402
from memtypes.explore import memory, vector                                   # noqa: E402
from memtypes.explore.toy import Counters, FlushPages, TableCounters          # noqa: E402

from test_explore_vector import summary                                       # noqa: E402


@pytest.mark.parametrize("bits", [62, 2])
@pytest.mark.parametrize("model", [TableCounters(5, 2, bad=6), TableCounters(6, 3, bad=7, symmetric=True),
                                   FlushPages(5, 3)], ids=["counters", "symmetric", "chain"])
def test_spilled_search_matches_the_serial_one(monkeypatch, tmp_path, model, bits):
    monkeypatch.setattr(vector, "WORD_BITS", bits)
    monkeypatch.setattr(vector, "CHUNK", 16)
    ref = explore(model, backend="serial")
    r = vector.explore_vector(model, max_memory=1, spill_dir=str(tmp_path))
    assert r.spilled and summary(r) == summary(ref)
    assert list(tmp_path.iterdir()) == []                 # the folder is gone
    unspilled = vector.explore_vector(model, max_memory=1 << 40, spill_dir=str(tmp_path))
    assert not unspilled.spilled and summary(unspilled) == summary(ref)


def test_spill_starts_midway(tmp_path):
    """A bound passed in the middle of the search: the codes stored so far move to disk."""
    m = TableCounters(8, 3, bad=20)
    ref = explore(m, backend="serial")
    r = vector.explore_vector(m, max_memory=400_000, spill_dir=str(tmp_path))
    assert r.spilled and summary(r) == summary(ref)
    assert list(tmp_path.iterdir()) == []


def test_spill_folder_removed_on_ctrl_c(tmp_path):
    seen = []

    def interrupt(states, depth, frontier):
        seen.append(list(tmp_path.iterdir()))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vector.explore_vector(TableCounters(8, 3), max_memory=1, spill_dir=str(tmp_path),
                              progress=interrupt)
    assert seen and seen[0]                                # it existed during the search
    assert list(tmp_path.iterdir()) == []


def test_serial_explorer_stops_at_the_bound():
    with pytest.raises(memory.MemoryBound, match="serial explorer passed the memory bound"):
        explore(Counters(6, 3), backend="serial", max_memory=1)
    assert explore(Counters(3, 2), backend="serial", max_memory=1 << 40).states == 27


def test_bound_from_the_environment(monkeypatch):
    monkeypatch.setenv(memory.ENV, "3G")
    assert memory.max_memory() == 3 << 30
    assert memory.max_memory(5) == 5
    monkeypatch.delenv(memory.ENV)
    assert memory.max_memory() == memory.default_max_memory() > 0
    monkeypatch.setenv(memory.ENV, "lots")
    with pytest.raises(memory.MemoryBound, match="not a size"):
        memory.max_memory()


@pytest.mark.parametrize("text,n", [("4G", 4 << 30), ("512m", 512 << 20), ("1.5GiB", 3 << 29),
                                    ("1000", 1000), ("2KB", 2048)])
def test_parse_size(text, n):
    assert memory.parse_size(text) == n


@pytest.mark.parametrize("text", ["0", "-1", "4X", "", "G", "0.0001"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        memory.parse_size(text)


def test_cli_max_memory(capsys, monkeypatch):
    from memtypes.cli import main
    monkeypatch.delenv(memory.ENV, raising=False)
    for bad in ("0", "lots"):
        assert main(["check", "--max-memory", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--max-memory" in err
    # the serial explorer cannot spill: one line, exit 2
    assert main(["check", "--workers", "1", "--family", "passthrough", "--kernel", "6.9",
                 "--variant", "mainline", "--explorer", "serial", "--max-memory", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory bound" in err
    # the vector explorer spills and goes on: the same results as without a bound
    sel = ["check", "--workers", "1", "--family", "passthrough", "--kernel", "6.9", "--variant",
           "mainline", "--explorer", "vector", "--json", "-"]
    assert main(sel + ["--max-memory", "1"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(sel) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["results"] == b["results"] and a["results"]
    assert [j["states"] for j in a["stats"]["per_job"]] == [j["states"] for j in b["stats"]["per_job"]]
    assert memory.ENV not in os.environ                    # the bound ends with the command
