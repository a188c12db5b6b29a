"""``kvm_handle_guest_abort()``: which stage-2 path a guest access takes, and what it returns.

* the GICv2 GICV frame: already mapped by the vgic (``kvm_phys_addr_ioremap``);
* a pKVM protected VM on 7.1: ``pkvm_mem_abort()``;
* a guest_memfd slot on 6.18+: ``gmem_abort()``;
* otherwise ``user_mem_abort()`` on the VMA now over the slot's hva (KVM_CAP_SYNC_MMU: the VMA
  may have changed since the memslot was created).
reference/kernel-kvm.md sections 2.3, 2.4.
"""

from __future__ import annotations

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.drivers import Backing
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.gmem_abort import gmem_abort
from memtypes.linux.kvm.kvm_host import Fault, FaultResult, Slot, Vm
from memtypes.linux.kvm.phys_addr_ioremap import kvm_phys_addr_ioremap
from memtypes.linux.kvm.pkvm_mem_abort import pkvm_mem_abort
from memtypes.linux.kvm.user_mem_abort import user_mem_abort


_SRC = "arch/arm64/kvm/mmu.c kvm_handle_guest_abort()"
R_IABT_IO = Reason("kvm/handle_guest_abort/iabt-io", _SRC,
                   "instruction fetch from an address outside any memslot (the GICV frame): a prefetch "
                   "abort is injected into the guest")
R_RO_WRITE = Reason("kvm/handle_guest_abort/readonly-write", f"{_SRC} -> io_mem_abort()",
                    "write to a read-only memslot: handled as MMIO (KVM_EXIT_MMIO to the VMM), no "
                    "stage-2 mapping is made")


def kvm_handle_guest_abort(rules: Rules, host: Features, vm: Vm, slot: Slot, backing: Backing,
                           fault: Fault) -> FaultResult:
    if backing.vgic:
        if fault.exec:
            return FaultResult("pabt", errno="-ENOEXEC", where="kvm_handle_guest_abort", reasons=(R_IABT_IO,))
        return kvm_phys_addr_ioremap(rules, host)
    if fault.write and slot.readonly and not fault.perm:
        return FaultResult("skipped", where="io_mem_abort", reasons=(R_RO_WRITE,))
    if vm.protected and rules.pkvm_memslot_rules:
        return pkvm_mem_abort(rules, host, vm, slot, backing.vma, fault)
    if slot.gmem and rules.gmem_slots:
        return gmem_abort(rules, host, vm, slot, fault)
    return user_mem_abort(rules, host, vm, slot, backing.vma, fault)
