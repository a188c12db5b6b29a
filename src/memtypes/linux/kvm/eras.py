"""KVM arm64 eras: one :class:`Rules` value per era, each derived from the one before.

An era is a frozen bundle of rule switches read by ``kvm_arch_prepare_memory_region``,
``user_mem_abort``, ``gmem_abort``, ``kvm_vm_ioctl_check_extension`` / ``enable_cap`` and
``kvm_vm_ioctl_mte_copy_tags``.  Each later era is ``replace(previous, ...)`` with only what
changed and a ``changed_by`` Reason saying which release/commit changed it (reference/
kernel-kvm.md section 1, and the Debian source trees 6.1.192, 6.12.118, 7.2.13, 7.3.4 read for
issue 16).  Eras, by first version: 5.13 (stands for <=5.13), 5.14, 6.2, 6.9, 6.17, 6.18, 7.1,
7.2 (7.2-7.3: 7.3.4 changes nothing the model restates from 7.2.13; see C_7_3).

Intra-era and point-release changes are applied by :func:`rules_for_version` from the exact
version: KVM_ARM_MTE_COPY_TAGS -EBUSY under dirty logging from 6.12 (inside 6.9-6.16);
hugetlb VM_MTE_ALLOWED from 6.13; the user_mem_abort page-leak fix in 6.17.y (patch > 0) as well
as 6.18; the 7.0 changes (pKVM refuses KVM_CAP_ARM_MTE for every guest, LS64 DABT injection)
inside the 6.18-7.0 era; KVM_CAP_USER_MEMORY2 from 6.8 and KVM_CAP_ARM_SEA_TO_USER from 6.19;
and the stable backports of the PFNMAP mapping-size change, 6.1.191 and 6.12.113 (Debian
changelogs of linux-source-6.1 and -6.12).

``kernel("6.17+mte-rfc-2020")`` returns a :class:`Kernel` (version, era, variant, rules, and the
"newer than the model" mark for a version past what the model knows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux.version import KernelVersion, assumed_version, parse_version, split_variant

# device_test values (how user_mem_abort decides "device" / force-noncacheable)
DEV_PFN_VALID = "pfn_valid"                 # <=5.13: !pfn_valid(pfn)
DEV_MAP_MEMORY = "map_memory"               # 5.14-6.16: !pfn_is_map_memory(pfn)
DEV_PFNMAP_MAP_MEMORY = "pfnmap_map_memory"  # 6.17+: (VM_PFNMAP|VM_MIXEDMAP) && !MapMem

# mte_memslot_rule values
MTE_SLOT_NONE = "none"
MTE_SLOT_SHARED = "shared"            # P3: reject VM_SHARED (5.14-6.1)
MTE_SLOT_ALLOWED = "mte_allowed"      # P3': require VM_MTE_ALLOWED (6.2+)

# mte_fault_check values
MTE_FAULT_SHARED_ONLINE = "shared+online"   # 5.14-6.1: VM_SHARED recheck + pfn_to_online_page
MTE_FAULT_ALLOWED = "mte_allowed"           # 6.2+: VM_MTE_ALLOWED recheck
MTE_FAULT_NONE = "none"                     # variants: no fault-time check


@dataclass(frozen=True)
class Rules:
    """The rule switches of one era (or one variant of an era).  Hashable; compare by value."""

    era: str                          # first version of the era ("5.13" = <=5.13)
    span: str                         # human range, e.g. "6.9-6.16"
    first: tuple[int, int]
    changed_by: tuple[Reason, ...] = ()
    variant: str = "mainline"
    # --- kvm_arch_prepare_memory_region ---
    eager_pfnmap_map: bool = True      # P0: PFNMAP slots pre-mapped DEVICE at creation
    ipa_limit_ge: bool = True          # P1 compares with >= (v5.8 text) instead of >
    mte_memslot_rule: str = MTE_SLOT_NONE
    cpfn_memslot_check: bool = False   # P4
    gmem_slots: bool = False           # P5 + gmem_abort (6.18)
    pkvm_memslot_rules: bool = False   # P6/P7 (7.1)
    # --- capabilities ---
    mte_cap: bool = False              # KVM_CAP_ARM_MTE 205 (5.14)
    pkvm_no_mte: bool = False          # 7.0: pKVM refuses MTE for every guest
    pkvm_ext_filter_all: bool = False  # 7.2: kvm_pkvm_ext_allowed() filters every fd on a pKVM host
    pkvm_ioremap_eperm: bool = False   # kvm_phys_addr_ioremap() -EPERM on a pKVM host (read 6.1.192+)
    source_read: str = ""              # the Debian tree this version's arm64 KVM text was read in, if any
    gmem_mte_slot: bool = False        # 6.18 (seen 6.18.5+): a guest_memfd slot in an MTE VM is refused (P8)
    gmem_mte_excl: bool = False        # 7.2: also KVM_CAP_ARM_MTE once a guest_memfd slot exists
    cap_user_memory2: bool = False     # KVM_CAP_USER_MEMORY2 231 (6.8)
    cap_sea_to_user: bool = False      # KVM_CAP_ARM_SEA_TO_USER 245 (6.19)
    cap_cacheable_pfnmap: bool = False  # cap 243 (6.17)
    cap_gmem_flags: bool = False       # cap 244 (6.18)
    mte_copy_tags: bool = False        # KVM_ARM_MTE_COPY_TAGS ioctl (5.14)
    copy_tags_ebusy: bool = False      # -EBUSY writing tags under dirty logging (6.12)
    # --- user_mem_abort ---
    device_test: str = DEV_PFN_VALID
    map_memory_unverified: bool = False  # 5.14-6.5: !pfn_is_map_memory assumed (switch version UNVERIFIED)
    pfnmap_force_pte: bool = True      # <=5.13: PFNMAP always force_pte
    pfnmap_host_leaf: bool = False     # 7.2 / 6.12.113 / 6.1.191: PFNMAP size from the host's own
                                       # stage-1 leaf, no longer from vm_pgoff (get_vma_page_shift)
    thp_adjust_device: bool = False    # 7.2 / 6.12.113: the host-leaf (THP) adjust also runs for
                                       # device / force-noncacheable mappings
    perm_read_relax: bool = False      # 7.2: a read permission fault relaxes permissions (no -EFAULT)
    hugetlb_mte: bool = False          # arm64 mman.h: MAP_HUGETLB / hugetlbfs get VM_MTE_ALLOWED (6.13)
    nvgrace_huge_fault: bool = False   # nvgrace-gpu inserts PMD pfns from huge_fault (7.2.13; 6.12.118
                                       # uses remap_pfn_range)
    inline_cmo: bool = True            # <=5.13: CMOs done in user_mem_abort itself
    normal_nc: bool = False            # 6.9: NC when VM_ALLOW_ANY_UNCACHED
    cacheable_pfnmap: bool = False     # 6.17: cacheable VMA on !MapMem PFNMAP -> NORMAL or -EFAULT
    cpfn_requires_fwb_dic: bool = True
    mte_fault_check: str = MTE_FAULT_NONE
    mte_check_before_lock: bool = False  # 7.1: MTE validation hoisted out of the MMU lock
    w_rule_device: bool = False        # 7.1: W kept for any "device" mapping under logging
    page_leak_fixed: bool = False      # 6.18 / 6.17.y (M-leak); errno unchanged
    ls64_dabt: bool = False            # 7.0: LS64 excl/atomic fault injected as DABT
    # --- variant switches (all False in mainline; see variants.py) ---
    nc_without_flag: bool = False      # normal-nc-for-all-io: every force_nc mapping is NC
    gicv_nc: bool = False              # ... including kvm_phys_addr_ioremap (GICV)
    device_cacheable: bool = False     # device-as-cacheable: force_nc mappings become NORMAL
    vma_memtype_decides: bool = False  # nvidia-vma-memtype (S-NV)
    cpfn_slot_flag: bool = False       # cpfn-memslot-flag: KVM_MEM_ENABLE_CACHEABLE_PFNMAP
    mte_upgrade_any: bool = False      # mte-rfc-2020: tag every faulted page, no checks
    # --- decision points a variant replaces with a function (variants.HOOKS; () in mainline) ---
    hooks: tuple = ()                  # ((hook name, function), ...) sorted by name

    @property
    def name(self) -> str:
        return self.era if self.variant == "mainline" else f"{self.era}+{self.variant}"

    def hook(self, name: str):
        """The function a variant put at decision point ``name``, or None (resolved once per
        Rules value: the map is cached on the instance)."""
        m = self.__dict__.get("_hookmap")
        if m is None:
            m = dict(self.hooks)
            object.__setattr__(self, "_hookmap", m)
        return m.get(name)

    def __hash__(self) -> int:
        # cached: Rules is a memoisation key in the fault-path hot loops
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(tuple(getattr(self, f) for f in self.__dataclass_fields__))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        # never carry the cached hash to another process (str hashes are salted per process)
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_hookmap")}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


# --- why each era differs from the one before (reference section 1) -----------------------------
C_5_14 = (
    Reason("era/5.14/no-eager-pfnmap", "KVM/arm64 updates for 5.14: \"Remove the creation time's "
           "mapping of MMIO regions\"", "PFNMAP memslots are no longer pre-mapped; faults map them"),
    Reason("era/5.14/device-block", "KVM/arm64 updates for 5.14: \"Try stage2 block mapping for host "
           "device MMIO\"", "device mappings may be PMD/PUD blocks"),
    Reason("era/5.14/cmo-in-walker", "KVM/arm64 updates for 5.14 (mm_ops CMO callbacks)",
           "cache maintenance moved into the page-table walker"),
    Reason("era/5.14/mte", "KVM/arm64 updates for 5.14 (M-mte)",
           "MTE for guests: KVM_CAP_ARM_MTE (205), KVM_ARM_MTE_COPY_TAGS, P3, sanitise_mte_tags"),
    Reason("era/5.14/pfn_is_map_memory", "arch/arm64/kvm/mmu.c kvm_is_device_pfn(): pfn_valid -> "
           "pfn_is_map_memory, believed v5.14 (patch hunk seen; S-6.6 has the new form)",
           "device = !pfn_is_map_memory(pfn)", unverified=True),
    Reason("era/5.14/pkvm-ioremap-eperm", "arch/arm64/kvm/mmu.c kvm_phys_addr_ioremap() "
           "is_protected_kvm_enabled() -EPERM: read in 6.1.192, 6.12.118, 7.3.4; present from 5.14 assumed",
           "on a pKVM host KVM maps no I/O itself (the GICv2 GICV frame): -EPERM", unverified=True),
)
C_6_2 = (
    Reason("era/6.2/mte-map-shared", "KVM/arm64 updates for 6.2; d89585fbb308, c911f0d46879, "
           "a4baf8d2639f (M-mte62)", "MTE: MAP_SHARED allowed; memslot and fault test VM_MTE_ALLOWED "
           "instead of VM_SHARED (P3 -> P3'); sanitise_mte_tags trusts the VMA"),
)
C_6_9 = (
    Reason("era/6.9/normal-nc", "kvmarm-6.9 kvm-arm64/vfio-normal-nc: c034ec84e879, 5c656fcdd6c6, "
           "8c47ce3e1d2c, a39d3a966a09 (M-nc, M-pull69)",
           "KVM_PGTABLE_PROT_NORMAL_NC; a device mapping is NC when the VMA has VM_ALLOW_ANY_UNCACHED; "
           "vfio-pci sets it; nvgrace-gpu added"),
)
C_6_12 = (
    Reason("era/6.12/copy-tags-ebusy", "kvmarm mmu-misc-6.12 (S-guest)",
           "KVM_ARM_MTE_COPY_TAGS writing tags while a memslot logs dirty pages gives -EBUSY"),
)
C_6_17 = (
    Reason("era/6.17/cacheable-pfnmap", "kvmarm-6.17: 8cc9dc1ae4fb, 216887f79d98, 2a8dfab26677, "
           "0c67288e0c8b, f55ce5a6cd33 (M-cpfn, M-pull617)",
           "s2_force_noncacheable only for (VM_PFNMAP|VM_MIXEDMAP) && !MapMem; cacheable PFNMAP "
           "needs FWB && DIC (P4 / -EFAULT); KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED 243"),
)
C_6_17_Y = (
    Reason("era/6.17.y/page-leak", "5f9466b50c1b \"KVM: arm64: Fix page leak in user_mem_abort()\" "
           "(M-leak)", "the early -EFAULT/-ENOEXEC returns release the page (errno unchanged)"),
)
C_6_18 = C_6_17_Y + (
    Reason("era/6.18/gmem", "Fuad Tabba guest_memfd mmap series v13 (M-gmem); KVM_CAP_GUEST_MEMFD_FLAGS 244",
           "gmem_abort() for guest_memfd slots; P5 rejects gmem slots that are not gmem-only"),
    Reason("era/6.18/gmem-mte-slot", "memtypes conform on Debian 6.18.5, 6.18.9, 6.18.12, 6.18.15, 6.19.14, "
           "7.0.13 and 7.1.13 under QEMU 10.0.2 -cpu max (no Debian source for 6.18-7.1; 7.2.13 "
           "kvm_arch_prepare_memory_region() \"guest_memfd is incompatible with MTE\")",
           "a guest_memfd memslot in an MTE VM is refused (-EINVAL, P8), but KVM_CAP_ARM_MTE is still "
           "granted after a guest_memfd slot exists (observed); 6.18.0-6.18.4 were not observed",
           unverified=True),
)
C_7_0 = (
    Reason("era/7.0/fwb-for-all", "[GIT PULL] KVM/arm64 updates for 7.0, tag kvmarm-7.0 (M-pull70)",
           "7.0 (inside the 6.18-7.0 era): MT_S2_AS_S1 for the pKVM host only; LS64 excl/atomic faults "
           "injected as DABT; pKVM refuses KVM_CAP_ARM_MTE for every guest; guest memory types unchanged"),
)
C_7_1 = (
    Reason("era/7.1/s2-fault-desc", "linux-next 7.1 cycle: struct kvm_s2_fault_desc, "
           "kvm_s2_fault_pin_pfn/compute_prot/map (S-7.1, M-next71)",
           "user_mem_abort split; MTE check hoisted before the MMU lock; W = map_writable && (device "
           "|| !logging || write); pKVM -EPERM memslot rules P6/P7", unverified=True),
)

_M72 = "arch/arm64/kvm/mmu.c 7.2.13 (Debian linux-source-7.2)"
_M73 = "7.3.4 (Debian linux-source-7.3)"
C_7_2 = (
    Reason("era/7.2/pfnmap-host-leaf", f"{_M72} get_vma_page_shift(), kvm_s2_resolve_vma_size(), "
           f"kvm_s2_fault_map(); same text in {_M73}",
           "the stage-2 mapping size of VM_PFNMAP memory no longer comes from the VMA (vm_pgoff and hva "
           "alignment): get_vma_page_shift() sizes hugetlb only, and the block size follows the host's own "
           "stage-1 leaf (transparent_hugepage_adjust -> get_user_mapping_size, at most PMD), now also for "
           "device / non-cacheable mappings"),
    Reason("era/7.2/perm-read", f"{_M72} kvm_handle_guest_abort() VM_WARN_ON_ONCE, user_mem_abort(); "
           f"same in {_M73}",
           "the \"Unexpected L2 read permission error\" -EFAULT is gone: a permission fault that is neither "
           "write nor exec relaxes the leaf's permissions like any other permission fault"),
    Reason("era/7.2/gmem-mte", f"{_M72} kvm_arch_prepare_memory_region() \"guest_memfd is incompatible "
           f"with MTE\"; arch/arm64/kvm/arm.c kvm_vm_ioctl_enable_cap() KVM_CAP_ARM_MTE; same in {_M73}",
           "a guest_memfd memslot in an MTE VM is refused (-EINVAL, P8), and KVM_CAP_ARM_MTE is refused "
           "(-EINVAL) once any memslot has a guest_memfd"),
    Reason("era/7.2/pkvm-caps", f"arch/arm64/include/asm/kvm_pkvm.h kvm_pkvm_ext_allowed(); arch/arm64/kvm/arm.c "
           f"kvm_vm_ioctl_check_extension(), kvm_vm_ioctl_enable_cap() 7.2.13; same in {_M73}",
           "on a pKVM host every KVM_CHECK_EXTENSION / KVM_ENABLE_CAP goes through kvm_pkvm_ext_allowed(): "
           "KVM_CAP_ARM_MTE is 0 / -EINVAL for every VM, the system fd included; other caps are filtered "
           "for protected VMs only"),
    Reason("era/7.2/nvgrace-huge-fault", "drivers/vfio/pci/nvgrace-gpu/main.c nvgrace_gpu_vfio_pci_huge_fault() "
           "7.2.13 (6.12.118: remap_pfn_range in nvgrace_gpu_mmap())",
           "nvgrace-gpu inserts PMD/PUD pfns on fault, so its host mapping can be a block (the release that "
           "added it, between 6.13 and 7.2, is not verified)"),
    Reason("era/7.2/boundary", "Debian ships no source for 6.16-7.1 (reference/realkernel.md); the 7.1 text "
           "the reference read (S-7.1) still had the read-permission -EFAULT and the vm_pgoff sizing",
           "these 7.2 rules are read in 7.2.13; whether mainline 7.1 (or 7.2.0) already had them is not "
           "verified, and so is whether 6.17.y, 6.18.y, 7.0.y or 7.1.y got the PFNMAP-size backport",
           unverified=True),
)
C_7_3 = (
    Reason("era/7.3/same-as-7.2", f"arch/arm64/kvm/mmu.c, arm.c, guest.c, hyp/pgtable.c, virt/kvm/vfio.c, "
           f"drivers/vfio/vfio_iommu_type1.c, drivers/vfio/group.c: diff 7.2.13 -> {_M73}",
           "7.3 changes nothing the model restates: user_mem_abort() tops up the memcache on every pKVM "
           "permission fault (-ENOMEM only), KVM_CAP_ARM_PMU_V3_STRICT (251) is new; 7.3 shares the 7.2 era"),
)
C_6_1_191 = (
    Reason("era/6.1.191/pfnmap-page", "Debian linux-source-6.1 changelog, upstream 6.1.191: \"KVM: arm64: Don't "
           "use the VMA to size stage-2 block mappings for VM_PFNMAP\"; arch/arm64/kvm/mmu.c get_vma_page_shift(), "
           "user_mem_abort() 6.1.192",
           "6.1.191+: VM_PFNMAP is no longer sized from the VMA (hugetlb only); the THP adjust still skips device "
           "pfns, so a device PFNMAP is always mapped at PAGE_SIZE"),
)
C_6_12_113 = (
    Reason("era/6.12.113/pfnmap-host-leaf", "Debian linux-source-6.12 changelog, upstream 6.12.113: \"KVM: arm64: "
           "Use stage-1 leaf size for VM_PFNMAP\"; arch/arm64/kvm/mmu.c get_vma_page_shift(), user_mem_abort() "
           "6.12.118",
           "6.12.113+: VM_PFNMAP sized by the host's stage-1 leaf (transparent_hugepage_adjust, no longer "
           "skipped for device pfns), as in 7.2; 6.12.0-6.12.112 size it from vm_pgoff (reference section 2.1)"),
)
C_6_1_READ = (
    Reason("era/6.1/pfn_is_map_memory-read", "arch/arm64/kvm/mmu.c kvm_is_device_pfn() 6.1.192 (Debian "
           "linux-source-6.1)", "device = !pfn_is_map_memory(pfn): read in 6.1.192"),
)
C_6_8 = (
    Reason("era/6.8/user-memory2", "include/uapi/linux/kvm.h KVM_CAP_USER_MEMORY2 231, virt/kvm/kvm_main.c "
           "kvm_vm_ioctl_check_extension_generic() (read in 6.12.118; added with guest_memfd in 6.8, version "
           "not read)", "KVM_CAP_USER_MEMORY2 (231) answers 1", unverified=True),
)
C_6_13 = (
    Reason("era/6.13/hugetlb-mte", "arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits(): MAP_HUGETLB and "
           "is_file_hugepages() get VM_MTE_ALLOWED in 7.2.13/7.3.4, not in 6.12.118 (no 6.12.y backport); "
           "arch/arm64/kvm/mmu.c sanitise_mte_tags() hugetlb folio path 7.3.4; \"hugetlb: arm64: add mte "
           "support\" believed merged for 6.13 (reference section 4 '~6.13')",
           "hugetlb memory may be mapped with MTE (VM_MTE_ALLOWED) from 6.13", unverified=True),
)
C_6_19 = (
    Reason("era/6.19/sea-to-user", "arch/arm64/kvm/arm.c kvm_vm_ioctl_check_extension() KVM_CAP_ARM_SEA_TO_USER "
           "(7.3.4); v6.19 per reference section 7", "KVM_CAP_ARM_SEA_TO_USER (245) answers 1"),
)

ERA_5_13 = Rules(era="5.13", span="<=5.13", first=(5, 0))
ERA_5_14 = replace(
    ERA_5_13, era="5.14", span="5.14-6.1", first=(5, 14), changed_by=C_5_14,
    eager_pfnmap_map=False, pfnmap_force_pte=False, inline_cmo=False, device_test=DEV_MAP_MEMORY,
    map_memory_unverified=True,
    mte_cap=True, mte_copy_tags=True, mte_memslot_rule=MTE_SLOT_SHARED,
    mte_fault_check=MTE_FAULT_SHARED_ONLINE, ipa_limit_ge=False, pkvm_ioremap_eperm=True)
ERA_6_2 = replace(ERA_5_14, era="6.2", span="6.2-6.8", first=(6, 2), changed_by=C_6_2,
                  mte_memslot_rule=MTE_SLOT_ALLOWED, mte_fault_check=MTE_FAULT_ALLOWED)
ERA_6_9 = replace(ERA_6_2, era="6.9", span="6.9-6.16", first=(6, 9), changed_by=C_6_8 + C_6_9, normal_nc=True,
                  map_memory_unverified=False, cap_user_memory2=True)
ERA_6_17 = replace(ERA_6_9, era="6.17", span="6.17", first=(6, 17), changed_by=C_6_12 + C_6_13 + C_6_17,
                   copy_tags_ebusy=True, device_test=DEV_PFNMAP_MAP_MEMORY, cacheable_pfnmap=True,
                   cpfn_memslot_check=True, cap_cacheable_pfnmap=True, hugetlb_mte=True)
ERA_6_18 = replace(ERA_6_17, era="6.18", span="6.18-7.0", first=(6, 18), changed_by=C_6_18,
                   page_leak_fixed=True, gmem_slots=True, cap_gmem_flags=True, gmem_mte_slot=True)
ERA_7_1 = replace(ERA_6_18, era="7.1", span="7.1", first=(7, 1), changed_by=C_6_19 + C_7_0 + C_7_1,
                  mte_check_before_lock=True, w_rule_device=True, pkvm_memslot_rules=True,
                  pkvm_no_mte=True, ls64_dabt=True, cap_sea_to_user=True)

ERA_7_2 = replace(ERA_7_1, era="7.2", span="7.2-7.3", first=(7, 2), changed_by=C_7_2 + C_7_3,
                  pfnmap_host_leaf=True, thp_adjust_device=True, perm_read_relax=True, gmem_mte_excl=True,
                  pkvm_ext_filter_all=True, hugetlb_mte=True, cap_user_memory2=True, cap_sea_to_user=True,
                  nvgrace_huge_fault=True, source_read="7.2.13, 7.3.4")

ERAS: tuple[Rules, ...] = (ERA_5_13, ERA_5_14, ERA_6_2, ERA_6_9, ERA_6_17, ERA_6_18, ERA_7_1, ERA_7_2)
ERA_NAMES: tuple[str, ...] = tuple(e.era for e in ERAS)


def era_of(v: KernelVersion) -> Rules:
    """The era a version belongs to (versions <= 5.13 map to era "5.13")."""
    found = ERAS[0]
    for e in ERAS:
        if (v.major, v.minor) >= e.first:
            found = e
    return found


@dataclass(frozen=True)
class Kernel:
    """A kernel as chosen by ``--kernel``: its version, era, variant and the rules in force.

    ``assumed``: set when ``version`` is newer than the model (a later series, or a point release
    after the newest the model knows in its series): the rules are those of ``assumed``, and
    :attr:`mark` is the visible "newer than the model, assuming X" every output shows."""

    version: KernelVersion
    rules: Rules
    assumed: KernelVersion | None = None

    @property
    def era(self) -> str:
        return self.rules.era

    @property
    def variant(self) -> str:
        return self.rules.variant

    @property
    def mark(self) -> str | None:
        return None if self.assumed is None else f"newer than the model, assuming {self.assumed}"

    def label(self) -> str:
        """``7.4 (newer than the model, assuming 7.3)`` or just ``6.12.118``."""
        return str(self.version) + (f" ({self.mark})" if self.mark else "")

    def as_dict(self) -> dict:
        return {"version": str(self.version), "era": self.rules.span, "variant": self.rules.variant,
                "assumed": None if self.assumed is None else str(self.assumed), "note": self.mark}


@dataclass(frozen=True)
class Backport:
    """A stable backport that changed a rule inside a stable series: from ``series``.``first``
    on, ``changes`` (Rules fields) apply, cited by ``reasons``.  ``first`` is the first point
    release known to have it (from the Debian changelog): conform can boot ``first - 1`` and
    ``first`` to see it."""

    series: tuple[int, int]
    first: int
    changes: tuple[tuple[str, object], ...]
    reasons: tuple[Reason, ...]


C_7_1_8 = (
    Reason("era/7.1.8/gmem-mte-cap", "memtypes conform on Debian 7.1.3, 7.1.7, 7.1.8 and 7.1.13 under QEMU 10.0.2 "
           "-cpu max: KVM_ENABLE_CAP(KVM_CAP_ARM_MTE) after a guest_memfd memslot succeeds on 7.1.7 and gives "
           "-EINVAL on 7.1.8 and 7.1.13 (6.18.15, 6.19.14 and 7.0.13 grant it); the check's text read in "
           "arch/arm64/kvm/arm.c kvm_vm_ioctl_enable_cap() 7.2.13",
           "7.1.8+: KVM_CAP_ARM_MTE is refused once a guest_memfd slot exists (a stable backport of the 7.2 "
           "rule, located between 7.1.7 and 7.1.8 by booting both)"),
)

BACKPORTS: tuple[Backport, ...] = (
    Backport((6, 1), 191, (("pfnmap_host_leaf", True),), C_6_1_191),
    Backport((6, 12), 113, (("pfnmap_host_leaf", True), ("thp_adjust_device", True)), C_6_12_113),
    Backport((7, 1), 8, (("gmem_mte_excl", True),), C_7_1_8),
)
"""Stable backports that change a KVM arm64 rule, by series and first point release (the x86
EPT quirk backport, 6.12.78, lives in linux/dma/x86_kvm.py)."""


def rules_for_version(v: KernelVersion) -> Rules:
    """Mainline rules for an exact version (point release included), with intra-era refinements
    and stable backports applied (see the module docstring; each carries its ``changed_by``)."""
    a = assumed_version(v)
    if a is not None:
        v = a
    r = era_of(v)
    if r.era == "5.14" and v.at_least(6, 1):
        r = replace(r, map_memory_unverified=False, changed_by=r.changed_by + C_6_1_READ, source_read="6.1.192")
    if r.era == "6.2" and v.at_least(6, 6):
        r = replace(r, map_memory_unverified=False)      # S-6.6 read: !pfn_is_map_memory
    if r.era == "6.2" and v.at_least(6, 8):
        r = replace(r, cap_user_memory2=True, changed_by=r.changed_by + C_6_8)
    if r.era == "6.9" and v.at_least(6, 12):
        r = replace(r, copy_tags_ebusy=True, changed_by=r.changed_by + C_6_12)
        if v.series == (6, 12):
            r = replace(r, source_read="6.12.118")
    if r.era == "6.9" and v.at_least(6, 13):
        r = replace(r, hugetlb_mte=True, changed_by=r.changed_by + C_6_13)
    if r.era == "6.17" and v.patch > 0:
        r = replace(r, page_leak_fixed=True, changed_by=r.changed_by + C_6_17_Y)
    if r.era == "6.18" and v.at_least(6, 19):
        r = replace(r, cap_sea_to_user=True, changed_by=r.changed_by + C_6_19)
    if r.era == "6.18" and v.at_least(7, 0):
        r = replace(r, pkvm_no_mte=True, ls64_dabt=True, changed_by=r.changed_by + C_7_0)
    for b in BACKPORTS:
        if v.series == b.series and v.patch >= b.first:
            r = replace(r, **dict(b.changes), changed_by=r.changed_by + b.reasons)
    return r


REFINEMENTS: tuple[tuple[int, int, int], ...] = ((6, 6, 0), (6, 8, 0), (6, 12, 0), (6, 13, 0), (6, 17, 1),
                                                  (6, 19, 0), (7, 0, 0))
"""Versions inside an era where :func:`rules_for_version` changes a rule (kept beside it)."""


def rule_points(lo: KernelVersion, hi: KernelVersion) -> list[str]:
    """The versions from ``lo`` to ``hi`` (inclusive) where some rule changes: ``lo`` itself,
    every era's first version and every intra-era refinement in between, and ``hi``."""
    pts = {(lo.major, lo.minor, lo.patch), (hi.major, hi.minor, hi.patch)}
    for e in ERAS:
        pts.add(e.first + (0,))
    pts |= set(REFINEMENTS)
    pts |= {b.series + (b.first,) for b in BACKPORTS}
    key = lambda t: t  # noqa: E731
    lo_t, hi_t = (lo.major, lo.minor, lo.patch), (hi.major, hi.minor, hi.patch)
    out = sorted((p for p in pts if lo_t <= p <= hi_t), key=key)
    return [f"{a}.{b}" + (f".{c}" if c else "") for a, b, c in out]


def kernel_specs(text: str, *, where: str = "--kernel") -> list[str]:
    """``6.12,6.17+mine`` or ``6.9..7.1`` (or both, comma-separated) -> the kernel specs, each
    resolvable by :func:`kernel`.  A range ``A..B[+VARIANT]`` lists A, every version in between
    where a rule changes (:func:`rule_points`) and B, each with the variant if given."""
    out: list[str] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            raise InputError(f"'{text}' has an empty item", where=where,
                             expected="VERSION[+VARIANT], comma-separated, or A..B")
        base, variant = split_variant(item)
        suffix = f"+{variant}" if variant else ""
        if ".." in base:
            a, _, b = base.partition("..")
            lo, hi = parse_version(a, where=where), parse_version(b, where=where)
            if lo > hi:
                raise InputError(f"range {base} runs backwards", where=where, expected="A..B with A <= B")
            specs = [v + suffix for v in rule_points(lo, hi)]
        else:
            specs = [item]
        for sp in specs:
            kernel(sp, where=where)            # validate (unknown variant, outside range, ...)
            if sp not in out:
                out.append(sp)
    return out


@lru_cache(maxsize=256)
def kernel(spec: str, *, where: str = "--kernel") -> Kernel:
    """Resolve ``6.12``, ``6.12.118``, ``v7.3-rc7`` or ``6.17+mte-rfc-2020`` to a :class:`Kernel`.

    A version newer than the model (``7.4``, ``8.0``, ``7.3.9``) gets the newest rules the model
    has for it and :attr:`Kernel.mark`.  Raises :class:`InputError` for a malformed version or one
    before 5.0, an unknown variant, or a variant that does not apply to the version's era."""
    from memtypes.linux.kvm.variants import apply_variant  # variants import eras

    base, variant = split_variant(spec)
    v = parse_version(base, where=where)
    r = rules_for_version(v)
    if variant == "":
        raise InputError(f"'{spec}' has an empty variant", where=where, expected="VERSION[+VARIANT]")
    if variant:
        r = apply_variant(r, variant, where=where)
    return Kernel(v, r, assumed_version(v))


def era_rules(era: str) -> Rules:
    """Rules for an era by its first version (``"6.9"``), as the checker names them."""
    for e in ERAS:
        if e.era == era:
            return e
    raise InputError(f"unknown era '{era}'", where="kernel", expected=", ".join(ERA_NAMES))
