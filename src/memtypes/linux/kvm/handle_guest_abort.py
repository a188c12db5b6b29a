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
from memtypes.linux.kvm.kvm_host import EPERM, Fault, FaultResult, Slot, Vm
from memtypes.linux.kvm.phys_addr_ioremap import kvm_phys_addr_ioremap
from memtypes.linux.kvm.pkvm_mem_abort import pkvm_mem_abort
from memtypes.linux.kvm.user_mem_abort import user_mem_abort


_SRC = "arch/arm64/kvm/mmu.c kvm_handle_guest_abort() (S-5.8, S-6.17)"
R_IABT_IO = Reason("kvm/handle_guest_abort/iabt-io", _SRC,
                   "instruction fetch from an address outside any memslot (the GICV frame): a prefetch "
                   "abort is injected into the guest")
R_RO_WRITE = Reason("kvm/handle_guest_abort/readonly-write", f"{_SRC} -> io_mem_abort()",
                    "write to a read-only memslot: handled as MMIO (KVM_EXIT_MMIO to the VMM), no "
                    "stage-2 mapping is made")


R_GICV_PKVM = Reason("kvm/kvm_phys_addr_ioremap/pkvm-eperm",
                     "arch/arm64/kvm/mmu.c kvm_phys_addr_ioremap() is_protected_kvm_enabled() 6.1.192, 6.12.118, "
                     "7.2.13, 7.3.4 (S-6.17; TV34 G)",
                     "pKVM host: KVM refuses to map the GICv2 GICV frame itself: -EPERM")
R_GICV_PKVM_OLD = Reason("kvm/kvm_phys_addr_ioremap/pkvm-eperm",
                         "arch/arm64/kvm/mmu.c kvm_phys_addr_ioremap() is_protected_kvm_enabled() (read in "
                         "6.1.192; 5.14-6.0 not read)",
                         "pKVM host: KVM refuses to map the GICv2 GICV frame itself: -EPERM (assumed as in "
                         "6.1.192)", unverified=True)


def kvm_handle_guest_abort(rules: Rules, host: Features, vm: Vm, slot: Slot, backing: Backing,
                           fault: Fault) -> FaultResult:
    if backing.vgic:
        if (rules.pkvm_ioremap_eperm or rules.pkvm_memslot_rules) and (vm.on_pkvm or host.pkvm):
            why = R_GICV_PKVM if rules.source_read or rules.era not in ("5.14",) else R_GICV_PKVM_OLD
            return FaultResult("error", errno=EPERM, where="kvm_phys_addr_ioremap", reasons=(why,))
        if fault.exec:
            return FaultResult("pabt", errno="-ENOEXEC", where="kvm_handle_guest_abort", reasons=(R_IABT_IO,))
        return kvm_phys_addr_ioremap(rules, host)
    if fault.write and slot.readonly:
        # gfn_to_hva_memslot_prot() says !writable: io_mem_abort() whether the abort is a translation
        # or a permission fault (a page first mapped read-only by a read, then written)
        return FaultResult("skipped", where="io_mem_abort", reasons=(R_RO_WRITE,))
    if vm.protected and rules.pkvm_memslot_rules:
        return pkvm_mem_abort(rules, host, vm, slot, backing.vma, fault)
    if slot.gmem and rules.gmem_slots:
        return gmem_abort(rules, host, vm, slot, fault)
    return user_mem_abort(rules, host, vm, slot, backing.vma, fault)
