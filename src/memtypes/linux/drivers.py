"""What each backing's ``mmap()`` produces: the VMA KVM later finds over a memslot.

One function per backing KIND, named after the kernel function that builds the VMA; the table
:data:`KINDS` maps the user-facing names (``--backing`` / ``--remap``, family ``regions``) to
them.  ``mmap(kind, any_uc=...)`` returns a :class:`Backing`.  ``any_uc`` says whether the kernel
has ``VM_ALLOW_ANY_UNCACHED`` (v6.9+); drivers that set it only do so then.  ``hugetlb_mte``:
whether arm64 gives hugetlb mappings VM_MTE_ALLOWED (6.13+); ``nvgrace_huge_fault``: whether
nvgrace-gpu inserts PMD pfns from a huge_fault handler (7.2.13) rather than remap_pfn_range
(6.12.118).  :func:`mmap_for` takes them from a kernel's :class:`~memtypes.linux.kvm.eras.Rules`.

Backings real hosts produce (issue 16): ``anon``, ``hugetlb`` (MAP_HUGETLB or memfd MFD_HUGETLB),
``memfd-private`` / ``memfd-shared`` (``shmem`` is memfd-shared under its older name),
``devzero-private`` (/dev/zero MAP_PRIVATE), ``file-private`` / ``file-shared`` (a regular
page-cache file; ``file`` is the deprecated name of ``file-private``; a tmpfs file is shmem:
use ``memfd-*``), ``pci-sysfs-resource`` / ``pci-sysfs-resource-wc`` (sysfs ``resourceN`` /
``resourceN_wc``), ``vfio-pci-bar`` (a group's device fd) and ``vfio-pci-cdev-bar`` (the same
BAR through the iommufd cdev /dev/vfio/devices/vfioN: the same vfio_pci_core_mmap(), so the same
VMA; the cdev differs only on the DMA side and in what KVM-VFIO is told, linux/dma).

Sources: reference/kernel-kvm.md sections 4 (VM_MTE_ALLOWED), 5.1 (pgprot helpers), 6 (VFIO);
the Debian source trees 6.1.192, 6.12.118, 7.2.13, 7.3.4 (arch/arm64/include/asm/mman.h,
drivers/char/mem.c, drivers/pci/mmap.c, drivers/vfio/pci).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux import mm
from memtypes.linux.mm import (
    DEVICE_CACHEABLE, DEVICE_MMIO, GMEM_RAM, HUGE_PFN, HUGE_PFN_REMAP, HUGE_THP, PMEM, RAM_TAGGED,
    VM_ALLOW_ANY_UNCACHED, VM_HUGETLB, VM_IO, VM_MIXEDMAP, VM_MTE_ALLOWED, VM_PFNMAP, VM_SHARED, Phys, Vma,
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
    swap_backed: bool = False
    """The page ``pin_user_pages(FOLL_LONGTERM | FOLL_WRITE)`` returns is swap-backed (anonymous,
    shmem, or the anonymous copy a private mapping gets on the write pin): what pKVM's
    pkvm_mem_abort() accepts."""
    pin_efault: bool = False
    """``pin_user_pages(FOLL_LONGTERM | FOLL_WRITE)`` refuses the VMA (-EFAULT): VM_IO/VM_PFNMAP,
    or a shared file mapping that needs dirty tracking (mm/gup.c check_vma_flags())."""


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
R_MEMFD_PRIVATE = Reason(
    "mm/mmap-memfd-private", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits() shmem_file() (6.1.192, "
    "6.12.118, 7.3.4); mm/shmem.c",
    "memfd (shmem) mapped MAP_PRIVATE: VM_MTE_ALLOWED (a shmem file), not VM_SHARED, MT_NORMAL; reads map "
    "the shmem page, writes a private anonymous copy (no THP: shmem huge pages are off by default)")
R_HUGETLB_NOMTE = Reason(
    "mm/mmap-hugetlb", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits(): MAP_ANONYMOUS without "
    "MAP_HUGETLB only (6.1.192, 6.12.118); mm/hugetlb.c",
    "MAP_HUGETLB (or a memfd with MFD_HUGETLB): VM_HUGETLB, MT_NORMAL, 2 MiB pages (the default hstate "
    "with 4K pages, and the mmap is always huge-page aligned, so --hva-align does not apply); before 6.13 "
    "no VM_MTE_ALLOWED, so an MTE VM refuses it (6.2+)")
R_HUGETLB_MTE = Reason(
    "mm/mmap-hugetlb-mte", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits(): MAP_HUGETLB and "
    "is_file_hugepages() (7.2.13, 7.3.4); arch/arm64/kvm/mmu.c sanitise_mte_tags() folio_test_hugetlb (7.3.4); "
    "6.13 per reference section 4 (UNVERIFIED release)",
    "MAP_HUGETLB (or a memfd with MFD_HUGETLB): VM_HUGETLB, MT_NORMAL, 2 MiB pages (always huge-page "
    "aligned), and VM_MTE_ALLOWED: KVM tags the whole huge folio through its head page")
R_HUGETLB_SHARED = Reason(
    "mm/mmap-hugetlb-shared", "mm/memfd.c memfd_create(MFD_HUGETLB) -> fs/hugetlbfs; arch/arm64/include/asm/mman.h "
    "arch_calc_vm_flag_bits() is_file_hugepages() (7.2.13, 7.3.4; absent in 6.1.192 and 6.12.118); seen by memtypes "
    "conform: an MTE VM refuses it on 6.1.192 (VM_SHARED, P3)",
    "hugetlbfs memfd MAP_SHARED: VM_SHARED|VM_HUGETLB, MT_NORMAL, 2 MiB pages; VM_MTE_ALLOWED only where hugetlb "
    "has MTE (6.13+)")
R_HUGETLB_PIN = Reason(
    "mm/hugetlb-pin", "arch/arm64/kvm/mmu.c pkvm_mem_abort() folio_test_swapbacked() (7.3.4)",
    "a hugetlb folio is taken as not swap-backed, so a protected VM cannot use it (-EIO); not checked "
    "against mm/hugetlb.c", unverified=True)
R_DEVZERO = Reason(
    "drivers/mmap_zero", "drivers/char/mem.c mmap_zero() (6.1.192) / mmap_zero_prepare() (7.3.4); "
    "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits()",
    "/dev/zero MAP_PRIVATE: made anonymous (vma_set_anonymous, THP possible) but mmap() saw neither "
    "MAP_ANONYMOUS nor a shmem file, so no VM_MTE_ALLOWED: an MTE VM refuses it from 6.2 (5.14-6.1 only "
    "refused VM_SHARED)")
R_FILE_SHARED = Reason(
    "mm/mmap-file-shared", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits() (6.1.192-7.3.4); mm/gup.c "
    "check_vma_flags() writable_file_mapping_allowed() (7.3.4)",
    "regular page-cache file MAP_SHARED: VM_SHARED, no VM_MTE_ALLOWED, MT_NORMAL; a long-term writable pin "
    "of it is refused (-EFAULT: it needs dirty tracking)")
R_FILE_ALIAS = Reason(
    "drivers/file-deprecated", "memtypes backing names, issue 16 (the VMA is mm/mmap-file's: "
    "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits() 6.1.192-7.3.4)", "backing 'file' is the deprecated name of 'file-private' "
    "(a regular file mapped MAP_PRIVATE); use file-private or file-shared")
R_PCI_SYSFS = Reason(
    "pci/pci_mmap_resource_range", "drivers/pci/pci-sysfs.c pci_mmap_resource_uc() -> drivers/pci/mmap.c "
    "pci_mmap_resource_range() (6.1.192, 6.12.118, 7.3.4); arch/arm64 pgprot_device",
    "sysfs resourceN: pgprot_device (MT_DEVICE_nGnRE), io_remap_pfn_range (VM_IO|VM_PFNMAP, PTE leaves), "
    "never VM_ALLOW_ANY_UNCACHED: stage 2 stays Device-nGnRE")
R_PCI_SYSFS_WC = Reason(
    "pci/pci_mmap_resource_range-wc", "drivers/pci/pci-sysfs.c pci_mmap_resource_wc() -> drivers/pci/mmap.c "
    "pci_mmap_resource_range(write_combine) (6.1.192, 6.12.118, 7.3.4); arch/arm64/include/asm/pci.h "
    "arch_can_pci_mmap_wc() = 1; reference/realkernel.md (measured)",
    "sysfs resourceN_wc: pgprot_writecombine (MT_NORMAL_NC) for the VMM, io_remap_pfn_range, no "
    "VM_ALLOW_ANY_UNCACHED: KVM maps it Device-nGnRE at stage 2 (the VMM's WC does not reach the guest)")
R_VFIO_CDEV = Reason(
    "vfio/cdev-mmap", "drivers/vfio/vfio_main.c vfio_device_fops.mmap -> vfio_pci_core_mmap() (7.3.4)",
    "a BAR mmapped through the iommufd cdev (/dev/vfio/devices/vfioN) gets the same VMA as through a group's "
    "device fd: KVM sees no difference (the cdev differs on the DMA side and in KVM-VFIO FILE_ADD)")
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


def _anon(k: "_K") -> Backing:
    return Backing("anon", Vma("anon", VM_MTE_ALLOWED, mm.NORMAL, RAM_TAGGED, HUGE_THP), RAM_TAGGED,
                   reason=R_ANON, swap_backed=True)


def _shmem(k: "_K", kind: str = "shmem") -> Backing:
    return Backing(kind, Vma(kind, VM_SHARED | VM_MTE_ALLOWED, mm.NORMAL, RAM_TAGGED),
                   RAM_TAGGED, reason=R_SHMEM, swap_backed=True)


def _memfd_shared(k: "_K") -> Backing:
    return _shmem(k, "memfd-shared")


def _memfd_private(k: "_K") -> Backing:
    return Backing("memfd-private", Vma("memfd-private", VM_MTE_ALLOWED, mm.NORMAL, RAM_TAGGED),
                   RAM_TAGGED, reason=R_MEMFD_PRIVATE, swap_backed=True)


def _hugetlb(k: "_K") -> Backing:
    flags = VM_HUGETLB | (VM_MTE_ALLOWED if k.hugetlb_mte else 0)
    return Backing("hugetlb", Vma("hugetlb", flags, mm.NORMAL, RAM_TAGGED), RAM_TAGGED,
                   reason=R_HUGETLB_MTE if k.hugetlb_mte else R_HUGETLB_NOMTE, notes=(R_HUGETLB_PIN,))


def _hugetlb_shared(k: "_K") -> Backing:
    # a memfd created with MFD_HUGETLB (hugetlbfs file) mapped MAP_SHARED, as VMMs share guest RAM
    flags = VM_SHARED | VM_HUGETLB | (VM_MTE_ALLOWED if k.hugetlb_mte else 0)
    return Backing("hugetlb-shared", Vma("hugetlb-shared", flags, mm.NORMAL, RAM_TAGGED), RAM_TAGGED,
                   reason=R_HUGETLB_SHARED, notes=(R_HUGETLB_PIN,))


def _mmap_zero_private(k: "_K") -> Backing:
    return Backing("devzero-private", Vma("devzero-private", 0, mm.NORMAL, RAM_TAGGED, HUGE_THP), RAM_TAGGED,
                   reason=R_DEVZERO, swap_backed=True)


def _file(k: "_K", kind: str = "file-private") -> Backing:
    notes = (R_FILE_ALIAS,) if kind == "file" else ()
    return Backing(kind, Vma(kind, 0, mm.NORMAL, RAM_TAGGED), RAM_TAGGED, reason=R_FILE, notes=notes,
                   swap_backed=True)


def _file_alias(k: "_K") -> Backing:
    return _file(k, "file")


def _file_shared(k: "_K") -> Backing:
    return Backing("file-shared", Vma("file-shared", VM_SHARED, mm.NORMAL, RAM_TAGGED), RAM_TAGGED,
                   reason=R_FILE_SHARED, pin_efault=True)


def _mmap_mem(k: "_K") -> Backing:
    return Backing("devmem-ram", Vma("devmem-ram", VM_SHARED | VM_IO | VM_PFNMAP, mm.NORMAL, RAM_TAGGED),
                   RAM_TAGGED, reason=R_DEVMEM, pin_efault=True)


def _pci_mmap_resource_range(k: "_K", wc: bool = False) -> Backing:
    kind = "pci-sysfs-resource-wc" if wc else "pci-sysfs-resource"
    memtype = mm.NORMAL_NC if wc else mm.DEVICE_nGnRE
    return Backing(kind, Vma(kind, VM_SHARED | VM_IO | VM_PFNMAP, memtype, DEVICE_MMIO, HUGE_PFN_REMAP),
                   DEVICE_MMIO, reason=R_PCI_SYSFS_WC if wc else R_PCI_SYSFS, pin_efault=True)


def _pci_mmap_resource_wc(k: "_K") -> Backing:
    return _pci_mmap_resource_range(k, wc=True)


def _vfio_pci_core_mmap(k: "_K", kind: str = "vfio-pci-bar") -> Backing:
    flags = VM_SHARED | VM_IO | VM_PFNMAP | (VM_ALLOW_ANY_UNCACHED if k.any_uc else 0)
    return Backing(kind, Vma(kind, flags, mm.DEVICE_nGnRnE, DEVICE_MMIO, HUGE_PFN),
                   DEVICE_MMIO, reason=R_VFIO_PCI, notes=(R_VFIO_CDEV,) if kind != "vfio-pci-bar" else (),
                   pin_efault=True)


def _vfio_pci_cdev(k: "_K") -> Backing:
    return _vfio_pci_core_mmap(k, "vfio-pci-cdev-bar")


def _vfio_platform_mmap_mmio(k: "_K") -> Backing:
    return Backing("vfio-platform-mmio",
                   Vma("vfio-platform-mmio", VM_SHARED | VM_IO | VM_PFNMAP, mm.DEVICE_nGnRnE, DEVICE_MMIO),
                   DEVICE_MMIO, reason=R_VFIO_PLATFORM, pin_efault=True)


def _nvgrace_huge(k: "_K") -> str:
    return HUGE_PFN if k.nvgrace_huge_fault else HUGE_PFN_REMAP


def _nvgrace_resmem(k: "_K") -> Backing:
    flags = VM_SHARED | VM_IO | VM_PFNMAP | VM_ALLOW_ANY_UNCACHED
    return Backing("nvgrace-resmem", Vma("nvgrace-resmem", flags, mm.NORMAL_NC, DEVICE_CACHEABLE, _nvgrace_huge(k)),
                   DEVICE_CACHEABLE, since=(6, 9), reason=R_NVG_RESMEM, notes=(R_NVG_MIG_BUG,), pin_efault=True)


def _nvgrace_usemem(k: "_K") -> Backing:
    return Backing("nvgrace-usemem",
                   Vma("nvgrace-usemem", VM_SHARED | VM_IO | VM_PFNMAP, mm.NORMAL, DEVICE_CACHEABLE, _nvgrace_huge(k)),
                   DEVICE_CACHEABLE, since=(6, 9), reason=R_NVG_USEMEM, pin_efault=True)


def _dax_mmap(k: "_K") -> Backing:
    return Backing("pmem", Vma("pmem", VM_SHARED, mm.NORMAL, PMEM), PMEM, reason=R_PMEM,
                   notes=(mm.R_PMEM_MAPMEM,))


def _vgic_gicv(k: "_K") -> Backing:
    return Backing("gicv2-gicv", None, DEVICE_MMIO, vgic=True, reason=R_GICV)


def _guest_memfd(k: "_K") -> Backing:
    return Backing("guest-memfd", None, GMEM_RAM, gmem=True, since=(6, 18), reason=R_GMEM)


def _mixedmap_cacheable(k: "_K") -> Backing:
    return Backing("mixedmap-cacheable",
                   Vma("mixedmap-cacheable", VM_SHARED | VM_MIXEDMAP, mm.NORMAL, DEVICE_CACHEABLE),
                   DEVICE_CACHEABLE, reason=R_MIXED_C)


def _mixedmap_uncached(k: "_K") -> Backing:
    flags = VM_SHARED | VM_MIXEDMAP | (VM_ALLOW_ANY_UNCACHED if k.any_uc else 0)
    return Backing("mixedmap-uncached", Vma("mixedmap-uncached", flags, mm.DEVICE_nGnRnE, DEVICE_MMIO),
                   DEVICE_MMIO, reason=R_MIXED_UC)


GMEM_MMAP_VMA = Vma("guest-memfd", VM_SHARED, mm.NORMAL, GMEM_RAM)
"""What ``mmap()`` of a guest_memfd (GUEST_MEMFD_FLAG_MMAP) puts at an hva: the VMA a non-gmem
slot sees when the VMM maps a guest_memfd over it (``--remap guest-memfd``)."""


def _hole(k: "_K") -> Backing:
    return Backing("hole", None, None, reason=R_HOLE)


_BUILDERS = {
    "anon": _anon,
    "shmem": _shmem,
    "file": _file_alias,
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
    "hugetlb": _hugetlb,
    "hugetlb-shared": _hugetlb_shared,
    "memfd-private": _memfd_private,
    "memfd-shared": _memfd_shared,
    "devzero-private": _mmap_zero_private,
    "file-private": _file,
    "file-shared": _file_shared,
    "pci-sysfs-resource": _pci_mmap_resource_range,
    "pci-sysfs-resource-wc": _pci_mmap_resource_wc,
    "vfio-pci-cdev-bar": _vfio_pci_cdev,
}

DEPRECATED: dict[str, str] = {"file": "file-private"}
"""Old KIND names still accepted, and what replaced them."""

KINDS: tuple[str, ...] = tuple(_BUILDERS)
"""Every backing KIND, in a fixed order (``hole`` = munmap, usable with ``--remap``)."""


def check_kind(kind: str, *, where: str = "--backing") -> str:
    if kind not in _BUILDERS:
        raise InputError(f"unknown backing '{kind}'", where=where, expected=", ".join(KINDS))
    return kind


@dataclass(frozen=True, slots=True)
class _K:
    """What a builder needs to know about the kernel."""

    any_uc: bool
    hugetlb_mte: bool
    nvgrace_huge_fault: bool


@lru_cache(maxsize=None)
def mmap(kind: str, *, any_uc: bool, hugetlb_mte: bool = True, nvgrace_huge_fault: bool = True) -> Backing:
    """The Backing a KIND produces on a kernel that has (``any_uc``) VM_ALLOW_ANY_UNCACHED or not,
    gives hugetlb VM_MTE_ALLOWED (``hugetlb_mte``) or not, and whose nvgrace-gpu driver inserts
    huge pfns on fault (``nvgrace_huge_fault``) or fills the VMA with remap_pfn_range()."""
    return _BUILDERS[check_kind(kind)](_K(any_uc, hugetlb_mte, nvgrace_huge_fault))


def mmap_for(kind: str, rules) -> Backing:
    """:func:`mmap` for a kernel's Rules (``normal_nc``, ``hugetlb_mte``, ``pfnmap_host_leaf``)."""
    return mmap(kind, any_uc=rules.normal_nc, hugetlb_mte=rules.hugetlb_mte,
                nvgrace_huge_fault=rules.nvgrace_huge_fault)
