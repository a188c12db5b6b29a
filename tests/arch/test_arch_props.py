"""Hypothesis properties of the combination rules (arch.md 2, 4.1, 2.3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memtypes.arch import combine, decode_s1, decode_s2
from memtypes.arch.attrs import POL_WB_RWA_NT

S1 = st.integers(0, 255)
S1_OR_OFF = st.one_of(st.none(), S1)
S2 = st.integers(0, 15)
SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(S1, S2, st.booleans())
def test_nofwb_never_weaker_device(s1, s2, cd):
    c = combine(s1, s2, fwb=False, cd=cd)
    if not c.valid:
        return
    a1, a2 = decode_s1(s1), decode_s2(s2, fwb=False)
    for d in (a1.device, a2.device if a2.op == "device" else None):
        if d is not None:
            assert c.device is not None and c.device <= d


@SETTINGS
@given(S1_OR_OFF, st.booleans())
def test_fwb_0110_always_wb(s1, cd):
    c = combine(s1, 0b0110, fwb=True, cd=cd)
    if not c.valid:
        assert s1 is not None and decode_s1(s1).status == "unpredictable"
        return
    if cd:
        assert c.label == "Normal-NC"
    else:
        assert c.inner_policy.kind == "WB" and c.outer_policy.kind == "WB"


@SETTINGS
@given(S1)
def test_s2_1111_without_fwb_is_identity(s1):
    a1 = decode_s1(s1)
    c = combine(s1, 0b1111, fwb=False)
    if not a1.valid:
        assert c.status == "unpredictable"
        return
    assert c.device == a1.device
    assert c.inner_policy == a1.inner and c.outer_policy == a1.outer
    assert c.tagged == a1.tagged
    if a1.status == "ok" or s1 == 0xF0:  # XS is not encoded in the combined byte
        assert c.attr == s1


@SETTINGS
@given(S1, S2, st.booleans(), st.booleans())
def test_tagged_only_when_wb_rwa_nt(s1, s2, fwb, cd):
    c = combine(s1, s2, fwb=fwb, cd=cd)
    if c.tagged:
        assert s1 == 0xF0
        assert c.inner_policy == POL_WB_RWA_NT and c.outer_policy == POL_WB_RWA_NT
    if c.notagaccess:
        assert c.tagged


@SETTINGS
@given(S1_OR_OFF, S2, st.booleans(), st.booleans())
def test_device_and_nc_nc_forced_osh(s1, s2, fwb, cd):
    c = combine(s1, s2, fwb=fwb, cd=cd)
    if not c.valid:
        assert not c.forced_osh
        return
    # Stage 1 disabled outputs OSH, which wins the combination (arch.md 3, 2.3; Table D8-103).
    expect = c.is_device or (c.inner == "NC" and c.outer == "NC") or s1 is None
    assert c.forced_osh == expect


@SETTINGS
@given(S1, S2)
def test_nofwb_never_more_cacheable_than_s1(s1, s2):
    c = combine(s1, s2, fwb=False)
    a1 = decode_s1(s1)
    if c.valid and not a1.is_device:
        order = {"NC": 0, "WT": 1, "WB": 2}
        if not c.is_device:
            assert order[c.inner_policy.kind] <= order[a1.inner.kind]
            assert order[c.outer_policy.kind] <= order[a1.outer.kind]
