"""Parsing stage-1 / stage-2 names and numbers."""

from __future__ import annotations

import pytest

from memtypes.arch import parse_s1, parse_s2


@pytest.mark.parametrize("text,val", [
    ("0xff", 0xFF), ("0XF0", 0xF0), ("0b01000100", 0x44), ("255", 255), ("0", 0),
    ("normal-wb", 0xFF), ("normal-nc", 0x44), ("Normal-WT", 0xBB), ("device-ngnrne", 0x00),
    ("device-ngnre", 0x04), ("device-ngre", 0x08), ("device-gre", 0x0C), ("tagged", 0xF0),
    ("off", None), ("mmu-off", None),
])
def test_parse_s1(text, val):
    assert parse_s1(text) == val


@pytest.mark.parametrize("text", ["0x1G", "256", "-1", "normal", "", "0x"])
def test_parse_s1_bad(text):
    with pytest.raises(ValueError, match="accepted"):
        parse_s1(text)


@pytest.mark.parametrize("text,fwb,val", [
    ("s2-normal", False, 0b1111), ("s2-nc", False, 0b0101), ("s2-device", False, 0b0001),
    ("MT_S2_NORMAL", False, 0b1111), ("mt_s2_normal_nc", False, 0b0101),
    ("MT_S2_DEVICE_nGnRE", False, 0b0001), ("MT_S2_AS_S1", False, 0b1111),
    ("MT_S2_NORMAL_NOTAGACCESS", False, 0b0100),
    ("fwb-normal", True, 0b0110), ("fwb-nc", True, 0b0101), ("fwb-device", True, 0b0001),
    ("fwb-as-s1", True, 0b0111), ("MT_S2_FWB_NORMAL", True, 0b0110),
    ("MT_S2_FWB_AS_S1", True, 0b0111), ("MT_S2_FWB_NORMAL_NOTAGACCESS", True, 0b1110),
    ("0b0110", True, 6), ("15", False, 15), ("0xf", True, 15),
])
def test_parse_s2(text, fwb, val):
    assert parse_s2(text, fwb=fwb) == val


def test_parse_s2_bad():
    with pytest.raises(ValueError, match="accepted"):
        parse_s2("16", fwb=False)
    with pytest.raises(ValueError, match="--fwb"):
        parse_s2("fwb-normal", fwb=False)
    with pytest.raises(ValueError, match="without --fwb"):
        parse_s2("s2-normal", fwb=True)
