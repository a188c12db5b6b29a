"""The 8192-row combination table (CSV/JSON contract)."""

from __future__ import annotations

import csv
import io
import json

from memtypes.arch import table

HEADER = ["fwb", "s1_attr", "s2_memattr", "status", "type", "inner", "outer", "tagged",
          "notagaccess", "forced_osh", "attr_cd1"]


def test_rows_and_columns():
    rows = table.rows("both")
    assert len(rows) == 8192
    assert list(rows[0]) == HEADER
    assert rows[0] == {"fwb": 0, "s1_attr": "0x00", "s2_memattr": "0b0000", "status": "ok",
                       "type": "Device-nGnRnE", "inner": "-", "outer": "-", "tagged": 0,
                       "notagaccess": 0, "forced_osh": 1, "attr_cd1": "0x00"}
    assert len(table.rows("off")) == len(table.rows("on")) == 4096


def test_csv_roundtrip():
    text = table.to_csv(table.rows("on"))
    rdr = list(csv.reader(io.StringIO(text)))
    assert rdr[0] == HEADER and len(rdr) == 4097
    row = {k: v for k, v in zip(HEADER, rdr[1 + 0xF0 * 16 + 0b1110])}
    assert row == {"fwb": "1", "s1_attr": "0xf0", "s2_memattr": "0b1110",
                   "status": "needs:FEAT_MTE2|FEAT_MTE_PERM", "type": "Normal",
                   "inner": "WB-RWA-NT", "outer": "WB-RWA-NT", "tagged": "1",
                   "notagaccess": "1", "forced_osh": "0", "attr_cd1": "0x44"}


def test_json_types():
    data = json.loads(table.to_json(table.rows("off")))
    assert len(data) == 4096
    for r in data[:40]:
        assert list(r) == HEADER
        for k in table.INT_COLUMNS:
            assert isinstance(r[k], int)
        for k in set(HEADER) - table.INT_COLUMNS:
            assert isinstance(r[k], str)


def test_status_values_and_counts():
    rows = table.rows("both")
    statuses = {r["status"] for r in rows}
    assert statuses <= {"ok", "unpredictable", "reserved", "needs:FEAT_XS", "needs:FEAT_MTE2",
                        "needs:FEAT_MTE_PERM", "needs:FEAT_XS|FEAT_MTE_PERM",
                        "needs:FEAT_MTE2|FEAT_MTE_PERM"}
    off = [r for r in rows if r["fwb"] == 0]
    on = [r for r in rows if r["fwb"] == 1]
    assert sum(r["status"] == "unpredictable" for r in off) == 20 * 16
    assert sum(r["status"] == "reserved" for r in off) == 236 * 2
    assert sum(r["status"] == "reserved" for r in on) == 236 * 7
    for r in rows:
        if r["status"] in ("unpredictable", "reserved"):
            assert r["type"] == r["inner"] == r["outer"] == r["attr_cd1"] == "-"
        if r["type"].startswith("Device"):
            assert r["inner"] == r["outer"] == "-" and r["forced_osh"] == 1


def test_summary_counts():
    s = table.summary("both")
    assert s[0]["rows"] == s[1]["rows"] == 4096
    assert s[0]["tagged"] == 2 and s[1]["tagged"] == 4


def test_rule_ids_are_stable_set():
    from memtypes.arch import Features, combine
    from memtypes.arch.combine import RULE_IDS
    seen = set()
    for feats in (Features.all(), Features(fwb=True)):
        for fwb in (False, True):
            for cd in (False, True):
                for s1 in [None, *range(256)]:
                    for s2 in range(16):
                        seen.add(combine(s1, s2, fwb=fwb, cd=cd, features=feats).rule)
    assert seen == RULE_IDS
