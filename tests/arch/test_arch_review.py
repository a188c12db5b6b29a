"""Review tests: the engine checked exhaustively against an independent reading of arch.md.

Each test names the arch.md section (reference /work/shared/reference/arch.md, Arm ARM DDI 0487
M.a.a) it checks.  The oracle below is written straight from the model pseudocode in arch.md 2.4
plus the HCR_EL2.CD placement of arch.md 3 and the reserved encodings of 1.1, 2.1 and 2.2; it
shares no code with memtypes.arch.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from dataclasses import replace

import pytest

from memtypes.arch import Features, behaviour, combine, decode_s1, table
from memtypes.arch import mte, s1, s2
from memtypes.arch.names import R_KVM_NOTAGACCESS_NAMES, R_LINUX_MAIR, USUAL_S1

# --- an independent oracle (arch.md 1.1, 1.2, 2.1, 2.2, 2.4, 3) -------------------------------

RWA_NT = ("WB", "RWA", False)
NC = ("NC",)


def _nibble(n: int) -> tuple:
    """arch.md 1.2: 0100 NC; bit 2 WB/WT; [1:0] R,W; transient = bit3 == 0 (with some hint)."""
    if n == 0b0100:
        return NC
    hints = ("noalloc", "WA", "RA", "RWA")[n & 3]
    return ("WB" if n & 4 else "WT", hints, not n & 8 and bool(n & 3))


def _s1(b):
    """arch.md 1.1 with every feature implemented; None = UNPREDICTABLE; b None = MMU off (3)."""
    if b is None:
        return ("dev", 0)
    hi, lo = b >> 4, b & 15
    if hi == 0:
        return ("dev", lo >> 2) if lo & 2 == 0 else None
    if lo == 0:
        return {0x40: ("norm", NC, NC, False),
                0xA0: ("norm", ("WT", "RA", False), ("WT", "RA", False), False),
                0xF0: ("norm", RWA_NT, RWA_NT, True)}.get(b)
    return ("norm", _nibble(lo), _nibble(hi), False)


def _cmb(p, k2):
    """arch.md 2.4 cmb_pol: NC if either NC, else WT if either WT, else WB; S1 hints."""
    if p[0] == "NC" or k2 == "NC":
        return NC
    return ("WT" if "WT" in (p[0], k2) else "WB",) + p[1:]


def _oracle(b, m, fwb, cd):
    a = _s1(b)
    if a is None:
        return "unpredictable"
    kinds = {1: "NC", 2: "WT", 3: "WB"}
    if not fwb:
        if m >> 2 == 0:
            s2a, nta = ("dev", m & 3), False
        elif m & 3 == 0:
            if m != 0b0100:
                return "reserved"
            s2a, nta = ("norm", "WB", "WB"), True
        else:
            s2a, nta = ("norm", kinds[m & 3], kinds[m >> 2]), False
        if cd and s2a[0] == "norm":          # arch.md 3: CD before combining with FWB = 0
            s2a, nta = ("norm", "NC", "NC"), False
        if a[0] == "dev":
            return ("dev", min(a[1], s2a[1]) if s2a[0] == "dev" else a[1])
        if s2a[0] == "dev":
            return ("dev", s2a[1])
        i, o = _cmb(a[1], s2a[1]), _cmb(a[2], s2a[2])
        tagged = a[3] and i == o == RWA_NT
        return ("norm", i, o, tagged, nta and tagged)
    if m in (0b0100, 0b1000, 0b1001, 0b1010, 0b1011, 0b1100, 0b1101):
        return "reserved"
    if not m & 0b0100:
        return ("dev", min(a[1], m & 3) if a[0] == "dev" else m & 3)
    if m & 3 == 0b11:
        if a[0] == "dev":
            return a
        i, o = a[1], a[2]
    elif m & 3 == 0b10:
        def force(p):
            return ("WB",) + p[1:] if a[0] == "norm" and p[0] != "NC" else RWA_NT
        i, o = (force(a[1]), force(a[2])) if a[0] == "norm" else (RWA_NT, RWA_NT)
    else:
        if a[0] == "dev":
            return a
        i, o = NC, NC
    if cd:                                   # arch.md 3: CD after the FWB combination
        return ("norm", NC, NC, False, False)
    tagged = a[0] == "norm" and a[3] and i == o == RWA_NT
    return ("norm", i, o, tagged, m >> 1 == 0b111 and tagged)


def _spell(p):
    return "NC" if p == NC else f"{p[0]}-{p[1]}-{'T' if p[2] else 'NT'}"


def _expected(b, m, fwb, cd):
    r = _oracle(b, m, fwb, cd)
    if isinstance(r, str) or r[0] == "dev":
        return r
    return ("norm", _spell(r[1]), _spell(r[2]), r[3], r[4])


def _got(c):
    if not c.valid:
        return c.status
    if c.device is not None:
        return ("dev", c.device)
    return ("norm", c.inner, c.outer, c.tagged, c.notagaccess)


@pytest.mark.parametrize("fwb", [False, True])
@pytest.mark.parametrize("cd", [False, True])
def test_every_input_matches_arch_md_2_4_oracle(fwb, cd):
    """arch.md 2.1, 2.2, 2.4, 3: all 257 x 16 inputs (MMU off included) per FWB and CD."""
    bad = [(b, m) for b in [None, *range(256)] for m in range(16)
           if _got(combine(b, m, fwb=fwb, cd=cd)) != _expected(b, m, fwb, cd)]
    assert bad == []


@pytest.mark.parametrize("fwb", [False, True])
@pytest.mark.parametrize("cd", [False, True])
def test_notagaccess_only_when_tagged_exhaustive(fwb, cd):
    """arch.md 4.4: NoTagAccess only on a Tagged result, never with HCR_EL2.CD = 1."""
    for b in range(256):
        for m in range(16):
            c = combine(b, m, fwb=fwb, cd=cd)
            assert not c.notagaccess or c.tagged
            assert not (cd and (c.tagged or c.notagaccess))


# --- arch.md 1.2: the XS attribute ------------------------------------------------------------

def _xs_expected(b: int) -> bool:
    hi, lo = b >> 4, b & 15
    if hi == 0:
        return not b & 1                      # Device: XS = NOT Attr[0]
    if b in (0x40, 0xA0):
        return False                          # explicit XS = 0 bytes
    wb = lambda n: n != 0b0100 and bool(n & 0b0100)  # noqa: E731
    if b == 0xF0 or (wb(hi) and wb(lo)):
        return False                          # Normal iWB oWB (0xF0 is iWB oWB too)
    return True


def test_xs_attribute_arch_md_1_2():
    """arch.md 1.2 (S1DecodeMemAttrs): 0xF0 is Normal iWB oWB, so XS = 0 (was XS = 1)."""
    for b in range(256):
        a = decode_s1(b)
        if a.valid:
            assert a.xs == _xs_expected(b), hex(b)
    assert decode_s1(0xF0).xs is False
    assert "XS=0" in decode_s1(0xF0).describe


# --- arch.md 3 + 2.3: stage 1 disabled is Outer Shareable -------------------------------------

def test_mmu_off_is_osh_even_when_forced_wb():
    """arch.md 3 (S1DisabledOutput: Device-nGnRnE, OSH) + 2.3 (OSH wins, Table D8-103)."""
    for m in range(16):
        for fwb in (False, True):
            for cd in (False, True):
                c = combine(None, m, fwb=fwb, cd=cd)
                assert not c.valid or c.forced_osh, (m, fwb, cd)
    c = combine(None, 0b0110, fwb=True)
    assert c.label == "Normal-WB" and c.forced_osh
    assert any(r.rule == "D8.6.7/S1-disabled-OSH" for r in c.reasons)
    assert behaviour(c)["outer_shareable"] == (True, "D8.6.7 (Table D8-103), J1.1.4.54")
    # a stage-1 Device *byte* forced to WB is not forced OSH: R_NSCNC leaves it IMP DEF
    assert not combine(0x00, 0b0110, fwb=True).forced_osh
    assert combine(None, 0b1111, fwb=False).label == "Device-nGnRnE"


# --- the table: 8192 rows, needs: rows carry the value with the feature present ----------------

_FIELD = {"FEAT_XS": "xs", "FEAT_MTE2": "mte", "FEAT_MTE_PERM": "mte_perm"}


def _value(c):
    return (c.type, c.inner, c.outer, c.tagged, c.notagaccess, c.forced_osh, c.attr)


def test_needs_rows_carry_the_value_with_the_feature_present():
    """table.py / arch.md 1.3, 2.1, 2.2: a needs: row is what the engine gives with exactly those
    features implemented, and unpredictable/reserved as soon as one of them is absent."""
    rows = table.rows("both")
    assert len(rows) == 8192
    n = 0
    for r in rows:
        if not r["status"].startswith("needs:"):
            continue
        n += 1
        feats = r["status"][len("needs:"):].split("|")
        b, m, fwb = int(r["s1_attr"], 16), int(r["s2_memattr"], 2), bool(r["fwb"])
        minimal = Features(fwb=True, **{_FIELD[f]: True for f in feats})
        full, got = combine(b, m, fwb=fwb), combine(b, m, fwb=fwb, features=minimal)
        assert got.valid and _value(got) == _value(full)
        assert (r["type"], r["inner"], r["outer"]) == (got.type, got.inner, got.outer)
        for f in feats:
            lacking = combine(b, m, fwb=fwb, features=replace(minimal, **{_FIELD[f]: False}))
            assert lacking.status in ("unpredictable", "reserved")
    assert n == 687 + 120 + 20 + 18 + 3


def test_table_rows_equal_combine():
    """Every row is combine() with all features; attr_cd1 is the HCR_EL2.CD = 1 byte."""
    for r in table.rows("both"):
        b, m, fwb = int(r["s1_attr"], 16), int(r["s2_memattr"], 2), bool(r["fwb"])
        c, c1 = combine(b, m, fwb=fwb), combine(b, m, fwb=fwb, cd=True)
        assert r["status"] == c.status
        assert (r["type"], r["inner"], r["outer"]) == (c.type or "-", c.inner, c.outer)
        assert (r["tagged"], r["notagaccess"], r["forced_osh"]) == (
            int(c.tagged), int(c.notagaccess), int(c.forced_osh))
        assert r["attr_cd1"] == ("-" if c1.attr is None else f"0x{c1.attr:02x}")


_POLICY = re.compile(r"^(-|NC|(WT|WB)-(noalloc|WA|RA|RWA)-(T|NT))$")
_STATUS = re.compile(r"^(ok|unpredictable|reserved|needs:FEAT_(XS|MTE2|MTE_PERM)"
                     r"(\|FEAT_(XS|MTE2|MTE_PERM))*)$")
_TYPES = {"-", "Normal", "Device-nGnRnE", "Device-nGnRE", "Device-nGRE", "Device-GRE"}


def test_table_value_spellings():
    """`memtypes combine --table` value spellings (columns are checked in test_arch_table)."""
    for r in table.rows("both"):
        assert r["fwb"] in (0, 1) and re.fullmatch(r"0x[0-9a-f]{2}", r["s1_attr"])
        assert re.fullmatch(r"0b[01]{4}", r["s2_memattr"])
        assert _STATUS.match(r["status"]) and r["type"] in _TYPES
        assert _POLICY.match(r["inner"]) and _POLICY.match(r["outer"])
        assert (r["inner"] == "-") == (r["type"] != "Normal") == (r["outer"] == "-")
        assert {r["tagged"], r["notagaccess"], r["forced_osh"]} <= {0, 1}
        assert re.fullmatch(r"-|0x[0-9a-f]{2}", r["attr_cd1"])


# --- kernel-kvm.md section 10, last table, for both FWB modes where it applies ----------------

@pytest.mark.parametrize("s1b,nc,dev,fwb_normal", [
    (0xFF, "Normal-NC", "Device-nGnRE", "Normal-WB"),
    (0xBB, "Normal-NC", "Device-nGnRE", "Normal-WB"),
    (0x44, "Normal-NC", "Device-nGnRE", "Normal-WB"),
    (0x04, "Device-nGnRE", "Device-nGnRE", "Normal-WB"),
])
def test_kvm_expected_guest_types_both_modes(s1b, nc, dev, fwb_normal):
    """kernel-kvm.md 10 "Expected combined guest memory types": S2 NC (0101) and Device-nGnRE
    (0001) mean the same with and without FWB; FWB_NORMAL (0110) forces WB."""
    for fwb in (False, True):
        assert combine(s1b, 0b0101, fwb=fwb).label == nc
        assert combine(s1b, 0b0001, fwb=fwb).label == dev
    c = combine(s1b, 0b0110, fwb=True)
    assert c.label == fwb_normal and c.inner.startswith("WB-") and c.outer.startswith("WB-")


# --- docstrings cite the Arm ARM; UNVERIFIED reasons are flagged -----------------------------

combine_mod = importlib.import_module("memtypes.arch.combine")  # the package re-exports combine()

_ARM_ID = re.compile(r"\b[BDJK]\d+(\.\d+)+|\bR_[A-Z]{5}\b|\bI_[A-Z]{5}\b|Table D\d+-\d+")
RULE_FUNCTIONS = [
    s1.decode_ldf_attr, s1.s1_disabled_output, s1.s1_decode_mem_attrs,
    s1.s1_constrain_unpredictable_resmair, s1.decode_s1,
    s2.s2_decode_mem_attrs, s2.s2_decode_fwb_mem_attrs, s2.s2_res_mem_attr, s2.decode_s2,
    combine_mod.s2_combine_s1_device, combine_mod.s2_combine_s1_attr_hints,
    combine_mod.s2_force_wb_policy, combine_mod.hcr_cd_applies,
    combine_mod.effective_shareability, combine_mod.forced_outer_shareable,
    combine_mod.encode_par_attrs, combine_mod.s2_combine_s1_mem_attrs,
    combine_mod.s2_apply_fwb_mem_attrs, combine_mod.combine,
    mte.is_taggable_mem_attr, mte.s2_mem_tag_type, mte.s2_no_tag_access, behaviour,
]


@pytest.mark.parametrize("fn", RULE_FUNCTIONS, ids=lambda f: f.__name__)
def test_rule_docstrings_cite_arm_arm(fn):
    doc = inspect.getdoc(fn)
    assert doc and _ARM_ID.search(doc), fn.__name__


def test_unverified_reasons_are_flagged():
    """arch.md 1.4 and 7: the Linux MAIR values and the KVM NoTagAccess names are UNVERIFIED."""
    assert R_LINUX_MAIR.unverified and R_LINUX_MAIR.as_dict()["unverified"] is True
    assert set(USUAL_S1.values()) == {0x00, 0x04, 0x44, 0xFF, 0xF0}
    assert R_KVM_NOTAGACCESS_NAMES.unverified
    # the architectural rules themselves are not UNVERIFIED
    for fwb in (False, True):
        for b in range(256):
            for m in range(16):
                assert not any(r.unverified for r in combine(b, m, fwb=fwb).reasons)


def test_cli_marks_notagaccess_names_unverified(capsys):
    from memtypes.cli import main
    assert main(["combine", "tagged", "MT_S2_NORMAL_NOTAGACCESS", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["label"] == "Normal-WB-Tagged+NoTagAccess"
    assert any(r.get("unverified") and r["rule"] == R_KVM_NOTAGACCESS_NAMES.rule
               for r in d["reasons"])
    assert main(["combine", "tagged", "0b0100", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert not any(r.get("unverified") for r in d["reasons"])
