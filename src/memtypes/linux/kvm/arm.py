"""arch/arm64/kvm/arm.c: KVM_CHECK_EXTENSION and KVM_ENABLE_CAP for the capabilities that
matter here (reference/kernel-kvm.md sections 4 and 7; TV27-29), read against arm.c,
virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic() and
arch/arm64/include/asm/kvm_pkvm.h kvm_pkvm_ext_allowed() in 6.12.118, 7.2.13 and 7.3.4.

:func:`check_extension` and :func:`enable_cap` return ``(value, errno, reason)``: ``value`` is
the ioctl's non-negative return (None on error), ``errno`` the error name (None on success).
:func:`caps` answers every capability the model knows on the system fd (/dev/kvm) and on a VM
fd at once, as ``memtypes caps`` prints it and the conform harness compares it."""

from __future__ import annotations

from dataclasses import replace

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import EINVAL, Vm

KVM_CAP_SYNC_MMU = 16
KVM_CAP_READONLY_MEM = 81
KVM_CAP_ARM_VM_IPA_SIZE = 165
KVM_CAP_ARM_MTE = 205
KVM_CAP_USER_MEMORY2 = 231
KVM_CAP_GUEST_MEMFD = 234
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
R_CAP_UNKNOWN = Reason("kvm/cap/unknown", f"{_SRC} default case, v5.0-7.3 (S-6.17; 7.3.4)", "capability unknown in this kernel: 0")
R_GMEM_FLAGS = Reason("kvm/cap/guest-memfd-flags",
                      "virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic(), include/linux/kvm_host.h "
                      "kvm_gmem_get_supported_flags(), virt/kvm/guest_memfd.c kvm_arch_supports_gmem_init_shared() "
                      "(weak, true; arm64 does not override) 7.3.4; include/uapi/linux/kvm.h flags 1, 2; v6.18 (M-gmem)",
                      "KVM_CAP_GUEST_MEMFD_FLAGS (244): GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED = 3, "
                      "on the system fd and a VM fd")
R_GMEM_FLAGS_OLD = Reason("kvm/cap/guest-memfd-flags", "virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic() "
                          "v6.18 (M-gmem; \"Rework KVM_CAP_GUEST_MEMFD_MMAP into KVM_CAP_GUEST_MEMFD_FLAGS\"); "
                          "the value read in 7.2.13/7.3.4", "KVM_CAP_GUEST_MEMFD_FLAGS (244): MMAP | INIT_SHARED = 3 "
                          "as in 7.2.13 (the 6.18-7.1 text was not read)", unverified=True)
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


_GSRC = "virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic()"
R_SYNC_MMU_72 = Reason("kvm/cap/sync-mmu", f"{_GSRC} 7.2.13, 7.3.4 (answered before the arch code, so "
                       "never filtered by pKVM); arch/arm64/kvm/arm.c 6.12.118",
                       "KVM_CAP_SYNC_MMU (16): 1, host mmap changes reach the guest through MMU notifiers")
R_READONLY = Reason("kvm/cap/readonly-mem", f"{_SRC} 6.12.118, 7.3.4", "KVM_CAP_READONLY_MEM (81): 1")
R_IPA = Reason("kvm/cap/vm-ipa-size", f"{_SRC} get_kvm_ipa_limit() 6.12.118, 7.3.4",
               "KVM_CAP_ARM_VM_IPA_SIZE (165): the host's IPA limit (from ID_AA64MMFR0_EL1.PARange, capped by "
               "the kernel): given with --ipa-limit, else unknown to the model (null)")
R_USER_MEMORY2 = Reason("kvm/cap/user-memory2", f"{_GSRC} 6.12.118, 7.3.4; KVM_CAP_USER_MEMORY2 231 from 6.8 "
                        "(release not read)", "KVM_CAP_USER_MEMORY2 (231): 1 (KVM_SET_USER_MEMORY_REGION2)")
R_GMEM_CAP = Reason("kvm/cap/guest-memfd", f"{_GSRC} under CONFIG_KVM_GUEST_MEMFD, which arch/arm64/kvm/Kconfig "
                    "selects in 7.3.4 (6.12.118: CONFIG_KVM_PRIVATE_MEM, not selected by arm64); assumed from 6.18 "
                    "with gmem_abort (M-gmem)", "KVM_CAP_GUEST_MEMFD (234): 1", unverified=True)
R_GMEM_CAP_72 = Reason("kvm/cap/guest-memfd", f"{_GSRC} CONFIG_KVM_GUEST_MEMFD selected by arch/arm64/kvm/Kconfig "
                       "7.2.13, 7.3.4", "KVM_CAP_GUEST_MEMFD (234): 1")
R_SEA = Reason("kvm/cap/sea-to-user", f"{_SRC} 7.3.4; v6.19 (reference section 7)",
               "KVM_CAP_ARM_SEA_TO_USER (245): 1")
R_PKVM_FILTER = Reason("kvm/cap/pkvm-filter", "arch/arm64/include/asm/kvm_pkvm.h kvm_pkvm_ext_allowed(), "
                       f"{_SRC} 7.2.13, 7.3.4",
                       "pKVM host: the capability is not allowed here (KVM_CAP_ARM_MTE never; others only "
                       "for non-protected VMs and the system fd): 0")
R_PKVM_FILTER_OLD = Reason("kvm/cap/pkvm-filter-protected", f"{_SRC} pkvm_ext_allowed() 6.12.118 (an allow-list "
                           "applied to protected VMs only)",
                           "protected VM fd: capability not in pKVM's allow-list: 0")
R_PKVM_MTE_CAP_70 = Reason("kvm/cap/arm-mte-pkvm", f"{_SRC}; M-pull70 (7.0: \"Do not allow KVM_CAP_ARM_MTE for "
                           "any guest in pKVM\")", "7.0-7.1 pKVM host: KVM_CAP_ARM_MTE answered 0 (the 7.0 text "
                           "was not read; 7.2.13 does this through kvm_pkvm_ext_allowed())", unverified=True)
R_EN_MTE_GMEM = Reason("kvm/enable_cap/arm-mte-gmem", f"{_ESRC} KVM_CAP_ARM_MTE 7.2.13, 7.3.4",
                       "7.2+: a memslot with a guest_memfd exists: KVM_CAP_ARM_MTE refused (-EINVAL)")
R_EN_MTE_PKVM_72 = Reason("kvm/enable_cap/arm-mte-pkvm", f"{_ESRC} kvm_pkvm_ext_allowed() 7.2.13, 7.3.4; 7.0 "
                          "(M-pull70)", "pKVM host: KVM_CAP_ARM_MTE is refused for every guest (-EINVAL)")

# pKVM's allow-list for protected VMs (6.12.118 pkvm_ext_allowed(); 7.3.4 kvm_pkvm_ext_allowed())
_PKVM_ALLOWED = frozenset({KVM_CAP_ARM_VM_IPA_SIZE})
# answered by kvm_vm_ioctl_check_extension_generic() before the arch code (7.2.13, 7.3.4)
_GENERIC_72 = frozenset({KVM_CAP_SYNC_MMU, KVM_CAP_USER_MEMORY2, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS})


def _pkvm_filtered(rules: Rules, cap: int, vm_fd: bool, pkvm: bool, protected: bool) -> Reason | None:
    """Whether pKVM's capability filter answers 0 (the reason), else None."""
    if rules.pkvm_ext_filter_all:
        if not pkvm or cap in _GENERIC_72:
            return None
        if cap == KVM_CAP_ARM_MTE:
            return R_PKVM_FILTER
        if cap in _PKVM_ALLOWED:
            return None
        return R_PKVM_FILTER if (vm_fd and protected) else None
    if vm_fd and protected and cap not in _PKVM_ALLOWED:
        return R_PKVM_FILTER_OLD
    return None


def check_extension(rules: Rules, host: Features, cap: int, *, vm_fd: bool = True, pkvm: bool | None = None,
                    protected: bool = False, ipa_limit: int | None = None) -> tuple[int | None, str | None, Reason]:
    """KVM_CHECK_EXTENSION on a VM fd (``vm_fd``; a protected VM's with ``protected``) or on
    /dev/kvm, on a host running pKVM (``pkvm``, default ``host.pkvm``) or not.  ``ipa_limit``: the
    host's IPA limit in bits, for KVM_CAP_ARM_VM_IPA_SIZE (None: unknown, value None).  A variant's
    ``check_extension`` hook answers in its place (``default()`` gives the era's answer)."""
    def default():
        return _check_extension(rules, host, cap, vm_fd=vm_fd, pkvm=pkvm, protected=protected,
                                ipa_limit=ipa_limit)
    h = rules.hook("check_extension") if rules.hooks else None
    if h is not None:
        return h(rules, host, cap, vm_fd, default)
    return default()


def _check_extension(rules: Rules, host: Features, cap: int, *, vm_fd: bool, pkvm: bool | None,
                     protected: bool, ipa_limit: int | None) -> tuple[int | None, str | None, Reason]:
    pkvm = host.pkvm if pkvm is None else pkvm
    why = _pkvm_filtered(rules, cap, vm_fd, pkvm, protected)
    if why is not None:
        return 0, None, why
    if cap == KVM_CAP_SYNC_MMU:
        return 1, None, (R_SYNC_MMU_72 if rules.era == "7.2" else R_SYNC_MMU)
    if cap == KVM_CAP_READONLY_MEM:
        return 1, None, R_READONLY
    if cap == KVM_CAP_ARM_VM_IPA_SIZE:
        return ipa_limit, None, R_IPA
    if cap == KVM_CAP_ARM_MTE:
        if not rules.mte_cap:
            return 0, None, R_MTE_CAP_ABSENT
        if pkvm and rules.pkvm_no_mte:
            return 0, None, R_PKVM_MTE_CAP_70
        return int(host.mte), None, R_MTE_CAP
    if cap == KVM_CAP_USER_MEMORY2 and rules.cap_user_memory2:
        return 1, None, R_USER_MEMORY2
    if cap == KVM_CAP_GUEST_MEMFD and rules.gmem_slots:
        return 1, None, (R_GMEM_CAP_72 if rules.era == "7.2" else R_GMEM_CAP)
    if cap == KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED and rules.cap_cacheable_pfnmap:
        if not vm_fd:
            return None, EINVAL, R_CPFN_SYS
        return int(host.fwb and host.dic), None, (R_CPFN_VM_FLAG if rules.cpfn_slot_flag else R_CPFN_VM)
    if cap == KVM_CAP_GUEST_MEMFD_FLAGS and rules.cap_gmem_flags:
        return (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, None,
                R_GMEM_FLAGS if rules.era == "7.2" else R_GMEM_FLAGS_OLD)
    if cap == KVM_CAP_ARM_SEA_TO_USER and rules.cap_sea_to_user:
        return 1, None, R_SEA
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
    if rules.pkvm_no_mte and (vm.on_pkvm or host.pkvm):
        return vm, EINVAL, (R_EN_MTE_PKVM_72 if rules.pkvm_ext_filter_all else R_EN_MTE_PKVM)
    if vm.protected:
        return vm, EINVAL, R_EN_MTE_PROTECTED
    if vm.created_vcpus:
        return vm, EINVAL, R_EN_MTE_VCPUS
    if rules.gmem_mte_excl and vm.gmem_slot:
        return vm, EINVAL, R_EN_MTE_GMEM
    return replace(vm, mte=True), None, R_EN_MTE_OK


CAPS: tuple[tuple[int, str], ...] = (
    (KVM_CAP_SYNC_MMU, "KVM_CAP_SYNC_MMU"),
    (KVM_CAP_READONLY_MEM, "KVM_CAP_READONLY_MEM"),
    (KVM_CAP_ARM_VM_IPA_SIZE, "KVM_CAP_ARM_VM_IPA_SIZE"),
    (KVM_CAP_ARM_MTE, "KVM_CAP_ARM_MTE"),
    (KVM_CAP_USER_MEMORY2, "KVM_CAP_USER_MEMORY2"),
    (KVM_CAP_GUEST_MEMFD, "KVM_CAP_GUEST_MEMFD"),
    (KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED"),
    (KVM_CAP_GUEST_MEMFD_FLAGS, "KVM_CAP_GUEST_MEMFD_FLAGS"),
    (KVM_CAP_ARM_SEA_TO_USER, "KVM_CAP_ARM_SEA_TO_USER"),
)
"""Every capability the model knows, by number (include/uapi/linux/kvm.h 7.3.4)."""

_ERRNO_VALUE = {EINVAL: -22}


def caps(kernel, host: Features, *, protected: bool = False, ipa_limit: int | None = None) -> dict:
    """What KVM_CHECK_EXTENSION answers for every capability in :data:`CAPS`, on the system fd
    (/dev/kvm, ``kvm == NULL``) and on a VM fd, for ``kernel`` (a :class:`~memtypes.linux.kvm.eras.Kernel`)
    on a host with ``host`` features (``host.pkvm``: the host runs pKVM).

    ``protected``: the VM fd is a pKVM protected VM's (KVM_VM_TYPE_ARM_PROTECTED).  ``ipa_limit``:
    the host's IPA limit in bits, the answer for KVM_CAP_ARM_VM_IPA_SIZE (None: unknown).

    Returns ``{"kernel": {...}, "host": {...}, "vm": {"protected": bool}, "caps": [...]}`` where
    each entry of ``caps`` is ``{"cap": number, "name": "KVM_CAP_...", "system": int|None,
    "vm": int|None, "system_errno": "-EINVAL"|None, "vm_errno": ..., "reasons": [rule ids]}``:
    ``system`` / ``vm`` are what the kernel's handler returns (a negative errno value such as -22
    when the ioctl fails, None when the model cannot say), in :data:`CAPS` order.  Pure: same
    inputs, same dict."""
    rules = kernel.rules
    out = []
    for num, name in CAPS:
        sv, se, sr = check_extension(rules, host, num, vm_fd=False, ipa_limit=ipa_limit)
        vv, ve, vr = check_extension(rules, host, num, vm_fd=True, protected=protected, ipa_limit=ipa_limit)
        reasons = [sr] + ([vr] if vr != sr else [])
        out.append({"cap": num, "name": name,
                    "system": _ERRNO_VALUE[se] if se else sv, "vm": _ERRNO_VALUE[ve] if ve else vv,
                    "system_errno": se, "vm_errno": ve,
                    "reasons": [r.as_dict() for r in reasons]})
    return {"kernel": kernel.as_dict(), "host": {k: int(v) for k, v in host.as_dict().items()},
            "vm": {"protected": protected}, "caps": out}
