"""JSON renderings: deterministic (results in plan order: family, kernel era, variant,
catalogue order; no timings inside ``results``)."""

from __future__ import annotations

import json
from typing import Any


def check_doc(matrix, *, timings: bool = False) -> dict[str, Any]:
    """The check run as JSON.  Byte-identical for the same inputs: the wall-clock figures
    (``stats.timing`` of the run) are left out unless ``timings``, and then sit in a separate
    top-level ``timings`` section."""
    from memtypes.check import properties as catalogue
    stats = {k: v for k, v in matrix.stats.items() if k != "timing"}
    doc = {
        "results": [_result(r) for r in matrix.results],
        "properties": [catalogue.get(p).as_dict() for p in matrix.properties],
        "stats": stats,
    }
    if timings:
        doc["timings"] = matrix.stats.get("timing", {})
    return doc


def _result(r) -> dict[str, Any]:
    d = r.as_dict()
    ctx = getattr(r, "context", None)
    if ctx:
        d["context"] = dict(ctx)
    return d


def run_doc(rep) -> dict[str, Any]:
    s = rep.scenario
    return {
        "scenario": s.path, "family": rep.extra.get("family", s.family),
        "kernel": rep.extra.get("kernel", s.kernel),
        "variant": rep.extra.get("variant", s.variant or "mainline"),
        "init": s.init, "init_violated": rep.init_broken, "init_reached": rep.init_reached,
        "steps": [o.as_dict() for o in rep.steps],
        "violated": dict(rep.violated), "reached": dict(rep.reached),
        "unreached": list(rep.unreached), "final_state": rep.final_state,
        **({"variant_files": [dict(f) for f in s.variant_files]} if s.variant_files else {}),
    }


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
