"""Kernel versions as the checker uses them: any version maps to its era's first version."""

from __future__ import annotations

from memtypes.check.family import ERAS
from memtypes.errors import InputError
from memtypes.linux.version import parse_version, split_variant


def _key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def era_of(text: str, *, where: str = "--kernel") -> str:
    """``6.12`` -> ``6.9``; ``5.10`` -> ``5.13`` (the era of every version up to 5.13)."""
    v = parse_version(text, where=where)
    key = (v.major, v.minor)
    era = ERAS[0]
    for e in ERAS:
        if _key(e) <= key:
            era = e
    return era


def parse_kernel(text: str, *, where: str = "--kernel") -> tuple[str, str | None]:
    """``6.17.3+mte-rfc-2020`` -> (``6.17``, ``mte-rfc-2020``)."""
    base, variant = split_variant(text.strip())
    if "+" in text and not (variant or "").strip():
        raise InputError(f"'{text}' has an empty variant", where=where, expected="VERSION[+VARIANT]")
    return era_of(base, where=where), variant


def kernel_order(kernel: str) -> int:
    return ERAS.index(kernel) if kernel in ERAS else len(ERAS)
