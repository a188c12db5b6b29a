"""Stage-1 MAIR byte and stage-2 MemAttr decoding vectors (arch.md sections 1, 2.1, 2.2)."""

from __future__ import annotations

import pytest

from memtypes.arch import Features, decode_s1, decode_s2
from memtypes.arch.s1 import decode_ldf_attr, s1_decode_mem_attrs

XS_DEVICE = {0x01, 0x05, 0x09, 0x0D}
SPECIAL = {0x40, 0xA0, 0xF0}


def test_s1_totals_over_all_bytes():
    """arch.md 1.1: 4 plain Device, 4 Device-XS0, 225 plain Normal, 3 special, 20 UNPREDICTABLE."""
    attrs = [s1_decode_mem_attrs(b) for b in range(256)]
    plain_dev = [a.byte for a in attrs if a.status == "ok" and a.is_device]
    xs_dev = [a.byte for a in attrs if a.status == "needs:FEAT_XS" and a.is_device]
    plain_normal = [a.byte for a in attrs if a.status == "ok" and not a.is_device]
    special = [a.byte for a in attrs if a.status.startswith("needs:") and not a.is_device]
    unpred = [a.byte for a in attrs if a.status == "unpredictable"]
    assert plain_dev == [0x00, 0x04, 0x08, 0x0C]
    assert set(xs_dev) == XS_DEVICE
    assert len(plain_normal) == 225
    assert set(special) == SPECIAL
    assert len(unpred) == 20
    assert set(unpred) == ({0x02, 0x03, 0x06, 0x07, 0x0A, 0x0B, 0x0E, 0x0F}
                           | {h << 4 for h in range(1, 16)} - SPECIAL)


@pytest.mark.parametrize("byte,dt", [(0x00, 0), (0x04, 1), (0x08, 2), (0x0C, 3),
                                     (0x01, 0), (0x05, 1), (0x09, 2), (0x0D, 3)])
def test_s1_device_types(byte, dt):
    a = decode_s1(byte)
    assert a.device == dt
    assert a.xs == (byte & 1 == 0)


def test_s1_special_bytes():
    a = decode_s1(0x40)
    assert (a.inner.spell(), a.outer.spell(), a.xs) == ("NC", "NC", False)
    assert a.status == "needs:FEAT_XS"
    a = decode_s1(0xA0)
    assert (a.inner.spell(), a.outer.spell(), a.xs) == ("WT-RA-NT", "WT-RA-NT", False)
    a = decode_s1(0xF0)
    assert a.tagged and a.status == "needs:FEAT_MTE2"
    assert a.inner.spell() == a.outer.spell() == "WB-RWA-NT"


@pytest.mark.parametrize("nibble,spell", [
    (0b0001, "WT-WA-T"), (0b0010, "WT-RA-T"), (0b0011, "WT-RWA-T"), (0b0100, "NC"),
    (0b0101, "WB-WA-T"), (0b0110, "WB-RA-T"), (0b0111, "WB-RWA-T"), (0b1000, "WT-noalloc-NT"),
    (0b1011, "WT-RWA-NT"), (0b1100, "WB-noalloc-NT"), (0b1110, "WB-RA-NT"), (0b1111, "WB-RWA-NT"),
])
def test_decode_ldf_attr_nibbles(nibble, spell):
    """arch.md table 1.2 (DecodeLDFAttr)."""
    p = decode_ldf_attr(nibble)
    assert p.spell() == spell
    assert p.nibble() == nibble


def test_s1_inner_outer_order():
    a = decode_s1(0x4F)  # outer NC, inner WB
    assert a.outer.spell() == "NC" and a.inner.spell() == "WB-RWA-NT"
    assert a.label == "Normal-iWB-oNC"


def test_s1_feature_absent_makes_byte_unpredictable():
    none = Features()
    for b in (0x01, 0x40, 0xA0):
        assert decode_s1(b, none).status == "unpredictable"
        assert decode_s1(b, Features(xs=True)).status == "needs:FEAT_XS"
    assert decode_s1(0xF0, Features(xs=True)).status == "unpredictable"
    assert decode_s1(0xF0, Features(mte=True)).status == "needs:FEAT_MTE2"
    assert decode_s1(0xFF, none).status == "ok"


def test_s1_out_of_range():
    with pytest.raises(ValueError):
        decode_s1(256)


# Table D8-96 (FWB = 0): (label, status)
D8_96 = {
    0b0000: ("Device-nGnRnE", "ok"), 0b0001: ("Device-nGnRE", "ok"),
    0b0010: ("Device-nGRE", "ok"), 0b0011: ("Device-GRE", "ok"),
    0b0100: ("Normal-WB+NoTagAccess", "needs:FEAT_MTE_PERM"),
    0b0101: ("Normal-NC", "ok"), 0b0110: ("Normal-iWT-oNC", "ok"),
    0b0111: ("Normal-iWB-oNC", "ok"), 0b1000: ("RESERVED", "reserved"),
    0b1001: ("Normal-iNC-oWT", "ok"), 0b1010: ("Normal-WT", "ok"),
    0b1011: ("Normal-iWB-oWT", "ok"), 0b1100: ("RESERVED", "reserved"),
    0b1101: ("Normal-iNC-oWB", "ok"), 0b1110: ("Normal-iWT-oWB", "ok"),
    0b1111: ("Normal-WB", "ok"),
}


@pytest.mark.parametrize("m", range(16))
def test_s2_table_d8_96(m):
    a = decode_s2(m, fwb=False)
    assert (a.label, a.status) == D8_96[m]


# Tables D8-100/D8-101 (FWB = 1), arch.md 2.2.
FWB_TABLE = {
    0b0000: ("device", "ok"), 0b0001: ("device", "ok"), 0b0010: ("device", "ok"),
    0b0011: ("device", "ok"), 0b0100: (None, "reserved"),
    0b0101: ("nc-unless-s1-device", "ok"), 0b0110: ("force-wb", "ok"), 0b0111: ("as-s1", "ok"),
    0b1000: (None, "reserved"), 0b1001: (None, "reserved"), 0b1010: (None, "reserved"),
    0b1011: (None, "reserved"), 0b1100: (None, "reserved"), 0b1101: (None, "reserved"),
    0b1110: ("force-wb", "needs:FEAT_MTE_PERM"), 0b1111: ("as-s1", "needs:FEAT_MTE_PERM"),
}


@pytest.mark.parametrize("m", range(16))
def test_s2_fwb_table(m):
    a = decode_s2(m, fwb=True)
    assert (a.op, a.status) == FWB_TABLE[m]
    assert a.nta == (m in (0b1110, 0b1111))


def test_s2_mte_perm_absent_is_reserved():
    f = Features(fwb=True, mte=True)
    assert decode_s2(0b0100, fwb=False, features=f).status == "reserved"
    assert decode_s2(0b1110, fwb=True, features=f).status == "reserved"
    assert decode_s2(0b1111, fwb=True, features=f).status == "reserved"
    assert decode_s2(0b0110, fwb=True, features=f).status == "ok"
