"""The explorer benchmark behind ``memtypes bench`` (generic: it takes models).

For each model:

1. ``explore(model)`` (the back-end ``explore`` chooses: the vectorised explorer for a
   table-driven model when numpy is installed, else the serial one; best of up to three runs
   within the time budget, each from a fresh model so that no transition is memoised in advance)
   gives the explorer's distinct states per second;
2. the same process times the *raw* rate on the same states, as the model represents them:
   ``for s in states: seen.add(hash(s))`` (GC off, best of three) -- the ceiling for any
   pure-Python explorer with a fingerprint set (DESIGN.md "Performance");
3. ``ratio = explorer / raw`` (the target is >= 1/3).  Every transition, not only every
   distinct state, must be generated and looked up, so a per-state explorer with ``t``
   transitions per state is bound by about ``1/t`` even for a free model; the vectorised one is
   not (it handles whole BFS levels in numpy);
4. the model's own share (``model_seconds``): for the serial explorer, ``next_states`` over the
   reachable states; for the vectorised one, the time it spent calling the model (filling its
   transition tables and inferring the domains);
5. memory: the visited structure in bytes per stored state (serial: the fingerprint set and
   parent arrays, measured with tracemalloc on a run bounded to ``mem_states`` states -- below
   ~50,000 states CPython's set growth inflates it; vectorised: the bitmap or hash table, the
   packed codes and the parent indices), and the traced peak of a run per stored state.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections import deque
from typing import Any, Callable

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


def _serial_memory(model: Any, states: int, mem_states: int, seconds: float) -> tuple[float, float]:
    """(visited bytes per state, traced peak bytes per state) of a bounded serial run."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keep: dict = {}
    rm = explore(model, max_states=min(mem_states, states), _keep=keep, backend="serial",
                 max_seconds=max(seconds / 4, 0.2))
    n_mem = rm.states or 1
    peak = tracemalloc.get_traced_memory()[1] - base
    del rm
    gc.collect()  # the run's cyclic garbage (GC is paused during a search) is not visited
    visited_now = tracemalloc.get_traced_memory()[0]
    keep.clear()  # the set and arrays are freed by reference counting
    freed = visited_now - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return freed / n_mem, peak / n_mem


def _vector_peak(fresh: Callable[[], Any], seconds: float, states: int | None = None) -> float:
    """Traced peak bytes per stored state of one more vectorised run of at most ``seconds`` and
    ``states`` (numpy's buffers are traced too): the visited set, the tables, the frontier and
    a chunk's successors."""
    model = fresh()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    r = explore(model, max_seconds=seconds, max_states=states)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / max(r.states, 1)


def bench_model(model: Any, *, seconds: float = 10.0, mem_states: int = 200_000,
                label: str | None = None, rebuild: Callable[[], Any] | None = None) -> dict:
    """Benchmark one model; returns a JSON-able dict (see the module docstring).  ``rebuild``
    makes a fresh copy of the model for each timed run (default: ``model`` itself)."""
    fresh = rebuild or (lambda: model)
    from memtypes.explore import vector as _vector  # noqa: F401  (import time is not search time)
    was = gc.isenabled()
    gc.disable()
    try:
        best, best_keep = None, None
        t_end = time.perf_counter() + seconds * 3 / 4      # room for three runs of seconds / 4
        runs = 0
        while True:
            keep: dict = {}
            m = fresh()
            r = explore(m, max_seconds=seconds / 2, _keep=keep)
            runs += 1
            if best is None or r.states_per_sec > best.states_per_sec:
                best, best_keep, model = r, keep, m
            if not r.complete or time.perf_counter() >= t_end or runs >= 3:
                break
        vector = best.fingerprint == "packed"
        if vector:
            eng = best_keep["engine"]
            states = eng.decode_many(best_keep["fps"])
            mdl = eng.model_seconds
            vis = best_keep["visited"].nbytes + best_keep["fps"].nbytes + best_keep["parents"].nbytes
            visited_bps = vis / max(best.states, 1)
            best_keep = None
            # (as many states as the timed run: tracing slows the search, and a run cut
            # sooner would spread the fixed costs over fewer states)
            peak_bps = _vector_peak(fresh, max(seconds, 10 * best.seconds), best.states)
        else:
            states = reachable_states(model, limit=best.states)
            mdl = _model_seconds(model, states) * (best.states / max(len(states), 1))
            visited_bps, peak_bps = _serial_memory(model, best.states, mem_states, seconds)
        raw = _raw_rate(states)
        del states
    finally:
        if was:
            gc.enable()
    rate = best.states_per_sec
    engine_s = best.seconds - mdl
    return {
        "model": label or getattr(model, "name", type(model).__name__),
        "explorer": "vector" if vector else "serial",
        "states": best.states, "transitions": best.transitions, "depth": best.depth,
        "complete": best.complete, "seconds": round(best.seconds, 4),
        "explorer_states_per_sec": round(rate, 1),
        "raw_states_per_sec": round(raw, 1),
        "ratio": round(rate / raw, 4) if raw else None,
        "meets_target": bool(raw) and rate / raw >= 1 / 3,
        "model_seconds": round(mdl, 4),
        "engine_states_per_sec": round(best.states / engine_s, 1) if engine_s > 0 else 0.0,
        "engine_ratio": round(best.states / engine_s / raw, 4) if engine_s > 0 and raw else None,
        "transitions_per_state": round(best.transitions / max(best.states, 1), 2),
        "visited_bytes_per_state": round(visited_bps, 1),
        "peak_bytes_per_state": round(peak_bps, 1),
        "collision_probability": best.collision_probability,
        "python": sys.version.split()[0],
    }


def bench_models(models: list[tuple[str, Callable[[], Any]]], *, seconds: float = 10.0,
                 progress: Callable[[str], Any] | None = None) -> dict:
    """Benchmark several ``(label, build)`` pairs (``build()`` makes a fresh model);
    ``seconds`` is the budget per model."""
    rows = []
    for label, build in models:
        if progress is not None:
            progress(label)
        rows.append(bench_model(build(), seconds=seconds, label=label, rebuild=build))
    return {"target_ratio": round(1 / 3, 4), "target_bytes_per_state": 100, "results": rows}


def default_models(family: str | None = None) -> list[tuple[str, Callable[[], Any]]]:
    """``(label, build)`` for each family's benchmark model (newest kernel, mainline, the
    family's ``bench_params``: its defaults scaled up so that a search runs long enough to be
    measured), and the synthetic counters model; ``family`` selects one by name."""
    out: list[tuple[str, Callable[[], Any]]] = []
    try:
        from memtypes.check.registry import families
        fams = families()
    except ImportError:
        fams = []
    for fam in fams:
        if family is not None and fam.name.replace("_", "-") != family.replace("_", "-"):
            continue
        kernel = fam.kernels[-1]
        params = dict(fam.default_params)
        params.update(fam.bench_params)
        extra = ",".join(f"{k}={v}" if not isinstance(v, (list, tuple)) else f"{len(v)} {k}"
                         for k, v in sorted(fam.bench_params.items()))
        out.append((f"{fam.name} {kernel}" + (f" [{extra}]" if extra else ""),
                    lambda fam=fam, kernel=kernel, params=params: fam.build(kernel, "mainline", params)))
    if family is None or family in ("toy", "counters"):
        from memtypes.explore import vector
        from memtypes.explore.toy import TableCounters
        n = 10 if vector.available() else 8
        out.append((f"counters-{n}x3 (synthetic)", lambda: TableCounters(n, 3)))
    return out
