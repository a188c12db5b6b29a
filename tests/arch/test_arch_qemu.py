"""One test per known QEMU divergence (arch.md section 6): memtypes follows the Arm ARM."""

from __future__ import annotations

from memtypes.arch import combine


def test_q1_fwb_device_keeps_stronger_s1_type():
    # QEMU: S2 type.  Arm ARM R_GSDKZ / S2CombineS1Device: strongest of both.
    assert combine(0x00, 0b0001, fwb=True).label == "Device-nGnRnE"
    assert combine(0x04, 0b0011, fwb=True).label == "Device-nGnRE"
    assert combine(0x01, 0b0001, fwb=True).label == "Device-nGnRnE"  # FEAT_XS Device byte


def test_q2_fwb_1110_forces_wb_on_untagged_s1():
    # QEMU treats 1110 as 0111 (S1 attrs).  Arm ARM: force WB (+NTA only if Tagged).
    assert combine(0x44, 0b1110, fwb=True).label == "Normal-WB"
    assert combine(0x04, 0b1110, fwb=True).label == "Normal-WB"
    assert not combine(0x44, 0b1110, fwb=True).notagaccess


def test_q3_fwb_reserved_encodings_are_not_device():
    # QEMU: Device-nGnRnE.  Arm ARM: CONSTRAINED UNPREDICTABLE.
    for m in (0b0100, 0b1000, 0b1001, 0b1010, 0b1011, 0b1100, 0b1101):
        c = combine(0xFF, m, fwb=True)
        assert c.status == "reserved" and c.type is None


def test_q4_fwb_with_cd_makes_normal_nc():
    # QEMU ignores CD with FWB.  Arm ARM: Normal results become NC and untagged.
    assert combine(0xFF, 0b0110, fwb=True, cd=True).label == "Normal-NC"
    assert not combine(0xF0, 0b0111, fwb=True, cd=True).tagged


def test_q5_nofwb_device_stage_type_unchanged():
    # QEMU mis-reads the Normal side's low nibble as a Device type.
    assert combine(0x08, 0b0101, fwb=False).label == "Device-nGRE"
    assert combine(0x0C, 0b1101, fwb=False).label == "Device-GRE"
    assert combine(0x44, 0b0010, fwb=False).label == "Device-nGRE"
    assert combine(0x88, 0b0011, fwb=False).label == "Device-GRE"


def test_q6_nofwb_transient_hint_from_s1():
    # QEMU: WT non-transient.  Arm ARM: WT transient (hints and transient from stage 1).
    c = combine(0x77, 0b1010, fwb=False)
    assert c.inner == "WT-RWA-T" and c.outer == "WT-RWA-T"


def test_q7_feat_xs_bytes_decoded():
    # QEMU does not decode the FEAT_XS bytes.
    assert combine(0x01, 0b1111, fwb=False).label == "Device-nGnRnE"
    c = combine(0x40, 0b1111, fwb=False)
    assert c.label == "Normal-NC" and c.forced_osh
    assert combine(0xA0, 0b1111, fwb=False).inner == "WT-RA-NT"


def test_q8_nofwb_reserved_1000_1100_not_combined():
    # QEMU treats the reserved inner as WT and keeps 0xF0 + 1100 Tagged.
    for m in (0b1000, 0b1100):
        c = combine(0xF0, m, fwb=False)
        assert c.status == "reserved" and not c.tagged
