"""A newc ("070701") cpio archive, optionally gzip-compressed, written in pure Python: the
initramfs the conform harness boots with its agent as ``/init``.

Format: the "new ASCII" header of cpio(5) / the kernel's Documentation/driver-api/
early-userspace/buffer-format.rst (13 hex fields of 8 characters after the magic, the name
with its NUL padded to a multiple of 4 counting the 110-byte header, the data padded to 4,
closed by a ``TRAILER!!!`` entry). The kernel unpacks it in init/initramfs.c.

Output is deterministic: entries sorted by path, parents created before their children,
mtime 0, uid/gid 0, inode numbers by position, gzip without a name or time stamp.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from memtypes.errors import InputError

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One member: a regular file (``data``), a directory, or a character device."""

    data: bytes = b""
    mode: int = 0o100644          # full st_mode: type bits and permissions
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node

    @staticmethod
    def file(data: bytes | Path, mode: int = 0o644) -> Entry:
        if isinstance(data, Path):
            try:
                data = data.read_bytes()
            except OSError as e:
                raise InputError(f"cannot read {data}: {e.strerror}", where="initrd") from None
        return Entry(bytes(data), stat.S_IFREG | (mode & 0o7777))

    @staticmethod
    def directory(mode: int = 0o755) -> Entry:
        return Entry(b"", stat.S_IFDIR | (mode & 0o7777))

    @staticmethod
    def chardev(major: int, minor: int, mode: int = 0o600) -> Entry:
        return Entry(b"", stat.S_IFCHR | (mode & 0o7777), (major, minor))


Spec = Entry | bytes | Path | tuple  # (bytes|Path, mode) allowed as a shorthand


def _norm_path(p: str) -> str:
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if not parts or ".." in parts:
        raise InputError(f"bad path in initrd: {p!r}", where="initrd",
                         expected="an absolute path without '..'")
    return "/".join(parts)


def _as_entry(spec: Spec) -> Entry:
    if isinstance(spec, Entry):
        return spec
    if isinstance(spec, tuple):
        data, mode = spec
        return Entry.file(data, mode)
    return Entry.file(spec)


def _header(ino: int, mode: int, nlink: int, size: int, rdev: tuple[int, int],
            namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio_bytes(members: Mapping[str, Spec]) -> bytes:
    """The uncompressed newc archive of ``members`` ({path: Entry | bytes | Path |
    (bytes|Path, mode)}); missing parent directories are added with mode 0755."""
    entries: dict[str, Entry] = {}
    for path, spec in members.items():
        entries[_norm_path(path)] = _as_entry(spec)
    for path in list(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            existing = entries.setdefault(parent, Entry.directory())
            if not stat.S_ISDIR(existing.mode):
                raise InputError(f"{parent} is both a file and a directory", where="initrd")
    out = io.BytesIO()
    for ino, path in enumerate(sorted(entries), start=1):
        e = entries[path]
        name = path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        head = _header(ino, e.mode, nlink, len(e.data), e.rdev, len(name))
        out.write(head + name + _pad4(len(head) + len(name)))
        out.write(e.data + _pad4(len(e.data)))
    name = TRAILER.encode() + b"\0"
    head = _header(0, 0, 1, 0, (0, 0), len(name))
    out.write(head + name + _pad4(len(head) + len(name)))
    return out.getvalue()


def agent_members(init: bytes | Path, cases_json: bytes,
                  modules: list[Path] | None = None) -> dict[str, Spec]:
    """The standard layout: /init (mode 0755), /cases.json, /modules/NN-name.ko in load
    order (decompressed), the directories /dev /proc /sys /tmp and /dev/console (5, 1), which
    the kernel opens as init's stdin/stdout before it runs /init (init/main.c
    console_on_rootfs)."""
    from memtypes.conform.fetch import read_module  # decompresses .ko.xz / .ko.zst
    m: dict[str, Spec] = {
        "init": Entry.file(init, 0o755),
        "cases.json": Entry.file(cases_json, 0o644),
        "dev": Entry.directory(), "proc": Entry.directory(), "sys": Entry.directory(),
        "tmp": Entry.directory(0o1777),
        "dev/console": Entry.chardev(5, 1, 0o600),
    }
    for i, ko in enumerate(modules or []):
        name = ko.name.split(".ko")[0]
        m[f"modules/{i:02d}-{name}.ko"] = Entry.file(read_module(ko), 0o644)
    return m


def write(dest: Path, members: Mapping[str, Spec], *, compress: bool = True) -> Path:
    """Write the archive to ``dest`` atomically (temp file + rename); gzip when ``compress``
    (level 6, no name, mtime 0, so equal input gives equal bytes)."""
    data = cpio_bytes(members)
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=6, mtime=0) as g:
            g.write(data)
        data = buf.getvalue()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def parse(data: bytes) -> list[tuple[str, int, tuple[int, int], bytes]]:
    """Read a newc archive back (gzip detected): [(path, mode, (rdevmajor, rdevminor), data)]
    up to the trailer. For tests and for checking what a boot was given."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    out = []
    pos = 0
    while True:
        if data[pos:pos + 6] != MAGIC:
            raise ValueError(f"bad cpio magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        npos = pos + 110
        name = data[npos:npos + namesize - 1].decode()
        dpos = npos + namesize
        dpos += -dpos % 4
        if name == TRAILER:
            return out
        body = data[dpos:dpos + size]
        out.append((name, mode, (rmaj, rmin), body))
        pos = dpos + size
        pos += -pos % 4
