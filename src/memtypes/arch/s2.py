"""Stage-2 MemAttr[3:0] decoding (Arm ARM DDI 0487 M.a.a D8.6.3, D8.6.5, D8.6.6).

FWB = 0: Table D8-96 (R_HMNDG), S2DecodeMemAttrs, S2ResMemAttr.
FWB = 1: Tables D8-100/D8-101 (R_RZNGNK, R_NQDNZ, R_JXGKQ, R_VRJSW), AArch64.S2ApplyFWBMemAttrs.
See reference arch.md section 2.
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.attrs import (FEAT_MTE_PERM, FEATURE_FIELD, NC, RESERVED, WB, WT, S2Attr,
                                 status_for_needs)
from memtypes.arch.features import Features
from memtypes.arch.reason import Reason

SRC_D96 = "Arm ARM DDI 0487 M.a.a D8.6.5, Table D8-96 (R_HMNDG), S2DecodeMemAttrs"
SRC_D101 = "Arm ARM DDI 0487 M.a.a D8.6.6, Tables D8-100/D8-101, AArch64.S2ApplyFWBMemAttrs"

R_S2_DEVICE = Reason("D8.6.5/Table-D8-96/device", SRC_D96,
                     "stage-2 MemAttr 00dd: Device, type from dd")
R_S2_NORMAL = Reason("D8.6.5/Table-D8-96/normal", SRC_D96,
                     "stage-2 MemAttr oo ii: Normal, outer oo / inner ii (01 NC, 10 WT, 11 WB); "
                     "stage 2 supplies no allocation or transient hints")
R_S2_NTA = Reason("D8.6.5/R_JSXRX", SRC_D96 + ", D8.6.4, Table D8-99",
                  "stage-2 MemAttr 0100 (FEAT_MTE_PERM): Normal iWB oWB NoTagAccess")
R_S2_RESERVED = Reason("D8.6.5/S2ResMemAttr", SRC_D96 + ", S2ResMemAttr, K1.2.19",
                       "stage-2 MemAttr is Reserved: CONSTRAINED UNPREDICTABLE, a model must "
                       "not rely on it")
R_S2_FWB_DEVICE = Reason("D8.6.6/Table-D8-100/device", SRC_D101,
                         "FWB MemAttr 00dd: Device; combined with a stage-1 Device type the "
                         "strongest of the two")
R_S2_FWB_NC = Reason("D8.6.6/Table-D8-100/nc", SRC_D101,
                     "FWB MemAttr 0101: Normal iNC oNC unless stage 1 is Device")
R_S2_FWB_WB = Reason("D8.6.6/Table-D8-100/force-wb", SRC_D101 + " (R_THYXB, R_TBQKG)",
                     "FWB MemAttr x110: forced Normal Write-Back, whatever stage 1 says")
R_S2_FWB_AS_S1 = Reason("D8.6.6/Table-D8-100/as-s1", SRC_D101,
                        "FWB MemAttr x111: the stage-1 attributes are used unchanged")
R_S2_FWB_NTA = Reason("D8.6.6/Table-D8-101/notagaccess", SRC_D101 + ", D8.6.4",
                      "FWB MemAttr 111x (FEAT_MTE_PERM): NoTagAccess if the result is Tagged")
R_S2_FWB_RESERVED = Reason("D8.6.6/Table-D8-101/reserved",
                           SRC_D101 + " (R_JXGKQ, R_VRJSW), K1.2.19",
                           "FWB MemAttr is Reserved: CONSTRAINED UNPREDICTABLE (0100, 10xx, "
                           "1100, 1101; 1110/1111 without FEAT_MTE_PERM, where bit 3 is RES0)")
R_S2_RESERVED_FEAT = Reason("D8.6.4/MTE_PERM-absent", SRC_D96 + ", D8.6.4",
                            "stage-2 NoTagAccess encoding without FEAT_MTE_PERM: Reserved")

_KIND = {0b01: NC, 0b10: WT, 0b11: WB}


def _reserved(m: int, fwb: bool, reason: Reason, needs: tuple[str, ...] = ()) -> S2Attr:
    return S2Attr(m, fwb, RESERVED, needs, None, None, None, None, False, (reason,))


def s2_decode_mem_attrs(m: int) -> S2Attr:
    """FWB = 0 decoding of MemAttr[3:0], all features implemented (Table D8-96, S2DecodeMemAttrs).

    MemAttr[3:2] == 00 is Device with type MemAttr[1:0]; otherwise Normal with outer MemAttr[3:2]
    and inner MemAttr[1:0] (01 NC, 10 WT, 11 WB).  Inner 00 is reserved (S2ResMemAttr) except
    0100, which is NoTagAccess iWB oWB with FEAT_MTE_PERM (R_JSXRX).
    """
    if not 0 <= m <= 0xF:
        raise ValueError(f"stage-2 MemAttr out of range: {m!r} (expected 0..15)")
    hi, lo = m >> 2, m & 0b11
    if hi == 0:
        return S2Attr(m, False, "ok", (), "device", lo, None, None, False, (R_S2_DEVICE,))
    if lo == 0:
        if m == 0b0100:
            return S2Attr(m, False, status_for_needs((FEAT_MTE_PERM,)), (FEAT_MTE_PERM,),
                          "normal", None, WB, WB, True, (R_S2_NTA,))
        return _reserved(m, False, R_S2_RESERVED)
    return S2Attr(m, False, "ok", (), "normal", None, _KIND[lo], _KIND[hi], False, (R_S2_NORMAL,))


def s2_decode_fwb_mem_attrs(m: int) -> S2Attr:
    """FWB = 1 decoding of MemAttr[3:0], all features implemented (Tables D8-100/D8-101).

    MemAttr[2] == 0: Device type MemAttr[1:0] (R_GSDKZ), except 10xx, which is Reserved with
    FEAT_MTE_PERM (and has the RES0 bit 3 set without it).  MemAttr[2] == 1: [1:0] 11 use
    stage 1, 10 force Write-Back, 01 Non-cacheable unless stage 1 is Device, 00 Reserved.
    MemAttr[3] == 1 is only defined for 1110/1111 (FEAT_MTE_PERM NoTagAccess, R_JXGKQ); 1100 and
    1101 are Reserved.  AArch64.S2ApplyFWBMemAttrs would give values for the reserved encodings;
    the tables call them Reserved and so does this model.
    """
    if not 0 <= m <= 0xF:
        raise ValueError(f"stage-2 MemAttr out of range: {m!r} (expected 0..15)")
    b3, b2, lo = m >> 3, (m >> 2) & 1, m & 0b11
    if b3 == 0 and b2 == 0:
        return S2Attr(m, True, "ok", (), "device", lo, None, None, False, (R_S2_FWB_DEVICE,))
    if b3 == 1 and lo in (0b10, 0b11) and b2 == 1:
        op = "force-wb" if lo == 0b10 else "as-s1"
        base = R_S2_FWB_WB if lo == 0b10 else R_S2_FWB_AS_S1
        return S2Attr(m, True, status_for_needs((FEAT_MTE_PERM,)), (FEAT_MTE_PERM,), op, None,
                      None, None, True, (base, R_S2_FWB_NTA))
    if b3 == 1 or lo == 0b00:
        return _reserved(m, True, R_S2_FWB_RESERVED)
    if lo == 0b11:
        return S2Attr(m, True, "ok", (), "as-s1", None, None, None, False, (R_S2_FWB_AS_S1,))
    if lo == 0b10:
        return S2Attr(m, True, "ok", (), "force-wb", None, None, None, False, (R_S2_FWB_WB,))
    return S2Attr(m, True, "ok", (), "nc-unless-s1-device", None, None, None, False,
                  (R_S2_FWB_NC,))


def s2_res_mem_attr(attr: S2Attr, features: Features) -> S2Attr:
    """An encoding whose feature is absent is Reserved (S2ResMemAttr; D8.6.4 FEAT_MTE_PERM)."""
    missing = tuple(f for f in attr.needs if not getattr(features, FEATURE_FIELD[f]))
    if not missing or attr.status == RESERVED:
        return attr
    return _reserved(attr.memattr, attr.fwb, R_S2_RESERVED_FEAT, attr.needs)


@lru_cache(maxsize=None)
def decode_s2(memattr: int, *, fwb: bool, features: Features = Features.all()) -> S2Attr:
    """Decode stage-2 MemAttr[3:0] with HCR_EL2.FWB off or on, for the given features.

    FWB = 0: D8.6.5 Table D8-96 (R_HMNDG, S2DecodeMemAttrs); FWB = 1: D8.6.6 Tables
    D8-100/D8-101 (AArch64.S2ApplyFWBMemAttrs); then S2ResMemAttr / D8.6.4 for encodings whose
    feature (FEAT_MTE_PERM) is absent.  See arch.md 2.1, 2.2.
    """
    raw = s2_decode_fwb_mem_attrs(memattr) if fwb else s2_decode_mem_attrs(memattr)
    return s2_res_mem_attr(raw, features)
