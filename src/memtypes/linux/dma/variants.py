"""The three DMA variants (kernel-vfio.md, "Variants used throughout").

* ``vfio-upstream`` (a): mainline type1/iommufd, no CPU cache flush anywhere (section 1.9: never
  merged; UNVERIFIED against the very newest tree).  ``mainline`` is an alias.
* ``vfio-flush-v1`` (b): Yan Zhao's series as posted, 2024-05-07,
  cover ``<20240507061802.20184-1-yan.y.zhao@intel.com>``; type1 4/5
  ``<20240507062138.20465-1-...>`` (``has_noncoherent_domain`` bool, ``cache_flush_required``),
  iommufd 5/5 ``<20240507062212.20535-1-...>`` (``noncoherent_domain_cnt``, sticky per-pages bit),
  *including* its defects: TV22 (sub-slice areas skip the pre-map flush once the shared pages bit
  is set) and TV27 (counter underflow when a coherent hwpt fails ``iopt_table_add_domain``).
* ``vfio-flush-reviewed`` (c): v1 with the reviewers' agreed changes (section 1.8) -- a
  reconstruction, never posted: type1 counter with link/unlink wrappers, ``is_noncoherent``,
  ``arch_flush_cache_phys``; iommufd counter inside ``iopt_table_add/remove_domain``, pre-map
  flush whenever the target domain is non-coherent, sticky pages bit only for the unpin flush.

A DMA variant is a :class:`DmaVariant`: a *base* (one of the three above: it decides the
bookkeeping -- v1's ``has_noncoherent_domain`` bool and sticky pages bit, or the reviewed
counters) and, on top of it, the flush points it turns off (``changes``) or decides with a
function (``hooks``).  The drivers ask ``env.dv.flush(env, point, pages, default)`` at each flush
point and ``env.dv.coherent(...)`` for what KVM is told; the base's small int (``env.variant``)
is only read for the bookkeeping, never to decide a flush.  User variants are registered with
:func:`memtypes.linux.kvm.variants.register` (the same call as the KVM ones) and the DMA families
list every registered DMA variant.

Flush points (``changes`` keys; hooks ``flush_<point>(env, pages, default) -> bool``, ``pages``
the page names, ``default`` what the base does there):

* ``pin_map``: type1 F@pin_map (vfio_pin_map_dma), iommufd F@fill_domains of IOAS_MAP;
* ``replay``: type1 F@replay (vfio_iommu_replay);
* ``unpin``: type1 F@unpin (vfio_unpin_pages_remote), iommufd F@batch_unpin;
* ``attach_nc``: type1 F@fgsp-pre/F@fgsp-post (attach of a non-coherent domain,
  vfio_test_domain_fgsp), iommufd F@fill_domain (HWPT_ALLOC of a domain over existing areas);
* ``ioas_copy``: iommufd F@fill_domains of IOAS_COPY.

Hook ``kvm_coherent(env, group, default) -> bool``: what vfio_file_enforced_coherent reports to
KVM for ``group`` (a :class:`~memtypes.linux.dma.common.Group`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from memtypes.arch.reason import Reason
from memtypes.errors import InputError

UPSTREAM = 0
V1 = 1
REVIEWED = 2

NAMES = ("vfio-upstream", "vfio-flush-v1", "vfio-flush-reviewed")
ALIASES = {"mainline": UPSTREAM, "upstream": UPSTREAM, "a": UPSTREAM, "b": V1, "c": REVIEWED,
           "v1": V1, "reviewed": REVIEWED}

FLUSH_HELPER = ("", "arch_clean_nonsnoop_dma", "arch_flush_cache_phys")
"""The kernel function FLUSH stands for, per variant (3/5 as posted; renamed in review, 1.7 #4)."""

REASONS = (
    Reason("dma/variant/upstream", "drivers/vfio/vfio_iommu_type1.c, drivers/iommu/iommufd/pages.c "
           "(v6.4-v6.9 era; kernel-vfio.md 1.9)",
           "no CPU cache maintenance for non-coherent domains (series never merged)",
           unverified=True),
    Reason("dma/variant/flush-v1", "<20240507061802.20184-1-yan.y.zhao@intel.com> (v1, 2024-05-07)",
           "flush before the first non-coherent mapping and lazily before unpin, as posted"),
    Reason("dma/variant/flush-reviewed", "kernel-vfio.md 1.8; Alex Williamson "
           "<20240509121049.58238a6f.alex.williamson@redhat.com>, Jason Gunthorpe "
           "<20240509141332.GP4650@nvidia.com>, <20240517170418.GA20229@nvidia.com>",
           "v1 with the agreed review changes (reconstruction; no v2 was posted)", unverified=True),
)


FLUSH_POINTS = ("pin_map", "replay", "unpin", "attach_nc", "ioas_copy")
HOOKS: dict[str, tuple[str, ...]] = {
    **{f"flush_{p}": ("env", "pages", "default") for p in FLUSH_POINTS},
    "kvm_coherent": ("env", "group", "default"),
}
"""DMA decision points a variant may replace, with the parameters the function takes."""
BACKENDS = ("type1", "iommufd")


@dataclass(frozen=True, eq=False)
class DmaVariant:
    """A DMA variant: ``base`` (a built-in name: its bookkeeping), flush points turned off
    (``changes={"unpin": False}``) or decided by functions (``hooks``), the backends and DMA
    kernel eras it applies to (None: every era the families model), and why.  Compared by
    identity (hooks are functions)."""

    name: str
    base: str = "vfio-flush-reviewed"
    changes: Mapping[str, bool] = field(default_factory=dict)
    hooks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    why: Reason | None = None
    backends: tuple[str, ...] = BACKENDS
    kernels: tuple[str, ...] | None = None
    source: str | None = None
    """The file (or entry point) that registered it; None for the built-ins."""

    def __post_init__(self) -> None:
        pts: dict[str, Any] = {}
        for p in FLUSH_POINTS:
            h = self.hooks.get(f"flush_{p}")
            if h is not None:
                pts[p] = h
            elif self.changes.get(p, True) is False:
                pts[p] = False
        object.__setattr__(self, "_points", pts)
        object.__setattr__(self, "_kvm", self.hooks.get("kvm_coherent"))

    @property
    def code(self) -> int:
        """The base's bookkeeping code (UPSTREAM, V1, REVIEWED)."""
        return NAMES.index(self.base)

    def flush(self, env, point: str, pages, default: bool) -> bool:
        """Whether the flush at ``point`` over ``pages`` (indices) happens."""
        h = self._points.get(point)  # type: ignore[attr-defined]
        if h is None:
            return default
        if h is False:
            return False
        return bool(h(env, tuple(env.names[p] for p in pages), default))

    def coherent(self, env, group, default: bool) -> bool:
        h = self._kvm  # type: ignore[attr-defined]
        return default if h is None else bool(h(env, group, default))

    def applies(self, backend: str, kernel: str) -> bool:
        return backend in self.backends and (self.kernels is None or kernel in self.kernels)

    def __reduce__(self):
        # by name: the worker process has loaded the same variants (built-in or from files)
        return (get, (self.name,))


BUILTIN: dict[str, DmaVariant] = {n: DmaVariant(n, base=n, why=r) for n, r in zip(NAMES, REASONS)}
DMA_VARIANTS: dict[str, DmaVariant] = dict(BUILTIN)
"""Every DMA variant by name: the three built-ins, then those registered from files."""


def get(name: str, *, where: str = "--variant") -> DmaVariant:
    """The DMA variant ``name`` (aliases such as ``mainline`` accepted)."""
    if name in DMA_VARIANTS:
        return DMA_VARIANTS[name]
    if name in ALIASES:
        return DMA_VARIANTS[NAMES[ALIASES[name]]]
    raise InputError(f"unknown DMA variant '{name}'", where=where, field="variant",
                     expected=", ".join(("mainline",) + tuple(DMA_VARIANTS)))


def user_variants(backend: str) -> tuple[str, ...]:
    """Names of the registered (non built-in) DMA variants for ``backend``, in registration
    order."""
    return tuple(n for n, v in DMA_VARIANTS.items() if n not in BUILTIN and backend in v.backends)


def variant_code(name: str, *, where: str = "--variant") -> int:
    """``vfio-flush-v1`` -> 1; ``mainline`` -> 0 (a registered variant: its base's code).
    Raises :class:`InputError` otherwise."""
    return get(name, where=where).code
