"""Files memtypes reads and writes: safe YAML loading with line numbers, atomic writes.

Host profiles, VM descriptions and scenario files all go through :func:`parse` / :func:`read`:
``yaml.SafeLoader`` only (no object construction), duplicate keys rejected, and a map from each
key path (``features.fwb``, ``devices[1].backing``, ``steps[2]``) to its 1-based line so that bad
input can be reported as one line naming file, line and field.  Imports nothing of memtypes but
:mod:`memtypes.errors`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from memtypes.errors import InputError


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
    loader = yaml.SafeLoader(text)
    try:
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
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML: {' '.join(str(e).split())}", where=where) from None
    finally:
        loader.dispose()
    return data, lines


def read(path: str | Path, *, what: str = "file", expected: str = "a YAML mapping") -> tuple[Any, dict[str, int]]:
    """Read and :func:`parse` a file; an unreadable file is an :class:`InputError`."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", where=str(p)) from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read {what}: not UTF-8 text", where=str(p)) from None
    return parse(text, str(p), expected=expected)


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
