"""The ``migration`` family: a VM moves from a source host to a destination host; the VMM may
check capabilities on the destination, then creates the VM and its memslots, restores MTE tags,
resumes, and the guest touches its memory.

The row kernel is the **destination** kernel; the source runs the same era or the previous one
(the era before, with the row's variant when it applies there, else mainline).  A VM here has
one region (one backing KIND from ``regions``): a multi-region VM stops at its first refusal, so
one region per VM keeps each region's behaviour visible (``memtypes migrate`` takes whole VMs).

State: ``(config, checked, phase, ...)``.  ``config`` indexes a table built once per model (source
host, destination host, source kernel, region, MTE, and the precomputed results of each step on
both hosts, from :func:`memtypes.check.migrate.bring_up`, so the family and ``memtypes migrate``
agree by construction).  Only configurations whose VM runs on the source are initial states.
The state goes on with columns that are functions of ``config`` (destination, region, MTE, how
the bring-up ends, whether the memory type is stable), so that the moves read only those: the
table-driven form of :mod:`memtypes.explore.table`.

Actions (actor ``vmm`` on the destination, then ``guest``):

* ``vmm.check_caps`` (optional, first): KVM_CHECK_EXTENSION 243 when the region is a cacheable
  PFNMAP/MIXEDMAP mapping, 205 when MTE is on; refuses when a needed cap reads 0;
* ``vmm.create_vm``: open the device (driver present?) and, for MTE, KVM_ENABLE_CAP(205);
* ``vmm.create_memslots``: KVM_SET_USER_MEMORY_REGION (P1-P7);
* ``vmm.restore_tags`` (MTE): KVM_ARM_MTE_COPY_TAGS TO_GUEST before dirty logging;
* ``vmm.resume``; ``guest.access``: the first stage-2 fault on the region.

Properties: ``migration-fails-early`` (never a fault after resume), and
``memtype-stable-across-migration`` (the region's stage-2 class, and the effective type for each
stage-1 choice listed in param ``guest_s1``, default none, is the same on both hosts, or the
migration was refused).  Targets: ``migration-completed``, ``guest-access-after-resume``.

Params: ``hosts`` (host specs, default grace and armv8.0; pairs are all ordered pairs
including same-host pairs), ``regions`` (default anon, nvgrace-usemem, mixedmap-cacheable,
vfio-pci-bar), ``mte`` (bools to explore, default [false]), ``vmm_checks`` (default both),
``guest_s1`` (stage-1 names from arch.USUAL_S1 whose effective class must also be stable),
``vms`` (default 1: VMs migrating at the same time, interleaved, interchangeable; they share
nothing, so more than one finds nothing new -- :class:`FleetMigrationModel`, the benchmark's
size).

Variants: ``cpfn-memslot-flag`` (the VMM sets KVM_MEM_ENABLE_CACHEABLE_PFNMAP on a cacheable
PFNMAP region when the source has FWB && DIC and carries it to the destination) and
``cacheable-pfnmap-no-fwb-check``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from memtypes.arch import USUAL_S1
from memtypes.arch.features import Features
from memtypes.check import migrate as mig
from memtypes.check.family import ERAS, Family, LiveVariants, int_param
from memtypes.errors import InputError
from memtypes.explore.model import Action, act
from memtypes.explore.table import Clause, Column, Moves, TableModel, TableProperty
from memtypes.hosts.profile import resolve_arm64
from memtypes.linux.kvm import variants as kvm_variants
from memtypes.linux.kvm.eras import Kernel, kernel as resolve_kernel

VARIANTS = ("cpfn-memslot-flag", "cacheable-pfnmap-no-fwb-check")
DEFAULT_PARAMS = {
    "hosts": ["grace", "armv8.0"],
    "regions": ["anon", "nvgrace-usemem", "mixedmap-cacheable", "vfio-pci-bar"],
    "mte": [False],
    "vmm_checks": list(mig.CHECKS),
    "guest_s1": [],
    "vms": 1,
}

# phases
START, CREATED, SLOTS, TAGS, RESUMED, ACCESSED, REFUSED, FAILED = range(8)
# columns of the table-driven state: (config, checked, phase, then functions of config)
CONFIG, CHECKED, PHASE, DST, REGION, MTEC, BEH, STABLE = range(8)
PHASES = ("start", "vm-created", "memslots-created", "tags-restored", "resumed", "accessed", "refused",
          "failed-after-resume")


@dataclass(frozen=True)
class Config:
    src: str
    dst: str
    ksrc: str
    kdst: str
    region: str
    mte: bool
    src_s2: str | None
    src_guest: tuple[tuple[str, str], ...]
    check_taken: bool            # a check applies (the VM needs a cap)
    check_ok: bool
    check_what: str
    fail_stage: str | None       # where the unchecked bring-up stops (None: runs)
    fail_text: str
    dst_s2: str | None
    dst_guest: tuple[tuple[str, str], ...]


def _kernel(era: str, variant: str) -> Kernel:
    return resolve_kernel(era if variant == "mainline" else f"{era}+{variant}", where="kernel")


def _source_kernels(era: str, variant: str) -> list[Kernel]:
    i = ERAS.index(era)
    out = []
    if i > 0:
        prev = ERAS[i - 1]
        out.append(_kernel(prev, variant if kvm_variants.applies(prev, variant) else "mainline"))
    out.append(_kernel(era, variant))
    return out


def _classes(s2: str | None, guest: tuple[tuple[str, str], ...], s1s: tuple[str, ...]) -> tuple:
    g = dict(guest)
    return (s2,) + tuple(mig.type_class(g.get(s)) for s in s1s)


class MigrationModel(TableModel):
    name = "migration"

    def __init__(self, kernel: str, variant: str, params: Mapping[str, Any]):
        self.kernel, self.variant = kernel, variant
        p = dict(DEFAULT_PARAMS)
        p.update(params or {})
        hosts = [resolve_arm64(str(h), where="migration.hosts") for h in p["hosts"]]
        regions = [str(r) for r in p["regions"]]
        for r in regions:
            if r not in mig.REGION_KINDS:
                raise InputError(f"unknown region '{r}'", where="migration.regions",
                                 expected=", ".join(mig.REGION_KINDS))
        for key, known in (("vmm_checks", mig.CHECKS), ("guest_s1", tuple(USUAL_S1))):
            for v in p.get(key) or ():
                if v not in known:
                    raise InputError(f"unknown {key} value '{v}'", where=f"migration.{key}",
                                     expected=", ".join(known))
        checks = tuple(c for c in mig.CHECKS if c in p["vmm_checks"])
        self.s1s = tuple(str(s) for s in p.get("guest_s1") or ())
        kd = _kernel(kernel, variant)
        configs: list[Config] = []
        for hs in hosts:
            for hd in hosts:
                for ks in _source_kernels(kernel, variant):
                    for mte in [bool(m) for m in p["mte"]]:
                        for region in regions:
                            c = self._config(hs.name, hs.features, hd.name, hd.features, ks, kd, region, mte,
                                             checks)
                            if c is not None:
                                configs.append(c)
        self.configs = tuple(configs)
        # the table-driven form: the moves depend on a configuration only through what its
        # actions name (destination, region, MTE) and how its bring-up ends (behaviour), so
        # those are columns of their own (functions of ``config``: the state count is unchanged)
        self._beh = [(c.check_taken, c.check_ok, c.fail_stage) for c in self.configs]
        dsts = tuple(dict.fromkeys(c.dst for c in self.configs))
        behs = tuple(dict.fromkeys(self._beh))
        self.columns = (Column("config", tuple(range(len(self.configs)))), Column("checked", (0, 1)),
                        Column("phase", tuple(range(len(PHASES)))), Column("dst", dsts),
                        Column("region", tuple(regions)), Column("mte", (False, True)),
                        Column("behaviour", behs), Column("stable", (False, True)))
        self.groups = (Moves("bring-up", (DST, REGION, MTEC, BEH, CHECKED, PHASE), (CHECKED, PHASE),
                             self._moves),)

    @staticmethod
    def _config(sname: str, sf: Features, dname: str, df: Features, ks: Kernel, kd: Kernel, region: str,
                mte: bool, checks: tuple[str, ...]) -> Config | None:
        flag = (mig.needs_cacheable_pfnmap(region) and sf.fwb and sf.dic and ks.rules.cpfn_slot_flag)
        src_vm = mig.VmSpec(region, (mig.RegionSpec(region, region, "cacheable_pfnmap" if flag else None),),
                            mte, checks)
        src = mig.bring_up(src_vm, sname, sf, ks, (), destination=False)
        if not src.runs:
            return None
        dflag = flag and kd.rules.cpfn_slot_flag
        dst_vm = mig.VmSpec(region, (mig.RegionSpec(region, region, "cacheable_pfnmap" if dflag else None),),
                            mte, checks)
        chk = mig.bring_up(dst_vm, dname, df, kd, checks)
        caps = [s for s in chk.steps if s.stage == mig.ST_CAP and s.result != "skipped"]
        w = mig.bring_up(dst_vm, dname, df, kd, ())
        sr, dr = src.regions[0], (w.regions[0] if w.regions else None)
        return Config(
            sname, dname, mig.kernel_name(ks), mig.kernel_name(kd), region, mte, sr.s2, sr.guest,
            bool(caps), not any(s.failed for s in caps), "; ".join(s.what for s in caps),
            None if w.runs else w.stage, w.summary(),
            dr.s2 if dr is not None and dr.result == "map" else None,
            dr.guest if dr is not None else ())

    # --- model protocol -----------------------------------------------------------------------
    def init_rows(self):
        return [(i, 0, START, c.dst, c.region, c.mte, b, self._stable(c))
                for i, (c, b) in enumerate(zip(self.configs, self._beh))]

    def _stable(self, c: Config) -> bool:
        return _classes(c.src_s2, c.src_guest, self.s1s) == _classes(c.dst_s2, c.dst_guest, self.s1s)

    @staticmethod
    def _moves(vals):
        """The destination VMM's and guest's next step: ``(action, (checked, phase))``."""
        dst, region, mte, (check_taken, check_ok, fail_stage), checked, ph = vals
        out = []
        if ph == START:
            if not checked and check_taken:
                out.append((act("vmm", "check_caps", host=dst), (1, START if check_ok else REFUSED)))
            out.append((act("vmm", "create_vm", host=dst, mte=mte),
                        (checked, REFUSED if fail_stage in (mig.ST_DEVICE, mig.ST_ENABLE) else CREATED)))
        elif ph == CREATED:
            out.append((act("vmm", "create_memslots", region=region),
                        (checked, REFUSED if fail_stage == mig.ST_MEMSLOT else SLOTS)))
        elif ph == SLOTS and mte:
            out.append((act("vmm", "restore_tags"), (checked, REFUSED if fail_stage == mig.ST_TAGS else TAGS)))
        elif ph == SLOTS or ph == TAGS:
            out.append((act("vmm", "resume"), (checked, RESUMED)))
        elif ph == RESUMED:
            out.append((act("guest", "access", region=region),
                        (checked, FAILED if fail_stage == mig.ST_FAULT else ACCESSED)))
        return out

    def table_properties(self):
        P = TableProperty
        return [
            P("migration-fails-early", "always", (Clause((PHASE,), lambda ph: ph != FAILED),),
              "a VM that cannot run on the destination is refused before it resumes there",
              "Marc Zyngier, cacheable-PFNMAP v3 thread (2025-03-26)"),
            P("memtype-stable-across-migration", "always",
              (Clause((PHASE, STABLE), lambda ph, stable: ph != ACCESSED or stable),),
              "each guest page keeps its memory type class across migration, or migration is refused",
              "f55ce5a6cd33; cacheable-PFNMAP thread"),
            P("migration-completed", "sometimes", (Clause((PHASE,), lambda ph: ph == ACCESSED),)),
            P("guest-access-after-resume", "sometimes", (Clause((PHASE,), lambda ph: ph in (ACCESSED, FAILED)),)),
        ]

    # --- rendering --------------------------------------------------------------------------
    def format_state(self, s) -> str:
        c = self.configs[s[0]]
        return (f"{c.region} VM{' (MTE)' if c.mte else ''} {c.src} {c.ksrc} -> {c.dst} {c.kdst}: "
                f"{PHASES[s[2]]}{' (caps checked)' if s[1] else ''}")

    def describe(self, s, a, n) -> str:
        c = self.configs[s[0]]
        head = f"[{c.region}: {c.src} {c.ksrc} (S2 {c.src_s2}) -> {c.dst} {c.kdst}] "
        if a.name == "check_caps":
            return head + f"VMM: {c.check_what}: " + ("ok" if n[2] != REFUSED else "migration refused")
        if n[2] == REFUSED:
            return head + f"{a.actor}.{a.name}: {c.fail_text}"
        if n[2] == FAILED:
            return head + f"guest access after resume: {c.fail_text}"
        if n[2] == ACCESSED:
            ch = "" if c.src_s2 == c.dst_s2 else f" (was {c.src_s2}: memory type changed)"
            return head + f"guest access: stage-2 {c.dst_s2}{ch}"
        return head + f"{a.actor}.{a.name}: ok"


class FleetMigrationModel(MigrationModel):
    """``vms`` VMs migrate at the same time over the same hosts, regions and kernels, their
    steps interleaved (param ``vms`` > 1).  The VMs share nothing in the model (each brings up
    its own VM on the destination), so this finds no behaviour one VM does not: it exists to
    measure the explorer on this family's moves at a size where a search takes seconds
    (``memtypes bench``), and a fleet's trace shows each VM's steps as one VM's do.

    State: one column per VM, ``(config, checked, phase)``, the VMs interchangeable (symmetry
    reduction: a state is canonical with its VMs sorted; the model's moves never reorder VMs,
    the explorer does).  With ``symmetric = ()`` it is the unreduced model (every VM order),
    which the tests search against the reduced one.  The moves of a VM are the single-VM
    model's on that VM; the properties hold when they hold for every VM (targets: for some)."""

    def __init__(self, kernel: str, variant: str, params: Mapping[str, Any], vms: int):
        super().__init__(kernel, variant, params)
        self.vms = vms
        one = [(i, chk, ph) for i in range(len(self.configs)) for chk in (0, 1) for ph in range(len(PHASES))]
        self.columns = tuple(Column(f"vm{v}", tuple(one)) for v in range(vms))
        self.symmetric = (tuple(range(vms)),)
        self.groups = tuple(Moves(f"vm{v}", (v,), (v,), lambda vals, v=v: self._vm_moves(v, vals[0]),
                                  table="vm") for v in range(vms))

    def _one(self, vm: tuple) -> tuple:
        """The single-VM model's row of one VM's ``(config, checked, phase)``."""
        i, chk, ph = vm
        c = self.configs[i]
        return (i, chk, ph, c.dst, c.region, c.mte, self._beh[i], self._stable(c))

    def _vm_moves(self, v: int, vm: tuple):
        r = self._one(vm)
        return [(Action(a.actor, a.name, (("vm", v),) + a.args), ((vm[0], chk, ph),))
                for a, (chk, ph) in self._moves(r[3:7] + r[1:3])]

    def init_rows(self):
        """Every VM at the start of a configuration.  Declared symmetric, one row per orbit (the
        VMs' configurations ascending, as :meth:`canon` would sort them); without the declaration
        (``symmetric = ()``, the unreduced search) every ordered tuple, so that the initial states
        are closed under swapping VMs, as the unreduced model's must be (with only the ascending
        rows, a search from them misses every state whose VMs' configurations descend)."""
        first = [(i, 0, START) for i in range(len(self.configs))]
        rows = (itertools.combinations_with_replacement(first, self.vms) if self.symmetric
                else itertools.product(first, repeat=self.vms))
        return [tuple(vs) for vs in rows]

    def table_properties(self):
        out = []
        for p in super().table_properties():
            (cl,) = p.clauses
            idx = [{CONFIG: 0, CHECKED: 1, PHASE: 2}.get(c) for c in cl.reads]
            if None in idx:                   # (stable: a function of the config)
                pred = (lambda vm, pr=cl.pred, reads=cl.reads:
                        pr(*(self._one(vm)[c] for c in reads)))
            else:
                pred = lambda vm, pr=cl.pred, idx=idx: pr(*(vm[k] for k in idx))  # noqa: E731
            out.append(TableProperty(p.name, p.kind, tuple(Clause((v,), pred) for v in range(self.vms)),
                                     p.rationale, p.source))
        return out

    def format_state(self, s) -> str:
        return "; ".join(f"vm{v}: {super(FleetMigrationModel, self).format_state(self._one(vm))}"
                         for v, vm in enumerate(s))

    def describe(self, s, a, n) -> str:
        v = dict(a.args)["vm"]
        inner = Action(a.actor, a.name, tuple(x for x in a.args if x[0] != "vm"))
        return f"vm{v} " + super().describe(self._one(s[v]), inner, self._one(n[v]))


MAX_VMS = 6
"""Most VMs migrated at once (7 VMs take 1.1 GB and 30 s to build before the search; the
default is 1, the benchmark 2)."""


def build(kernel: str, variant: str, params: Mapping[str, Any]) -> MigrationModel:
    vms = int_param(params or {}, "migration", "vms", 1, hi=MAX_VMS)
    if vms > 1:
        return FleetMigrationModel(kernel, variant, params, vms)
    return MigrationModel(kernel, variant, params)


def applies(kernel: str, variant: str) -> bool:
    return kvm_variants.applies(kernel, variant)


FAMILY = Family(
    name="migration",
    description="a VM with one region migrates between two hosts (the row kernel is the destination's; "
                "the source runs the same or the previous era): VMM capability checks, VM and memslot "
                "creation, tag restore, resume, first guest access",
    build=build,
    default_params=DEFAULT_PARAMS,
    variants=LiveVariants(VARIANTS, kvm_variants.user_names),
    properties=("migration-fails-early", "memtype-stable-across-migration"),
    applies=applies,
    bench_params={"hosts": ["grace", "armv8.0", "armv8.5-mte", "armv8.5-mte-nofwb", "armv9-mte-perm"],
                  "regions": list(mig.REGION_KINDS), "mte": [False, True], "vms": 2},
)
