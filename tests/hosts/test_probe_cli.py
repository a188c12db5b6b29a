"""``memtypes probe`` end to end through memtypes.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

from memtypes.cli import main
from memtypes.hosts.profile import load_file, resolve

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def test_probe_cli_summary(capsys):
    assert main(["probe", "--root", str(FIX / "grace")]) == 0
    out = capsys.readouterr().out
    for s in ("probed-grace1", "KVM_GET_API_VERSION = 12", "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED",
              "EINVAL", "nvgrace-gpu-vfio-pci", "0009:01:00.0", "1T",
              "IOMMU groups", "cannot be seen from userspace"):
        assert s in out, s


def test_probe_cli_unknown_shown(capsys):
    assert main(["probe", "--root", str(FIX / "arm64-6.12")]) == 0
    assert "unknown (0)" in capsys.readouterr().out


def test_probe_cli_out_and_json_load_back(tmp_path, capsys):
    y, j = tmp_path / "grace.yaml", tmp_path / "grace.json"
    assert main(["probe", "--root", str(FIX / "grace"), "--out", str(y), "--json", str(j), "-q"]) == 0
    assert capsys.readouterr().out == ""
    py, pj = resolve(str(y)), resolve(str(j))
    assert py == pj
    assert py.arch == "arm64" and py.kernel == "6.17" and py.features.fwb and py.features.dic
    assert py.extra["unknown"] == ["mte_perm", "xs"]
    assert load_file(j).extra["pci"][0]["driver"] == "nvgrace-gpu-vfio-pci"
    assert json.loads(j.read_text())["kvm"]["api_version"] == 12


def test_probe_cli_json_stdout(capsys):
    assert main(["probe", "--root", str(FIX / "x86"), "--json", "-"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["arch"] == "x86_64" and d["kernel"] == "6.1"


def test_probe_cli_profile_used_by_explain(tmp_path, capsys):
    y = tmp_path / "g.yaml"
    assert main(["probe", "--root", str(FIX / "grace"), "--out", str(y), "-q"]) == 0
    capsys.readouterr()
    rc = main(["explain", "--kernel", "6.17", "--host", str(y), "--backing", "anon"])
    out = capsys.readouterr()
    assert rc == 0, out.err


def test_probe_cli_bad_root(tmp_path, capsys):
    assert main(["probe", "--root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memtypes: error:") and "not a directory" in err


def test_probe_cli_live(capsys):
    assert main(["probe"]) == 0
    assert "/dev/kvm" in capsys.readouterr().out
