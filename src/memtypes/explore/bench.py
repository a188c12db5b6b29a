"""The explorer benchmark behind ``memtypes bench`` (generic: it takes models).

For each model:

1. ``explore(model)`` (bounded by a time budget) gives the explorer's distinct states per second;
2. the model's reachable states are collected once (a plain BFS keeping the states), and the
   same process times the *raw* rate: ``for s in states: seen.add(hash(s))`` (GC off, best of
   three) -- the ceiling for any pure-Python explorer with a fingerprint set (DESIGN.md);
3. ``ratio = explorer / raw`` (the target is >= 1/3).  Every transition, not only every
   distinct state, must be fingerprinted and looked up, so with ``t`` transitions per state
   the ratio is at most about ``1/t`` even for a free model; ``engine_transition_ratio``
   (engine transitions per second, model time removed, over the raw rate) is the per-item
   comparison;
4. the model's own share: the time of ``next_states`` over the reachable states, so the report
   can say how much of the gap is the model and how much the engine (``engine_ratio``);
5. memory: the explorer's visited structure (fingerprint set + parent arrays) in bytes per
   stored state, measured with tracemalloc on a run bounded to ``mem_states`` states (and a
   quarter of the time budget), and the peak traced memory of that run per state (which
   includes the frontier's states).  Below ~50,000 states the figure is inflated by CPython's
   set growth policy (x4 below 50,000 entries, x2 above); large runs store ~80 B/state.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections import deque
from typing import Any

from memtypes.explore.search import explore, next_states_fn


def reachable_states(model: Any, limit: int | None = None) -> list:
    """The reachable states in BFS order (at most ``limit``)."""
    nexts = next_states_fn(model)
    seen: set = set()
    order: list = []
    q: deque = deque()
    for s in model.init_states():
        if s not in seen:
            seen.add(s)
            order.append(s)
            q.append(s)
    while q:
        s = q.popleft()
        for n in nexts(s):
            if n not in seen:
                if limit is not None and len(order) >= limit:
                    return order
                seen.add(n)
                order.append(n)
                q.append(n)
    return order


def _raw_rate(states: list) -> float:
    best = float("inf")
    for _ in range(3):
        seen: set = set()
        add = seen.add
        t = time.perf_counter()
        for s in states:
            add(hash(s))
        best = min(best, time.perf_counter() - t)
        del seen
    return len(states) / best if best > 0 else 0.0


def _model_seconds(model: Any, states: list) -> float:
    nexts = next_states_fn(model)
    t = time.perf_counter()
    for _ in map(nexts, states):
        pass
    return time.perf_counter() - t


def bench_model(model: Any, *, seconds: float = 10.0, mem_states: int = 200_000,
                label: str | None = None) -> dict:
    """Benchmark one model; returns a JSON-able dict (see the module docstring)."""
    was = gc.isenabled()
    gc.disable()
    try:
        best = None
        t_end = time.perf_counter() + seconds / 2
        runs = 0
        while True:
            r = explore(model, max_seconds=seconds / 2)
            runs += 1
            if best is None or r.states_per_sec > best.states_per_sec:
                best = r
            if not r.complete or time.perf_counter() >= t_end or runs >= 3:
                break
        states = reachable_states(model, limit=best.states)
        raw = _raw_rate(states)
        mdl = _model_seconds(model, states)
        # Memory: the visited structure and the peak of a bounded run.
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        keep: dict = {}
        rm = explore(model, max_states=min(mem_states, best.states), _keep=keep,
                     max_seconds=max(seconds / 4, 0.2))
        n_mem = rm.states or 1
        after = tracemalloc.get_traced_memory()
        peak = after[1] - base
        del rm
        gc.collect()  # the run's cyclic garbage (GC is paused during a search) is not visited
        visited_now = tracemalloc.get_traced_memory()[0]
        keep.clear()  # the set and arrays are freed by reference counting
        freed = visited_now - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    finally:
        if was:
            gc.enable()
    rate = best.states_per_sec
    engine_s = best.seconds - mdl * (best.states / max(len(states), 1))
    engine_rate = best.states / engine_s if engine_s > 0 else 0.0
    return {
        "model": label or getattr(model, "name", type(model).__name__),
        "states": best.states, "transitions": best.transitions, "depth": best.depth,
        "complete": best.complete, "seconds": round(best.seconds, 4),
        "explorer_states_per_sec": round(rate, 1),
        "raw_states_per_sec": round(raw, 1),
        "ratio": round(rate / raw, 4) if raw else None,
        "model_seconds": round(mdl, 4),
        "engine_states_per_sec": round(engine_rate, 1),
        "engine_ratio": round(engine_rate / raw, 4) if raw else None,
        "transitions_per_state": round(best.transitions / max(best.states, 1), 2),
        "engine_transitions_per_sec": round(best.transitions / engine_s, 1) if engine_s > 0
        else 0.0,
        "engine_transition_ratio": round(best.transitions / engine_s / raw, 4)
        if engine_s > 0 and raw else None,
        "visited_bytes_per_state": round(freed / n_mem, 1),
        "peak_bytes_per_state": round(peak / n_mem, 1),
        "collision_probability": best.collision_probability,
        "python": sys.version.split()[0],
    }


def bench_models(models: list[tuple[str, Any]], *, seconds: float = 10.0) -> dict:
    """Benchmark several ``(label, model)`` pairs; ``seconds`` is the budget per model."""
    rows = [bench_model(m, seconds=seconds, label=label) for label, m in models]
    return {"target_ratio": round(1 / 3, 4), "target_bytes_per_state": 100, "results": rows}


def default_models(family: str | None = None) -> list[tuple[str, Any]]:
    """The families' models (newest era, mainline, default parameters), or the synthetic
    counters model when no family is available.  ``family`` selects one by name."""
    out: list[tuple[str, Any]] = []
    try:
        from memtypes.check.registry import families
        fams = families()
    except ImportError:
        fams = []
    for fam in fams:
        if family is not None and fam.name.replace("_", "-") != family.replace("_", "-"):
            continue
        kernel = fam.kernels[-1]
        out.append((f"{fam.name} {kernel} mainline",
                    fam.build(kernel, "mainline", fam.default_params)))
    if family in (None, "toy", "counters") and (not out or family is not None):
        from memtypes.explore.toy import Counters
        out.append(("counters-8x3 (synthetic)", Counters(8, 3)))
    return out
