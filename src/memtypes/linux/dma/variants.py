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

Variants are small ints inside the model (no string compare in a step).
"""

from __future__ import annotations

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


def variant_code(name: str, *, where: str = "--variant") -> int:
    """``vfio-flush-v1`` -> 1; ``mainline`` -> 0.  Raises :class:`InputError` otherwise."""
    if name in NAMES:
        return NAMES.index(name)
    if name in ALIASES:
        return ALIASES[name]
    raise InputError(f"unknown DMA variant '{name}'", where=where, field="variant",
                     expected=", ".join(("mainline",) + NAMES))
