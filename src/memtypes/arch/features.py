"""CPU features that change the architectural rules (Arm ARM DDI 0487 M.a.a).

* ``fwb``: FEAT_S2FWB, HCR_EL2.FWB usable (ID_AA64MMFR2_EL1.FWB; D8.6.6).  Linux cpucap
  ARM64_HAS_STAGE2_FWB.
* ``dic``: CTR_EL0.DIC, no I-cache invalidation to PoU needed for instruction coherence.
  Linux cpucap ARM64_HAS_CACHE_DIC.
* ``mte``: FEAT_MTE2, allocation tags in memory (D10).  Without it MAIR 0xF0 is reserved.
* ``mte_perm``: FEAT_MTE_PERM, the stage-2 NoTagAccess encodings (D8.6.4).
* ``xs``: FEAT_XS, the XS attribute and the MAIR bytes 0x01/05/09/0D, 0x40, 0xA0 (D24.2.127).
* ``pkvm``: not a CPU feature but how the host runs KVM: protected KVM (``kvm-arm.mode=protected``,
  Linux ``is_protected_kvm_enabled()``).  The architecture rules ignore it; the kernel model
  (linux/kvm) reads it for pKVM's capability filter and its protected VMs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Features:
    fwb: bool = False
    dic: bool = False
    mte: bool = False
    mte_perm: bool = False
    xs: bool = False
    pkvm: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def all(cls) -> "Features":
        return cls(**{n: True for n in cls.names()})

    def as_dict(self) -> dict[str, bool]:
        return {n: getattr(self, n) for n in self.names()}
