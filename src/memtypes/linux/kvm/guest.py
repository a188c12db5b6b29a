"""arch/arm64/kvm/guest.c ``kvm_vm_ioctl_mte_copy_tags()``: KVM_ARM_MTE_COPY_TAGS, the VMM's way
to save and restore a guest's allocation tags (reference/kernel-kvm.md section 4; TV30, TV31)."""

from __future__ import annotations

from memtypes.arch.reason import Reason
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import EBUSY, EFAULT, EINVAL, Vm

KVM_ARM_MTE_COPY_TAGS = 0xB4        # _IOR(KVMIO, 0xb4, struct kvm_arm_copy_mte_tags)
KVM_ARM_TAGS_TO_GUEST = 0
KVM_ARM_TAGS_FROM_GUEST = 1

_SRC = "arch/arm64/kvm/guest.c kvm_vm_ioctl_mte_copy_tags() (S-guest)"
R_NOIOCTL = Reason("kvm/mte_copy_tags/absent", "KVM/arm64 updates for 5.14 (M-mte)",
                   "KVM_ARM_MTE_COPY_TAGS does not exist in this kernel: -EINVAL (ENOTTY-like)")
R_EINVAL = Reason("kvm/mte_copy_tags/einval", _SRC,
                  "no MTE on the VM, reserved/flags invalid, ipa or length not page-aligned: -EINVAL")
R_EBUSY = Reason("kvm/mte_copy_tags/ebusy", f"{_SRC}; kvmarm mmu-misc-6.12",
                 "writing tags (TO_GUEST) while a memslot logs dirty pages: -EBUSY (6.12+)")
R_EFAULT = Reason("kvm/mte_copy_tags/efault", _SRC, "missing or ZONE_DEVICE (offline) page: -EFAULT")
R_OK_FROM = Reason("kvm/mte_copy_tags/from-guest", _SRC,
                   "FROM_GUEST: tags copied out (zeros for a page not yet tagged)")
R_OK_TO = Reason("kvm/mte_copy_tags/to-guest", _SRC, "TO_GUEST: tags written, page marked PG_mte_tagged")


def mte_copy_tags(rules: Rules, vm: Vm, *, to_guest: bool, logging: bool = False, aligned: bool = True,
                  page_online: bool = True, flags_ok: bool = True) -> tuple[str | None, Reason]:
    """Result of KVM_ARM_MTE_COPY_TAGS: (errno or None, reason).  ``flags_ok``: no flag but
    KVM_ARM_TAGS_FROM_GUEST and no reserved word set; ``aligned``: guest_ipa and length
    page-aligned (7.3.4 checks MTE, reserved, flags, alignment in that order, all -EINVAL)."""
    if not rules.mte_copy_tags:
        return EINVAL, R_NOIOCTL
    if not vm.mte or not flags_ok or not aligned:
        return EINVAL, R_EINVAL
    if to_guest and logging and rules.copy_tags_ebusy:
        return EBUSY, R_EBUSY
    if not page_online:
        return EFAULT, R_EFAULT
    return None, (R_OK_TO if to_guest else R_OK_FROM)


R_TAGS_KEPT = Reason("kvm/sanitise_mte_tags/already-tagged",
                     "arch/arm64/kvm/mmu.c sanitise_mte_tags() skips a folio already PG_mte_tagged; "
                     "arch/arm64/kvm/guest.c kvm_vm_ioctl_mte_copy_tags() copies its tags "
                     "(7.3.4, Debian linux-source-7.3)",
                     "host memory the VMM tagged itself (PROT_MTE) keeps its tags: KVM clears only "
                     "pages that are not yet tagged")
R_TAGS_ZERO = Reason("kvm/mte_copy_tags/zeros", "arch/arm64/kvm/guest.c kvm_vm_ioctl_mte_copy_tags() "
                     "(7.3.4): a page sanitised at the fault, or not tagged, reads as zero tags",
                     "the guest's first fault cleared the page's tags (or it has none)")


def tags_read_back(*, host_tagged: bool) -> tuple[bool, Reason]:
    """What KVM_ARM_MTE_COPY_TAGS (FROM_GUEST) reads from a page the guest has faulted: the
    tags the VMM set itself (PROT_MTE) when ``host_tagged`` (the page was already PG_mte_tagged,
    so sanitise_mte_tags() left it alone), else zeros.  Returns (the VMM's tags kept, reason)."""
    return (True, R_TAGS_KEPT) if host_tagged else (False, R_TAGS_ZERO)
