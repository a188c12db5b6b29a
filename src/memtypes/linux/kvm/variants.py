"""Variants: named rule sets beside mainline, for what-if questions.

A variant is a name, the eras it applies to, a few overridden rule switches of
:class:`memtypes.linux.kvm.eras.Rules`, and a citation.  ``--kernel 6.17+mte-rfc-2020`` takes the
6.17 era's rules and applies the variant's switches with ``dataclasses.replace``.

Writing a new variant (a few lines)::

    from memtypes.linux.kvm.variants import Variant, register
    from memtypes.arch.reason import Reason

    register(Variant(
        name="nc-for-platform-too",
        eras=("6.9", "6.17", "6.18", "7.1"),          # the era first-versions it applies to
        changes={"nc_without_flag": True},            # Rules fields to override
        why=Reason("variant/nc-for-platform-too", "my proposal, 2026-11",
                   "vfio-platform MMIO also mapped Normal-NC"),
    ))

then ``memtypes explain --kernel 6.12+nc-for-platform-too ...`` (and the checker) use it.  Every
switch is read at one place in ``prepare_memory_region.py``, ``user_mem_abort.py``,
``gmem_abort.py``, ``arm.py`` or ``guest.py``; grep for the field name to see its effect.  A rule
that no switch expresses needs a new field in ``Rules`` (default = mainline behaviour) and one
branch where the kernel function reads it.

Eras each built-in variant applies to (the choice made, with why):

=============================== ============================ ===================================
variant                          eras                         why
=============================== ============================ ===================================
normal-nc-for-all-io             5.14 .. 7.1                  needs the fault-time device path
                                                              (<=5.13 pre-maps PFNMAP slots)
device-as-cacheable              5.14 .. 7.1                  same
cacheable-pfnmap-no-fwb-check    6.9 .. 7.1                   built on the 6.9 NC rule; from 6.9
                                                              the VMA cacheability is meaningful
cpfn-memslot-flag                6.9 .. 7.1                   the series (v4-v6, 2025) was posted
                                                              on top of the 6.9+ NC code
nvidia-vma-memtype               6.2, 6.9 (6.2-6.16)          NVIDIA's 6.8-based kernels (NC
                                                              backported); replaced by 6.17
mte-rfc-2020                     5.13 .. 7.1                  posted against 5.8 (adds MTE to
                                                              <=5.13); a what-if on later eras
mte-memslot-check-only           5.14 .. 7.1                  needs mainline MTE (5.14+)
=============================== ============================ ===================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux.kvm import eras as _eras
from memtypes.linux.kvm.eras import MTE_FAULT_NONE, MTE_SLOT_NONE, Rules

ALL_ERAS = _eras.ERA_NAMES
FROM_5_14 = ALL_ERAS[1:]
FROM_6_9 = ALL_ERAS[ALL_ERAS.index("6.9"):]


@dataclass(frozen=True)
class Variant:
    name: str
    eras: tuple[str, ...]
    changes: Mapping[str, Any] = field(default_factory=dict)
    why: Reason | None = None

    def applies(self, era: str) -> bool:
        return era in self.eras


VARIANTS: dict[str, Variant] = {}


def register(v: Variant) -> Variant:
    bad = [k for k in v.changes if k not in Rules.__dataclass_fields__]
    if bad:
        raise ValueError(f"variant {v.name}: unknown Rules fields {bad}")
    VARIANTS[v.name] = v
    return v


register(Variant(
    "normal-nc-for-all-io", FROM_5_14,
    {"normal_nc": True, "nc_without_flag": True, "gicv_nc": True},
    Reason("variant/normal-nc-for-all-io",
           "\"KVM: arm64: allow the VM to select DEVICE_* and NORMAL_NC for IO memory\" v1 (Sep 2023, M-nc)",
           "every device stage-2 mapping (and kvm_phys_addr_ioremap, i.e. GICv2 GICV) is Normal-NC; "
           "no VMA flag is consulted")))
register(Variant(
    "device-as-cacheable", FROM_5_14,
    {"device_cacheable": True},
    Reason("variant/device-as-cacheable",
           "2023 Normal-NC review (M-nc): the MemAttr 0b111 / cacheable-from-VMA option Jason and Will "
           "discussed and rejected", "device (force-noncacheable) mappings are made Normal cacheable")))
register(Variant(
    "cacheable-pfnmap-no-fwb-check", FROM_6_9,
    {"device_test": _eras.DEV_PFNMAP_MAP_MEMORY, "cacheable_pfnmap": True,
     "cpfn_requires_fwb_dic": False, "cpfn_memslot_check": False},
    Reason("variant/cacheable-pfnmap-no-fwb-check",
           "M-nc v1 cacheable patch (dropped after Shameer's non-FWB regression, Dec 2023); M-cpfn",
           "a cacheable PFNMAP VMA is mapped Normal at stage 2 on any host, FWB/DIC not required")))
register(Variant(
    "cpfn-memslot-flag", FROM_6_9,
    {"device_test": _eras.DEV_PFNMAP_MAP_MEMORY, "cacheable_pfnmap": True, "cpfn_slot_flag": True,
     "cpfn_memslot_check": True, "cap_cacheable_pfnmap": True},
    Reason("variant/cpfn-memslot-flag",
           "\"KVM: arm64: Map GPU device memory as cacheable\" v4-v6 (2025; flag removed in v7, M-cpfn)",
           "cacheable PFNMAP only in memslots created with KVM_MEM_ENABLE_CACHEABLE_PFNMAP (needs "
           "FWB && DIC, else -EINVAL); without the flag a cacheable !MapMem PFNMAP is mapped as before "
           "6.17 (DEVICE/NC); the series also added KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) "
           "alongside the flag", unverified=True)))
register(Variant(
    "nvidia-vma-memtype", ("6.2", "6.9"),
    {"normal_nc": True, "vma_memtype_decides": True},
    Reason("variant/nvidia-vma-memtype",
           "NVIDIA/NV-Kernels 05400664e522 \"NVIDIA: SAUCE: determine memory type from VMA\" (S-NV)",
           "stage-2 type from the VMA pgprot: DEVICE_*/NORMAL_NC give NC with VM_ALLOW_ANY_UNCACHED "
           "else DEVICE, other types NORMAL; no FWB and !pfn_valid gives -EINVAL at fault")))
register(Variant(
    "mte-rfc-2020", ALL_ERAS,
    {"mte_cap": True, "mte_memslot_rule": MTE_SLOT_NONE, "mte_fault_check": MTE_FAULT_NONE,
     "mte_upgrade_any": True, "mte_copy_tags": False},
    Reason("variant/mte-rfc-2020",
           "Steven Price \"[RFC PATCH 0/2] MTE support for KVM guest\" (17 Jun 2020, M-mte)",
           "KVM upgrades every faulted-in Normal page to tagged; no memslot or tag-storage check; "
           "no KVM_ARM_MTE_COPY_TAGS (the VMM reads tags through its own mapping, RAZ without "
           "PROT_MTE)")))
register(Variant(
    "mte-memslot-check-only", FROM_5_14,
    {"mte_fault_check": MTE_FAULT_NONE},
    Reason("variant/mte-memslot-check-only",
           "M-mte RFC/v2 discussion (Catalin Marinas, Steven Price 2020; A. Elisei's order-dependence "
           "remark)", "MTE checked only at memslot creation; no fault-time re-check of the VMA")))


def names() -> tuple[str, ...]:
    return tuple(VARIANTS)


def applies(era: str, variant: str) -> bool:
    """Whether ``variant`` ("mainline" always applies) makes sense in the era ``era``."""
    if variant == "mainline":
        return True
    v = VARIANTS.get(variant)
    return v is not None and v.applies(era)


def apply_variant(r: Rules, name: str, *, where: str = "--kernel") -> Rules:
    v = VARIANTS.get(name)
    if v is None:
        raise InputError(f"unknown kernel variant '{name}'", where=where,
                         expected="VERSION or VERSION+VARIANT with VARIANT one of " + ", ".join(VARIANTS))
    if not v.applies(r.era):
        raise InputError(f"variant '{name}' does not apply to the {r.span} era", where=where,
                         expected="a version in the eras " + ", ".join(v.eras))
    changes = dict(v.changes)
    why = (v.why,) if v.why else ()
    return replace(r, variant=name, changed_by=r.changed_by + why, **changes)
