"""``user_mem_abort()``: the stage-2 fault path for memslots backed by a userspace VMA.

Read top to bottom like arch/arm64/kvm/mmu.c: each branch appends the module-level
:class:`Reason` beside it.  Era differences are switches of :class:`Rules` (eras.py); see
reference/kernel-kvm.md sections 2.1 (skeleton), 2.2 (device decision and attribute by era, error
order), 2.4 (return codes), 2.5 (NVIDIA vendor variant), 4 (MTE), 5 (encodings, CMOs).

Inputs are hashable and the function is memoised: call it freely from model-checking loops.
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux import mm
from memtypes.linux.kvm import eras
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import (
    EFAULT, EINVAL, KVM_MEM_ENABLE_CACHEABLE_PFNMAP, S2_DEVICE, S2_NC, S2_NORMAL, Fault, FaultResult, Slot,
    Vm,
)
from memtypes.linux.kvm.pgtable import R_ENC, leaf_cmo, stage2_memattr
from memtypes.linux.mm import PAGE, PMD, Vma

WHERE = "user_mem_abort"
_SRC = "arch/arm64/kvm/mmu.c user_mem_abort()"

# --- entry checks ---------------------------------------------------------------------------------
R_PERM_READ = Reason("kvm/user_mem_abort/perm-read", f"{_SRC} entry (S-6.6, S-6.17, S-7.0; read in 6.1.192 "
                     "and 6.12.118)",
                     "permission fault that is neither write nor exec: \"Unexpected L2 read "
                     "permission error\", -EFAULT")
R_PERM_READ_RELAX = Reason("kvm/user_mem_abort/perm-read-relax", "arch/arm64/kvm/mmu.c kvm_handle_guest_abort() "
                           "VM_WARN_ON_ONCE, user_mem_abort(), kvm_s2_fault_map() 7.2.13 and 7.3.4",
                           "7.2+: a permission fault that is neither write nor exec is no longer refused: the "
                           "leaf's permissions are relaxed to what the fault computes (R, W and X by the usual "
                           "rules)")
R_NO_VMA = Reason("kvm/user_mem_abort/no-vma", f"{_SRC} vma_lookup() (S-6.6, S-6.17)",
                  "no VMA at the faulting hva (\"Failed to find VMA\"): -EFAULT")
# --- mapping size -----------------------------------------------------------------------------------
R_LOGGING_PTE = Reason("kvm/user_mem_abort/logging-force-pte", f"{_SRC} memslot_is_logging (S-6.17)",
                       "dirty logging: mapped at PAGE_SIZE (force_pte)")
R_HUGETLB = Reason("kvm/get_vma_page_shift/hugetlb", "arch/arm64/kvm/mmu.c get_vma_page_shift() v5.14+ (S-6.6, S-6.17)",
                   "hugetlb VMA: mapped with its huge page size")
R_PFNMAP_PTE_OLD = Reason("kvm/user_mem_abort/pfnmap-force-pte", f"{_SRC} v5.8 (S-5.8)",
                          "<=5.13: VM_PFNMAP always mapped at PAGE_SIZE (force_pte)")
R_PFNMAP_BLOCK = Reason("kvm/get_vma_page_shift/pfnmap-block", "arch/arm64/kvm/mmu.c get_vma_page_shift() "
                        "v5.14+ (\"Try stage2 block mapping for host device MMIO\")",
                        "PFNMAP with hva and pa equally aligned: PMD/PUD block possible")
R_PFNMAP_UNALIGNED = Reason("kvm/get_vma_page_shift/pfnmap-unaligned", "arch/arm64/kvm/mmu.c "
                            "get_vma_page_shift() v5.14+ (S-6.6, S-6.17); fault_supports_stage2_huge_mapping()",
                            "PFNMAP whose hva is not aligned like its guest address (--hva-align 4K): PAGE_SIZE")
R_PFNMAP_HOST_LEAF = Reason("kvm/transparent_hugepage_adjust/pfnmap-host-leaf", "arch/arm64/kvm/mmu.c "
                            "transparent_hugepage_adjust() get_user_mapping_size() 7.2.13, 7.3.4; 6.12.113+ "
                            "(\"KVM: arm64: Use stage-1 leaf size for VM_PFNMAP\")",
                            "PFNMAP: the stage-2 block size follows the host's own mapping: the driver inserted a "
                            "PMD pfn (huge_fault) at a 2 MiB-aligned hva, so a PMD block")
R_PFNMAP_HOST_PTE = Reason("kvm/transparent_hugepage_adjust/pfnmap-host-pte", "arch/arm64/kvm/mmu.c "
                           "transparent_hugepage_adjust() get_user_mapping_size() 7.2.13, 7.3.4; 6.12.113+; 6.1.191+",
                           "PFNMAP: the stage-2 size follows the host's own mapping, which is PAGE_SIZE here "
                           "(remap_pfn_range() PTEs, or an hva not 2 MiB-aligned): PAGE_SIZE")
R_PFNMAP_DEVICE_PAGE = Reason("kvm/user_mem_abort/pfnmap-device-page", "arch/arm64/kvm/mmu.c user_mem_abort() "
                              "6.1.192 (6.1.191 backport: VMA no longer sizes PFNMAP; THP adjust still skips "
                              "device pfns)", "6.1.191+: a device PFNMAP is mapped at PAGE_SIZE")
R_THP_UNALIGNED = Reason("kvm/transparent_hugepage_adjust/unaligned", "arch/arm64/kvm/mmu.c "
                         "transparent_hugepage_adjust() fault_supports_stage2_huge_mapping() (6.1.192-7.3.4)",
                         "the hva is not aligned like the guest address within a PMD (--hva-align 4K): no block, "
                         "PAGE_SIZE")
R_THP = Reason("kvm/transparent_hugepage_adjust", "arch/arm64/kvm/mmu.c transparent_hugepage_adjust() (S-6.6, S-6.17)",
               "PAGE_SIZE, not force_pte/force_nc, THP-backed: adjusted to a PMD block")
# --- pfn ----------------------------------------------------------------------------------------------
R_HWPOISON = Reason("kvm/user_mem_abort/hwpoison", f"{_SRC} kvm_send_hwpoison_signal() (S-6.6, S-6.17; section 2.4)",
                    "HWPOISON pfn: SIGBUS (BUS_MCEERR_AR) to the VMM, fault handled (0)")
# --- device decision (section 2.2) --------------------------------------------------------------------
R_DEV_PFN_VALID = Reason("kvm/user_mem_abort/device-pfn-valid", f"{_SRC} kvm_is_device_pfn() v5.8 (S-5.8)",
                         "<=5.13: device = !pfn_valid(pfn)")
R_DEV_MAP_MEMORY = Reason("kvm/user_mem_abort/device-map-memory", f"{_SRC} kvm_is_device_pfn() (S-6.6)",
                          "5.14-6.16: device = !pfn_is_map_memory(pfn), whatever the VMA flags")
R_DEV_MAP_MEMORY_EARLY = Reason(
    "kvm/user_mem_abort/device-map-memory-version", "arch/arm64/kvm/mmu.c kvm_is_device_pfn(): pfn_valid -> "
    "pfn_is_map_memory, believed v5.14 (patch hunk seen; S-6.6 has the new form)",
    "before 6.6 the switch from !pfn_valid to !pfn_is_map_memory is assumed to date from 5.14; the exact "
    "version is unknown (only pmem-like pages, pfn_valid but not memblock memory, are affected)",
    unverified=True)
R_NOT_DEVICE = Reason("kvm/user_mem_abort/not-device", f"{_SRC} (S-6.6, S-6.17)",
                      "the pfn is linear-map memory (or, 6.17+, the VMA is neither PFNMAP nor MIXEDMAP): "
                      "not device")
R_FORCE_NC = Reason("kvm/user_mem_abort/s2_force_noncacheable", f"{_SRC} v6.17 (S-6.17, 216887f79d98)",
                    "6.17+: (VM_PFNMAP|VM_MIXEDMAP) && !pfn_is_map_memory and a non-cacheable VMA: "
                    "s2_force_noncacheable")
R_CPFN_OK = Reason("kvm/user_mem_abort/cacheable-pfnmap", f"{_SRC} v6.17 (S-6.17, 0c67288e0c8b)",
                   "6.17+: !MapMem PFNMAP/MIXEDMAP with a cacheable VMA on a FWB && DIC host: kept "
                   "Normal cacheable (no CMO needs a kernel VA)")
R_CPFN_EFAULT = Reason("kvm/user_mem_abort/cacheable-pfnmap-efault", f"{_SRC} v6.17 (S-6.17, 2a8dfab26677)",
                       "6.17+: cacheable !MapMem PFNMAP/MIXEDMAP without FWB && DIC: -EFAULT (checked "
                       "before the exec check)")
R_CPFN_LEAK = Reason("kvm/user_mem_abort/page-leak", f"{_SRC} v6.17.0; fixed by 5f9466b50c1b in 6.18 and "
                     "6.17.y (M-leak)",
                     "6.17.0 returned this error without releasing the page (fixed in 6.18 and 6.17.y)")
R_CPFN_ANY_HOST = Reason("kvm/user_mem_abort/cacheable-pfnmap-any-host", "variant cacheable-pfnmap-no-fwb-check",
                         "cacheable !MapMem PFNMAP kept Normal cacheable without asking for FWB/DIC")
R_CPFN_FLAG = Reason("kvm/user_mem_abort/cpfn-slot-flag", "variant cpfn-memslot-flag (M-cpfn v4-v6)",
                     "memslot has KVM_MEM_ENABLE_CACHEABLE_PFNMAP: cacheable PFNMAP kept Normal", unverified=True)
R_CPFN_NOFLAG = Reason("kvm/user_mem_abort/cpfn-no-slot-flag", "variant cpfn-memslot-flag (M-cpfn v4-v6)",
                       "no KVM_MEM_ENABLE_CACHEABLE_PFNMAP: device memory forced non-cacheable as before 6.17",
                       unverified=True)
# --- permissions ----------------------------------------------------------------------------------------
R_LOGGING_RO = Reason("kvm/user_mem_abort/logging-clear-w", f"{_SRC} (S-6.17)",
                      "dirty logging and not a write fault: mapped read-only so the first write is logged")
R_LOGGING_RO_71 = Reason("kvm/kvm_s2_fault_compute_prot/w", "mmu.c kvm_s2_fault_compute_prot() 7.1 (S-7.1)",
                         "7.1: W = map_writable && (device || !logging || write fault)", unverified=True)
R_W_GUP = Reason("kvm/user_mem_abort/w-gup-writable", f"{_SRC} __kvm_faultin_pfn() 'writable' (S-6.17; "
                 "section 11)", "non-write fault mapped writable: W follows GUP's 'writable' result, which the "
                 "model takes as an input (a writable VMA gives W); whether a read fault really maps W depends "
                 "on the page (e.g. COW) and is not verified", unverified=True)
R_READONLY = Reason("kvm/user_mem_abort/readonly", f"{_SRC} __kvm_faultin_pfn() writable (S-6.6, S-6.17)",
                    "read-only memslot: not writable")
R_ENOEXEC = Reason("kvm/user_mem_abort/exec-device", f"{_SRC} (S-6.6, S-6.17); kvm_handle_guest_abort()",
                   "exec fault on a device/force-noncacheable mapping: -ENOEXEC, injected as a guest "
                   "prefetch abort (before the MMU lock, THP and MTE)")
R_RETRY = Reason("kvm/user_mem_abort/mmu_invalidate_retry", f"{_SRC} mmu_invalidate_retry() (S-6.6, S-6.17)",
                 "an MMU-notifier invalidation raced: -EAGAIN, reported as 0; the guest re-faults")
# --- MTE (section 4) ------------------------------------------------------------------------------------
R_MTE_SANITISE = Reason("kvm/sanitise_mte_tags", "arch/arm64/kvm/mmu.c sanitise_mte_tags() v5.14+ (M-mte, "
                        "M-mte62; section 4)",
                        "MTE VM, translation fault, not force_nc: page tags zeroed, PG_mte_tagged set")
R_MTE_SHARED_FAULT = Reason("kvm/user_mem_abort/mte-shared", f"{_SRC} v5.14 (M-mte)",
                            "5.14-6.1: MTE VM and the VMM introduced a VM_SHARED VMA: -EFAULT")
R_MTE_ONLINE = Reason("kvm/sanitise_mte_tags/online-page", "mmu.c sanitise_mte_tags() v5.14 (M-mte)",
                      "5.14-6.1: pfn_to_online_page() failed (ZONE_DEVICE, not tag-capable): -EFAULT")
R_MTE_NOT_ALLOWED = Reason("kvm/user_mem_abort/mte-not-allowed", f"{_SRC} kvm_vma_mte_allowed() v6.2+ (M-mte62)",
                           "MTE VM and the VMA lacks VM_MTE_ALLOWED (\"the VMM hasn't introduced a new "
                           "disallowed VMA\"): -EFAULT")
R_MTE_SANITISE_71 = Reason("kvm/kvm_s2_fault_map/sanitise_mte_tags", "mmu.c kvm_s2_fault_map() 7.1 (S-7.1)",
                           "7.1: the tags are sanitised when the mapping is installed, under the MMU lock "
                           "(only the check was hoisted)", unverified=True)
R_MTE_ORDER_71 = Reason("kvm/kvm_s2_fault_compute_prot/mte", "mmu.c 7.1 \"Hoist MTE validation check out of "
                        "MMU lock path\" (M-next71)", "7.1: the MTE check runs before the MMU lock",
                        unverified=True)
R_MTE_NO_RECHECK = Reason("kvm/user_mem_abort/mte-no-recheck", "variant mte-memslot-check-only",
                          "no fault-time VMA re-check: the page is tagged whatever now backs the slot")
R_MTE_RFC_UPGRADE = Reason("kvm/user_mem_abort/mte-upgrade", "variant mte-rfc-2020 (M-mte RFC, Jun 2020)",
                           "every faulted-in Normal page is upgraded to tagged (PG_mte_tagged), no "
                           "tag-storage check")
R_MTE_SKIP_DEVICE = Reason("kvm/user_mem_abort/mte-skip-device", f"{_SRC} v5.14+ (S-6.6, S-6.17; section 4)",
                           "device/NC mappings are exempt from MTE sanitisation")
# --- attribute selection (section 2.2) -------------------------------------------------------------------
R_ATTR_NORMAL = Reason("kvm/user_mem_abort/attr-normal", f"{_SRC} attribute selection (S-5.8, S-6.6, S-6.17)",
                       "not forced: stage 2 Normal cacheable")
R_ATTR_DEVICE = Reason("kvm/user_mem_abort/attr-device", f"{_SRC} PAGE_S2_DEVICE (S-5.8) / "
                       "KVM_PGTABLE_PROT_DEVICE v5.14-6.8 (S-6.6)",
                       "device mapping: stage 2 Device-nGnRE")
R_ATTR_DEVICE_NOFLAG = Reason("kvm/user_mem_abort/attr-device-noflag", f"{_SRC} v6.9+ (a39d3a966a09)",
                              "device mapping and the VMA lacks VM_ALLOW_ANY_UNCACHED: stage 2 Device-nGnRE")
R_ATTR_NC = Reason("kvm/user_mem_abort/attr-nc", f"{_SRC} v6.9+ KVM_PGTABLE_PROT_NORMAL_NC (8c47ce3e1d2c)",
                   "device mapping and the VMA has VM_ALLOW_ANY_UNCACHED: stage 2 Normal-NC")
R_ATTR_NC_ALL = Reason("kvm/user_mem_abort/attr-nc-all", "variant normal-nc-for-all-io (M-nc v1)",
                       "every device mapping is Normal-NC, no VMA flag consulted")
R_ATTR_DEV_CACHEABLE = Reason("kvm/user_mem_abort/attr-device-cacheable", "variant device-as-cacheable",
                              "device memory mapped Normal cacheable at stage 2")
R_NV_VMA = Reason("kvm/user_mem_abort/nv-vma-memtype", "NV-Kernels mmu.c \"SAUCE: determine memory type from "
                  "VMA\" (S-NV)", "stage-2 type taken from the VMA pgprot memory type")
R_NV_EINVAL = Reason("kvm/user_mem_abort/nv-nofwb-einval", "NVIDIA/NV-Kernels 05400664e522 arch/arm64/kvm/mmu.c "
                     "user_mem_abort() SAUCE (S-NV; section 2.5)",
                     "no FWB and !pfn_valid(pfn): -EINVAL at fault time, whatever the memory type (KVM could "
                     "not clean the D-cache through the linear map); checked under the MMU lock after the "
                     "-ENOEXEC, THP and MTE steps")
R_X_EXEC = Reason("kvm/user_mem_abort/x-exec", f"{_SRC} KVM_PGTABLE_PROT_X (S-5.8 needs_exec, S-6.6, S-6.17)",
                  "exec fault: executable")
R_X_DIC = Reason("kvm/user_mem_abort/x-dic", f"{_SRC}; <=5.13 PAGE_S2_XN is 0 under DIC",
                 "DIC host: Normal mappings executable up front")


def _device_decision(rules: Rules, host: Features, slot: Slot, vma: Vma, rs: list) -> tuple[bool, bool, str | None]:
    """The device test, or the variant's ``device_test`` hook in its place (which may call
    ``default()`` for the era's own answer)."""
    h = rules.hook("device_test") if rules.hooks else None
    if h is not None:
        return h(rules, host, slot, vma, rs, lambda: _device_decision_era(rules, host, slot, vma, rs))
    return _device_decision_era(rules, host, slot, vma, rs)


def _device_decision_era(rules: Rules, host: Features, slot: Slot, vma: Vma, rs: list) -> tuple[bool, bool, str | None]:
    """Returns (device, force_nc, errno).  ``device`` is the pre-6.17 meaning (and 7.1's
    s2vi->device); ``force_nc`` forces a non-cacheable mapping."""
    phys = vma.phys
    test = rules.device_test
    if test == eras.DEV_PFN_VALID:
        if phys.pfn_valid:
            rs.append(R_NOT_DEVICE)
            return False, False, None
        rs.append(R_DEV_PFN_VALID)
        return True, True, None
    if test == eras.DEV_MAP_MEMORY:
        if rules.map_memory_unverified and phys.pfn_valid != phys.map_memory:
            rs.append(R_DEV_MAP_MEMORY_EARLY)     # the two tests disagree here (pmem)
        if phys.map_memory:
            rs.append(R_NOT_DEVICE)
            return False, False, None
        rs.append(R_DEV_MAP_MEMORY)
        return True, True, None
    # 6.17+: (VM_PFNMAP|VM_MIXEDMAP) && !MapMem
    if not ((vma.pfnmap or vma.mixedmap) and not phys.map_memory):
        rs.append(R_NOT_DEVICE)
        return False, False, None
    if rules.cacheable_pfnmap and vma.cacheable:
        rs.append(mm.R_VMA_CACHEABLE)
        if rules.cpfn_slot_flag:
            if not slot.flags & KVM_MEM_ENABLE_CACHEABLE_PFNMAP:
                rs.append(R_CPFN_NOFLAG)
                return True, True, None
            rs.append(R_CPFN_FLAG)
        if not rules.cpfn_requires_fwb_dic:
            rs.append(R_CPFN_ANY_HOST)
            return True, False, None
        if not (host.fwb and host.dic):
            rs.append(R_CPFN_EFAULT)
            if not rules.page_leak_fixed:
                rs.append(R_CPFN_LEAK)
            return True, False, EFAULT
        rs.append(R_CPFN_OK)
        return True, False, None
    rs.append(R_FORCE_NC)
    return True, True, None


def _attr(rules: Rules, host: Features, vma: Vma, force_nc: bool, rs: list) -> str:
    """The stage-2 attribute choice, or the variant's ``s2_attr`` hook in its place."""
    h = rules.hook("s2_attr") if rules.hooks else None
    if h is not None:
        return h(rules, host, vma, force_nc, rs, lambda: _attr_era(rules, host, vma, force_nc, rs))
    return _attr_era(rules, host, vma, force_nc, rs)


def _attr_era(rules: Rules, host: Features, vma: Vma, force_nc: bool, rs: list) -> str:
    if rules.vma_memtype_decides:
        rs.append(R_NV_VMA)
        if vma.memtype in (mm.DEVICE_nGnRE, mm.DEVICE_nGnRnE, mm.NORMAL_NC):
            if vma.allow_any_uc:
                rs.append(R_ATTR_NC)
                return S2_NC
            rs.append(R_ATTR_DEVICE_NOFLAG)
            return S2_DEVICE
        rs.append(R_ATTR_NORMAL)
        return S2_NORMAL
    if not force_nc:
        rs.append(R_ATTR_NORMAL)
        return S2_NORMAL
    if rules.device_cacheable:
        rs.append(R_ATTR_DEV_CACHEABLE)
        return S2_NORMAL
    if rules.normal_nc:
        if rules.nc_without_flag:
            rs.append(R_ATTR_NC_ALL)
            return S2_NC
        if vma.allow_any_uc:
            rs.append(R_ATTR_NC)
            return S2_NC
        rs.append(R_ATTR_DEVICE_NOFLAG)
        return S2_DEVICE
    if rules.nc_without_flag:
        rs.append(R_ATTR_NC_ALL)
        return S2_NC
    rs.append(R_ATTR_DEVICE)
    return S2_DEVICE


def _mte_check(rules: Rules, vma: Vma, rs: list) -> str | None:
    """MTE check for a translation fault on a non-force_nc mapping in an MTE VM: errno or None;
    the variant's ``mte_fault_check`` hook in its place."""
    h = rules.hook("mte_fault_check") if rules.hooks else None
    if h is not None:
        return h(rules, vma, rs, lambda: _mte_check_era(rules, vma, rs))
    return _mte_check_era(rules, vma, rs)


def _mte_check_era(rules: Rules, vma: Vma, rs: list) -> str | None:
    if rules.mte_upgrade_any:
        return None
    check = rules.mte_fault_check
    if check == eras.MTE_FAULT_SHARED_ONLINE:
        if vma.shared:
            rs.append(R_MTE_SHARED_FAULT)
            return EFAULT
        if not vma.phys.online:
            rs.append(R_MTE_ONLINE)
            return EFAULT
    elif check == eras.MTE_FAULT_ALLOWED:
        if not vma.mte_allowed:
            rs.append(R_MTE_NOT_ALLOWED)
            return EFAULT
    else:
        rs.append(R_MTE_NO_RECHECK)
        if rules.mte_memslot_rule == eras.MTE_SLOT_SHARED and not vma.phys.online:
            # 5.14-6.1: the pfn_to_online_page() test is inside sanitise_mte_tags() itself, a page
            # test rather than the VMA re-check the variant removes (section 4)
            rs.append(R_MTE_ONLINE)
            return EFAULT
    return None


def _mte_sanitise(rules: Rules, rs: list) -> bool:
    """sanitise_mte_tags() (or the 2020 RFC's upgrade) once the check passed: True (tagged)."""
    if rules.mte_upgrade_any:
        rs.append(R_MTE_RFC_UPGRADE)
    elif rules.mte_check_before_lock:
        rs.append(R_MTE_SANITISE_71)
    else:
        rs.append(R_MTE_SANITISE)
    return True


def _mte(rules: Rules, vma: Vma, rs: list) -> tuple[bool, str | None]:
    """Check, then sanitise: (sanitised, errno)."""
    err = _mte_check(rules, vma, rs)
    if err is not None:
        return False, err
    return _mte_sanitise(rules, rs), None


def _host_leaf(rules: Rules, slot: Slot, vma: Vma, rs: list) -> str:
    """transparent_hugepage_adjust(): a PMD block when the host maps the hva with a PMD leaf and
    the hva is aligned like the guest address; otherwise PAGE_SIZE."""
    if vma.huge == mm.HUGE_THP:
        if slot.block_aligned:
            rs.append(R_THP)
            return PMD
        rs.append(R_THP_UNALIGNED)
        return PAGE
    if vma.pfnmap and rules.pfnmap_host_leaf:
        if vma.huge == mm.HUGE_PFN and slot.block_aligned:
            rs.append(R_PFNMAP_HOST_LEAF)
            return PMD
        rs.append(R_PFNMAP_HOST_PTE)
    return PAGE


@lru_cache(maxsize=65536)
def user_mem_abort(rules: Rules, host: Features, vm: Vm, slot: Slot, vma: Vma | None,
                   fault: Fault) -> FaultResult:
    """One stage-2 fault on a VMA-backed memslot; see the module docstring."""
    rs: list[Reason] = []
    if fault.read_perm:
        if not rules.perm_read_relax:
            rs.append(R_PERM_READ)
            return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
        rs.append(R_PERM_READ_RELAX)
    if vma is None:
        rs.append(R_NO_VMA)
        return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))

    # mapping size from the VMA (get_vma_page_shift) and logging
    force_pte = False
    size = PAGE
    if slot.logging:
        rs.append(R_LOGGING_PTE)
        force_pte = True
    elif vma.hugetlb:
        rs.append(R_HUGETLB)
        size = PMD
    elif vma.pfnmap:
        if rules.pfnmap_force_pte:
            rs.append(R_PFNMAP_PTE_OLD)
            force_pte = True
        elif rules.pfnmap_host_leaf:
            pass                                 # sized by the host's leaf below (THP adjust)
        elif vma.huge in (mm.HUGE_PFN, mm.HUGE_PFN_REMAP):
            if slot.block_aligned:
                rs.append(R_PFNMAP_BLOCK)
                size = PMD
            else:
                rs.append(R_PFNMAP_UNALIGNED)

    # faultin the pfn
    if fault.hwpoison:
        rs.append(R_HWPOISON)
        return FaultResult("sigbus", where=WHERE, reasons=tuple(rs))

    # device / force-noncacheable decision (per era)
    device, force_nc, err = _device_decision(rules, host, slot, vma, rs)
    if err is not None:
        return FaultResult("error", errno=err, where=WHERE, reasons=tuple(rs))

    # write permission
    writable = vma.writable and not slot.readonly
    if slot.readonly:
        rs.append(R_READONLY)
    if slot.logging and not fault.write and writable:
        if rules.w_rule_device:
            if not device:
                rs.append(R_LOGGING_RO_71)
                writable = False
        elif not force_nc:
            rs.append(R_LOGGING_RO)
            writable = False

    if fault.exec and force_nc:
        rs.append(R_ENOEXEC)
        if not rules.page_leak_fixed and rules.cacheable_pfnmap:
            rs.append(R_CPFN_LEAK)
        return FaultResult("pabt", errno="-ENOEXEC", where=WHERE, reasons=tuple(rs))

    mte_checked = False
    sanitised = False
    mte_applies = vm.mte and not fault.perm and not force_nc
    if rules.mte_check_before_lock and mte_applies:
        rs.append(R_MTE_ORDER_71)
        err = _mte_check(rules, vma, rs)
        mte_checked = True
        if err is not None:
            return FaultResult("error", errno=err, where="kvm_s2_fault_compute_prot", reasons=tuple(rs))

    # mmu lock
    if fault.race:
        rs.append(R_RETRY)
        return FaultResult("retry", where=WHERE, reasons=tuple(rs))

    if size == PAGE and not force_pte and (not force_nc or rules.thp_adjust_device):
        size = _host_leaf(rules, slot, vma, rs)
    elif size == PAGE and force_nc and vma.pfnmap and rules.pfnmap_host_leaf:
        rs.append(R_PFNMAP_DEVICE_PAGE)

    if mte_applies and mte_checked:
        sanitised = _mte_sanitise(rules, rs)
    elif mte_applies:
        sanitised, err = _mte(rules, vma, rs)
        if err is not None:
            return FaultResult("error", errno=err, where=WHERE, reasons=tuple(rs))
    elif vm.mte and force_nc:
        rs.append(R_MTE_SKIP_DEVICE)

    if rules.vma_memtype_decides and not host.fwb and not vma.phys.pfn_valid:
        rs.append(R_NV_EINVAL)
        return FaultResult("error", errno=EINVAL, where=WHERE, reasons=tuple(rs))

    s2 = _attr(rules, host, vma, force_nc, rs)
    x = False
    if fault.exec:
        rs.append(R_X_EXEC)
        x = True
    elif s2 == S2_NORMAL and host.dic:
        rs.append(R_X_DIC)
        x = True
    if writable and not fault.write:
        rs.append(R_W_GUP)
    rs.append(R_ENC[(s2, host.fwb)])
    dclean, iinval = leaf_cmo(s2, x, host, fault.perm, rs, inline=rules.inline_cmo)
    return FaultResult("map", s2=s2, memattr=stage2_memattr(s2, host.fwb), where=WHERE, w=writable,
                       x=x, size=size, dclean=dclean, iinval=iinval, mte_sanitised=sanitised,
                       tagged=sanitised, reasons=tuple(rs))
