"""``memtypes migrate``: can this VM move from host A to host B (and back), where is an
incompatible move refused, and which guest pages change memory type?

``memtypes migrate --vm FILE --from PROFILE --to PROFILE [--kernel-from V] [--kernel-to V]
[--check CHECK ...] [--json]``
"""

from __future__ import annotations

from typing import List, Optional

import typer

from memtypes.check.migrate import CHECKS, REGION_KINDS, Direction, MigrationReport, load_vm, migrate, type_class
from memtypes.cli import variants_opt
from memtypes.cli.app import app
from memtypes.errors import InputError
from memtypes.hosts.profile import resolve, split_hosts
from memtypes.linux.kvm.eras import kernel_specs

HELP = f"""Migrate a VM between two arm64 hosts (and kernels), both ways, step by step.

\b
For each direction: whether the VM runs on the source at all; with and without the VMM's
capability checks, the step at which an incompatible migration is refused
(capability-check, device, enable-cap, memslot with errno and rule, restore-tags) or, worse,
fails only after the VM resumed (a fault from KVM_RUN); and per region the stage-2 type and the
guest's effective type for each usual stage-1 choice on both sides, with the changes flagged.

\b
--vm FILE   YAML: name, memory (KIND, default anon), mte (bool), devices (list of KIND or
            {{name, backing, slot_flags}}), vmm_checks (list of {", ".join(CHECKS)})
            KIND: {", ".join(REGION_KINDS)}
--from/--to built-in host, YAML profile or fwb=1,dic=1,mte=0; several: grace,armv8.0
--kernel-from/--kernel-to VERSION[+VARIANT] (default: the profile's kernel, else 7.1); several:
            6.12,6.17 or a range 6.9..7.1.  Lists run every combination, one after the other.
"""


@app.command("migrate", help=HELP, no_args_is_help=True)
def migrate_cmd(
    vm_file: str = typer.Option(..., "--vm", help="VM description file (YAML)"),
    src: str = typer.Option(..., "--from", help="source host profile"),
    dst: str = typer.Option(..., "--to", help="destination host profile"),
    kernel_from: Optional[str] = typer.Option(None, "--kernel-from", help="source kernel VERSION[+VARIANT]"),
    kernel_to: Optional[str] = typer.Option(None, "--kernel-to", help="destination kernel VERSION[+VARIANT]"),
    check: Optional[List[str]] = typer.Option(None, "--check",
                                              help="a VMM check to take (repeatable; default: the VM file's)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object"),
    variant_files: Optional[List[str]] = variants_opt.option(),
) -> None:
    vfiles = variants_opt.load(variant_files)
    srcs = [resolve(h, where="--from") for h in split_hosts(src, where="--from")]
    dsts = [resolve(h, where="--to") for h in split_hosts(dst, where="--to")]
    kfs = kernel_specs(kernel_from, where="--kernel-from") if kernel_from else [None]
    kts = kernel_specs(kernel_to, where="--kernel-to") if kernel_to else [None]
    vm = load_vm(vm_file)
    checks = None
    if check:
        for c in check:
            if c not in CHECKS:
                raise InputError(f"unknown VMM check '{c}'", where="--check", expected=", ".join(CHECKS))
        checks = tuple(check)
    combos = [(ps, pd, kf, kt) for ps in srcs for pd in dsts for kf in kfs for kt in kts]
    if len(combos) > 1:          # lists: every (from, to, kernel-from, kernel-to), in order
        reps = [migrate(vm, ps, pd, kf, kt, vmm_checks=checks) for ps, pd, kf, kt in combos]
        if as_json:
            variants_opt.print_json({"migrations": [r.as_dict() for r in reps]}, vfiles)
            return
        for r in reps:
            render(r)
        return
    ps, pd, kernel_from, kernel_to = combos[0]
    rep = migrate(vm, ps, pd, kernel_from, kernel_to, vmm_checks=checks)
    if as_json:
        variants_opt.print_json(rep.as_dict(), vfiles)
        return
    render(rep)


def _direction(con, d: Direction, mte: bool) -> None:
    from rich.table import Table

    con.print(d.verdict_line(), soft_wrap=True)
    t = Table(show_header=True, title=f"{d.name}: steps on {d.dst}" if d.started else f"{d.name}: start on {d.src}")
    t.add_column("step")
    t.add_column("region")
    t.add_column("with checks")
    t.add_column("without checks")
    if not d.started:
        t = Table(show_header=True, title=f"{d.name}: start on {d.src}")
        t.add_column("step")
        t.add_column("region")
        t.add_column("result")
        for s in d.source.steps:
            t.add_row(s.stage, s.region or "", _res(s))
        con.print(t)
        return
    a = list(d.with_checks.steps)
    b = list(d.without_checks.steps)
    rows: list[tuple[str, str, str, str]] = []
    # align the two step lists: the "with" list has the capability checks first
    ca = [s for s in a if s.stage == "capability-check"]
    for s in ca:
        rows.append((s.stage, s.region or "", f"{s.what}: {s.result}", "(not taken)"))
    ra = [s for s in a if s.stage != "capability-check"]
    for i in range(max(len(ra), len(b))):
        x = ra[i] if i < len(ra) else None
        y = b[i] if i < len(b) else None
        ref = y or x
        rows.append((ref.stage, ref.region or "", _res(x) if x else ("-" if ca and a[-1].failed else ""),
                     _res(y) if y else "-"))
    for r in rows:
        t.add_row(*r)
    con.print(t)
    g = Table(show_header=True, title=f"{d.name}: memory types ({d.src} -> {d.dst})")
    g.add_column("region")
    g.add_column("backing")
    g.add_column("stage 2")
    s1s = []
    for a_, b_ in d.regions:
        for s1, _ in a_.guest or b_.guest:
            if s1 not in s1s and (mte or s1 != "Tagged"):
                s1s.append(s1)
    for s1 in s1s:
        g.add_column(f"guest {s1}")
    for a_, b_ in d.regions:
        row = [a_.region, a_.backing, f"{_t(a_)} -> {_t(b_)}" + (" CHANGED" if a_.s2 != b_.s2 and
                                                                  a_.result == b_.result == "map" else "")]
        ga, gb = dict(a_.guest), dict(b_.guest)
        for s1 in s1s:
            x, y = ga.get(s1, "-"), gb.get(s1, "-")
            mark = " *" if x != "-" and y != "-" and type_class(x) != type_class(y) else ""
            row.append(x if x == y else f"{x} -> {y}{mark}")
        g.add_row(*row)
    con.print(g)
    if d.changes:
        con.print("  (* = the guest's effective memory type class changes)")


def _t(r) -> str:
    if r.result == "map":
        return r.s2
    if r.result == "error":
        return r.errno or "error"
    return "-"


def _res(s) -> str:
    if s is None:
        return ""
    if s.result in ("ok", "skipped"):
        return f"{s.what}: {s.result}" if s.stage in ("capability-check", "fault") else s.result
    bits = [s.result]
    if s.errno:
        bits.append(s.errno)
    if s.rule:
        bits.append(f"({s.rule})")
    return " ".join(bits)


def render(rep: MigrationReport) -> None:
    from rich.console import Console

    con = Console(highlight=False, soft_wrap=False, markup=False, emoji=False, width=140)
    d = rep.as_dict()

    def host(h: dict) -> str:
        feats = ",".join(k for k, v in h["features"].items() if v) or "none"
        k = h["kernel"]
        var = "" if k["variant"] == "mainline" else f"+{k['variant']}"
        mark = f" [{k['note']}]" if k.get("note") else ""
        return f"{h['name']} ({feats}) kernel {k['version']}{var}{mark} (era {k['era']})"

    regions = ", ".join(f"{r.name}={r.backing}" for r in rep.vm.regions)
    con.print(f"VM {rep.vm.name}: {regions}; MTE {'on' if rep.vm.mte else 'off'}", soft_wrap=True)
    con.print(f"from {host(d['from'])}", soft_wrap=True)
    con.print(f"to   {host(d['to'])}", soft_wrap=True)
    con.print("")
    for dr in (rep.forward, rep.back):
        _direction(con, dr, rep.vm.mte)
        con.print("")
    con.print("Reasons:")
    seen = set()
    for dr in (rep.forward, rep.back):
        for r in dr.reasons:
            if r in seen:
                continue
            seen.add(r)
            con.print(f"  {r.rule}: {r.text} ({r.source})" + (" [UNVERIFIED]" if r.unverified else ""),
                      soft_wrap=True)
        for o in (dr.source, dr.with_checks, dr.without_checks):
            for s in o.steps:
                if not s.failed:
                    continue
                for r in s.reasons:
                    if r in seen:
                        continue
                    seen.add(r)
                    con.print(f"  {r.rule}: {r.text} ({r.source})" + (" [UNVERIFIED]" if r.unverified else ""),
                              soft_wrap=True)
    for r in rep.context:
        con.print(f"  {r.rule}: {r.text} ({r.source})" + (" [UNVERIFIED]" if r.unverified else ""),
                  soft_wrap=True)
