"""One memslot and one fault, step by step, as ``memtypes explain`` reports them.

:func:`explain` creates the VM (optionally enabling KVM_CAP_ARM_MTE before any vCPU), mmaps the
backing, creates the memslot over it, optionally mmaps another backing over the slot's range
afterwards (KVM_CAP_SYNC_MMU: the guest follows), faults once, and combines the stage-2 result
with each usual guest stage-1 choice through the arch engine.  It only collects the values and
reasons the kernel functions return; it decides nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from memtypes.arch import R_LINUX_MAIR, USUAL_S1, combine
from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux import drivers
from memtypes.linux.drivers import GMEM_MMAP_VMA, R_GMEM_MMAP, Backing
from memtypes.linux.kvm.arm import KVM_CAP_ARM_MTE, enable_cap
from memtypes.linux.kvm.eras import Kernel
from memtypes.linux.kvm.handle_guest_abort import kvm_handle_guest_abort
from memtypes.linux.kvm.kvm_host import (
    KVM_MEM_GUEST_MEMFD, SLOT_FLAG_NAMES, Fault, FaultResult, MemslotResult, Slot, Vm,
)
from memtypes.linux.kvm.prepare_memory_region import kvm_arch_prepare_memory_region
from memtypes.linux.kvm.user_mem_abort import user_mem_abort
from memtypes.linux.mm import Vma

FAULTS = ("read", "write", "exec", "read-perm")
"""``read-perm``: a stage-2 permission fault on a data read (neither write nor exec), as a nested
guest's read-protected stage 2 or a page mapped without R produces."""
HVA_ALIGNS = ("4K", "2M", "1G")
DEFAULT_HVA_ALIGN = "2M"
"""Default ``--hva-align``: the VMM's mapping lands 2 MiB-aligned (what mmap() gives a large
anonymous or device mapping in practice), so a stage-2 block is possible where the backing allows."""
SLOT_FLAGS = tuple(SLOT_FLAG_NAMES) + ("gmem_only",)

R_NOT_A_SLOT = Reason("kvm/vgic/not-a-memslot", "arch/arm64/kvm/vgic/vgic-v2.c vgic_v2_map_resources() "
                      "(all versions; S-6.17 kvm_phys_addr_ioremap)",
                      "the GICV frame is mapped by the vgic, not through a memslot")
R_NO_DRIVER = Reason("drivers/not-in-kernel", "drivers/vfio/pci/nvgrace-gpu (v6.9, M-pull69)",
                     "this backing's driver is not in this kernel: nothing to map")
R_REMAP = Reason("kvm/sync-mmu/remap", "KVM_CAP_SYNC_MMU (16); virt/kvm/kvm_main.c mmu notifiers -> "
                 "kvm_unmap_gfn_range() (M-mte v2 thread, Sep 2020)",
                 "the VMM mmapped a new backing over the slot's range after creating it: the old "
                 "stage-2 entries are unmapped and the next fault sees the new VMA (no memslot re-check)")


@dataclass(frozen=True)
class Explanation:
    kernel: Kernel
    host_name: str
    host: Features
    backing: str
    remap: str | None
    fault_kind: str
    vm_mte: tuple[str, str | None] | None      # (result, errno) of KVM_ENABLE_CAP(205), if asked
    memslot: MemslotResult | None               # None: not a memslot / driver absent
    memslot_na: str | None
    fault: FaultResult
    guest: tuple[tuple[str, str], ...]
    reasons: tuple[Reason, ...]
    hva_align: str = DEFAULT_HVA_ALIGN
    vm_mte_after: tuple[str, str | None] | None = None  # KVM_ENABLE_CAP(205) after the memslot, if asked

    def as_dict(self) -> dict:
        f = self.fault.as_dict()
        ms = self.memslot.as_dict() if self.memslot else {"result": "n/a", "errno": None, "rule": None}
        if self.memslot is not None and self.memslot.premapped is not None:
            ms["premapped"] = self.memslot.premapped.s2
        d = {
            "kernel": self.kernel.as_dict(),
            "host": {"name": self.host_name, "features": {k: int(v) for k, v in self.host.as_dict().items()}},
            "backing": self.backing,
            "remap": self.remap,
            "fault_kind": self.fault_kind,
            "hva_align": self.hva_align,
            "vm": {"mte": ({"result": self.vm_mte[0], "errno": self.vm_mte[1]} if self.vm_mte else None)},
            **({"vm_mte_after_memslot": {"result": self.vm_mte_after[0], "errno": self.vm_mte_after[1]}}
               if self.vm_mte_after else {}),
            "memslot": ms,
            "fault": f,
            "guest": dict(self.guest),
            "reasons": [r.as_dict() for r in self.reasons],
        }
        return d


def parse_slot_flags(text: str | None) -> tuple[int, bool]:
    """``log_dirty,readonly,gmem_only`` -> (memslot flags, gmem_only)."""
    flags, gmem_only = 0, False
    parts = [p.strip() for p in (text or "").split(",")] if (text or "").strip() else []
    if any(not p for p in parts):
        raise InputError(f"'{text}' has an empty flag", where="--slot-flags",
                         expected="comma-separated flags: " + ", ".join(SLOT_FLAGS))
    for part in parts:
        if part == "gmem_only":
            gmem_only = True
        elif part in SLOT_FLAG_NAMES:
            flags |= SLOT_FLAG_NAMES[part]
        else:
            raise InputError(f"unknown slot flag '{part}'", where="--slot-flags", expected=", ".join(SLOT_FLAGS))
    return flags, gmem_only


def check_fault(kind: str) -> Fault:
    if kind not in FAULTS:
        raise InputError(f"unknown fault kind '{kind}'", where="--fault", expected=", ".join(FAULTS))
    return Fault(write=kind == "write", exec=kind == "exec", perm=kind == "read-perm")


def check_hva_align(text: str) -> str:
    if text not in HVA_ALIGNS:
        raise InputError(f"unknown alignment '{text}'", where="--hva-align", expected=", ".join(HVA_ALIGNS))
    return text


def _remap_vma(kind: str, rules) -> tuple[Vma | None, Reason | None]:
    if kind == "gicv2-gicv":
        raise InputError("the GICv2 GICV frame cannot be mmapped by the VMM", where="--remap",
                         expected=", ".join(k for k in drivers.KINDS if k != "gicv2-gicv"))
    if kind == "guest-memfd":
        return GMEM_MMAP_VMA, R_GMEM_MMAP
    b = drivers.mmap_for(kind, rules)
    return b.vma, b.reason


def _available(b: Backing, k: Kernel) -> bool:
    if b.kind.startswith("nvgrace-"):
        # the driver came with the Normal-NC series in 6.9 (M-pull69); NVIDIA's 6.8-based kernels
        # (nvidia-vma-memtype) carry it too.  A variant that merely turns on NC (normal-nc-for-all-io
        # on 5.14-6.8) does not add the driver.
        v = k.version
        return (v.major, v.minor) >= b.since or k.rules.vma_memtype_decides
    return True


def explain(k: Kernel, host: Features, backing: str, *, host_name: str = "", vm_mte: bool = False,
            slot_flags: str | None = None, remap: str | None = None, fault: str = "read",
            hva_align: str = DEFAULT_HVA_ALIGN, protected: bool = False,
            mte_after_memslot: bool = False) -> Explanation:
    """Run one memslot creation (+ optional remap) and one fault; see the module docstring.

    ``fault``: one of :data:`FAULTS`; ``hva_align``: where the VMM's mapping lands, one of
    :data:`HVA_ALIGNS` (default 2M: see :data:`DEFAULT_HVA_ALIGN`); ``host.pkvm``: the host runs
    pKVM; ``protected``: the VM is a pKVM protected VM (needs ``host.pkvm``).
    ``mte_after_memslot``: enable KVM_CAP_ARM_MTE after the memslot exists (before any vCPU), so
    the memslot checks ran on a VM without MTE and only the fault-time checks see it."""
    drivers.check_kind(backing, where="--backing")
    if remap is not None:
        drivers.check_kind(remap, where="--remap")
    f = check_fault(fault)
    check_hva_align(hva_align)
    flags, gmem_only = parse_slot_flags(slot_flags)
    rules = k.rules
    rs: list[Reason] = []
    if k.mark:
        rs.append(Reason("kernel/newer-than-model", "linux/version.py KNOWN_RELEASES, NEWEST",
                         f"kernel {k.version} is {k.mark}: its rules are taken to be those of {k.assumed}",
                         unverified=True))

    if protected and not host.pkvm:
        raise InputError("a protected VM needs a pKVM host", where="--protected", expected="a host with pkvm=1")
    vm = Vm(pkvm=host.pkvm, protected=protected)
    mte_step = None
    if vm_mte:
        vm, err, why = enable_cap(rules, host, vm, KVM_CAP_ARM_MTE)
        mte_step = ("error" if err else "ok", err)
        rs.append(why)

    b = drivers.mmap_for(backing, rules)
    if b.reason:
        rs.append(b.reason)
    rs.extend(b.notes)
    slot = Slot(flags=flags | (KVM_MEM_GUEST_MEMFD if b.gmem else 0), gmem=b.gmem, gmem_only=gmem_only,
                hva_align=hva_align)

    memslot: MemslotResult | None = None
    na = None
    if b.vgic:
        rs.append(R_NOT_A_SLOT)
        na = "not a memslot"
    elif not _available(b, k):
        rs.append(R_NO_DRIVER)
        na = "driver not in this kernel"
    else:
        vmas = (b.vma,) if b.vma is not None else ()
        memslot = kvm_arch_prepare_memory_region(rules, host, vm, "create", slot, vmas)
        rs.extend(memslot.reasons)

    mte_after = None
    if mte_after_memslot and not vm_mte:
        if memslot is not None and memslot.ok and b.gmem:
            vm = replace(vm, gmem_slot=True)     # the guest_memfd slot now exists (7.2: P8's twin)
        vm, err, why = enable_cap(rules, host, vm, KVM_CAP_ARM_MTE)
        mte_after = ("error" if err else "ok", err)
        rs.append(why)

    if na == "driver not in this kernel" or (memslot is not None and not memslot.ok):
        result = FaultResult("skipped")
    else:
        premapped = memslot.premapped if memslot is not None else None
        if remap is not None and not b.vgic:
            vma, why = _remap_vma(remap, rules)
            rs.append(R_REMAP)
            if why:
                rs.append(why)
            if remap in drivers.KINDS and remap != "guest-memfd":
                rs.extend(drivers.mmap_for(remap, rules).notes)
            b = Backing(remap, vma, vma.phys if vma else None, gmem=b.gmem)
            premapped = None
        if premapped is not None and not f.exec and not (f.write and slot.readonly):
            result = premapped
        elif premapped is not None and f.exec:
            # the pre-mapping is not executable: the exec access takes a permission fault
            result = user_mem_abort(rules, host, vm, slot, b.vma, replace(f, perm=True))
        else:
            result = kvm_handle_guest_abort(rules, host, vm, slot, b, f)
        rs.extend(result.reasons)

    guest: tuple[tuple[str, str], ...] = ()
    if result.mapped and result.memattr is not None:
        feats = replace(host, mte=host.mte and vm.mte)
        guest = tuple((name, combine(s1, result.memattr, fwb=host.fwb, features=feats).label)
                      for name, s1 in USUAL_S1.items())
        rs.append(R_LINUX_MAIR)  # the guest table assumes Linux's MAIR bytes (arch.md 1.4, UNVERIFIED)
    seen: set[Reason] = set()
    reasons = tuple(r for r in rs if not (r in seen or seen.add(r)))
    return Explanation(k, host_name, host, backing, remap, fault, mte_step, memslot, na, result, guest,
                       reasons, hva_align, mte_after)
