"""`memtypes check` end to end on the toy family (registry patched in-process)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
import toyfam  # noqa: E402

from memtypes.check import registry  # noqa: E402
from memtypes.cli import main  # noqa: E402


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setattr(registry, "families", lambda: [toyfam.FAMILY])
    monkeypatch.setattr(registry, "missing_families", lambda: [])


def run(capsys, *args):
    rc = main(["check", "--workers", "1", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_matrix_text(capsys):
    rc, out, _ = run(capsys)
    assert rc == 0
    assert "1:mmio" in out and "violated(2)" in out and "vacuous" in out
    assert "6.9+nosome" in out and "5.13+old-only" in out
    assert "Counterexamples" in out
    assert "toy: mmio-never-cacheable violated on 5.13, 5.13+nosome, 5.13+old-only, 6.9, 6.9+nosome" in out
    assert "1. a inc var=x by=1" in out and "(1,0,0) -> (2,0,0)" in out
    assert max(len(line) for line in out.splitlines()) <= 160


def test_strict(capsys):
    assert run(capsys, "--strict")[0] == 1
    assert run(capsys, "--strict", "--property", "tags-sanitised", "--kernel", "5.10")[0] == 0


def test_kernel_mapping_and_variant(capsys):
    rc, out, _ = run(capsys, "--kernel", "6.12+nosome", "--json", "-")
    assert rc == 0
    doc = json.loads(out)
    assert {(r["kernel"], r["variant"]) for r in doc["results"]} == {("6.9", "nosome")}


def test_json_file_and_determinism(capsys, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run(capsys, "--json", str(a))[0] == 0
    c = tmp_path / "c.json"
    assert run(capsys, "--json", str(c))[0] == 0
    assert a.read_bytes() == c.read_bytes()  # byte-identical: no timings by default
    assert run(capsys, "--json", str(b), "--workers", "2")[0] == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert "timing" not in da["stats"] and "timings" not in da
    for d in (da, db):
        d["stats"].pop("workers")
    assert json.dumps(da) == json.dumps(db)
    assert da["results"][0] == {**da["results"][0], "family": "toy", "kernel": "5.13",
                                "variant": "mainline", "property": "mmio-never-cacheable",
                                "verdict": "violated"}
    assert not list(tmp_path.glob(".*.tmp"))
    t = tmp_path / "t.json"
    assert run(capsys, "--json", str(t), "--timings")[0] == 0
    assert json.loads(t.read_text())["timings"]["seconds"] >= 0


def test_html_self_contained(capsys, tmp_path):
    h = tmp_path / "r.html"
    assert run(capsys, "--html", str(h))[0] == 0
    html = h.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html)
    assert "http://" not in html and "https://" not in html
    assert "mmio-never-cacheable" in html and "violated(2)" in html
    assert "(1,0,0) -&gt; (2,0,0)" in html  # autoescaped


@pytest.mark.parametrize("args,needle", [
    (["--kernel", "banana"], "--kernel"),
    (["--kernel", "6.12.x"], "--kernel"),
    (["--family", "nope"], "unknown family"),
    (["--property", "bogus"], "unknown property"),
    (["--variant", "bogus"], "unknown variant"),
    (["--workers", "0"], "--workers"),
    (["--max-states", "-1"], "--max-states"),
    (["--kernel", "6.9+old-only"], "no family models"),
    (["--bogus-option"], "No such option"),
])
def test_bad_input_exit_2(capsys, tmp_path, args, needle):
    j = tmp_path / "out.json"
    rc, out, err = run(capsys, *args, "--json", str(j))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memtypes: error:") and needle in lines[0]
    assert not j.exists()


def test_save_traces_then_run(capsys, tmp_path):
    d = tmp_path / "traces"
    rc, _, err = run(capsys, "--save-traces", str(d))
    assert rc == 0 and "saved 7 counterexample(s)" in err
    f = d / "toy-6.9-mainline-nc-only-where-allowed.yaml"
    assert f.exists()
    rc = main(["run", str(f), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["violated"] == {"nc-only-where-allowed": 2}
    assert main(["run", str(f), "--strict"]) == 1


def test_kernel_the_family_does_not_distinguish_maps_to_its_era(capsys):
    """Issue 17: the toy family models 5.13 and 6.9: 6.2 is checked as 5.13, and said so."""
    rc, out, _ = run(capsys, "--kernel", "6.2", "--variant", "mainline")
    assert rc == 0
    assert "toy does not distinguish kernel era 6.2: checked as the era it models, 5.13" in out
    rc, out, _ = run(capsys, "--kernel", "6.2,6.9", "--variant", "mainline", "--json", "-")
    d = json.loads(out)
    assert sorted({r["kernel"] for r in d["results"]}) == ["5.13", "6.9"]
    assert d["stats"]["kernel_mapping"]

