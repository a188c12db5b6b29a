"""arch/arm64/kvm/arm.c: KVM_CHECK_EXTENSION and KVM_ENABLE_CAP for the capabilities that
matter here (reference/kernel-kvm.md sections 4 and 7; TV27-29).

Results are ``(value, errno, reason)``: ``value`` is the ioctl's non-negative return (None on
error), ``errno`` the error name (None on success)."""

from __future__ import annotations

from dataclasses import replace

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import EINVAL, Vm

KVM_CAP_SYNC_MMU = 16
KVM_CAP_ARM_MTE = 205
KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED = 243
KVM_CAP_GUEST_MEMFD_FLAGS = 244     # KVM_CAP_GUEST_MEMFD_MMAP before the 6.18 release
KVM_CAP_ARM_SEA_TO_USER = 245
GUEST_MEMFD_FLAG_MMAP = 1 << 0          # include/uapi/linux/kvm.h v6.18
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1

_SRC = "arch/arm64/kvm/arm.c kvm_vm_ioctl_check_extension()"
R_SYNC_MMU = Reason("kvm/cap/sync-mmu", f"{_SRC} (all versions modelled); M-mte v2 thread (Sep 2020)",
                    "KVM_CAP_SYNC_MMU (16): host mmap changes reach the guest through MMU notifiers")
R_MTE_CAP = Reason("kvm/cap/arm-mte", f"{_SRC} v5.14 (M-mte)",
                   "KVM_CAP_ARM_MTE (205): 1 when the host supports MTE (5.14+)")
R_MTE_CAP_ABSENT = Reason("kvm/cap/arm-mte-absent", f"{_SRC} <=5.13; KVM/arm64 updates for 5.14 (M-mte)",
                          "KVM_CAP_ARM_MTE is unknown before 5.14: 0")
R_CPFN_VM = Reason("kvm/cap/cacheable-pfnmap", f"{_SRC} f55ce5a6cd33 v6.17",
                   "cap 243 on a VM fd: 1 iff FWB && DIC (kvm_supports_cacheable_pfnmap)")
R_CPFN_SYS = Reason("kvm/cap/cacheable-pfnmap-system", f"{_SRC} f55ce5a6cd33 v6.17",
                    "cap 243 on /dev/kvm (kvm == NULL): -EINVAL, the check is VM-scoped")
R_CPFN_VM_FLAG = Reason("kvm/cap/cacheable-pfnmap-flag-series", f"{_SRC}; variant cpfn-memslot-flag "
                        "(M-cpfn v4-v6: the cap was posted together with the memslot flag)",
                        "cap 243 on a VM fd: 1 iff FWB && DIC, as merged in 6.17 (the posted series' exact "
                        "cap semantics are not in the references)", unverified=True)
R_CAP_UNKNOWN = Reason("kvm/cap/unknown", f"{_SRC} default case, v5.0-7.1 (S-6.17)", "capability unknown in this kernel: 0")
R_GMEM_FLAGS = Reason("kvm/cap/guest-memfd-flags",
                      "virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic() v6.18 (M-gmem; "
                      "\"Rework KVM_CAP_GUEST_MEMFD_MMAP into KVM_CAP_GUEST_MEMFD_FLAGS\")",
                      "KVM_CAP_GUEST_MEMFD_FLAGS (244): returns the supported guest_memfd flags, "
                      "GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED (values 1 and 2 not in the "
                      "references)", unverified=True)
_ESRC = "arch/arm64/kvm/arm.c kvm_vm_ioctl_enable_cap()"
R_EN_UNKNOWN = Reason("kvm/enable_cap/unknown", f"{_ESRC} default case, v5.0-7.1 (S-6.17)",
                      "capability not enableable in this kernel (KVM_CAP_ARM_MTE before 5.14): -EINVAL")
R_EN_MTE_OK = Reason("kvm/enable_cap/arm-mte", f"{_ESRC} v5.14 (section 4)",
                     "KVM_CAP_ARM_MTE enabled: KVM_ARCH_FLAG_MTE_ENABLED, HCR_EL2.ATA for the VM's vCPUs")
R_EN_MTE_NOHW = Reason("kvm/enable_cap/arm-mte-nohw", f"{_ESRC} system_supports_mte() v5.14 (section 4)",
                       "the host does not support MTE: -EINVAL")
R_EN_MTE_VCPUS = Reason("kvm/enable_cap/arm-mte-after-vcpu", f"{_ESRC} kvm->created_vcpus check v5.14+ (M-mte; TV29)",
                        "KVM_CAP_ARM_MTE after the first KVM_CREATE_VCPU: -EINVAL")
R_EN_MTE_PROTECTED = Reason("kvm/enable_cap/arm-mte-protected", f"{_ESRC} kvm_vm_is_protected() (2022 pKVM patch, v6.x; section 4)",
                            "protected VM: KVM_CAP_ARM_MTE refused (-EINVAL)")
R_EN_MTE_PKVM = Reason("kvm/enable_cap/arm-mte-pkvm", f"{_ESRC} v7.0 \"Do not allow KVM_CAP_ARM_MTE for any "
                       "guest in pKVM\" (M-pull70)",
                       "7.0+: on a pKVM host KVM_CAP_ARM_MTE is refused for every guest, protected or not "
                       "(-EINVAL; TV29 column G)")


def check_extension(rules: Rules, host: Features, cap: int, *, vm_fd: bool = True) -> tuple[int | None, str | None, Reason]:
    """KVM_CHECK_EXTENSION on a VM fd (``vm_fd``) or on /dev/kvm; a variant's ``check_extension``
    hook answers in its place (``default()`` gives the era's answer)."""
    h = rules.hook("check_extension") if rules.hooks else None
    if h is not None:
        return h(rules, host, cap, vm_fd, lambda: _check_extension(rules, host, cap, vm_fd=vm_fd))
    return _check_extension(rules, host, cap, vm_fd=vm_fd)


def _check_extension(rules: Rules, host: Features, cap: int, *, vm_fd: bool = True) -> tuple[int | None, str | None, Reason]:
    if cap == KVM_CAP_SYNC_MMU:
        return 1, None, R_SYNC_MMU
    if cap == KVM_CAP_ARM_MTE:
        if not rules.mte_cap:
            return 0, None, R_MTE_CAP_ABSENT
        return int(host.mte), None, R_MTE_CAP
    if cap == KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED and rules.cap_cacheable_pfnmap:
        if not vm_fd:
            return None, EINVAL, R_CPFN_SYS
        return int(host.fwb and host.dic), None, (R_CPFN_VM_FLAG if rules.cpfn_slot_flag else R_CPFN_VM)
    if cap == KVM_CAP_GUEST_MEMFD_FLAGS and rules.cap_gmem_flags:
        return GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, None, R_GMEM_FLAGS
    return 0, None, R_CAP_UNKNOWN


def enable_cap(rules: Rules, host: Features, vm: Vm, cap: int) -> tuple[Vm, str | None, Reason]:
    """KVM_ENABLE_CAP on a VM fd: (new vm, errno, reason); a variant's ``enable_cap`` hook
    answers in its place."""
    h = rules.hook("enable_cap") if rules.hooks else None
    if h is not None:
        return h(rules, host, vm, cap, lambda: _enable_cap(rules, host, vm, cap))
    return _enable_cap(rules, host, vm, cap)


def _enable_cap(rules: Rules, host: Features, vm: Vm, cap: int) -> tuple[Vm, str | None, Reason]:
    if cap != KVM_CAP_ARM_MTE or not rules.mte_cap:
        return vm, EINVAL, R_EN_UNKNOWN
    if not host.mte:
        return vm, EINVAL, R_EN_MTE_NOHW
    if rules.pkvm_no_mte and vm.on_pkvm:
        return vm, EINVAL, R_EN_MTE_PKVM
    if vm.protected:
        return vm, EINVAL, R_EN_MTE_PROTECTED
    if vm.created_vcpus:
        return vm, EINVAL, R_EN_MTE_VCPUS
    return replace(vm, mte=True), None, R_EN_MTE_OK
