"""Arrangement shared by the text and HTML renderings of a check run (no verdict logic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memtypes.check import properties as catalogue


@dataclass
class Counterexample:
    family: str
    property: str
    rows: list[str]
    """Row labels (kernel[+variant]) that share this trace."""
    steps: list[dict[str, Any]]
    init: int
    context: dict[str, Any] | None = None
    """What the initial state is, the variant's file, the family's legend (check/context.py)."""
    anchor: str = ""
    """The HTML id of this counterexample (``cx-1``, ``cx-2``, ... in result order)."""


def row_label(kernel: str, variant: str) -> str:
    return kernel if variant == "mainline" else f"{kernel}+{variant}"


def cell(verdict: str, trace_length: int, complete: bool) -> str:
    if verdict == "violated":
        return f"violated({trace_length})"
    if verdict == "holds" and not complete:
        return "holds*"
    return verdict


def family_tables(matrix) -> list[dict[str, Any]]:
    """Per family: the columns (catalogue numbers of the properties it checks) and the rows."""
    tables = []
    numbers = {n: i + 1 for i, n in enumerate(catalogue.NAMES)}
    for fam in matrix.families:
        jobs = [j for j in matrix.jobs if j.job.family == fam.name]
        if not jobs:
            continue
        cols = [p for p in matrix.properties
                if any(r.property == p and r.verdict != "n/a" for j in jobs for r in j.results)]
        rows = []
        anchors = cx_anchors(matrix)
        for j in jobs:
            by = {r.property: r for r in j.results}
            rows.append({"label": row_label(j.job.kernel, j.job.variant), "complete": j.complete,
                         "states": j.states, "depth": j.depth, "variant": j.job.variant,
                         "mainline": j.job.variant == "mainline",
                         "cells": [(by[p].verdict, cell(by[p].verdict, by[p].trace_length,
                                                        by[p].complete)) for p in cols],
                         "links": [anchors.get(_cx_key(by[p])) for p in cols],
                         "unreached": [k for k, v in j.sometimes.items() if not v]})
        tables.append({"family": fam.name, "description": fam.description,
                       "columns": [(numbers[p], catalogue.get(p).short, p) for p in cols],
                       "rows": rows,
                       "na": [p for p in matrix.properties if p not in cols]})
    return tables


def _cx_key(r) -> tuple:
    return (r.family, r.property, r.signature()) if r.verdict == "violated" else ()


def cx_anchors(matrix) -> dict[tuple, str]:
    """(family, property, trace signature) -> the HTML id of its counterexample."""
    out: dict[tuple, str] = {}
    for r in matrix.violations:
        out.setdefault(_cx_key(r), f"cx-{len(out) + 1}")
    return out


def counterexamples(matrix) -> list[Counterexample]:
    """One per (family, property, trace), listing every row that shares it, in result order."""
    groups: dict[tuple, Counterexample] = {}
    anchors = cx_anchors(matrix)
    for r in matrix.violations:
        key = _cx_key(r)
        label = row_label(r.kernel, r.variant)
        if key in groups:
            groups[key].rows.append(label)
        else:
            groups[key] = Counterexample(r.family, r.property, [label], r.trace, r.init_index,
                                         getattr(r, "context", None), anchors[key])
    return list(groups.values())


def _cap(items: list[str], limit: int = 4) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _by_property(results, variants: bool) -> list[str]:
    """One line per violated property (catalogue order): per family, the mainline kernels, or
    the variants with how many kernels each is violated on."""
    by: dict[str, dict[str, dict[str, list[str]]]] = {}
    for r in results:
        key = r.variant if variants else "mainline"
        by.setdefault(r.property, {}).setdefault(r.family, {}).setdefault(key, []).append(r.kernel)
    width = max((len(p) for p in by), default=0)
    lines = []
    for prop in sorted(by, key=catalogue.order):
        fams = []
        for fam, per in by[prop].items():
            if variants:
                fams.append(f"{fam}: " + _cap([f"{v} ({len(ks)})" for v, ks in per.items()], 3))
            else:
                fams.append(f"{fam} " + ", ".join(per["mainline"]))
        lines.append(f"  {prop:<{width}}  " + "; ".join(fams))
    return lines


def headline(matrix) -> list[str]:
    """What matters first: mainline violations by property and kernel, then the variants'
    (proposals and RFCs, not shipped kernels) by property and variant, then the counts (no n/a
    count: a family that does not check a property is not a result)."""
    main = [r for r in matrix.violations if r.variant == "mainline"]
    var = [r for r in matrix.violations if r.variant != "mainline"]
    has_variants = any(j.job.variant != "mainline" for j in matrix.jobs)
    lines = []
    if main:
        lines.append(f"mainline: {len(main)} violation(s) of "
                     f"{len({r.property for r in main})} properties")
        lines += _by_property(main, variants=False)
    else:
        lines.append("mainline: no violation")
    if has_variants:
        if var:
            lines.append(f"variants: {len(var)} violation(s) of {len({r.property for r in var})} "
                         f"properties in {len({r.variant for r in var})} variants "
                         "(variant (number of kernels))")
            lines += _by_property(var, variants=True)
        else:
            lines.append("variants: no violation")
    s = matrix.stats
    v = s["verdicts"]
    within = s.get("holds_within_bound", 0)
    lines.append(f"{s['jobs']} job(s), {s['states']:,} states, {s['transitions']:,} transitions; "
                 f"holds {v['holds']}" + (f" ({within} within bound)" if within else "")
                 + f", violated {v['violated']}, vacuous {v['vacuous']}")
    return lines


def legend(matrix) -> list[tuple[int, str, str, str]]:
    return [(i + 1, p.short, p.name, p.holds_when) for i, p in enumerate(catalogue.CATALOGUE)
            if p.name in matrix.properties]
