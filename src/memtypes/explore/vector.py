"""The vectorised explorer: a level-synchronous breadth-first search over a
:class:`~memtypes.explore.table.TableModel`, in numpy (peers.md sections 4.3 and 4.4).

numpy is an optional dependency (``pip install memtypes[fast]``); :func:`available` says whether
it can run.  The search gives exactly what the per-state explorer gives on the same model: the
same distinct states, discovered in the same order (so the same parent of each state), the same
depth and transition count, the same verdicts and the same shortest traces (rebuilt by replay
through the model).  ``tests/explore/test_explore_vector.py`` checks this on random models.

How a BFS level is expanded, without calling the model per state:

* **Packed states.**  A state is one integer (``int32`` when the code space allows, else
  ``int64``): the mixed-radix number of its column codes.  It is exact, so it doubles as a
  fingerprint with no collision.  The domains are the declared ones when their product fits the
  bitmap below, else the reachable-value domains the model infers
  (:meth:`TableModel.value_domains`).
* **Transition tables.**  For each group of moves, the key of a state is the mixed-radix number
  of its ``reads`` codes.  A dense table maps a key to its moves (count and offset), filled the
  first time a key is met from the model's (memoised) moves.  Since writes are among the reads,
  a move's effect on the packed state is a constant ``delta``: a successor is ``code + delta``.
  Moves that leave the canonical state unchanged, and repeats of an earlier move of the same
  key, are dropped when the table is filled (the serial explorer's transition count is kept).
* **Symmetry.**  A group that writes one of a set of interchangeable columns merges the new
  value into the parent's other (sorted) columns with ``minimum``/``maximum``; otherwise a
  sorting network sorts them.  Where a canonical parent holds equal values in two such columns,
  the group of the second is skipped: its successors are the first one's.
* **Visited set.**  A bitmap over the code space when it has at most 2**30 codes (128 MiB), else
  an open-addressing hash table of packed codes (vectorised linear probing, load <= 1/2).
* **Discovery order.**  Successors not yet visited are ordered by (parent, group, index of the
  move) -- the per-state explorer's order -- and the first occurrence of each is kept (two sorts
  of packed words).
* **Properties.**  The clauses of all properties are fused by the columns they read: one lazily
  filled table of clause bit masks per group of clauses, one lookup per group for a level's new
  states, and the undecided ``always`` properties tested together.

Frontiers are expanded in chunks of ``CHUNK`` states so that the arrays stay in cache.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from memtypes.explore.search import ExploreResult, _rebuild

__all__ = ["available", "supports", "small", "explore_vector", "Unsupported", "CHUNK",
           "DENSE_CODES", "MAX_TABLE", "SMALL_CODES"]

CHUNK = 1 << 12
"""Frontier states expanded per numpy batch."""
DENSE_CODES = 1 << 30
"""Code spaces up to this size use a bitmap visited set (at most 128 MiB)."""
MAX_TABLE = 1 << 24
"""The largest dense transition or clause table (entries); larger models use the serial explorer."""

try:  # numpy is optional: without it, every model uses the per-state explorer
    import numpy as np
except ImportError:  # pragma: no cover - exercised on installs without the 'fast' extra
    np = None


def available() -> bool:
    return np is not None


def supports(model: Any) -> str | None:
    """``None`` if the vector back-end may explore ``model``, else why not.  (A table-driven
    model can still turn out too wide once its domains are known: :func:`explore_vector` then
    raises :class:`Unsupported`, and ``explore(backend="auto")`` uses the serial explorer.)"""
    if np is None:
        return "numpy is not installed (pip install 'memtypes[fast]')"
    if not hasattr(model, "columns") or not hasattr(model, "value_domains"):
        return "not a table-driven model"
    return None


SMALL_CODES = 1 << 18
"""Below this many codes (so at most this many states) ``explore(backend="auto")`` keeps a
table-driven model on the serial explorer: numpy's per-call overhead outweighs the search (the
default ``memtypes check`` jobs run about twice as fast serially)."""


def small(model: Any) -> bool:
    """Whether a table-driven ``model`` is small enough for the serial explorer to be faster."""
    return supports(model) is None and model.code_space < SMALL_CODES


def _network(n: int) -> list[tuple[int, int]]:
    """Comparators of a sorting network for ``n`` items (odd-even transposition: ``n`` rounds)."""
    return [(i, i + 1) for rnd in range(n) for i in range(rnd % 2, n - 1, 2)]


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


# --------------------------------------------------------------------------------------------
# Visited sets


class Unsupported(ValueError):
    """The model is table-driven but too wide for the vector explorer."""


class _Bitmap:
    def __init__(self, space: int):
        # Touched sparsely: without numpy's transparent-huge-page advice a first touch zeroes a
        # 4 KiB page, not 2 MiB (measured here: 34 MB first-touched in 15 ms instead of 63 ms).
        setter = getattr(getattr(np, "_core", None), "multiarray", None)
        setter = getattr(setter, "_set_madvise_hugepage", None)
        was = setter(False) if setter is not None else None
        try:
            self.bits = np.zeros((space + 7) >> 3, np.uint8)
        finally:
            if setter is not None:
                setter(was)

    def seen(self, q):
        return ~self.unseen(q)

    def unseen(self, q):
        return (self.bits[q >> 3] >> (q & 7).astype(np.uint8)) & np.uint8(1) == 0

    def add(self, q) -> None:
        """Set the bits of distinct codes ``q`` (bits of one byte OR-ed together first)."""
        q = np.sort(q)
        b = q >> 3
        first = np.empty(b.size, bool)
        first[:1] = True
        np.not_equal(b[1:], b[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        self.bits[b[starts]] |= np.bitwise_or.reduceat((1 << (q & 7)).astype(np.uint8), starts)

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes


class _HashSet:
    """Open addressing over ``int64`` codes (``-1`` empty), Fibonacci hashing, linear probing."""

    _MULT = 0x9E3779B97F4A7C15

    def __init__(self, log2: int = 16):
        self._resize(log2)
        self.n = 0

    def _resize(self, log2: int) -> None:
        self.log2 = log2
        self.mask = (1 << log2) - 1
        self.tab = np.full(1 << log2, -1, np.int64)

    def _slot(self, q):
        h = q.astype(np.uint64) * np.uint64(self._MULT)
        return (h >> np.uint64(64 - self.log2)).astype(np.int64)

    def seen(self, q):
        out = np.zeros(q.size, bool)
        idx = np.arange(q.size)
        h = self._slot(q)
        tab, mask = self.tab, self.mask
        while idx.size:
            s = tab[h]
            qq = q[idx]
            hit = s == qq
            out[idx[hit]] = True
            go = ~hit & (s != -1)
            idx, h = idx[go], (h[go] + 1) & mask
        return out

    def unseen(self, q):
        return ~self.seen(q)

    def add(self, q) -> None:
        """Insert codes that are distinct and not yet present."""
        if 2 * (self.n + q.size) > self.tab.size:
            old = self.tab[self.tab != -1]
            log2 = self.log2
            while (1 << log2) < 2 * (self.n + q.size):
                log2 += 1
            self._resize(log2)
            self.n = 0
            self._insert(old)
        self._insert(q)

    def _insert(self, q) -> None:
        self.n += q.size
        h = self._slot(q)
        tab, mask = self.tab, self.mask
        while q.size:
            free = tab[h] == -1
            fi = np.flatnonzero(free)
            tab[h[fi]] = q[fi]                 # one of the claimants of each slot wins
            lose = np.ones(q.size, bool)
            lose[fi[tab[h[fi]] == q[fi]]] = False
            q, h = q[lose], (h[lose] + 1) & mask

    @property
    def nbytes(self) -> int:
        return self.tab.nbytes


# --------------------------------------------------------------------------------------------
# Tables


class _Table:
    """A lazily filled dense transition table over one group's read codes: for each key, its
    distinct non-trivial moves (``cnt``, from ``off`` in the move arrays) and the number of moves
    the model lists (``tcnt``: the serial explorer's transitions, duplicates included)."""

    def __init__(self, radix: list[int]):
        self.radix = radix
        self.kstr = [_prod(radix[j + 1:]) for j in range(len(radix))]
        size = _prod(radix)
        self.cnt = np.full(size, -1, np.int32)
        self.tcnt = np.zeros(size, np.int32)
        self.off = np.zeros(size, np.int64)
        self.move_key: list[int] = []
        self.move_writes: list[tuple] = []
        self.single = True              # no key has more than one move (so far)


class _Group:
    def __init__(self, gi, g, table: _Table, eng: "_Engine"):
        self.gi, self.g, self.table = gi, g, table
        self.reads = g.reads
        self.wpos = [g.reads.index(c) for c in g.writes]   # position of each write among the reads
        self.wstride = np.array([eng.stride[c] for c in g.writes], np.int64)
        self.wkstr = np.array([table.kstr[p] for p in self.wpos], np.int64)
        self.wradix = np.array([eng.radix[c] for c in g.writes], np.int64)
        self.delta = np.zeros(0, eng.dt)
        # symmetry: the set of interchangeable columns this group writes, and which one
        self.sym = None
        self.symw = None                # new code of that column, per move
        self.delta_ns = None            # the delta of the move on the other columns
        self.twin = None                # (column, previous column of the set): see _Engine
        for si, sym in enumerate(eng.model.symmetric):
            ws = [c for c in g.writes if c in sym]
            if ws:
                self.sym = (si, sym.index(ws[0]) if len(ws) == 1 else None)
                self.symj = g.writes.index(ws[0])
        # which written columns are compared one by one, and which as a multiset (a permutation
        # of interchangeable columns leaves the canonical state unchanged)
        symsets = [set(sym) for sym in eng.model.symmetric]
        self.plain = [j for j, c in enumerate(g.writes) if not any(c in ss for ss in symsets)]
        self.multi = [[j for j, c in enumerate(g.writes) if c in ss] for ss in symsets]
        self.multi = [js for js in self.multi if js]

    def noop(self, wc: tuple, rc: list) -> bool:
        """Whether a move with written codes ``wc`` leaves a canonical state with read codes
        ``rc`` unchanged."""
        wpos = self.wpos
        if any(wc[j] != rc[wpos[j]] for j in self.plain):
            return False
        return all(sorted(wc[j] for j in js) == sorted(rc[wpos[j]] for j in js) for js in self.multi)


class _Fused:
    """Clauses of the properties evaluated together: one lazily filled table over the union of
    their reads, holding a bit mask of which clauses hold (``-1``: not yet computed)."""

    def __init__(self, reads: tuple[int, ...], radix: list[int]):
        self.reads = reads
        self.radix = radix
        self.kstr = [_prod(radix[j + 1:]) for j in range(len(radix))]
        self.val = np.full(_prod(radix), -1, np.int64)
        self.clauses: list = []                 # (pred, positions of its reads among ours)


class _Engine:
    """Everything one search keeps: domains, strides, transition and clause tables."""

    def __init__(self, model):
        self.model = model
        model.table_setup()
        # Pack over the declared domains when they are small enough for the bitmap; else over
        # the reachable-value domains (a fixpoint over the groups: TableModel.value_domains).
        declared = [c.values for c in model.columns]
        t0 = time.perf_counter()
        self.values = declared if model.code_space <= DENSE_CODES else list(model.value_domains())
        self.model_seconds = time.perf_counter() - t0     # time spent calling the model
        self.codes = [{v: i for i, v in enumerate(d)} for d in self.values]
        self.radix = [max(1, len(d)) for d in self.values]
        self.stride, acc = [0] * len(self.radix), 1
        for c in range(len(self.radix) - 1, -1, -1):
            self.stride[c] = acc
            acc *= self.radix[c]
        self.space = acc
        self.dt = np.int32 if acc < 1 << 31 else np.int64   # packed codes: half the bandwidth when they fit
        if self.space >= 1 << 62:
            raise Unsupported(f"code space {self.space} does not fit 62 bits")
        tables: dict = {}
        self.groups: list[_Group] = []
        for gi, g in enumerate(model.groups):
            rr = [self.radix[c] for c in g.reads]
            if _prod(rr) > MAX_TABLE:
                raise Unsupported(f"group {g.name}: transition table exceeds {MAX_TABLE} entries")
            tid = (g.table or f"#{gi}", tuple(rr))
            t = tables.get(tid)
            if t is None:
                t = tables[tid] = _Table(rr)
            self.groups.append(_Group(gi, g, t, self))
        self._find_twins()
        self.gbits = max(1, len(self.groups).bit_length())
        self.mbits = 1                  # bits of a move index (grows as the tables fill)
        self.cbits = max(1, (self.space - 1).bit_length())
        self.sym = [([self.stride[c] for c in s], self.radix[s[0]], _network(len(s)), s)
                    for s in model.symmetric]
        self._fuse(model.table_properties())

    def _fuse(self, props) -> None:
        """Group the clauses of all properties by reads (a clause joins a group that reads a
        superset of its columns), so that a state is checked with one lookup per group."""
        self.fused: list[_Fused] = []
        refs: dict[int, list] = {}
        flat = [(pi, cl) for pi, p in enumerate(props) for cl in p.clauses]
        for pi, cl in sorted(flat, key=lambda x: -len(set(x[1].reads))):
            for fi, f in enumerate(self.fused):
                if set(cl.reads) <= set(f.reads) and len(f.clauses) < 63:
                    break
            else:
                rr = [self.radix[c] for c in cl.reads]
                if _prod(rr) > MAX_TABLE:
                    raise Unsupported(f"property {props[pi].name}: clause table exceeds {MAX_TABLE} entries")
                fi, f = len(self.fused), _Fused(tuple(cl.reads), rr)
                self.fused.append(f)
            f.clauses.append((cl.pred, [f.reads.index(c) for c in cl.reads]))
            need = refs.setdefault(pi, {})
            need[fi] = need.get(fi, 0) | 1 << (len(f.clauses) - 1)
        self.props = [(p.name, p.kind, p.conjunction, refs.get(pi, {})) for pi, p in enumerate(props)]

    def _find_twins(self) -> None:
        """A group on column ``c_j`` of a symmetric set is the *twin* of the group before it on
        ``c_{j-1}`` when both share a table and read the same columns but for that one.  In a
        canonical state with equal values in ``c_{j-1}`` and ``c_j`` the twin's successors
        are exactly the earlier group's (same moves, same multiset after sorting), which come
        first in the serial order: the twin is skipped there (its moves are still counted)."""
        for grp in self.groups:
            if grp.sym is None or grp.sym[1] is None or grp.sym[1] == 0:
                continue
            sym = self.model.symmetric[grp.sym[0]]
            c, prev = sym[grp.sym[1]], sym[grp.sym[1] - 1]
            want = tuple(prev if x == c else x for x in grp.reads)
            wantw = tuple(prev if x == c else x for x in grp.g.writes)
            for other in self.groups[:grp.gi]:
                if other.table is grp.table and other.reads == want and other.g.writes == wantw:
                    grp.twin = (c, prev)
                    break

    def encode(self, state) -> int:
        return sum(code[v] * st for code, v, st in zip(self.codes, state, self.stride))

    def decode_many(self, codes) -> list[tuple]:
        """The model states of packed ``codes``."""
        cols = [list(map(self.values[c].__getitem__, ((codes // st) % r).tolist()))
                for c, (st, r) in enumerate(zip(self.stride, self.radix))]
        return list(zip(*cols))

    # -- decoding helpers ----------------------------------------------------------------------
    def column(self, codes, c: int, cache: dict):
        v = cache.get(c)
        if v is None:
            v = cache[c] = (codes // self.stride[c]) % self.radix[c]
        return v

    def key(self, codes, reads, kstr, cache: dict):
        k = None
        for c, s in zip(reads, kstr):
            term = self.column(codes, c, cache)
            if s != 1:
                term = term * s
            k = term if k is None else k + term
        return k

    # -- transition tables -----------------------------------------------------------------------
    def fill(self, grp: _Group, keys) -> None:
        t0 = time.perf_counter()
        t, g = grp.table, grp.g
        for k in np.unique(keys).tolist():
            rc = [(k // s) % r for s, r in zip(t.kstr, t.radix)]
            vals = tuple(self.values[c][q] for c, q in zip(g.reads, rc))
            start = len(t.move_key)
            have = set()
            moves = 0
            for w in self.model.writes_of(grp.gi, vals):
                try:
                    wc = tuple(self.codes[c][v] for c, v in zip(g.writes, w))
                except KeyError as e:
                    raise ValueError(f"group {g.name}: value {e.args[0]!r} is not in the domain "
                                     f"of a written column {g.writes}") from None
                if grp.noop(wc, rc):
                    continue                  # the canonical successor is the state itself
                moves += 1                    # the serial explorer counts it
                if wc in have:
                    continue                  # repeats an earlier move of this state
                have.add(wc)
                t.move_key.append(k)
                t.move_writes.append(wc)
            t.cnt[k] = len(t.move_key) - start
            t.off[k] = start
            t.tcnt[k] = moves
            self.mbits = max(self.mbits, len(t.move_key).bit_length())
            t.single = t.single and t.cnt[k] <= 1
        self.model_seconds += time.perf_counter() - t0

    def deltas(self, grp: _Group):
        t = grp.table
        n = len(t.move_key)
        have = grp.delta.size
        if have < n:
            keys = np.array(t.move_key[have:], np.int64)
            w = np.array(t.move_writes[have:], np.int64).reshape(n - have, len(grp.wpos))
            old = (keys[:, None] // grp.wkstr[None, :]) % grp.wradix[None, :]
            d = ((w - old) * grp.wstride[None, :]).sum(axis=1)
            grp.delta = np.concatenate([grp.delta, d.astype(self.dt)])
            if grp.sym is not None:
                j = grp.symj
                sw = w[:, j]
                ns = (d - (sw - old[:, j]) * grp.wstride[j]).astype(self.dt)
                sw = sw.astype(self.dt)
                grp.symw = sw if grp.symw is None else np.concatenate([grp.symw, sw])
                grp.delta_ns = ns if grp.delta_ns is None else np.concatenate([grp.delta_ns, ns])
        return grp.delta

    def merged(self, grp: _Group, par, midx, cache: dict, codes):
        """Successors of a group that writes one column of a symmetric set, canonical.  The
        parent is canonical, so its other columns of the set are sorted: the new value is
        merged into them (``2(k-1)`` minimum/maximum over whole arrays, nothing divided)."""
        si, p = grp.sym
        strides, _r, _net, sym = self.sym[si]
        rest = cache.get(("rest", si))
        if rest is None:
            rest = cache[("rest", si)] = codes - sum(self.column(codes, c, cache) * st
                                                      for c, st in zip(sym, strides))
        x = [self.column(codes, c, cache)[par] for j, c in enumerate(sym) if j != p]
        v = grp.symw[midx]
        succ = rest[par] + grp.delta_ns[midx] + np.minimum(x[0], v) * strides[0]
        for j in range(1, len(x)):
            succ += np.minimum(x[j], np.maximum(x[j - 1], v)) * strides[j]
        return succ + np.maximum(x[-1], v) * strides[-1]

    def canon(self, succ):
        """Sort the codes of each set of interchangeable columns (a sorting network of
        minimum/maximum over the decoded columns)."""
        for strides, r, net, _sym in self.sym:
            cols = [(succ // st) % r for st in strides]
            old = sum(c * st for c, st in zip(cols, strides))
            for i, j in net:
                lo = np.minimum(cols[i], cols[j])
                cols[j] = np.maximum(cols[i], cols[j])
                cols[i] = lo
            succ = succ - old + sum(c * st for c, st in zip(cols, strides))
        return succ

    # -- one chunk of a level ----------------------------------------------------------------------
    def expand(self, codes):
        """Successors of ``codes``: ``(parts, transitions)`` with parts ``(succ, parent row,
        move index, group)`` in group order (a key's moves have increasing indices)."""
        cache: dict = {}
        parts = []
        trans = 0
        for grp in self.groups:
            t = grp.table
            keys = self.key(codes, grp.reads, t.kstr, cache)
            cnt = t.cnt[keys]
            if (cnt < 0).any():
                self.fill(grp, keys[cnt < 0])
                cnt = t.cnt[keys]
            trans += int(t.tcnt[keys].sum())
            live = cnt > 0
            if grp.twin is not None:
                c, prev = grp.twin
                live &= self.column(codes, c, cache) != self.column(codes, prev, cache)
            sel = np.flatnonzero(live)
            if not sel.size:
                continue
            if t.single:                  # at most one move per key: no repetition
                par, midx = sel, t.off[keys[sel]]
            else:                         # the moves of a key are contiguous from its offset
                reps = cnt[sel].astype(np.int64)
                par = np.repeat(sel, reps)
                begin = np.cumsum(reps) - reps
                midx = np.repeat(t.off[keys[sel]] - begin, reps) + np.arange(par.size, dtype=np.int64)
            # (a move changes some column, so its canonical successor differs from the parent)
            delta = self.deltas(grp)
            if grp.sym is None:
                succ = codes[par] + delta[midx]
            elif grp.sym[1] is not None and len(self.model.symmetric[grp.sym[0]]) > 1:
                succ = self.merged(grp, par, midx, cache, codes)
            else:
                succ = self.canon(codes[par] + delta[midx])
            parts.append((succ, par, midx, grp.gi))
        return parts, trans

    def first_occurrences(self, succ, ok):
        """The distinct codes of ``succ`` ordered by their smallest order key ``ok``, and the
        parent row of that first occurrence.  Two in-place sorts of packed (code, key) words
        when both fit in 63 bits (numpy's fast non-indirect sort), else a stable argsort."""
        okbits = CHUNK.bit_length() - 1 + self.gbits + self.mbits
        pshift = self.gbits + self.mbits
        succ = succ.astype(np.int64)
        if self.cbits + okbits <= 63:
            key = (succ << okbits) | ok
            key.sort()
            code = key >> okbits
            first = np.empty(code.size, bool)
            first[0] = True
            np.not_equal(code[1:], code[:-1], out=first[1:])
            key2 = ((key[first] & ((1 << okbits) - 1)) << self.cbits) | code[first]
            key2.sort()
            return (key2 & ((1 << self.cbits) - 1)).astype(self.dt), key2 >> (self.cbits + pshift)
        order = np.argsort(ok, kind="stable")
        succ, ok = succ[order], ok[order]
        _, first = np.unique(succ, return_index=True)
        first.sort()
        return succ[first].astype(self.dt), ok[first] >> pshift

    def masks(self, codes, fi: int, cache: dict):
        """Clause masks of fused group ``fi`` for each state of ``codes`` (filling its table)."""
        got = cache.get(("mask", fi))
        if got is None:
            f = self.fused[fi]
            keys = self.key(codes, f.reads, f.kstr, cache) if f.reads else np.zeros(codes.size, np.int64)
            got = f.val[keys]
            if (got < 0).any():
                t0 = time.perf_counter()
                for k in np.unique(keys[got < 0]).tolist():
                    vals = [self.values[c][(k // s) % r] for c, s, r in zip(f.reads, f.kstr, f.radix)]
                    f.val[k] = sum(1 << j for j, (pred, pos) in enumerate(f.clauses)
                                   if pred(*[vals[x] for x in pos]))
                got = f.val[keys]
                self.model_seconds += time.perf_counter() - t0
            cache[("mask", fi)] = got
        return got

    def check(self, codes, pending: dict):
        """For each undecided property: index (in ``codes``) of the first state deciding it.
        The undecided ``always`` properties are first checked together (one test per fused
        group); a property is looked at alone only in a batch where something fails."""
        out = {}
        cache: dict = {}
        undecided = [p for p in self.props if p[0] in pending]
        always = [p for p in undecided if p[1] == "always" and p[2]]
        if always:
            need: dict[int, int] = {}
            for _n, _k, _c, refs in always:
                for fi, bits in refs.items():
                    need[fi] = need.get(fi, 0) | bits
            if all(((self.masks(codes, fi, cache) & bits) == bits).all() for fi, bits in need.items()):
                undecided = [p for p in undecided if not (p[1] == "always" and p[2])]
        for name, kind, conj, refs in undecided:
            acc = None
            for fi, bits in refs.items():
                m = self.masks(codes, fi, cache) & bits
                b = (m == bits) if conj else (m != 0)
                acc = b if acc is None else (acc & b if conj else acc | b)
            if acc is None:               # no clause: an empty "all" holds, an empty "any" fails
                if codes.size and conj == (kind == "sometimes"):
                    out[name] = 0
                continue
            if kind == "always" and not acc.all():
                out[name] = int(np.argmin(acc))
            elif kind == "sometimes" and acc.any():
                out[name] = int(np.argmax(acc))
        return out


# --------------------------------------------------------------------------------------------
# The search


def explore_vector(model, *, max_depth: int | None = None, max_states: int | None = None,
                   progress: Callable[[int, int, int], Any] | None = None,
                   stop_on_violation: bool = False, max_seconds: float | None = None,
                   _keep: dict | None = None) -> ExploreResult:
    """Breadth-first search of a table-driven ``model`` (same contract and results as
    :func:`memtypes.explore.search.explore`; ``stop_on_violation`` stops after the level)."""
    why = supports(model)
    if why is not None:
        raise Unsupported(f"the vector explorer cannot run this model: {why}")
    t0 = time.perf_counter()
    eng = _Engine(model)
    res = ExploreResult(workers=1, fingerprint="packed")
    visited = _Bitmap(eng.space) if eng.space <= DENSE_CODES else _HashSet()
    limit = max_states if max_states is not None else -1
    deadline = t0 + max_seconds if max_seconds is not None else None
    pending = {name: kind for name, kind, _, _ in eng.props}
    found_v: dict[str, int] = {}
    found_r: dict[str, int] = {}
    fps_parts: list = []
    par_parts: list = []
    nstates = 0

    def store(new, parents) -> None:
        nonlocal nstates
        visited.add(new)
        fps_parts.append(new)
        par_parts.append(parents)
        hits = eng.check(new, pending)
        for name, j in hits.items():
            (found_v if pending.pop(name) == "always" else found_r)[name] = nstates + j
        nstates += new.size

    # initial states
    inits, ipar, have = [], [], set()
    for i, s in enumerate(model.init_states()):
        c = eng.encode(s)
        if c in have:
            continue
        if len(inits) == limit:
            res.complete, res.truncated_by = False, "max_states"
            break
        have.add(c)
        inits.append(c)
        ipar.append(-1 - i)
    frontier = np.array(inits, eng.dt)
    if frontier.size:
        store(frontier, np.array(ipar, np.int64))
    depth, base = 0, 0
    last = time.monotonic()
    stop = bool(stop_on_violation and found_v)
    if stop:
        res.complete, res.truncated_by = False, "violation"
    while frontier.size and not stop and res.truncated_by is None:
        expanding = max_depth is None or depth < max_depth
        level_new = []
        for c0 in range(0, frontier.size, CHUNK):
            chunk = frontier[c0:c0 + CHUNK]
            succs, oks = [], []
            beyond = False
            parts, trans = eng.expand(chunk)
            if expanding:
                res.transitions += trans
            for succ, par, midx, gi in parts:
                unseen = visited.unseen(succ)
                if not expanding:
                    beyond = beyond or bool(unseen.any())
                    continue
                if unseen.any():
                    succs.append(succ[unseen])
                    # order key: (parent row, group, move): the serial explorer's order
                    oks.append((par[unseen] << eng.gbits | gi) << eng.mbits | midx[unseen])
            if beyond:
                res.complete, res.truncated_by = False, "max_depth"
                break
            if not succs:
                continue
            new, parents = eng.first_occurrences(np.concatenate(succs), np.concatenate(oks))
            parents += base + c0
            if limit >= 0 and nstates + new.size > limit:
                new, parents = new[:limit - nstates], parents[:limit - nstates]
                res.complete, res.truncated_by = False, "max_states"
            if new.size:
                store(new, parents)
                level_new.append(new)
            if stop_on_violation and found_v:
                stop = True
            if stop or res.truncated_by is not None:
                break
            now = time.monotonic()
            if progress is not None and now - last >= 0.1:
                last = now
                progress(nstates, depth + 1, frontier.size - c0 - chunk.size
                         + sum(x.size for x in level_new))
            if deadline is not None and time.perf_counter() >= deadline:
                res.complete, res.truncated_by = False, "max_seconds"
                break
        if not expanding:
            break
        base += frontier.size
        frontier = np.concatenate(level_new) if level_new else np.zeros(0, eng.dt)
        if frontier.size:
            depth += 1
    if stop and res.truncated_by is None:
        res.complete, res.truncated_by = False, "violation"
    res.states, res.depth = nstates, depth
    if progress is not None:
        progress(nstates, depth, 0)
    fps = np.concatenate(fps_parts) if fps_parts else np.zeros(0, np.int64)
    parents = np.concatenate(par_parts) if par_parts else np.zeros(0, np.int64)

    def chain_of(idx: int) -> tuple[int, list[int]]:
        out = []
        while True:
            p = int(parents[idx])
            if p < 0:
                out.reverse()
                return -1 - p, out
            out.append(int(fps[idx]))
            idx = p

    for found, dest in ((found_v, res.violations), (found_r, res.reached)):
        for name, idx in sorted(found.items()):
            ii, ch = chain_of(idx)
            dest[name] = _rebuild(model, eng.encode, ii, ch)
    res.seconds = time.perf_counter() - t0
    if _keep is not None:
        _keep.update(visited=visited, fps=fps, parents=parents, engine=eng)
    return res
