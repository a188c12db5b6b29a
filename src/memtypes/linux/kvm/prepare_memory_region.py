"""``kvm_arch_prepare_memory_region()``: the memslot rejection rules P0-P7.

Read top to bottom like arch/arm64/kvm/mmu.c.  The rules apply to CREATE, MOVE and FLAGS_ONLY;
DELETE returns 0 early (except pKVM's P6).  The VMA walk visits every VMA intersecting the slot's
userspace range (``find_vma_intersection``), skips holes, and stops at the first failing VMA;
inside it P3/P3' runs before the PFNMAP block (P2, then P4).  reference/kernel-kvm.md section 3.

| rule | errno | versions |
|------|-------|----------|
| P1 IPA limit | -EFAULT | all |
| P2 PFNMAP + dirty logging | -EINVAL | all |
| P3 MTE VM + VM_SHARED | -EINVAL | 5.14-6.1 |
| P3' MTE VM + no VM_MTE_ALLOWED | -EINVAL | 6.2+ |
| P4 cacheable PFNMAP without FWB && DIC | -EINVAL | 6.17+ |
| P5 gmem slot that is not gmem-only | -EINVAL | 6.18+ (before: gmem slots refused, errno UNVERIFIED) |
| P8 gmem slot in an MTE VM | -EINVAL | 7.2+ (read in 7.2.13 and 7.3.4) |
| P6 pKVM DELETE/MOVE after the hyp VM exists | -EPERM | 7.1 |
| P7 pKVM slot flags LOG_DIRTY/READONLY | -EPERM | 7.1 |
| P0 PFNMAP pre-mapped Device at creation | (map errno) | <=5.13 |
| flags: gmem slot with LOG_DIRTY_PAGES or READONLY (kvm_main.c, before P6) | -EINVAL | gmem eras (6.12.118, 7.3.4 read) |
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason

from memtypes.linux.kvm import eras
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import (
    EFAULT, EINVAL, EPERM, KVM_MEM_ENABLE_CACHEABLE_PFNMAP, KVM_MR_CREATE, KVM_MR_DELETE, KVM_MR_MOVE,
    MemslotResult, Slot, Vm,
)
from memtypes.linux.kvm.phys_addr_ioremap import kvm_phys_addr_ioremap
from memtypes.linux.mm import Vma

_SRC = "arch/arm64/kvm/mmu.c kvm_arch_prepare_memory_region()"

R_OK = Reason("kvm/prepare_memory_region/ok", f"{_SRC} (S-5.8, S-6.17, S-7.1)", "memslot accepted")
R_DELETE = Reason("kvm/prepare_memory_region/delete", f"{_SRC} change-type filter (S-5.8, S-6.17)",
                  "DELETE: nothing to check, 0")
R_P1 = Reason("kvm/prepare_memory_region/P1", f"{_SRC} (S-5.8 '>=', S-6.x '>')",
              "slot end beyond the VM's IPA size: -EFAULT (when '>=' became '>' is unknown)", unverified=True)
R_P2 = Reason("kvm/prepare_memory_region/P2", f"{_SRC} all versions (S-5.8, S-6.17)",
              "VM_PFNMAP VMA in a slot with KVM_MEM_LOG_DIRTY_PAGES: -EINVAL")
R_P3 = Reason("kvm/prepare_memory_region/P3", f"{_SRC} v5.14 (M-mte)",
              "5.14-6.1: MTE VM and a VM_SHARED VMA: -EINVAL")
R_P3P = Reason("kvm/prepare_memory_region/P3'", f"{_SRC} kvm_vma_mte_allowed() v6.2+ (M-mte62; M-aneesh "
               "not merged)", "MTE VM and a VMA without VM_MTE_ALLOWED (PFNMAP included): -EINVAL")
R_P4 = Reason("kvm/prepare_memory_region/P4", f"{_SRC} v6.17 kvm_supports_cacheable_pfnmap() (M-cpfn)",
              "cacheable VM_PFNMAP VMA and the host lacks FWB && DIC: -EINVAL")
R_P4_FLAG = Reason("kvm/prepare_memory_region/P4-flag", "variant cpfn-memslot-flag (M-cpfn v4-v6)",
                   "KVM_MEM_ENABLE_CACHEABLE_PFNMAP on a host without FWB && DIC: -EINVAL", unverified=True)
R_P5 = Reason("kvm/prepare_memory_region/P5", f"{_SRC} v6.18 (M-gmem)",
              "guest_memfd slot that is not gmem-only (private-only memory; no CoCo VMs on arm64): -EINVAL")
R_P5_OLD = Reason("kvm/prepare_memory_region/gmem-unsupported", "virt/kvm/kvm_main.c check_memory_region_flags() "
                  "before v6.18 (section 11: pre-6.18 errno for gmem slots on arm64)",
                  "before 6.18 arm64 does not accept KVM_MEM_GUEST_MEMFD (errno assumed -EINVAL)",
                  unverified=True)
R_P8 = Reason("kvm/prepare_memory_region/P8", f"{_SRC} \"guest_memfd is incompatible with MTE\" 7.2.13 and "
              "7.3.4 (Debian linux-source-7.2, -7.3)",
              "7.2+: a guest_memfd memslot in an MTE VM: -EINVAL (checked after P5, before the VMA walk)")
R_P8_OBSERVED = Reason("kvm/prepare_memory_region/P8", "memtypes conform on Debian 6.18.5-7.1.13 (see era "
                       "6.18/gmem-mte-slot); the check's text read in 7.2.13", "6.18+: a guest_memfd memslot in "
                       "an MTE VM: -EINVAL (observed; the first 6.18 release is not verified)", unverified=True)
R_P5_OLD_READ = Reason("kvm/prepare_memory_region/gmem-unsupported", "virt/kvm/kvm_main.c "
                       "check_memory_region_flags() 6.12.118 (Debian linux-source-6.12)",
                       "6.12: KVM_MEM_GUEST_MEMFD is a valid flag only when kvm_arch_has_private_mem(), which arm64 "
                       "lacks: -EINVAL before the arch hook")
R_FLAGS_GMEM = Reason("kvm/check_memory_region_flags/gmem", "virt/kvm/kvm_main.c check_memory_region_flags() "
                      "6.12.118, 7.2.13, 7.3.4",
                      "a guest_memfd slot cannot log dirty pages or be read-only: -EINVAL, before the arch hook")
R_P6 = Reason("kvm/prepare_memory_region/P6", f"{_SRC} 7.1 (S-7.1)",
              "protected VM: DELETE or MOVE after the hyp VM exists: -EPERM", unverified=True)
R_P7 = Reason("kvm/prepare_memory_region/P7", f"{_SRC} 7.1 (S-7.1)",
              "protected VM: LOG_DIRTY_PAGES or READONLY slot flags: -EPERM (order vs P1/P5 assumed)",
              unverified=True)
R_P6_72 = Reason("kvm/prepare_memory_region/P6", f"{_SRC} 7.2.13 and 7.3.4",
                 "protected VM: DELETE or MOVE after the hyp VM exists: -EPERM (before the change-type filter)")
R_P7_72 = Reason("kvm/prepare_memory_region/P7", f"{_SRC} 7.2.13 and 7.3.4",
                 "protected VM: a new slot with LOG_DIRTY_PAGES or READONLY: -EPERM (before P1 and P5)")
R_HOLES = Reason("kvm/prepare_memory_region/holes", f"{_SRC} find_vma_intersection() (S-6.17; v5.8 find_vma)",
                 "holes are skipped; a slot with no VMA at all passes")


def _fail(errno: str, rule: str, rs: list) -> MemslotResult:
    return MemslotResult(False, errno, rule, reasons=tuple(rs))


MEMSLOT_CHECKS = ("P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8")
"""The checks a variant may replace (hook ``memslot_P1`` ... ; ``P3`` is P3 and P3', ``P4`` both
the merged per-VMA check and the cpfn-memslot-flag slot-wide one, ``P0`` the <=5.13 pre-mapping,
``P8`` the guest_memfd-in-an-MTE-VM refusal).  The generic flag checks of
``check_memory_region_flags()`` (virt/kvm, before the arch hook) are not hooks."""


def _p6(rules, host, vm, change, slot, vma, rs):
    if rules.pkvm_memslot_rules and vm.protected and vm.hyp_vm_exists and change in (KVM_MR_DELETE, KVM_MR_MOVE):
        rs.append(R_P6_72 if rules.era == "7.2" else R_P6)
        return EPERM
    return None


def _p7(rules, host, vm, change, slot, vma, rs):
    if rules.pkvm_memslot_rules and vm.protected and (slot.log_dirty or slot.readonly):
        rs.append(R_P7_72 if rules.era == "7.2" else R_P7)
        return EPERM
    return None


def _p1(rules, host, vm, change, slot, vma, rs):
    end = slot.base_gfn + slot.npages
    limit = 1 << (vm.ipa_bits - 12)
    if (end >= limit) if rules.ipa_limit_ge else (end > limit):
        rs.append(R_P1)
        return EFAULT
    return None


def _p5(rules, host, vm, change, slot, vma, rs):
    if slot.gmem and not slot.gmem_only:
        rs.append(R_P5)
        return EINVAL
    return None


def _p8(rules, host, vm, change, slot, vma, rs):
    if slot.gmem and rules.gmem_mte_slot and vm.mte:
        rs.append(R_P8 if rules.gmem_mte_excl else R_P8_OBSERVED)
        return EINVAL
    return None


def _p4(rules, host, vm, change, slot, vma, rs):
    if vma is None:     # the slot-wide check of the cpfn-memslot-flag series
        if rules.cpfn_slot_flag and slot.flags & KVM_MEM_ENABLE_CACHEABLE_PFNMAP and not (host.fwb and host.dic):
            rs.append(R_P4_FLAG)
            return EINVAL
        return None
    if (rules.cpfn_memslot_check and not rules.cpfn_slot_flag and vma.cacheable
            and not (host.fwb and host.dic)):
        rs.append(R_P4)
        return EINVAL
    return None


def _p3(rules, host, vm, change, slot, vma, rs):
    if vm.mte:
        if rules.mte_memslot_rule == eras.MTE_SLOT_SHARED and vma.shared:
            rs.append(R_P3)
            return EINVAL
        if rules.mte_memslot_rule == eras.MTE_SLOT_ALLOWED and not vma.mte_allowed:
            rs.append(R_P3P)
            return EINVAL
    return None


def _p2(rules, host, vm, change, slot, vma, rs):
    if slot.log_dirty:
        rs.append(R_P2)
        return EINVAL
    return None


def _p0(rules, host, vm, change, slot, vma, rs):
    if rules.eager_pfnmap_map:
        return kvm_phys_addr_ioremap(rules, host, not slot.readonly, True)
    return None


_CHECKS = {"P0": _p0, "P1": _p1, "P2": _p2, "P3": _p3, "P4": _p4, "P5": _p5, "P6": _p6, "P7": _p7,
           "P8": _p8}


def _check(name, rules, host, vm, change, slot, vma, rs):
    """Check ``name`` (P0..P7): the era's, or the variant's ``memslot_<name>`` hook in its place
    (errno or None; P0: the pre-mapping FaultResult or None)."""
    fn = _CHECKS[name]
    h = rules.hook("memslot_" + name) if rules.hooks else None
    if h is not None:
        return h(rules, host, vm, change, slot, vma, rs,
                 lambda: fn(rules, host, vm, change, slot, vma, rs))
    return fn(rules, host, vm, change, slot, vma, rs)


@lru_cache(maxsize=65536)
def kvm_arch_prepare_memory_region(rules: Rules, host: Features, vm: Vm, change: str, slot: Slot,
                                   vmas: tuple[Vma | None, ...]) -> MemslotResult:
    """Accept or reject a memslot change.  ``vmas``: the VMAs over the slot's userspace range in
    address order (None = a hole)."""
    rs: list[Reason] = []
    # virt/kvm/kvm_main.c check_memory_region_flags() runs before the arch hook
    if slot.gmem and not rules.gmem_slots:
        rs.append(R_P5_OLD_READ if rules.source_read == "6.12.118" else R_P5_OLD)
        return _fail(EINVAL, "P5", rs)
    if slot.gmem and (slot.log_dirty or slot.readonly):
        rs.append(R_FLAGS_GMEM)
        return _fail(EINVAL, "flags", rs)
    a = (rules, host, vm, change, slot)
    err = _check("P6", *a, None, rs)
    if err:
        return _fail(err, "P6", rs)
    if change == KVM_MR_DELETE:
        rs.append(R_DELETE)
        return MemslotResult(True, reasons=tuple(rs))
    for name in ("P7", "P1", "P5", "P8", "P4"):
        err = _check(name, *a, None, rs)
        if err:
            return _fail(err, name, rs)

    premapped = None
    for vma in vmas:
        if vma is None:
            rs.append(R_HOLES)
            continue
        err = _check("P3", *a, vma, rs)
        if err:
            return _fail(err, "P3'" if rs and rs[-1] is R_P3P else "P3", rs)
        if not vma.pfnmap:
            continue
        for name in ("P2", "P4"):
            err = _check(name, *a, vma, rs)
            if err:
                return _fail(err, name, rs)
        if premapped is None:
            premapped = _check("P0", *a, vma, rs)
    rs.append(R_OK)
    return MemslotResult(True, premapped=premapped, reasons=tuple(rs))


def prepare_memory_region(rules: Rules, host: Features, vm: Vm, slot: Slot, vmas: tuple[Vma | None, ...],
                          change: str = KVM_MR_CREATE) -> MemslotResult:
    """Convenience wrapper with the change type last (default CREATE)."""
    return kvm_arch_prepare_memory_region(rules, host, vm, change, slot, vmas)


