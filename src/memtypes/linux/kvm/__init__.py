"""KVM arm64: how the host kernel decides a guest page's stage-2 mapping, per era and variant.

Find a rule by the kernel function it lives in:

* ``eras.py``: :class:`Rules` per era, :func:`kernel` (``"6.17+mte-rfc-2020"`` -> :class:`Kernel`);
* ``variants.py``: named rule sets beside mainline, and how to write one;
* ``kvm_host.py``: Vm, Slot, Fault, MemslotResult, FaultResult, memslot flags, errnos;
* ``prepare_memory_region.py``: ``kvm_arch_prepare_memory_region`` (P0-P7);
* ``user_mem_abort.py``: the VMA-backed fault path; ``gmem_abort.py``: guest_memfd slots;
* ``phys_addr_ioremap.py``: KVM's own Device mappings (GICv2 GICV, <=5.13 PFNMAP pre-map);
* ``pkvm_mem_abort.py``: protected-VM faults (7.1);
* ``handle_guest_abort.py``: which of those a fault takes;
* ``pgtable.py``: MemAttr encodings and leaf cache maintenance;
* ``arm.py``: KVM_CHECK_EXTENSION / KVM_ENABLE_CAP; ``guest.py``: KVM_ARM_MTE_COPY_TAGS;
* ``explain.py``: one memslot + one fault, as ``memtypes explain`` reports it.
"""

from memtypes.linux.kvm.arm import (
    KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, KVM_CAP_ARM_MTE, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_SYNC_MMU,
    check_extension, enable_cap,
)
from memtypes.linux.kvm.eras import ERA_NAMES, ERAS, Kernel, Rules, era_rules, kernel
from memtypes.linux.kvm.gmem_abort import gmem_abort
from memtypes.linux.kvm.guest import mte_copy_tags
from memtypes.linux.kvm.handle_guest_abort import kvm_handle_guest_abort
from memtypes.linux.kvm.kvm_host import Fault, FaultResult, MemslotResult, Slot, Vm
from memtypes.linux.kvm.phys_addr_ioremap import kvm_phys_addr_ioremap
from memtypes.linux.kvm.prepare_memory_region import kvm_arch_prepare_memory_region, prepare_memory_region
from memtypes.linux.kvm.user_mem_abort import user_mem_abort
from memtypes.linux.kvm.variants import VARIANTS, Variant, register

__all__ = [
    "ERAS", "ERA_NAMES", "Fault", "FaultResult", "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED", "KVM_CAP_ARM_MTE",
    "KVM_CAP_GUEST_MEMFD_FLAGS", "KVM_CAP_SYNC_MMU", "Kernel", "MemslotResult", "Rules", "Slot", "VARIANTS",
    "Variant", "Vm", "check_extension", "enable_cap", "era_rules", "gmem_abort", "kernel",
    "kvm_arch_prepare_memory_region", "kvm_handle_guest_abort", "kvm_phys_addr_ioremap", "mte_copy_tags",
    "prepare_memory_region", "register", "user_mem_abort",
]
