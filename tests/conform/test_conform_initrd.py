"""The newc cpio writer: bytes parsed back, header layout, determinism."""

from __future__ import annotations

import gzip
import lzma
import stat

import pytest

from memtypes.conform import initrd as I
from memtypes.errors import InputError


def test_single_file_header_is_byte_exact():
    data = I.cpio_bytes({"/a": (b"xyz", 0o755)})
    # magic, ino 1, mode 0100755, uid, gid, nlink 1, mtime 0, size 3, devs 0, namesize 2
    head = (b"070701" + b"00000001" + b"000081ED" + b"00000000" * 2 + b"00000001"
            + b"00000000" + b"00000003" + b"00000000" * 4 + b"00000002" + b"00000000")
    assert data.startswith(head + b"a\0")
    # 110 + 2 = 112: already 4-aligned; data 3 bytes + 1 pad
    assert data[112:116] == b"xyz\0"
    assert data[116:122] == b"070701"
    assert b"TRAILER!!!\0" in data[116:]
    assert len(data) % 4 == 0


def test_round_trip_with_parents_devices_and_modes(tmp_path):
    f = tmp_path / "agent"
    f.write_bytes(b"\x7fELF" + bytes(range(256)) * 3)
    members = {
        "/init": I.Entry.file(f, 0o755),
        "/cases.json": b'{"cases": []}',
        "/modules/00-vfio.ko": b"ko" * 7,
        "/dev/console": I.Entry.chardev(5, 1),
        "/tmp": I.Entry.directory(0o1777),
    }
    out = I.parse(I.cpio_bytes(members))
    names = [n for n, *_ in out]
    assert names == sorted(names)
    assert names == ["cases.json", "dev", "dev/console", "init", "modules",
                     "modules/00-vfio.ko", "tmp"]
    got = {n: (m, rdev, d) for n, m, rdev, d in out}
    assert got["init"] == (stat.S_IFREG | 0o755, (0, 0), f.read_bytes())
    assert got["cases.json"][2] == b'{"cases": []}'
    assert got["dev/console"][:2] == (stat.S_IFCHR | 0o600, (5, 1))
    assert got["modules"][0] == stat.S_IFDIR | 0o755
    assert got["tmp"][0] == stat.S_IFDIR | 0o1777


@pytest.mark.parametrize("n", range(1, 9))
def test_alignment_for_every_name_and_size_remainder(n):
    name = "/" + "x" * n
    data = I.cpio_bytes({name: b"d" * n})
    out = I.parse(data)
    assert out == [("x" * n, stat.S_IFREG | 0o644, (0, 0), b"d" * n)]
    # the trailer's header starts 4-aligned
    assert data.index(b"070701", 6) % 4 == 0


def test_gzip_output_is_deterministic_and_atomic(tmp_path):
    members = {"/init": b"\x00" * 100, "/cases.json": b"[]"}
    a = I.write(tmp_path / "a.gz", members)
    b = I.write(tmp_path / "b.gz", dict(reversed(list(members.items()))))
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()) == I.cpio_bytes(members)
    assert I.parse(a.read_bytes())[0][0] == "cases.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz", "b.gz"]


def test_bad_paths_rejected():
    with pytest.raises(InputError, match="bad path"):
        I.cpio_bytes({"/../etc/passwd": b""})
    with pytest.raises(InputError, match="both a file and a directory"):
        I.cpio_bytes({"/a": b"1", "/a/b": b"2"})


def test_agent_layout_decompresses_modules(tmp_path):
    ko = tmp_path / "vfio-pci.ko.xz"
    ko.write_bytes(lzma.compress(b"\x7fELF module"))
    members = I.agent_members(b"AGENT", b"[]", [ko])
    out = {n: (m, d) for n, m, _, d in I.parse(I.cpio_bytes(members))}
    assert out["modules/00-vfio-pci.ko"][1] == b"\x7fELF module"
    assert out["init"] == (stat.S_IFREG | 0o755, b"AGENT")
    for d in ("dev", "proc", "sys", "tmp"):
        assert stat.S_ISDIR(out[d][0])
    assert stat.S_ISCHR(out["dev/console"][0])
