"""Stage-1 + stage-2 memory attribute combination (Arm ARM DDI 0487 M.a.a D8.6.5, D8.6.6).

Pseudocode: S2CombineS1MemAttrs, S2CombineS1AttrHints, S2CombineS1Device (FWB = 0),
AArch64.S2ApplyFWBMemAttrs (FWB = 1), HCR_EL2.CD in AArch64.S2Translate (D24.2.62),
EffectiveShareability (R_PYFVQ, R_YHCTP), S2MemTagType (D10.3).  See reference arch.md 2-4.

Where QEMU (target/arm/ptw.c) differs from the Arm ARM (arch.md section 6, Q1..Q9) this module
follows the Arm ARM.

Status of a combined result: ``unpredictable`` when the stage-1 byte is UNPREDICTABLE (this
wins when both inputs are bad), else ``reserved`` when the stage-2 encoding is Reserved, else
``needs:...`` with the features either input depends on, else ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from memtypes.arch.attrs import (DEVICE_NAMES, NC, NEEDS, OK, POL_NC, POL_WB_RWA_NT, RESERVED,
                                 UNPREDICTABLE, WB, WT, Policy, S1Attr, S2Attr, merge_needs,
                                 normal_label, status_for_needs)
from memtypes.arch.features import Features
from memtypes.arch.mte import (R_NTA, R_NTA_IGNORED, R_TAGGED, R_TAGS_LOST, s2_mem_tag_type,
                               s2_no_tag_access)
from memtypes.arch.reason import Reason
from memtypes.arch.s1 import decode_s1, s1_disabled_output
from memtypes.arch.s2 import decode_s2

SRC_NOFWB = "Arm ARM DDI 0487 M.a.a D8.6.5 (Tables D8-97, D8-98), S2CombineS1MemAttrs"
SRC_FWB = "Arm ARM DDI 0487 M.a.a D8.6.6 (Tables D8-100, D8-101), AArch64.S2ApplyFWBMemAttrs"

R_STRONGEST_DEVICE = Reason("D8.6.5.1/strongest-device", SRC_NOFWB + ", S2CombineS1Device",
                            "both stages Device: the strongest Device type of the two")
R_S1_DEVICE_WINS = Reason("D8.6.5.1/device-precedence", SRC_NOFWB,
                          "Device has precedence over Normal: the Device stage's type unchanged")
R_NORMAL_COMBINE = Reason("D8.6.5.2/normal-combine", SRC_NOFWB + ", S2CombineS1AttrHints",
                          "both Normal: per level NC if either NC, else WT if either WT, else WB; "
                          "allocation hints and transient flag from stage 1")
R_IDENTITY = Reason("D8.6.5/I_MCQKW", SRC_NOFWB,
                    "stage-2 MemAttr 1111: the result is exactly the stage-1 attributes")
R_NTA_NOFWB = Reason("D8.6.5/R_JSXRX", SRC_NOFWB + ", Table D8-99",
                     "stage-2 MemAttr 0100 acts as 1111 and adds NoTagAccess to a Tagged result")
R_FWB_DEVICE = Reason("D8.6.6/R_GSDKZ", SRC_FWB + ", S2CombineS1Device",
                      "FWB stage-2 Device: the stronger of the stage-2 type and a stage-1 Device "
                      "type")
R_FWB_NC = Reason("D8.6.6/nc-unless-s1-device", SRC_FWB,
                  "FWB 0101: stage-1 Device stays Device, anything else becomes Normal iNC oNC")
R_FWB_FORCE_WB = Reason("D8.6.6/R_THYXB", SRC_FWB + " (R_THYXB, R_TBQKG)",
                        "FWB x110: forced Normal Write-Back; per level stage-1 hints if that "
                        "stage-1 level is cacheable, else RA+WA Non-transient")
R_FWB_AS_S1 = Reason("D8.6.6/as-s1", SRC_FWB, "FWB x111: the stage-1 attributes unchanged")
R_FWB_S1_DEVICE_FORCED = Reason(
    "D8.6.6/R_RMTWN", SRC_FWB + " (R_RMTWN)",
    "stage-1 Device forced to Write-Back: atomics/exclusives IMPLEMENTATION DEFINED, alignment "
    "faults and DC ZVA CONSTRAINED UNPREDICTABLE")
R_FWB_S1_NONWB_FORCED = Reason(
    "D8.6.6/R_DPDXS", SRC_FWB + " (R_DPDXS, I_LJRWR)",
    "stage-1 Normal non-WB forced to Write-Back: exclusive/atomic and acquire/release alignment "
    "rules CONSTRAINED UNPREDICTABLE")
R_CD = Reason("D24.2.62/HCR_EL2.CD",
              "Arm ARM DDI 0487 M.a.a D24.2.62 HCR_EL2.CD, AArch64.S2Translate",
              "HCR_EL2.CD = 1: a Normal stage-2 result is Normal iNC oNC (untagged, no "
              "NoTagAccess); Device is unchanged")
R_OSH = Reason("D8.6.7/R_PYFVQ", "Arm ARM DDI 0487 M.a.a D8.6.2, D8.6.7, EffectiveShareability "
               "(R_PYFVQ, R_YHCTP)",
               "Device or Normal iNC oNC: Outer Shareable whatever the SH bits say")
R_S1_OFF_OSH = Reason(
    "D8.6.7/S1-disabled-OSH",
    "Arm ARM DDI 0487 M.a.a AArch64.S1DisabledOutput (J1.1.4.54), S2CombineS1Shareability "
    "(D8.6.7, Table D8-103)",
    "stage 1 disabled: the stage-1 output is Outer Shareable and OSH wins the stage-2 "
    "combination, so the result is Outer Shareable whatever the stage-2 SH bits say")
R_UNPRED = Reason("D8.6.1/RESMAIR", "Arm ARM DDI 0487 M.a.a D24.2.127, K1.2.19",
                  "the stage-1 byte is UNPREDICTABLE, so the combined result is too")
R_RESERVED = Reason("D8.6.3/reserved", "Arm ARM DDI 0487 M.a.a D8.6.5/D8.6.6, K1.2.19",
                    "the stage-2 encoding is Reserved, so the combined result is CONSTRAINED "
                    "UNPREDICTABLE")


@dataclass(frozen=True, slots=True)
class Combined:
    """The combined stage-1 + stage-2 attributes of one data access (hashable, immutable).

    ``status``: ``ok`` | ``needs:FEAT_X[|FEAT_Y]`` | ``unpredictable`` | ``reserved``.
    ``type``: ``Device-nGnRnE`` ... ``Device-GRE`` or ``Normal``; None unless the result has a
    value (``ok``/``needs:``).  ``inner``/``outer``: ``-`` for Device or no value, ``NC``, or
    ``<WT|WB>-<noalloc|WA|RA|RWA>-<T|NT>``.  ``attr``: the combined MAIR-style byte (PAR_EL1.ATTR
    style, EncodePARAttrs, without XS; Tagged 0xF0, Tagged+NoTagAccess 0xE0) or None.
    ``forced_osh``: the result is Outer Shareable whatever the descriptor SH bits say - Device or
    Normal iNC oNC (EffectiveShareability, R_PYFVQ), or stage 1 disabled (its output is OSH and
    OSH wins S2CombineS1Shareability, Table D8-103; arch.md 2.3, 3).
    """

    s1: int | None
    s2: int
    fwb: bool
    cd: bool
    status: str
    type: str | None
    inner: str
    outer: str
    tagged: bool
    notagaccess: bool
    forced_osh: bool
    cacheable: bool
    rule: str
    reasons: tuple[Reason, ...]
    needs: tuple[str, ...] = ()
    attr: int | None = None
    device: int | None = None
    inner_policy: Policy | None = None
    outer_policy: Policy | None = None

    @property
    def valid(self) -> bool:
        """True when the result has a value (``ok`` or ``needs:``)."""
        return self.status == OK or self.status.startswith(NEEDS)

    @property
    def is_device(self) -> bool:
        return self.device is not None

    @property
    def permits_tag_access(self) -> bool:
        """Allocation Tag accesses work: Tagged and no NoTagAccess (D10.3, D8.6.4).

        Allocation Tag Access controls (HCR_EL2.ATA, SCTLR_EL1.ATA, D10.5) and the IMPLEMENTATION
        DEFINED Non-shareable case (R_YSLYC) are not part of this value.
        """
        return self.tagged and not self.notagaccess

    @property
    def label(self) -> str:
        if self.status == UNPREDICTABLE:
            return "UNPREDICTABLE"
        if self.status == RESERVED:
            return "RESERVED"
        if self.device is not None:
            return DEVICE_NAMES[self.device]
        return normal_label(self.inner_policy, self.outer_policy, self.tagged, self.notagaccess)

    def as_dict(self) -> dict:
        return {
            "s1": None if self.s1 is None else f"0x{self.s1:02x}",
            "s2_memattr": f"0b{self.s2:04b}", "fwb": int(self.fwb), "cd": int(self.cd),
            "status": self.status, "label": self.label, "type": self.type or "-",
            "inner": self.inner, "outer": self.outer, "tagged": int(self.tagged),
            "notagaccess": int(self.notagaccess), "forced_osh": int(self.forced_osh),
            "cacheable": int(self.cacheable),
            "attr": None if self.attr is None else f"0x{self.attr:02x}",
            "rule": self.rule, "reasons": [r.as_dict() for r in self.reasons],
        }


# --- the rules -------------------------------------------------------------------------------

def s2_combine_s1_device(d1: int, d2: int) -> int:
    """S2CombineS1Device (D8.6.5.1 Table D8-97, R_GSDKZ): the stronger Device type.

    nG beats G, nR beats R, nE beats E; with the order nGnRnE > nGnRE > nGRE > GRE that is the
    smaller index.
    """
    return min(d1, d2)


def s2_combine_s1_attr_hints(p1: Policy, k2: str) -> Policy:
    """S2CombineS1MemAttrs/S2CombineS1AttrHints for one level (D8.6.5.2, Table D8-98).

    NC if either stage is NC; else WT if either is WT; else WB.  A cacheable result takes the
    allocation hints and transient flag from stage 1.
    """
    if p1.kind == NC or k2 == NC:
        return POL_NC
    kind = WT if WT in (p1.kind, k2) else WB
    return Policy(kind, p1.read, p1.write, p1.transient)


def s2_force_wb_policy(p1: Policy | None) -> Policy:
    """FWB x110 for one level (R_THYXB, R_TBQKG): WB keeping stage-1 hints when that stage-1
    level is cacheable Normal, otherwise RA+WA Non-transient."""
    if p1 is None or p1.kind == NC:
        return POL_WB_RWA_NT
    return Policy(WB, p1.read, p1.write, p1.transient)


def hcr_cd_applies(cd: bool, s2: S2Attr) -> bool:
    """HCR_EL2.CD (D24.2.62, AArch64.S2Translate): does CD turn this stage-2 Normal into NC?"""
    return cd and s2.op == "normal"


def effective_shareability(sh1: str, sh2: str, device: bool, inner: Policy | None,
                           outer: Policy | None) -> str:
    """S2CombineS1Shareability + EffectiveShareability (Table D8-103, R_PYFVQ, R_YHCTP).

    Device or Normal iNC oNC: ``OSH``.  Otherwise OSH if either is OSH, else ISH if either is
    ISH, else ``NSH``.  Inputs are ``NSH``/``ISH``/``OSH``.
    """
    if device or (inner is not None and inner.kind == NC and outer is not None
                  and outer.kind == NC):
        return "OSH"
    for sh in ("OSH", "ISH"):
        if sh in (sh1, sh2):
            return sh
    return "NSH"


def forced_outer_shareable(device: bool, inner: Policy | None, outer: Policy | None) -> bool:
    """EffectiveShareability (R_PYFVQ): Device and Normal iNC oNC are always Outer Shareable."""
    return effective_shareability("NSH", "NSH", device, inner, outer) == "OSH"


def encode_par_attrs(device: int | None, inner: Policy | None, outer: Policy | None,
                     tagged: bool, nta: bool) -> int:
    """The combined attributes as a MAIR-style byte (pseudocode EncodePARAttrs, J1.3.5; D8.6.4
    for Tagged 0xF0 / Tagged+NoTagAccess 0xE0; arch.md 4.4), without XS."""
    if device is not None:
        return device << 2
    if tagged:
        return 0xE0 if nta else 0xF0
    return (outer.nibble() << 4) | inner.nibble()


def s2_combine_s1_mem_attrs(s1: S1Attr, s2: S2Attr, cd: bool):
    """S2CombineS1MemAttrs, FWB = 0 (D8.6.5, arch.md 2.1).

    Returns (device, inner, outer, tagged, nta, rule_reasons).
    """
    reasons: list[Reason] = []
    s2_inner, s2_outer, s2_nta, s2_device = s2.inner, s2.outer, s2.nta, s2.device
    cd_hit = hcr_cd_applies(cd, s2)
    if cd_hit:
        s2_inner, s2_outer, s2_nta = NC, NC, False
    if s1.device is not None and s2_device is not None:
        d = s2_combine_s1_device(s1.device, s2_device)
        return d, None, None, False, False, [R_STRONGEST_DEVICE]
    if s1.device is not None:
        return s1.device, None, None, False, False, [R_S1_DEVICE_WINS]
    if s2_device is not None:
        return s2_device, None, None, False, False, [R_S1_DEVICE_WINS]
    inner = s2_combine_s1_attr_hints(s1.inner, s2_inner)
    outer = s2_combine_s1_attr_hints(s1.outer, s2_outer)
    if cd_hit:
        reasons.append(R_CD)
    elif s2.nta:
        reasons.append(R_NTA_NOFWB)
    elif s2.memattr == 0b1111:
        reasons.append(R_IDENTITY)
    else:
        reasons.append(R_NORMAL_COMBINE)
    tagged = s2_mem_tag_type(s1.tagged, inner, outer)
    return None, inner, outer, tagged, s2_no_tag_access(s2_nta, tagged), reasons


def s2_apply_fwb_mem_attrs(s1: S1Attr, s2: S2Attr, cd: bool):
    """AArch64.S2ApplyFWBMemAttrs, FWB = 1 (D8.6.6, Tables D8-100/D8-101, arch.md 2.2).

    Then HCR_EL2.CD: with FWB the stage-2 result already is the combined value, so CD turns
    any Normal result (even a forced-WB one) into iNC oNC (AArch64.S2Translate).
    Returns (device, inner, outer, tagged, nta, rule_reasons).
    """
    op = s2.op
    if op == "device":
        d = s2.device if s1.device is None else s2_combine_s1_device(s1.device, s2.device)
        return d, None, None, False, False, [R_FWB_DEVICE]
    if op == "nc-unless-s1-device":
        if s1.device is not None:
            return s1.device, None, None, False, False, [R_FWB_NC]
        dev, inner, outer, reasons = None, POL_NC, POL_NC, [R_FWB_NC]
    elif op == "as-s1":
        if s1.device is not None:
            return s1.device, None, None, False, False, [R_FWB_AS_S1]
        dev, inner, outer, reasons = None, s1.inner, s1.outer, [R_FWB_AS_S1]
    else:  # force-wb
        reasons = [R_FWB_FORCE_WB]
        if s1.device is not None:
            reasons.append(R_FWB_S1_DEVICE_FORCED)
        elif not (s1.inner.kind == WB and s1.outer.kind == WB):
            reasons.append(R_FWB_S1_NONWB_FORCED)
        dev, inner, outer = None, s2_force_wb_policy(s1.inner), s2_force_wb_policy(s1.outer)
    if cd:
        return None, POL_NC, POL_NC, False, False, [R_CD] + reasons
    tagged = s2_mem_tag_type(s1.tagged, inner, outer)
    return dev, inner, outer, tagged, s2_no_tag_access(s2.nta, tagged), reasons


#: Pseudocode spelling (AArch64.S2ApplyFWBMemAttrs).
s2_apply_fwb_memattrs = s2_apply_fwb_mem_attrs


def _no_value(s1v: int | None, s2: int, fwb: bool, cd: bool, status: str, rule: str,
              reasons: tuple[Reason, ...], needs: tuple[str, ...]) -> Combined:
    return Combined(s1=s1v, s2=s2, fwb=fwb, cd=cd, status=status, type=None, inner="-",
                    outer="-", tagged=False, notagaccess=False, forced_osh=False,
                    cacheable=False, rule=rule, reasons=reasons, needs=needs)


_ALL = Features.all()

#: Every ``Combined.rule`` value (stable ids: reports and JSON carry them).
RULE_IDS = frozenset({
    R_STRONGEST_DEVICE.rule, R_S1_DEVICE_WINS.rule, R_NORMAL_COMBINE.rule, R_IDENTITY.rule,
    R_NTA_NOFWB.rule, R_FWB_DEVICE.rule, R_FWB_NC.rule, R_FWB_FORCE_WB.rule, R_FWB_AS_S1.rule,
    R_CD.rule,
    # no value: the first reason of the bad input
    "D8.6.1/RESMAIR", "D8.6.1/RESMAIR-feature", "D8.6.5/S2ResMemAttr",
    "D8.6.6/Table-D8-101/reserved", "D8.6.4/MTE_PERM-absent",
})


@lru_cache(maxsize=None)
def _combine(s1: int | None, s2: int, fwb: bool, cd: bool, features: Features) -> Combined:
    if fwb and not features.fwb:
        raise ValueError("HCR_EL2.FWB = 1 needs FEAT_S2FWB (D8.6.6); the features given lack it")
    a1 = s1_disabled_output() if s1 is None else decode_s1(s1, features)
    a2 = decode_s2(s2, fwb=fwb, features=features)
    needs = merge_needs(a1.needs, a2.needs)
    if a1.status == UNPREDICTABLE:
        return _no_value(s1, s2, fwb, cd, UNPREDICTABLE, a1.reasons[0].rule,
                         a1.reasons + a2.reasons + (R_UNPRED,), needs)
    if a2.status == RESERVED:
        return _no_value(s1, s2, fwb, cd, RESERVED, a2.reasons[0].rule,
                         a1.reasons + a2.reasons + (R_RESERVED,), needs)
    rule_fn = s2_apply_fwb_mem_attrs if fwb else s2_combine_s1_mem_attrs
    dev, inner, outer, tagged, nta, rreasons = rule_fn(a1, a2, cd)
    extra: list[Reason] = []
    if a1.tagged:
        extra.append(R_TAGGED if tagged else R_TAGS_LOST)
    if a2.nta:
        extra.append(R_NTA if nta else R_NTA_IGNORED)
    osh = forced_outer_shareable(dev is not None, inner, outer)
    if osh:
        extra.append(R_OSH)
    elif s1 is None:
        # Only reachable with FWB force-WB (x110): arch.md 3 (S1DisabledOutput is OSH) + 2.3.
        osh = True
        extra.append(R_S1_OFF_OSH)
    if dev is not None:
        typ, ins, outs, cacheable = DEVICE_NAMES[dev], "-", "-", False
    else:
        typ, ins, outs = "Normal", inner.spell(), outer.spell()
        cacheable = inner.cacheable or outer.cacheable
    return Combined(s1=s1, s2=s2, fwb=fwb, cd=cd, status=status_for_needs(needs), type=typ,
                    inner=ins, outer=outs, tagged=tagged, notagaccess=nta, forced_osh=osh,
                    cacheable=cacheable, rule=rreasons[0].rule,
                    reasons=a1.reasons + a2.reasons + tuple(rreasons) + tuple(extra),
                    needs=needs, attr=encode_par_attrs(dev, inner, outer, tagged, nta),
                    device=dev, inner_policy=inner, outer_policy=outer)


@lru_cache(maxsize=1 << 16)
def combine(s1: int | None, s2: int, *, fwb: bool, cd: bool = False,
            features: Features = _ALL) -> Combined:
    """Combine a stage-1 MAIR byte (None: guest stage 1 disabled) with stage-2 MemAttr[3:0].

    Arm ARM D8.6.5 (FWB = 0, S2CombineS1MemAttrs), D8.6.6 (FWB = 1, AArch64.S2ApplyFWBMemAttrs),
    D24.2.62 (HCR_EL2.CD), D8.6.7 (shareability), D10.3/D8.6.4 (Tagged, NoTagAccess).
    Data access, EL1&0 regime, HCR_EL2.VM = 1, DC = 0 (arch.md 2.4, 3).  Memoised (two
    levels: this call signature, then normalised arguments), so results are shared objects.
    Raises ValueError for out-of-range inputs or FWB without FEAT_S2FWB.
    """
    return _combine(s1, s2, bool(fwb), bool(cd), features)


__all__ = ["Combined", "combine", "effective_shareability", "encode_par_attrs",
           "forced_outer_shareable", "hcr_cd_applies", "s2_apply_fwb_mem_attrs",
           "s2_apply_fwb_memattrs",
           "s2_combine_s1_attr_hints", "s2_combine_s1_device", "s2_combine_s1_mem_attrs",
           "s2_force_wb_policy"]
