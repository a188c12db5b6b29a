"""`memtypes run FILE` on the toy family (registry patched in-process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
import toyfam  # noqa: E402

from memtypes.check import registry  # noqa: E402
from memtypes.cli import main  # noqa: E402

GOOD = """\
# two steps to a violation
family: toy
kernel: "6.12"
init: 1
steps:
  - {actor: a, action: inc, var: x, by: 1}
  - {actor: c, action: set, flag: true}
"""


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setattr(registry, "families", lambda: [toyfam.FAMILY])
    monkeypatch.setattr(registry, "missing_families", lambda: [])


def write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_run_text(capsys, tmp_path):
    p = write(tmp_path, GOOD)
    assert main(["run", str(p)]) == 0
    out = capsys.readouterr().out
    assert "toy on kernel 6.9 (from 6.12)" in out
    assert "1. a inc var=x by=1" in out and "(1,0,0) -> (2,0,0)" in out
    assert "VIOLATED nc-only-where-allowed" in out
    assert main(["run", str(p), "--strict"]) == 1


def test_run_json(capsys, tmp_path):
    assert main(["run", str(write(tmp_path, GOOD)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kernel"] == "6.9" and doc["variant"] == "mainline"
    assert [s["violated"] for s in doc["steps"]] == [[], ["nc-only-where-allowed"]]
    assert doc["steps"][1]["line"] == 7


@pytest.mark.parametrize("text,line,needle", [
    ("family: toy\nkernel: '6.9'\nsteps: [\n  {a: 1\n", None, "not valid YAML"),
    ("family: toy\nkernel: '6.9'\nextra: 1\nsteps: []\n", 3, "unknown key 'extra'"),
    ("family: toy\nkernel: '6.9'\ninit: [1]\nsteps: []\n", 3, "'init'"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: jump}\n", 4, "not enabled"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: inc, var: x}\n", 4, "missing"),
])
def test_errors_exit_2(capsys, tmp_path, text, line, needle):
    p = write(tmp_path, text)
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    loc = f"{p}:{line}" if line else str(p)
    assert loc in err[0]


def test_missing_file(capsys, tmp_path):
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err
