"""The multi-process explorer: the same breadth-first search, partitioned by fingerprint.

Each of ``W`` worker processes owns the states whose fingerprint ``fp % W`` is its id.  The
search is level-synchronous: for each BFS level the coordinator (the calling process) sends
each worker the candidate states it owns (with their fingerprints and parent fingerprints);
the worker drops those it has seen, stores the rest (fingerprint set plus parallel arrays of
fingerprint and parent fingerprint), checks the undecided properties on them, expands them
and returns their successors already split by owner.  The coordinator routes the batches in
worker order, so a run is deterministic for a given ``W``.

Fingerprints here are :func:`~memtypes.explore.search.stable_fingerprint` (blake2b, or the
model's ``encode``), never ``hash()``, so they do not depend on ``PYTHONHASHSEED`` and would
stay valid across hosts (Ray/Dask).  Traces are rebuilt in the coordinator: it asks the owners
for the parent chain of the violating state and replays it serially, as the serial mode does.

The distinct-state count and the length of each shortest trace equal the serial mode's (BFS
levels are the same); the states on a trace may differ among equal-length alternatives.  The
``max_states`` bound is applied per level (a truncated run may store up to one level more).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from array import array
from typing import Callable

from memtypes.explore.search import (ExploreResult, _rebuild, _split_props, next_states_fn,
                                     stable_fingerprint)


def worker_setup(parent: int | None = None) -> None:
    """Call first in every worker process memtypes starts: the worker ignores SIGINT (a Ctrl-C
    reaches the whole process group; the coordinator alone decides, and kills its workers) and,
    on Linux, is killed when its parent dies (``PR_SET_PDEATHSIG``), so that no worker outlives
    the process that started it, even one killed by SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (from stop_workers) unwinds the worker, so that its ``finally`` blocks run: a
    # vector search's spill folder is removed; SIGKILL follows if it does not go in time
    signal.signal(signal.SIGTERM, _exit_on_term)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if parent is not None and os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(143)


def stop_workers(procs, *, graceful: bool) -> None:
    """Stop worker processes: wait briefly for them to exit when ``graceful`` (they were told to
    stop); else SIGTERM them and give them half a second to clean up (temporary files); then
    kill whatever is left and reap everything (no zombie, no orphan)."""
    if graceful:
        deadline = time.monotonic() + 2.0
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    else:
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 0.5
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)


def stop_resource_tracker() -> None:
    """Stop (and reap) multiprocessing's resource tracker, which a spawned pool starts, once
    every worker is gone: it would otherwise outlive an interrupted run as an orphan until it
    noticed.  Uses a private method when it exists (Python 3.11.7+); a later pool starts a
    new tracker."""
    try:
        from multiprocessing import resource_tracker
        stop = getattr(resource_tracker._resource_tracker, "_stop", None)
        if stop is not None:
            stop()
    except Exception:  # pragma: no cover - best effort
        pass


def _worker(conn, model, wid: int, nw: int, parent: int | None = None) -> None:
    """One partition owner (see the module docstring for the protocol)."""
    worker_setup(parent)
    fpf = stable_fingerprint(model)
    nexts = next_states_fn(model)
    always, sometimes = _split_props(model)
    seen: set[int] = set()
    fps = array("q")
    pars = array("q")
    while True:
        msg = conn.recv()
        op = msg[0]
        if op == "level":
            _, states, sfps, spars, expand = msg
            new = []
            for s, f, p in zip(states, sfps, spars):
                if f in seen:
                    continue
                seen.add(f)
                fps.append(f)
                pars.append(p)
                new.append((s, f))
            found_v, found_r = {}, {}
            if new and (always or sometimes):
                keep = []
                for name, chk in always:
                    for s, f in new:
                        if not chk(s):
                            found_v[name] = f
                            break
                    else:
                        keep.append((name, chk))
                always = keep
                keep = []
                for name, chk in sometimes:
                    for s, f in new:
                        if chk(s):
                            found_r[name] = f
                            break
                    else:
                        keep.append((name, chk))
                sometimes = keep
            outs = [([], [], []) for _ in range(nw)]
            trans = 0
            for s, f in new:
                succ = nexts(s)
                if not expand:
                    # At the depth bound: only the fingerprints, for the owners' probe.
                    for n in succ:
                        g = fpf(n)
                        outs[g % nw][1].append(g)
                    continue
                trans += len(succ)
                for n in succ:
                    g = fpf(n)
                    o = outs[g % nw]
                    o[0].append(n)
                    o[1].append(g)
                    o[2].append(f)
            conn.send((len(new), trans, found_v, found_r, outs))
        elif op == "parents":
            out = {}
            for f in msg[1]:
                try:
                    out[f] = pars[fps.index(f)]
                except ValueError:
                    out[f] = None
            conn.send(out)
        elif op == "beyond":
            # Are any of these (successors at the depth bound) unseen?
            conn.send(any(f not in seen for f in msg[1]))
        else:
            conn.close()
            return


def explore_parallel(model, *, max_depth=None, max_states=None, workers=2,
                     progress: Callable | None = None, stop_on_violation=False,
                     max_seconds=None) -> ExploreResult:
    t0 = time.perf_counter()
    nw = int(workers)
    fpf = stable_fingerprint(model)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    conns, procs = [], []
    for w in range(nw):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(b, model, w, nw, os.getpid()), daemon=True)
        p.start()
        b.close()
        conns.append(a)
        procs.append(p)
    res = ExploreResult(workers=nw, fingerprint="blake2b" if not hasattr(model, "encode")
                        else "encode")
    try:
        batches = [([], [], []) for _ in range(nw)]
        for i, s in enumerate(model.init_states()):
            g = fpf(s)
            b = batches[g % nw]
            b[0].append(s)
            b[1].append(g)
            b[2].append(-1 - i)
        found_v: dict[str, tuple[int, int]] = {}  # name -> (fp, depth)
        found_r: dict[str, tuple[int, int]] = {}
        depth = -1
        last = time.monotonic()
        while any(b[0] for b in batches):
            level = depth + 1
            expand = max_depth is None or level < max_depth
            for c, b in zip(conns, batches):
                c.send(("level", b[0], b[1], b[2], expand))
            replies = [c.recv() for c in conns]
            nnew = sum(r[0] for r in replies)
            if nnew == 0:
                break
            depth = level
            res.states += nnew
            res.transitions += sum(r[1] for r in replies)
            for r in replies:  # worker order: deterministic
                for name, f in r[2].items():
                    found_v.setdefault(name, (f, level))
                for name, f in r[3].items():
                    found_r.setdefault(name, (f, level))
            batches = [([], [], []) for _ in range(nw)]
            for r in replies:
                for dst, o in zip(batches, r[4]):
                    dst[0].extend(o[0])
                    dst[1].extend(o[1])
                    dst[2].extend(o[2])
            if progress is not None and time.monotonic() - last >= 0.1:
                last = time.monotonic()
                progress(res.states, depth, sum(len(b[0]) for b in batches))
            if not expand:
                # Ask the owners whether any successor beyond the bound is unseen.
                for c, b in zip(conns, batches):
                    c.send(("beyond", b[1]))
                if any([c.recv() for c in conns]):
                    res.complete, res.truncated_by = False, "max_depth"
                break
            if stop_on_violation and found_v:
                res.complete, res.truncated_by = False, "violation"
                break
            if max_states is not None and res.states >= max_states and any(b[0] for b in batches):
                res.complete, res.truncated_by = False, "max_states"
                break
            if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                res.complete, res.truncated_by = False, "max_seconds"
                break
        res.depth = max(depth, 0)
        if progress is not None:
            progress(res.states, res.depth, 0)

        def chain_of(f: int) -> tuple[int, list[int]]:
            out = []
            while True:
                p = _ask_parent(conns, nw, f)
                if p < 0:
                    out.reverse()
                    return -1 - p, out
                out.append(f)
                f = p

        for name, (f, _) in sorted(found_v.items()):
            ii, ch = chain_of(f)
            res.violations[name] = _rebuild(model, fpf, ii, ch)
        for name, (f, _) in sorted(found_r.items()):
            ii, ch = chain_of(f)
            res.reached[name] = _rebuild(model, fpf, ii, ch)
        ok = True
    except BaseException:  # an interrupt (KeyboardInterrupt, SIGTERM) or an error: kill now
        ok = False
        raise
    finally:
        if ok:
            for c in conns:
                try:
                    c.send(("stop",))
                except (OSError, EOFError):  # pragma: no cover
                    pass
        stop_workers(procs, graceful=ok)
        for c in conns:
            c.close()
    res.seconds = time.perf_counter() - t0
    return res


def _ask_parent(conns, nw: int, f: int) -> int:
    c = conns[f % nw]
    c.send(("parents", [f]))
    p = c.recv()[f]
    if p is None:  # pragma: no cover
        raise RuntimeError("parallel explorer: lost a parent link")
    return p
