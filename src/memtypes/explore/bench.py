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
   packed codes and the parent indices), and the traced peak of a run per stored state;
6. CPU seconds of the best run (``time.process_time``: on a machine whose cores others share,
   the wall-clock time says more about them than about the explorer) and states per CPU second.

The *large* sizes (:func:`large_models`, ``memtypes bench --size large``) are single runs to
completion of models of millions of states, each in a forked child (:func:`measure_run`) whose
peak resident memory is its own: states, transitions, wall and CPU seconds, states per CPU
second, peak bytes per stored state (the growth of the child's resident set, everything
included), and, over a series of sizes one page apart, the growth factor per added page of the
states, the CPU time and the peak memory (:func:`growth`).
"""

from __future__ import annotations

import gc
import os
import pickle
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
            c0 = time.process_time()
            r = explore(m, max_seconds=seconds / 2, _keep=keep)
            cpu = time.process_time() - c0
            runs += 1
            if best is None or r.states_per_sec > best.states_per_sec:
                best, best_keep, model, best_cpu = r, keep, m, cpu
            if not r.complete or time.perf_counter() >= t_end or runs >= 3:
                break
        vector = best.fingerprint == "packed"
        if vector:
            eng = best_keep["engine"]
            states = eng.decode_many(best_keep["fps"])
            mdl = eng.model_seconds
            vis = best_keep.get("stored_bytes") or (best_keep["visited"].nbytes + best_keep["fps"].nbytes
                                                     + best_keep["parents"].nbytes)
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
        "cpu_seconds": round(best_cpu, 4),
        "states_per_cpu_sec": round(best.states / best_cpu, 1) if best_cpu > 0 else 0.0,
        "raw_states_per_sec": round(raw, 1),
        "ratio": round(rate / raw, 4) if raw else None,
        "meets_target": bool(raw) and rate / raw >= 1 / 3,
        "model_seconds": round(mdl, 4),
        "engine_states_per_sec": round(best.states / engine_s, 1) if engine_s > 0 else 0.0,
        "engine_ratio": round(best.states / engine_s / raw, 4) if engine_s > 0 and raw else None,
        "transitions_per_state": round(best.transitions / max(best.states, 1), 2),
        "symmetry_factor": round(best.symmetry_factor, 3) if best.symmetry_factor else None,
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


# --------------------------------------------------------------------------------------------
# Large sizes: one run each, to completion, in a child process


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _run_in_child(build: Callable[[], Any], explorer: str) -> dict:
    """(In the child.)  Build the model, explore it to completion, and report the counts, the
    times and the growth of the resident set over the run (its peak reset first)."""
    model = build()
    try:                                   # the peak so far is the parent's: start afresh
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss0 = _status_kb("VmRSS")
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    r = explore(model, backend=explorer)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    hwm = _status_kb("VmHWM")
    peak = (hwm - rss0) * 1024 if hwm is not None and rss0 is not None else None
    return {"states": r.states, "transitions": r.transitions, "depth": r.depth,
            "complete": r.complete, "explorer": "vector" if r.fingerprint == "packed" else "serial",
            "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "states_per_cpu_sec": round(r.states / cpu, 1) if cpu > 0 else 0.0,
            "peak_bytes_per_state": round(peak / max(r.states, 1), 1) if peak is not None else None,
            "symmetry_factor": round(r.symmetry_factor, 3) if r.symmetry_factor else None,
            "violations": {k: len(v) for k, v in sorted(r.violations.items())},
            "reached": {k: len(v) for k, v in sorted(r.reached.items())}}


def measure_run(build: Callable[[], Any], explorer: str = "auto") -> dict:
    """One exploration of ``build()`` to completion in a forked child (so that its peak
    memory is its own and nothing of it stays here); in this process where there is no fork."""
    if not hasattr(os, "fork"):            # pragma: no cover - not on Linux
        return _run_in_child(build, explorer)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                           # the child: report through the pipe, never return
        code = 0
        try:
            os.close(rfd)
            try:
                out = pickle.dumps(("ok", _run_in_child(build, explorer)))
            except BaseException as e:     # noqa: BLE001 - reported to the parent
                out, code = pickle.dumps(("error", f"{type(e).__name__}: {e}")), 1
            with os.fdopen(wfd, "wb") as f:
                f.write(out)
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb") as f:
            data = f.read()
    finally:
        os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the benchmark run's process ended without a result")
    kind, val = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError(val)
    return val


def growth(rows: list[dict], key: str) -> float | None:
    """The growth factor per added page of ``key`` from the first row to the last (rows one
    page apart): ``(last / first) ** (1 / (pages - 1))``."""
    if len(rows) < 2 or not rows[0].get(key) or rows[-1].get(key) is None:
        return None
    return round((rows[-1][key] / rows[0][key]) ** (1 / (len(rows) - 1)), 2)


def large_models(family: str | None = None) -> list[tuple[str, str, Callable[[], Any]]]:
    """``(series, label, build)`` of the large sizes: dma-type1 6.9 vfio-flush-reviewed at 2, 3
    and 4 pages (the series whose growth per page is reported; 21,071,626 states at 4 pages,
    as SPIN stores on its Promela translation), dma-iommufd 6.9 at 4 pages, passthrough 7.1
    at 5 slots."""
    from memtypes.check.registry import families
    fams = {f.name: f for f in families()}
    out: list[tuple[str, str, Callable[[], Any]]] = []

    def add(series: str, fam: str, kernel: str, variant: str, params: dict) -> None:
        if fam not in fams or (family is not None and family.replace("_", "-") != fam):
            return
        f = fams[fam]
        p = dict(f.default_params)
        p.update(params)
        extra = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
        label = f"{fam} {kernel}" + (f" {variant}" if variant != "mainline" else "") + f" [{extra}]"
        out.append((series, label, lambda f=f, kernel=kernel, variant=variant, p=p: f.build(kernel, variant, p)))

    for pages in (2, 3, 4):
        add("dma-type1 pages", "dma-type1", "6.9", "vfio-flush-reviewed", {"pages": pages})
    add("", "dma-iommufd", "6.9", "mainline", {"pages": 4})
    add("", "passthrough", "7.1", "mainline", {"slots": 5})
    return out


def bench_large(models: list[tuple[str, str, Callable[[], Any]]],
                progress: Callable[[str], Any] | None = None) -> dict:
    """Measure each large size (:func:`measure_run`) and each series' growth per added page."""
    rows = []
    for series, label, build in models:
        if progress is not None:
            progress(label)
        row = {"model": label, "series": series,
               "load_average_before": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
        row.update(measure_run(build))
        rows.append(row)
    series: dict[str, dict] = {}
    for name in dict.fromkeys(r["series"] for r in rows if r["series"]):
        sub = [r for r in rows if r["series"] == name]
        series[name] = {"from": sub[0]["model"], "to": sub[-1]["model"],
                        "states_per_page": growth(sub, "states"),
                        "cpu_seconds_per_page": growth(sub, "cpu_seconds"),
                        "peak_bytes_per_page": growth([dict(r, peak=r["peak_bytes_per_state"] * r["states"])
                                                       if r["peak_bytes_per_state"] is not None else r
                                                       for r in sub], "peak")}
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]
            if hasattr(os, "getloadavg") else None, "results": rows, "growth": series}
