"""Scenario files: safe loading with line numbers, validation errors, running, and the
save-traces -> run round trip."""

from __future__ import annotations

import textwrap

import pytest

import toyfam
from memtypes import scenario as sc
from memtypes.check import play, registry
from memtypes.check.runner import run_matrix
from memtypes.errors import InputError

FAMS = [toyfam.FAMILY]

GOOD = """\
family: toy
kernel: "6.12"
params: {xmax: 3}
init: 0
steps:
  - {actor: a, action: inc, var: x, by: 1}
  - {action: inc, actor: a, by: 1, var: x}
  - {actor: b, action: inc, var: y, by: 1}
  - {actor: c, action: set, flag: true}
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def err(tmp_path, text) -> InputError:
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        play.run_file(p, FAMS)
    msg = e.value.one_line()
    assert "\n" not in msg and str(p) in msg
    return e.value


def test_run_good(tmp_path):
    rep = play.run_file(write(tmp_path, GOOD), FAMS)
    assert rep.extra == {"family": "toy", "kernel": "6.9", "variant": "mainline"}
    assert [o.index for o in rep.steps] == [1, 2, 3, 4]
    assert rep.steps[2].broken == ["mmio-never-cacheable"]
    assert rep.steps[3].broken == ["nc-only-where-allowed"]
    assert rep.violated == {"mmio-never-cacheable": 3, "nc-only-where-allowed": 4}
    assert rep.steps[0].describe == "(0,0,0) -> (1,0,0)"
    assert rep.reached == {} and rep.unreached == ["x-max"]
    assert rep.final_state == "x=2 y=1 flag=1"
    assert rep.steps[1].line == 7


@pytest.mark.parametrize("text,line,needle", [
    ("family: toy\nkernel: '6.9'\nsteps: [\n", None, "not valid YAML"),
    ("family: toy\nkernel: '6.9'\nbogus: 1\nsteps: []\n", 3, "unknown key 'bogus'"),
    ("family: toy\nkernel: 6.9\nsteps: []\n", 2, "quote it"),
    ("family: toy\nkernel: '6.9'\ninit: x\nsteps: []\n", 3, "'init'"),
    ("family: toy\nkernel: '6.9'\nsteps: {a: 1}\n", 3, "'steps'"),
    ("family: nope\nkernel: '6.9'\nsteps: []\n", 1, "unknown family 'nope'"),
    ("family: toy\nkernel: '6.9'\nvariant: zz\nsteps: []\n", 3, "unknown variant"),
    ("family: toy\nkernel: '6.2'\nsteps: []\n", 2, "does not model kernel"),
    ("family: toy\nkernel: banana\nsteps: []\n", 2, "not a kernel version"),
    ("family: toy\nkernel: '6.9'\nhost: nohost\nsteps: []\n", 3, "unknown host"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: inc, var: x, by: 1}\n"
     "  - {actor: zz, action: inc}\n", 5, "no action of actor 'zz'"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: fly}\n", 4, "not enabled"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: inc, var: x}\n", 4,
     "missing argument(s) by"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: inc, var: x, by: 1, q: 2}\n", 4,
     "unknown argument(s) q"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: inc, var: x, by: {z: 1}}\n", 4,
     "argument 'by'"),
    ("family: toy\nkernel: '6.9'\nsteps:\n  - {action: inc}\n", 4, "no 'actor'"),
    ("family: toy\nfamily: toy\nkernel: '6.9'\nsteps: []\n", 2, "duplicate key"),
    ("family: toy\nkernel: '6.9'\ninit: 7\nsteps: []\n", 3, "init 7 is out of range"),
    ("- 1\n", 1, "must be a mapping"),
    ("family: toy\nkernel: '6.9'\nsteps: [!!python/object:os.system {}]\n", 3, "not valid YAML"),
])
def test_errors(tmp_path, text, line, needle):
    e = err(tmp_path, text)
    assert needle in e.one_line()
    if line is not None:
        assert e.line == line, e.one_line()


def test_enabled_actions_listed(tmp_path):
    e = err(tmp_path, "family: toy\nkernel: '6.9'\nsteps:\n  - {actor: a, action: fly}\n")
    assert "a.inc(var=x by=1)" in e.one_line()


def test_host_sets_params(tmp_path):
    s = sc.load(write(tmp_path, "family: toy\nkernel: '6.9+nosome'\nhost: grace\nsteps: []\n"))
    assert s.params["hosts"] == ["grace"] and s.variant == "nosome"


def test_dump_load_roundtrip(tmp_path):
    s = sc.load(write(tmp_path, GOOD))
    p = tmp_path / "out.yaml"
    sc.save(p, s, header="a header\nline two")
    text = p.read_text()
    assert text.startswith("# a header\n# line two\n")
    s2 = sc.load(p)
    assert s2.as_dict() == s.as_dict()


def test_save_traces_replay(tmp_path):
    m = run_matrix(FAMS, workers=1)
    paths = play.save_traces(m, tmp_path / "traces")
    assert len(paths) == len(m.violations) == 7
    names = sorted(p.name for p in paths)
    assert "toy-6.9-mainline-nc-only-where-allowed.yaml" in names
    assert "toy-5.13-nosome-mmio-never-cacheable.yaml" in names
    for r, p in zip(m.violations, paths):
        assert p.read_text().startswith("# memtypes counterexample: toy")
        rep = play.run_file(p, FAMS)
        assert r.property in rep.violated
        assert rep.violated[r.property] == r.trace_length
        assert [o.action.as_dict()["detail"] for o in rep.steps] == [s["detail"] for s in r.trace]


def test_examples_validate():
    """The packaged examples parse; they run when their family exists."""
    from importlib import resources
    root = resources.files("memtypes.scenario").joinpath("examples")
    files = [f for f in root.iterdir() if f.name.endswith(".yaml")]
    assert files
    names = {f.name for f in registry.families()}
    for f in files:
        s = sc.loads(f.read_text(), where=f.name)
        if s.family in names:
            play.run_file(str(f))
