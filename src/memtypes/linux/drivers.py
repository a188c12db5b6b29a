"""What each backing's ``mmap()`` produces: the VMA KVM later finds over a memslot.

One function per backing KIND, named after the kernel function that builds the VMA; the table
:data:`KINDS` maps the user-facing names (``--backing`` / ``--remap``, family ``regions``) to
them.  ``mmap(kind, any_uc=...)`` returns a :class:`Backing`.  ``any_uc`` says whether the kernel
has ``VM_ALLOW_ANY_UNCACHED`` (v6.9+); drivers that set it only do so then.

Sources: reference/kernel-kvm.md sections 4 (VM_MTE_ALLOWED), 5.1 (pgprot helpers), 6 (VFIO).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux import mm
from memtypes.linux.mm import (
    DEVICE_CACHEABLE, DEVICE_MMIO, GMEM_RAM, HUGE_PFN, HUGE_THP, PMEM, RAM_TAGGED,
    VM_ALLOW_ANY_UNCACHED, VM_IO, VM_MIXEDMAP, VM_MTE_ALLOWED, VM_PFNMAP, VM_SHARED, Phys, Vma,
)


@dataclass(frozen=True, slots=True)
class Backing:
    """What a KIND puts over a memslot's range.

    ``vma`` is None when nothing is mapped at the slot's userspace address (a hole, a
    guest_memfd slot whose fd is not mmapped there, or the vgic's GICV frame).  ``gmem``: the
    memslot is bound to a guest_memfd.  ``vgic``: not a memslot at all; the vgic maps it with
    ``kvm_phys_addr_ioremap()``.  ``phys``: the memory behind it (for properties)."""

    kind: str
    vma: Vma | None
    phys: Phys | None
    gmem: bool = False
    vgic: bool = False
    since: tuple[int, int] = (0, 0)
    reason: Reason | None = None
    notes: tuple[Reason, ...] = ()
    """Modelling assumptions about this backing (e.g. UNVERIFIED facts about its PFNs)."""


# --- reasons ------------------------------------------------------------------------------------
R_ANON = Reason("mm/mmap-anon", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits() (M-mte62)",
                "MAP_ANONYMOUS gets VM_MTE_ALLOWED; private, default pgprot MT_NORMAL; THP possible")
R_SHMEM = Reason("mm/mmap-shmem", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits(); "
                 "mm/shmem.c (M-mte62); mm/shmem.c shmem_huge = SHMEM_HUGE_NEVER by default (6.1.192, "
                 "6.12.118; 7.2/7.3 SHMEM_HUGE_DEFAULT from Kconfig, NEVER unless configured); seen by "
                 "memtypes conform on 6.12.118: stage 2 maps shared anonymous, memfd and tmpfs pages at PAGE",
                 "memfd/shmem MAP_SHARED: RAM-based file, VM_MTE_ALLOWED, VM_SHARED, MT_NORMAL; no huge "
                 "pages unless shmem_enabled/huge= says so, so no THP block at stage 2")
R_FILE = Reason("mm/mmap-file", "arch/arm64/include/asm/mman.h (M-mte62); TV7",
                "regular file MAP_PRIVATE: page-cache RAM, no VM_MTE_ALLOWED (not RAM-based)")
R_DEVMEM = Reason("drivers/mmap_mem", "drivers/char/mem.c mmap_mem(); arch/arm64/mm/mmu.c "
                  "phys_mem_access_prot() (unchanged v5.x-7.1 as far as modelled; not in the references)",
                  "/dev/mem over RAM: remap_pfn_range (VM_IO|VM_PFNMAP), MAP_SHARED, cacheable "
                  "pgprot because the PFN is linear-map memory")
R_VFIO_PCI = Reason("vfio/vfio_pci_core_mmap",
                    "drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_mmap() (S-vfio); a39d3a966a09 v6.9",
                    "vfio-pci BAR: pgprot_noncached (DEVICE_nGnRnE), VM_IO|VM_PFNMAP|VM_SHARED, plus "
                    "VM_ALLOW_ANY_UNCACHED from v6.9; PMD/PUD pfns via huge_fault")
R_VFIO_PLATFORM = Reason("vfio/vfio_platform_mmap_mmio",
                         "drivers/vfio/platform/vfio_platform_common.c vfio_platform_mmap_mmio() (M-nc)",
                         "vfio-platform MMIO: pgprot_noncached + remap_pfn_range, never "
                         "VM_ALLOW_ANY_UNCACHED (platform devices not audited for uncontained errors)")
R_NVG_RESMEM = Reason("vfio/nvgrace_gpu_mmap/resmem",
                      "drivers/vfio/pci/nvgrace-gpu/main.c nvgrace_gpu_mmap() v6.9 (81617c17bf58, S-nvg)",
                      "nvgrace-gpu resmem: pgprot_writecombine (NORMAL_NC) + VM_ALLOW_ANY_UNCACHED, "
                      "VM_IO|VM_PFNMAP; GPU memory without a linear map")
R_NVG_USEMEM = Reason("vfio/nvgrace_gpu_mmap/usemem",
                      "drivers/vfio/pci/nvgrace-gpu/main.c nvgrace_gpu_mmap() v6.9 (S-nvg)",
                      "nvgrace-gpu usemem: default cacheable pgprot (MT_NORMAL), VM_IO|VM_PFNMAP, no "
                      "VM_ALLOW_ANY_UNCACHED; coherent GPU HBM without a linear map or tag storage")
R_PMEM = Reason("mm/mmap-dax", "fs/dax.c, drivers/dax/device.c dax_mmap() (v5.x-7.1; not in the references)",
                "pmem (DAX) MAP_SHARED: cacheable MT_NORMAL, ZONE_DEVICE pages, not PFNMAP, no "
                "VM_MTE_ALLOWED, no tag storage")
R_GICV = Reason("kvm/vgic_v2_map_resources",
                "arch/arm64/kvm/vgic/vgic-v2.c vgic_v2_map_resources() -> kvm_phys_addr_ioremap() "
                "(all versions; S-6.17, M-nc Dec 2023)",
                "the GICv2 GICV frame is not a memslot: the vgic maps it at stage 2 itself")
R_GMEM = Reason("kvm/guest_memfd", "virt/kvm/guest_memfd.c; KVM_CAP_GUEST_MEMFD_FLAGS (244) v6.18 (M-gmem)",
                "guest_memfd slot: pages come from the gmem inode; nothing is mmapped at the slot's "
                "userspace address (TV26)")
R_MIXED_C = Reason("mm/vm_insert_mixed-cacheable", "mm/memory.c vmf_insert_mixed(); arch/arm64/kvm/mmu.c "
                   "v6.17 (S-6.17: MIXEDMAP caught at fault time, not by P4)",
                   "a VM_MIXEDMAP driver mapping cacheable (MT_NORMAL) device memory without a linear map")
R_MIXED_UC = Reason("mm/vm_insert_mixed-uncached", "mm/memory.c vmf_insert_mixed(); VM_ALLOW_ANY_UNCACHED "
                    "v6.9 (5c656fcdd6c6); TV20",
                    "a VM_MIXEDMAP driver mapping MMIO uncached (pgprot_noncached), with "
                    "VM_ALLOW_ANY_UNCACHED where the kernel has it (v6.9+)")
R_GMEM_MMAP = Reason("mm/guest_memfd-mmap", "virt/kvm/guest_memfd.c kvm_gmem_mmap() v6.18 (GUEST_MEMFD_FLAG_MMAP)",
                     "a guest_memfd mmapped at an hva (not bound to the slot): shared, cacheable, no "
                     "VM_MTE_ALLOWED (not shmem)")
R_HOLE = Reason("mm/munmap", "mm/mmap.c do_munmap() (any version; KVM side: vma_lookup() S-6.17)",
                "nothing mapped at the slot's userspace range")
R_NVG_MIG_BUG = Reason("vfio/nvgrace_gpu/has_mig_hw_bug",
                       "drivers/vfio/pci/nvgrace-gpu/main.c nvgrace_gpu_has_mig_hw_bug() v6.9+ (S-nvg)",
                       "resmem exists only on GPUs with the MIG hardware bug; whether newer GPUs (e.g. "
                       "Blackwell) lack it, and so have no resmem BAR, is not verified", unverified=True)


def _anon(any_uc: bool) -> Backing:
    return Backing("anon", Vma("anon", VM_MTE_ALLOWED, mm.NORMAL, RAM_TAGGED, HUGE_THP), RAM_TAGGED,
                   reason=R_ANON)


def _shmem(any_uc: bool) -> Backing:
    return Backing("shmem", Vma("shmem", VM_SHARED | VM_MTE_ALLOWED, mm.NORMAL, RAM_TAGGED),
                   RAM_TAGGED, reason=R_SHMEM)


def _file(any_uc: bool) -> Backing:
    return Backing("file", Vma("file", 0, mm.NORMAL, RAM_TAGGED), RAM_TAGGED, reason=R_FILE)


def _mmap_mem(any_uc: bool) -> Backing:
    return Backing("devmem-ram", Vma("devmem-ram", VM_SHARED | VM_IO | VM_PFNMAP, mm.NORMAL, RAM_TAGGED),
                   RAM_TAGGED, reason=R_DEVMEM)


def _vfio_pci_core_mmap(any_uc: bool) -> Backing:
    flags = VM_SHARED | VM_IO | VM_PFNMAP | (VM_ALLOW_ANY_UNCACHED if any_uc else 0)
    return Backing("vfio-pci-bar", Vma("vfio-pci-bar", flags, mm.DEVICE_nGnRnE, DEVICE_MMIO, HUGE_PFN),
                   DEVICE_MMIO, reason=R_VFIO_PCI)


def _vfio_platform_mmap_mmio(any_uc: bool) -> Backing:
    return Backing("vfio-platform-mmio",
                   Vma("vfio-platform-mmio", VM_SHARED | VM_IO | VM_PFNMAP, mm.DEVICE_nGnRnE, DEVICE_MMIO),
                   DEVICE_MMIO, reason=R_VFIO_PLATFORM)


def _nvgrace_resmem(any_uc: bool) -> Backing:
    flags = VM_SHARED | VM_IO | VM_PFNMAP | VM_ALLOW_ANY_UNCACHED
    return Backing("nvgrace-resmem", Vma("nvgrace-resmem", flags, mm.NORMAL_NC, DEVICE_CACHEABLE, HUGE_PFN),
                   DEVICE_CACHEABLE, since=(6, 9), reason=R_NVG_RESMEM, notes=(R_NVG_MIG_BUG,))


def _nvgrace_usemem(any_uc: bool) -> Backing:
    return Backing("nvgrace-usemem",
                   Vma("nvgrace-usemem", VM_SHARED | VM_IO | VM_PFNMAP, mm.NORMAL, DEVICE_CACHEABLE, HUGE_PFN),
                   DEVICE_CACHEABLE, since=(6, 9), reason=R_NVG_USEMEM)


def _dax_mmap(any_uc: bool) -> Backing:
    return Backing("pmem", Vma("pmem", VM_SHARED, mm.NORMAL, PMEM), PMEM, reason=R_PMEM,
                   notes=(mm.R_PMEM_MAPMEM,))


def _vgic_gicv(any_uc: bool) -> Backing:
    return Backing("gicv2-gicv", None, DEVICE_MMIO, vgic=True, reason=R_GICV)


def _guest_memfd(any_uc: bool) -> Backing:
    return Backing("guest-memfd", None, GMEM_RAM, gmem=True, since=(6, 18), reason=R_GMEM)


def _mixedmap_cacheable(any_uc: bool) -> Backing:
    return Backing("mixedmap-cacheable",
                   Vma("mixedmap-cacheable", VM_SHARED | VM_MIXEDMAP, mm.NORMAL, DEVICE_CACHEABLE),
                   DEVICE_CACHEABLE, reason=R_MIXED_C)


def _mixedmap_uncached(any_uc: bool) -> Backing:
    flags = VM_SHARED | VM_MIXEDMAP | (VM_ALLOW_ANY_UNCACHED if any_uc else 0)
    return Backing("mixedmap-uncached", Vma("mixedmap-uncached", flags, mm.DEVICE_nGnRnE, DEVICE_MMIO),
                   DEVICE_MMIO, reason=R_MIXED_UC)


GMEM_MMAP_VMA = Vma("guest-memfd", VM_SHARED, mm.NORMAL, GMEM_RAM)
"""What ``mmap()`` of a guest_memfd (GUEST_MEMFD_FLAG_MMAP) puts at an hva: the VMA a non-gmem
slot sees when the VMM maps a guest_memfd over it (``--remap guest-memfd``)."""


def _hole(any_uc: bool) -> Backing:
    return Backing("hole", None, None, reason=R_HOLE)


_BUILDERS = {
    "anon": _anon,
    "shmem": _shmem,
    "file": _file,
    "devmem-ram": _mmap_mem,
    "vfio-pci-bar": _vfio_pci_core_mmap,
    "vfio-platform-mmio": _vfio_platform_mmap_mmio,
    "nvgrace-resmem": _nvgrace_resmem,
    "nvgrace-usemem": _nvgrace_usemem,
    "pmem": _dax_mmap,
    "gicv2-gicv": _vgic_gicv,
    "guest-memfd": _guest_memfd,
    "mixedmap-cacheable": _mixedmap_cacheable,
    "mixedmap-uncached": _mixedmap_uncached,
    "hole": _hole,
}

KINDS: tuple[str, ...] = tuple(_BUILDERS)
"""Every backing KIND, in a fixed order (``hole`` = munmap, usable with ``--remap``)."""


def check_kind(kind: str, *, where: str = "--backing") -> str:
    if kind not in _BUILDERS:
        raise InputError(f"unknown backing '{kind}'", where=where, expected=", ".join(KINDS))
    return kind


@lru_cache(maxsize=None)
def mmap(kind: str, *, any_uc: bool) -> Backing:
    """The Backing a KIND produces on a kernel that has (``any_uc``) VM_ALLOW_ANY_UNCACHED or not."""
    return _BUILDERS[check_kind(kind)](any_uc)
