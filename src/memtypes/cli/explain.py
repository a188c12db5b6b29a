"""``memtypes explain``: one memslot and one fault on one host and kernel, with the reasons.

``memtypes explain --kernel VERSION[+VARIANT] --host PROFILE --backing KIND [--vm-mte]
[--slot-flags log_dirty,readonly,gmem_only] [--remap KIND] [--fault read|write|exec|read-perm]
[--hva-align 4K|2M|1G] [--json]``
"""

from __future__ import annotations

from typing import List, Optional

import typer

from memtypes.cli import variants_opt
from memtypes.cli.app import app
from memtypes.errors import InputError
from memtypes.hosts.profile import resolve, split_hosts
from memtypes.linux import drivers
from memtypes.linux.kvm import variants
from memtypes.linux.kvm.eras import kernel, kernel_specs
from memtypes.linux.kvm.explain import (
    DEFAULT_HVA_ALIGN, FAULTS, HVA_ALIGNS, SLOT_FLAGS, Explanation, check_hva_align, explain,
)

HELP = f"""Explain the stage-2 mapping KVM arm64 gives one guest page, and why.

\b
Creates a memslot over a BACKING, optionally mmaps another KIND over its range afterwards
(--remap), faults once (--fault), and reports: the memslot result (ok, or errno and rule P1-P8
or "flags"),
the fault result (stage-2 NORMAL/NC/DEVICE and MemAttr, or the error and where it arose), the
reasons with their kernel sources (UNVERIFIED marked), and the guest's effective memory type for
each usual stage-1 choice.

\b
--kernel  VERSION (5.0 .. 7.3, e.g. 6.12, 6.12.118, 7.3; a newer one is answered with the
          newest rules and marked "newer than the model") or VERSION+VARIANT, VARIANT one of:
          {", ".join(variants.names())} (or a variant from --variants FILE.py);
          several: 6.12,6.17+VARIANT; a range 6.9..7.3 (its ends and every version between
          where a rule changes).  --host: several as grace,armv8.0.  Several kernels or
          hosts give one table, one row each.
--backing / --remap KIND: {", ".join(drivers.KINDS)} ('file' is the deprecated name of file-private)
--slot-flags: comma list of {", ".join(SLOT_FLAGS)}
--fault: {", ".join(FAULTS)} (read-perm: a stage-2 permission fault on a data read)
--hva-align: {", ".join(HVA_ALIGNS)} (default {DEFAULT_HVA_ALIGN}): where the VMM's mapping lands; a
          stage-2 block needs the hva aligned like the guest address (the guest address is 1 GiB-
          aligned; the 2 MiB memslot holds no PUD, so 1G acts as 2M); from 7.2 (6.12.113, 6.1.191)
          the block size of PFNMAP memory follows the host's own mapping
--host: a profile, or inline fwb=1,dic=1,mte=1,pkvm=1 (pkvm: the host runs protected KVM)
"""


@app.command("explain", help=HELP, no_args_is_help=True)
def explain_cmd(
    kernel_spec: str = typer.Option(..., "--kernel", help="kernel version[+variant]; a list A,B or range A..B"),
    host: str = typer.Option(..., "--host", help="built-in host, YAML file, or fwb=1,dic=1,mte=0; a list A,B"),
    backing: str = typer.Option(..., "--backing", help="backing KIND of the memslot"),
    vm_mte: bool = typer.Option(False, "--vm-mte", help="enable KVM_CAP_ARM_MTE before any vCPU"),
    slot_flags: Optional[str] = typer.Option(None, "--slot-flags", help="log_dirty,readonly,gmem_only"),
    remap: Optional[str] = typer.Option(None, "--remap", help="mmap KIND over the slot after creating it"),
    fault: str = typer.Option("read", "--fault", help="read | write | exec | read-perm"),
    hva_align: str = typer.Option(DEFAULT_HVA_ALIGN, "--hva-align", help="4K | 2M | 1G (default 2M)"),
    protected: bool = typer.Option(False, "--protected", help="a pKVM protected VM (host pkvm=1)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object"),
    variant_files: Optional[List[str]] = variants_opt.option(),
) -> None:
    vfiles = variants_opt.load(variant_files)
    specs = kernel_specs(kernel_spec)
    profs = [resolve(h) for h in split_hosts(host)]
    for prof in profs:
        if prof.arch != "arm64":
            raise InputError(f"host '{prof.name}' is {prof.arch}, not arm64", where="--host",
                             expected="an arm64 host profile")
    drivers.check_kind(backing, where="--backing")
    if remap is not None:
        drivers.check_kind(remap, where="--remap")
    if fault not in FAULTS:
        raise InputError(f"unknown fault kind '{fault}'", where="--fault", expected=", ".join(FAULTS))
    check_hva_align(hva_align)
    exs = [explain(kernel(sp), prof.features, backing, host_name=prof.name, vm_mte=vm_mte,
                   slot_flags=slot_flags, remap=remap, fault=fault, hva_align=hva_align, protected=protected)
           for sp in specs for prof in profs]
    if len(exs) > 1:
        if as_json:
            variants_opt.print_json({"explanations": [e.as_dict() for e in exs]}, vfiles)
            return
        render_many(exs, specs)
        return
    ex = exs[0]
    if as_json:
        variants_opt.print_json(ex.as_dict(), vfiles)
        return
    render(ex)


def _fault_text(d: dict, vm_mte: bool = False) -> str:
    r = d["result"]
    if r == "map":
        perms = "R" + ("W" if d["w"] else "") + ("X" if d["x"] else "")
        cmo = ",".join(n for n in ("dclean", "iinval") if d["cmo"][n]) or "none"
        mte = (", MTE tags sanitised" if d["mte_sanitised"]
               else ", MTE tags NOT sanitised" if vm_mte and d["s2"] == "NORMAL" else "")
        return (f"map {d['s2']} MemAttr 0b{d['memattr']:04b} (0x{d['memattr']:x}), {perms}, "
                f"{d['size']}, CMO {cmo}{mte} [{d['where']}]")
    if r == "skipped":
        return f"no stage-2 mapping [{d['where']}]" if d["where"] else "skipped (no memslot)"
    if r == "pabt":
        return f"{d['errno']} -> guest prefetch abort [{d['where']}]"
    if r == "sigbus":
        return f"SIGBUS to the VMM [{d['where']}]"
    if r == "retry":
        return f"retry (guest re-faults) [{d['where']}]"
    return f"{d['errno']} from KVM_RUN [{d['where']}]"


def render_many(exs: list[Explanation], specs: list[str]) -> None:
    """Several kernels and/or hosts: one table, one row per (kernel, host)."""
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=False, markup=False, emoji=False, width=160)
    e0 = exs[0]
    con.print(f"backing {e0.backing}" + (f", remapped to {e0.remap}" if e0.remap else "")
              + f"; guest {e0.fault_kind} fault" + ("; MTE VM" if e0.vm_mte else ""))
    t = Table(show_header=True)
    for col in ("kernel", "host", "memslot", "fault", "guest: Device-nGnRE / Normal-NC / Normal-WB"):
        t.add_column(col)
    for ex in exs:
        d = ex.as_dict()
        kd = d["kernel"]
        kname = kd["version"] + ("" if kd["variant"] == "mainline" else f"+{kd['variant']}")
        feats = ",".join(k for k, v in d["host"]["features"].items() if v) or "none"
        ms = d["memslot"]
        mtxt = ("ok" if ms["result"] == "ok" else f"n/a ({ex.memslot_na})" if ms["result"] == "n/a"
                else f"{ms['errno']} ({ms['rule']})")
        g = dict(ex.guest)
        gtxt = " / ".join(g.get(k, "-") for k in ("Device-nGnRE", "Normal-NC", "Normal-WB")) if g else "-"
        vm = bool(ex.vm_mte and ex.vm_mte[0] == "ok")
        t.add_row(f"{kname} ({kd['era']})", f"{ex.host_name} ({feats})", mtxt,
                  _fault_text(d["fault"], vm).split(" [")[0], gtxt)
    con.print(t)


def render(ex: Explanation) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=False, markup=False, emoji=False, width=120)
    d = ex.as_dict()
    kd = d["kernel"]
    var = "" if kd["variant"] == "mainline" else f" + {kd['variant']}"
    feats = ",".join(k for k, v in d["host"]["features"].items() if v) or "none"
    mark = f" [{kd['note']}]" if kd.get("note") else ""
    con.print(f"Kernel {kd['version']}{mark} (era {kd['era']}{var}); host {ex.host_name} ({feats}); "
              f"backing {ex.backing}" + (f", remapped to {ex.remap}" if ex.remap else "")
              + (f"; hva {ex.hva_align}-aligned" if ex.hva_align != DEFAULT_HVA_ALIGN else ""))
    t = Table(show_header=True, title=None)
    t.add_column("step")
    t.add_column("result")
    if ex.vm_mte:
        t.add_row("KVM_ENABLE_CAP(KVM_CAP_ARM_MTE)", "ok" if ex.vm_mte[0] == "ok" else ex.vm_mte[1])
    ms = d["memslot"]
    if ms["result"] == "ok":
        pre = ex.memslot.premapped if ex.memslot is not None else None
        t.add_row("KVM_SET_USER_MEMORY_REGION",
                  f"ok; PFNMAP pre-mapped {pre.s2} at creation (P0)" if pre is not None else "ok")
    elif ms["result"] == "n/a":
        t.add_row("KVM_SET_USER_MEMORY_REGION", f"n/a ({ex.memslot_na})")
    else:
        t.add_row("KVM_SET_USER_MEMORY_REGION", f"{ms['errno']} (rule {ms['rule']})")
    if ex.remap:
        t.add_row(f"mmap {ex.remap} over the slot", "ok (MMU notifiers unmap stage 2)")
    vm_mte = bool(ex.vm_mte and ex.vm_mte[0] == "ok")
    t.add_row(f"guest {ex.fault_kind} fault", _fault_text(d["fault"], vm_mte))
    con.print(t)
    if ex.guest:
        g = Table(show_header=True)
        g.add_column("guest stage 1")
        g.add_column("effective type")
        for s1, label in ex.guest:
            g.add_row(s1, label)
        con.print(g)
    con.print("Reasons:")
    for r in ex.reasons:
        con.print(f"  {r.rule}: {r.text} ({r.source})" + (" [UNVERIFIED]" if r.unverified else ""),
                  soft_wrap=True)
