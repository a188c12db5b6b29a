"""MTE under two-stage translation (Arm ARM DDI 0487 M.a.a D10.3, D8.6.4; arch.md section 4).

Only the attribute part of "is this region Tagged" is modelled here (condition 3 and 4 of
arch.md 4.1): stage 1 defines Tagged (MAIR 0xF0) and the combined result is Normal iWB oWB
RA+WA Non-transient.  FEAT_MTE2 (condition 1) is a feature dependency of 0xF0 (``needs:``);
Allocation Tag Access controls (condition 2, D10.5 Table D10-1) are the caller's business.
"""

from __future__ import annotations

from memtypes.arch.attrs import POL_WB_RWA_NT, Policy
from memtypes.arch.reason import Reason

SRC_MTE = "Arm ARM DDI 0487 M.a.a D10.3, S2MemTagType, IsTaggableMemAttr"

R_TAGGED = Reason("D10.3/S2MemTagType", SRC_MTE,
                  "Tagged: stage 1 is Tagged and the combined result is Normal iWB oWB RA+WA "
                  "Non-transient")
R_TAGS_LOST = Reason("D10.3/untagged", SRC_MTE,
                     "stage 1 is Tagged but the combined result is not Normal iWB oWB RA+WA "
                     "Non-transient: the region is Untagged (tag reads RAZ, writes ignored)")
R_NTA = Reason("D8.6.4/NoTagAccess", "Arm ARM DDI 0487 M.a.a D8.6.4, R_JSXRX, Table D8-99",
               "stage 2 NoTagAccess on a Tagged result: tag accesses and Tag Checked accesses "
               "take a stage-2 Permission fault (FEAT_MTE_PERM)")
R_NTA_IGNORED = Reason("D8.6.4/NoTagAccess-ignored", "Arm ARM DDI 0487 M.a.a D8.6.4, R_JSXRX",
                       "stage 2 NoTagAccess is ignored because the result is not Tagged")


def is_taggable_mem_attr(inner: Policy | None, outer: Policy | None) -> bool:
    """IsTaggableMemAttr (D10.3): Normal, inner and outer WB, Read+Write-Allocate, Non-transient."""
    return inner == POL_WB_RWA_NT and outer == POL_WB_RWA_NT


def s2_mem_tag_type(s1_tagged: bool, inner: Policy | None, outer: Policy | None) -> bool:
    """S2MemTagType (D10.3, arch.md 4.1): Tagged iff stage 1 is Tagged and the result taggable."""
    return s1_tagged and is_taggable_mem_attr(inner, outer)


def s2_no_tag_access(s2_nta: bool, tagged: bool) -> bool:
    """NoTagAccess (D8.6.4, R_JSXRX): only meaningful, and only set, on a Tagged result."""
    return s2_nta and tagged
