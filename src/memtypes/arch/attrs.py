"""Typed memory-attribute values (Arm ARM DDI 0487 M.a.a, B2.10, D8.6).

* :class:`Policy` - the cacheability of one level (inner or outer) of Normal memory:
  Non-cacheable, or Write-Through / Write-Back with allocation hints and a transient flag
  (B2.10.1.3, D24.2.127 MAIR_EL1).
* Device types are small ints ordered by strength: 0 nGnRnE (strongest) .. 3 GRE (B2.10.2).
* :class:`S1Attr` - a decoded stage-1 MAIR attribute byte (D8.6.1).
* :class:`S2Attr` - a decoded stage-2 MemAttr[3:0] (D8.6.3, Tables D8-96, D8-100/101).

Statuses (shared by decoded inputs and combined results):

* ``ok`` - fully defined on every implementation;
* ``needs:FEAT_A|FEAT_B`` - defined only when those features are implemented; the value
  carried is the one it has when they are;
* ``unpredictable`` - a stage-1 byte that is UNPREDICTABLE (K1.2.19,
  S1ConstrainUnpredictableRESMAIR);
* ``reserved`` - a stage-2 Reserved (CONSTRAINED UNPREDICTABLE) MemAttr encoding (S2ResMemAttr).
"""

from __future__ import annotations

from dataclasses import dataclass

from memtypes.arch.reason import Reason

# Device types, strongest first (B2.10.2).
NGNRNE, NGNRE, NGRE, GRE = 0, 1, 2, 3
DEVICE_NAMES = ("Device-nGnRnE", "Device-nGnRE", "Device-nGRE", "Device-GRE")

NC, WT, WB = "NC", "WT", "WB"

OK = "ok"
UNPREDICTABLE = "unpredictable"
RESERVED = "reserved"
NEEDS = "needs:"

FEAT_XS = "FEAT_XS"
FEAT_MTE2 = "FEAT_MTE2"
FEAT_MTE_PERM = "FEAT_MTE_PERM"
FEAT_ORDER = (FEAT_XS, FEAT_MTE2, FEAT_MTE_PERM)
FEATURE_FIELD = {FEAT_XS: "xs", FEAT_MTE2: "mte", FEAT_MTE_PERM: "mte_perm"}


def status_for_needs(needs: tuple[str, ...]) -> str:
    """``ok`` or ``needs:FEAT_A|FEAT_B`` (features in a fixed order)."""
    if not needs:
        return OK
    ordered = [f for f in FEAT_ORDER if f in needs]
    return NEEDS + "|".join(ordered)


def merge_needs(*groups: tuple[str, ...]) -> tuple[str, ...]:
    have = set().union(*groups) if groups else set()
    return tuple(f for f in FEAT_ORDER if f in have)


@dataclass(frozen=True, slots=True)
class Policy:
    """One cacheability level of Normal memory (B2.10.1.3, DecodeLDFAttr).

    ``kind`` is NC, WT or WB.  For NC the hints are meaningless and kept False.  ``transient``
    is only defined when some allocation hint is set; it is False for "no allocate".
    """

    kind: str
    read: bool = False
    write: bool = False
    transient: bool = False

    @property
    def cacheable(self) -> bool:
        return self.kind != NC

    @property
    def hints(self) -> str:
        return {(False, False): "noalloc", (False, True): "WA", (True, False): "RA",
                (True, True): "RWA"}[(self.read, self.write)]

    def spell(self) -> str:
        """Table spelling: ``NC`` or ``<WT|WB>-<noalloc|WA|RA|RWA>-<T|NT>``."""
        if self.kind == NC:
            return NC
        return f"{self.kind}-{self.hints}-{'T' if self.transient else 'NT'}"

    def nibble(self) -> int:
        """MAIR nibble for this policy (D24.2.127); NC is 0b0100."""
        if self.kind == NC:
            return 0b0100
        n = (0 if self.transient else 0b1000) | (0b0100 if self.kind == WB else 0)
        return n | (0b10 if self.read else 0) | (0b01 if self.write else 0)


POL_NC = Policy(NC)
POL_WB_RWA_NT = Policy(WB, True, True, False)


@dataclass(frozen=True, slots=True)
class S1Attr:
    """A decoded stage-1 attribute byte (D8.6.1, S1DecodeMemAttrs).

    ``device`` is the Device type (0..3) or None for Normal; ``inner``/``outer`` are the Normal
    policies (None for Device or when not decodable).  ``xs`` is the FEAT_XS attribute.
    """

    byte: int
    status: str
    needs: tuple[str, ...]
    device: int | None
    inner: Policy | None
    outer: Policy | None
    tagged: bool
    xs: bool
    reasons: tuple[Reason, ...]

    @property
    def is_device(self) -> bool:
        return self.device is not None

    @property
    def valid(self) -> bool:
        return self.status == OK or self.status.startswith(NEEDS)

    @property
    def label(self) -> str:
        if not self.valid:
            return self.status.upper()
        if self.device is not None:
            return DEVICE_NAMES[self.device] + ("-XS0" if not self.xs else "")
        return normal_label(self.inner, self.outer, self.tagged, False)

    @property
    def describe(self) -> str:
        """Long form: ``Normal iWB-RWA-NT oWB-RWA-NT``, ``Device-nGnRE XS=0 [needs:FEAT_XS]``."""
        if not self.valid:
            extra = f" (needs {'|'.join(self.needs)}, absent)" if self.needs else ""
            return self.status.upper() + extra
        if self.device is not None:
            s = DEVICE_NAMES[self.device] + ("" if self.xs else " XS=0")
        else:
            s = f"Normal i{self.inner.spell()} o{self.outer.spell()}"
            s += " Tagged" if self.tagged else ""
            s += "" if self.xs else " XS=0"
        return s + ("" if self.status == OK else f" [{self.status}]")


@dataclass(frozen=True, slots=True)
class S2Attr:
    """A decoded stage-2 MemAttr[3:0] (D8.6.3).

    ``op`` says how the encoding acts:

    * FWB = 0: ``device`` (type in ``device``) or ``normal`` (``inner``/``outer`` kinds NC/WT/WB);
    * FWB = 1: ``device`` (R_GSDKZ), ``nc-unless-s1-device``, ``force-wb``, ``as-s1``.

    ``nta`` marks the FEAT_MTE_PERM NoTagAccess encodings.
    """

    memattr: int
    fwb: bool
    status: str
    needs: tuple[str, ...]
    op: str | None
    device: int | None
    inner: str | None
    outer: str | None
    nta: bool
    reasons: tuple[Reason, ...]

    @property
    def valid(self) -> bool:
        return self.status == OK or self.status.startswith(NEEDS)

    @property
    def label(self) -> str:
        if not self.valid:
            return self.status.upper()
        nta = "+NoTagAccess" if self.nta else ""
        if self.op == "device":
            return DEVICE_NAMES[self.device] + nta
        if self.op == "normal":
            if self.inner == self.outer:
                return f"Normal-{self.inner}{nta}"
            return f"Normal-i{self.inner}-o{self.outer}{nta}"
        return {"nc-unless-s1-device": "NC-unless-S1-Device", "force-wb": "Force-WB",
                "as-s1": "As-S1"}[self.op] + nta


def normal_label(inner: Policy, outer: Policy, tagged: bool, nta: bool) -> str:
    """``Normal-NC``/``-WT``/``-WB``, ``Normal-WB-Tagged[+NoTagAccess]``, or ``Normal-iWB-oNC``."""
    if inner.kind == outer.kind:
        s = f"Normal-{inner.kind}"
        if tagged:
            s += "-Tagged" + ("+NoTagAccess" if nta else "")
        return s
    return f"Normal-i{inner.kind}-o{outer.kind}"
