"""Kernel versions: ``6.12``, ``6.17.3``, ``7.3``, ``v7.3-rc7`` and the ``+variant`` suffix.

Only parsing and ordering live here; which rules a version gets is decided by the era tables
of each subsystem (``linux/kvm/eras.py``, ``linux/dma``).

A version newer than the model (a series after :data:`NEWEST`, e.g. ``7.4`` or ``8.0``, or a
point release after the newest one the model knows in its series, e.g. ``7.3.9``) is accepted
and answered with the newest rules the model has; :func:`beyond_model` gives the visible mark
("newer than the model, assuming 7.3") every place that shows the kernel prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memtypes.errors import InputError

OLDEST = (5, 0)
NEWEST = (7, 3)

KNOWN_RELEASES: dict[tuple[int, int], int] = {
    (6, 1): 192,     # Debian linux-source-6.1 6.1.192-3 (bookworm), newest 6.1.y in Debian's indexes
    (6, 12): 118,    # Debian linux-source-6.12 6.12.118-1~deb12u1; bookworm-backports 6.12.43 .. 6.12.118
    (7, 2): 13,      # Debian linux-source-7.2 7.2.13-1 (sid)
    (7, 3): 4,       # Debian linux-source-7.3 7.3.4-1~bpo13+1 (trixie-backports)
}
"""The newest point release the model knows per series (the source trees it was read
against, reference/realkernel.md, December 2026).  A series not listed has no known newest
release: any point release of it is taken as it is."""

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

    @property
    def series(self) -> tuple[int, int]:
        return (self.major, self.minor)


def parse_version(text: str, *, where: str = "--kernel") -> KernelVersion:
    """Parse ``5.14``, ``6.17.3``, ``v6.9-rc1`` (= 6.9); reject a malformed version or one before 5.0.

    Versions newer than the model are accepted (see :func:`beyond_model`)."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        raise InputError(f"'{text}' is not a kernel version", where=where,
                         expected=f"MAJOR.MINOR[.PATCH] (or vMAJOR.MINOR-rcN) from {OLDEST[0]}.{OLDEST[1]}, "
                                  "e.g. 6.12 or 6.12.118")
    v = KernelVersion(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if v.series < OLDEST:
        raise InputError(f"kernel {v} is outside the modelled range", where=where,
                         expected=f"a version from {OLDEST[0]}.{OLDEST[1]} on (newest modelled: "
                                  f"{NEWEST[0]}.{NEWEST[1]})")
    return v


def assumed_version(v: KernelVersion) -> KernelVersion | None:
    """The version whose rules the model applies instead of ``v``, when ``v`` is newer than the
    model (None otherwise): the newest modelled series for a later series, the newest known
    point release of a series for a later point release of it."""
    if v.series > NEWEST:
        return KernelVersion(*NEWEST)
    newest = KNOWN_RELEASES.get(v.series)
    if newest is not None and v.patch > newest:
        return KernelVersion(v.major, v.minor, newest)
    return None


def beyond_model(v: KernelVersion) -> str | None:
    """The visible mark for a version newer than the model, e.g. "newer than the model,
    assuming 7.3"; None for a version the model covers."""
    a = assumed_version(v)
    return None if a is None else f"newer than the model, assuming {a}"


def split_variant(text: str) -> tuple[str, str | None]:
    """``6.17+mte-rfc-2020`` -> (``6.17``, ``mte-rfc-2020``); ``6.12`` -> (``6.12``, None);
    ``6.12+`` -> (``6.12``, ``""``): an empty variant is the caller's error, never dropped."""
    base, plus, variant = text.partition("+")
    return base, variant.strip() if plus else None
