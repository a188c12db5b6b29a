"""Stage-1 attribute decoding: MAIR_ELx.Attr<n> bytes (Arm ARM DDI 0487 M.a.a).

D24.2.127 MAIR_EL1 field description, D8.6.1, pseudocode S1DecodeMemAttrs, DecodeLDFAttr and
S1ConstrainUnpredictableRESMAIR (J1.3.5.7/14/15).  See reference arch.md section 1.
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.attrs import (FEAT_MTE2, FEAT_XS, FEATURE_FIELD, NGNRNE, OK, POL_NC,
                                 POL_WB_RWA_NT, UNPREDICTABLE, WB, WT, Policy, S1Attr,
                                 status_for_needs)
from memtypes.arch.features import Features
from memtypes.arch.reason import Reason

SRC_MAIR = "Arm ARM DDI 0487 M.a.a D24.2.127 MAIR_EL1, D8.6.1"

R_S1_DEVICE = Reason("D8.6.1/device", SRC_MAIR + ", S1DecodeMemAttrs",
                     "stage-1 Attr 0000dd00: Device, type from dd")
R_S1_DEVICE_XS0 = Reason("D8.6.1/device-xs0", SRC_MAIR + ", S1DecodeMemAttrs",
                         "stage-1 Attr 0000dd01: Device with XS=0 (FEAT_XS)")
R_S1_NORMAL = Reason("D8.6.1/normal", SRC_MAIR + ", DecodeLDFAttr",
                     "stage-1 Attr oooo iiii: Normal, outer policy oooo, inner policy iiii")
R_S1_NC_XS0 = Reason("D8.6.1/normal-nc-xs0", SRC_MAIR,
                     "stage-1 Attr 0x40: Normal iNC oNC with XS=0 (FEAT_XS)")
R_S1_WT_XS0 = Reason("D8.6.1/normal-wt-xs0", SRC_MAIR,
                     "stage-1 Attr 0xA0: Normal iWT oWT Read-Allocate Non-transient, XS=0 "
                     "(FEAT_XS)")
R_S1_TAGGED = Reason("D8.6.1/tagged", SRC_MAIR + ", D10.3",
                     "stage-1 Attr 0xF0: Tagged Normal iWB oWB RA+WA Non-transient (FEAT_MTE2)")
R_S1_RESMAIR = Reason("D8.6.1/RESMAIR", SRC_MAIR + ", K1.2.19, S1ConstrainUnpredictableRESMAIR",
                      "stage-1 Attr byte is UNPREDICTABLE: CONSTRAINED UNPREDICTABLE choice of "
                      "some allocated value; a model must not rely on it")
R_S1_RESMAIR_FEAT = Reason("D8.6.1/RESMAIR-feature", SRC_MAIR + ", S1ConstrainUnpredictableRESMAIR",
                           "stage-1 Attr byte needs a feature that is not implemented: "
                           "UNPREDICTABLE")
R_S1_DISABLED = Reason("J1.1.4.54/S1DisabledOutput",
                       "Arm ARM DDI 0487 M.a.a AArch64.S1DisabledOutput (J1.1.4.54), D8.2",
                       "stage 1 disabled (guest SCTLR_EL1.M == 0): data accesses are "
                       "Device-nGnRnE, Outer Shareable, untagged")


def decode_ldf_attr(nibble: int) -> Policy:
    """One nibble of a Normal MAIR byte (DecodeLDFAttr, D24.2.127, arch.md table 1.2).

    Exactly 0b0100 is Non-cacheable; otherwise bit 2 selects Write-Back (1) or Write-Through
    (0), bits [1:0] are the Read/Write-Allocate hints, and the line is transient when bit 3 is 0.
    Transient is only defined with some allocation hint (0b0000 is never a Normal nibble,
    0b0100 is NC), so "no allocate" nibbles (1000, 1100) are Non-transient.
    """
    if nibble == 0b0100:
        return POL_NC
    kind = WB if nibble & 0b0100 else WT
    return Policy(kind, bool(nibble & 0b10), bool(nibble & 0b01), not (nibble & 0b1000))


def s1_disabled_output() -> S1Attr:
    """Stage 1 disabled, data access (AArch64.S1DisabledOutput, J1.1.4.54; arch.md section 3).

    The output is Device-nGnRnE, Outer Shareable, untagged; it then goes through the usual
    stage-1 + stage-2 combination.  (HCR_EL2.DC = 0 assumed; instruction fetches not modelled.)
    """
    return S1Attr(byte=0x00, status=OK, needs=(), device=NGNRNE, inner=None, outer=None,
                  tagged=False, xs=True, reasons=(R_S1_DISABLED,))


def _unpredictable(byte: int, reason: Reason, needs: tuple[str, ...] = ()) -> S1Attr:
    return S1Attr(byte=byte, status=UNPREDICTABLE, needs=needs, device=None, inner=None,
                  outer=None, tagged=False, xs=True, reasons=(reason,))


def s1_decode_mem_attrs(byte: int) -> S1Attr:
    """Decode a MAIR attribute byte assuming every feature is implemented (D8.6.1, D24.2.127,
    pseudocode S1DecodeMemAttrs).

    Bytes that exist only with a feature get status ``needs:FEAT_X`` and carry their value;
    the 20 always-UNPREDICTABLE bytes (0000dd1x and xxxx0000 other than 0x00/0x40/0xA0/0xF0)
    get ``unpredictable`` (S1ConstrainUnpredictableRESMAIR, arch.md 1.1, 1.3).

    XS (FEAT_XS, arch.md 1.2): Device XS = NOT Attr[0]; Normal iWB oWB (including the Tagged
    byte 0xF0) XS = 0; the explicit XS=0 bytes 0x40 and 0xA0; every other Normal byte XS = 1.
    """
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"stage-1 attribute byte out of range: {byte!r} (expected 0..255)")
    hi, lo = byte >> 4, byte & 0xF
    if hi == 0:
        dd = (lo >> 2) & 0b11
        low2 = lo & 0b11
        if low2 == 0b00:
            return S1Attr(byte, OK, (), dd, None, None, False, True, (R_S1_DEVICE,))
        if low2 == 0b01:
            return S1Attr(byte, status_for_needs((FEAT_XS,)), (FEAT_XS,), dd, None, None,
                          False, False, (R_S1_DEVICE_XS0,))
        return _unpredictable(byte, R_S1_RESMAIR)
    if lo == 0:
        if byte == 0x40:
            return S1Attr(byte, status_for_needs((FEAT_XS,)), (FEAT_XS,), None, POL_NC, POL_NC,
                          False, False, (R_S1_NC_XS0,))
        if byte == 0xA0:
            wt = Policy(WT, True, False, False)
            return S1Attr(byte, status_for_needs((FEAT_XS,)), (FEAT_XS,), None, wt, wt,
                          False, False, (R_S1_WT_XS0,))
        if byte == 0xF0:
            # Normal iWB oWB, so XS = 0 like every other iWB oWB byte (arch.md 1.2).
            return S1Attr(byte, status_for_needs((FEAT_MTE2,)), (FEAT_MTE2,), None,
                          POL_WB_RWA_NT, POL_WB_RWA_NT, True, False, (R_S1_TAGGED,))
        return _unpredictable(byte, R_S1_RESMAIR)
    inner, outer = decode_ldf_attr(lo), decode_ldf_attr(hi)
    # XS (S1DecodeMemAttrs): Normal iWB oWB gets XS = 0, every other Normal byte XS = 1.
    xs = not (inner.kind == WB and outer.kind == WB)
    return S1Attr(byte, OK, (), None, inner, outer, False, xs, (R_S1_NORMAL,))


def s1_constrain_unpredictable_resmair(attr: S1Attr, features: Features) -> S1Attr:
    """A byte whose feature is absent is reserved (K1.2.19, D24.2.127,
    S1ConstrainUnpredictableRESMAIR; arch.md 1.3).

    The architecture replaces it by some allocated value; the model reports ``unpredictable``.
    """
    missing = tuple(f for f in attr.needs if not getattr(features, FEATURE_FIELD[f]))
    if not missing or attr.status == UNPREDICTABLE:
        return attr
    return _unpredictable(attr.byte, R_S1_RESMAIR_FEAT, attr.needs)


@lru_cache(maxsize=None)
def decode_s1(byte: int, features: Features = Features.all()) -> S1Attr:
    """Decode a stage-1 MAIR attribute byte (0..255) for the given features (D8.6.1)."""
    return s1_constrain_unpredictable_resmair(s1_decode_mem_attrs(byte), features)


__all__ = ["decode_ldf_attr", "decode_s1", "s1_decode_mem_attrs", "s1_disabled_output",
           "s1_constrain_unpredictable_resmair"]
