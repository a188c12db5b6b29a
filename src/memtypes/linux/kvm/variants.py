"""Variants: named rule sets beside mainline, for what-if questions -- KVM arm64 and VFIO/iommufd.

A KVM variant is a name, the eras it applies to (by first version: 5.13, 5.14, 6.2, 6.9, 6.17,
6.18, 7.1), overridden rule switches of :class:`memtypes.linux.kvm.eras.Rules` and/or functions
that replace named decision points (:data:`HOOKS`), and a citation.  ``--kernel
6.17+mte-rfc-2020`` takes the 6.17 era's rules and applies the variant.  A DMA variant
(:class:`memtypes.linux.dma.variants.DmaVariant`) is registered with the same :func:`register`
and picked up by the dma-type1 and dma-iommufd families like the built-in ones.

Write variants in a Python file of your own and pass it to any command with ``--variants
FILE.py`` (repeatable; worker processes load it too; JSON output and saved traces record its
path and SHA-256, and ``memtypes run`` of a trace reloads it).  An installed package can
provide them through the entry-point group ``memtypes.variants`` (the object named is imported,
and called if callable).  A name already taken (built-in or another file's), an unknown era,
switch, flush point or hook, or a hook whose signature does not take the parameters below is
refused at registration: one line naming the file, exit 2.

1. KVM, switches only (``examples`` of this kind: the built-ins below)::

    from memtypes.arch.reason import Reason
    from memtypes.linux.kvm.variants import Variant, register

    register(Variant(
        name="nc-for-platform-too",
        eras=("6.9", "6.17", "6.18", "7.1"),          # the era first-versions it applies to
        changes={"nc_without_flag": True},            # Rules fields to override
        why=Reason("variant/nc-for-platform-too", "my proposal, 2026-11",
                   "vfio-platform MMIO also mapped Normal-NC"),
    ))

2. KVM, a decision point replaced by a function (examples/variants/fwb_cacheable_uncached.py):
   each hook is called with the parameters listed in :data:`HOOKS`, positionally; ``default()``
   computes the era's own answer (appending its reasons to ``rs``), so a hook changes only the
   cases it cares about and appends its own :class:`Reason`::

    from memtypes.linux.kvm.kvm_host import S2_NORMAL, EINVAL

    WHY = Reason("variant/fwb-cacheable-uncached", "patch under review",
                 "FWB host and a VM_ALLOW_ANY_UNCACHED VMA: stage 2 Normal cacheable")

    def s2_attr(rules, host, vma, force_nc, rs, default):      # -> "NORMAL" | "NC" | "DEVICE"
        if force_nc and vma.allow_any_uc and host.fwb:
            rs.append(WHY)
            return S2_NORMAL
        return default()

    def memslot_P2(rules, host, vm, change, slot, vma, rs, default):   # -> errno or None
        return default()                                      # (P0: the pre-mapping or None)

    def check_extension(rules, host, cap, vm_fd, default):     # -> (value, errno, Reason)
        return (0, None, WHY) if cap == 243 else default()

    register(Variant("fwb-cacheable-uncached", ("6.9", "6.17", "6.18", "7.1"),
                     hooks={"s2_attr": s2_attr, "memslot_P2": memslot_P2,
                            "check_extension": check_extension}, why=WHY))

   Decision points: ``s2_attr`` (stage-2 attribute choice), ``device_test`` (returns
   ``(device, force_nc, errno)``), ``mte_fault_check`` (``(rules, vma, rs, default)`` -> errno or
   None), ``memslot_P0`` .. ``memslot_P8`` (P3 covers P3 and P3'; P4 the merged per-VMA check
   and, with ``vma`` None, the slot-wide one of cpfn-memslot-flag), ``check_extension``,
   ``enable_cap`` (``(rules, host, vm, cap, default)`` -> ``(vm, errno, Reason)``).  Hooks are
   resolved once per Rules value (``rules.hook(name)``); mainline Rules have none, so the fault
   path pays nothing for them.

3. DMA, flush points switched off (examples/variants/flush_no_unpin.py)::

    from memtypes.linux.dma.variants import DmaVariant

    register(DmaVariant(
        name="flush-no-unpin",
        base="vfio-flush-reviewed",          # bookkeeping: vfio-upstream, vfio-flush-v1 or -reviewed
        changes={"unpin": False},            # pin_map, replay, unpin, attach_nc, ioas_copy
        why=Reason("variant/flush-no-unpin", "my review comment", "no flush at unpin"),
    ))

4. DMA, a flush point or the coherency reported to KVM decided by a function::

    def flush_unpin(env, pages, default):    # pages: names ("P0", ...); default: the base's
        return True                          # flush at every unpin, flagged or not

    def kvm_coherent(env, group, default):   # what vfio_file_enforced_coherent reports
        return default

    register(DmaVariant("unpin-always", base="vfio-flush-reviewed",
                        hooks={"flush_unpin": flush_unpin, "kvm_coherent": kvm_coherent},
                        backends=("type1", "iommufd"), kernels=None))   # None: every DMA era

   (The table forms of the DMA families call a flush hook per page of a walk: a hook should
   decide page by page, as the examples do.)

Then ``memtypes explain --variants FILE.py --kernel 6.12+nc-for-platform-too ...``, ``memtypes
check --variants FILE.py`` (every family picks the variant up), ``memtypes diff 6.17
6.17+fwb-cacheable-uncached --variants FILE.py --check``.  Every switch is read at one place in
``prepare_memory_region.py``, ``user_mem_abort.py``, ``gmem_abort.py``, ``arm.py`` or
``guest.py``; grep for the field name to see its effect.  A rule that neither a switch nor a hook
expresses needs a new field in ``Rules`` (default = mainline behaviour) and one branch where the
kernel function reads it.

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

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from memtypes.arch.reason import Reason
from memtypes.errors import InputError
from memtypes.linux.dma import variants as dma_variants
from memtypes.linux.dma.variants import DmaVariant
from memtypes.linux.kvm import eras as _eras
from memtypes.linux.kvm.eras import MTE_FAULT_NONE, MTE_SLOT_NONE, Rules

ALL_ERAS = _eras.ERA_NAMES
FROM_5_14 = ALL_ERAS[1:]
FROM_6_9 = ALL_ERAS[ALL_ERAS.index("6.9"):]

_MEMSLOT = ("rules", "host", "vm", "change", "slot", "vma", "rs", "default")
HOOKS: dict[str, tuple[str, ...]] = {
    "s2_attr": ("rules", "host", "vma", "force_nc", "rs", "default"),
    "device_test": ("rules", "host", "slot", "vma", "rs", "default"),
    "mte_fault_check": ("rules", "vma", "rs", "default"),
    **{f"memslot_P{i}": _MEMSLOT for i in range(9)},
    "check_extension": ("rules", "host", "cap", "vm_fd", "default"),
    "enable_cap": ("rules", "host", "vm", "cap", "default"),
}
"""The KVM decision points a variant may replace, with the parameters each function is called
with (positionally; ``default()`` computes the era's own answer, appending its reasons to ``rs``)."""

_NOT_SWITCHES = ("era", "span", "first", "changed_by", "variant", "hooks")
SWITCHES: tuple[str, ...] = tuple(f for f in Rules.__dataclass_fields__ if f not in _NOT_SWITCHES)


@dataclass(frozen=True)
class Variant:
    name: str
    eras: tuple[str, ...]
    changes: Mapping[str, Any] = field(default_factory=dict)
    why: Reason | None = None
    hooks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    """Decision points (:data:`HOOKS`) replaced by functions."""
    source: str | None = None
    """The file (or entry point) that registered it; None for the built-ins."""

    def applies(self, era: str) -> bool:
        return era in self.eras


VARIANTS: dict[str, Variant] = {}
_BUILTIN: set[str] = set()
_SOURCE: list[str] = []
"""The file being loaded (set by :mod:`memtypes.linux.userfiles`): stamped on what it registers."""


class VariantError(ValueError):
    """A variant refused at registration (the loader reports it as one line naming the file)."""


def _check_hooks(name: str, hooks: Mapping[str, Any], spec: Mapping[str, tuple[str, ...]]) -> None:
    for hname, fn in hooks.items():
        if hname not in spec:
            raise VariantError(f"variant {name}: unknown hook '{hname}' (known: {', '.join(spec)})")
        if not callable(fn):
            raise VariantError(f"variant {name}: hook {hname} is not a function")
        params = spec[hname]
        try:
            inspect.signature(fn).bind(*params)
        except TypeError:
            try:
                got = str(inspect.signature(fn))
            except (TypeError, ValueError):
                got = "(?)"
            raise VariantError(f"variant {name}: hook {hname}{got} has the wrong signature: it is "
                               f"called as {hname}({', '.join(params)})") from None
        except ValueError:
            pass  # a builtin without a signature: trusted


def _taken(name: str) -> str | None:
    if name in VARIANTS:
        return "a built-in KVM variant" if name in _BUILTIN else f"a KVM variant from {VARIANTS[name].source}"
    if name in dma_variants.DMA_VARIANTS or name in dma_variants.ALIASES or name == "mainline":
        v = dma_variants.DMA_VARIANTS.get(name)
        return f"a DMA variant from {v.source}" if v is not None and v.source else "a built-in DMA variant"
    return None


def register(v: Variant | DmaVariant) -> Variant | DmaVariant:
    """Register a KVM :class:`Variant` or a :class:`DmaVariant`.  Refused (:class:`VariantError`):
    a name already taken (built-in or another file's: never silently replaced), an unknown era,
    switch, flush point or hook, a hook with the wrong signature."""
    if not isinstance(v, (Variant, DmaVariant)):
        raise VariantError(f"register() takes a Variant or DmaVariant, not {type(v).__name__}")
    if not v.name or "+" in v.name or "," in v.name or v.name.strip() != v.name:
        raise VariantError(f"variant name '{v.name}' is empty or contains '+', ',' or spaces")
    clash = _taken(v.name)
    if clash:
        raise VariantError(f"variant {v.name}: the name is already {clash} (choose another name)")
    src = _SOURCE[-1] if _SOURCE else None
    if isinstance(v, DmaVariant):
        if v.base not in dma_variants.NAMES:
            raise VariantError(f"DMA variant {v.name}: unknown base '{v.base}' "
                               f"(known: {', '.join(dma_variants.NAMES)})")
        bad = [k for k in v.changes if k not in dma_variants.FLUSH_POINTS]
        if bad:
            raise VariantError(f"DMA variant {v.name}: unknown flush point(s) {', '.join(bad)} "
                               f"(known: {', '.join(dma_variants.FLUSH_POINTS)})")
        if any(not isinstance(x, bool) for x in v.changes.values()):
            raise VariantError(f"DMA variant {v.name}: flush point switches are true or false")
        _check_hooks(v.name, v.hooks, dma_variants.HOOKS)
        if not v.backends or any(b not in dma_variants.BACKENDS for b in v.backends):
            raise VariantError(f"DMA variant {v.name}: backends must be among "
                               f"{', '.join(dma_variants.BACKENDS)}")
        dma_eras = ("5.14", "6.2", "6.9")
        if v.kernels is not None and any(k not in dma_eras for k in v.kernels):
            raise VariantError(f"DMA variant {v.name}: unknown era in {', '.join(v.kernels)} "
                               f"(the DMA families model {', '.join(dma_eras)})")
        if src and v.source is None:
            v = replace(v, source=src)
        dma_variants.DMA_VARIANTS[v.name] = v
        _clear_caches()
        return v
    bad_eras = [e for e in v.eras if e not in ALL_ERAS]
    if not v.eras or bad_eras:
        raise VariantError(f"variant {v.name}: unknown era(s) {', '.join(bad_eras) or '(none given)'} "
                           f"(eras by first version: {', '.join(ALL_ERAS)})")
    bad = [k for k in v.changes if k not in SWITCHES]
    if bad:
        raise VariantError(f"variant {v.name}: unknown Rules fields {bad} (switches: {', '.join(SWITCHES)})")
    _check_hooks(v.name, v.hooks, HOOKS)
    if src and v.source is None:
        v = replace(v, source=src)
    VARIANTS[v.name] = v
    _clear_caches()
    return v


def _clear_caches() -> None:
    _eras.kernel.cache_clear()


def unregister_user() -> None:
    """Forget every variant registered from a file or package (tests, and a failed load)."""
    for n in [n for n, v in VARIANTS.items() if n not in _BUILTIN]:
        del VARIANTS[n]
    for n in [n for n in dma_variants.DMA_VARIANTS if n not in dma_variants.BUILTIN]:
        del dma_variants.DMA_VARIANTS[n]
    _clear_caches()


def unregister_source(source: str) -> None:
    """Forget what ``source`` registered (a file that failed half way)."""
    for n in [n for n, v in VARIANTS.items() if v.source == source]:
        del VARIANTS[n]
    for n in [n for n, v in dma_variants.DMA_VARIANTS.items() if v.source == source]:
        del dma_variants.DMA_VARIANTS[n]
    _clear_caches()


def user_names() -> tuple[str, ...]:
    """The KVM variants registered from files or packages, in registration order."""
    return tuple(n for n in VARIANTS if n not in _BUILTIN)


def source_of(name: str) -> str | None:
    v = VARIANTS.get(name) or dma_variants.DMA_VARIANTS.get(name)
    return getattr(v, "source", None)


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


_BUILTIN.update(VARIANTS)


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
    if v is None and name != "mainline" and (name in dma_variants.DMA_VARIANTS or name in dma_variants.ALIASES):
        raise InputError(f"'{name}' is a DMA (VFIO/iommufd) variant, not a KVM one", where=where,
                         expected="a KVM variant here; DMA variants go to check, run and diff")
    if v is None:
        raise InputError(f"unknown kernel variant '{name}'", where=where,
                         expected="VERSION or VERSION+VARIANT with VARIANT one of " + ", ".join(VARIANTS))
    if not v.applies(r.era):
        raise InputError(f"variant '{name}' does not apply to the {r.span} era", where=where,
                         expected="a version in the eras " + ", ".join(v.eras))
    changes = dict(v.changes)
    why = (v.why,) if v.why else ()
    hooks = tuple(sorted(v.hooks.items())) if v.hooks else r.hooks
    return replace(r, variant=name, changed_by=r.changed_by + why, hooks=hooks, **changes)
