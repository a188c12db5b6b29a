"""The KVM objects the rules read (after include/linux/kvm_host.h): the VM, a memslot, a fault,
and the results the decision functions return.  All frozen, slotted and hashable."""

from __future__ import annotations

from dataclasses import dataclass

from memtypes.arch.reason import Reason

# memslot flags (include/uapi/linux/kvm.h)
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1
KVM_MEM_GUEST_MEMFD = 1 << 2
KVM_MEM_ENABLE_CACHEABLE_PFNMAP = 1 << 3   # proposed only (cacheable-PFNMAP v4-v6); value UNVERIFIED

SLOT_FLAG_NAMES = {"log_dirty": KVM_MEM_LOG_DIRTY_PAGES, "readonly": KVM_MEM_READONLY,
                   "cacheable_pfnmap": KVM_MEM_ENABLE_CACHEABLE_PFNMAP}
"""``--slot-flags`` names; ``gmem_only`` is not a memslot flag but the guest_memfd's
GUEST_MEMFD_FLAG_MMAP (see :class:`Slot`)."""

# memslot change types (enum kvm_mr_change)
KVM_MR_CREATE = "create"
KVM_MR_DELETE = "delete"
KVM_MR_MOVE = "move"
KVM_MR_FLAGS_ONLY = "flags_only"

# errno names as the VMM sees them
EFAULT = "-EFAULT"
EINVAL = "-EINVAL"
ENOEXEC = "-ENOEXEC"
EPERM = "-EPERM"
EBUSY = "-EBUSY"
EAGAIN = "-EAGAIN"

# stage-2 memory types (reference section 9 outputs)
S2_NORMAL = "NORMAL"
S2_NC = "NC"
S2_DEVICE = "DEVICE"


@dataclass(frozen=True, slots=True)
class Vm:
    """``struct kvm`` as far as the rules go."""

    mte: bool = False             # KVM_CAP_ARM_MTE enabled (kvm_has_mte)
    protected: bool = False       # pKVM protected VM (implies ``pkvm``)
    created_vcpus: int = 0
    hyp_vm_exists: bool = False   # pKVM: the hyp VM was created (first vCPU run)
    ipa_bits: int = 40
    pkvm: bool = False            # the host runs pKVM (kvm-arm.mode=protected); any VM on it
    gmem_slot: bool = False       # a memslot bound to a guest_memfd exists (7.2: KVM_CAP_ARM_MTE refused)

    @property
    def on_pkvm(self) -> bool:
        return self.pkvm or self.protected


@dataclass(frozen=True, slots=True)
class Slot:
    """A memslot: guest frame range and flags.  ``gmem``: bound to a guest_memfd
    (KVM_MEM_GUEST_MEMFD); ``gmem_only``: that guest_memfd was created with
    GUEST_MEMFD_FLAG_MMAP, so all of the slot's memory is gmem (kvm_memslot_is_gmem_only).
    ``hva_align``: the alignment of the slot's userspace address (``4K``, ``2M``, ``1G``; the
    guest address is 1 GiB-aligned): a stage-2 block needs both equally aligned inside it
    (fault_supports_stage2_huge_mapping()); the 2 MiB slot never holds a PUD block, so ``1G``
    acts as ``2M``."""

    base_gfn: int = 0x40000       # 1 GiB
    npages: int = 512             # 2 MiB
    flags: int = 0
    gmem: bool = False
    gmem_only: bool = False
    hva_align: str = "2M"

    @property
    def block_aligned(self) -> bool:
        """fault_supports_stage2_huge_mapping(memslot, hva, PMD_SIZE) for the slot's pages."""
        return self.hva_align != "4K"

    @property
    def log_dirty(self) -> bool:
        return bool(self.flags & KVM_MEM_LOG_DIRTY_PAGES)

    @property
    def readonly(self) -> bool:
        return bool(self.flags & KVM_MEM_READONLY)

    @property
    def logging(self) -> bool:
        """``memslot_is_logging()``: a dirty bitmap and not read-only."""
        return self.log_dirty and not self.readonly


@dataclass(frozen=True, slots=True)
class Fault:
    """A guest stage-2 abort.  ``perm``: a permission fault (else translation).  ``hwpoison``:
    the page is poisoned.  ``race``: an MMU-notifier invalidation races with the fault."""

    write: bool = False
    exec: bool = False
    perm: bool = False
    hwpoison: bool = False
    race: bool = False

    @property
    def name(self) -> str:
        kind = "exec" if self.exec else "write" if self.write else "read"
        return f"{'permission' if self.perm else 'translation'} {kind}"

    @property
    def read_perm(self) -> bool:
        """A stage-2 permission fault on a data read: neither write nor exec."""
        return self.perm and not self.write and not self.exec


@dataclass(frozen=True, slots=True)
class MemslotResult:
    ok: bool
    errno: str | None = None
    rule: str | None = None
    premapped: "FaultResult | None" = None   # <=5.13 P0: the PFNMAP pre-mapping
    reasons: tuple[Reason, ...] = ()

    def as_dict(self) -> dict:
        return {"result": "ok" if self.ok else "error", "errno": self.errno, "rule": self.rule}


@dataclass(frozen=True, slots=True)
class FaultResult:
    """The outcome of one stage-2 fault.

    ``result``: ``map`` (installed or relaxed), ``error`` (KVM_RUN returns ``errno``), ``pabt``
    (-ENOEXEC turned into a guest prefetch abort), ``sigbus`` (HWPOISON), ``retry`` (MMU-notifier
    race: the guest re-faults), ``skipped`` (no stage-2 mapping is made: no memslot, or a write to
    a read-only memslot handled as MMIO by ``io_mem_abort``)."""

    result: str
    s2: str | None = None
    memattr: int | None = None
    errno: str | None = None
    where: str | None = None
    w: bool = False
    x: bool = False
    size: str | None = None
    dclean: bool = False
    iinval: bool = False
    mte_sanitised: bool = False
    tagged: bool = False           # the page is (now) PG_mte_tagged for the guest
    reasons: tuple[Reason, ...] = ()

    @property
    def mapped(self) -> bool:
        return self.result == "map"

    def as_dict(self) -> dict:
        return {"result": self.result, "s2": self.s2, "memattr": self.memattr, "errno": self.errno,
                "where": self.where, "w": self.w, "x": self.x, "size": self.size,
                "mte_sanitised": self.mte_sanitised,
                "cmo": {"dclean": self.dclean, "iinval": self.iinval}}
