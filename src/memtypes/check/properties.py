"""The property catalogue: the named invariants ``memtypes check`` proves or refutes.

Names are stable (they appear in reports and JSON and are the ``always`` property names a
family's model must use).  Each entry says when it holds, why it matters, and the mail thread
it comes from (DESIGN.md "Properties"; the seeds in ``/work/shared/seeds`` and
``reference/kernel-kvm.md`` / ``kernel-vfio.md``).  The order of :data:`CATALOGUE` is the column
order of every report.
"""

from __future__ import annotations

from dataclasses import dataclass

from memtypes.errors import InputError


@dataclass(frozen=True)
class CatalogueProperty:
    name: str
    short: str
    """A compact column header (at most 6 characters)."""
    holds_when: str
    rationale: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "short": self.short, "holds_when": self.holds_when,
                "rationale": self.rationale, "source": self.source}


_NC_THREAD = ('"KVM: arm64: Allow the VM to select DEVICE_* and NORMAL_NC for IO memory" '
              "(Lorenzo Pieralisi, Will Deacon, Catalin Marinas, Oct 2023; v9 applied Feb 2024)")
_WC_PATCH = ('"[PATCH v8 2/4] mm: introduce new flag to indicate wc safe" (Ankit Agrawal, '
             "Feb 2024: VM_ALLOW_ANY_UNCACHED)")
_CPFN = ('"KVM: arm64: Allow cacheable stage 2 mapping using VMA flags" v3 (Mar 2025, Marc '
         'Zyngier, Sean Christopherson, Jason Gunthorpe, Catalin Marinas) and "KVM: arm64: Map GPU '
         'device memory as cacheable" v7-v10 (2025, merged for 6.17)')
_MTE = ('"[RFC PATCH 0/2] MTE support for KVM guest" (Steven Price, Catalin Marinas, Jun 2020) '
        "through v13 (merged for 5.14); mte-map-shared (6.2)")
_VFIO_FLUSH = ('"vfio/type1: Flush CPU caches on DMA pages in non-coherent domains" '
               "(Yan Zhao, Alex Williamson, Jason Gunthorpe, May 2024)")

CATALOGUE: tuple[CatalogueProperty, ...] = (
    CatalogueProperty(
        "mmio-never-cacheable", "mmio",
        "no guest-reachable stage-2 mapping makes MMIO (device registers) Normal cacheable",
        "A cacheable mapping of device registers allows speculative reads, merged and reordered "
        "writes and line fills that devices cannot tolerate; Normal-NC was the most the 2023 "
        "thread would allow for MMIO, and only where the driver vouches for it.",
        _NC_THREAD),
    CatalogueProperty(
        "nc-only-where-allowed", "nc",
        "stage-2 Normal-NC only where the driver marked the VMA VM_ALLOW_ANY_UNCACHED",
        "Some MMIO (the GICv2 virtual CPU interface, for one) raises uncontained faults when "
        "accessed as Normal-NC; the driver is the only party that knows, so KVM may relax "
        "Device-nGnRE to Normal-NC only on VMAs the driver flagged.",
        _WC_PATCH),
    CatalogueProperty(
        "cacheable-needs-cmo-path", "cmo",
        "memory without a kernel linear mapping is mapped cacheable at stage 2 only with FWB "
        "(and DIC)",
        "KVM cleans and invalidates guest pages through the kernel's linear map; PFNMAP memory "
        "outside it cannot be maintained, so a cacheable stage-2 mapping is safe only when FWB "
        "makes stage 2 force the attributes (and DIC removes the I-cache maintenance).",
        _CPFN),
    CatalogueProperty(
        "no-cacheability-mismatch", "mism",
        "where the guest's effective cacheability of a page differs from the host's own mapping "
        "of it, the kernel can and does keep them coherent (cache maintenance through the linear "
        "map, or FWB forcing one cacheable view)",
        "Mismatched attributes on the same physical page lose coherency (Arm ARM B2.15); an "
        "unmanaged mismatch, such as cacheable PFNMAP memory mapped Device for the guest, is "
        "what the series' 'Block cacheable PFNMAP mapping' patch closes.",
        _CPFN + ' ("Block cacheable PFNMAP mapping")'),
    CatalogueProperty(
        "tags-only-on-tag-storage", "tstor",
        "a guest can reach tagged accesses only on memory that has tag storage",
        "Tagged accesses to memory without tag storage are unpredictable or fault; KVM must "
        "refuse MTE memslots (or faults) on VMAs that are not VM_MTE_ALLOWED.",
        _MTE),
    CatalogueProperty(
        "tags-sanitised", "tsan",
        "a guest never reads allocation tags it did not write (previous owner's tags)",
        "Tags left by a previous owner of a page leak information across VMs and processes; the "
        "kernel must zero (sanitise) tags when a page is first mapped tagged for a guest.",
        _MTE),
    CatalogueProperty(
        "tags-survive-save-restore", "tsave",
        "tags saved by the VMM equal the guest's tags after restore",
        "Migration and snapshot must carry the tags (KVM_ARM_MTE_COPY_TAGS); a restore that loses "
        "or resets them changes guest-visible memory.",
        _MTE),
    CatalogueProperty(
        "migration-fails-early", "mfail",
        "a VM that cannot run on the destination is refused before it resumes there, never by a "
        "fault after",
        "A VMM must be able to check capabilities up front; a VM that resumes and then faults on "
        "its first device access is lost.",
        _CPFN),
    CatalogueProperty(
        "memtype-stable-across-migration", "mstab",
        "each guest page keeps its memory type class across migration, or migration is refused",
        "A guest driver that relies on cacheable (or write-combining) device memory breaks "
        "silently if the destination maps the same region with another type.",
        _CPFN),
    CatalogueProperty(
        "device-reads-owner-data", "dread",
        "every value a non-snooping device reads was written by the page's current owner or "
        "handed over by the kernel (the zero fill), never a previous owner's data",
        "A non-coherent device reads memory behind the CPU caches; unless the kernel flushes "
        "pages when it hands them to a VFIO user, the device can read stale data of the page's "
        "previous owner. A guest's own unflushed writes are the guest's business.",
        _VFIO_FLUSH),
    CatalogueProperty(
        "host-consistent-after-unpin", "unpin",
        "after unpin, host reads of a page are stable (no stale clean line above newer memory)",
        "A non-snooping device can write memory under a clean cached line; without an invalidate "
        "at unpin, the host later reads the stale line, then the new data after an eviction.",
        _VFIO_FLUSH),
    CatalogueProperty(
        "coherency-reported", "ccrep",
        "VFIO_DMA_CC_IOMMU and KVM's non-coherent DMA registration match the domains actually "
        "attached",
        "KVM decides whether to honour guest PAT and emulate WBINVD from what VFIO reports; a "
        "stale or wrong report leaves non-coherent DMA without the guest's cache maintenance.",
        _VFIO_FLUSH),
)

NAMES: tuple[str, ...] = tuple(p.name for p in CATALOGUE)
_BY_NAME = {p.name: p for p in CATALOGUE}


_BY_SHORT = {p.short: p for p in CATALOGUE}


def get(name: str, *, where: str = "--property") -> CatalogueProperty:
    """A property by its name or by the short column name the matrix shows (``mmio``, ``tsan``)."""
    try:
        return _BY_NAME.get(name) or _BY_SHORT[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown property '{name}'", where=where,
                         expected="a name or short column name: " + ", ".join(
                             f"{p.name} ({p.short})" for p in CATALOGUE)) from None


def order(name: str) -> int:
    """Catalogue position (names outside the catalogue sort after it)."""
    return NAMES.index(name) if name in _BY_NAME else len(NAMES)
