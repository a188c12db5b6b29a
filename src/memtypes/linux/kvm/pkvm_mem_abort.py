"""``pkvm_mem_abort()`` (7.1): faults of a pKVM protected VM.

Pins one user page (``pin_user_pages``, FOLL_HWPOISON | FOLL_LONGTERM | FOLL_WRITE) and maps it
RWX Normal.  Only swap-backed pages are allowed (others: -EIO): anonymous and shmem/memfd pages,
and the anonymous copy the write pin makes of a private file or /dev/zero mapping; a PFNMAP hva
makes the pin fail (-EFAULT; any pin result other than one page is -EFAULT in 7.3.4).  Read
against arch/arm64/kvm/mmu.c pkvm_mem_abort() 7.3.4 (Debian linux-source-7.3).  reference/kernel-kvm.md section 2.2 "pKVM protected VM", TV36 (S-7.1).
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
_SRC72 = "arch/arm64/kvm/mmu.c pkvm_mem_abort() 7.2.13 and 7.3.4 (Debian linux-source-7.2, -7.3)"
R_PKVM_72 = Reason("kvm/pkvm_mem_abort", _SRC72, "protected VM: one pinned page mapped RWX Normal")
R_PKVM_PFNMAP_72 = Reason("kvm/pkvm_mem_abort/pfnmap", _SRC72,
                          "VM_IO/VM_PFNMAP hva: pin_user_pages() fails, any result but one page is -EFAULT")
R_PKVM_NOT_SWAP_72 = Reason("kvm/pkvm_mem_abort/not-swap-backed", _SRC72,
                            "the pinned folio is not swap-backed (page cache, ...): -EIO")
R_PKVM_PIN_REFUSED = Reason("kvm/pkvm_mem_abort/pin-refused", f"{_SRC}; mm/gup.c check_vma_flags() "
                            "writable_file_mapping_allowed() 7.3.4",
                            "a shared regular-file mapping cannot be pinned long-term for writing: -EFAULT")
R_PKVM_NO_VMA = Reason("kvm/pkvm_mem_abort/no-vma", _SRC, "nothing mapped at the hva: -EFAULT")


def _pin(kind: str) -> tuple[bool, bool]:
    """(pin refused, pinned page swap-backed) for a backing KIND (drivers.Backing)."""
    from memtypes.linux import drivers
    if kind not in drivers.KINDS:
        return False, False
    b = drivers.mmap(kind, any_uc=True)
    return b.pin_efault, b.swap_backed


@lru_cache(maxsize=1024)
def pkvm_mem_abort(rules: Rules, host: Features, vm: Vm, slot: Slot, vma: Vma | None, fault: Fault) -> FaultResult:
    read = rules.pkvm_ext_filter_all      # 7.2 era: the text was read (7.2.13, 7.3.4)
    rs: list[Reason] = [R_PKVM_72 if read else R_PKVM]
    if vma is None:
        rs.append(R_PKVM_NO_VMA)
        return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
    refused, swap_backed = _pin(vma.kind)
    if vma.pfnmap or vma.mixedmap:
        rs.append(R_PKVM_PFNMAP_72 if read else R_PKVM_PFNMAP)
        return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
    if refused:
        rs.append(R_PKVM_PIN_REFUSED)
        return FaultResult("error", errno=EFAULT, where=WHERE, reasons=tuple(rs))
    if not swap_backed:
        rs.append(R_PKVM_NOT_SWAP_72 if read else R_PKVM_NOT_SWAP)
        return FaultResult("error", errno="-EIO", where=WHERE, reasons=tuple(rs))
    rs.append(R_ENC[(S2_NORMAL, host.fwb)])
    dclean, iinval = leaf_cmo(S2_NORMAL, True, host, False, rs)
    return FaultResult("map", s2=S2_NORMAL, memattr=stage2_memattr(S2_NORMAL, host.fwb), where=WHERE, w=True,
                       x=True, size=PAGE, dclean=dclean, iinval=iinval, reasons=tuple(rs))
