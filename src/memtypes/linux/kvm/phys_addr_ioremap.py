"""``kvm_phys_addr_ioremap()``: stage-2 mappings KVM makes itself, outside any fault.

* The vgic maps the GICv2 GICV frame with it: always Device-nGnRE (kept so in the 2023 Normal-NC
  review: "effectively a shared peripheral", Marc; "we can't relax this beyond PCIe", Catalin).
  -EPERM under pKVM (7.1, TV34 G; decided in ``kvm_handle_guest_abort`` from ``Vm.on_pkvm``).
* <=5.13: every VM_PFNMAP part of a new memslot is pre-mapped with it (rule P0).
reference/kernel-kvm.md sections 1, 3 (P0), 8 (M-nc), TV34.
"""

from __future__ import annotations

from functools import lru_cache

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.eras import Rules
from memtypes.linux.kvm.kvm_host import S2_DEVICE, S2_NC, FaultResult
from memtypes.linux.kvm.pgtable import R_CMO_NONCACHEABLE, R_ENC, stage2_memattr
from memtypes.linux.mm import PAGE

WHERE = "kvm_phys_addr_ioremap"
R_IOREMAP_DEVICE = Reason("kvm/kvm_phys_addr_ioremap/device",
                          "arch/arm64/kvm/mmu.c kvm_phys_addr_ioremap() (S-6.17; M-nc Dec 2023)",
                          "KVM's own I/O mappings (GICv2 GICV) stay Device-nGnRE in every version")
R_IOREMAP_NC = Reason("kvm/kvm_phys_addr_ioremap/nc", "variant normal-nc-for-all-io (M-nc v1/v2)",
                      "kvm_phys_addr_ioremap() changed to Normal-NC: the GICV frame becomes NC")
R_P0_PREMAP = Reason("kvm/prepare_memory_region/P0", "arch/arm64/kvm/mmu.c "
                     "kvm_arch_prepare_memory_region() v5.8 (S-5.8)",
                     "<=5.13: the VM_PFNMAP part of a new memslot is pre-mapped at stage 2 as Device "
                     "(writable unless READONLY); no fault needed")


@lru_cache(maxsize=256)
def kvm_phys_addr_ioremap(rules: Rules, host: Features, writable: bool = True,
                          premap: bool = False) -> FaultResult:
    rs = [R_P0_PREMAP] if premap else []
    if rules.gicv_nc:
        rs.append(R_IOREMAP_NC)
        s2 = S2_NC
    else:
        rs.append(R_IOREMAP_DEVICE)
        s2 = S2_DEVICE
    rs.append(R_ENC[(s2, host.fwb)])
    rs.append(R_CMO_NONCACHEABLE)
    return FaultResult("map", s2=s2, memattr=stage2_memattr(s2, host.fwb), where=WHERE, w=writable,
                       x=False, size=PAGE, reasons=tuple(rs))
