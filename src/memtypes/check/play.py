"""Scenario files meet families: build a scenario's model, run it, and save counterexamples of
a check run as scenario files that replay to the same violation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from memtypes import scenario as sc
from memtypes.check import properties as catalogue
from memtypes.check import registry
from memtypes.check.family import Family
from memtypes.check.kernels import parse_kernel
from memtypes.check.runner import MatrixResult, PropertyResult
from memtypes.errors import InputError


def bind(s: sc.Scenario, families: Sequence[Family] | None = None) -> tuple[Family, str, str, Any]:
    """(family, kernel era, variant, model) of a loaded scenario; InputError at the right line."""
    fams = registry.families() if families is None else list(families)
    fam = registry.family(s.family, where=s.path, line=s.line("family"), available=fams)
    try:
        era, kv = parse_kernel(s.kernel, where=s.path)
    except InputError as e:
        raise s.error(e.what, "kernel", e.expected) from None
    variant = s.variant or kv or "mainline"
    vkey = "variant" if s.line("variant") else "kernel"
    if variant != "mainline" and variant not in fam.variants:
        raise s.error(f"unknown variant '{variant}' of family {fam.name}", vkey,
                      ", ".join(("mainline",) + tuple(fam.variants)))
    if era not in fam.kernels:
        raise s.error(f"family {fam.name} does not model kernel {s.kernel} (era {era})", "kernel",
                      "one of the eras " + ", ".join(fam.kernels))
    if not fam.applies_to(era, variant):
        raise s.error(f"variant {variant} does not apply to kernel era {era}", vkey,
                      "a kernel where the variant exists")
    from memtypes.check.family import check_params
    params = dict(fam.default_params)
    for key, value in s.params.items():
        lkey = f"params.{key}"
        if key == "hosts" and s.line(lkey) is None:  # filled in from host:/hosts:
            lkey = "host" if s.line("host") else "hosts"
            if key not in fam.default_params:
                raise s.error(f"family {fam.name} takes no host", lkey, "no host or hosts key")
        try:
            params.update(check_params(fam, {key: value}, where=s.path))
        except InputError as e:
            raise s.error(e.what, lkey, e.expected) from None
    try:
        model = fam.build(era, variant, params)
    except InputError as e:
        bad = e.where.rpartition(".")[2] if e.where.startswith(f"{fam.name}.") else ""
        raise s.error(e.what, f"params.{bad}" if bad in s.params else "params", e.expected) from None
    except (KeyError, TypeError, ValueError) as e:
        raise s.error(f"family {fam.name} rejects these params: {type(e).__name__}: {e}",
                      "params", "parameters of the family (see its default_params)") from None
    return fam, era, variant, model


def run_file(path: str | os.PathLike, families: Sequence[Family] | None = None) -> sc.RunReport:
    """Load and run a scenario file.  The variants files it records are reloaded first: a
    missing one is an InputError, a changed one a note in ``rep.extra["notes"]``."""
    from memtypes.linux import userfiles
    s = sc.load(path)
    notes = userfiles.verify(s.variant_files, where=s.path)
    fam, era, variant, model = bind(s, families)
    rep = sc.run(model, s)
    rep.extra.update({"family": fam.name, "kernel": era, "variant": variant})
    if notes:
        rep.extra["notes"] = notes
    return rep


def run_kernels(path: str | os.PathLike, kernels: Sequence[str],
                families: Sequence[Family] | None = None) -> list[sc.RunReport]:
    """The scenario of ``path`` run once per kernel spec (``6.12``, ``6.17+mine``), in order;
    a step a kernel does not offer changes nothing there (scenario.run)."""
    from dataclasses import replace
    from memtypes.linux import userfiles
    s = sc.load(path)
    notes = userfiles.verify(s.variant_files, where=s.path)
    out = []
    for k in kernels:
        sk = replace(s, kernel=k, variant=None)
        fam, era, variant, model = bind(sk, families)
        rep = sc.run(model, sk)
        rep.extra.update({"family": fam.name, "kernel": era, "variant": variant, "spec": k})
        if notes:
            rep.extra["notes"] = notes
        out.append(rep)
    return out


def parting(reps: Sequence[sc.RunReport]) -> int | None:
    """The first step (1-based) at which the runs differ (what it did, changed, broke), else
    None."""
    n = max((len(r.steps) for r in reps), default=0)
    for i in range(n):
        seen = {(o.describe, o.changed, tuple(o.broken)) if o else None
                for o in (r.steps[i] if i < len(r.steps) else None for r in reps)}
        if len(seen) > 1:
            return i + 1
    return None


def variant_files_of(variant: str) -> list[dict[str, str]]:
    """``[{path, sha256}]`` of the user file that registered ``variant`` (none for built-ins)."""
    from memtypes.linux import userfiles
    from memtypes.linux.kvm import variants as kv
    src = kv.source_of(variant) if variant != "mainline" else None
    return [f for f in userfiles.loaded() if f["path"] == src]


def trace_filename(r: PropertyResult) -> str:
    return f"{r.family}-{r.kernel}-{r.variant}-{r.property}.yaml"


def trace_scenario(r: PropertyResult, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(scenario dict, comment header) reproducing a violation."""
    prop = catalogue.get(r.property)
    steps = [{"actor": s["actor"], "action": s["action"], **s.get("args", {})} for s in r.trace]
    d = {"family": r.family, "kernel": r.kernel, "variant": r.variant, "params": params,
         "init": r.init_index, "steps": steps}
    vf = variant_files_of(r.variant)
    if vf:
        d = {**{k: d[k] for k in ("family", "kernel", "variant", "params")}, "variant_files": vf,
             "init": d["init"], "steps": steps}
    label = r.kernel if r.variant == "mainline" else f"{r.kernel}+{r.variant}"
    header = (f"memtypes counterexample: {r.family} on kernel {label} violates {r.property}\n"
              f"in {len(steps)} step(s) (a shortest trace found by `memtypes check`).\n"
              f"{r.property} holds when {prop.holds_when}.\n"
              f"Source: {prop.source}\n"
              f"Replay: memtypes run THIS_FILE")
    return d, header


def trace_files(matrix: MatrixResult) -> list[tuple[str, str]]:
    """(file name, scenario text) of each violation's counterexample, in result order."""
    out = []
    for r in matrix.violations:
        job = matrix.job(r.family, r.kernel, r.variant)
        data, header = trace_scenario(r, job.params)
        out.append((trace_filename(r), sc.dump(data, header=header)))
    return out


def save_traces(matrix: MatrixResult, directory: str | os.PathLike) -> list[Path]:
    """One scenario file per violation in ``directory`` (new or empty), written as a set: into
    a temporary folder beside it, renamed into place when complete.  Returns the paths."""
    from memtypes.yamlfile import OutputSet, check_writable

    check_writable(directory, where="--save-traces", directory=True)
    with OutputSet() as out:
        paths = out.directory(directory, trace_files(matrix), where="--save-traces")
        out.commit()
    return paths
