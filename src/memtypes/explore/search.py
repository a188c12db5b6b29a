"""Breadth-first explicit-state search over any :class:`~memtypes.explore.model.Model`.

Design (after stateright's BFS checker and TLC):

* **Visited structure.**  A ``set`` of 64-bit fingerprints, plus two parallel arrays indexed by
  discovery order: ``fps`` (``array('q')``, the fingerprint of the i-th state) and ``parents``
  (``array('i')``, the index of its parent, or ``-1 - init_index`` for an initial state).  BFS
  pops states in discovery order, so the index of the state being expanded is known without a
  lookup; nothing per state but the set's int is allocated.  About 80 bytes per state.
* **No action stored.**  Like stateright's ``Path::from_fingerprints``, a trace is rebuilt by
  replaying from the initial state: at each step the explorer enumerates the successors of the
  current state in the model's deterministic order and takes the first whose fingerprint is the
  next one on the parent chain.  This keeps the hot loop free of action bookkeeping (the model
  may even offer a ``next_states(state) -> list`` fast path without actions), and the action
  found is the same one the model would give on replay.
* **Fingerprints.**  Serial mode: ``hash(state)`` (64-bit; for tuples of ints it does not depend
  on ``PYTHONHASHSEED``; for strings it does, which is harmless inside one process).  Parallel
  mode (and anything crossing processes): :func:`stable_fingerprint`, seed independent:
  ``model.encode(state)`` when the model defines it (an int in ``[0, 2**63)`` is used as is,
  bytes are hashed with blake2b), else blake2b-64 of ``repr(state)``.
* **Hot loop.**  States are expanded in chunks: successor lists, fingerprints and the "already
  seen?" test run as C-level ``map``/``compress`` pipelines; only candidate new states go through
  Python bytecode.  Properties are checked in batches per chunk and dropped once decided.
"""

from __future__ import annotations

import gc
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import accumulate, chain, compress
from operator import not_
from typing import Any, Callable, Sequence

from memtypes.explore.model import Action, Model, State, successors as _successors

__all__ = ["explore", "ExploreResult", "Trace", "replay", "stable_fingerprint", "next_states_fn"]

_CHUNK = 512
_MASK63 = (1 << 63) - 1


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Trace:
    """A path from an initial state: ``states[0]`` is ``model.init_states()[init_index]``, and
    ``states[i+1]`` is ``states[i]`` after ``actions[i]``.  ``len(trace)`` is the number of
    actions."""

    init_index: int
    actions: list[Action]
    states: list[State]

    def __len__(self) -> int:
        return len(self.actions)

    def steps(self) -> list[dict]:
        """One ``{"actor", "action", "detail"}`` per action (``Action.as_dict`` minus ``args``)."""
        out = []
        for a in self.actions:
            d = a.as_dict()
            d.pop("args", None)
            out.append(d)
        return out


@dataclass
class ExploreResult:
    states: int = 0
    transitions: int = 0
    depth: int = 0
    complete: bool = True
    seconds: float = 0.0
    violations: dict[str, Trace] = field(default_factory=dict)
    reached: dict[str, Trace] = field(default_factory=dict)
    workers: int = 1
    truncated_by: str | None = None
    """Why the run is incomplete: "max_depth", "max_states", "max_seconds" or "violation"."""
    orbits: int | None = None
    """With interchangeable columns (vector explorer): the states the stored representatives
    stand for (the unreduced search's count on a model symmetric as declared)."""
    spilled: bool = False
    """Whether the vector explorer moved its stored states to disk (the memory bound)."""
    fingerprint: str = "hash"
    """``hash`` (serial), ``blake2b``/``encode`` (parallel) or ``packed`` (vector: exact codes)."""

    @property
    def states_per_sec(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0

    @property
    def symmetry_factor(self) -> float | None:
        """The symmetry reduction: states represented per state stored (``None``: unknown)."""
        return self.orbits / self.states if self.orbits and self.states else None

    @property
    def collision_probability(self) -> float:
        """TLC's optimistic estimate for 64-bit fingerprints: n**2 / 2**65 (0 for the vector
        explorer's packed codes, which are exact)."""
        if self.fingerprint == "packed":
            return 0.0
        return float(self.states) ** 2 / 2.0 ** 65

    def stats(self) -> dict:
        return {"states": self.states, "transitions": self.transitions, "depth": self.depth,
                "seconds": round(self.seconds, 6), "complete": self.complete,
                "states_per_sec": round(self.states_per_sec, 1),
                "collision_probability": self.collision_probability,
                "workers": self.workers, "fingerprint": self.fingerprint}


# --------------------------------------------------------------------------------------------
# Helpers


def stable_fingerprint(model: Model) -> Callable[[State], int]:
    """A seed-independent 63-bit fingerprint function for ``model``'s states (see module doc)."""
    enc = getattr(model, "encode", None)
    if enc is not None:
        def fp(s: State) -> int:
            v = enc(s)
            if isinstance(v, int) and 0 <= v <= _MASK63:
                return v
            if isinstance(v, int):
                v = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            return int.from_bytes(blake2b(v, digest_size=8).digest(), "little") & _MASK63
        return fp

    def fp_repr(s: State) -> int:
        return int.from_bytes(blake2b(repr(s).encode(), digest_size=8).digest(),
                              "little") & _MASK63
    return fp_repr


def next_states_fn(model: Model) -> Callable[[State], list]:
    """``state -> list of next states`` in the model's deterministic order (no-change skipped)."""
    fast = getattr(model, "next_states", None)
    if fast is not None:
        return fast
    succ = getattr(model, "successors", None)
    if succ is not None:
        return lambda s: [n for _, n in succ(s)]
    actions, nxt = model.actions, model.next_state

    def ns(s: State) -> list:
        out = []
        for a in actions(s):
            n = nxt(s, a)
            if n is not None:
                out.append(n)
        return out
    return ns


def replay(model: Model, init_index: int, actions: Sequence[Action]) -> list[State]:
    """The states visited by ``actions`` from ``model.init_states()[init_index]``.  Raises
    ``ValueError`` if an action is not enabled or changes nothing."""
    inits = list(model.init_states())
    if not 0 <= init_index < len(inits):
        raise ValueError(f"no initial state {init_index} (model has {len(inits)})")
    s = inits[init_index]
    out = [s]
    for i, a in enumerate(actions):
        for b, n in _successors(model, s):
            if b == a:
                s = n
                break
        else:
            raise ValueError(f"step {i + 1}: action {a} is not enabled (or changes nothing)")
        out.append(s)
    return out


def _rebuild(model: Model, fp: Callable, init_index: int, chain_fps: list[int]) -> Trace:
    """Replay from the initial state along a chain of fingerprints (excluding the initial
    state's own), taking at each step the first successor with the next fingerprint."""
    s = list(model.init_states())[init_index]
    states, acts = [s], []
    for i, target in enumerate(chain_fps):
        for a, n in _successors(model, s):
            if fp(n) == target:
                s = n
                break
        else:  # pragma: no cover - a model that is not deterministic
            raise RuntimeError(f"trace rebuild failed at step {i + 1}: the model's successors "
                               "are not deterministic")
        states.append(s)
        acts.append(a)
    return Trace(init_index, acts, states)


def _split_props(model: Model):
    always, sometimes = [], []
    for p in model.properties():
        (always if p.kind == "always" else sometimes).append((p.name, p.check))
    return always, sometimes


# --------------------------------------------------------------------------------------------
# The explorer


def explore(model: Model, *, max_depth: int | None = None, max_states: int | None = None,
            workers: int = 1, progress: Callable[[int, int, int], Any] | None = None,
            stop_on_violation: bool = False, max_seconds: float | None = None,
            backend: str = "auto", max_memory: int | None = None,
            _keep: dict | None = None) -> ExploreResult:
    """Breadth-first search of ``model``'s reachable states.

    ``max_depth``: states at most this many actions from an initial state are stored and checked
    (the run is ``complete`` only if none of those at the bound has an unseen successor).
    ``max_states``: stop after storing this many distinct states.  ``max_seconds``: stop after
    about this long.  ``stop_on_violation``: stop once an always-property is violated.
    ``workers > 1``: the level-synchronous multi-process search (same state count and trace
    lengths; see :mod:`memtypes.explore.parallel`).  ``progress(states, depth, frontier)`` is
    called at most ~10 times a second.  ``backend``: ``"serial"`` (this module), ``"vector"``
    (:mod:`memtypes.explore.vector`: table-driven models, needs numpy) or ``"auto"`` (vector
    when the model is table-driven, numpy is installed and the model is not so small that the
    serial explorer finishes first: see :func:`memtypes.explore.vector.small`); both give the
    same states, order, verdicts and traces.  Inside ``memtypes.explore.cluster.connect(...)``
    (``memtypes check --cluster``) a table-driven model is explored on the cluster instead
    (:func:`memtypes.explore.cluster.explore_cluster`, the same results).

    ``max_memory``: the memory bound in bytes (default :func:`memtypes.explore.memory.max_memory`:
    ``$MEMTYPES_MAX_MEMORY`` or three quarters of the machine's memory): the vector explorer
    spills its stored states to disk past it, the serial one raises
    :class:`~memtypes.explore.memory.MemoryBound`.

    Every always-property violated gets its shortest counterexample in ``violations``; every
    sometimes-target reached gets its shortest witness in ``reached``; both are rebuilt by replay.
    """
    if backend not in ("auto", "serial", "vector"):
        raise ValueError(f"unknown explorer backend '{backend}' (auto, serial, vector)")
    if workers and workers > 1:
        if backend == "vector":
            raise ValueError("the vector explorer runs in one process (workers=1)")
        from memtypes.explore.parallel import explore_parallel
        return explore_parallel(model, max_depth=max_depth, max_states=max_states,
                                workers=workers, progress=progress,
                                stop_on_violation=stop_on_violation, max_seconds=max_seconds)
    if backend != "serial":
        from memtypes.explore import cluster, vector
        client = cluster.active()     # (memtypes check --cluster: table-driven jobs run there)
        if client is not None and vector.supports(model) is None:
            return cluster.explore_cluster(model, client, max_depth=max_depth, max_states=max_states,
                                           progress=progress, stop_on_violation=stop_on_violation,
                                           max_seconds=max_seconds)
        if backend == "auto" and vector.small(model):
            backend = "serial"
    if backend != "serial":
        try:
            return vector.explore_vector(model, max_depth=max_depth, max_states=max_states,
                                         progress=progress, stop_on_violation=stop_on_violation,
                                         max_seconds=max_seconds, max_memory=max_memory, _keep=_keep)
        except vector.Unsupported:
            if backend == "vector":
                raise
    # States are acyclic immutable values: the cyclic GC only slows the search (its full
    # collections walk every live state), so it is paused for the run and restored after.
    was_gc = gc.isenabled()
    gc.disable()
    try:
        return _explore_serial(model, max_depth, max_states, progress, stop_on_violation,
                               max_seconds, _keep, max_memory)
    finally:
        if was_gc:
            gc.enable()


def _explore_serial(model, max_depth, max_states, progress, stop_on_violation, max_seconds,
                    _keep, max_memory=None) -> ExploreResult:
    from memtypes.explore import memory
    t0 = time.perf_counter()
    bound = memory.max_memory(max_memory)
    rss = memory.rss_bytes if bound else (lambda: None)
    res = ExploreResult(workers=1, fingerprint="hash")
    fpf = hash
    nexts = next_states_fn(model)
    always, sometimes = _split_props(model)
    found_v: dict[str, int] = {}   # property -> state index
    found_r: dict[str, int] = {}
    seen: set[int] = set()
    fps = array("q")
    parents = array("i")
    seen_add, seen_has = seen.add, seen.__contains__
    fps_append, par_append = fps.append, parents.append
    limit = max_states if max_states is not None else -1
    deadline = t0 + max_seconds if max_seconds is not None else None

    # Initial states (depth 0).
    frontier: list = []
    for i, s in enumerate(model.init_states()):
        f = fpf(s)
        if f in seen:
            continue
        if len(fps) == limit:
            res.complete, res.truncated_by = False, "max_states"
            break
        seen_add(f)
        fps_append(f)
        par_append(-1 - i)
        frontier.append(s)

    def check(batch: list, first: int) -> None:
        """Check the undecided properties on ``batch`` (states with indices first, first+1...)."""
        nonlocal always, sometimes
        if always:
            keep = []
            for name, chk in always:
                res_ = list(map(chk, batch))
                if all(res_):
                    keep.append((name, chk))
                else:
                    found_v[name] = first + next(j for j, ok in enumerate(res_) if not ok)
            always = keep
        if sometimes:
            keep = []
            for name, chk in sometimes:
                res_ = list(map(chk, batch))
                if any(res_):
                    found_r[name] = first + next(j for j, ok in enumerate(res_) if ok)
                else:
                    keep.append((name, chk))
            sometimes = keep

    check(frontier, 0)
    depth = 0
    base = 0                     # index of frontier[0]
    last_report = time.monotonic()
    stop = bool(stop_on_violation and found_v)
    if stop:
        res.complete, res.truncated_by = False, "violation"
    while frontier and not stop and res.truncated_by is None:
        expanding = max_depth is None or depth < max_depth
        nxt: list = []
        nxt_extend = nxt.extend
        n_front = len(frontier)
        for c0 in range(0, n_front, _CHUNK):
            chunk = frontier[c0:c0 + _CHUNK]
            lists = list(map(nexts, chunk))
            flat = list(chain.from_iterable(lists))
            fl = list(map(fpf, flat))
            cand = list(compress(range(len(fl)), map(not_, map(seen_has, fl))))
            if not expanding:
                # At the depth bound: only ask whether anything unseen lies beyond.
                if cand:
                    res.complete, res.truncated_by = False, "max_depth"
                    break
                continue
            res.transitions += len(flat)
            if not cand:
                continue
            cum = list(accumulate(map(len, lists)))
            first = len(fps)
            new: list = []
            new_append = new.append
            pbase = base + c0
            for i in cand:
                f = fl[i]
                if f in seen:
                    continue
                if len(fps) == limit:
                    res.complete, res.truncated_by = False, "max_states"
                    break
                seen_add(f)
                fps_append(f)
                par_append(pbase + bisect_right(cum, i))
                new_append(flat[i])
            if new:
                if always or sometimes:
                    check(new, first)
                    if stop_on_violation and found_v:
                        stop = True
                nxt_extend(new)
            if stop or res.truncated_by is not None:
                break
            if bound and not (c0 // _CHUNK) & 7:       # (every 8 chunks: a read of /proc)
                used = rss()
                if used is not None and used > bound:
                    raise memory.MemoryBound(
                        f"the serial explorer passed the memory bound ({memory.fmt(bound)}; "
                        f"resident {memory.fmt(used)}) after {len(fps):,} states; it cannot spill "
                        "to disk: use the vector explorer (table-driven models), a larger "
                        "--max-memory or --max-states")
            if progress is not None or deadline is not None:
                now = time.monotonic()
                if progress is not None and now - last_report >= 0.1:
                    last_report = now
                    progress(len(fps), depth + 1, n_front - c0 - len(chunk) + len(nxt))
                if deadline is not None and time.perf_counter() >= deadline:
                    res.complete, res.truncated_by = False, "max_seconds"
                    break
        if not expanding:
            break
        base += n_front
        frontier = nxt
        if frontier:
            depth += 1
    if stop and res.truncated_by is None:
        res.complete, res.truncated_by = False, "violation"
    res.states = len(fps)
    res.depth = depth
    if progress is not None:
        progress(res.states, depth, 0)

    def chain_of(idx: int) -> tuple[int, list[int]]:
        out = []
        while True:
            p = parents[idx]
            if p < 0:
                out.reverse()
                return -1 - p, out
            out.append(fps[idx])
            idx = p

    for name, idx in found_v.items():
        ii, ch = chain_of(idx)
        res.violations[name] = _rebuild(model, fpf, ii, ch)
    for name, idx in found_r.items():
        ii, ch = chain_of(idx)
        res.reached[name] = _rebuild(model, fpf, ii, ch)
    res.violations = dict(sorted(res.violations.items()))
    res.reached = dict(sorted(res.reached.items()))
    res.seconds = time.perf_counter() - t0
    if _keep is not None:
        _keep.update(seen=seen, fps=fps, parents=parents)
    return res
