"""The registry, and the save-traces -> replay round trip on whichever built-in families exist."""

from __future__ import annotations

import pytest

from memtypes.check import play, registry
from memtypes.check.runner import run_matrix


def test_missing_module_is_skipped(monkeypatch):
    monkeypatch.setattr(registry, "ORDER", ("no_such_family_module",) + registry.ORDER)
    assert "no_such_family_module" in registry.missing_families()
    assert len(registry.families()) == len(registry.ORDER) - len(registry.missing_families())


def test_broken_import_propagates(monkeypatch, tmp_path):
    pkg = tmp_path / "fakefams"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_PACKAGE", "fakefams")
    monkeypatch.setattr(registry, "ORDER", ("broken", "absent"))
    with pytest.raises(ModuleNotFoundError):
        registry.families()


FAMS = registry.families()


@pytest.mark.parametrize("fam", FAMS, ids=[f.name for f in FAMS])
def test_real_family_traces_replay(fam, tmp_path):
    kernel = sorted(fam.kernels, key=lambda k: tuple(int(x) for x in k.split(".")))[-1]
    m = run_matrix([fam], kernel=kernel, max_states=3000, workers=1)
    assert m.jobs, f"{fam.name} has no job for {kernel}"
    for r in m.results:
        assert r.verdict in ("holds", "violated", "vacuous", "n/a")
    paths = play.save_traces(m, tmp_path)
    assert len(paths) == len(m.violations)
    for r, p in zip(m.violations, paths):
        rep = play.run_file(p)
        assert rep.violated.get(r.property) == r.trace_length, p.read_text()


@pytest.mark.parametrize("fam,kernel,params", [
    ("migration", "6.9", {"vms": 2}),                                  # a fleet's traces name the VM
    ("dma-iommufd", "6.2", {"pages": 3, "tv26": True}),                # the table form at 3 pages
])
def test_scaled_family_traces_replay(fam, kernel, params, tmp_path):
    (f,) = [x for x in FAMS if x.name == fam]
    m = run_matrix([f], kernel=kernel, params={fam: params}, workers=1)
    assert m.violations
    for r, p in zip(m.violations, play.save_traces(m, tmp_path)):
        rep = play.run_file(p)
        assert rep.violated.get(r.property) == r.trace_length, p.read_text()
