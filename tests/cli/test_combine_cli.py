"""`memtypes combine` end to end through memtypes.cli.main."""

from __future__ import annotations

import csv
import io
import json

import pytest

from memtypes.cli import main

JSON_KEYS = {"s1", "s2_memattr", "fwb", "cd", "status", "label", "type", "inner", "outer",
             "tagged", "notagaccess", "forced_osh", "cacheable", "attr", "rule", "reasons",
             "s1_decoded", "s2_decoded", "behaviour"}
HEADER = "fwb,s1_attr,s2_memattr,status,type,inner,outer,tagged,notagaccess,forced_osh,attr_cd1"


def run(capsys, *args):
    rc = main(["combine", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_text_output(capsys):
    rc, out, err = run(capsys, "normal-wb", "fwb-normal", "--fwb")
    assert rc == 0 and not err
    assert "Normal-WB" in out and "D8.6.6/R_THYXB" in out and "speculative_reads" in out


@pytest.mark.parametrize("args,label,rule", [
    (["0xff", "s2-normal"], "Normal-WB", "D8.6.5/I_MCQKW"),
    (["off", "MT_S2_NORMAL"], "Device-nGnRnE", "D8.6.5.1/device-precedence"),
    (["mmu-off", "mt_s2_fwb_normal", "--fwb"], "Normal-WB", "D8.6.6/R_THYXB"),
    (["device-ngnrne", "fwb-device", "--fwb"], "Device-nGnRnE", "D8.6.6/R_GSDKZ"),
    (["tagged", "MT_S2_NORMAL_NOTAGACCESS"], "Normal-WB-Tagged+NoTagAccess", "D8.6.5/R_JSXRX"),
    (["0b01000100", "0b0110", "--fwb"], "Normal-WB", "D8.6.6/R_THYXB"),
    (["255", "15", "--cd"], "Normal-NC", "D24.2.62/HCR_EL2.CD"),
    (["--fwb", "normal-nc", "fwb-as-s1"], "Normal-NC", "D8.6.6/as-s1"),
    (["normal-wt", "s2-device"], "Device-nGnRE", "D8.6.5.1/device-precedence"),
])
def test_json_names(capsys, args, label, rule):
    rc, out, err = run(capsys, *args, "--json")
    assert rc == 0 and not err
    d = json.loads(out)
    assert set(d) == JSON_KEYS
    assert d["label"] == label and d["rule"] == rule
    assert set(d["behaviour"]) >= {"speculative_reads", "gathering", "reordering",
                                   "early_write_ack", "unaligned_access", "cacheable"}
    assert all(set(v) == {"value", "section"} for v in d["behaviour"].values())


def test_table_csv(capsys):
    rc, out, err = run(capsys, "--table", "--format", "csv")
    assert rc == 0 and not err
    lines = out.splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 8193
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["fwb"] for r in rows} == {"0", "1"}


def test_table_fwb_modes(capsys):
    rc, out, _ = run(capsys, "--table", "--fwb", "on", "--format", "csv")
    assert rc == 0 and len(out.splitlines()) == 4097 and "\n0," not in out
    rc, out, _ = run(capsys, "--table", "--fwb", "off", "--format", "json")
    data = json.loads(out)
    assert rc == 0 and len(data) == 4096 and data[0]["fwb"] == 0
    assert list(data[0]) == HEADER.split(",")


def test_table_text_summary(capsys):
    rc, out, err = run(capsys, "--table")
    assert rc == 0 and not err
    assert "FWB=0" in out and "FWB=1" in out and "unpredictable" in out
    assert len(out.splitlines()) <= 40


def test_help_lists_names(capsys):
    rc = main(["combine", "--help"])
    out = capsys.readouterr().out
    assert rc == 0
    for name in ("normal-wb", "device-gre", "mmu-off", "s2-nc", "fwb-as-s1",
                 "MT_S2_FWB_NORMAL", "--table"):
        assert name in out


@pytest.mark.parametrize("args,field", [
    (["0x1G", "3"], "S1"),
    (["256", "3"], "S1"),
    (["bogus", "3"], "S1"),
    (["0xff", "16"], "S2"),
    (["0xff", "fwb-normal"], "S2"),
    (["0xff", "s2-normal", "--fwb"], "S2"),
    (["0xff"], "S2"),
])
def test_bad_input_exit_2_one_line(capsys, args, field):
    rc, out, err = run(capsys, *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert f"{field}:" in lines[0] and "expected" in lines[0]


def test_bad_table_options(capsys):
    rc, _, err = run(capsys, "--table", "--format", "xml")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    rc, _, err = run(capsys, "--table", "--fwb", "maybe")
    assert rc == 2 and len(err.strip().splitlines()) == 1
