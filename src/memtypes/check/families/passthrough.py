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

State (a flat tuple, one value per column of the table-driven model of
:mod:`memtypes.explore.table`): ``(host, mte, vcpus, accessed, slot0, ..., slotN-1)`` (param
``slots``, 1 to 5; the slots are interchangeable, so a state keeps them sorted), each slot ``()``
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

import functools
import itertools
from dataclasses import replace
from typing import Any, Mapping

from memtypes.arch import USUAL_S1, combine
from memtypes.check.family import ERAS, Family, LiveVariants
from memtypes.errors import InputError
from memtypes.explore.model import Action, act
from memtypes.explore.table import Clause, Column, Moves, TableModel, TableProperty
from memtypes.hosts.profile import resolve, resolve_arm64
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
# columns of the table-driven state (see the module docstring)
HOST, MTE, VCPUS, ACC, SLOT0 = range(5)
BOOL = (False, True)
SLOT_FLAGS = ("", "G", "L", "P")          # sorted: a slot value's code follows its sort order
SLOT_S2 = ("", "C", "D", "N")
SLOT_TAGS = ("G", "S", "Z")
MAX_SLOTS = 5                   # 5: 4.7 million states (memtypes bench --size large)


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


class KvmModel(TableModel):
    """The shared engine of the ``passthrough`` and ``mte`` families, as a table-driven model
    (:mod:`memtypes.explore.table`): every group of moves reads the VM's few global columns and
    one slot, so the vector explorer calls the kernel model once per distinct (host, VM, slot)."""

    family = "passthrough"

    def __init__(self, kernel: str, variant: str, params: Mapping[str, Any], *, default_regions=DEFAULT_REGIONS) -> None:
        self.kernel, self.variant = kernel, variant
        self.name = f"{self.family}@{kernel}" + ("" if variant == "mainline" else f"+{variant}")
        self.rules = rules_for(kernel, variant)
        self.host_names = _list_param(params, "hosts", DEFAULT_HOSTS)
        self.hosts = tuple(resolve_arm64(h, where="params.hosts") for h in self.host_names)
        self.feats = tuple(h.features for h in self.hosts)
        self.regions = _list_param(params, "regions", default_regions)
        for k in self.regions:
            drivers.check_kind(k, where="params.regions")
        self.nslots = params.get("slots", 1)
        if isinstance(self.nslots, bool) or not isinstance(self.nslots, int) or not 1 <= self.nslots <= MAX_SLOTS:
            raise InputError(f"'slots' must be an integer from 1 to {MAX_SLOTS}", where="params", field="slots")
        # memslot flags the VMM may choose; the cpfn-memslot-flag variant adds its opt-in flag
        self._flag_choices = ("", "L", "P") if self.rules.cpfn_slot_flag else ("", "L")
        self.backings: tuple[Backing, ...] = tuple(drivers.mmap_for(k, self.rules) for k in self.regions)
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
        # the table-driven form: columns, then the groups of moves in the model's order
        self.SLOTS = tuple(range(SLOT0, SLOT0 + self.nslots))
        slot_values = ((),) + tuple(itertools.product(range(len(self.regions)), SLOT_FLAGS, SLOT_S2, SLOT_TAGS))
        self.columns = (Column("host", tuple(range(len(self.hosts)))), Column("mte", BOOL),
                        Column("vcpus", BOOL), Column("accessed", BOOL)) + tuple(
            Column(f"slot{i}", slot_values) for i in range(self.nslots)) + self._extra_columns()
        self.symmetric = (self.SLOTS,) if self.nslots > 1 else ()
        # actions and kernel answers are values of a few inputs: each is computed once
        self._act = functools.lru_cache(maxsize=None)(act)
        self._prepare = functools.lru_cache(maxsize=None)(self._prepare_region)
        self._fault = functools.lru_cache(maxsize=None)(self._read_fault)
        self.groups = self._groups()
        self._props = self._build_properties()

    def _extra_columns(self) -> tuple[Column, ...]:
        return ()

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

    def _prepare_region(self, h: int, mte: bool, vcpus: bool, change: str, r: int, flags: str):
        """kvm_arch_prepare_memory_region for a slot with ``flags`` over region ``r`` (for a
        created slot: what is now over it, see :meth:`_cur_backing`)."""
        b = self.backings[r] if change == "create" else self._cur_backing((r, flags))
        vm = Vm(mte=mte, created_vcpus=int(vcpus))
        return kvm_arch_prepare_memory_region(self.rules, self.feats[h], vm, change, self._slot(flags),
                                              (b.vma,) if b.vma is not None else ())

    def _read_fault(self, h: int, mte: bool, vcpus: bool, r: int, flags: str):
        """The guest's first (read) fault on a slot with ``flags`` over region ``r``."""
        vm = Vm(mte=mte, created_vcpus=int(vcpus))
        return kvm_handle_guest_abort(self.rules, self.feats[h], vm, self._slot(flags),
                                      self._cur_backing((r, flags)), _READ)

    def init_rows(self):
        return [self._init(h) for h in range(len(self.hosts))]

    def _init(self, h: int) -> tuple:
        return (h, False, False, False) + ((),) * self.nslots

    def slots_of(self, state) -> tuple:
        return state[SLOT0:SLOT0 + self.nslots]

    # --- transitions ----------------------------------------------------------------------------
    def _groups(self) -> tuple[Moves, ...]:
        # 7.2+: KVM_CAP_ARM_MTE is refused once a guest_memfd slot exists, so the move reads the slots
        reads = (HOST, MTE, VCPUS) + (self.SLOTS if self.rules.gmem_mte_excl else ())
        out = [Moves("enable_mte", reads, (MTE,), self._enable_mte),
               Moves("start_vcpus", (VCPUS,), (VCPUS,), self._start_vcpus)]
        for i, c in enumerate(self.SLOTS):
            out.append(Moves(f"slot{i}", (HOST, MTE, VCPUS, ACC, c), (VCPUS, ACC, c),
                             functools.partial(self._slot_moves, i), table="slot"))
        return tuple(out)

    def _enable_mte(self, vals):
        h, mte, vcpus = vals[:3]
        # KVM_CAP_ARM_MTE checks that no vCPU exists (and, 7.2+, that no memslot has a guest_memfd):
        # memslots made before it were checked without MTE (the fault-time re-check catches them)
        gmem = any(s and s[1] == "G" for s in vals[3:])
        if not vcpus and not mte and self.rules.mte_cap:
            if enable_cap(self.rules, self.feats[h], Vm(mte=mte, created_vcpus=0, gmem_slot=gmem),
                          KVM_CAP_ARM_MTE)[1] is None:
                return [(act("vmm", "enable_mte"), (True,))]
        return []

    def argument_values(self) -> dict[tuple[str, str], dict[str, set]]:
        """The values the VMM's slot actions can ever take here (scenario steps outside them are
        mistakes, not steps this kernel merely does not offer)."""
        slots = set(range(self.nslots))
        kinds = set(self.regions)
        return {("vmm", "create_memslot"): {"slot": slots, "backing": kinds},
                ("vmm", "mmap_over"): {"slot": slots, "backing": kinds},
                ("vmm", "delete_memslot"): {"slot": slots},
                ("guest", "access"): {"slot": slots}}

    def _start_vcpus(self, vals):
        return [] if vals[0] else [(act("vmm", "start_vcpus"), (True,))]

    def _slot_moves(self, i, vals):
        """The VMM's and the guest's moves on slot ``i``: ``(action, (vcpus, accessed, slot))``."""
        h, mte, vcpus, acc, s = vals
        out = []
        if not s:
            for r, kind in enumerate(self.regions):
                if not self.available[r]:
                    continue
                b = self.backings[r]
                for flags in (("G",) if b.gmem else ("",) if b.vgic else self._flag_choices):
                    res = self._prepare(h, mte, vcpus, "create", r, flags)
                    if not res.ok:
                        continue
                    s2 = S2_CODE[res.premapped.s2] if res.premapped is not None else ""
                    a = (self._act("vmm", "create_memslot", slot=i, backing=kind, flags=_FLAG_NAMES[flags])
                         if flags else self._act("vmm", "create_memslot", slot=i, backing=kind))
                    out.append((a, (vcpus, acc, (r, flags, s2, "S"))))
            return out
        r, flags, s2, tags = s
        out.append((self._act("vmm", "delete_memslot", slot=i), (vcpus, acc, ())))
        if flags != "G" and not self.backings[r].vgic:
            for r2, kind in enumerate(self.regions):
                if self.remap_backings[r2] is None or not self.available[r2]:
                    continue
                new = (r2, flags, "", "S")
                if new != s:
                    out.append((self._act("vmm", "mmap_over", slot=i, backing=kind), (vcpus, acc, new)))
        # guest actions (running the guest starts its vCPUs)
        if not s2:
            f = self._fault(h, mte, vcpus, r, flags)
            if f.result != "map":
                return out            # error / abort: nothing changes
            s2 = S2_CODE[f.s2]
            if f.mte_sanitised and tags == "S":
                tags = "Z"
        reach = mte and self._tag_reach[(h, s2)]
        for s1 in S1_NAMES:
            out.append((self._act("guest", "access", slot=i, s1=s1),
                        (True, True, (r, flags, s2, "G" if (reach and s1 == "Tagged") else tags))))
        return out

    # --- properties (per slot: one clause each, over the host, the VM's MTE and the slot) ---------
    def _mmio_ok(self, s) -> bool:
        return not (s and s[2] == "N" and (b := self._cur_backing(s)).phys is not None and b.phys.mmio)

    def _nc_ok(self, s) -> bool:
        return not (s and s[2] == "C" and not ((b := self._cur_backing(s)).vma is not None and b.vma.allow_any_uc))

    def _cmo_ok(self, h, s) -> bool:
        if not (s and s[2] == "N"):
            return True
        f, b = self.feats[h], self._cur_backing(s)
        return not (b.phys is not None and not b.phys.linear and not (f.fwb and f.dic))

    def _mismatch_ok(self, h, s) -> bool:
        if not (s and s[2]):
            return True
        f, b = self.feats[h], self._cur_backing(s)
        phys = b.phys
        host_cacheable = b.vma.cacheable if b.vma is not None else bool(phys and phys.cacheable_ok and phys.linear)
        guest_noncacheable = s[2] in ("C", "D") or (s[2] == "N" and not f.fwb)
        guest_cacheable = s[2] == "N"
        mismatch = (host_cacheable and guest_noncacheable) or (not host_cacheable and guest_cacheable)
        # managed: Normal at stage 2 on memory KVM cleans through the linear map (non-FWB), or
        # FWB forcing the one cacheable view both sides share
        managed = s[2] == "N" and phys is not None and phys.linear and host_cacheable
        return not (mismatch and not managed)

    def _tag_storage_ok(self, h, mte, s) -> bool:
        if not (mte and s and s[2]):
            return True
        b = self._cur_backing(s)
        return not (self._tag_reach[(h, s[2])] and not (b.phys and b.phys.tag_storage))

    def _sanitised_ok(self, h, mte, s) -> bool:
        if not (mte and s and s[2]):
            return True
        b = self._cur_backing(s)
        return not (self._tag_reach[(h, s[2])] and b.phys and b.phys.tag_storage and s[3] == "S")

    def _per_slot(self, pre: tuple[int, ...], pred) -> tuple[Clause, ...]:
        return tuple(Clause(pre + (c,), pred) for c in self.SLOTS)

    def _build_properties(self):
        P = TableProperty
        ps = self._per_slot
        props = [
            P("mmio-never-cacheable", "always", ps((), self._mmio_ok),
              "no guest-reachable stage-2 mapping makes MMIO Normal cacheable", "2023 Normal-NC thread"),
            P("nc-only-where-allowed", "always", ps((), self._nc_ok),
              "stage-2 Normal-NC only where the VMA has VM_ALLOW_ANY_UNCACHED", "VM_ALLOW_ANY_UNCACHED patch"),
            P("cacheable-needs-cmo-path", "always", ps((HOST,), self._cmo_ok),
              "memory without a linear map is stage-2 cacheable only with FWB and DIC", "cacheable-PFNMAP thread"),
            P("no-cacheability-mismatch", "always", ps((HOST,), self._mismatch_ok),
              "guest/host cacheability differ only where the kernel keeps them coherent", "cacheable-PFNMAP series"),
            P("tags-only-on-tag-storage", "always", ps((HOST, MTE), self._tag_storage_ok),
              "tagged accesses reachable only on memory with tag storage", "MTE for KVM guest"),
            P("tags-sanitised", "always", ps((HOST, MTE), self._sanitised_ok),
              "a guest can never read a previous owner's tags", "MTE for KVM guest"),
        ]
        props += self._sometimes()
        return props

    def _sometimes(self):
        P = TableProperty
        out = [P("mapping-exists", "sometimes", self._per_slot((), lambda x: bool(x and x[2]))),
               P("guest-access-happened", "sometimes", (Clause((ACC,), bool),))]
        if self.rules.mte_cap and any(f.mte for f in self.feats):
            out.append(P("tagged-access-happened", "sometimes",
                         self._per_slot((), lambda x: bool(x and x[3] == "G"))))
        return out

    def table_properties(self):
        return self._props

    # --- text -------------------------------------------------------------------------------------
    def format_state(self, state) -> str:
        h, mte, vcpus = state[:3]
        slots = self.slots_of(state)
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
            s = state[SLOT0 + i]
            txt = ""
            why: list[str] = []
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
                why = [f"why: {r.rule} ({r.source})" for r in f.reasons]
            ns = next_state[SLOT0 + i] if next_state else None
            if ns and ns[2]:
                fe = feats if mte else replace(feats, mte=False)
                mattr = stage2_memattr(S2_NAME[ns[2]], feats.fwb)
                c = combine(USUAL_S1[action.arg("s1")], mattr, fwb=feats.fwb, features=fe)
                txt += ("; " if txt else "") + f"guest {action.arg('s1')} -> {c.label}"
                # every stage-1 choice, so the one that exhibits a violation is visible
                others = [f"{n} -> {combine(v, mattr, fwb=feats.fwb, features=fe).label}"
                          for n, v in USUAL_S1.items() if n != action.arg("s1")]
                why.append("other guest stage-1 choices: " + ", ".join(others))
            return "\n".join([txt] + why) if why else txt
        if action.name == "create_memslot":
            s = next_state[SLOT0 + action.arg("slot")] if next_state else None
            pre = f", pre-mapped {S2_NAME[s[2]]} (P0)" if s and s[2] else ""
            return f"memslot created{pre}"
        if action.name == "mmap_over":
            return "VMM mmapped a new backing over the slot (MMU notifier unmapped stage 2; no memslot re-check)"
        return ""


def host_text(name: str) -> str:
    """``grace (FWB, DIC, no MTE)``: a host profile and the features that decide here."""
    f = resolve(name, where="params.hosts").features
    return f"{name} (" + ", ".join(("" if getattr(f, n) else "no ") + n.upper()
                                   for n in ("fwb", "dic", "mte")) + ")"


def init_text(params: Mapping[str, Any], index: int) -> str:
    """Initial state ``index`` of passthrough and mte: a fresh VM on host ``hosts[index]``."""
    hosts = _list_param(params, "hosts", DEFAULT_HOSTS)
    return f"host {host_text(hosts[index])}, a new VM, no memslot"


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
    variants=LiveVariants((), kvm_variants.names),
    init_text=init_text,
    kernels=ERAS,
    properties=("mmio-never-cacheable", "nc-only-where-allowed", "cacheable-needs-cmo-path",
                "no-cacheability-mismatch", "tags-only-on-tag-storage", "tags-sanitised"),
    applies=applies,
    bench_params={"slots": 4},
)

