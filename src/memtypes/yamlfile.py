"""Files memtypes reads and writes: safe YAML loading with line numbers, atomic writes.

Host profiles, VM descriptions and scenario files all go through :func:`parse` / :func:`read`:
``yaml.SafeLoader`` only (no object construction), duplicate keys rejected, and a map from each
key path (``features.fwb``, ``devices[1].backing``, ``steps[2]``) to its 1-based line so that bad
input can be reported as one line naming file, line and field.  Imports nothing of memtypes but
:mod:`memtypes.errors`.

Every input is bounded before anything is built from it: a file must be a regular file (a FIFO,
a device such as ``/dev/zero`` or a directory is refused without reading) of at most
:data:`MAX_BYTES`; characters YAML forbids (NUL, U+FFFE, ...) are refused with their line; the
event stream is scanned first, so nesting deeper than :data:`MAX_DEPTH` and aliases that would
expand to more than :data:`MAX_NODES` nodes (a "billion laughs" file) are refused before any
node is composed or any alias expanded.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from memtypes.errors import InputError


MAX_BYTES = 1 << 20
"""Largest input file read (1 MiB: host profiles, VM and scenario files are a few KiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted."""
MAX_NODES = 100_000
"""Most nodes a document may have once every alias is expanded."""


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, max(0, pos)) + 1


def _bounds(text: str, where: str) -> None:
    """Scan the event stream (no composing, no alias expansion): refuse nesting deeper than
    :data:`MAX_DEPTH` and documents whose aliases expand to more than :data:`MAX_NODES` nodes."""
    loader = yaml.SafeLoader(text)
    try:
        sizes: dict[str, int] = {}
        stack: list[list] = []  # [anchor, size]
        total = 0
        while loader.check_event():
            ev = loader.get_event()
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append([ev.anchor, 1])
                if len(stack) > MAX_DEPTH:
                    raise InputError(f"nested more than {MAX_DEPTH} levels deep", where=where,
                                     line=ev.start_mark.line + 1,
                                     expected="a shallower document")
                continue
            if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, n = stack.pop()
            elif isinstance(ev, yaml.ScalarEvent):
                anchor, n = ev.anchor, 1
            elif isinstance(ev, yaml.AliasEvent):
                anchor, n = None, sizes.get(ev.anchor, 1)
            else:
                continue
            if anchor is not None:
                sizes[anchor] = n
            if stack:
                stack[-1][1] += n
            else:
                total += n
            if total + sum(f[1] for f in stack) > MAX_NODES:
                raise InputError(f"expands to more than {MAX_NODES:,} nodes (aliases?)",
                                 where=where, line=ev.start_mark.line + 1,
                                 expected="a document without alias bombs")
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: str, lines: dict[str, int], where: str) -> None:
    lines.setdefault(path or "<document>", node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key in seen:
                raise InputError(f"duplicate key '{key}'", where=where, line=k.start_mark.line + 1,
                                 field=f"{path}.{key}" if path else str(key),
                                 expected="each key once")
            seen.add(key)
            sub = f"{path}.{key}" if path else str(key)
            lines[sub] = k.start_mark.line + 1
            _walk(v, sub, lines, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines[sub] = v.start_mark.line + 1
            _walk(v, sub, lines, where)


def parse(text: str, where: str, *, expected: str = "a YAML mapping") -> tuple[Any, dict[str, int]]:
    """Parse ``text`` safely; return the data and the key-path -> line map.

    An empty document, malformed YAML or a duplicate key raises :class:`InputError`."""
    loader = None
    try:
        _bounds(text, where)
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise InputError("the file is empty", where=where, line=1, expected=expected)
        lines: dict[str, int] = {}
        _walk(node, "", lines, where)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(str(e.problem or e.context or "malformed YAML").split())
        raise InputError(f"not valid YAML: {what}", where=where,
                         line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:
        ch = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise InputError(f"character U+{ch:04X} is not allowed in YAML", where=where,
                         line=_line_of(text, e.position),
                         expected="printable UTF-8 text") from None
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML: {' '.join(str(e).split())}", where=where) from None
    except RecursionError:  # pragma: no cover - _bounds refuses deep nesting first
        raise InputError("nested too deeply", where=where, expected="a shallower document") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def read(path: str | Path, *, what: str = "file", expected: str = "a YAML mapping") -> tuple[Any, dict[str, int]]:
    """Read (:func:`read_text`) and :func:`parse` a file."""
    return parse(read_text(path, what=what), str(path), expected=expected)


def read_text(path: str | Path, *, what: str = "file", limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, or an :class:`InputError`:
    a missing or unreadable file, a FIFO, device or directory (refused without reading, so
    neither ``/dev/zero`` nor a FIFO can hang or exhaust memory), a larger file, not UTF-8."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"no such {what}", where=str(p)) from None
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", where=str(p)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                    "a FIFO" if stat.S_ISFIFO(st.st_mode) else
                    "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                    "not a regular file")
            raise InputError(f"cannot read {what}: {kind}", where=str(p), expected="a regular file")
        chunks = []
        size = 0
        while size <= limit:
            b = os.read(fd, min(1 << 16, limit + 1 - size))
            if not b:
                break
            chunks.append(b)
            size += len(b)
        if size > limit:
            raise InputError(f"{what} is larger than {limit // 1024} KiB", where=str(p),
                             expected=f"a file of at most {limit // 1024} KiB")
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", where=str(p)) from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        data = b"".join(chunks)
        raise InputError(f"cannot read {what}: not UTF-8 text", where=str(p),
                         line=data.count(b"\n", 0, e.start) + 1) from None


def parse_value(text: str, where: str) -> Any:
    """One YAML value typed on a command line (``--param``), with the same bounds as a file."""
    if len(text) > 10_000:
        raise InputError("value longer than 10,000 characters", where=where)
    data, _ = parse(text, where, expected="a YAML value") if text.strip() else (None, {})
    return data


def write_atomic(path: str | os.PathLike, text: str, *, where: str = "") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename,
    so a reader never sees a half-written file; the file gets the usual umask permissions.
    An OS error becomes an :class:`InputError` naming the path."""
    p = Path(path)
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror}", where=where or str(p)) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | os.PathLike, *, where: str, directory: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: an existing directory
    where a file is wanted (or a file where a directory is), a non-empty existing directory
    for a set of files, or a place where no file can be created (tried for real: a file is
    created and removed in the nearest existing directory)."""
    p = Path(path)
    if directory:
        if p.exists() and not p.is_dir():
            raise InputError("not a directory", where=where, field=str(p),
                             expected="a new or empty directory")
        if p.is_dir() and any(p.iterdir()):
            raise InputError("the directory is not empty", where=where, field=str(p),
                             expected="a new or empty directory (the set is written whole)")
    elif p.is_dir():
        raise InputError("is a directory", where=where, field=str(p), expected="a file path")
    base = _existing_ancestor(p if directory and p.is_dir() else p.parent)
    if not base.is_dir():
        raise InputError(f"{base} is not a directory", where=where, field=str(p),
                         expected="a path in a writable directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".memtypes-probe.", dir=base)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise InputError(f"cannot write in {base}: {e.strerror}", where=where, field=str(p),
                         expected="a path in a writable directory") from None


COMMITTED: list[str] = []
"""Every output path an :class:`OutputSet` renamed into place in this process (what an
interrupt message reports as written)."""


class OutputSet:
    """Several outputs written all or nothing: :meth:`file` and :meth:`directory` stage each
    one next to its destination (a temporary file, a temporary folder), :meth:`commit` renames
    them all into place; leaving the ``with`` block without committing (an error, an interrupt)
    removes everything staged, so a reader never sees a partial output or half a set."""

    def __init__(self) -> None:
        self._staged: list[tuple[str, Path]] = []
        self.written: list[str] = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()

    def file(self, path: str | os.PathLike, text: str, *, where: str = "") -> None:
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            self._staged.append((str(p), Path(tmp)))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
        except OSError as e:
            raise InputError(f"cannot write {p}: {e.strerror}", where=where or str(p)) from None

    def directory(self, path: str | os.PathLike, files: list[tuple[str, str]], *,
                  where: str = "") -> list[Path]:
        """Stage a folder holding ``files`` (name, text); returns their final paths."""
        p = Path(path)
        try:
            p.absolute().parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp",
                                        dir=p.absolute().parent))
            self._staged.append((str(p), tmp))
            for name, text in files:
                (tmp / name).write_text(text, encoding="utf-8")
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o777 & ~mask)
        except OSError as e:
            raise InputError(f"cannot write {p}: {e.strerror}", where=where or str(p)) from None
        return [p / name for name, _ in files]

    def commit(self) -> list[str]:
        """Rename every staged output into place (an empty existing folder is replaced)."""
        while self._staged:
            dest, tmp = self._staged[0]
            d = Path(dest)
            try:
                if tmp.is_dir() and d.is_dir():
                    d.rmdir()  # empty (checked before the run); a non-empty one fails here
                os.replace(tmp, d)
            except OSError as e:
                raise InputError(f"cannot write {d}: {e.strerror}", where=dest) from None
            self._staged.pop(0)
            self.written.append(dest)
            COMMITTED.append(dest)
        return self.written

    def discard(self) -> None:
        import shutil
        for _, tmp in self._staged:
            try:
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink()
            except OSError:
                pass
        self._staged.clear()
