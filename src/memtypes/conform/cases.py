"""The cases the conform agent runs, generated from the model's own input space.

A case is a flat mapping (it is written to the agent as JSON and read back by a tiny C parser):

* ``kind``: ``caps`` (KVM_CHECK_EXTENSION on the system and a VM fd), ``mte-cap-order``
  (KVM_ENABLE_CAP(KVM_CAP_ARM_MTE) before and after a vCPU exists) or ``slot`` (one memslot
  over one backing and one guest access);
* for ``slot``: ``backing`` (an agent backing, see :data:`AGENT_BACKINGS`), ``flags``
  (``readonly``, ``log_dirty``), ``mte`` (``off``, ``before`` or ``after`` the memslot), ``remap``
  (another backing mmapped over the slot's range after it exists), ``access`` (``read``,
  ``write``, ``exec``), ``walk`` (read the stage-2 descriptor through the gdbstub),
  ``misalign`` (the hva 4 KiB off a 2 MiB boundary), ``pretag`` (host memory mapped PROT_MTE
  with tags set before the guest touches it), ``tags`` (KVM_ARM_MTE_COPY_TAGS after the access),
  ``tags_errors`` (the ioctl's error paths too).

Ids are stable (``anon-private/read``, ``mte-before/anon-private/read``): observations, fixtures
and reports refer to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from memtypes.linux.kvm.arm import CAPS
from memtypes.linux.kvm.eras import Kernel

# The backings the agent can produce on a QEMU virt machine (with an ivshmem-plain device for
# the PCI BAR kinds) or on a live host.  Names follow issue 16's model kinds.
AGENT_BACKINGS: tuple[str, ...] = (
    "anon-private", "anon-shared", "memfd-private", "memfd-shared", "tmpfs-private", "tmpfs-shared",
    "ramfs-private", "ramfs-shared", "devzero-private", "hugetlb-memfd", "hugetlb-anon",
    "pci-resource", "pci-resource-wc", "vfio-pci-bar", "guest-memfd", "hole",
)
ACCESSES = ("read", "write", "exec")


@dataclass(frozen=True)
class Case:
    id: str
    kind: str = "slot"
    backing: str = ""
    access: str = "read"
    flags: str = ""
    mte: str = "off"
    remap: str | None = None
    walk: bool = False
    misalign: bool = False
    pretag: bool = False
    tags: bool = False
    tags_errors: bool = False
    caps: str = ""                 # kind "caps": the capability numbers to ask, comma-separated

    def as_agent(self) -> dict:
        d: dict = {"id": self.id, "kind": self.kind}
        if self.kind == "caps":
            d["caps"] = self.caps
        if self.kind == "slot":
            d.update(backing=self.backing, access=self.access, flags=self.flags, mte=self.mte,
                     remap=self.remap, walk=int(self.walk), misalign=int(self.misalign),
                     pretag=int(self.pretag), tags=int(self.tags), tags_errors=int(self.tags_errors))
        return d


KINDS = ("caps", "mte-cap-order", "slot")
MTE_ORDERS = ("off", "before", "after")
AGENT_FLAGS = ("readonly", "log_dirty")     # the slot flags agent.c case_slot() sets


def _check(d: dict, key: str, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"case {str(d.get('id'))[:60]!r}: field '{key}' is {str(d.get(key))[:60]!r} "
                         f"(expected {expected})")


def from_agent(d: dict) -> dict:
    """The keyword arguments of the :class:`Case` that ``as_agent`` wrote as ``d``.  Raises
    ValueError naming the case and field when ``d`` is not such a case (a recorded file read
    back by ``--replay`` may be corrupt)."""
    if not isinstance(d, dict):
        raise ValueError(f"a case is a JSON object, not {type(d).__name__}")
    _check(d, "id", isinstance(d.get("id"), str) and bool(d.get("id")), "a non-empty string")
    _check(d, "kind", d.get("kind", "slot") in KINDS, ", ".join(KINDS))
    if d.get("kind", "slot") == "slot":
        _check(d, "backing", isinstance(d.get("backing"), str) and bool(d.get("backing")), "a backing name")
        _check(d, "access", d.get("access") in ACCESSES, ", ".join(ACCESSES))
        _check(d, "mte", d.get("mte", "off") in MTE_ORDERS, ", ".join(MTE_ORDERS))
        _check(d, "remap", d.get("remap") is None or (isinstance(d["remap"], str) and bool(d["remap"])),
               "null or a backing name")
        flags = d.get("flags") or ""
        _check(d, "flags", isinstance(flags, str) and all(f in AGENT_FLAGS for f in flags.split(",") if f),
               "a comma-separated list of " + ", ".join(AGENT_FLAGS))
        for b in ("walk", "misalign", "pretag", "tags", "tags_errors"):
            _check(d, b, d.get(b, 0) in (0, 1), "0 or 1")
    kw = {"id": str(d["id"]), "kind": str(d.get("kind", "slot"))}
    if kw["kind"] == "caps":
        kw["caps"] = str(d.get("caps") or "16,81,165,205,231,234,243,244")   # files recorded before "caps"
    if kw["kind"] == "slot":
        kw.update(backing=str(d["backing"]), access=str(d["access"]), flags=str(d.get("flags") or ""),
                  mte=str(d.get("mte", "off")), remap=d.get("remap"))
        for b in ("walk", "misalign", "pretag", "tags", "tags_errors"):
            kw[b] = bool(d.get(b, 0))
    return kw


def _slot(backing: str, access: str, *, prefix: str = "", **kw) -> Case:
    tail = f"{backing}/{access}"
    return Case(id=f"{prefix}{tail}", backing=backing, access=access, walk=True, **kw)


def generate(kernel: Kernel, *, mte: bool, pci: bool = True, vfio: bool = True) -> list[Case]:
    """The cases for one kernel.  ``mte``: the CPU is expected to have MTE (the MTE cases are
    only worth their time there; predictions still use the features the agent reports).
    ``pci``/``vfio``: a PCI device (ivshmem BAR2) is present / may be bound to vfio-pci."""
    backings = [b for b in AGENT_BACKINGS
                if (b != "guest-memfd" or kernel.rules.gmem_slots)   # the model's own switch (6.18)
                and (pci or not b.startswith("pci-"))
                and (vfio or b != "vfio-pci-bar")]
    cases = [Case(id="caps", kind="caps", caps=",".join(str(n) for n, _ in CAPS)),
             Case(id="mte-cap-order", kind="mte-cap-order")]
    for b in backings:
        for a in ACCESSES:
            cases.append(_slot(b, a))
    for b in ("anon-private",) + (("vfio-pci-bar",) if "vfio-pci-bar" in backings else ()):
        for fl in ("readonly", "log_dirty"):
            for a in ("read", "write"):
                cases.append(_slot(b, a, prefix=f"{fl}/", flags=fl))
    if "vfio-pci-bar" in backings:
        cases.append(_slot("vfio-pci-bar", "read", prefix="misalign/", misalign=True))
        cases.append(_slot("anon-private", "read", prefix="remap-vfio-pci-bar/", remap="vfio-pci-bar"))
        cases.append(_slot("vfio-pci-bar", "read", prefix="remap-anon-private/", remap="anon-private"))
    cases.append(_slot("anon-private", "read", prefix="remap-hole/", remap="hole"))
    if mte:
        for b in backings:
            cases.append(_slot(b, "read", prefix="mte-before/", mte="before", tags=True))
        for b in ("anon-private", "ramfs-shared", "devzero-private", "tmpfs-private") + \
                (("guest-memfd",) if "guest-memfd" in backings else ()):
            cases.append(_slot(b, "read", prefix="mte-after/", mte="after", tags=True))
        cases.append(_slot("anon-private", "read", prefix="mte-pretag/", mte="before", pretag=True,
                           tags=True))
        cases.append(_slot("anon-private", "read", prefix="mte-tags-errors/", mte="before",
                           flags="log_dirty", tags=True, tags_errors=True))
    # the agent binds the PCI device to vfio-pci at its first vfio case and keeps it bound, after
    # which its sysfs resource files no longer mmap: every vfio case runs last
    return sorted(cases, key=lambda c: "vfio-pci-bar" in (c.backing, c.remap))


def cases_json(cases: list[Case]) -> bytes:
    """The agent's input: a JSON array of flat objects, one per line (deterministic)."""
    rows = [json.dumps(c.as_agent(), sort_keys=True) for c in cases]
    return ("[\n" + ",\n".join(rows) + "\n]\n").encode()
