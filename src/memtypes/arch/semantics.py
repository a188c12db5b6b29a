"""What a combined memory type means for software (Arm ARM DDI 0487 M.a.a B2.8, B2.10, B2.11).

:func:`behaviour` maps a :class:`~memtypes.arch.combine.Combined` to data: property ->
(value, Arm ARM section).  Values are bools, or a string where the architecture says
"CONSTRAINED UNPREDICTABLE" / the result has no value.  See reference arch.md section 5.
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.attrs import GRE, NGNRNE, NGRE, WB

SEC_DEVICE = "B2.10.2"
SEC_GATHER = "B2.10.2.1"
SEC_REORDER = "B2.10.2.2"
SEC_EWA = "B2.10.2.3"
SEC_NORMAL = "B2.10.1"
SEC_CACHE = "B2.10.1.3"
SEC_ALIGN = "B2.8"
SEC_MISMATCH = "B2.11"
SEC_SHARE = "D8.6.7 (R_PYFVQ)"
SEC_SHARE_S1_OFF = "D8.6.7 (Table D8-103), J1.1.4.54"
SEC_MTE = "D10.3, D8.6.4"
SEC_RMTWN = "D8.6.6 (R_RMTWN)"

CU = "CONSTRAINED UNPREDICTABLE"

#: property name -> one-line meaning (for help and reports).
PROPERTIES = {
    "speculative_reads": "data reads may be made speculatively (not only as a simple sequential "
                         "execution would)",
    "gathering": "accesses may be merged/gathered, or reads satisfied from a buffer",
    "reordering": "accesses to one peripheral may arrive out of program order",
    "early_write_ack": "a write may be acknowledged before it reaches the endpoint",
    "unaligned_access": "unaligned accesses are permitted (no Alignment fault)",
    "cacheable": "lines may be allocated in data caches (inner or outer)",
    "outer_shareable": "forced Outer Shareable whatever the SH bits say",
    "needs_cmo_on_alias": "an alias with the host's Normal WB linear map is a mismatched "
                          "attribute alias: coherence needs cache maintenance to PoC",
    "tag_access": "Allocation Tag accesses: tagged, notagaccess-fault, or untagged (RAZ/WI)",
}


@lru_cache(maxsize=None)
def _behaviour(c) -> tuple:
    if not c.valid:
        v = c.status.upper()
        sec = "K1.2.19"
        return tuple((k, (v, sec)) for k in PROPERTIES)
    out: dict[str, tuple] = {}
    if c.device is not None:
        d = c.device
        out["speculative_reads"] = (False, SEC_DEVICE)
        out["gathering"] = (d == GRE, SEC_GATHER)
        out["reordering"] = (d in (NGRE, GRE), SEC_REORDER)
        out["early_write_ack"] = (d != NGNRNE, SEC_EWA)
        out["unaligned_access"] = (False, SEC_ALIGN + ", " + SEC_DEVICE)
    else:
        out["speculative_reads"] = (True, SEC_NORMAL)
        out["gathering"] = (True, SEC_CACHE)
        out["reordering"] = (True, SEC_NORMAL)
        out["early_write_ack"] = (True, SEC_NORMAL)
        forced_from_device = any(r.rule == "D8.6.6/R_RMTWN" for r in c.reasons)
        out["unaligned_access"] = ((CU, SEC_RMTWN) if forced_from_device
                                   else (True, SEC_ALIGN))
    out["cacheable"] = (c.cacheable, SEC_CACHE)
    s1_off = any(r.rule == "D8.6.7/S1-disabled-OSH" for r in c.reasons)
    out["outer_shareable"] = (c.forced_osh, SEC_SHARE_S1_OFF if s1_off else SEC_SHARE)
    wb = (c.device is None and c.inner_policy.kind == WB and c.outer_policy.kind == WB)
    out["needs_cmo_on_alias"] = (not wb, SEC_MISMATCH)
    tag = "notagaccess-fault" if c.notagaccess else ("tagged" if c.tagged else "untagged")
    out["tag_access"] = (tag, SEC_MTE)
    return tuple((k, out[k]) for k in PROPERTIES)


def behaviour(combined) -> dict[str, tuple[bool | str, str]]:
    """The behaviour of a combined result: property -> (value, Arm ARM section).

    Device (B2.10.2): no speculative data reads; Gathering, Reordering and Early write
    acknowledgement per the G/R/E letters (B2.10.2.1-3); unaligned accesses fault (B2.8).
    Normal (B2.10.1): speculative reads, merging, reordering (memory-model rules) and unaligned
    accesses permitted; cacheable per inner/outer policy (B2.10.1.3).  ``needs_cmo_on_alias`` is
    relative to a host Normal WB alias (B2.11): True unless the result is Normal iWB oWB
    (allocation hints and Tagged are not mismatches).  For a stage-1 Device forced to WB by FWB,
    unaligned-access faults are CONSTRAINED UNPREDICTABLE (R_RMTWN).
    """
    return dict(_behaviour(combined))
