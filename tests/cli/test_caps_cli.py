"""``memtypes caps`` and the issue-16 explain options end to end through memtypes.cli.main."""

from __future__ import annotations

import json

import pytest

from memtypes.cli import main


def test_caps_json(capsys):
    rc = main(["caps", "--kernel", "7.3", "--host", "grace", "--ipa-limit", "48", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    by = {c["cap"]: c for c in d["caps"]}
    assert {16, 205, 231, 234, 243, 244, 165} <= set(by)
    assert (by[243]["system_errno"], by[243]["vm"]) == ("-EINVAL", 1)
    assert by[165]["vm"] == 48 and by[205]["vm"] == 0          # grace has no MTE
    assert d["host"]["name"] == "grace" and d["kernel"]["note"] is None


def test_caps_text_marks_newer_kernels(capsys):
    rc = main(["caps", "--kernel", "7.4", "--host", "fwb=1,dic=0,mte=1,pkvm=1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "newer than the model, assuming 7.3" in out and "KVM_CAP_ARM_MTE" in out


@pytest.mark.parametrize("args,word", [
    (["--kernel", "6.12.x", "--host", "grace"], "6.12.x"),
    (["--kernel", "7.3", "--host", "grace", "--protected"], "--protected"),
    (["--kernel", "6.12", "--host", "pkvm=1", "--protected"], "--protected"),
    (["--kernel", "7.3", "--host", "grace", "--ipa-limit", "99"], "--ipa-limit"),
    (["--kernel", "7.3", "--host", "x86-64"], "x86-64"),
])
def test_caps_bad_input(capsys, args, word):
    rc = main(["caps", *args])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and word in err


@pytest.mark.parametrize("spec", ["7.3", "6.12.118", "6.12.117", "v7.3-rc7"])
def test_explain_answers_new_kernels(capsys, spec):
    rc = main(["explain", "--kernel", spec, "--host", "grace", "--backing", "vfio-pci-bar", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["fault"]["s2"] == "NC" and d["kernel"]["note"] is None


def test_explain_newer_kernel_is_marked(capsys):
    rc = main(["explain", "--kernel", "8.0", "--host", "grace", "--backing", "anon"])
    out = capsys.readouterr().out
    assert rc == 0 and "newer than the model, assuming 7.3" in out
    rc = main(["explain", "--kernel", "7.3.9", "--host", "grace", "--backing", "anon", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["kernel"]["assumed"] == "7.3.4" and "assuming 7.3.4" in d["kernel"]["note"]
    assert any(r["rule"] == "kernel/newer-than-model" for r in d["reasons"])


def test_explain_hva_align_and_read_perm(capsys):
    main(["explain", "--kernel", "7.3", "--host", "grace", "--backing", "vfio-pci-bar", "--hva-align", "4K",
          "--json"])
    d = json.loads(capsys.readouterr().out)
    assert (d["hva_align"], d["fault"]["size"]) == ("4K", "PAGE")
    main(["explain", "--kernel", "7.3", "--host", "grace", "--backing", "anon", "--fault", "read-perm", "--json"])
    assert json.loads(capsys.readouterr().out)["fault"]["result"] == "map"
    main(["explain", "--kernel", "7.1", "--host", "grace", "--backing", "anon", "--fault", "read-perm", "--json"])
    assert json.loads(capsys.readouterr().out)["fault"]["errno"] == "-EFAULT"


def test_check_marks_newer_kernel(capsys):
    rc = main(["check", "--family", "mte", "--kernel", "9.1", "--param", "mte.hosts=[\"armv8.5-mte\"]"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("kernel 9.1: newer than the model, assuming 7.3 (era 7.2)")
