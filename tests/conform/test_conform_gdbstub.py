"""The gdb remote protocol client against a fake stub, and the stage-2 walker against
synthetic tables (Arm ARM D8: 4KB granule, stage 2)."""

from __future__ import annotations

import socket

import pytest
from conform_fakegdb import FakeStub, Tables

from memtypes.conform.gdbstub import (
    RemoteClient, Stage2Walker, WalkError, checksum, frame, start_level, unescape, walk_tables,
)

# ---------------------------------------------------------------- framing


def test_frame_checksum_known_packets():
    # 'm'+'0'+','+'4' = 109+48+44+52 = 253
    assert frame(b"m0,4") == b"$m0,4#fd"
    assert frame(b"") == b"$#00"
    assert checksum(b"OK") == 0x9A


def test_frame_escapes_reserved_bytes():
    # '#' -> '}' 0x03, '$' -> '}' 0x04, '}' -> '}' ']', '*' -> '}' 0x0a
    assert frame(b"a#b$c}d*")[1:-3] == b"a}\x03b}\x04c}]d}\x0a"
    assert unescape(b"a}\x03b}\x04c}]d}\x0a") == b"a#b$c}d*"


def test_unescape_run_length():
    # '*' then N: the previous character repeated N-29 more times
    assert unescape(b"0* ") == b"0000"
    assert unescape(b"ab*\"c") == b"abbbbbbc"


# ---------------------------------------------------------------- protocol

def _pair(**kw):
    a, b = socket.socketpair()
    stub = FakeStub(b, **kw).start()
    return RemoteClient(a, timeout_s=3), stub


@pytest.mark.parametrize("noack", [True, False])
def test_handshake_reads_register_map_and_values(noack):
    c, stub = _pair(regs={"VTTBR_EL2": 0x0001_0000_4000_1000, "VTCR_EL2": 0x8001_3559},
                    noack=noack, sysbase=200)
    c.handshake()
    assert c.ack is (not noack)
    # core.xml numbers x0, x1, pc 0..2; sys.xml's regnum attributes win after that
    assert c.regnums["pc"] == 2
    assert c.regnums["VTTBR_EL2"] == 200 + 3
    assert c.reg("VTTBR_EL2") == 0x0001_0000_4000_1000
    assert c.reg("VTCR_EL2") == 0x8001_3559
    assert b"Qqemu.PhyMemMode:1" in stub.packets
    c.close()


def test_bad_checksum_is_nakked_and_resent():
    c, stub = _pair(noack=False, corrupt_first=True)
    c.handshake()
    assert stub.naks == 1
    assert "HCR_EL2" in c.regnums
    c.close()


def test_physical_reads_and_errors():
    c, stub = _pair()
    stub.set_u64(0x4000_0000, 0x1122_3344_5566_7788)
    c.handshake()
    assert c.read_u64(0x4000_0000) == 0x1122_3344_5566_7788
    assert c.read_phys(0x4000_0002, 3) == bytes([0x66, 0x55, 0x44])
    with pytest.raises(Exception, match="E14"):
        c.read_phys(0x9000_0000, 8)
    c.close()


def test_halt_and_continue():
    c, stub = _pair()
    c.handshake()
    assert c.running is False         # QEMU halts the VM when a client connects
    c.halt()                          # nothing to interrupt
    assert stub.halts == 0
    c.cont()
    c.halt()
    assert stub.conts == 1 and stub.halts == 1
    c.close()


# ---------------------------------------------------------------- stage-2 walk

# VTCR_EL2 fields (Arm ARM D19 VTCR_EL2): T0SZ [5:0], SL0 [7:6], SH0 [13:12], TG0 [15:14],
# DS [32], SL2 [33]
def vtcr(t0sz, sl0, *, ds=0, sl2=0, sh0=3, tg0=0):
    return t0sz | sl0 << 6 | sh0 << 12 | tg0 << 14 | ds << 32 | sl2 << 33


TABLE = 0b11
BLOCK = 0b01
PAGE = 0b11


def leaf(oa, *, memattr, s2ap=3, sh=3, af=1, xn=0):
    return oa | memattr << 2 | s2ap << 6 | sh << 8 | af << 10 | xn << 53


def test_start_levels():
    assert start_level(vtcr(24, 1)) == 1
    assert start_level(vtcr(24, 0)) == 2
    assert start_level(vtcr(16, 2)) == 0
    assert start_level(vtcr(12, 0, ds=1, sl2=1)) == -1
    with pytest.raises(WalkError):
        start_level(vtcr(12, 1, ds=1, sl2=1))


def _three_level():
    """40-bit IPA, start level 1 with two concatenated tables (1024 entries)."""
    t = Tables()
    l1 = t.alloc(2)
    l2 = t.alloc()
    l3 = t.alloc()
    ipa = 0x80_0060_3000      # bit 39 set: level-1 index 512 (second concatenated table)
    i1 = ipa >> 30 & 0x3FF
    assert i1 == 512
    t.put(l1 + 8 * i1, l2 | TABLE)
    t.put(l2 + 8 * (ipa >> 21 & 0x1FF), l3 | TABLE)
    t.put(l3 + 8 * (ipa >> 12 & 0x1FF), leaf(0x4567_8000, memattr=0xF, s2ap=1, xn=2) | PAGE)
    # a 2 MiB block elsewhere
    t.put(l2 + 8 * 5, leaf(0x4060_0000, memattr=0x5, s2ap=3) | BLOCK)
    return t, l1, ipa


def test_walk_page_through_concatenated_start_table():
    t, l1, ipa = _three_level()
    vttbr = 7 << 48 | l1
    r = walk_tables(t.read_u64, vttbr, vtcr(24, 1), ipa + 0x123)
    assert r["level"] == 3 and r["block_size"] == 0x1000
    assert (r["memattr"], r["s2ap"], r["xn"], r["af"], r["sh"]) == (0xF, 1, 2, 1, 3)
    assert r["oa"] == 0x4567_8123
    assert r["start_level"] == 1 and r["ia_bits"] == 40
    assert [(x["level"], x["addr"]) for x in r["path"]] == [
        (1, l1 + 8 * 512), (2, l1 + 0x2000 + 8 * 3), (3, l1 + 0x3000 + 8 * 3)]


def test_walk_block_and_unmapped():
    t, l1, ipa = _three_level()
    vttbr = l1
    blk_ipa = (ipa & ~((1 << 30) - 1)) | 5 << 21 | 0x1234
    r = walk_tables(t.read_u64, vttbr, vtcr(24, 1), blk_ipa)
    assert (r["level"], r["block_size"], r["memattr"]) == (2, 0x20_0000, 0x5)
    assert r["oa"] == 0x4060_1234
    with pytest.raises(WalkError, match="not mapped at level 2"):
        walk_tables(t.read_u64, vttbr, vtcr(24, 1), (ipa & ~((1 << 30) - 1)) | 9 << 21)
    with pytest.raises(WalkError, match="not mapped at level 1"):
        walk_tables(t.read_u64, vttbr, vtcr(24, 1), 0)
    with pytest.raises(WalkError, match="VTTBR_EL2 is 0"):
        walk_tables(t.read_u64, 0, vtcr(24, 1), ipa)
    with pytest.raises(WalkError, match="beyond"):
        walk_tables(t.read_u64, vttbr, vtcr(24, 1), 1 << 40)


def test_walk_lpa2_descriptor_bits_and_level_minus_one():
    """DS=1: OA[51:50] in descriptor bits [9:8], shareability from VTCR_EL2.SH0,
    start level -1 from SL2=1 (52-bit IPA)."""
    t = Tables()
    lm1 = t.alloc()
    l0 = t.alloc()
    l1 = t.alloc()
    ipa = 0x1_2340_4000_0000 | 0x5000     # 52-bit
    t.put(lm1 + 8 * (ipa >> 48 & 0xF), l0 | TABLE)
    t.put(l0 + 8 * (ipa >> 39 & 0x1FF), l1 | TABLE)
    # a 1 GiB block at level 1 whose OA has bit 50 set (desc bits [9:8] = 0b01)
    t.put(l1 + 8 * (ipa >> 30 & 0x1FF), 0x40000000 | 0x6 << 2 | 3 << 6 | 1 << 8 | 1 << 10
          | BLOCK)
    r = walk_tables(t.read_u64, lm1, vtcr(12, 0, ds=1, sl2=1, sh0=2), ipa)
    assert r["start_level"] == -1 and r["level"] == 1 and r["block_size"] == 1 << 30
    assert r["oa"] == (1 << 50) | 0x40000000 | (ipa & ((1 << 30) - 1))
    assert r["sh"] == 2 and r["memattr"] == 6 and r["ds"] == 1


def test_walk_rejects_other_granules():
    with pytest.raises(WalkError, match="4KB"):
        walk_tables(lambda a: 0, 0x1000, vtcr(24, 1, tg0=1), 0)


def test_walker_retries_until_the_cpu_is_in_the_guest():
    t, l1, ipa = _three_level()
    # halted in the host twice (HCR_EL2.VM = 0, VTTBR cleared as nVHE does), then in the guest
    c, stub = _pair(regs={
        "HCR_EL2": lambda halts: 1 if halts >= 3 else 0,
        "VTTBR_EL2": lambda halts: (1 << 48 | l1) if halts >= 3 else 0,
        "VTCR_EL2": vtcr(24, 1)})
    for a, v in t.mem.items():
        stub.set_u64(a, v)
    stub.set_u64(0x4567_8000, 0x4D41_474D)
    c.handshake()
    c.cont()                          # the guest runs; the walk must halt it
    w = Stage2Walker(c, tries=10, retry_sleep_s=0)
    r = w.walk(ipa)
    assert r.get("error") is None, r
    assert r["tries"] == 3 and r["level"] == 3 and r["vttbr"] == 1 << 48 | l1
    assert r["data"] == "4d47414d00000000"
    assert c.running                  # resumed afterwards
    c.close()


def test_walker_gives_up_with_a_clear_error():
    c, stub = _pair(regs={"HCR_EL2": 0, "VTTBR_EL2": 0, "VTCR_EL2": vtcr(24, 1)})
    c.handshake()
    r = Stage2Walker(c, tries=4, retry_sleep_s=0).walk(0x8000_0000)
    assert r["error"] == "VTTBR_EL2 is 0: the CPU is not in the guest after 4 tries"
    assert stub.halts == 3            # first try found it halted already (connect)
    c.close()


def test_features_from_registers_read_on_qemu_10():
    """Register values read through QEMU 10's gdbstub from 6.12.118 guests: -cpu max (VHE,
    FWB in use, LPA2) and cortex-a57 (nVHE, no FWB)."""
    from memtypes.conform.gdbstub import features
    mx = features({"id_aa64mmfr2_el1": 0x1221011112011011, "hcr_el2": 0x2403C807C663F,
                   "vtcr_el2": 0x1802E3558})
    assert mx == {"fwb": True, "vhe": True, "hcr_fwb": True, "lpa2": True}
    a57 = features({"id_aa64mmfr2_el1": 0, "hcr_el2": 0x847E403F, "vtcr_el2": 0x80243558,
                    "ctr_el0": 0x8444C004, "id_aa64pfr1_el1": 0})
    assert a57 == {"fwb": False, "vhe": False, "hcr_fwb": False, "lpa2": False, "dic": False,
                   "mte": 0}
    assert features({"ctr_el0": 1 << 29, "id_aa64pfr1_el1": 0x120})["dic"] is True
    assert features({"id_aa64pfr1_el1": 0x120})["mte"] == 1


def test_unsolicited_stop_packet_is_not_taken_for_a_reply():
    """QEMU 7.2 sends "T02thread:01;" on its own when a client connects."""
    c, stub = _pair(hello_stop=True, regs={"VTCR_EL2": 0x8001_3559})
    c.handshake()
    assert c.reg("VTCR_EL2") == 0x8001_3559
    assert c.stop_reason().startswith(b"T05")     # "?" still gets its stop reply
    c.close()
