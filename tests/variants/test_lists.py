"""Kernel ranges and lists, host lists, and families that map a kernel to the era they model."""

from __future__ import annotations

import json

import pytest

from memtypes.check import registry
from memtypes.check.kernels import family_era, parse_kernels
from memtypes.cli import main
from memtypes.errors import InputError
from memtypes.hosts.profile import split_hosts
from memtypes.linux.kvm.eras import kernel_specs


def test_range_lists_every_rule_change():
    assert kernel_specs("6.9..7.1") == ["6.9", "6.12", "6.12.113", "6.13", "6.17", "6.17.1", "6.18", "6.19", "7.0",
                                        "7.1"]
    assert kernel_specs("6.12,6.17+mte-rfc-2020") == ["6.12", "6.17+mte-rfc-2020"]
    assert parse_kernels("6.9..7.1") == [("6.9", None), ("6.17", None), ("6.18", None), ("7.1", None)]
    with pytest.raises(InputError, match="runs backwards"):
        kernel_specs("7.1..6.9")
    with pytest.raises(InputError, match="empty item"):
        kernel_specs("6.9,,6.12")


def test_host_lists_keep_inline_profiles():
    assert split_hosts("grace,armv8.0") == ["grace", "armv8.0"]
    assert split_hosts("grace,fwb=1,dic=0") == ["grace", "fwb=1,dic=0"]
    assert split_hosts("fwb=1,dic=1;fwb=0,dic=0") == ["fwb=1,dic=1", "fwb=0,dic=0"]
    with pytest.raises(InputError):
        split_hosts("grace,nosuchhost")


def test_explain_several_one_table(capsys):
    rc = main(["explain", "--kernel", "6.16,6.17", "--host", "grace,armv8.0", "--backing",
               "nvgrace-usemem", "--json"])
    d = json.loads(capsys.readouterr().out)
    rows = [(e["kernel"]["version"], e["host"]["name"], e["memslot"]["result"], e["fault"].get("s2"))
            for e in d["explanations"]]
    assert rc == 0 and rows == [("6.16", "grace", "ok", "DEVICE"), ("6.16", "armv8.0", "ok", "DEVICE"),
                                ("6.17", "grace", "ok", "NORMAL"), ("6.17", "armv8.0", "error", None)]
    main(["explain", "--kernel", "6.9..6.17", "--host", "grace", "--backing", "nvgrace-usemem"])
    out = capsys.readouterr().out
    rows = [line.split("│")[1].split()[0] for line in out.splitlines() if line.startswith("│ ")]
    assert rows == ["6.9", "6.12", "6.12.113", "6.13", "6.17"]  # the ends and the rule changes between
    assert "Normal-WB / Normal-WB / Normal-WB" in out


def test_family_era_mapping():
    fam = registry.family("dma-type1")
    assert family_era(fam, "7.1") == "6.9" and family_era(fam, "5.13") == "5.14"
    assert family_era(fam, "6.2") == "6.2"


def test_check_dma_type1_on_7_1_says_which_era(capsys):
    rc = main(["check", "--family", "dma-type1", "--kernel", "7.1", "--variant", "mainline",
               "--workers", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "dma-type1 does not distinguish kernel era 7.1: checked as the era it models, 6.9" in out


def test_migrate_host_and_kernel_lists(capsys):
    rc = main(["migrate", "--vm", "tests/fixtures/vms/gpu-usemem.yaml", "--from", "grace",
               "--to", "grace,armv8.0", "--kernel-from", "6.17", "--kernel-to", "6.16,6.17", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    got = [(m["from"]["name"], m["to"]["name"], m["to"]["kernel"]["version"]) for m in d["migrations"]]
    assert got == [("grace", "grace", "6.16"), ("grace", "grace", "6.17"),
                   ("grace", "armv8.0", "6.16"), ("grace", "armv8.0", "6.17")]
