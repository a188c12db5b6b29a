"""A CPU cache and memory model per line, for DMA coherency (reference/kernel-vfio.md section 6).

One *line* stands for one page (the model never needs two lines of one page to differ). A line is
a plain tuple ``(mem, kind, val)``:

* ``mem``  the value in DRAM (what a non-snooping device sees);
* ``kind`` ``"I"`` (Invalid: no cached copy), ``"C"`` (Clean(val): a cached copy the CPU believes
  equals memory, but which need not after a non-snooped write) or ``"D"`` (Dirty(val): a cached copy
  newer than memory);
* ``val``  the cached value (``""`` when Invalid).

Values are short strings: ``"S"`` (and ``"S'"``) is a previous owner's data left in DRAM, ``"0"``
the kernel's zero fill, other letters data of the current owner (guest ``"G"``, device ``"B"``).

Semantics (kernel-vfio.md section 6; the architectural basis):

* A cacheable CPU read allocates a Clean line from memory when Invalid and returns the cached
  value; a cacheable CPU write makes the line Dirty.  Arm ARM (DDI 0487) B2.10 "Caches and memory
  hierarchy" / B2.11 "Memory types and attributes": for Normal Write-Back memory a cached copy may
  be newer than memory and memory may be updated only by write-back or eviction.
* A *non-snooping* device access (PCIe No-Snoop TLP, or an SMMU master without coherent access)
  reads and writes DRAM and neither looks at nor updates CPU caches; so a non-snooped write under
  a Clean line leaves a *stale clean line* (the CPU keeps reading the old value until the line is
  evicted) and a non-snooped read under a Dirty line returns the older DRAM value.
* A *snooping* device read returns the cached value when present; a snooping write updates memory
  and invalidates the cached copy (I/O coherency, Arm ARM B2.10 "coherency of data accesses from
  other observers"; x86 snooped DMA).
* Clean by PA (Arm ``DC CVAC``/x86 ``CLWB``): a Dirty line is written back and becomes Clean.
  Invalidate by PA (Arm ``DC IVAC``): the cached copy is discarded (a Dirty value is lost).
  FLUSH = clean + invalidate (Arm ``DC CIVAC``, Arm ARM D7.5 / B2.10 cache maintenance by VA to
  the PoC; x86 ``CLFLUSH``/``CLFLUSHOPT``: "invalidates from every level of the cache hierarchy
  the cache line ... if that cache line contains modified data it is written back to memory",
  Intel SDM Vol. 2A CLFLUSH).
* Eviction is nondeterministic in hardware; the model makes it an explicit step equal to FLUSH of
  that line (write back if Dirty, then Invalid).

Everything here is a pure function on tuples: no object is modified, each step costs well under a
microsecond.  This module imports nothing of memtypes except :mod:`memtypes.arch.reason`.
"""

from __future__ import annotations

from memtypes.arch.reason import Reason

Line = tuple  # (mem: str, kind: "I"|"C"|"D", val: str)

INVALID = "I"
CLEAN = "C"
DIRTY = "D"

PREV = "S"
"""The previous owner's data that a fresh page holds in DRAM (section 6 default initial state)."""
PREV_SCRATCH = "S'"
"""The previous owner's data in a freshly allocated kernel scratch page (fgsp, TV17)."""
ZERO = "0"


def line(mem: str = PREV, kind: str = INVALID, val: str = "") -> Line:
    """A line: DRAM holds ``mem``; the cache is ``kind`` (``I``/``C``/``D``) with ``val``."""
    if kind == INVALID:
        return (mem, INVALID, "")
    if kind not in (CLEAN, DIRTY):
        raise ValueError(f"cache state {kind!r} is not I, C or D")
    return (mem, kind, val)


def is_previous_owner(value: str) -> bool:
    """Whether ``value`` is a previous owner's data (``S``, ``S'``)."""
    return value[:1] == "S"


# -- CPU accesses (cacheable, Write-Back) -------------------------------------------------------

def cpu_read(ln: Line) -> tuple[Line, str]:
    """Cacheable CPU read: allocate Clean(mem) when Invalid, return the cached value."""
    if ln[1] == INVALID:
        v = ln[0]
        return (v, CLEAN, v), v
    return ln, ln[2]


def cpu_write(ln: Line, v: str) -> Line:
    """Cacheable CPU write: the line becomes Dirty(v); memory keeps its old value."""
    return (ln[0], DIRTY, v)


def uncached_write(ln: Line, v: str) -> Line:
    """A UC/WC store (guest PAT honoured, x86 SDM Vol. 3A 12.3): goes to memory; the cache is left
    as it was (worst case: a self-snooping CPU would invalidate it; kernel-vfio.md section 6 says
    only ``dram=v``)."""
    return (v, ln[1], ln[2])


# -- device accesses ---------------------------------------------------------------------------

def ns_read(ln: Line) -> str:
    """Non-snooped device read: DRAM, whatever the cache holds."""
    return ln[0]


def ns_write(ln: Line, v: str) -> Line:
    """Non-snooped device write: DRAM becomes ``v``; the cache is unchanged (a Clean line becomes
    stale, a Dirty line will later overwrite the device's data on write-back)."""
    return (v, ln[1], ln[2])


def snoop_read(ln: Line) -> str:
    """Snooped (coherent) device read: the cached value when present, else DRAM."""
    return ln[2] if ln[1] != INVALID else ln[0]


def snoop_write(ln: Line, v: str) -> Line:
    """Snooped (coherent) device write: DRAM becomes ``v`` and cached copies are invalidated."""
    return (v, INVALID, "")


# -- cache maintenance by PA ------------------------------------------------------------------

def clean(ln: Line) -> Line:
    """Clean by PA (Arm DC CVAC, x86 CLWB): write back a Dirty line; it stays cached, Clean."""
    if ln[1] == DIRTY:
        return (ln[2], CLEAN, ln[2])
    return ln


def invalidate(ln: Line) -> Line:
    """Invalidate by PA (Arm DC IVAC): discard the cached copy (Dirty data is lost)."""
    if ln[1] == INVALID:
        return ln
    return (ln[0], INVALID, "")


def flush(ln: Line) -> Line:
    """FLUSH = clean + invalidate (Arm DC CIVAC to PoC, x86 CLFLUSH/CLFLUSHOPT): a Dirty value is
    written back, then the line is Invalid; a Clean (possibly stale) line is simply dropped."""
    k = ln[1]
    if k == DIRTY:
        return (ln[2], INVALID, "")
    if k == CLEAN:
        return (ln[0], INVALID, "")
    return ln


evict = flush
"""Eviction (nondeterministic in hardware, an explicit step here) has the effect of FLUSH."""


def is_stale(ln: Line) -> bool:
    """A Clean line whose value differs from memory: CPU reads are unstable (they return the cached
    value now and memory's value after an eviction)."""
    return ln[1] == CLEAN and ln[2] != ln[0]


def host_view(ln: Line) -> str:
    """What a host CPU read returns now: ``A`` or ``A->B`` when a later eviction would change it
    (the notation of kernel-vfio.md section 7)."""
    if ln[1] == INVALID:
        return ln[0]
    if ln[1] == CLEAN and ln[2] != ln[0]:
        return f"{ln[2]}->{ln[0]}"
    return ln[2]


def fmt(ln: Line) -> str:
    """``dram=S cache=D(0)``."""
    c = "I" if ln[1] == INVALID else f"{ln[1]}({ln[2]})"
    return f"dram={ln[0]} cache={c}"


REASONS = {
    "flush": Reason("cache/flush", "Arm ARM B2.10 (DC CIVAC); Intel SDM Vol.2A CLFLUSH",
                    "clean+invalidate: dirty data written back, then the line is invalid"),
    "ns": Reason("cache/no-snoop", "Arm ARM B2.10, B2.11; PCIe Base spec No-Snoop attribute",
                 "a non-snooping device reads and writes DRAM and ignores CPU caches"),
    "stale": Reason("cache/stale-clean", "kernel-vfio.md 1.7 (Kevin Tian, "
                    "<BN9PR11MB52766D78684F6206121590B98CED2@...>)",
                    "a non-snooped write under a clean line leaves the cache stale; only an "
                    "invalidate or a write-back store restores one view"),
}
