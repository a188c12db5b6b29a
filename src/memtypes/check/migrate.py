"""Live migration of an arm64 KVM guest between two hosts (and two kernels), step by step.

``migrate(vm, src, dst, kernel_src, kernel_dst)`` answers, for the move SRC -> DST and for the
way back DST -> SRC:

* whether the VM can run on the source at all (if not, there is nothing to migrate);
* at which step an incompatible migration is refused, twice: *with* the VMM's capability checks
  (the checks are VMM steps it may or may not take) and *without* them.  The steps, in order:

  1. ``capability-check`` (VMM, optional): KVM_CHECK_EXTENSION on the destination VM fd:
     cap 243 (KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED) when a region is a cacheable
     VM_PFNMAP/VM_MIXEDMAP mapping; cap 205 (KVM_CAP_ARM_MTE) when the VM uses MTE;
  2. ``device``: the device's driver exists in the destination kernel (nvgrace-gpu: 6.9);
  3. ``enable-cap``: KVM_ENABLE_CAP(KVM_CAP_ARM_MTE) before any vCPU (MTE VMs);
  4. ``memslot``: KVM_SET_USER_MEMORY_REGION for every region (errno + rule, e.g. P4 -EINVAL);
  5. ``restore-tags``: KVM_ARM_MTE_COPY_TAGS (TO_GUEST) on the destination, before dirty
     logging (MTE VMs);
  6. ``resume`` and the guest's first access to each region (``fault``): an error here comes
     back from KVM_RUN after the VM resumed on the destination, which is the bad case
     ("blow up on the first page fault", Marc Zyngier).

  Steps 1-5 refuse *early* (before resume); step 6 fails *late*.

* which guest pages (regions) change memory type across the move: per region the stage-2 type
  (NORMAL / NC / DEVICE) on each side and the guest's effective type for each usual stage-1
  choice, combined with each host's FWB through :func:`memtypes.arch.combine`.  A stage-2 class
  change (e.g. nvgrace usemem DEVICE on 6.16 -> NORMAL on 6.17) is a ``stage-2`` change; an
  effective-type change with the same stage-2 class (RAM that the guest maps Normal-NC: NC
  without FWB, forced WB with FWB) is a ``guest`` change, which no KVM capability reports.

Every step carries the reasons of the linux layer plus the migration reasons below.

VM description file (YAML, loaded safely through memtypes.yamlfile; errors name file:line and field)::

    name: gpu-vm                  # optional (default: the file name)
    memory: anon                  # backing KIND of guest RAM (default anon), or
                                  #   {backing: shmem, name: ram}
    mte: false                    # the VM enables KVM_CAP_ARM_MTE (default false)
    devices:                      # optional: device regions, each a KIND or a mapping
      - name: gpu-usemem
        backing: nvgrace-usemem
      - {name: gpu-resmem, backing: nvgrace-resmem}
      - vfio-pci-bar              # name defaults to the backing (deduplicated: -2, -3 ...)
    vmm_checks: [cacheable-pfnmap-cap, mte-cap]   # the checks the VMM takes (default: all)

A region may also carry ``slot_flags`` (comma list of ``log_dirty``, ``readonly``,
``cacheable_pfnmap``; the last one is the memslot flag of the ``cpfn-memslot-flag`` variant).
Backing KINDs are those of :mod:`memtypes.linux.drivers` (``hole`` excluded).  Example files are
in ``tests/fixtures/vms/``.
"""

from __future__ import annotations

from memtypes.linux.version import NEWEST

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any


from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes import yamlfile
from memtypes.errors import InputError
from memtypes.hosts.profile import HostProfile
from memtypes.linux import drivers
from memtypes.linux.kvm.arm import (
    KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, KVM_CAP_ARM_MTE, check_extension, enable_cap,
)
from memtypes.linux.kvm.eras import Kernel, kernel as resolve_kernel
from memtypes.linux.kvm.explain import Explanation, explain, parse_slot_flags
from memtypes.linux.kvm.guest import mte_copy_tags
from memtypes.linux.kvm.kvm_host import Vm

NEWEST_KERNEL = f"{NEWEST[0]}.{NEWEST[1]}"

CHECK_CPFN = "cacheable-pfnmap-cap"
CHECK_MTE = "mte-cap"
CHECKS: tuple[str, ...] = (CHECK_CPFN, CHECK_MTE)
"""The capability checks a VMM may take before migrating (in the order it takes them)."""

# stages (in order); everything before ST_FAULT is "early"
ST_CAP = "capability-check"
ST_DEVICE = "device"
ST_ENABLE = "enable-cap"
ST_MEMSLOT = "memslot"
ST_TAGS = "restore-tags"
ST_RESUME = "resume"
ST_FAULT = "fault"
STAGES = (ST_CAP, ST_DEVICE, ST_ENABLE, ST_MEMSLOT, ST_TAGS, ST_RESUME, ST_FAULT)
EARLY_STAGES = STAGES[:-2]

# outcome verdicts
V_RUNS = "runs"
V_REFUSED = "refused"              # refused before resume (early)
V_FAILS_LATE = "fails-after-resume"
V_NEVER = "never-started"          # the VM cannot run on the source

REGION_KINDS = tuple(k for k in drivers.KINDS if k != "hole")

# --- reasons (the migration layer's own) --------------------------------------------------------
_CPFN_THREAD = ("\"KVM: arm64: Allow cacheable stage 2 mapping using VMA flags\" v3 thread "
                "(2025-03-26, seeds/001)")
R_CAP243_PURPOSE = Reason(
    "migrate/cap243-purpose", "f55ce5a6cd33 (KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, v6.17, M-cpfn)",
    "\"It could for instance be used by userspace to prevent live-migration across FWB and non-FWB "
    "hosts.\"")
R_CAP_MANDATORY = Reason(
    "migrate/cap-mandatory", f"Marc Zyngier, {_CPFN_THREAD}",
    "a capability is mandatory: \"Otherwise, userspace is able to migrate a VM from an FWB host to a "
    "non-FWB one, start the VM, blow up on the first page fault. That's not an acceptable outcome.\"")
R_DEVICE_BOTH_WAYS = Reason(
    "migrate/device-both-ways", f"Marc Zyngier, {_CPFN_THREAD}",
    "\"A device mapped as *device* on FWB host, I must be able to migrate it to non-FWB host, and "
    "back. A device mapped as *cacheable* can only be migrated between FWB-capable hosts.\"")
R_MEMSLOT_COURTESY = Reason(
    "migrate/memslot-courtesy", f"Sean Christopherson, {_CPFN_THREAD}",
    "\"checks done at memslot creation are best effort 'courtesies' provided to userspace to avoid "
    "terminating running VMs when the memory is faulted in\"; the fault-time check is the one that "
    "is not optional")
R_P4_PFNMAP_ONLY = Reason(
    "migrate/p4-pfnmap-only", "arch/arm64/kvm/mmu.c kvm_arch_prepare_memory_region() v6.17 "
    "(reference/kernel-kvm.md section 3, P4)",
    "P4 only tests VM_PFNMAP: a cacheable VM_MIXEDMAP region passes memslot creation on a host "
    "without FWB && DIC and is refused only when the guest first touches it (-EFAULT from KVM_RUN)")
R_VMM_CPFN_CHECK = Reason(
    "migrate/vmm-check/cacheable-pfnmap", "modelled VMM step (f55ce5a6cd33; reference section 7)",
    "the VMM queries cap 243 on the destination VM fd because a region is a cacheable "
    "VM_PFNMAP/VM_MIXEDMAP mapping, and refuses to migrate unless it is 1")
R_VMM_CPFN_OLD = Reason(
    "migrate/vmm-check/cap243-unknown", "arch/arm64/kvm/arm.c kvm_vm_ioctl_check_extension() "
    "(TV27: 0 before 6.17)",
    "before 6.17 cap 243 is unknown and reads 0, which the VMM cannot tell from \"no FWB && DIC\": "
    "the check also refuses pre-6.17 destinations, where the region would be mapped Device")
R_VMM_MTE_CHECK = Reason(
    "migrate/vmm-check/mte", "modelled VMM step (KVM_CAP_ARM_MTE 205, reference section 4)",
    "the VMM queries cap 205 on the destination because the VM uses MTE, and refuses unless it is 1")
R_NO_CHECK_NEEDED = Reason(
    "migrate/vmm-check/not-needed", "modelled VMM step",
    "no region is a cacheable PFNMAP/MIXEDMAP mapping and MTE is off: the VMM has nothing to check")
R_DRIVER_ABSENT = Reason(
    "migrate/device-absent", "drivers/vfio/pci/nvgrace-gpu (v6.9, M-pull69)",
    "the device's VFIO driver is not in this kernel: the VMM cannot open the device, the VM cannot "
    "be created (refused before any memslot)")
R_TAGS_MANUAL = Reason(
    "migrate/mte/tags-manual", "Documentation/virt/kvm/api.rst KVM_ARM_MTE_COPY_TAGS (reference section 7)",
    "KVM does not migrate tags itself: the VMM reads them on the source (FROM_GUEST) and writes them "
    "on the destination (TO_GUEST)")
R_TAGS_BEFORE_LOGGING = Reason(
    "migrate/mte/tags-before-logging", "arch/arm64/kvm/guest.c kvm_vm_ioctl_mte_copy_tags(); kvmarm "
    "mmu-misc-6.12 (TV30)",
    "from 6.12 writing tags while a memslot logs dirty pages gives -EBUSY: the destination must "
    "restore tags before it enables dirty logging (modelled: it does)")
R_QEMU_MTE_BLOCKER = Reason(
    "migrate/mte/qemu-blocker", "QEMU \"[PATCH] arm/kvm: add support for MTE\" (Cornelia Huck 2023; "
    "Ganapatrao Kulkarni 2024; peers.md section 2.3)",
    "QEMU adds a migration blocker \"Live migration disabled due to MTE enabled\" (no tag migration "
    "yet): with QEMU an MTE VM does not migrate at all; the steps here are what KVM itself allows")
R_NC_CONSISTENT = Reason(
    "migrate/nc-consistent", "M-nc (Will Deacon asked that this be written down); reference section 7",
    "Device and Normal-NC stage-2 encodings (0x1, 0x5) are the same with and without FWB: VFIO "
    "Device/NC mappings keep the guest's effective types across FWB and non-FWB hosts")
R_RAM_FWB = Reason(
    "migrate/ram-fwb-guest-nc", "Arm ARM D8.6.6 (FWB forces WB); reference/kernel-kvm.md section 7",
    "RAM is stage-2 Normal on both hosts, but a guest stage-1 Normal-NC (or Device) mapping of RAM "
    "is honoured without FWB and forced to Normal-WB with FWB; no KVM capability covers this "
    "(UNVERIFIED whether any VMM or orchestrator gates migration on it)", unverified=True)
R_USEMEM_617 = Reason(
    "migrate/usemem-6.17", "2a8dfab26677, 0c67288e0c8b (M-cpfn, kvmarm-6.17); TV16",
    "nvgrace usemem (cacheable PFNMAP) is stage-2 DEVICE in 6.9-6.16 (the mismatched-attributes bug) "
    "and NORMAL from 6.17 on FWB && DIC hosts: the memory type class changes across that kernel "
    "boundary, and cap 243 on the destination does not reveal it")
R_S2_CHANGE = Reason(
    "migrate/stage2-class-change", "DESIGN.md property memtype-stable-across-migration",
    "the region's stage-2 memory type class differs between source and destination: a guest driver "
    "that relies on one (cacheable, write-combining) breaks silently")
R_DEVICE_STATE = Reason(
    "migrate/device-state-not-modelled", "peers.md section 2.5 item 3",
    "whether the VFIO device itself can migrate (device state, VFIO migration support) is not "
    "modelled: only the memory types and KVM's refusals are", unverified=True)
R_NOT_STARTED = Reason(
    "migrate/never-started", "modelled (reverse direction)",
    "the VM cannot run on this source, so there is nothing to migrate from it")


# --- VM description ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionSpec:
    name: str
    backing: str
    slot_flags: str | None = None

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "backing": self.backing}
        if self.slot_flags:
            d["slot_flags"] = self.slot_flags
        return d


@dataclass(frozen=True)
class VmSpec:
    name: str
    regions: tuple[RegionSpec, ...]
    mte: bool = False
    vmm_checks: tuple[str, ...] = CHECKS
    path: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "mte": self.mte, "vmm_checks": list(self.vmm_checks),
                "regions": [r.as_dict() for r in self.regions]}


def _bool(v: Any, *, where: str, line: int | None, fld: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise InputError(f"'{v}' is not a boolean", where=where, line=line, field=fld, expected="true or false")


def _region(item: Any, *, where: str, lines: dict[str, int], path: str, default_name: str) -> RegionSpec:
    line = lines.get(path)
    if isinstance(item, str):
        item = {"backing": item}
    if not isinstance(item, dict):
        raise InputError("a region must be a backing KIND or a mapping", where=where, line=line, field=path,
                         expected="KIND or {name: NAME, backing: KIND}")
    unknown = sorted(str(k) for k in item if k not in ("name", "backing", "slot_flags"))
    if unknown:
        raise InputError(f"unknown key '{unknown[0]}'", where=where, line=lines.get(f"{path}.{unknown[0]}", line),
                         field=f"{path}.{unknown[0]}", expected="name, backing, slot_flags")
    backing = item.get("backing", "anon" if path == "memory" else None)
    if backing is None:
        raise InputError("missing 'backing'", where=where, line=line, field=f"{path}.backing",
                         expected="a backing KIND: " + ", ".join(REGION_KINDS))
    bline = lines.get(f"{path}.backing", line)
    if not isinstance(backing, str) or backing not in REGION_KINDS:
        raise InputError(f"unknown backing '{backing}'", where=where, line=bline, field=f"{path}.backing",
                         expected=", ".join(REGION_KINDS))
    flags = item.get("slot_flags")
    if flags is not None:
        if isinstance(flags, list):
            flags = ",".join(str(f) for f in flags)
        try:
            parse_slot_flags(str(flags))
        except InputError as e:
            raise InputError(e.what, where=where, line=lines.get(f"{path}.slot_flags", line),
                             field=f"{path}.slot_flags", expected=e.expected) from None
        flags = str(flags)
    name = item.get("name", default_name or backing)
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"region name {name!r} is not a name", where=where,
                         line=lines.get(f"{path}.name", line), field=f"{path}.name",
                         expected="a non-empty string")
    return RegionSpec(name.strip(), backing, flags or None)


def vm_from_dict(data: Any, *, where: str = "<vm>", lines: dict[str, int] | None = None) -> VmSpec:
    """Validate a parsed VM description (see the module docstring)."""
    lines = lines or {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("a VM description must be a mapping", where=where, line=1,
                         expected="keys name, memory, mte, devices, vmm_checks")
    known = ("name", "memory", "mte", "devices", "vmm_checks")
    for k in data:
        if k not in known:
            raise InputError(f"unknown key '{k}'", where=where, line=lines.get(str(k)), field=str(k),
                             expected=", ".join(known))
    regions = [_region(data.get("memory", "anon"), where=where, lines=lines, path="memory",
                       default_name="ram")]
    devs = data.get("devices")
    if devs is None:
        devs = []
    if not isinstance(devs, list):
        raise InputError("'devices' must be a list", where=where, line=lines.get("devices"), field="devices",
                         expected="a list of KIND or {name: NAME, backing: KIND}")
    named_at: dict[str, str] = {"ram": "memory"} if "name" not in (
        data.get("memory") if isinstance(data.get("memory"), dict) else {}) else {}
    if isinstance(data.get("memory"), dict) and "name" in data["memory"]:
        named_at[regions[0].name] = "memory"
    for i, d in enumerate(devs):
        r = _region(d, where=where, lines=lines, path=f"devices[{i}]", default_name="")
        if isinstance(d, dict) and "name" in d:
            if r.name in named_at:
                raise InputError(f"duplicate region name '{r.name}' (also {named_at[r.name]})",
                                 where=where, line=lines.get(f"devices[{i}].name"),
                                 field=f"devices[{i}].name", expected="each region named once")
            named_at[r.name] = f"devices[{i}]"
        regions.append(r)
    seen: dict[str, int] = {}
    named = []
    for r in regions:
        n = seen.get(r.name, 0) + 1
        seen[r.name] = n
        named.append(r if n == 1 else RegionSpec(f"{r.name}-{n}", r.backing, r.slot_flags))
    mte = _bool(data.get("mte", False), where=where, line=lines.get("mte"), fld="mte")
    checks = data.get("vmm_checks", list(CHECKS))
    if checks is None:
        checks = []
    if not isinstance(checks, list):
        raise InputError("'vmm_checks' must be a list", where=where, line=lines.get("vmm_checks"),
                         field="vmm_checks", expected="a list of " + ", ".join(CHECKS))
    for i, c in enumerate(checks):
        if c not in CHECKS:
            raise InputError(f"unknown VMM check '{c}'", where=where,
                             line=lines.get(f"vmm_checks[{i}]", lines.get("vmm_checks")),
                             field="vmm_checks", expected=", ".join(CHECKS))
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InputError(f"'name' is {type(name).__name__}", where=where, line=lines.get("name"),
                         field="name", expected="a string")
    name = (name or "").strip() or (Path(where).stem if where and not where.startswith("<") else "vm")
    return VmSpec(name, tuple(named), mte, tuple(c for c in CHECKS if c in checks), where)


def load_vm(path: str | Path) -> VmSpec:
    """Read and validate a VM description file."""
    data, lines = yamlfile.read(path, what="VM file", expected="a mapping with memory, devices, mte")
    return vm_from_dict(data, where=str(path), lines=lines)


# --- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    stage: str
    what: str
    result: str                    # ok | refused | error | skipped | value text
    region: str | None = None
    errno: str | None = None
    rule: str | None = None
    reasons: tuple[Reason, ...] = ()

    @property
    def failed(self) -> bool:
        return self.result in ("refused", "error")

    def as_dict(self) -> dict:
        return {"stage": self.stage, "what": self.what, "region": self.region, "result": self.result,
                "errno": self.errno, "rule": self.rule, "reasons": [r.rule for r in self.reasons]}


@dataclass(frozen=True)
class RegionType:
    """A region's memory type on one host: stage 2 and the guest's effective type per stage-1."""

    region: str
    backing: str
    result: str                    # map | error | not-run
    s2: str | None = None
    memattr: int | None = None
    errno: str | None = None
    guest: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict:
        return {"result": self.result, "s2": self.s2, "memattr": self.memattr, "errno": self.errno,
                "guest": dict(self.guest)}


@dataclass(frozen=True)
class Outcome:
    """What happens when the VMM brings the VM up on one host (as a migration destination, or as
    the source it starts on)."""

    host: str
    kernel: str
    checks: tuple[str, ...]        # the checks the VMM was willing to take
    verdict: str                   # runs | refused | fails-after-resume | never-started
    stage: str | None = None       # where it was refused or failed
    errno: str | None = None
    rule: str | None = None
    steps: tuple[Step, ...] = ()
    regions: tuple[RegionType, ...] = ()

    @property
    def runs(self) -> bool:
        return self.verdict == V_RUNS

    @property
    def taken(self) -> tuple[str, ...]:
        """The checks actually taken (a check applies only when the VM needs it)."""
        out = []
        for s in self.steps:
            if s.stage == ST_CAP and s.result != "skipped":
                out.append(CHECK_MTE if f"({KVM_CAP_ARM_MTE})" in s.what else CHECK_CPFN)
        return tuple(out)

    def summary(self) -> str:
        if self.verdict == V_RUNS:
            return "runs"
        if self.verdict == V_NEVER:
            return "n/a: the VM never started on the source"
        e = f": {self.errno}" if self.errno else ""
        r = f" ({self.rule})" if self.rule else ""
        if self.verdict == V_REFUSED:
            return f"refused early at {self.stage}{e}{r}"
        return f"fails after resume ({self.stage}{e}{r})"

    def as_dict(self) -> dict:
        return {"host": self.host, "kernel": self.kernel, "checks": list(self.checks),
                "checks_taken": list(self.taken),
                "verdict": self.verdict, "stage": self.stage, "errno": self.errno, "rule": self.rule,
                "summary": self.summary(), "steps": [s.as_dict() for s in self.steps]}


@dataclass(frozen=True)
class MemtypeChange:
    region: str
    kind: str                      # stage-2 | guest
    s1: str | None                 # the guest stage-1 choice (guest changes)
    before: str
    after: str
    unverified: bool = False

    def as_dict(self) -> dict:
        d = {"region": self.region, "kind": self.kind, "s1": self.s1, "from": self.before, "to": self.after}
        if self.unverified:
            d["unverified"] = True
        return d


@dataclass(frozen=True)
class Direction:
    name: str                      # forward | back
    src: str
    dst: str
    kernel_src: str
    kernel_dst: str
    source: Outcome                # the VM started on the source (no VMM checks)
    with_checks: Outcome
    without_checks: Outcome
    regions: tuple[tuple[RegionType, RegionType], ...]   # (source, destination) per region
    changes: tuple[MemtypeChange, ...]
    reasons: tuple[Reason, ...]

    @property
    def started(self) -> bool:
        return self.source.runs

    def verdict(self) -> str:
        """One word: never-started, refused-early, fails-after-resume, migrates-with-memtype-change,
        migrates (for the VMM *without* its checks: what the kernel alone does)."""
        if not self.started:
            return V_NEVER
        o = self.without_checks
        if o.verdict == V_REFUSED:
            return "refused-early"
        if o.verdict == V_FAILS_LATE:
            return V_FAILS_LATE
        if any(c.kind == "stage-2" for c in self.changes):
            return "migrates-with-memtype-change"
        return "migrates"

    @property
    def conservative(self) -> bool:
        """The VMM's checks refuse a migration the kernel would carry out with no stage-2 change."""
        return (self.started and self.with_checks.verdict == V_REFUSED and self.without_checks.runs
                and not any(c.kind == "stage-2" for c in self.changes))

    def verdict_line(self) -> str:
        head = f"{self.name}: {self.src} ({self.kernel_src}) -> {self.dst} ({self.kernel_dst}): "
        if not self.started:
            return head + f"impossible: the VM cannot run on {self.src} ({self.source.summary()})"
        chk = ", ".join(self.with_checks.taken) or ("none applies" if self.with_checks.checks else "none taken")
        s = (f"with the VMM's checks ({chk}): {self.with_checks.summary()}; "
             f"without them: {self.without_checks.summary()}")
        if self.conservative:
            s += " (the check is conservative here: the kernel alone migrates it with no stage-2 change)"
        s2 = [c for c in self.changes if c.kind == "stage-2"]
        g = [c for c in self.changes if c.kind == "guest"]
        if s2:
            s += "; memory type changes: " + ", ".join(f"{c.region} {c.before}->{c.after}" for c in s2)
        if g:
            s += f"; guest-visible type changes on {len({c.region for c in g})} region(s) (no cap covers them)"
        return head + s

    def as_dict(self) -> dict:
        return {
            "direction": self.name, "from": self.src, "to": self.dst,
            "kernel_from": self.kernel_src, "kernel_to": self.kernel_dst,
            "verdict": self.verdict(), "conservative_refusal": self.conservative,
            "summary": self.verdict_line(),
            "source": self.source.as_dict(),
            "with_checks": self.with_checks.as_dict(),
            "without_checks": self.without_checks.as_dict(),
            "regions": [{"region": a.region, "backing": a.backing, "source": a.as_dict(),
                         "destination": b.as_dict(),
                         "stage2_changed": _s2_changed(a, b)} for a, b in self.regions],
            "memtype_changes": [c.as_dict() for c in self.changes],
            "reasons": [r.as_dict() for r in self.reasons],
        }


@dataclass(frozen=True)
class MigrationReport:
    vm: VmSpec
    src: HostProfile
    dst: HostProfile
    kernel_src: Kernel
    kernel_dst: Kernel
    forward: Direction
    back: Direction
    context: tuple[Reason, ...] = field(default=())

    def as_dict(self) -> dict:
        def host(p: HostProfile, k: Kernel) -> dict:
            return {"name": p.name, "features": {a: int(b) for a, b in p.features.as_dict().items()},
                    "kernel": k.as_dict()}
        return {"vm": self.vm.as_dict(), "from": host(self.src, self.kernel_src),
                "to": host(self.dst, self.kernel_dst),
                "directions": [self.forward.as_dict(), self.back.as_dict()],
                "context": [r.as_dict() for r in self.context]}


# --- classes of memory types --------------------------------------------------------------------------
def type_class(label: str | None) -> str | None:
    """Coarse class of an effective memory type label: Device, Normal-NC, Normal-cacheable,
    Normal-partly-cacheable (inner/outer differ), or the label itself (RESERVED, UNPREDICTABLE)."""
    if label is None:
        return None
    if label.startswith("Device"):
        return "Device"
    if label == "Normal-NC":
        return "Normal-NC"
    if label.startswith("Normal"):
        return "Normal-partly-cacheable" if "NC" in label else "Normal-cacheable"
    return label


def _s2_changed(a: RegionType, b: RegionType) -> bool:
    return a.result == "map" and b.result == "map" and a.s2 != b.s2


# --- one host ----------------------------------------------------------------------------------------
def needs_cacheable_pfnmap(backing: str) -> bool:
    """The region is a cacheable VM_PFNMAP/VM_MIXEDMAP mapping (what the VMM knows of its device)."""
    vma = drivers.mmap(backing, any_uc=True).vma
    return vma is not None and (vma.pfnmap or vma.mixedmap) and vma.cacheable


@lru_cache(maxsize=4096)
def _explain(k: Kernel, host: Features, backing: str, mte: bool, flags: str | None) -> Explanation:
    return explain(k, host, backing, vm_mte=mte, slot_flags=flags, fault="read")


def _dedup(rs) -> tuple[Reason, ...]:
    seen: set[Reason] = set()
    return tuple(r for r in rs if not (r in seen or seen.add(r)))


def _fault_rule(rs: tuple[Reason, ...]) -> str | None:
    for r in reversed(rs):
        if not r.rule.endswith("page-leak"):
            return r.rule
    return None


def kernel_name(k: Kernel) -> str:
    """``6.17``, ``6.17+mte-rfc-2020``, or ``7.4 (newer than the model, assuming 7.3)``."""
    return (str(k.version) + ("" if k.variant == "mainline" else f"+{k.variant}")
            + (f" ({k.mark})" if getattr(k, "mark", None) else ""))


def bring_up(vm: VmSpec, host_name: str, host: Features, k: Kernel, checks: tuple[str, ...], *,
             destination: bool = True) -> Outcome:
    """The VMM brings ``vm`` up on one host: the optional capability checks, then KVM's own steps
    (see the module docstring).  Stops at the first refusal."""
    rules = k.rules
    steps: list[Step] = []
    kname = kernel_name(k)

    def out(verdict: str, stage: str | None = None, errno: str | None = None, rule: str | None = None,
            regions: tuple[RegionType, ...] = ()) -> Outcome:
        return Outcome(host_name, kname, checks, verdict, stage, errno, rule, tuple(steps), regions)

    # 1. the VMM's capability checks
    cpfn_regions = [r.name for r in vm.regions if needs_cacheable_pfnmap(r.backing)]
    taken = []
    if CHECK_CPFN in checks and cpfn_regions:
        taken.append(CHECK_CPFN)
        val, err, why = check_extension(rules, host, KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, vm_fd=True)
        rs = [R_VMM_CPFN_CHECK, why, R_CAP243_PURPOSE]
        if not rules.cap_cacheable_pfnmap:
            rs.append(R_VMM_CPFN_OLD)
        ok = val == 1
        steps.append(Step(ST_CAP, f"KVM_CHECK_EXTENSION({KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED}) on the VM "
                          f"fd = {val if err is None else err} (for {', '.join(cpfn_regions)})",
                          "ok" if ok else "refused", reasons=tuple(rs)))
        if not ok:
            return out(V_REFUSED, ST_CAP, rule="cap 243 = 0")
    if CHECK_MTE in checks and vm.mte:
        taken.append(CHECK_MTE)
        val, err, why = check_extension(rules, host, KVM_CAP_ARM_MTE, vm_fd=True)
        ok = val == 1
        steps.append(Step(ST_CAP, f"KVM_CHECK_EXTENSION({KVM_CAP_ARM_MTE}) = {val}", "ok" if ok else "refused",
                          reasons=(R_VMM_MTE_CHECK, why)))
        if not ok:
            return out(V_REFUSED, ST_CAP, rule="cap 205 = 0")
    if checks and not taken:
        steps.append(Step(ST_CAP, "no capability to check", "skipped", reasons=(R_NO_CHECK_NEEDED,)))

    # 2. devices: does the driver exist in this kernel?
    exps: list[tuple[RegionSpec, Explanation]] = []
    for r in vm.regions:
        if r.backing.startswith("nvgrace-") and not rules.normal_nc:
            steps.append(Step(ST_DEVICE, f"open the {r.backing} device", "refused", region=r.name,
                              rule="driver absent", reasons=(R_DRIVER_ABSENT,)))
            return out(V_REFUSED, ST_DEVICE, rule="driver absent")

    # 3. KVM_ENABLE_CAP(MTE) before any vCPU
    if vm.mte:
        _vm, err, why = enable_cap(rules, host, Vm(), KVM_CAP_ARM_MTE)
        steps.append(Step(ST_ENABLE, f"KVM_ENABLE_CAP({KVM_CAP_ARM_MTE})", "error" if err else "ok",
                          errno=err, reasons=(why,)))
        if err:
            return out(V_REFUSED, ST_ENABLE, errno=err, rule="KVM_ENABLE_CAP")

    # 4. memslots
    for r in vm.regions:
        ex = _explain(k, host, r.backing, vm.mte, r.slot_flags)
        exps.append((r, ex))
        if ex.memslot is None:
            steps.append(Step(ST_MEMSLOT, f"{r.backing}: {ex.memslot_na}", "skipped", region=r.name,
                              reasons=tuple(x for x in ex.reasons if x.rule.startswith("kvm/vgic"))))
            continue
        ms = ex.memslot
        steps.append(Step(ST_MEMSLOT, f"KVM_SET_USER_MEMORY_REGION ({r.backing})",
                          "ok" if ms.ok else "error", region=r.name, errno=ms.errno, rule=ms.rule,
                          reasons=ms.reasons))
        if not ms.ok:
            return out(V_REFUSED, ST_MEMSLOT, ms.errno, ms.rule)

    # 5. MTE tags
    if vm.mte:
        mvm = Vm(mte=True)
        if destination:
            err, why = mte_copy_tags(rules, mvm, to_guest=True, logging=False)
            steps.append(Step(ST_TAGS, "KVM_ARM_MTE_COPY_TAGS(TO_GUEST) before dirty logging",
                              "error" if err else "ok", errno=err,
                              reasons=(why, R_TAGS_MANUAL) + ((R_TAGS_BEFORE_LOGGING,) if rules.copy_tags_ebusy
                                                              else ())))
            if err:
                return out(V_REFUSED, ST_TAGS, err, "KVM_ARM_MTE_COPY_TAGS")

    # 6. resume, then the guest touches every region
    steps.append(Step(ST_RESUME, "KVM_RUN (vCPUs resume)", "ok"))
    types: list[RegionType] = []
    failed: Step | None = None
    for r, ex in exps:
        f = ex.fault
        if f.mapped:
            types.append(RegionType(r.name, r.backing, "map", f.s2, f.memattr, guest=ex.guest))
            steps.append(Step(ST_FAULT, f"guest read of {r.name}: stage-2 {f.s2}", "ok", region=r.name,
                              reasons=f.reasons))
        else:
            types.append(RegionType(r.name, r.backing, "error", errno=f.errno))
            st = Step(ST_FAULT, f"guest read of {r.name}: {f.result} {f.errno or ''} from KVM_RUN".strip(),
                      "error", region=r.name, errno=f.errno, rule=_fault_rule(f.reasons),
                      reasons=f.reasons)
            steps.append(st)
            failed = failed or st
    if failed:
        return out(V_FAILS_LATE, ST_FAULT, failed.errno, failed.rule, tuple(types))
    return out(V_RUNS, regions=tuple(types))


def _not_run(vm: VmSpec) -> tuple[RegionType, ...]:
    return tuple(RegionType(r.name, r.backing, "not-run") for r in vm.regions)


def _changes(vm: VmSpec, a: tuple[RegionType, ...], b: tuple[RegionType, ...]) -> tuple[MemtypeChange, ...]:
    out: list[MemtypeChange] = []
    for x, y in zip(a, b):
        if x.result != "map" or y.result != "map":
            continue
        if x.s2 != y.s2:
            out.append(MemtypeChange(x.region, "stage-2", None, x.s2 or "?", y.s2 or "?"))
        gx, gy = dict(x.guest), dict(y.guest)
        for s1 in gx:
            if s1 == "Tagged" and not vm.mte:
                continue
            cx, cy = type_class(gx.get(s1)), type_class(gy.get(s1))
            if cx != cy:
                out.append(MemtypeChange(x.region, "guest", s1, gx[s1], gy.get(s1, "?"),
                                         unverified=x.s2 == y.s2))
    return tuple(out)


def direction(vm: VmSpec, name: str, src: HostProfile, dst: HostProfile, ksrc: Kernel, kdst: Kernel,
              checks: tuple[str, ...]) -> Direction:
    source = bring_up(vm, src.name, src.features, ksrc, (), destination=False)
    ksrc_name = source.kernel
    if not source.runs:
        never = Outcome(dst.name, kernel_name(kdst), checks, V_NEVER)
        nothing = Outcome(dst.name, kernel_name(kdst), (), V_NEVER)
        return Direction(name, src.name, dst.name, ksrc_name, never.kernel, source, never, nothing,
                         tuple(zip(source.regions or _not_run(vm), _not_run(vm))), (), (R_NOT_STARTED,))
    with_c = bring_up(vm, dst.name, dst.features, kdst, checks)
    without = bring_up(vm, dst.name, dst.features, kdst, ())
    dst_types = without.regions or _not_run(vm)
    changes = _changes(vm, source.regions, dst_types)
    rs: list[Reason] = []
    if any(c.kind == "stage-2" for c in changes):
        rs.append(R_S2_CHANGE)
        if any(c.kind == "stage-2" and dict((r.name, r.backing) for r in vm.regions)[c.region] == "nvgrace-usemem"
               for c in changes):
            rs.append(R_USEMEM_617)
    if any(c.kind == "guest" and c.unverified for c in changes):
        rs.append(R_RAM_FWB)
    if without.verdict == V_FAILS_LATE:
        rs += [R_CAP_MANDATORY, R_MEMSLOT_COURTESY]
        if any(drivers.mmap(r.backing, any_uc=True).vma is not None
               and drivers.mmap(r.backing, any_uc=True).vma.mixedmap for r in vm.regions):
            rs.append(R_P4_PFNMAP_ONLY)
    if (with_c.verdict == V_REFUSED and with_c.stage == ST_CAP) or without.errno and without.rule == "P4":
        rs += [R_CAP243_PURPOSE, R_DEVICE_BOTH_WAYS]
    if src.features.fwb != dst.features.fwb and any(r.backing in ("vfio-pci-bar", "vfio-platform-mmio",
                                                                  "nvgrace-resmem", "mixedmap-uncached")
                                                    for r in vm.regions):
        rs.append(R_NC_CONSISTENT)
    if vm.mte:
        rs += [R_TAGS_MANUAL, R_QEMU_MTE_BLOCKER]
    return Direction(name, src.name, dst.name, ksrc_name, without.kernel, source, with_c, without,
                     tuple(zip(source.regions, dst_types)), changes, _dedup(rs))


def default_kernel(p: HostProfile) -> str:
    return p.kernel or NEWEST_KERNEL


def migrate(vm: VmSpec, src: HostProfile, dst: HostProfile, kernel_src: str | None = None,
            kernel_dst: str | None = None, *, vmm_checks: tuple[str, ...] | None = None) -> MigrationReport:
    """Migrate ``vm`` from ``src`` to ``dst`` and back; see the module docstring.

    ``kernel_src`` / ``kernel_dst``: ``VERSION[+VARIANT]`` (default: the profile's ``kernel``, else
    the newest, 7.1).  ``vmm_checks``: the checks the VMM takes in the "with checks" outcome
    (default: the VM file's ``vmm_checks``)."""
    for p, opt in ((src, "--from"), (dst, "--to")):
        if p.arch != "arm64":
            raise InputError(f"host '{p.name}' is {p.arch}, not arm64", where=opt, expected="an arm64 host profile")
    ks = resolve_kernel(kernel_src or default_kernel(src), where="--kernel-from")
    kd = resolve_kernel(kernel_dst or default_kernel(dst), where="--kernel-to")
    checks = vm.vmm_checks if vmm_checks is None else tuple(c for c in CHECKS if c in vmm_checks)
    fwd = direction(vm, "forward", src, dst, ks, kd, checks)
    back = direction(vm, "back", dst, src, kd, ks, checks)
    ctx = [R_DEVICE_STATE]
    return MigrationReport(vm, src, dst, ks, kd, fwd, back, tuple(ctx))
