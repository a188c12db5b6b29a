"""KVM arm64 eras: one :class:`Rules` value per era, each derived from the one before.

An era is a frozen bundle of rule switches read by ``kvm_arch_prepare_memory_region``,
``user_mem_abort``, ``gmem_abort``, ``kvm_vm_ioctl_check_extension`` / ``enable_cap`` and
``kvm_vm_ioctl_mte_copy_tags``.  Each later era is ``replace(previous, ...)`` with only what
changed and a ``changed_by`` Reason saying which release/commit changed it (reference/
kernel-kvm.md section 1).  Eras, by first version: 5.13 (stands for <=5.13), 5.14, 6.2, 6.9,
6.17, 6.18, 7.1.

Intra-era changes are applied by :func:`kernel` from the exact version: KVM_ARM_MTE_COPY_TAGS
-EBUSY under dirty logging from 6.12 (inside 6.9-6.16); the user_mem_abort page-leak fix in
6.17.y (patch > 0) as well as 6.18; the 7.0 changes (pKVM refuses KVM_CAP_ARM_MTE for every
guest, LS64 DABT injection) inside the 6.18-7.0 era.

``kernel("6.17+mte-rfc-2020")`` returns a :class:`Kernel` (version, era, variant, rules).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux.version import KernelVersion, parse_version, split_variant

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
    cap_cacheable_pfnmap: bool = False  # cap 243 (6.17)
    cap_gmem_flags: bool = False       # cap 244 (6.18)
    mte_copy_tags: bool = False        # KVM_ARM_MTE_COPY_TAGS ioctl (5.14)
    copy_tags_ebusy: bool = False      # -EBUSY writing tags under dirty logging (6.12)
    # --- user_mem_abort ---
    device_test: str = DEV_PFN_VALID
    map_memory_unverified: bool = False  # 5.14-6.5: !pfn_is_map_memory assumed (switch version UNVERIFIED)
    pfnmap_force_pte: bool = True      # <=5.13: PFNMAP always force_pte
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

    @property
    def name(self) -> str:
        return self.era if self.variant == "mainline" else f"{self.era}+{self.variant}"

    def __hash__(self) -> int:
        # cached: Rules is a memoisation key in the fault-path hot loops
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(tuple(getattr(self, f) for f in self.__dataclass_fields__))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        # never carry the cached hash to another process (str hashes are salted per process)
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

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

ERA_5_13 = Rules(era="5.13", span="<=5.13", first=(5, 0))
ERA_5_14 = replace(
    ERA_5_13, era="5.14", span="5.14-6.1", first=(5, 14), changed_by=C_5_14,
    eager_pfnmap_map=False, pfnmap_force_pte=False, inline_cmo=False, device_test=DEV_MAP_MEMORY,
    map_memory_unverified=True,
    mte_cap=True, mte_copy_tags=True, mte_memslot_rule=MTE_SLOT_SHARED,
    mte_fault_check=MTE_FAULT_SHARED_ONLINE, ipa_limit_ge=False)
ERA_6_2 = replace(ERA_5_14, era="6.2", span="6.2-6.8", first=(6, 2), changed_by=C_6_2,
                  mte_memslot_rule=MTE_SLOT_ALLOWED, mte_fault_check=MTE_FAULT_ALLOWED)
ERA_6_9 = replace(ERA_6_2, era="6.9", span="6.9-6.16", first=(6, 9), changed_by=C_6_9, normal_nc=True,
                  map_memory_unverified=False)
ERA_6_17 = replace(ERA_6_9, era="6.17", span="6.17", first=(6, 17), changed_by=C_6_12 + C_6_17,
                   copy_tags_ebusy=True, device_test=DEV_PFNMAP_MAP_MEMORY, cacheable_pfnmap=True,
                   cpfn_memslot_check=True, cap_cacheable_pfnmap=True)
ERA_6_18 = replace(ERA_6_17, era="6.18", span="6.18-7.0", first=(6, 18), changed_by=C_6_18,
                   page_leak_fixed=True, gmem_slots=True, cap_gmem_flags=True)
ERA_7_1 = replace(ERA_6_18, era="7.1", span="7.1", first=(7, 1), changed_by=C_7_0 + C_7_1,
                  mte_check_before_lock=True, w_rule_device=True, pkvm_memslot_rules=True,
                  pkvm_no_mte=True, ls64_dabt=True)

ERAS: tuple[Rules, ...] = (ERA_5_13, ERA_5_14, ERA_6_2, ERA_6_9, ERA_6_17, ERA_6_18, ERA_7_1)
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
    """A kernel as chosen by ``--kernel``: its version, era, variant and the rules in force."""

    version: KernelVersion
    rules: Rules

    @property
    def era(self) -> str:
        return self.rules.era

    @property
    def variant(self) -> str:
        return self.rules.variant

    def as_dict(self) -> dict:
        return {"version": str(self.version), "era": self.rules.span, "variant": self.rules.variant}


def rules_for_version(v: KernelVersion) -> Rules:
    """Mainline rules for an exact version, with intra-era refinements applied."""
    r = era_of(v)
    if r.era == "6.2" and v.at_least(6, 6):
        r = replace(r, map_memory_unverified=False)      # S-6.6 read: !pfn_is_map_memory
    if r.era == "6.9" and v.at_least(6, 12):
        r = replace(r, copy_tags_ebusy=True, changed_by=r.changed_by + C_6_12)
    if r.era == "6.17" and v.patch > 0:
        r = replace(r, page_leak_fixed=True, changed_by=r.changed_by + C_6_17_Y)
    if r.era == "6.18" and v.at_least(7, 0):
        r = replace(r, pkvm_no_mte=True, ls64_dabt=True, changed_by=r.changed_by + C_7_0)
    return r


@lru_cache(maxsize=256)
def kernel(spec: str, *, where: str = "--kernel") -> Kernel:
    """Resolve ``6.12``, ``6.17.3`` or ``6.17+mte-rfc-2020`` to a :class:`Kernel`.

    Raises :class:`InputError` for a version outside 5.0 .. 7.1, an unknown variant, or a
    variant that does not apply to the version's era."""
    from memtypes.linux.kvm.variants import apply_variant  # variants import eras

    base, variant = split_variant(spec)
    v = parse_version(base, where=where)
    r = rules_for_version(v)
    if variant == "":
        raise InputError(f"'{spec}' has an empty variant", where=where, expected="VERSION[+VARIANT]")
    if variant:
        r = apply_variant(r, variant, where=where)
    return Kernel(v, r)


def era_rules(era: str) -> Rules:
    """Rules for an era by its first version (``"6.9"``), as the checker names them."""
    for e in ERAS:
        if e.era == era:
            return e
    raise InputError(f"unknown era '{era}'", where="kernel", expected=", ".join(ERA_NAMES))
