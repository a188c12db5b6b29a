"""A KVM variant as a patch under review might propose it: "map VM_ALLOW_ANY_UNCACHED VMAs
Normal cacheable when the host has FWB".

The stage-2 attribute choice (decision point ``s2_attr``) is replaced by a function: on a FWB
host, a device mapping whose VMA the driver marked VM_ALLOW_ANY_UNCACHED (vfio-pci BARs, 6.9+)
becomes Normal cacheable; everything else is decided as the era decides (``default()``).

    memtypes explain --variants examples/variants/fwb_cacheable_uncached.py \
        --kernel 6.17+fwb-cacheable-uncached --host grace --backing vfio-pci-bar
    memtypes check --variants examples/variants/fwb_cacheable_uncached.py \
        --family passthrough --kernel 6.17+fwb-cacheable-uncached

Expected: ``mmio-never-cacheable`` violated (a vfio-pci BAR is device registers) on FWB hosts.
"""

from memtypes.arch.reason import Reason
from memtypes.linux.kvm.kvm_host import S2_NORMAL
from memtypes.linux.kvm.variants import Variant, register

WHY = Reason("variant/fwb-cacheable-uncached", "example patch under review (examples/variants)",
             "FWB host and a VM_ALLOW_ANY_UNCACHED VMA: stage 2 Normal cacheable")


def s2_attr(rules, host, vma, force_nc, rs, default):
    if force_nc and vma.allow_any_uc and host.fwb:
        rs.append(WHY)
        return S2_NORMAL
    return default()


register(Variant(
    name="fwb-cacheable-uncached",
    eras=("6.9", "6.17", "6.18", "7.1"),      # VM_ALLOW_ANY_UNCACHED exists from 6.9
    hooks={"s2_attr": s2_attr},
    why=WHY,
))
