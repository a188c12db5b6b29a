"""What a variant takes away: "mainline reaches this" capabilities.

A variant that only *narrows* what KVM does (maps less cacheable, refuses more) can hold every
safety property and still break what mainline users rely on.  Each capability below is a
guest-visible outcome mainline reaches in some era (a vfio-pci BAR gets Normal-NC from 6.9;
nvgrace-gpu usemem gets Normal-WB on a FWB+DIC host from 6.17; ...), decided with the same
kernel functions ``explain`` calls, over the hosts a family job uses and every slot flag.  For a
variant job, each capability mainline reaches in the same era but the variant does not is
reported: "holds, but loses: ...".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from memtypes.arch.features import Features
from memtypes.hosts.profile import resolve
from memtypes.linux.kvm import eras
from memtypes.linux.kvm.explain import explain

SLOT_CHOICES = (None, "log_dirty", "readonly", "cacheable_pfnmap")


@dataclass(frozen=True)
class Capability:
    name: str
    text: str
    backing: str
    host_ok: Callable[[Features], bool]
    outcome: Callable[[object], bool]
    vm_mte: bool = False
    source: str = ""


CAPABILITIES: tuple[Capability, ...] = (
    Capability("vfio-pci-bar-normal-nc", "a vfio-pci BAR gets Normal-NC at stage 2", "vfio-pci-bar",
               lambda f: True, lambda ex: ex.fault.mapped and ex.fault.s2 == "NC",
               source="kvmarm-6.9 kvm-arm64/vfio-normal-nc (M-nc)"),
    Capability("usemem-normal-wb", "nvgrace-gpu usemem gets Normal-WB on a FWB+DIC host", "nvgrace-usemem",
               lambda f: f.fwb and f.dic, lambda ex: ex.fault.mapped and ex.fault.s2 == "NORMAL",
               source="kvmarm-6.17 cacheable PFNMAP (M-cpfn)"),
    Capability("anon-normal-wb", "anonymous memory gets Normal-WB", "anon",
               lambda f: True, lambda ex: ex.fault.mapped and ex.fault.s2 == "NORMAL",
               source="arch/arm64/kvm/mmu.c user_mem_abort() (all versions)"),
    Capability("anon-mte-tagged", "anonymous memory of an MTE VM is tagged (tags sanitised)", "anon",
               lambda f: f.mte, lambda ex: ex.fault.mapped and ex.fault.mte_sanitised, vm_mte=True,
               source="KVM/arm64 updates for 5.14 (M-mte)"),
)


def reaches(rules_kernel, hosts: list[str], cap: Capability) -> bool:
    """Whether ``cap`` is reached on some host of ``hosts`` with some slot flag."""
    for h in hosts:
        prof = resolve(h, where="params.hosts")
        if prof.arch != "arm64" or not cap.host_ok(prof.features):
            continue
        for fl in SLOT_CHOICES:
            ex = explain(rules_kernel, prof.features, cap.backing, vm_mte=cap.vm_mte, slot_flags=fl)
            if (ex.vm_mte is None or ex.vm_mte[0] == "ok") and cap.outcome(ex):
                return True
    return False


@lru_cache(maxsize=512)
def _losses(era: str, variant: str, hosts: tuple[str, ...], _gen: int) -> tuple[Capability, ...]:
    return tuple(losses(era, variant, list(hosts)))


def losses(era: str, variant: str, hosts: list[str]) -> list[Capability]:
    """The capabilities mainline reaches in ``era`` on ``hosts`` that ``era+variant`` does not."""
    if variant == "mainline":
        return []
    from memtypes.linux.kvm import variants as kv
    if variant not in kv.VARIANTS:
        return []
    spec = era if era != "5.13" else "5.10"
    main_k = eras.kernel(spec)
    var_k = eras.kernel(f"{spec}+{variant}")
    return [c for c in CAPABILITIES if reaches(main_k, hosts, c) and not reaches(var_k, hosts, c)]


def _variant_obj(name: str):
    from memtypes.linux.kvm import variants as kv
    return kv.VARIANTS.get(name)


FAMILIES = ("passthrough", "mte")
"""The families whose jobs these capabilities concern (their ``hosts`` param)."""


def annotate(matrix) -> list[dict]:
    """For every variant job of :data:`FAMILIES` in ``matrix``: what it loses.  Stored as
    ``matrix.stats["loses"]`` and returned."""
    out = []
    for j in matrix.jobs:
        if j.job.family not in FAMILIES or j.job.variant == "mainline":
            continue
        hosts = list(j.params.get("hosts") or ())
        lost = _losses(j.job.kernel, j.job.variant, tuple(hosts), id(_variant_obj(j.job.variant)))
        if lost:
            holds = all(r.verdict != "violated" for r in j.results)
            out.append({"family": j.job.family, "kernel": j.job.kernel, "variant": j.job.variant,
                        "holds": holds, "loses": [{"name": c.name, "text": c.text, "source": c.source}
                                                  for c in lost]})
    matrix.stats["loses"] = out
    return out


def lines(entries: list[dict]) -> list[str]:
    out = []
    for e in entries:
        what = "; ".join(c["text"] for c in e["loses"])
        head = "holds, but loses" if e["holds"] else "also loses"
        out.append(f"{e['family']} {e['kernel']}+{e['variant']}: {head}: {what} "
                   f"(mainline {e['kernel']} reaches it)")
    return out
