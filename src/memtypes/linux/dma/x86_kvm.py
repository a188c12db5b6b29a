"""x86 KVM's reaction to non-coherent DMA (kernel-vfio.md 2.5, 2.6): guest WBINVD and the EPT
memory type (VMX; non-MMIO guest RAM).  Only x86 implements kvm_arch_register_noncoherent_dma;
on arm64 and others registration has no effect.

* WBINVD (all versions, arch/x86/kvm/x86.c need_emulate_wbinvd = has_noncoherent_dma): NOP
  without NC DMA; with it, a real WBINVD on every pCPU the vCPU ran on -> FLUSH of every line.
* EPT memtype (vmx_get_mt_mask): whether the guest's PAT (e.g. a UC/WC mapping) is honoured.
"""

from __future__ import annotations

from memtypes.arch import cache
from memtypes.arch.reason import Reason
from memtypes.linux.version import KernelVersion

SRC_MT = "arch/x86/kvm/vmx/vmx.c vmx_get_mt_mask"


def need_emulate_wbinvd(has_nc: bool) -> bool:
    """Guest WBINVD is real iff KVM has non-coherent DMA registered."""
    return has_nc


def ept_memtype(kernel: KernelVersion, has_nc: bool, *, cr0_cd: bool = False,
                quirk_cd_nw_cleared: bool = True, self_snoop: bool = True,
                ignore_guest_pat_quirk: bool = True) -> tuple[str, bool, Reason]:
    """``(memtype, ipat, reason)`` of an EPT entry for guest RAM (section 2.6 table).
    ``ipat`` True = guest PAT ignored.  Guest-MTRR types are reduced to WB (the usual guest
    MTRR for RAM)."""
    v = kernel
    if v.at_least(6, 16) or (v.series == (6, 12) and v.at_least(6, 12, 78)):
        # 6.12.78 backported KVM_X86_QUIRK_IGNORE_GUEST_PAT (Debian linux-source-6.12 changelog,
        # upstream 6.12.78; vmx_ignore_guest_pat() read in 6.12.118 and 7.3.4)
        if has_nc:
            return "WB", False, Reason("x86-kvm/ept/6.16-nc", SRC_MT + " vmx_ignore_guest_pat() (v6.16+, "
                                       "6.12.78+; read in 6.12.118, 7.3.4)",
                                       "NC DMA: WB, guest PAT honoured")
        if ignore_guest_pat_quirk or not self_snoop:
            return "WB", True, Reason("x86-kvm/ept/6.16-quirk", SRC_MT + " KVM_X86_QUIRK_IGNORE_"
                                      "GUEST_PAT (v6.16+, 6.12.78+; read in 6.12.118, 7.3.4)",
                                      "quirk enabled: WB + IPAT")
        return "WB", False, Reason("x86-kvm/ept/6.16-noquirk", SRC_MT + " (v6.16+, 6.12.78+)",
                                   "quirk disabled (self-snoop): guest PAT honoured")
    if v.at_least(6, 12):
        return ("WB", not has_nc, Reason("x86-kvm/ept/6.12", SRC_MT + " (v6.12, revert "
                                         "9d70f3fec144)", "IPAT unless NC DMA"))
    if v.at_least(6, 11):
        honour = has_nc or self_snoop
        return ("WB", not honour, Reason("x86-kvm/ept/6.11", SRC_MT + " (377b2f359d1f)",
                                         "guest PAT honoured with NC DMA or on self-snoop CPUs"))
    # <= v6.10
    if not has_nc:
        return "WB", True, Reason("x86-kvm/ept/pre6.11", SRC_MT, "no NC DMA: WB + IPAT")
    if cr0_cd:
        if quirk_cd_nw_cleared:
            if v.at_least(6, 7):
                return "WB", False, Reason("x86-kvm/ept/cd-6.7", SRC_MT + " (v6.7-v6.10)",
                                           "CR0.CD with quirk: WB without IPAT")
            return "WB", True, Reason("x86-kvm/ept/cd", SRC_MT, "CR0.CD with quirk: WB + IPAT")
        return "UC", True, Reason("x86-kvm/ept/cd-uc", SRC_MT, "CR0.CD without quirk: UC + IPAT")
    return "WB", False, Reason("x86-kvm/ept/mtrr", SRC_MT + " (<= v6.10)",
                               "NC DMA: guest MTRR type, no IPAT (guest PAT combined)")


def zaps_on_nc_transition(kernel: KernelVersion) -> bool:
    """Whether KVM zaps SPTEs when NC assignment starts/stops (v6.7+,
    kvm_noncoherent_dma_assignment_start_or_stop; commit id UNVERIFIED)."""
    return kernel.at_least(6, 7)


def guest_pat_honoured_after_hotplug(kernel: KernelVersion, faulted_before: bool) -> bool:
    """TV25: a RAM gfn faulted before an NC device is hotplugged.  <= v6.6 the stale SPTE keeps
    IPAT (guest WC mapping ignored -> effective WB); v6.7+ zaps, the new SPTE honours PAT."""
    if faulted_before and not zaps_on_nc_transition(kernel):
        return False
    return not ept_memtype(kernel, True)[1]


def guest_wbinvd(lines: tuple, has_nc: bool, upto: int) -> tuple[tuple, tuple]:
    """Guest WBINVD: FLUSH lines ``0..upto-1`` iff has_nc, else a NOP.  Returns (lines, events)."""
    if not need_emulate_wbinvd(has_nc):
        return lines, (("wbinvd", False),)
    return tuple(cache.flush(ln) for ln in lines[:upto]) + lines[upto:], (("wbinvd", True),)


def guest_store(ln: tuple, v: str, pat_honoured: bool, guest_type: str = "WC") -> tuple:
    """A guest store through a mapping of guest PAT type ``guest_type``: UC/WC goes to memory
    when KVM honours guest PAT, else it is an ordinary WB store (IPAT forces WB)."""
    if guest_type in ("UC", "WC", "UC-") and pat_honoured:
        return cache.uncached_write(ln, v)
    return cache.cpu_write(ln, v)
