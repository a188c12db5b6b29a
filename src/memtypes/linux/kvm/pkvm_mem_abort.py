"""``pkvm_mem_abort()`` (7.1): faults of a pKVM protected VM.

Pins one user page (``pin_user_pages``, FOLL_LONGTERM) and maps it RWX Normal.  Only swap-backed
(anonymous/memfd) pages are allowed (others: -EIO); a PFNMAP hva makes the pin fail (-EFAULT,
exact errno UNVERIFIED).  reference/kernel-kvm.md section 2.2 "pKVM protected VM", TV36 (S-7.1).
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import EFAULT, S2_NORMAL, Fault, FaultResult, Slot, Vm
from memtypes.linux.kvm.pgtable import R_ENC, leaf_cmo, stage2_memattr
from memtypes.linux.mm import PAGE, Vma

WHERE = "pkvm_mem_abort"
_SRC = "arch/arm64/kvm/mmu.c pkvm_mem_abort() 7.1 (S-7.1)"
R_PKVM = Reason("kvm/pkvm_mem_abort", _SRC, "protected VM: one pinned page mapped RWX Normal", unverified=True)
R_PKVM_PFNMAP = Reason("kvm/pkvm_mem_abort/pfnmap", _SRC,
                       "PFNMAP hva: pin_user_pages fails: -EFAULT (exact errno unknown)", unverified=True)
R_PKVM_NOT_SWAP = Reason("kvm/pkvm_mem_abort/not-swap-backed", _SRC,
                         "only swap-backed (anonymous/memfd) pages may be pinned: -EIO", unverified=True)
R_PKVM_NO_VMA = Reason("kvm/pkvm_mem_abort/no-vma", _SRC, "nothing mapped at the hva: -EFAULT")


@lru_cache(maxsize=1024)
def pkvm_mem_abort(rules: Rules, host: Features, vm: Vm, slot: Slot, vma: Vma | None, fault: Fault) -> FaultResult:
    rs: list[Reason] = [R_PKVM]
    if vma is None:
        rs.append(R_PKVM_NO_VMA)
        return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
    if vma.pfnmap or vma.mixedmap:
        rs.append(R_PKVM_PFNMAP)
        return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
    if vma.kind not in ("anon", "shmem"):
        rs.append(R_PKVM_NOT_SWAP)
        return FaultResult("error", errno="-EIO", where=WHERE, reasons=tuple(rs))
    rs.append(R_ENC[(S2_NORMAL, host.fwb)])
    dclean, iinval = leaf_cmo(S2_NORMAL, True, host, False, rs)
    return FaultResult("map", s2=S2_NORMAL, memattr=stage2_memattr(S2_NORMAL, host.fwb), where=WHERE, w=True,
                       x=True, size=PAGE, dclean=dclean, iinval=iinval, reasons=tuple(rs))
