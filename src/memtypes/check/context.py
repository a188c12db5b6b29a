"""Counterexamples that explain themselves: what the initial state is (the host and its
features), which kernel era and variant (and, for a user variant, its file), and the family's
notation legend.  Attached to each violated result as ``result.context`` (a dict), which the
text, JSON and HTML renderings print beside the trace."""

from __future__ import annotations

from typing import Any

from memtypes.linux.kvm import variants as kvm_variants


def init_text(fam, kernel: str, variant: str, params: dict, index: int) -> str:
    if fam.init_text is not None:
        try:
            return fam.init_text(params, index)
        except (IndexError, KeyError, ValueError):
            pass
    model = fam.build(kernel, variant, dict(params))
    inits = list(model.init_states())
    fmt = getattr(model, "format_state", None)
    if index < len(inits) and fmt is not None:
        return str(fmt(inits[index]))
    return f"initial state #{index}"


def context(fam, r, params: dict) -> dict[str, Any]:
    src = kvm_variants.source_of(r.variant) if r.variant != "mainline" else None
    kernel = r.kernel + ("" if r.variant == "mainline" else f" + variant {r.variant}")
    return {"init": init_text(fam, r.kernel, r.variant, params, r.init_index),
            "kernel": f"era {r.kernel}" + ("" if r.variant == "mainline" else f", variant {r.variant}"),
            "kernel_label": kernel,
            "variant_source": src,
            "legend": fam.legend or None}


def annotate(matrix) -> None:
    """Set ``context`` on every violated result of ``matrix`` (one model build per job at most,
    only for families without ``init_text``)."""
    cache: dict[tuple, dict] = {}
    for r in matrix.violations:
        fam = matrix.family(r.family)
        job = matrix.job(r.family, r.kernel, r.variant)
        key = (r.family, r.kernel, r.variant, r.init_index)
        if key not in cache:
            cache[key] = context(fam, r, job.params)
        r.context = cache[key]
