"""The built-in families, in a fixed order, and lookup by name.

A family module that does not exist yet is skipped (and listed by :func:`missing_families`);
any other import error propagates, so a broken family is never silently left out.
"""

from __future__ import annotations

import importlib

from memtypes.check.family import Family
from memtypes.errors import InputError

ORDER: tuple[str, ...] = ("passthrough", "mte", "migration", "dma_type1", "dma_iommufd")
"""Module names under ``memtypes.check.families``, in report order."""

_PACKAGE = "memtypes.check.families"


def _load() -> tuple[list[Family], list[str]]:
    found: list[Family] = []
    missing: list[str] = []
    for mod in ORDER:
        full = f"{_PACKAGE}.{mod}"
        try:
            m = importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name == full:
                missing.append(mod)
                continue
            raise
        found.append(m.FAMILY)
    return found, missing


def families() -> list[Family]:
    """The built-in families that exist, in :data:`ORDER`."""
    return _load()[0]


def missing_families() -> list[str]:
    """Module names of :data:`ORDER` that do not exist (yet)."""
    return _load()[1]


def family(name: str, *, where: str = "--family", line: int | None = None,
           available: list[Family] | None = None) -> Family:
    """Look a family up by name (``dma-type1`` and ``dma_type1`` both work)."""
    fams = families() if available is None else available
    want = name.replace("_", "-")
    for f in fams:
        if f.name.replace("_", "-") == want:
            return f
    raise InputError(f"unknown family '{name}'", where=where, line=line, field="family",
                     expected=", ".join(f.name for f in fams) or "(no families installed)")
