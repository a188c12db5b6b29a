"""Kernel versions: ``6.12``, ``6.17.3``, ``7.1`` and the ``+variant`` suffix.

Only parsing and ordering live here; which rules a version gets is decided by the era tables
of each subsystem (``linux/kvm/eras.py``, ``linux/dma``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memtypes.errors import InputError

OLDEST = (5, 0)
NEWEST = (7, 1)

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc\d+)?$")


@dataclass(frozen=True, slots=True, order=True)
class KernelVersion:
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}"
        return f"{base}.{self.patch}" if self.patch else base

    def at_least(self, major: int, minor: int, patch: int = 0) -> bool:
        return (self.major, self.minor, self.patch) >= (major, minor, patch)


def parse_version(text: str, *, where: str = "--kernel") -> KernelVersion:
    """Parse ``5.14``, ``6.17.3`` or ``v6.9-rc1``; reject anything outside 5.0 .. NEWEST."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        raise InputError(f"'{text}' is not a kernel version", where=where,
                         expected=f"MAJOR.MINOR[.PATCH] between {OLDEST[0]}.{OLDEST[1]} "
                                  f"and {NEWEST[0]}.{NEWEST[1]}, e.g. 6.12")
    v = KernelVersion(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if (v.major, v.minor) < OLDEST or (v.major, v.minor) > NEWEST:
        raise InputError(f"kernel {v} is outside the modelled range", where=where,
                         expected=f"a version from {OLDEST[0]}.{OLDEST[1]} to "
                                  f"{NEWEST[0]}.{NEWEST[1]}")
    return v


def split_variant(text: str) -> tuple[str, str | None]:
    """``6.17+mte-rfc-2020`` -> (``6.17``, ``mte-rfc-2020``); ``6.12`` -> (``6.12``, None);
    ``6.12+`` -> (``6.12``, ``""``): an empty variant is the caller's error, never dropped."""
    base, plus, variant = text.partition("+")
    return base, variant.strip() if plus else None
