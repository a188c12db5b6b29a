"""``gmem_abort()``: the stage-2 fault path for guest_memfd slots (v6.18+).

It ignores the VMA entirely: always PAGE_SIZE, always Normal, W = slot not read-only, X on an exec
fault or DIC, and no MTE sanitisation in any version read (TV26).  6.18-7.1: whether something
else blocks MTE with guest_memfd is UNVERIFIED; 7.2+: nothing needs to, the memslot (P8) and
KVM_CAP_ARM_MTE refuse each other.  reference/kernel-kvm.md section 2.3 (M-gmem, S-7.0, S-7.1);
read against arch/arm64/kvm/mmu.c gmem_abort() 7.2.13 and 7.3.4 (Debian linux-source-7.2, -7.3).
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import EFAULT, S2_NORMAL, Fault, FaultResult, Slot, Vm
from memtypes.linux.kvm.pgtable import R_ENC, leaf_cmo, stage2_memattr
from memtypes.linux.mm import PAGE

WHERE = "gmem_abort"
_SRC = "arch/arm64/kvm/mmu.c gmem_abort() v6.18+ (M-gmem v13, S-7.0, S-7.1)"

R_GMEM_PATH = Reason("kvm/gmem_abort", _SRC,
                     "guest_memfd slot: gmem_abort() instead of user_mem_abort(); no VMA consulted")
R_GMEM_HWPOISON = Reason("kvm/gmem_abort/get-pfn-error", f"{_SRC} kvm_gmem_get_pfn()",
                         "kvm_gmem_get_pfn() failed: KVM_EXIT_MEMORY_FAULT (PAGE_SIZE) with the error; the "
                         "model reports a poisoned page as -EHWPOISON (errno not in the references)",
                         unverified=True)
R_GMEM_PAGE = Reason("kvm/gmem_abort/page-normal", _SRC,
                     "always PAGE_SIZE and Normal cacheable (no Device or NC path)")
R_GMEM_W = Reason("kvm/gmem_abort/w", _SRC, "writable unless the memslot is read-only")
R_GMEM_X = Reason("kvm/gmem_abort/x", _SRC, "executable on an exec fault, or up front on a DIC host")
R_GMEM_NO_MTE = Reason("kvm/gmem_abort/no-mte", f"{_SRC}; TV26",
                       "MTE VM: gmem_abort has no MTE branch, the page's tags are NOT sanitised; "
                       "whether anything else blocks MTE with guest_memfd is unknown", unverified=True)
R_GMEM_PERM_READ = Reason("kvm/gmem_abort/perm-read", _SRC,
                          "permission fault that is neither write nor exec: -EFAULT (assumed to match "
                          "user_mem_abort's entry check; section 2.3 does not say)", unverified=True)
R_GMEM_PERM_READ_RELAX = Reason("kvm/gmem_abort/perm-read-relax", "arch/arm64/kvm/mmu.c gmem_abort(), "
                                "kvm_handle_guest_abort() 7.2.13 and 7.3.4",
                                "7.2+: a read permission fault relaxes the leaf's permissions (no entry check)")
R_GMEM_RETRY = Reason("kvm/gmem_abort/retry", _SRC, "MMU-notifier race: retried (0); the final 6.18 "
                      "gmem_abort body (retry check) is not verified", unverified=True)


@lru_cache(maxsize=4096)
def gmem_abort(rules: Rules, host: Features, vm: Vm, slot: Slot, fault: Fault) -> FaultResult:
    rs: list[Reason] = [R_GMEM_PATH]
    if fault.read_perm:
        if not rules.perm_read_relax:
            rs.append(R_GMEM_PERM_READ)
            return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
        rs.append(R_GMEM_PERM_READ_RELAX)
    if fault.hwpoison:
        rs.append(R_GMEM_HWPOISON)
        return FaultResult("error", errno="-EHWPOISON", where=WHERE, reasons=tuple(rs))
    if fault.race:
        rs.append(R_GMEM_RETRY)
        return FaultResult("retry", where=WHERE, reasons=tuple(rs))
    rs.append(R_GMEM_PAGE)
    rs.append(R_GMEM_W)
    x = fault.exec or host.dic
    if x:
        rs.append(R_GMEM_X)
    if vm.mte and not rules.gmem_mte_excl:
        rs.append(R_GMEM_NO_MTE)
    rs.append(R_ENC[(S2_NORMAL, host.fwb)])
    dclean, iinval = leaf_cmo(S2_NORMAL, x, host, fault.perm, rs)
    return FaultResult("map", s2=S2_NORMAL, memattr=stage2_memattr(S2_NORMAL, host.fwb), where=WHERE,
                       w=not slot.readonly, x=x, size=PAGE, dclean=dclean, iinval=iinval,
                       mte_sanitised=False, tagged=False, reasons=tuple(rs))
