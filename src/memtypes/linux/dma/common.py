"""What type1 and iommufd share: the environment of a run, page memory, pins and events.

Pages are small ints: user pages ``0 .. npages-1`` (their names ``P0``, ``P1``, ... or the names
given), then the two fgsp scratch pages ``K0``, ``K1`` (type1 only uses them).  A page's memory is a
:mod:`memtypes.arch.cache` line.  A page is *populated* once the kernel has handed it to the owner
(the zero fill of the first pin, ``HOST_ZERO`` in kernel-vfio.md section 6); a page given as
already holding owner data (e.g. TV06's ``A``) starts populated.

A step returns ``(state, events)``.  ``events`` is a tuple of short tuples, in order:

* ``(fn, pages)`` a flush call: ``fn`` is ``F@pin_map``, ``F@unpin``, ``F@replay``,
  ``F@fgsp-pre``, ``F@fgsp-post``, ``F@fill_domains``, ``F@fill_domain`` or ``F@batch_unpin``
  (kernel-vfio.md sections 6/7), ``pages`` a tuple of page names;
* ``("read", agent, page, value)`` what an agent read (host reads use the ``A->B`` notation when a
  later eviction would change the value);
* ``("zero", pages)`` the kernel's zero fill at pin; ``("skip", page)`` a flush call that does no
  CLFLUSH (host-uncacheable PFN, TV18); ``("kvm", "register"|"unregister")``;
  ``("wbinvd", real)``; ``("err", errno, where)`` an ioctl failure; ``("notify", pages)`` type1
  UNMAP_DMA asking the emulated devices to unpin their external pins in the range.

Events are never stored in states, so states stay small and the checker sees no history.
"""

from __future__ import annotations

from dataclasses import dataclass

from memtypes.arch import cache
from memtypes.linux.dma import variants as V
from memtypes.linux.version import KernelVersion, parse_version

K0_NAME = "K0"
K1_NAME = "K1"

FLUSH_FNS = ("F@pin_map", "F@unpin", "F@replay", "F@fgsp-pre", "F@fgsp-post", "F@fill_domains",
             "F@fill_domain", "F@batch_unpin")


@dataclass(frozen=True, slots=True)
class Group:
    """A VFIO group (type1) or device (iommufd) as configured, not as state.

    ``nc``: its IOMMU cannot enforce cache coherency (no Snoop Control, no CANWBS), so a domain
    for it is non-coherent and the device lacks IOMMU_CAP_ENFORCE_CACHE_COHERENCY (section 2.2).
    ``ops``: the iommu_ops identity used by type1's merge test.  ``emulated``: an mdev group."""

    name: str
    nc: bool = False
    ops: str = "iommu"
    emulated: bool = False


@dataclass(frozen=True, slots=True)
class Env:
    """Everything fixed during a run: variant, kernel, groups, pages, pin chunk size."""

    variant: int
    kernel: KernelVersion
    groups: tuple            # tuple[Group, ...]
    names: tuple             # page names: user pages then K0, K1
    npages: int              # user pages
    chunk: int               # pages per vfio_pin_pages_remote chunk (type1)
    uncached: frozenset      # pages whose host PAT is UC/WC/UC- (MMIO BARs): flush skips CLFLUSH
    pfnmap: frozenset        # pages that are not RAM (no zero fill at pin)
    dv: object = None        # the DmaVariant (flush points, KVM coherency); variant = its base's code

    @property
    def flushes(self) -> bool:
        return self.variant != V.UPSTREAM

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def k0(self) -> int:
        return self.npages

    @property
    def variant_name(self) -> str:
        return self.dv.name if self.dv is not None else V.NAMES[self.variant]


def make_env(variant: str | int = "vfio-flush-reviewed", kernel: str | KernelVersion = "6.9",
             groups=(), npages: int = 4, names=None, chunk: int = 1 << 20,
             uncached=(), pfnmap=()) -> Env:
    """Build an :class:`Env`.  ``groups`` are :class:`Group` values or ``(name, nc)`` pairs."""
    dv = V.get(V.NAMES[variant]) if isinstance(variant, int) else V.get(variant)
    kv = kernel if isinstance(kernel, KernelVersion) else parse_version(str(kernel))
    gs = tuple(g if isinstance(g, Group) else Group(g[0], bool(g[1])) for g in groups)
    if names is None:
        names = tuple(f"P{i}" for i in range(npages))
    names = tuple(names) + (K0_NAME, K1_NAME)
    return Env(dv.code, kv, gs, names, npages, max(1, int(chunk)), frozenset(uncached),
               frozenset(pfnmap) | frozenset(uncached), dv)


def initial_lines(env: Env, init=None) -> tuple[tuple, tuple]:
    """Lines and populated flags: by default every page holds ``S`` in DRAM with no cached copy
    (section 6).  ``init`` maps a page index to its DRAM value (an owner value makes it
    populated) or to a full line tuple."""
    lines = [cache.line(cache.PREV)] * env.npages + [cache.line(cache.PREV_SCRATCH)] * 2
    pop = [False] * env.npages
    for p, v in (init or {}).items():
        if isinstance(v, tuple):
            lines[p] = v
            pop[p] = not cache.is_previous_owner(v[0])
        else:
            lines[p] = cache.line(v)
            pop[p] = not cache.is_previous_owner(v)
    return tuple(lines), tuple(pop)


# -- memory helpers used by the step functions (lists in, no allocation beyond them) ---------

def flush_at(env: Env, point: str, pages, default: bool) -> bool:
    """Whether the flush at ``point`` (variants.FLUSH_POINTS) over ``pages`` happens: the base's
    ``default`` unless the variant turned the point off or decides it with a function."""
    dv = env.dv
    return default if dv is None else dv.flush(env, point, pages, default)


def flush_pages(env: Env, lines: list, pages, fn: str, ev: list) -> None:
    """One call of the variant's FLUSH helper over ``pages`` (arch_clean_nonsnoop_dma in v1,
    arch_flush_cache_phys in review): CLFLUSH each line, except host-uncacheable PFNs, which the
    helper skips (v1 3/5: reserved pfn with PAT UC/WC/UC-, kernel-vfio.md 1.4, TV18)."""
    names = env.names
    ev.append((fn, tuple(names[p] for p in pages)))
    unc = env.uncached
    for p in pages:
        if p in unc:
            ev.append(("skip", names[p]))
        else:
            lines[p] = cache.flush(lines[p])


def zero_fill(env: Env, lines: list, pop: list, pages, ev: list) -> None:
    """HOST_ZERO: the first pin faults the anonymous page in; the kernel zeroes it with cacheable
    stores (cpu_write 0) -- the root of the leak (Jason Gunthorpe, <20240109002220.GA439767@nvidia.com>)."""
    done = []
    pfn = env.pfnmap
    for p in pages:
        if not pop[p] and p not in pfn:
            lines[p] = cache.cpu_write(lines[p], cache.ZERO)
            pop[p] = True
            done.append(env.names[p])
    if done:
        ev.append(("zero", tuple(done)))
