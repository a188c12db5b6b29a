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
        for j in jobs:
            by = {r.property: r for r in j.results}
            rows.append({"label": row_label(j.job.kernel, j.job.variant), "complete": j.complete,
                         "states": j.states, "depth": j.depth,
                         "cells": [(by[p].verdict, cell(by[p].verdict, by[p].trace_length,
                                                        by[p].complete)) for p in cols],
                         "unreached": [k for k, v in j.sometimes.items() if not v]})
        tables.append({"family": fam.name, "description": fam.description,
                       "columns": [(numbers[p], catalogue.get(p).short, p) for p in cols],
                       "rows": rows,
                       "na": [p for p in matrix.properties if p not in cols]})
    return tables


def counterexamples(matrix) -> list[Counterexample]:
    """One per (family, property, trace), listing every row that shares it, in result order."""
    groups: dict[tuple, Counterexample] = {}
    for r in matrix.violations:
        key = (r.family, r.property, r.signature())
        label = row_label(r.kernel, r.variant)
        if key in groups:
            groups[key].rows.append(label)
        else:
            groups[key] = Counterexample(r.family, r.property, [label], r.trace, r.init_index,
                                         getattr(r, "context", None))
    return list(groups.values())


def legend(matrix) -> list[tuple[int, str, str, str]]:
    return [(i + 1, p.short, p.name, p.holds_when) for i, p in enumerate(catalogue.CATALOGUE)
            if p.name in matrix.properties]
