"""The explorers' memory bound (``memtypes check --max-memory``).

* The bound defaults to three quarters of this machine's physical memory; the environment
  variable ``MEMTYPES_MAX_MEMORY`` (bytes, or a size such as ``4G``: what ``--max-memory`` sets,
  so that the check's worker processes inherit it) overrides it.
* The vectorised explorer, when what it stores would pass the bound, *spills*: the packed codes
  and parent indices go to memory-mapped files in a temporary folder (removed on every exit
  path, Ctrl-C included) and the search goes on; its visited set's table stays in memory.
* The serial explorer cannot spill (its states are Python objects): when the process's resident
  memory passes the bound it stops with :class:`MemoryBound` (one line: what passed, after how
  many states) instead of being killed by the kernel.
"""

from __future__ import annotations

import os
import re

__all__ = ["MemoryBound", "parse_size", "machine_memory", "default_max_memory", "max_memory",
           "rss_bytes", "ENV"]

ENV = "MEMTYPES_MAX_MEMORY"
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class MemoryBound(ValueError):
    """The search would pass the memory bound and cannot spill (the serial explorer)."""


def parse_size(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1.5g"``, ``"1000000"`` (bytes) -> bytes.  Raises ``ValueError``
    for anything else, and for a size that is not positive."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"'{text}' is not a size")
    n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise ValueError(f"'{text}' is not a positive size")
    return n


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def default_max_memory() -> int | None:
    """Three quarters of the machine's memory (room for the OS and the rest of the process)."""
    total = machine_memory()
    return total * 3 // 4 if total else None


def max_memory(value: int | None = None) -> int | None:
    """The bound in effect: ``value`` if given, else ``$MEMTYPES_MAX_MEMORY``, else
    :func:`default_max_memory`."""
    if value is not None:
        return value
    env = os.environ.get(ENV)
    if env:
        try:
            return parse_size(env)
        except ValueError:
            raise MemoryBound(f"{ENV}={env!r} is not a size such as 4G") from None
    return default_max_memory()


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux ``/proc/self/statm``), else ``None``."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def fmt(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"
