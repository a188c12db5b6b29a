"""Load (safely, with line numbers), validate and save scenario files; see the package docs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memtypes import yamlfile
from memtypes.yamlfile import write_atomic
from memtypes.errors import InputError
from memtypes.linux.version import parse_version, split_variant

TOP_KEYS = ("family", "kernel", "variant", "host", "hosts", "params", "init", "description",
            "variant_files", "steps")
REQUIRED = ("family", "kernel", "steps")


@dataclass
class Step:
    actor: str
    action: str
    args: dict[str, Any]
    line: int | None = None

    def label(self) -> str:
        det = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.actor}.{self.action}({det})" if det else f"{self.actor}.{self.action}"


@dataclass
class Scenario:
    family: str
    kernel: str
    """As written (a version, maybe ``+variant``); the check layer maps it to its era."""
    steps: list[Step]
    variant: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """Family parameters, with ``hosts`` filled in from ``host``/``hosts``."""
    init: int = 0
    description: str = ""
    path: str = "<scenario>"
    lines: dict[str, int] = field(default_factory=dict)
    """1-based line of each key path (``family``, ``params.hosts``, ``steps[2]``, ...)."""
    variant_files: list[dict[str, str]] = field(default_factory=list)
    """The user variants files the run used (``{path, sha256}``): ``memtypes run`` reloads them."""

    def line(self, key: str) -> int | None:
        return self.lines.get(key)

    def error(self, what: str, key: str, expected: str = "") -> InputError:
        return InputError(what, where=self.path, line=self.line(key), field=key, expected=expected)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family, "kernel": self.kernel}
        if self.variant:
            d["variant"] = self.variant
        if self.description:
            d["description"] = self.description
        if self.params:
            d["params"] = self.params
        if self.variant_files:
            d["variant_files"] = [dict(f) for f in self.variant_files]
        d["init"] = self.init
        d["steps"] = [{"actor": s.actor, "action": s.action, **s.args} for s in self.steps]
        return d


# -- loading --------------------------------------------------------------------------------

def _safe_parse(text: str, where: str) -> tuple[Any, dict[str, int]]:
    return yamlfile.parse(text, where, expected="a mapping with family, kernel and steps")


_SCALARS = (str, int, bool)


def _type_name(v: Any) -> str:
    if v is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _arg_ok(v: Any) -> bool:
    if isinstance(v, _SCALARS):
        return True
    return isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v)


def _jsonable(v: Any) -> bool:
    if v is None or isinstance(v, (str, int, bool, float)):
        return True
    if isinstance(v, list):
        return all(_jsonable(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _jsonable(x) for k, x in v.items())
    return False


def loads(text: str, *, where: str = "<scenario>") -> Scenario:
    """Parse and validate scenario text (structure and types; family-specific checks are the
    check layer's)."""
    data, lines = _safe_parse(text, where)

    def err(what: str, key: str, expected: str = "") -> InputError:
        return InputError(what, where=where, line=lines.get(key), field=key, expected=expected)

    if not isinstance(data, dict):
        raise InputError("a scenario must be a mapping", where=where, line=1,
                         expected="keys " + ", ".join(TOP_KEYS))
    for k in data:
        if k not in TOP_KEYS:
            raise err(f"unknown key '{k}'", str(k), "one of " + ", ".join(TOP_KEYS))
    for k in REQUIRED:
        if k not in data:
            raise InputError(f"missing '{k}'", where=where, line=1, field=k,
                             expected="family, kernel and steps")

    def want_str(key: str, hint: str = "") -> str | None:
        v = data.get(key)
        if v is None and key not in REQUIRED:
            return None
        if not isinstance(v, str) or not v.strip():
            extra = " (quote it: a YAML number loses digits, 6.10 reads as 6.1)" \
                if isinstance(v, float) else ""
            raise err(f"'{key}' is {_type_name(v)}{extra}", key, hint or "a string")
        return v.strip()

    family = want_str("family", "a family name")
    kernel = want_str("kernel", 'a kernel version string such as "6.12"')
    variant = want_str("variant", "mainline or a variant name")
    description = want_str("description") or ""
    base, kvariant = split_variant(kernel)
    try:
        parse_version(base, where=where)
    except InputError as e:
        raise err(e.what, "kernel", e.expected) from None
    if kvariant is not None:
        if not kvariant:
            raise err(f"'{kernel}' has an empty variant", "kernel", "VERSION[+VARIANT]")
        if variant is not None and variant != kvariant:
            raise err(f"variant '{variant}' contradicts kernel '{kernel}'", "variant",
                      f"{kvariant} or no variant key")
        variant = kvariant
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not _jsonable(params):
        raise err(f"'params' is {_type_name(params)}", "params",
                  "a mapping of plain values (strings, numbers, booleans, lists, mappings)")
    params = dict(params)
    if "host" in data and "hosts" in data:
        raise err("both 'host' and 'hosts'", "hosts", "one of them")
    hosts: list[str] | None = None
    if "host" in data:
        h = data["host"]
        if not isinstance(h, str) or not h.strip():
            raise err(f"'host' is {_type_name(h)}", "host", "a host name, file or fwb=1,...")
        hosts = [h.strip()]
        hkeys = ["host"]
    elif "hosts" in data:
        hs = data["hosts"]
        if not isinstance(hs, list) or not hs or not all(isinstance(x, str) and x for x in hs):
            raise err(f"'hosts' is {_type_name(hs)}", "hosts", "a list of host names")
        hosts = [x.strip() for x in hs]
        hkeys = [f"hosts[{i}]" for i in range(len(hs))]
    if hosts is not None and "hosts" in params:
        raise err("both 'params.hosts' and a host key", "params.hosts", "one of them")
    if hosts is not None:
        from memtypes.hosts.profile import resolve
        for h, key in zip(hosts, hkeys):
            try:
                resolve(h, where=where)
            except InputError as e:
                raise err(e.what, key, e.expected) from None
        params["hosts"] = hosts
    init = data.get("init", 0)
    if isinstance(init, bool) or not isinstance(init, int) or init < 0:
        raise err(f"'init' is {_type_name(init)}" + (f" {init}" if isinstance(init, int) else ""),
                  "init", "an initial-state index >= 0")
    vfiles = data.get("variant_files") or []
    if not isinstance(vfiles, list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and f["path"]
            and isinstance(f.get("sha256", ""), str) and set(f) <= {"path", "sha256"}
            for f in vfiles):
        raise err(f"'variant_files' is {_type_name(vfiles)} not of the expected form",
                  "variant_files", "a list of {path: FILE.py, sha256: HASH}")
    raw_steps = data["steps"]
    if not isinstance(raw_steps, list):
        raise err(f"'steps' is {_type_name(raw_steps)}", "steps",
                  "a list of {actor: ..., action: ..., ARG: value}")
    steps: list[Step] = []
    for i, s in enumerate(raw_steps):
        key = f"steps[{i}]"
        if not isinstance(s, dict):
            raise err(f"step {i + 1} is {_type_name(s)}", key,
                      "a mapping {actor: ..., action: ..., ARG: value}")
        for req in ("actor", "action"):
            if req not in s:
                raise err(f"step {i + 1} has no '{req}'", key, "actor and action keys")
            if not isinstance(s[req], str) or not s[req]:
                raise err(f"'{req}' is {_type_name(s[req])}", f"{key}.{req}", "a name")
        args = {}
        for k, v in s.items():
            if k in ("actor", "action"):
                continue
            if not isinstance(k, str):
                raise err(f"argument name {k!r} is not a string", key, "ARG: value")
            if not _arg_ok(v):
                raise err(f"argument '{k}' is {_type_name(v)}", f"{key}.{k}",
                          "a string, integer, boolean or a list of those")
            args[k] = v
        steps.append(Step(s["actor"], s["action"], args, lines.get(key)))
    return Scenario(family=family, kernel=kernel, variant=variant, steps=steps, params=params,
                    init=init, description=description, path=where, lines=lines,
                    variant_files=[dict(f) for f in vfiles])


def load(path: str | os.PathLike) -> Scenario:
    p = Path(path)
    return loads(yamlfile.read_text(p, what="scenario file"), where=str(p))


# -- saving ---------------------------------------------------------------------------------

def _flow(step: dict[str, Any]) -> str:
    return yaml.safe_dump(step, default_flow_style=True, sort_keys=False, width=10_000).strip()


def dump(scenario: Scenario | dict[str, Any], *, header: str = "") -> str:
    """Scenario text: an optional ``#`` comment header, the keys, one flow-style line per step."""
    d = scenario.as_dict() if isinstance(scenario, Scenario) else dict(scenario)
    steps = d.pop("steps", [])
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    if d:
        out.append(yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=100,
                                  allow_unicode=True).rstrip())
    out.append("steps:" if steps else "steps: []")
    out.extend(f"  - {_flow(s)}" for s in steps)
    return "\n".join(out) + "\n"


def save(path: str | os.PathLike, scenario: Scenario | dict[str, Any], *, header: str = "") -> None:
    write_atomic(path, dump(scenario, header=header))
