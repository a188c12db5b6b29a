"""``memtypes probe [--root DIR] [--out FILE] [--json FILE|-] [--quiet]``: read this host.

Reads the live host (or a saved tree under ``--root``) without changing it and prints a summary:
features with their evidence, kernel, KVM capabilities, PCI devices, IOMMU groups.  ``--out``
writes the host profile as YAML, ``--json`` as JSON (``-`` for stdout, which replaces the
summary); either file is accepted by every command as ``--host FILE``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer
import yaml

from memtypes.cli.app import app
from memtypes.yamlfile import write_atomic
from memtypes.hosts.probe import probe, to_profile

HELP = """Probe this host (read-only) and write a host profile for --host.

\b
--root DIR   read DIR/proc, DIR/sys, DIR/dev instead of / (the real /dev/kvm is then never
             opened; DIR/dev/kvm.json may hold canned ioctl answers)
--out FILE   write the profile as YAML
--json FILE  write the profile as JSON ('-' for stdout instead of the summary)
FWB and DIC are not visible from userspace: they are inferred from
KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) on a scratch VM fd on kernels >= 6.17, else
listed under 'unknown' (value 0).
"""


def _write(path: str, text: str, where: str) -> None:
    write_atomic(path, text, where=where)


def to_yaml(d: dict[str, Any]) -> str:
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=100)


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2) + "\n"


def _summary(d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 140)
    con.print(f"[bold]{d['name']}[/bold]  arch {d['arch']}  kernel {d.get('kernel', '?')} "
              f"({d.get('kernel_release') or 'unreadable'})", highlight=False)
    cpu = d.get("cpu", {})
    if cpu.get("part") or cpu.get("model"):
        con.print(f"cpu: {cpu.get('part') or cpu.get('model')}", highlight=False)
    t = Table(title="features")
    for c in ("feature", "value", "evidence"):
        t.add_column(c, overflow="fold")
    for k, v in d["features"].items():
        val = "unknown (0)" if k in d.get("unknown", []) else str(v)
        t.add_row(k, val, d["evidence"].get(k, ""))
    con.print(t)
    kvm = d["kvm"]
    if not kvm.get("present"):
        con.print("/dev/kvm: absent", highlight=False)
    elif kvm.get("error"):
        con.print(f"/dev/kvm: present but not usable ({kvm['error']})", highlight=False)
    else:
        con.print(f"/dev/kvm: KVM_GET_API_VERSION = {kvm.get('api_version')}, scratch VM "
                  f"(KVM_CREATE_VM type 0): {kvm.get('create_vm')}", highlight=False)
        t = Table(title="KVM_CHECK_EXTENSION")
        for c in ("cap", "name", "scope", "/dev/kvm", "VM fd"):
            t.add_column(c)
        for r in kvm.get("caps", []):
            t.add_row(str(r["number"]), r["name"], r["scope"], str(r["system"]), str(r["vm"]))
        con.print(t)
    t = Table(title=f"PCI devices ({len(d['pci'])})")
    for c in ("address", "vendor:device", "class", "driver", "group", "BARs"):
        t.add_column(c, overflow="fold")
    for p in d["pci"]:
        bars = ", ".join(
            f"{b['name']} {_size(b['size'])} {b['type']}"
            + (" 64" if b["64bit"] else "") + (" pref" if b["prefetch"] else "")
            for b in p["bars"])
        t.add_row(p["address"], f"{_hex(p['vendor'])}:{_hex(p['device'])}",
                  f"{p['class'] or '?'} {p.get('class_name', '')}".strip(), p["driver"] or "-",
                  p["iommu_group"] or "-", bars or "-")
    con.print(t)
    groups = d.get("iommu_groups", {})
    if groups:
        t = Table(title=f"IOMMU groups ({len(groups)})")
        for c in ("group", "type", "devices"):
            t.add_column(c, overflow="fold")
        for g, info in groups.items():
            t.add_row(g, info.get("type") or "-", " ".join(info["devices"]))
        con.print(t)
    else:
        con.print("IOMMU groups: none", highlight=False)
    for n in d["probe"]["notes"]:
        con.print(f"note: {n}", highlight=False)


def _hex(v: Any) -> str:
    return (v or "?").removeprefix("0x")


def _size(n: int) -> str:
    for unit, s in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= s and n % s == 0:
            return f"{n // s}{unit}"
    return str(n)


@app.command("probe", help=HELP)
def probe_cmd(
    root: str = typer.Option("/", "--root", help="read a saved tree instead of /"),
    out: Optional[str] = typer.Option(None, "--out", help="write the profile as YAML"),
    json_out: Optional[str] = typer.Option(None, "--json", help="write the profile as JSON ('-': stdout)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no summary"),
) -> None:
    d = probe(root)
    to_profile(d, where="probe")  # the written profile must load back
    if out:
        _write(out, to_yaml(d), "--out")
    if json_out and json_out != "-":
        _write(json_out, to_json(d), "--json")
    if json_out == "-":
        sys.stdout.write(to_json(d))
    elif not quiet:
        _summary(d)
