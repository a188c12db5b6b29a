"""What the model predicts the agent will see, for one case, one exact kernel and the CPU
features the booted CPU reported.

Every prediction is made by the model's own functions (``linux.kvm.explain.explain`` for a
memslot and a fault, ``linux.kvm.arm`` for capabilities, ``linux.kvm.guest`` for
KVM_ARM_MTE_COPY_TAGS) and carries their reasons; nothing is decided here but the mapping from
an agent observation to the model's vocabulary:

* errno names: the model's ``-EINVAL`` is the agent's ``EINVAL``;
* a fault ``map`` is a guest access that completed (``done``); ``error`` is KVM_RUN failing with
  that errno; ``pabt`` is an exception in the guest with ESR_EL1.EC 0x21 (instruction abort
  taken without a change in exception level, Arm ARM D24.2.40); ``skipped`` for a write to a
  read-only memslot is a KVM_EXIT_MMIO at the slot's address;
* the stage-2 descriptor: MemAttr[3:0] (descriptor bits [5:2]), the level of the leaf (3: PAGE,
  2: PMD, 1: PUD), S2AP[1] (bit 7, write), and whether XN[1:0] (bits [54:53]) allows
  execution at EL1 (0b00 or 0b11, Arm ARM D8.4.2 with FEAT_XNX).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.conform.cases import Case
from memtypes.linux import drivers
from memtypes.linux.kvm import guest as kvm_guest
from memtypes.linux.kvm.arm import CAPS, check_extension, enable_cap
from memtypes.linux.kvm.eras import Kernel
from memtypes.linux.kvm.explain import explain
from memtypes.linux.kvm.kvm_host import Vm

KVM_CAP_ARM_MTE = 205
EC_IABT_CUR = 0x21    # ESR_ELx.EC: Instruction Abort taken without a change in Exception level

R_ALIAS = Reason("conform/backing-alias", "mm/mmap.c shmem_zero_setup() (MAP_SHARED|MAP_ANONYMOUS is "
                 "shmem); mm/memfd.c memfd_create() and a tmpfs file are shmem files; fs/ramfs is not "
                 "shmem (arch/arm64/include/asm/mman.h arch_calc_vm_flag_bits() 6.1.192-7.3.4: VM_MTE_ALLOWED for "
                 "MAP_ANONYMOUS, MAP_HUGETLB, shmem_file(), is_file_hugepages())",
                 "the agent's backing is the model's kind with the same VMA")

# Agent backings the model names differently: each maps to the model kind with the same VMA
# (flags, pgprot, memory behind it).
ALIASES: dict[str, str] = {
    "anon-private": "anon",
    "anon-shared": "shmem",
    "tmpfs-shared": "shmem",
    "tmpfs-private": "memfd-private",       # a shmem file mapped MAP_PRIVATE
    "ramfs-private": "file-private",        # a page-cache file that is not shmem
    "ramfs-shared": "file-shared",
    "hugetlb-memfd": "hugetlb-shared",      # the agent maps its MFD_HUGETLB memfd MAP_SHARED
    "hugetlb-anon": "hugetlb",
    "pci-resource": "pci-sysfs-resource",
    "pci-resource-wc": "pci-sysfs-resource-wc",
}


def model_kind(agent_kind: str) -> str | None:
    """The model's backing kind for an agent backing, or None if the model has none."""
    if agent_kind in drivers.KINDS:
        return agent_kind
    alias = ALIASES.get(agent_kind)
    return alias if alias in drivers.KINDS else None


def errno_name(model_errno: str | None) -> str:
    return (model_errno or "").lstrip("-")


@dataclass
class Prediction:
    """Expected values per observation key, or a reason the model cannot say (``na``)."""

    expect: dict[str, dict] = field(default_factory=dict)
    reasons: dict[str, tuple[Reason, ...]] = field(default_factory=dict)
    na: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, values: dict, reasons: tuple[Reason, ...] = ()) -> None:
        self.expect[key] = values
        self.reasons[key] = reasons


def predict_caps(kernel: Kernel, host: Features, pred: Prediction, ipa_limit: int | None = None,
                 asked: str = "") -> None:
    """KVM_CHECK_EXTENSION on /dev/kvm and on a VM fd, for every capability the model knows
    (``linux.kvm.arm.CAPS``) that the case asked; the IPA limit is the one the booted kernel
    printed."""
    wanted = {int(x) for x in asked.split(",") if x.strip().isdigit()} if asked else None
    for cap, _name in CAPS:
        if wanted is not None and cap not in wanted:
            continue
        sys_v, sys_e, r1 = check_extension(kernel.rules, host, cap, vm_fd=False, ipa_limit=ipa_limit)
        vm_v, vm_e, r2 = check_extension(kernel.rules, host, cap, vm_fd=True, ipa_limit=ipa_limit)
        if sys_v is None and sys_e is None:
            pred.na[f"cap:{cap}"] = "the model does not know this host's value"
            continue
        pred.add(f"cap:{cap}", {"system": -1 if sys_e else sys_v, "system_errno": errno_name(sys_e),
                                "vm": -1 if vm_e else vm_v, "vm_errno": errno_name(vm_e)},
                 (r1,) if r1 == r2 else (r1, r2))


def predict_mte_order(kernel: Kernel, host: Features, pred: Prediction) -> None:
    _, e1, r1 = enable_cap(kernel.rules, host, Vm(), KVM_CAP_ARM_MTE)
    _, e2, r2 = enable_cap(kernel.rules, host, Vm(created_vcpus=1), KVM_CAP_ARM_MTE)
    pred.add("enable_cap:before-vcpu", {"errno": errno_name(e1)}, (r1,))
    pred.add("enable_cap:after-vcpu", {"errno": errno_name(e2)}, (r2,))


def predict_slot(kernel: Kernel, host: Features, case: Case, pred: Prediction) -> None:
    kind = model_kind(case.backing)
    remap = model_kind(case.remap) if case.remap else None
    if kind is None or (case.remap and remap is None):
        missing = case.backing if kind is None else case.remap
        pred.na["*"] = f"the model has no backing kind for the agent's '{missing}'"
        return
    # the agent maps the slot 2 MiB-aligned, or 4 KiB off that with "misalign"
    kw: dict = {"host_name": "conform", "vm_mte": case.mte == "before", "fault": case.access,
                "slot_flags": case.flags or None, "remap": remap, "mte_after_memslot": case.mte == "after",
                "hva_align": "4K" if case.misalign else "2M"}
    if "gmem_only" in (case.flags or "") or case.backing == "guest-memfd":
        # the agent creates its guest_memfd with GUEST_MEMFD_FLAG_MMAP | INIT_SHARED
        kw["slot_flags"] = ",".join(filter(None, (case.flags, "gmem_only")))
    ex = explain(kernel, host, kind, **kw)
    base = (R_ALIAS,) if kind != case.backing or (case.remap and remap != case.remap) else ()

    cap_why = tuple(r for r in ex.reasons if r.rule.startswith("kvm/enable_cap/"))
    if case.mte == "before" and ex.vm_mte is not None:
        pred.add("enable_cap:before-memslot", {"errno": errno_name(ex.vm_mte[1])}, cap_why)
    if case.mte == "after" and ex.vm_mte_after is not None:
        pred.add("enable_cap:after-memslot", {"errno": errno_name(ex.vm_mte_after[1])}, cap_why)

    if ex.memslot is None:
        pred.na["*"] = ex.memslot_na or "not a memslot"
        return
    pred.add("memslot", {"errno": errno_name(ex.memslot.errno)}, base + ex.memslot.reasons)
    if not ex.memslot.ok:
        return
    f = ex.fault
    why = base + f.reasons
    if f.result == "map":
        pred.add("run:access", {"outcome": "done", "errno": ""}, why)
        if case.walk and "walk" not in pred.na:
            pred.add("walk", {"memattr": f.memattr, "size": f.size, "w": f.w, "x": f.x}, why)
        if case.access == "read":
            pred.add("read", {"value_ok": True}, why)
    elif f.result == "error":
        pred.add("run:access", {"outcome": "error", "errno": errno_name(f.errno)}, why)
    elif f.result == "pabt":
        pred.add("run:access", {"outcome": "exception", "ec": EC_IABT_CUR}, why)
    elif f.result == "skipped":
        pred.add("run:access", {"outcome": "mmio", "errno": ""}, why)
    else:
        pred.na["run:access"] = f"the model's fault result '{f.result}' has no agent observation"

    vm_mte_on = (case.mte == "before" and ex.vm_mte is not None and ex.vm_mte[0] == "ok") or \
                (case.mte == "after" and ex.vm_mte_after is not None and ex.vm_mte_after[0] == "ok")
    if case.tags:
        vm = Vm(mte=vm_mte_on)
        logging = "log_dirty" in (case.flags or "")
        # no VMA behind the slot (a hole): __gfn_to_page() finds no page -> -EFAULT
        has_page = ex.memslot is not None and (kind != "hole" and remap != "hole")
        err, r = kvm_guest.mte_copy_tags(kernel.rules, vm, to_guest=False, logging=logging,
                                         page_online=has_page)
        if err is None:
            # the page exists (the VMM touched it): the VMM's own PROT_MTE tags are copied out as
            # they are; any other page reads zero tags, sanitised by the fault or never tagged
            kept, why = kvm_guest.tags_read_back(host_tagged=case.pretag)
            pred.add("copy_tags:from-guest", {"errno": "", "nonzero": 4 if kept else 0}, (r, why))
        else:
            pred.add("copy_tags:from-guest", {"errno": errno_name(err)}, (r,))
        if case.tags_errors:
            for what, kwargs in (("unaligned-ipa", {"aligned": False}), ("bad-flags", {"flags_ok": False}),
                                 ("no-memslot", {"page_online": False}),
                                 ("to-guest", {"to_guest": True, "logging": logging})):
                kwargs.setdefault("to_guest", False)
                err, r = kvm_guest.mte_copy_tags(kernel.rules, vm, **kwargs)
                pred.add(f"copy_tags:{what}", {"errno": errno_name(err)}, (r,))


def predict(kernel: Kernel, host: Features, case: Case, *, ipa_limit: int | None = None) -> Prediction:
    pred = Prediction()
    if case.kind == "caps":
        predict_caps(kernel, host, pred, ipa_limit, case.caps)
    elif case.kind == "mte-cap-order":
        predict_mte_order(kernel, host, pred)
    else:
        predict_slot(kernel, host, case, pred)
    return pred
