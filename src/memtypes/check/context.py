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


def _cls(label: str) -> str:
    if label.startswith("Device"):
        return "device"
    if "NC" in label:
        return "nc"
    return "cacheable" if label.startswith("Normal") or label.startswith("Tagged") else label


def _match(model, state, step: dict, **override):
    want = dict(step["args"], **override)
    for a in model.actions(state):
        if a.actor == step["actor"] and a.name == step["action"] and \
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in a.args} == want:
            return a
    return None


def exhibit_s1(fam, r, params: dict) -> bool:
    """When the violating step is a guest access, show the stage-1 choice that exhibits the
    violation: one whose effective type is of another kind than the guest asked for (the
    guest asks Normal-WB and gets Device; asks Device and gets Normal-WB), rather than the
    first choice the search tried.  The step is replaced only if the property is still violated
    with that choice.  Returns whether it changed the trace."""
    if not r.trace or "s1" not in r.trace[-1].get("args", {}):
        return False
    from memtypes.arch import USUAL_S1
    model = fam.build(r.kernel, r.variant, dict(params))
    if not hasattr(model, "actions") or not hasattr(model, "describe"):
        return False
    state = list(model.init_states())[r.init_index]
    for step in r.trace[:-1]:
        a = _match(model, state, step)
        if a is None:
            return False
        state = model.next_state(state, a) or state
    last = r.trace[-1]
    prop = next((p for p in model.properties() if p.name == r.property), None)
    if prop is None:
        return False

    def exhibits(s1: str):
        a = _match(model, state, last, s1=s1)
        if a is None:
            return None
        nxt = model.next_state(state, a) or state
        if prop.check(nxt):
            return None
        text = str(model.describe(state, a, nxt) or "")
        first = text.splitlines()[0] if text else ""
        got = first.rpartition(f"guest {s1} -> ")[2].split(";")[0].strip()
        if not got or _cls(got) == _cls(s1) or got == "UNPREDICTABLE":
            return None
        far = {_cls(got), _cls(s1)} == {"device", "cacheable"}      # the starkest change
        return (2 if far else 1), a, text

    cur = last["args"]["s1"]
    mine = exhibits(cur)
    best = None
    for s1 in USUAL_S1:
        if s1 == "Tagged" and cur != "Tagged":
            continue
        hit = exhibits(s1)
        if hit is not None and (best is None or hit[0] > best[0]):
            best = hit
    if best is None or (mine is not None and mine[0] >= best[0]):
        return False
    _rank, a, text = best
    d = a.as_dict()
    r.trace[-1] = {"actor": d["actor"], "action": d["action"], "detail": d["detail"],
                   "args": d["args"], **({"describe": text} if text else {})}
    return True


def annotate(matrix) -> None:
    """Set ``context`` on every violated result of ``matrix`` (one model build per job at most,
    only for families without ``init_text``), and let a violating guest access show the
    stage-1 choice that exhibits the violation (:func:`exhibit_s1`)."""
    cache: dict[tuple, dict] = {}
    for r in matrix.violations:
        fam = matrix.family(r.family)
        job = matrix.job(r.family, r.kernel, r.variant)
        key = (r.family, r.kernel, r.variant, r.init_index)
        if key not in cache:
            cache[key] = context(fam, r, job.params)
        r.context = dict(cache[key])
        if exhibit_s1(fam, r, job.params):
            r.context["stage1"] = ("the violating access shows a guest stage-1 choice whose "
                                   "effective type differs in kind from the one asked for")
