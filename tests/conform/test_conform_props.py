"""Property tests of the conform building blocks: cpio and RSP escaping round trips, and
stage-2 walks of randomly mapped synthetic tables (4KB granule, 40-bit IPA, start level 1
with two concatenated tables: the layout KVM uses on QEMU's virt machine)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memtypes.conform import initrd as I
from memtypes.conform.gdbstub import escape, unescape, walk_tables

SETTINGS = settings(max_examples=100, deadline=None)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)\
    .filter(lambda s: s not in (".", ".."))


@SETTINGS
@given(st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join),
                       st.binary(max_size=300), max_size=8))
def test_cpio_round_trip(files):
    # drop paths that are a prefix directory of another path (a file cannot be a directory)
    keys = sorted(files)
    files = {k: v for k, v in files.items() if not any(o.startswith(k + "/") for o in keys)}
    out = {n: d for n, m, _, d in I.parse(I.cpio_bytes({"/" + k: v for k, v in files.items()}))
           if m & 0o170000 == 0o100000}
    assert out == files


@SETTINGS
@given(st.binary(max_size=200))
def test_rsp_escape_round_trip(data):
    esc = escape(data)
    assert not any(c in esc for c in b"#$*")       # '}' only as an escape
    assert unescape(esc) == data


def _map(mem, alloc, l1, ipa, leaf, level):
    """Install ``leaf`` for ``ipa`` at ``level`` (2: 2 MiB block, 3: page), creating tables."""
    table, lvl = l1, 1
    while lvl < level:
        shift = 12 + 9 * (3 - lvl)
        width = 10 if lvl == 1 else 9
        slot = table + 8 * ((ipa >> shift) & ((1 << width) - 1))
        if slot not in mem:
            mem[slot] = alloc() | 0b11
        table = mem[slot] & ~0xFFF & ((1 << 48) - 1)
        lvl += 1
    shift = 12 + 9 * (3 - level)
    mem[table + 8 * ((ipa >> shift) & 0x1FF)] = leaf


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, (1 << 28) - 1),      # IPA page number (40-bit)
                          st.integers(0x40000, 0x7FFFF),      # PA page number
                          st.integers(0, 15), st.integers(0, 3), st.integers(0, 3),
                          st.booleans()), min_size=1, max_size=12))
def test_walk_finds_what_was_mapped(maps):
    mem: dict[int, int] = {}
    nxt = [0x10000000]

    def alloc():
        nxt[0] += 0x1000
        return nxt[0]
    l1 = 0x0F000000                                     # two concatenated level-1 tables
    expect = {}
    used_blocks = set()
    for ipn, ppn, attr, ap, xn, block in maps:
        ipa = ipn << 12
        blk = ipa >> 21
        if blk in used_blocks or any(e[0] >> 21 == blk for e in expect.values()):
            continue                                    # keep each 2 MiB region one kind
        if block:
            pa = (ppn << 12) & ~0x1FFFFF
            _map(mem, alloc, l1, ipa, pa | attr << 2 | ap << 6 | 1 << 10 | xn << 53 | 0b01, 2)
            used_blocks.add(blk)
            expect[ipa] = (ipa, 2, pa | (ipa & 0x1FFFFF), attr, ap, xn)
        else:
            _map(mem, alloc, l1, ipa, ppn << 12 | attr << 2 | ap << 6 | 1 << 10 | xn << 53 | 3,
                 3)
            expect[ipa] = (ipa, 3, ppn << 12, attr, ap, xn)
    vtcr = 24 | 1 << 6 | 3 << 12                        # T0SZ=24, SL0=1, inner shareable
    for ipa, (_, level, oa, attr, ap, xn) in expect.items():
        r = walk_tables(lambda a: mem.get(a, 0), 1 << 48 | l1, vtcr, ipa + 0x18)
        assert (r["level"], r["oa"], r["memattr"], r["s2ap"], r["xn"], r["af"]) == \
            (level, oa + 0x18, attr, ap, xn, 1)
