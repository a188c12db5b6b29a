"""Linux mm as KVM sees it: VMA flags, the pgprot memory type, and what backs a VMA.

A :class:`Vma` is the part of ``struct vm_area_struct`` that decides a guest page's stage-2
mapping (reference/kernel-kvm.md section 9, "Inputs"): ``vm_flags`` bits, the memory type of
``vm_page_prot`` (arm64 AttrIndx, by name) and the physical memory behind it (:class:`Phys`),
which stands for what KVM learns from the PFN (``pfn_is_map_memory``, ``pfn_valid``,
``pfn_to_online_page``) and what the hardware has (tag storage, device registers).

All values are frozen, slotted and hashable so the KVM decision functions can be memoised.
"""

from __future__ import annotations

from dataclasses import dataclass

from memtypes.arch.reason import Reason

# --- vm_flags bits (include/linux/mm.h; arm64 arch bits) ---------------------------------------
VM_SHARED = 0x00000008
VM_PFNMAP = 0x00000400
VM_IO = 0x00004000
VM_HUGETLB = 0x00400000
VM_MIXEDMAP = 0x10000000
VM_MTE = 1 << 32                   # arm64 VM_HIGH_ARCH_0: PROT_MTE mapping
VM_MTE_ALLOWED = 1 << 33           # arm64 VM_HIGH_ARCH_1: anonymous or RAM-based file
VM_ALLOW_ANY_UNCACHED = 1 << 39    # v6.9 (5c656fcdd6c6), 64-bit only

FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (VM_SHARED, "VM_SHARED"), (VM_PFNMAP, "VM_PFNMAP"), (VM_IO, "VM_IO"),
    (VM_HUGETLB, "VM_HUGETLB"), (VM_MIXEDMAP, "VM_MIXEDMAP"), (VM_MTE, "VM_MTE"),
    (VM_MTE_ALLOWED, "VM_MTE_ALLOWED"), (VM_ALLOW_ANY_UNCACHED, "VM_ALLOW_ANY_UNCACHED"),
)


def flag_names(flags: int) -> tuple[str, ...]:
    return tuple(n for bit, n in FLAG_NAMES if flags & bit)


# --- pgprot memory types (arm64 MAIR AttrIndx, by name; reference section 5.1) -----------------
NORMAL = "NORMAL"                  # MT_NORMAL: PAGE_SHARED default
NORMAL_TAGGED = "NORMAL_TAGGED"    # MT_NORMAL_TAGGED: PROT_MTE
NORMAL_NC = "NORMAL_NC"            # MT_NORMAL_NC: pgprot_writecombine
DEVICE_nGnRnE = "DEVICE_nGnRnE"    # MT_DEVICE_nGnRnE: pgprot_noncached
DEVICE_nGnRE = "DEVICE_nGnRE"      # MT_DEVICE_nGnRE: pgprot_device
MEMTYPES = (NORMAL, NORMAL_TAGGED, NORMAL_NC, DEVICE_nGnRnE, DEVICE_nGnRE)

R_VMA_CACHEABLE = Reason(
    "kvm/kvm_vma_is_cacheable", "arch/arm64/kvm/mmu.c kvm_vma_is_cacheable() v6.17 (M-cpfn)",
    "a VMA is cacheable unless its pgprot AttrIndx is MT_NORMAL_NC, MT_DEVICE_nGnRnE or "
    "MT_DEVICE_nGnRE (MT_NORMAL and MT_NORMAL_TAGGED count as cacheable)")


def memtype_is_cacheable(memtype: str) -> bool:
    """``kvm_vma_is_cacheable()`` on the pgprot memory type (see :data:`R_VMA_CACHEABLE`)."""
    return memtype == NORMAL or memtype == NORMAL_TAGGED


# --- what backs a VMA ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Phys:
    """The physical memory behind a VMA, as far as KVM can tell from its PFNs.

    ``map_memory``: ``pfn_is_map_memory()``: memblock memory in the kernel linear map (so KVM
    can do cache maintenance through ``phys_to_virt``).  ``pfn_valid``: has a ``struct page``.
    ``online``: ``pfn_to_online_page()`` succeeds.  ``tag_storage``: MTE allocation tags exist
    for it (on an MTE host).  ``mmio``: device registers (side effects; must never be cacheable).
    ``cacheable_ok``: the memory may be accessed cacheable (RAM, pmem, coherent device memory).
    ``linear``: the kernel has a linear-map (kernel VA) alias, so KVM's CMOs through
    ``phys_to_virt`` work (true for memblock RAM and for ZONE_DEVICE pmem, false for PFNMAP
    device memory).
    """

    name: str
    map_memory: bool
    pfn_valid: bool
    online: bool
    tag_storage: bool
    mmio: bool
    cacheable_ok: bool
    linear: bool = False


RAM_TAGGED = Phys("ram", True, True, True, True, False, True, True)
"""Linear-map RAM; on an MTE host all of it has tag storage."""
RAM_UNTAGGED = Phys("ram-notags", True, True, True, False, False, True, True)
"""Linear-map RAM without tag storage (not produced by any built-in backing; for variants)."""
DEVICE_MMIO = Phys("mmio", False, False, False, False, True, False)
"""Device registers (a PCI BAR, a platform device, the GICv2 GICV frame)."""
DEVICE_CACHEABLE = Phys("device-mem", False, False, False, False, False, True)
"""Cacheable, coherent device memory without a linear map (Grace Hopper GPU HBM)."""
PMEM = Phys("pmem", False, True, False, False, False, True, True)
"""Persistent memory (ZONE_DEVICE via memremap_pages): has struct pages, is not memblock
memory and is not an online page; no tag storage.  (See R_PMEM_MAPMEM.)"""
GMEM_RAM = Phys("gmem", True, True, True, True, False, True, True)
"""guest_memfd pages: ordinary RAM owned by the guest_memfd inode."""

R_PMEM_MAPMEM = Reason(
    "mm/pmem-not-map-memory", "mm/memremap.c pagemap_range(); arch/arm64/mm/init.c "
    "pfn_is_map_memory() = memblock_is_map_memory() believed v5.14 (\"arm64: decouple check whether pfn is in "
    "linear map from pfn_valid()\", M. Rapoport, Apr 2021); Catalin Marinas on MTE v10 (Apr 2021): "
    "pfn_valid() is true for ZONE_DEVICE pmem",
    "pmem (ZONE_DEVICE) is linear-mapped by memremap_pages but never added to memblock, so "
    "pfn_is_map_memory() is false while pfn_valid() is true; the model assumes this",
    unverified=True)

PAGE = "PAGE"
PMD = "PMD"

# huge-page capability of a backing
HUGE_NONE = "none"
HUGE_THP = "thp"          # transparent huge pages possible (anonymous, shmem)
HUGE_PFN = "pfn-block"    # a large PFNMAP whose driver inserts PMD/PUD pfns when aligned (huge_fault:
                          # vfio-pci 6.12+, nvgrace-gpu in 7.2.13)
HUGE_PFN_REMAP = "pfn-remap"  # a large PFNMAP filled with PTEs (remap_pfn_range): only the pre-7.2
                              # vm_pgoff sizing can make it a stage-2 block

# where the VMM's mapping of a memslot lands (``explain --hva-align``): the userspace address's
# alignment, with the memslot's guest address 1 GiB-aligned
HVA_4K = "4K"
HVA_2M = "2M"
HVA_1G = "1G"
HVA_ALIGNS = (HVA_4K, HVA_2M, HVA_1G)


@dataclass(frozen=True, slots=True)
class Vma:
    """One VMA over (part of) a memslot's userspace range."""

    kind: str                 # the backing KIND that produced it (drivers.KINDS)
    flags: int
    memtype: str
    phys: Phys
    huge: str = HUGE_NONE
    writable: bool = True

    @property
    def pfnmap(self) -> bool:
        return bool(self.flags & VM_PFNMAP)

    @property
    def mixedmap(self) -> bool:
        return bool(self.flags & VM_MIXEDMAP)

    @property
    def shared(self) -> bool:
        return bool(self.flags & VM_SHARED)

    @property
    def mte_allowed(self) -> bool:
        return bool(self.flags & VM_MTE_ALLOWED)

    @property
    def allow_any_uc(self) -> bool:
        return bool(self.flags & VM_ALLOW_ANY_UNCACHED)

    @property
    def hugetlb(self) -> bool:
        return bool(self.flags & VM_HUGETLB)

    @property
    def cacheable(self) -> bool:
        return memtype_is_cacheable(self.memtype)

    def describe(self) -> str:
        return f"{self.kind}: {'|'.join(flag_names(self.flags)) or '-'} {self.memtype} on {self.phys.name}"
