"""A distributed level-synchronous BFS over Dask distributed (``pip install 'memtypes[cluster]'``).

``memtypes check --cluster local:N`` starts a local cluster of ``N`` worker processes;
``--cluster tcp://HOST:PORT`` joins a running scheduler (``dask scheduler`` on one machine,
``dask worker tcp://HOST:PORT`` on each of the others, every one with memtypes installed).

How a search runs (the vectorised explorer's engine on every worker, :mod:`.vector`):

* **Partitions.**  Each worker holds a :class:`Partition` (a Dask actor): the states whose
  packed code hashes to it, with their global discovery index and their parent's, its own
  visited set and transition tables.
* **A level.**  Every partition expands its part of the frontier and sends each successor to
  the partition that owns it, with its order key (parent's global index, group, move: the
  serial explorer's order); the owners keep the unseen ones, the first occurrence of each.
  The driver merges the owners' sorted order keys, which numbers the level's new states
  globally exactly as one process would (so ``max_states`` cuts at the same state); the owners
  store them under those numbers and check the properties on them.
* **Results.**  The same states, transitions, depth, verdicts and shortest traces as the other
  explorers: the first state deciding a property is the smallest global index any partition
  reports; a trace is rebuilt by replay along the parent chain, each hop asked of the partition
  holding it.
* **Failures.**  A scheduler that does not answer, or a worker lost mid-level, is
  :class:`ClusterError` (one line); the local cluster and the client are closed on every exit
  path.  The successors travel through the driver (simple, and enough for the sizes measured);
  a peer-to-peer shuffle is the next step for clusters of many machines.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from memtypes.explore.search import ExploreResult, _rebuild

__all__ = ["ClusterError", "connect", "active", "explore_cluster", "available", "Partition"]

_ACTIVE: list = []          # the client of the innermost connect()
CONNECT_TIMEOUT = 10.0      # seconds to reach a scheduler
CHUNK = 1 << 13


class ClusterError(RuntimeError):
    """The cluster cannot run the search (unreachable, a worker lost, the extra missing)."""


def available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def active():
    """The client of the cluster the current ``memtypes check --cluster`` runs on, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def connect(spec: str, timeout: float | None = None) -> Iterator[Any]:
    """A Dask client for ``spec`` (``local:N`` or a scheduler address), made the active one for
    the ``with`` block; the client (and a local cluster) are closed on every exit path."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("the cluster engine needs Dask distributed: pip install "
                           "'memtypes[cluster]'") from None
    import logging
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.comm", "distributed.batched"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    cluster = client = None
    try:
        if spec.startswith("local:"):
            try:
                n = int(spec[len("local:"):])
            except ValueError:
                n = 0
            if n < 1:
                raise ClusterError(f"'{spec}': expected local:N with N >= 1 workers")
            try:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.CRITICAL)
                client = Client(cluster, timeout=timeout)
            except ClusterError:
                raise
            except Exception as e:
                raise ClusterError(f"cannot start a local cluster of {n} workers: "
                                   f"{type(e).__name__}: {e}") from None
        else:
            address = spec if "://" in spec else f"tcp://{spec}"
            try:
                client = Client(address, timeout=timeout)
            except Exception as e:
                raise ClusterError(f"no Dask scheduler answers at {address} within {timeout:g} s "
                                   f"({type(e).__name__})") from None
            if not client.scheduler_info().get("workers"):
                raise ClusterError(f"the scheduler at {address} has no workers")
        _ACTIVE.append(client)
        try:
            yield client
        finally:
            _ACTIVE.remove(client)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=5)


# --------------------------------------------------------------------------------------------
# The partition (one per worker)


def _owner(codes, n: int):
    """The partition of each code (narrow: an integer; wide: a column of words)."""
    import numpy as np
    from memtypes.explore import vector
    if codes.ndim == 1:
        h = codes.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    else:
        h = vector._hash64(codes)
    return ((h >> np.uint64(32)) % np.uint64(n)).astype(np.int64)


class Partition:
    """The states of one hash partition of a search (a Dask actor; usable locally too)."""

    def __init__(self, model, me: int, parts: int):
        import numpy as np
        from memtypes.explore import vector
        self.np, self.v = np, vector
        self.model, self.me, self.parts = model, me, parts
        self.eng = vector._Engine(model)
        eng = self.eng
        self.wide = eng.wide
        self.visited = vector._WideSet(eng.ks) if eng.wide else vector._Visited(eng.space)
        self.fps = None if eng.wide else vector._Grow(eng.dt)
        self.gidx = vector._Grow(np.int64)        # global index of each local state
        self.gpar = vector._Grow(np.int64)        # global index of its parent (-1 - init)
        self.n = 0
        self.front = (0, 0)                       # local range of the frontier
        self.pending = {name: kind for name, kind, _, _ in eng.props}
        self.cand = None                          # (codes, order keys) waiting for numbers
        self.gshift = 32 - eng.gbits              # order key: parent << 32 | group | move

    # -- helpers --------------------------------------------------------------------------------
    def _codes(self, a: int, b: int):
        return self.visited.codes(a, b) if self.wide else self.fps.view(a, b).copy()

    def _first(self, codes, ok):
        """Distinct ``codes`` with the smallest order key of each, sorted by that key."""
        np = self.np
        order = np.argsort(ok, kind="stable")
        codes, ok = self.v._at(codes, order), ok[order]
        if codes.ndim == 1 or codes.shape[0] == 1:      # (one word: a plain sort)
            _, first = np.unique(codes.reshape(-1), return_index=True)
        else:
            _, first = np.unique(codes.T, axis=0, return_index=True)
        first.sort()
        return self.v._at(codes, first), ok[first]

    def _store(self, codes, gidx, gpar) -> dict:
        self.visited.add(codes)
        if not self.wide:
            self.fps.append(codes)
        self.gidx.append(gidx)
        self.gpar.append(gpar)
        a = self.n
        self.n += self.v._len(codes)
        self.front = (a, self.n)
        hits = self.eng.check(codes, self.pending, {})
        out = {}
        for name, j in hits.items():
            out[name] = int(gidx[j])
            self.pending.pop(name, None)
        return out

    # -- the protocol the driver follows --------------------------------------------------------
    def init(self, codes, gidx, gpar) -> dict:
        np = self.np
        return self._store(np.asarray(codes), np.asarray(gidx, np.int64), np.asarray(gpar, np.int64))

    def expand(self) -> tuple[list, int]:
        """Successors of the frontier, bucketed by owner: ``([(codes, order keys)] per owner,
        transitions)``."""
        np, v, eng = self.np, self.v, self.eng
        a, b = self.front
        succs, oks, trans = [], [], 0
        for c0 in range(a, b, CHUNK):
            c1 = min(b, c0 + CHUNK)
            parts, t = eng.expand(self._codes(c0, c1), {})
            trans += t
            gp = self.gidx.view(c0, c1)
            for succ, par, midx, gi in parts:
                if eng.mbits > self.gshift:
                    raise ClusterError("a group has more moves than the cluster's order keys hold")
                succs.append(succ)
                oks.append((v._at(gp, par) << 32) | (gi << self.gshift) | midx)
        if not succs:
            return [None] * self.parts, trans
        codes, ok = self._first(np.concatenate(succs, axis=-1), np.concatenate(oks))
        owner = _owner(codes, self.parts)
        out = []
        for d in range(self.parts):
            sel = np.flatnonzero(owner == d)
            out.append((v._at(codes, sel), ok[sel]) if sel.size else None)
        return out, trans

    def receive(self, buckets: list):
        """The successors sent to this partition: keep the unseen ones, the first occurrence of
        each; return their order keys, sorted (the driver numbers them)."""
        np = self.np
        got = [x for x in buckets if x is not None]
        if not got:
            self.cand = None
            return np.zeros(0, np.int64)
        codes = np.concatenate([c for c, _ in got], axis=-1)
        ok = np.concatenate([k for _, k in got])
        unseen = np.flatnonzero(self.visited.unseen(codes))
        codes, ok = self._first(self.v._at(codes, unseen), ok[unseen])
        self.cand = (codes, ok)
        return ok

    def commit(self, gidx) -> dict:
        """Store the first ``len(gidx)`` candidates under global indices ``gidx``; the
        properties they decide (smallest global index each)."""
        np = self.np
        if self.cand is None or not len(gidx):
            self.front = (self.n, self.n)
            self.cand = None
            return {}
        codes, ok = self.cand
        k = len(gidx)
        self.cand = None
        return self._store(self.v._at(codes, np.arange(k)), np.asarray(gidx, np.int64), ok[:k] >> 32)

    def decided(self, names: list) -> None:
        for n in names:
            self.pending.pop(n, None)

    def lookup(self, g: int):
        """``(code, parent's global index)`` of the state with global index ``g``, if here."""
        np = self.np
        gi = self.gidx.view(0, self.n)        # (increasing: levels are numbered in order)
        i = int(np.searchsorted(gi, g))
        if i >= self.n or int(gi[i]) != g:
            return None
        code = self.visited.code(i) if self.wide else int(self.fps.a[i])
        return code, int(self.gpar.a[i])

    def stats(self) -> dict:
        return {"states": self.n, "bytes": self.visited.nbytes}


# --------------------------------------------------------------------------------------------
# The driver


def explore_cluster(model, client, *, max_depth: int | None = None, max_states: int | None = None,
                    progress: Callable[[int, int, int], Any] | None = None,
                    stop_on_violation: bool = False, max_seconds: float | None = None) -> ExploreResult:
    """Breadth-first search of a table-driven ``model`` over the workers of ``client`` (one
    partition each): the contract and results of :func:`memtypes.explore.search.explore`
    (``stop_on_violation`` and ``max_seconds`` stop after a whole level, and a search cut by
    ``max_states`` counts the transitions of whole levels, so those counts may differ)."""
    import numpy as np
    from memtypes.explore import vector

    why = vector.supports(model)
    if why is not None:
        raise vector.Unsupported(f"the cluster engine cannot run this model: {why}")
    t0 = time.perf_counter()
    eng = vector._Engine(model)               # (the driver's: encodes initial states, traces)
    workers = sorted(client.scheduler_info().get("workers", {}))
    if not workers:
        raise ClusterError("the cluster has no workers")
    W = len(workers)
    res = ExploreResult(workers=W, fingerprint="packed")

    def call(make):
        """Run ``make()`` (actor calls) and wait for every result; a lost worker is one line."""
        try:
            return [f.result() for f in make()]
        except ClusterError:
            raise
        except Exception as e:            # a worker lost, a closed connection...
            raise ClusterError(f"a cluster worker failed mid-search ({type(e).__name__}: {e})") from None

    try:
        actors = [f.result() for f in
                  [client.submit(Partition, model, i, W, actor=True, workers=[w], pure=False)
                   for i, w in enumerate(workers)]]
    except Exception as e:
        raise ClusterError(f"cannot place the search on the cluster ({type(e).__name__}: {e})") from None
    limit = max_states if max_states is not None else -1
    deadline = t0 + max_seconds if max_seconds is not None else None
    found: dict[str, int] = {}
    kinds = {name: kind for name, kind, _, _ in eng.props}

    def note(hits_list: list[dict]) -> None:
        new = {}
        for hits in hits_list:
            for name, g in hits.items():
                if name not in found and (name not in new or g < new[name]):
                    new[name] = g
        found.update(new)
        if new:
            call(lambda: [a.decided(list(new)) for a in actors])

    # initial states, numbered in order, to their owners
    codes, ipar, cut = vector.initial_codes(model, eng, limit)
    if cut:
        res.complete, res.truncated_by = False, "max_states"
    nstates = len(ipar)
    if ipar:
        gpar = np.array(ipar, np.int64)
        owner = _owner(codes, W)
        note(call(lambda: [a.init(vector._at(codes, np.flatnonzero(owner == d)), np.flatnonzero(owner == d),
                          gpar[owner == d]) for d, a in enumerate(actors)]))
    depth, front = 0, nstates
    stop = bool(stop_on_violation and any(kinds[n] == "always" for n in found))
    if stop:
        res.complete, res.truncated_by = False, "violation"
    while front and not stop and res.truncated_by is None:
        expanding = max_depth is None or depth < max_depth
        out = call(lambda: [a.expand() for a in actors])
        if expanding:
            res.transitions += sum(t for _, t in out)
        keys = call(lambda: [a.receive([out[s][0][d] for s in range(W)]) for d, a in enumerate(actors)])
        total = sum(len(k) for k in keys)
        if not expanding:
            if total:
                res.complete, res.truncated_by = False, "max_depth"
            break
        allk = np.sort(np.concatenate(keys)) if total else np.zeros(0, np.int64)
        room = total if limit < 0 else min(total, limit - nstates)
        if room < total:
            res.complete, res.truncated_by = False, "max_states"
        numbered = []
        for k in keys:
            g = np.searchsorted(allk, k) if len(k) else np.zeros(0, np.int64)
            numbered.append(g[g < room] + nstates)
        note(call(lambda: [a.commit(g) for a, g in zip(actors, numbered)]))
        nstates += room
        front = room
        if room:
            depth += 1
        if stop_on_violation and any(kinds[n] == "always" for n in found):
            stop = True
        if progress is not None:
            progress(nstates, depth, front)
        if deadline is not None and time.perf_counter() >= deadline and front:
            res.complete, res.truncated_by = False, "max_seconds"
            break
    if stop and res.truncated_by is None:
        res.complete, res.truncated_by = False, "violation"
    res.states, res.depth = nstates, depth
    if progress is not None:
        progress(nstates, depth, 0)

    def hop(g: int) -> tuple[int, int]:
        for got in call(lambda: [a.lookup(g) for a in actors]):
            if got is not None:
                return got
        raise ClusterError(f"no partition holds state {g}")  # pragma: no cover

    for name, g in sorted(found.items()):
        chain = []
        while True:
            code, p = hop(g)
            if p < 0:
                break
            chain.append(code)
            g = p
        chain.reverse()
        dest = res.violations if kinds[name] == "always" else res.reached
        dest[name] = _rebuild(model, eng.encode, -1 - p, chain)
    res.violations = dict(sorted(res.violations.items()))
    res.reached = dict(sorted(res.reached.items()))
    res.seconds = time.perf_counter() - t0
    return res
