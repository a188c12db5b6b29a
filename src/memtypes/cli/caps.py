"""``memtypes caps``: what KVM_CHECK_EXTENSION answers, on /dev/kvm and on a VM fd.

``memtypes caps --kernel VERSION --host PROFILE [--protected] [--ipa-limit BITS] [--json]``
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from memtypes.cli.app import app
from memtypes.errors import InputError
from memtypes.hosts.profile import resolve
from memtypes.linux.kvm.arm import CAPS, caps
from memtypes.linux.kvm.eras import kernel

HELP = f"""What KVM_CHECK_EXTENSION answers for every capability the model knows, on the system fd
(/dev/kvm) and on a VM fd, for a kernel on a host, with the reason for each answer.

\b
Capabilities: {", ".join(f"{n} {name}" for n, name in CAPS)}.
A failing ioctl shows its errno (-EINVAL is -22 in --json); KVM_CAP_ARM_VM_IPA_SIZE is the host's
IPA limit, unknown to the model unless --ipa-limit gives it.  A host with pkvm=1 runs protected
KVM; --protected asks on a protected VM's fd (KVM_VM_TYPE_ARM_PROTECTED).
"""


@app.command("caps", help=HELP, no_args_is_help=True)
def caps_cmd(
    kernel_spec: str = typer.Option(..., "--kernel", help="kernel version[+variant]"),
    host: str = typer.Option(..., "--host", help="built-in host, YAML file, or fwb=1,dic=1,mte=1,pkvm=0"),
    protected: bool = typer.Option(False, "--protected", help="the VM fd is a pKVM protected VM's"),
    ipa_limit: Optional[int] = typer.Option(None, "--ipa-limit", help="the host's IPA limit in bits (32-52)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object"),
) -> None:
    k = kernel(kernel_spec)
    prof = resolve(host)
    if prof.arch != "arm64":
        raise InputError(f"host '{prof.name}' is {prof.arch}, not arm64", where="--host",
                         expected="an arm64 host profile")
    if ipa_limit is not None and not 32 <= ipa_limit <= 52:
        raise InputError(f"'{ipa_limit}' is not an IPA size", where="--ipa-limit", expected="32 to 52 (bits)")
    if protected and not prof.features.pkvm:
        raise InputError("--protected needs a pKVM host", where="--protected", expected="a host with pkvm=1")
    if protected and not k.rules.pkvm_memslot_rules:
        raise InputError(f"kernel {k.version} has no protected VMs in the model", where="--protected",
                         expected="a kernel from 7.1 (KVM_VM_TYPE_ARM_PROTECTED)")
    d = caps(k, prof.features, protected=protected, ipa_limit=ipa_limit)
    d["host"] = {"name": prof.name, "features": d["host"]}
    if as_json:
        print(json.dumps(d, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=False, markup=False, emoji=False, width=140)
    kd = d["kernel"]
    mark = f" [{kd['note']}]" if kd.get("note") else ""
    var = "" if kd["variant"] == "mainline" else f" + {kd['variant']}"
    feats = ",".join(n for n, v in d["host"]["features"].items() if v) or "none"
    con.print(f"Kernel {kd['version']}{mark} (era {kd['era']}{var}); host {prof.name} ({feats})"
              + ("; protected VM" if protected else ""))
    t = Table(show_header=True)
    t.add_column("cap")
    t.add_column("name")
    t.add_column("/dev/kvm")
    t.add_column("VM fd")
    t.add_column("why")

    def show(v, e):
        return e if e else ("?" if v is None else str(v))

    for c in d["caps"]:
        why = "; ".join(r["text"] + (" [UNVERIFIED]" if r.get("unverified") else "") for r in c["reasons"])
        t.add_row(str(c["cap"]), c["name"], show(c["system"], c["system_errno"]), show(c["vm"], c["vm_errno"]), why)
    con.print(t)
