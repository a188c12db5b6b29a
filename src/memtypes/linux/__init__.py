"""The host kernel: mm, device drivers' mmap, KVM arm64 (memslots, stage-2 faults, MTE), VFIO
type1 and iommufd DMA, x86 KVM non-coherent DMA; per-era rules and named variants."""
