"""The whole combination table: 256 stage-1 bytes x 16 stage-2 MemAttr per FWB mode.

Columns (order and spelling are a contract): ``fwb`` (0/1), ``s1_attr`` (0xNN), ``s2_memattr``
(0bNNNN), ``status`` (``ok`` | ``unpredictable`` | ``reserved`` | ``needs:FEAT_X[|FEAT_Y]``),
``type``, ``inner``, ``outer``, ``tagged``, ``notagaccess``, ``forced_osh`` (0/1) and
``attr_cd1`` (the combined MAIR-style byte with HCR_EL2.CD = 1, ``-`` when the row has no
value).  Rows are computed with every feature implemented; ``needs:`` rows carry the value they
have when the feature is present.  When both inputs are bad the stage-1 UNPREDICTABLE byte wins
(``unpredictable``); otherwise a Reserved stage-2 encoding gives ``reserved``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

from memtypes.arch.combine import Combined, combine

COLUMNS = ("fwb", "s1_attr", "s2_memattr", "status", "type", "inner", "outer", "tagged",
           "notagaccess", "forced_osh", "attr_cd1")
INT_COLUMNS = frozenset({"fwb", "tagged", "notagaccess", "forced_osh"})

FWB_MODES = {"off": (False,), "on": (True,), "both": (False, True)}


def row(s1: int, s2: int, fwb: bool) -> dict:
    """One table row (a dict with the :data:`COLUMNS` keys, in order)."""
    c = combine(s1, s2, fwb=fwb)
    cd1 = combine(s1, s2, fwb=fwb, cd=True)
    return {
        "fwb": int(fwb),
        "s1_attr": f"0x{s1:02x}",
        "s2_memattr": f"0b{s2:04b}",
        "status": c.status,
        "type": c.type or "-",
        "inner": c.inner,
        "outer": c.outer,
        "tagged": int(c.tagged),
        "notagaccess": int(c.notagaccess),
        "forced_osh": int(c.forced_osh),
        "attr_cd1": "-" if cd1.attr is None else f"0x{cd1.attr:02x}",
    }


def fwb_modes(mode: str) -> tuple[bool, ...]:
    """``off`` | ``on`` | ``both`` -> the FWB values, raising ValueError otherwise."""
    try:
        return FWB_MODES[mode.lower()]
    except KeyError:
        raise ValueError(f"unknown FWB mode {mode!r} (expected off, on or both)") from None


def rows(mode: str = "both") -> list[dict]:
    """All rows for the FWB mode(s): FWB off first, then s1 0..255, then s2 0..15."""
    return [row(s1, s2, f) for f in fwb_modes(mode) for s1 in range(256) for s2 in range(16)]


def combined_rows(mode: str = "both") -> list[Combined]:
    return [combine(s1, s2, fwb=f) for f in fwb_modes(mode) for s1 in range(256)
            for s2 in range(16)]


def to_csv(table: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in table:
        w.writerow([r[k] for k in COLUMNS])
    return buf.getvalue()


def to_json(table: list[dict]) -> str:
    return json.dumps(table, indent=1) + "\n"


def summary(mode: str = "both") -> dict:
    """Counts per status and per result label, per FWB mode: {fwb: {"status": .., "label": ..}}."""
    out = {}
    for f in fwb_modes(mode):
        cs = [combine(s1, s2, fwb=f) for s1 in range(256) for s2 in range(16)]
        out[int(f)] = {
            "status": Counter(c.status for c in cs),
            "label": Counter(c.label for c in cs if c.valid),
            "tagged": sum(c.tagged for c in cs),
            "notagaccess": sum(c.notagaccess for c in cs),
            "forced_osh": sum(c.forced_osh for c in cs),
            "rows": len(cs),
        }
    return out
