"""Host profiles: what a host's CPU (and, when probed, its kernel and devices) offers.

A profile is named by what it is.  Every command that takes ``--host`` accepts:

* a built-in name (``memtypes/hosts/builtin/*.yaml``, listed by :func:`builtin_names`);
* a YAML file path (the format ``memtypes probe`` writes);
* an inline feature list: ``fwb=1,dic=1,mte=0`` (unnamed features default to 0).

YAML format (all keys but ``features`` optional)::

    name: grace
    description: NVIDIA Grace-class Neoverse V2 host
    arch: arm64            # arm64 | x86_64
    features: {fwb: 1, dic: 1, mte: 0, mte_perm: 0, xs: 0}
    kernel: "6.17"         # the running kernel, when known
    evidence: {fwb: "...", ...}   # where each feature value came from (probe)
    kvm: {...}             # KVM API version and capabilities (probe)
    pci: [...]             # PCI devices (probe)
    iommu_groups: {...}    # IOMMU groups (probe)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from memtypes.arch.features import Features
from memtypes import yamlfile
from memtypes.errors import InputError

ARCHES = ("arm64", "x86_64")


@dataclass(frozen=True)
class HostProfile:
    name: str
    features: Features
    arch: str = "arm64"
    description: str = ""
    kernel: str | None = None
    evidence: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["arch"] = self.arch
        d["features"] = {k: int(v) for k, v in self.features.as_dict().items()}
        if self.kernel:
            d["kernel"] = self.kernel
        if self.evidence:
            d["evidence"] = dict(self.evidence)
        d.update(self.extra)
        return d

    def short(self) -> str:
        on = [k for k, v in self.features.as_dict().items() if v]
        return f"{self.name} ({','.join(on) or 'no FWB/DIC/MTE'})"


def _flag(value: Any, *, where: str, field_name: str, line: int | None = None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise InputError(f"'{value}' is not a feature flag", where=where, line=line,
                     field=field_name, expected="0 or 1 (or true/false)")


def parse_inline(text: str, *, where: str = "--host") -> HostProfile:
    """``fwb=1,dic=1,mte=0`` -> an unnamed profile (name is the text itself)."""
    values: dict[str, bool] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in Features.names():
            raise InputError(f"unknown host feature '{part}'", where=where,
                             expected="KEY=0|1 with KEY one of " + ", ".join(Features.names())
                             + "; or a built-in host: " + ", ".join(builtin_names())
                             + "; or a YAML file")
        values[key] = _flag(val, where=where, field_name=key)
    return HostProfile(name=text, features=Features(**values), description="inline profile")


def from_dict(data: Any, *, where: str, lines: dict[str, int] | None = None) -> HostProfile:
    lines = lines or {}
    if not isinstance(data, dict):
        raise InputError("a host profile must be a mapping", where=where, line=1,
                         expected="keys name, arch, features, ...")
    feats = data.get("features", {})
    if not isinstance(feats, dict):
        raise InputError("'features' must be a mapping", where=where, line=lines.get("features"),
                         field="features", expected="{fwb: 0|1, dic: 0|1, mte: 0|1, ...}")
    values = {}
    for k, v in feats.items():
        if not isinstance(k, str) or k not in Features.names():
            raise InputError(f"unknown feature '{k}'", where=where, line=lines.get(f"features.{k}"),
                             field=f"features.{k}", expected=", ".join(Features.names()))
        values[k] = _flag(v, where=where, field_name=f"features.{k}", line=lines.get(f"features.{k}"))
    arch = data.get("arch", "arm64")
    if not isinstance(arch, str) or arch not in ARCHES:
        raise InputError(f"unknown arch '{arch}'", where=where, line=lines.get("arch"),
                         field="arch", expected=" or ".join(ARCHES))
    known = {"name", "description", "arch", "features", "kernel", "evidence"}

    def text(key: str, what: str) -> str | None:
        v = data.get(key)
        if v is None:
            return None
        if isinstance(v, str) and v.strip():
            return v.strip()
        hint = " (quote it: YAML reads 6.10 as the number 6.1)" if isinstance(v, float) else ""
        raise InputError(f"'{key}' is {_type_name(v)}{hint}", where=where, line=lines.get(key),
                         field=key, expected=what)

    name = text("name", "a host name (a string)")
    description = text("description", "a string") or ""
    kernel = text("kernel", 'a kernel version string such as "6.17"')
    if kernel is not None and not _KERNEL_RE.match(kernel):
        raise InputError(f"'{kernel}' is not a kernel version", where=where, line=lines.get("kernel"),
                         field="kernel", expected='MAJOR.MINOR[.PATCH] such as "6.17"')
    evidence = data.get("evidence") or {}
    if not isinstance(evidence, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in evidence.values()):
        raise InputError(f"'evidence' is {_type_name(evidence)}", where=where,
                         line=lines.get("evidence"), field="evidence",
                         expected="a mapping of feature -> where its value came from")
    return HostProfile(
        name=name or Path(where).stem,
        features=Features(**values),
        arch=arch,
        description=description,
        kernel=kernel,
        evidence={str(k): str(v) for k, v in evidence.items()},
        extra={k: v for k, v in data.items() if k not in known},
    )


_KERNEL_RE = re.compile(r"^v?\d+\.\d+(?:\.\d+)?(?:-rc\d+)?$")


def _type_name(v: Any) -> str:
    if v is None:
        return "empty"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "an empty string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def load_file(path: str | Path) -> HostProfile:
    data, lines = yamlfile.read(path, what="host profile",
                                expected="a mapping with name, arch, features, ...")
    return from_dict(data, where=str(path), lines=lines)


def builtin_names() -> list[str]:
    root = resources.files("memtypes.hosts").joinpath("builtin")
    return sorted(f.name[:-5] for f in root.iterdir() if f.name.endswith(".yaml"))


def builtin(name: str) -> HostProfile:
    root = resources.files("memtypes.hosts").joinpath("builtin")
    f = root.joinpath(f"{name}.yaml")
    if not f.is_file():
        raise InputError(f"unknown built-in host '{name}'", where="--host",
                         expected=", ".join(builtin_names()))
    return from_dict(yaml.safe_load(f.read_text()), where=f"builtin:{name}")


def resolve(spec: str, *, where: str = "--host") -> HostProfile:
    """Resolve a ``--host`` value: built-in name, YAML file, or inline ``k=v`` list."""
    if "=" in spec:
        return parse_inline(spec, where=where)
    if spec in builtin_names():
        return builtin(spec)
    p = Path(spec)
    if p.suffix in (".yaml", ".yml", ".json") or p.exists():
        if not p.exists():
            raise InputError(f"no such host profile file '{spec}'", where=where)
        return load_file(p)
    raise InputError(f"unknown host '{spec}'", where=where,
                     expected="a built-in host (" + ", ".join(builtin_names())
                     + "), a YAML file, or KEY=0|1,... with KEY in " + ", ".join(Features.names()))


def split_hosts(text: str, *, where: str = "--host") -> list[str]:
    """``grace,armv8.0`` -> ``["grace", "armv8.0"]``.  An inline profile keeps its commas
    (``grace,fwb=1,dic=0`` -> ``["grace", "fwb=1,dic=0"]``); separate two inline profiles with
    ``;``.  Each item is checked with :func:`resolve`."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        names, inline = [], []
        for item in (x.strip() for x in part.split(",")):
            (inline if "=" in item else names).append(item)
        if any(not n for n in names):
            raise InputError(f"'{text}' has an empty item", where=where,
                             expected="HOST[,HOST...] (inline profiles separated by ';')")
        out.extend(names)
        if inline:
            out.append(",".join(inline))
    if not out:
        raise InputError("no host given", where=where, expected="HOST[,HOST...]")
    for h in out:
        resolve(h, where=where)
    return list(dict.fromkeys(out))


def resolve_arm64(spec: str, *, where: str = "--host") -> HostProfile:
    """:func:`resolve`, then refuse a non-arm64 profile (the x86-64 built-in, an x86 probe):
    every model that takes a host models KVM arm64 stage 2."""
    p = resolve(spec, where=where)
    if p.arch != "arm64":
        raise InputError(f"host '{p.name}' is {p.arch}, not arm64", where=where,
                         expected="an arm64 host profile (KVM arm64 is what is modelled)")
    return p
