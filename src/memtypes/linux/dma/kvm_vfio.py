"""The KVM-VFIO pseudo-device (virt/kvm/vfio.c): what KVM is told about non-coherent DMA
(kernel-vfio.md 2.4, 2.5).

``kvm_vfio_update_coherency`` runs on KVM_DEV_VFIO_FILE_ADD/DEL (formerly GROUP_ADD/DEL; rename
~v6.6, UNVERIFIED) and device release only: it is a *snapshot*; a domain attached or detached
inside VFIO later is not re-evaluated (Kevin Tian / Jason Gunthorpe, 2022 "one-shot" thread).

``vfio_file_enforced_coherent(file)`` per version:

* <= v6.1 (group fd): no container -> **true** (Kevin objected in review); else VFIO_DMA_CC_IOMMU
  of the container (empty domain list -> 1).  <= v5.18 the same shape with IOMMU_CACHE
  (UNVERIFIED for <= v5.18 ordering, TV24).
* >= v6.2 (4989764d8ed3 era): true iff every device of the group (or the cdev device) is
  IOMMU_CAP_ENFORCE_CACHE_COHERENCY-capable; an NC group is therefore reported whatever the
  attach order.  Emulated (mdev) groups are reported **non-coherent**: their devices have no
  IOMMU, and device_iommu_capable() answers false without one (drivers/vfio/group.c
  vfio_group_enforced_coherent(), drivers/vfio/vfio_main.c vfio_file_enforced_coherent(),
  drivers/iommu/iommu.c device_iommu_capable() `!dev_has_iommu(dev)` -> false, read in 6.12.118,
  7.2.13 and 7.3.4).  So KVM_DEV_VFIO_FILE_ADD of an mdev group registers non-coherent DMA with
  KVM (x86: real WBINVD, guest PAT honoured) although the mdev's "DMA" is CPU access.

The state fields used are ``kvm_files`` (files added, in order) and ``kvm_nc``
(``kv->noncoherent``: this device registered non-coherent DMA with KVM; x86
``arch.noncoherent_dma_count`` is 1 iff it is set, one KVM-VFIO device per VM).
"""

from __future__ import annotations

from memtypes.arch.reason import Reason
from memtypes.linux.dma.common import Env

SRC = "virt/kvm/vfio.c kvm_vfio_update_coherency"


def file_enforced_coherent(env: Env, s, f: str) -> bool:
    """vfio_file_enforced_coherent(file) at ``env.kernel`` (section 2.4); a variant's
    ``kvm_coherent`` hook answers in its place."""
    dv = env.dv
    if dv is not None and dv._kvm is not None:
        return dv.coherent(env, env.group(f), _enforced_coherent(env, s, f))
    return _enforced_coherent(env, s, f)


def _enforced_coherent(env: Env, s, f: str) -> bool:
    from memtypes.linux.dma import type1
    grp = env.group(f)
    if env.kernel.at_least(6, 2) or not isinstance(s, type1.T1):
        return not grp.nc and not grp.emulated
    if not type1.attached(s, f):
        return True                           # no container user: reported coherent (<= 6.1)
    return type1.cc_iommu(env, s) == 1


def _update(env: Env, s, files: tuple):
    nc = any(not file_enforced_coherent(env, s, f) for f in files)
    ev = ()
    if nc != s.kvm_nc:
        # kvm_arch_register_noncoherent_dma / kvm_arch_unregister_noncoherent_dma (x86 only)
        ev = (("kvm", "register" if nc else "unregister"),)
    return s._replace(kvm_files=files, kvm_nc=nc), ev


def file_add(env: Env, s, f: str):
    """KVM_DEV_VFIO_FILE_ADD(f), then kvm_vfio_update_coherency."""
    if f in s.kvm_files:
        return s, (("err", "EEXIST", "kvm_vfio_file_add"),)
    return _update(env, s, s.kvm_files + (f,))


def file_del(env: Env, s, f: str):
    """KVM_DEV_VFIO_FILE_DEL(f), then kvm_vfio_update_coherency."""
    if f not in s.kvm_files:
        return s, (("err", "ENOENT", "kvm_vfio_file_del"),)
    return _update(env, s, tuple(x for x in s.kvm_files if x != f))


R_EMULATED = Reason("kvm-vfio/enforced-coherent/emulated", f"{SRC}; drivers/vfio/group.c "
                    "vfio_group_enforced_coherent(), drivers/iommu/iommu.c device_iommu_capable() 6.12.118, 7.2.13, "
                    "7.3.4", "v6.2+: an emulated (mdev) group's devices have no IOMMU, so it is reported "
                    "non-coherent: FILE_ADD registers non-coherent DMA with KVM")


def reason(env: Env) -> Reason:
    if env.kernel.at_least(6, 2):
        return Reason("kvm-vfio/enforced-coherent/cap", f"{SRC}; drivers/vfio/group.c "
                      "vfio_file_enforced_coherent (v6.2+)",
                      "a file is coherent iff its devices have IOMMU_CAP_ENFORCE_CACHE_COHERENCY")
    return Reason("kvm-vfio/enforced-coherent/container", f"{SRC}; vfio_file_enforced_coherent "
                  "(v5.19-v6.1)", "no container -> coherent; else VFIO_DMA_CC_IOMMU (snapshot at "
                  "FILE_ADD: attach order matters, TV24)", unverified=not env.kernel.at_least(5, 19))
