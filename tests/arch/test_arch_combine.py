"""S1 + S2 combination vectors (arch.md 2, 3, 4.1; kernel-kvm.md section 10 last table)."""

from __future__ import annotations

import pytest

from memtypes.arch import (USUAL_S1, Combined, Features, behaviour, combine,
                           effective_shareability)
from memtypes.arch.attrs import POL_NC

WB, NC_, DEV_NGNRE = 0xFF, 0x44, 0x04


def test_public_constants_and_api():
    assert USUAL_S1 == {"Device-nGnRnE": 0x00, "Device-nGnRE": 0x04, "Normal-NC": 0x44,
                        "Normal-WB": 0xFF, "Tagged": 0xF0}
    c = combine(0xFF, 0b1111, fwb=False)
    assert isinstance(c, Combined)
    hash(c)
    assert combine(0xFF, 0b1111, fwb=False) is c  # memoised


# --- FWB = 0 (D8.6.5) --------------------------------------------------------------------------

@pytest.mark.parametrize("s1,s2,label", [
    (WB, 0b1111, "Normal-WB"),
    (WB, 0b0101, "Normal-NC"),
    (WB, 0b0001, "Device-nGnRE"),
    (WB, 0b1010, "Normal-WT"),
    (WB, 0b0111, "Normal-iWB-oNC"),
    (NC_, 0b1111, "Normal-NC"),
    (0x00, 0b0001, "Device-nGnRnE"),   # S1 stronger Device wins
    (0x0C, 0b0001, "Device-nGnRE"),    # S2 stronger Device wins
    (0x08, 0b1111, "Device-nGRE"),     # Device precedence
    (0xBB, 0b1111, "Normal-WT"),
    (0xF0, 0b1111, "Normal-WB-Tagged"),
    (0xF0, 0b0100, "Normal-WB-Tagged+NoTagAccess"),
    (0xF0, 0b0101, "Normal-NC"),
])
def test_nofwb_vectors(s1, s2, label):
    assert combine(s1, s2, fwb=False).label == label


def test_nofwb_hints_come_from_s1():
    c = combine(0x77, 0b1010, fwb=False)  # WB-RWA-T + S2 WT
    assert c.inner == c.outer == "WT-RWA-T"
    c = combine(0xEE, 0b1111, fwb=False)
    assert c.inner == "WB-RA-NT"


def test_nofwb_s2_1111_is_identity_rule():
    assert combine(0xFF, 0b1111, fwb=False).rule == "D8.6.5/I_MCQKW"


def test_notagaccess_only_on_tagged_s1():
    c = combine(0xFF, 0b0100, fwb=False)
    assert not c.notagaccess and not c.tagged and c.label == "Normal-WB"


# --- FWB = 1 (D8.6.6) --------------------------------------------------------------------------

@pytest.mark.parametrize("s1", [0x00, 0x04, 0x08, 0x0C, 0x44, 0xBB, 0xFF, 0xF0, 0x4F, None])
def test_fwb_0110_forces_wb(s1):
    c = combine(s1, 0b0110, fwb=True)
    assert c.type == "Normal" and c.inner.startswith("WB") and c.outer.startswith("WB")
    # Normal WB is not normalised to OSH (R_PYFVQ) - except with stage 1 disabled, whose output
    # is OSH (S1DisabledOutput) and OSH wins the combination (Table D8-103; arch.md 2.3, 3).
    # (Was ``not c.forced_osh`` for every s1, which was wrong for s1=None.)
    assert c.cacheable and c.forced_osh == (s1 is None)


def test_fwb_force_wb_hints():
    assert combine(0x44, 0b0110, fwb=True).inner == "WB-RWA-NT"   # S1 NC: RA+WA NT
    assert combine(0x77, 0b0110, fwb=True).inner == "WB-RWA-T"    # S1 cacheable: its hints
    assert combine(0xAA, 0b0110, fwb=True).inner == "WB-RA-NT"


@pytest.mark.parametrize("s1,label", [(0x00, "Device-nGnRnE"), (0x04, "Device-nGnRE"),
                                      (0xFF, "Normal-NC"), (0x44, "Normal-NC"),
                                      (0xF0, "Normal-NC")])
def test_fwb_0101_nc_unless_s1_device(s1, label):
    assert combine(s1, 0b0101, fwb=True).label == label


@pytest.mark.parametrize("s1", [0x00, 0x08, 0x44, 0xBB, 0x4F, 0xFF, 0xF0])
def test_fwb_0111_is_s1(s1):
    assert combine(s1, 0b0111, fwb=True).label == combine(s1, 0b1111, fwb=False).label


@pytest.mark.parametrize("m", [0b0100, 0b1000, 0b1001, 0b1010, 0b1011, 0b1100, 0b1101])
def test_fwb_reserved(m):
    c = combine(0xFF, m, fwb=True)
    assert c.status == "reserved" and c.label == "RESERVED" and c.type is None


def test_fwb_notagaccess_encodings():
    assert combine(0xF0, 0b1110, fwb=True).label == "Normal-WB-Tagged+NoTagAccess"
    assert combine(0xF0, 0b1111, fwb=True).label == "Normal-WB-Tagged+NoTagAccess"
    c = combine(0x44, 0b1110, fwb=True)
    assert c.label == "Normal-WB" and not c.notagaccess
    assert combine(0x44, 0b1111, fwb=True).label == "Normal-NC"
    assert combine(0xF0, 0b1110, fwb=True).attr == 0xE0


# --- section 4.1: which stage-2 encodings keep 0xF0 Tagged -------------------------------------

def test_tagged_survival_table_4_1():
    kept0 = {m for m in range(16) if combine(0xF0, m, fwb=False).tagged}
    kept1 = {m for m in range(16) if combine(0xF0, m, fwb=True).tagged}
    assert kept0 == {0b1111, 0b0100}
    assert kept1 == {0b0110, 0b0111, 0b1110, 0b1111}
    for fwb in (False, True):
        assert not any(combine(0xF0, m, fwb=fwb, cd=True).tagged for m in range(16))


# --- section 3: MMU off and HCR_EL2.CD ---------------------------------------------------------

def test_mmu_off_fwb0_is_device_ngnrne():
    c = combine(None, 0b1111, fwb=False)
    assert c.label == "Device-nGnRnE" and c.forced_osh and not c.cacheable


def test_mmu_off_fwb1_is_normal_wb():
    c = combine(None, 0b0110, fwb=True)
    assert c.label == "Normal-WB" and c.inner == "WB-RWA-NT"
    assert any(r.rule == "D8.6.6/R_RMTWN" for r in c.reasons)
    assert behaviour(c)["unaligned_access"][0] == "CONSTRAINED UNPREDICTABLE"


def test_cd_fwb0():
    assert combine(0xFF, 0b1111, fwb=False, cd=True).label == "Normal-NC"
    assert combine(0x04, 0b1111, fwb=False, cd=True).label == "Device-nGnRE"
    assert combine(0xFF, 0b0001, fwb=False, cd=True).label == "Device-nGnRE"
    c = combine(0xF0, 0b0100, fwb=False, cd=True)
    assert c.label == "Normal-NC" and not c.notagaccess


def test_cd_fwb1():
    c = combine(0xFF, 0b0110, fwb=True, cd=True)
    assert c.label == "Normal-NC" and c.rule == "D24.2.62/HCR_EL2.CD"
    assert combine(0x00, 0b0110, fwb=True, cd=True).label == "Normal-NC"
    assert combine(0x04, 0b0111, fwb=True, cd=True).label == "Device-nGnRE"
    assert combine(0xFF, 0b0001, fwb=True, cd=True).label == "Device-nGnRE"


# --- shareability (D8.6.7) ---------------------------------------------------------------------

def test_forced_osh():
    assert combine(0xFF, 0b0101, fwb=False).forced_osh
    assert combine(0x40, 0b1111, fwb=False).forced_osh    # FEAT_XS 0x40 too
    assert not combine(0x4F, 0b1111, fwb=False).forced_osh  # only one level NC
    assert combine(0xFF, 0b0001, fwb=False).forced_osh


def test_effective_shareability():
    assert effective_shareability("NSH", "ISH", False, None, None) == "ISH"
    assert effective_shareability("OSH", "ISH", False, None, None) == "OSH"
    assert effective_shareability("NSH", "NSH", False, None, None) == "NSH"
    assert effective_shareability("NSH", "NSH", True, None, None) == "OSH"
    assert effective_shareability("NSH", "NSH", False, POL_NC, POL_NC) == "OSH"


# --- features ----------------------------------------------------------------------------------

def test_features_absent_give_unpredictable_or_reserved():
    f = Features(fwb=True)
    assert combine(0xF0, 0b0110, fwb=True, features=f).status == "unpredictable"
    assert combine(0xFF, 0b1110, fwb=True, features=f).status == "reserved"
    assert combine(0x01, 0b1111, fwb=False, features=f).status == "unpredictable"
    assert combine(0xFF, 0b0100, fwb=False, features=f).status == "reserved"
    assert combine(0xF0, 0b0100, fwb=False).status == "needs:FEAT_MTE2|FEAT_MTE_PERM"
    assert combine(0x01, 0b0100, fwb=False).status == "needs:FEAT_XS|FEAT_MTE_PERM"


def test_fwb_without_feat_s2fwb_is_an_error():
    with pytest.raises(ValueError):
        combine(0xFF, 0b0110, fwb=True, features=Features())


def test_unpredictable_wins_over_reserved():
    c = combine(0x02, 0b1000, fwb=False)
    assert c.status == "unpredictable" and c.label == "UNPREDICTABLE"


# --- kernel-kvm.md section 10, "Expected combined guest memory types" --------------------------

@pytest.mark.parametrize("s1", [0xFF, 0xBB])
def test_kvm_table_normal_wb_wt(s1):
    assert combine(s1, 0b0101, fwb=True).label == "Normal-NC"
    assert combine(s1, 0b0101, fwb=False).label == "Normal-NC"
    assert combine(s1, 0b0001, fwb=True).label == "Device-nGnRE"
    assert combine(s1, 0b0110, fwb=True).label == "Normal-WB"


def test_kvm_table_normal_nc():
    assert combine(0x44, 0b0101, fwb=True).label == "Normal-NC"
    assert combine(0x44, 0b0001, fwb=True).label == "Device-nGnRE"
    assert combine(0x44, 0b0110, fwb=True).label == "Normal-WB"


def test_kvm_table_device_ngnre():
    assert combine(0x04, 0b0101, fwb=True).label == "Device-nGnRE"
    assert combine(0x04, 0b0001, fwb=True).label == "Device-nGnRE"
    assert combine(0x04, 0b0110, fwb=True).label == "Normal-WB"


# --- behaviour ---------------------------------------------------------------------------------

def test_behaviour_device_and_normal():
    b = behaviour(combine(0x00, 0b1111, fwb=False))
    assert b["speculative_reads"] == (False, "B2.10.2")
    assert b["gathering"][0] is False and b["reordering"][0] is False
    assert b["early_write_ack"][0] is False and b["unaligned_access"][0] is False
    b = behaviour(combine(0x0C, 0b1111, fwb=False))
    assert b["gathering"][0] and b["reordering"][0] and b["early_write_ack"][0]
    b = behaviour(combine(0xFF, 0b1111, fwb=False))
    assert b["speculative_reads"][0] and b["cacheable"][0] and not b["needs_cmo_on_alias"][0]
    b = behaviour(combine(0xFF, 0b0101, fwb=False))
    assert not b["cacheable"][0] and b["needs_cmo_on_alias"][0]
    assert behaviour(combine(0xF0, 0b0100, fwb=False))["tag_access"][0] == "notagaccess-fault"
    assert all(sec for _, sec in b.values())
    assert behaviour(combine(0x02, 0b1111, fwb=False))["cacheable"][0] == "UNPREDICTABLE"
