"""``memtypes migrate`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from memtypes.cli import main

VMS = Path(__file__).resolve().parent.parent / "fixtures" / "vms"


def vm(name: str) -> str:
    return str(VMS / f"{name}.yaml")


def test_text_fwb_to_nonfwb(capsys):
    rc = main(["migrate", "--vm", vm("gpu-usemem"), "--from", "grace", "--to", "armv8.0",
               "--kernel-from", "6.17", "--kernel-to", "6.17"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "forward: grace (6.17) -> armv8.0 (6.17)" in out
    assert "refused early at capability-check" in out
    assert "refused early at memslot: -EINVAL (P4)" in out
    assert "back: armv8.0 (6.17) -> grace (6.17): impossible" in out
    assert "Reasons:" in out and "f55ce5a6cd33" in out


def test_text_616_to_617_memtype_change(capsys):
    rc = main(["migrate", "--vm", vm("usemem-only"), "--from", "grace", "--to", "grace",
               "--kernel-from", "6.16", "--kernel-to", "6.17"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "memory type changes: gpu-usemem DEVICE->NORMAL" in out
    assert "DEVICE -> NORMAL" in out and "CHANGED" in out


def test_text_mixedmap_late_failure(capsys):
    rc = main(["migrate", "--vm", vm("mixedmap"), "--from", "grace", "--to", "armv8.0",
               "--kernel-from", "6.18", "--kernel-to", "6.18"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "fails after resume" in out and "-EFAULT" in out
    assert "[UNVERIFIED]" in out


def test_json(capsys):
    args = ["migrate", "--vm", vm("mte"), "--from", "armv8.5-mte", "--to", "grace",
            "--kernel-from", "6.17", "--kernel-to", "6.17", "--json"]
    assert main(args) == 0
    a = capsys.readouterr().out
    assert main(args) == 0
    b = capsys.readouterr().out
    assert a == b
    d = json.loads(a)
    assert set(d) == {"vm", "from", "to", "directions", "context"}
    f = d["directions"][0]
    assert f["direction"] == "forward" and f["verdict"] == "refused-early"
    assert f["with_checks"]["stage"] == "capability-check"
    assert f["without_checks"]["stage"] == "enable-cap" and f["without_checks"]["errno"] == "-EINVAL"
    assert d["directions"][1]["verdict"] == "never-started"


def test_check_option_and_default_kernel(capsys):
    assert main(["migrate", "--vm", vm("usemem-only"), "--from", "grace", "--to", "armv8.0",
                 "--check", "mte-cap", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["from"]["kernel"]["version"] == "7.3"
    assert d["directions"][0]["with_checks"]["stage"] == "memslot"


def test_bad_vm_file_exit_2_one_line(capsys):
    rc = main(["migrate", "--vm", vm("bad-backing"), "--from", "grace", "--to", "armv8.0"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1
    assert "bad-backing.yaml:7" in lines[0] and "devices[1].backing" in lines[0]


def test_bad_inputs_exit_2(capsys):
    for args in (["--vm", vm("plain"), "--from", "nohost", "--to", "grace"],
                 ["--vm", vm("plain"), "--from", "grace", "--to", "grace", "--kernel-to", "6.12.x"],
                 ["--vm", vm("plain"), "--from", "grace", "--to", "grace", "--check", "fwb"],
                 ["--vm", vm("nonexistent"), "--from", "grace", "--to", "grace"],
                 ["--vm", vm("plain"), "--from", "grace", "--to", "x86-64"]):
        assert main(["migrate", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
