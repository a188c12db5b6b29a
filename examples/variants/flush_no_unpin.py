"""A DMA variant: the VFIO/iommufd cache-flush series (as reviewed) without the flush at
unmap/unpin -- type1's F@unpin in vfio_unpin_pages_remote and iommufd's F@batch_unpin.

    memtypes check --variants examples/variants/flush_no_unpin.py \
        --family dma-type1 --variant flush-no-unpin

Expected: ``host-consistent-after-unpin`` violated: after a non-snooping device wrote a page,
its unpin leaves a stale clean line in the CPU cache above the newer memory, and the host
reusing the page reads the stale value.
"""

from memtypes.arch.reason import Reason
from memtypes.linux.dma.variants import DmaVariant
from memtypes.linux.kvm.variants import register

register(DmaVariant(
    name="flush-no-unpin",
    base="vfio-flush-reviewed",               # the review's bookkeeping and other flush points
    changes={"unpin": False},                 # no flush before put_pfn / batch_unpin
    why=Reason("variant/flush-no-unpin", "example (examples/variants); kernel-vfio.md 1.3",
               "the flush series without the lazy flush at unpin"),
))
