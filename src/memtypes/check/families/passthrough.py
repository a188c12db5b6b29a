"""Family ``passthrough``: memslots over RAM and passthrough regions, as the VMM and guest act.

Model (DESIGN.md "Families"): one initial state per host (params ``hosts``, default armv8.0,
grace, armv8.5-mte) × regions (params ``regions``, backing KINDs of memtypes.linux.drivers) ×
VMM actions (``vmm.create_memslot(slot, backing[, flags])``, ``vmm.delete_memslot(slot)``,
``vmm.mmap_over(slot, backing)``, ``vmm.enable_mte``, ``vmm.start_vcpus``) × guest actions
(``guest.access(slot, s1)``: an access with a usual stage-1 attribute; it faults the page in if
it has no stage-2 entry (a read fault), and with ``s1=Tagged`` on a tag-capable mapping of an MTE
VM writes allocation tags; running the guest starts its vCPUs).  The stage-1 choice is not kept
in the state: the mapping properties quantify over every usual stage-1 attribute (a guest *can*
pick any), through the arch engine's combine().

Every transition calls the kernel model (memtypes.linux.kvm: kvm_arch_prepare_memory_region,
kvm_handle_guest_abort, enable_cap), never re-deriving a rule.

State (a plain tuple): ``(host, mte, vcpus, accessed, slots)`` with ``slots`` a tuple of ``()``
(empty) or ``(region, flags, s2, tags)``: ``region`` indexes the current backing (after remaps),
``flags`` is ``""``, ``"L"`` (KVM_MEM_LOG_DIRTY_PAGES), ``"G"`` (gmem-only guest_memfd slot) or
``"P"`` (KVM_MEM_ENABLE_CACHEABLE_PFNMAP, only in the ``cpfn-memslot-flag`` variant),
``s2`` is ``""`` (no stage-2 entry), ``"N"``, ``"C"`` or ``"D"`` (NORMAL, NC, DEVICE), and ``tags``
the page's allocation tags: ``"S"`` stale (previous owner's), ``"Z"`` sanitised, ``"G"`` written
by the guest.

``applies(kernel, variant)``: mainline everywhere; a variant in the eras it names
(memtypes.linux.kvm.variants).  ``kernel`` is an era's first version ("6.9"); intra-era changes
(6.12 COPY_TAGS -EBUSY) are not applied (the era's first version is what is modelled).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from memtypes.arch import USUAL_S1, combine
from memtypes.check.family import ERAS, Family
from memtypes.errors import InputError
from memtypes.explore.model import Action, Property, act
from memtypes.hosts.profile import resolve
from memtypes.linux import drivers
from memtypes.linux.drivers import GMEM_MMAP_VMA, Backing
from memtypes.linux.kvm import variants as kvm_variants
from memtypes.linux.kvm.arm import KVM_CAP_ARM_MTE, enable_cap
from memtypes.linux.kvm.eras import Rules, era_rules
from memtypes.linux.kvm.handle_guest_abort import kvm_handle_guest_abort
from memtypes.linux.kvm.kvm_host import (
    KVM_MEM_ENABLE_CACHEABLE_PFNMAP, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, Fault, Slot, Vm,
)
from memtypes.linux.kvm.pgtable import stage2_memattr
from memtypes.linux.kvm.prepare_memory_region import kvm_arch_prepare_memory_region

DEFAULT_HOSTS = ("armv8.0", "grace", "armv8.5-mte")
DEFAULT_REGIONS = ("vfio-pci-bar", "vfio-platform-mmio", "nvgrace-resmem", "nvgrace-usemem", "gicv2-gicv",
                   "devmem-ram", "anon", "shmem", "pmem", "guest-memfd")
S2_CODE = {"NORMAL": "N", "NC": "C", "DEVICE": "D"}
S2_NAME = {"N": "NORMAL", "C": "NC", "D": "DEVICE"}
_READ = Fault()
S1_NAMES = tuple(USUAL_S1)      # the guest's usual stage-1 choices; "Tagged" writes allocation tags
_TAGGED_S1 = USUAL_S1["Tagged"]
_FLAG_NAMES = {"": "", "L": "log_dirty", "G": "gmem_only", "P": "cacheable_pfnmap"}


def applies(kernel: str, variant: str) -> bool:
    """Whether (era first version, variant) is modelled: mainline always; a variant in its eras."""
    return kernel in ERAS and kvm_variants.applies(kernel, variant)


def rules_for(kernel: str, variant: str) -> Rules:
    r = era_rules(kernel)
    if variant and variant != "mainline":
        r = kvm_variants.apply_variant(r, variant, where="variant")
    return r


def _list_param(params: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    v = params.get(key, default)
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v:
        raise InputError(f"'{key}' must be a non-empty list", where="params", field=key)
    return tuple(str(x) for x in v)


class KvmModel:
    """The shared engine of the ``passthrough`` and ``mte`` families."""

    family = "passthrough"

    def __init__(self, kernel: str, variant: str, params: Mapping[str, Any], *, default_regions=DEFAULT_REGIONS) -> None:
        self.kernel, self.variant = kernel, variant
        self.name = f"{self.family}@{kernel}" + ("" if variant == "mainline" else f"+{variant}")
        self.rules = rules_for(kernel, variant)
        self.host_names = _list_param(params, "hosts", DEFAULT_HOSTS)
        self.hosts = tuple(resolve(h, where="params.hosts") for h in self.host_names)
        self.feats = tuple(h.features for h in self.hosts)
        self.regions = _list_param(params, "regions", default_regions)
        for k in self.regions:
            drivers.check_kind(k, where="params.regions")
        self.nslots = int(params.get("slots", 1))
        if self.nslots not in (1, 2):
            raise InputError("'slots' must be 1 or 2", where="params", field="slots")
        # memslot flags the VMM may choose; the cpfn-memslot-flag variant adds its opt-in flag
        self._flag_choices = ("", "L", "P") if self.rules.cpfn_slot_flag else ("", "L")
        any_uc = self.rules.normal_nc
        self.backings: tuple[Backing, ...] = tuple(drivers.mmap(k, any_uc=any_uc) for k in self.regions)
        # remap targets: what the VMM can mmap over a slot's range (not the GICV frame)
        self.remap_backings: tuple[Backing | None, ...] = tuple(
            None if b.vgic else (Backing(b.kind, GMEM_MMAP_VMA, GMEM_MMAP_VMA.phys) if b.gmem else b)
            for b in self.backings)
        self.available = tuple(not (k.startswith("nvgrace-") and not self.rules.normal_nc) for k in self.regions)
        # per (host, s2 code): can the guest reach tagged accesses (S1 Tagged -> tagged result)?
        self._tag_reach = {}
        for h, f in enumerate(self.feats):
            for code, s2 in S2_NAME.items():
                c = combine(_TAGGED_S1, stage2_memattr(s2, f.fwb), fwb=f.fwb, features=f)
                self._tag_reach[(h, code)] = bool(c.tagged) and f.mte
        self._props = self._build_properties()

    # --- helpers --------------------------------------------------------------------------------
    def _slot(self, flags: str) -> Slot:
        if flags == "L":
            return Slot(flags=KVM_MEM_LOG_DIRTY_PAGES)
        if flags == "G":
            return Slot(flags=KVM_MEM_GUEST_MEMFD, gmem=True, gmem_only=True)
        if flags == "P":
            return Slot(flags=KVM_MEM_ENABLE_CACHEABLE_PFNMAP)
        return Slot()

    def _cur_backing(self, slot: tuple) -> Backing:
        """What is now over a slot: its region; a guest_memfd mmapped over a non-gmem slot is a
        plain shared VMA (the slot is not bound to it)."""
        r, flags = slot[0], slot[1]
        if flags != "G" and self.backings[r].gmem:
            return self.remap_backings[r]
        return self.backings[r]

    def init_states(self):
        empty = ((),) * self.nslots
        return [self._init(h, empty) for h in range(len(self.hosts))]

    def _init(self, h: int, slots: tuple) -> tuple:
        return (h, False, False, False, slots)

    # --- transitions ----------------------------------------------------------------------------
    def successors(self, state):
        h, mte, vcpus, acc, slots = state[:5]
        feats = self.feats[h]
        rules = self.rules
        vm = Vm(mte=mte, created_vcpus=int(vcpus))
        if not vcpus and not mte and rules.mte_cap:
            # KVM_CAP_ARM_MTE checks only that no vCPU exists: memslots made before it were
            # checked without MTE (the fault-time re-check is what catches them)
            if enable_cap(rules, feats, vm, KVM_CAP_ARM_MTE)[1] is None:
                yield act("vmm", "enable_mte"), self._with(state, mte=True)
        if not vcpus:
            yield act("vmm", "start_vcpus"), self._with(state, vcpus=True)
        for i, s in enumerate(slots):
            if not s:
                for r, kind in enumerate(self.regions):
                    if not self.available[r]:
                        continue
                    b = self.backings[r]
                    for flags in (("G",) if b.gmem else ("",) if b.vgic else self._flag_choices):
                        res = kvm_arch_prepare_memory_region(rules, feats, vm, "create", self._slot(flags),
                                                             (b.vma,) if b.vma is not None else ())
                        if not res.ok:
                            continue
                        s2 = ""
                        if res.premapped is not None:
                            s2 = S2_CODE[res.premapped.s2]
                        new = (r, flags, s2, "S")
                        a = (act("vmm", "create_memslot", slot=i, backing=kind, flags=_FLAG_NAMES[flags])
                             if flags else act("vmm", "create_memslot", slot=i, backing=kind))
                        yield a, self._set_slot(state, i, new)
                continue
            r, flags, s2, tags = s
            yield act("vmm", "delete_memslot", slot=i), self._set_slot(state, i, ())
            if flags != "G" and not self.backings[r].vgic:
                for r2, kind in enumerate(self.regions):
                    if self.remap_backings[r2] is None or not self.available[r2]:
                        continue
                    new = (r2, flags, "", "S")
                    if new != s:
                        yield act("vmm", "mmap_over", slot=i, backing=kind), self._set_slot(state, i, new)
            # guest actions (running the guest starts its vCPUs)
            b = self._cur_backing(s)
            run = self._with(state, vcpus=True, acc=True)
            if not s2:
                f = kvm_handle_guest_abort(rules, feats, vm, self._slot(flags), b, _READ)
                if f.result != "map":
                    continue          # error / abort: nothing changes
                s2 = S2_CODE[f.s2]
                if f.mte_sanitised and tags == "S":
                    tags = "Z"
            reach = mte and self._tag_reach[(h, s2)]
            for s1 in S1_NAMES:
                n = self._set_slot(run, i, (r, flags, s2, "G" if (reach and s1 == "Tagged") else tags))
                if n != state:
                    yield act("guest", "access", slot=i, s1=s1), n
        yield from self._extra(state, vm, feats)

    def _extra(self, state, vm, feats):
        return ()

    def actions(self, state):
        return [a for a, _ in self.successors(state)]

    def next_state(self, state, action: Action):
        for a, n in self.successors(state):
            if a == action:
                return n
        return None

    def _with(self, state, *, mte=None, vcpus=None, acc=None):
        h, m, v, a = state[:4]
        return (h, m if mte is None else mte, v if vcpus is None else vcpus, a if acc is None else acc) + state[4:]

    def _set_slot(self, state, i, new):
        slots = state[4]
        slots = slots[:i] + (new,) + slots[i + 1:]
        if self.nslots == 2:
            slots = tuple(sorted(slots))      # the two slots are interchangeable
        return state[:4] + (slots,) + state[5:]

    # --- properties -----------------------------------------------------------------------------
    def _mapped(self, state):
        h = state[0]
        for s in state[4]:
            if s and s[2]:
                yield h, s, self._cur_backing(s)

    def mmio_never_cacheable(self, state) -> bool:
        return not any(s[2] == "N" and b.phys is not None and b.phys.mmio for _, s, b in self._mapped(state))

    def nc_only_where_allowed(self, state) -> bool:
        return not any(s[2] == "C" and not (b.vma is not None and b.vma.allow_any_uc)
                       for _, s, b in self._mapped(state))

    def cacheable_needs_cmo_path(self, state) -> bool:
        for h, s, b in self._mapped(state):
            f = self.feats[h]
            if s[2] == "N" and b.phys is not None and not b.phys.linear and not (f.fwb and f.dic):
                return False
        return True

    def no_cacheability_mismatch(self, state) -> bool:
        for h, s, b in self._mapped(state):
            f = self.feats[h]
            phys = b.phys
            host_cacheable = b.vma.cacheable if b.vma is not None else bool(phys and phys.cacheable_ok and phys.linear)
            guest_noncacheable = s[2] in ("C", "D") or (s[2] == "N" and not f.fwb)
            guest_cacheable = s[2] == "N"
            mismatch = (host_cacheable and guest_noncacheable) or (not host_cacheable and guest_cacheable)
            # managed: Normal at stage 2 on memory KVM cleans through the linear map (non-FWB), or
            # FWB forcing the one cacheable view both sides share
            managed = s[2] == "N" and phys is not None and phys.linear and host_cacheable
            if mismatch and not managed:
                return False
        return True

    def tags_only_on_tag_storage(self, state) -> bool:
        if not state[1]:
            return True
        return not any(self._tag_reach[(h, s[2])] and not (b.phys and b.phys.tag_storage)
                       for h, s, b in self._mapped(state))

    def tags_sanitised(self, state) -> bool:
        if not state[1]:
            return True
        return not any(self._tag_reach[(h, s[2])] and b.phys and b.phys.tag_storage and s[3] == "S"
                       for h, s, b in self._mapped(state))

    def _build_properties(self):
        P = Property
        props = [
            P("mmio-never-cacheable", "always", self.mmio_never_cacheable,
              "no guest-reachable stage-2 mapping makes MMIO Normal cacheable", "2023 Normal-NC thread"),
            P("nc-only-where-allowed", "always", self.nc_only_where_allowed,
              "stage-2 Normal-NC only where the VMA has VM_ALLOW_ANY_UNCACHED", "VM_ALLOW_ANY_UNCACHED patch"),
            P("cacheable-needs-cmo-path", "always", self.cacheable_needs_cmo_path,
              "memory without a linear map is stage-2 cacheable only with FWB and DIC", "cacheable-PFNMAP thread"),
            P("no-cacheability-mismatch", "always", self.no_cacheability_mismatch,
              "guest/host cacheability differ only where the kernel keeps them coherent", "cacheable-PFNMAP series"),
            P("tags-only-on-tag-storage", "always", self.tags_only_on_tag_storage,
              "tagged accesses reachable only on memory with tag storage", "MTE for KVM guest"),
            P("tags-sanitised", "always", self.tags_sanitised,
              "a guest can never read a previous owner's tags", "MTE for KVM guest"),
        ]
        props += self._sometimes()
        return props

    def _sometimes(self):
        P = Property
        out = [P("mapping-exists", "sometimes", lambda s: any(x and x[2] for x in s[4])),
               P("guest-access-happened", "sometimes", lambda s: s[3])]
        if self.rules.mte_cap and any(f.mte for f in self.feats):
            out.append(P("tagged-access-happened", "sometimes", lambda s: any(x and x[3] == "G" for x in s[4])))
        return out

    def properties(self):
        return self._props

    # --- text -------------------------------------------------------------------------------------
    def format_state(self, state) -> str:
        h, mte, vcpus, acc, slots = state[:5]
        parts = [f"host={self.host_names[h]}", f"mte={int(mte)}", f"vcpus={int(vcpus)}"]
        for i, s in enumerate(slots):
            if not s:
                parts.append(f"slot{i}=-")
                continue
            r, flags, s2, tags = s
            fl = "," + _FLAG_NAMES[flags] if flags else ""
            parts.append(f"slot{i}={self.regions[r]}{fl} s2={S2_NAME.get(s2, 'none')} tags={tags}")
        return " ".join(parts)

    def describe(self, state, action: Action, next_state) -> str:
        """What a step did, with the kernel's reasons (UNVERIFIED ones marked)."""
        h, mte, vcpus = state[0], state[1], state[2]
        feats = self.feats[h]
        vm = Vm(mte=mte, created_vcpus=int(vcpus))
        if action.name == "access":
            i = action.arg("slot")
            s = state[4][i]
            txt = ""
            if s and not s[2]:
                f = kvm_handle_guest_abort(self.rules, feats, vm, self._slot(s[1]), self._cur_backing(s), _READ)
                unv = [r.rule for r in f.reasons + self._cur_backing(s).notes if r.unverified]
                txt = f"fault -> {f.result} {f.s2 or f.errno or ''} [{f.where}]"
                if f.mte_sanitised:
                    txt += ", tags sanitised"
                elif mte and f.s2 == "NORMAL":
                    txt += ", tags NOT sanitised"
                if unv:
                    txt += "; UNVERIFIED: " + ", ".join(unv)
            ns = next_state[4][i] if next_state else None
            if ns and ns[2]:
                fe = feats if mte else replace(feats, mte=False)
                c = combine(USUAL_S1[action.arg("s1")], stage2_memattr(S2_NAME[ns[2]], feats.fwb),
                            fwb=feats.fwb, features=fe)
                txt += ("; " if txt else "") + f"guest {action.arg('s1')} -> {c.label}"
            return txt
        if action.name == "create_memslot":
            s = next_state[4][action.arg("slot")] if next_state else None
            pre = f", pre-mapped {S2_NAME[s[2]]} (P0)" if s and s[2] else ""
            return f"memslot created{pre}"
        if action.name == "mmap_over":
            return "VMM mmapped a new backing over the slot (MMU notifier unmapped stage 2; no memslot re-check)"
        return ""


def build(kernel: str, variant: str, params: Mapping[str, Any]) -> KvmModel:
    if not applies(kernel, variant):
        raise InputError(f"variant '{variant}' is not modelled for kernel {kernel}", where="passthrough")
    return KvmModel(kernel, variant, params)


FAMILY = Family(
    name="passthrough",
    description="memslots over RAM, pmem, guest_memfd and passthrough regions (vfio-pci, vfio-platform, "
                "nvgrace-gpu, GICv2 GICV): stage-2 types, CMOs and MTE per host and kernel era",
    build=build,
    default_params={"hosts": list(DEFAULT_HOSTS), "regions": list(DEFAULT_REGIONS), "slots": 1},
    variants=tuple(kvm_variants.VARIANTS),
    kernels=ERAS,
    properties=("mmio-never-cacheable", "nc-only-where-allowed", "cacheable-needs-cmo-path",
                "no-cacheability-mismatch", "tags-only-on-tag-storage", "tags-sanitised"),
    applies=applies,
)

