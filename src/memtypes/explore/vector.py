"""The vectorised explorer: a level-synchronous breadth-first search over a
:class:`~memtypes.explore.table.TableModel`, in numpy (peers.md sections 4.3 and 4.4).

numpy is an optional dependency (``pip install memtypes[fast]``); :func:`available` says whether
it can run.  The search gives exactly what the per-state explorer gives on the same model: the
same distinct states, discovered in the same order (so the same parent of each state), the same
depth and transition count, the same verdicts and the same shortest traces (rebuilt by replay
through the model).  ``tests/explore/test_explore_vector.py`` checks this on random models.
(Under ``max_states`` the transition count of a cut search is the parents' expanded so far, in
batches of ``CHUNK`` here and of the serial explorer's own size there, so it may differ.)

How a BFS level is expanded, without calling the model per state:

* **Packed states.**  A state is one integer (``int32`` when the code space allows, else
  ``int64``), exact, so it doubles as a fingerprint with no collision.  At the bottom, one
  digit per set of interchangeable columns: the rank of their sorted codes in the combinatorial
  number system (``C(D + k - 1, k)`` values where a row of digits would take ``D**k``; decoded
  through a lookup table).  Above, every other column as a bit field (decoding is a shift and a
  mask).  The domains are the declared ones when the code space fits the bitmap below, else
  the reachable-value domains the model infers (:meth:`TableModel.value_domains`).
* **Wide states.**  A code space past ``2**WORD_BITS`` (62 bits) is packed in several
  ``int64`` words (:func:`_wide_layout`): each column a bit field within one word, the
  blocks' digit at the bottom of word 0, the transient columns in words after the state's
  (used between a chain's steps, never stored).  Codes are then ``(words, n)`` arrays; a
  move adds a constant to each word it writes; the visited set (:class:`_WideSet`) stores the
  codes once, in discovery order, under a table of their indices; first occurrences are found
  through a 64-bit hash of the words (:meth:`_Engine._first_wide`, exact on collisions).
* **Transition tables.**  For each group of moves, the key of a state is the mixed-radix number
  of its ``reads`` codes.  A dense table maps a key to its moves (count and offset), filled the
  first time a key is met from the model's (memoised) moves.  Since writes are among the reads,
  a move's effect on the packed state is a constant ``delta``: a successor is ``code + delta``.
  Moves that leave the canonical state unchanged, and repeats of an earlier move of the same
  key, are dropped when the table is filled (the serial explorer's transition count is kept).
* **Chains.**  A :class:`~memtypes.explore.table.Chain` is a group whose moves are followed by
  deterministic steps: each step is a dense table from its read codes to a ``delta``, applied
  to the codes left by the step before (the transient columns the steps use sit above the
  state's bits, so states stay below the visited set's space).  A chain's transitions are
  counted after its steps; one that changes nothing is dropped.
* **Symmetry.**  A group that writes one of a set of interchangeable columns looks the new
  block digit up in the block's merge table (the parent's other, sorted, columns ranked once per
  parent; rows filled on first use), or, for a block too large for one, merges the new value
  with ``minimum``/``maximum`` and re-ranks; a group that writes several sorts them with a
  sorting network.  Where a canonical parent holds equal values in two such columns,
  the group of the second is skipped: its successors are the first one's.
* **Visited set.**  An open-addressing hash table of packed codes (vectorised linear probing,
  load <= 1/2) until a bitmap over the code space would cost at most 64 bytes per stored state,
  then that bitmap (code spaces up to 2**30, 128 MiB): memory stays under 100 bytes per state.
* **Batches.**  Frontiers are expanded ``CHUNK`` parents at a time, and a chunk's successors
  are looked up in the visited set together.  The codes and parent indices are append-only
  arrays (:class:`_Grow`); a level's frontier is the range of codes the level before stored.
* **Memory bound.**  Past ``max_memory`` the stored codes and parents move to memory-mapped
  files in a temporary folder (:class:`_Spill`, removed on every exit path) and the search
  goes on (``result.spilled``).
* **Discovery order.**  Successors not yet visited are ordered by (parent, group, index of the
  move) -- the per-state explorer's order -- and the first occurrence of each is kept (two sorts
  of packed words).
* **Properties.**  The clauses of all properties are fused by the columns they read: one lazily
  filled table of clause bit masks per group of clauses, one lookup per group for a level's new
  states, and the undecided ``always`` properties tested together.

The columns decoded to check a level's new states are kept for expanding them at the next level.
Gathers use ``take`` without bounds checks (their indices are in range by construction).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from math import comb, factorial, prod as _prod
from typing import Any, Callable

from memtypes.explore.search import ExploreResult, _rebuild

__all__ = ["available", "supports", "small", "explore_vector", "Unsupported", "CHUNK",
           "DENSE_CODES", "MAX_TABLE", "SMALL_CODES"]

CHUNK = 1 << 13
"""Frontier states expanded per numpy batch.  Measured here on the bench models: 8,192 runs
15-35% faster than 4,096 (fewer numpy calls), 16,384 0-8% faster than 8,192 but with twice the
batch's arrays (passthrough's traced peak nears 100 bytes per state)."""
DENSE_CODES = 1 << 30
"""Code spaces up to this size may use a bitmap visited set (at most 128 MiB)."""
BITMAP_BYTES_PER_STATE = 64
"""The bitmap replaces the hash set once it costs at most this much per stored state."""
MAX_TABLE = 1 << 24
"""The largest dense transition or clause table (entries); larger models use the serial explorer."""
WORD_BITS = 62
"""Bits of one word of a packed code.  A model whose code space (its transient columns
included) passes ``2**WORD_BITS`` is packed *wide*: several ``int64`` words per state (every
column within one word, the blocks of interchangeable columns at the bottom of the first, the
transient columns in words of their own that states never store).  Tests lower it to force
several words on small models."""
MERGE_ENTRIES = 1 << 23
"""The largest merge table of a block of interchangeable columns (:meth:`_Block.fill_rows`)."""

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


def _joined(caches: list[dict]) -> dict:
    """The decoded columns of consecutive batches, joined (those every batch has)."""
    if not caches:
        return {}
    keys = set(caches[0]).intersection(*caches[1:])
    if len(caches) == 1:
        return {k: caches[0][k] for k in keys}
    return {k: np.concatenate([c[k] for c in caches]) for k in keys}


def _at(a, idx):
    """``a[idx]`` (along the last axis: a wide code's words gather together) for an index array
    known to be in range: ``take`` without bounds checks runs about twice as fast as fancy
    indexing (the explorer's hottest operation)."""
    return a.take(idx, axis=-1, mode="clip")



def initial_codes(model, eng: "_Engine", limit: int) -> tuple[Any, list[int], bool]:
    """The model's initial states as codes (a ``(words, n)`` array when ``eng`` is wide), without
    repeats, in order; their parent marks ``-1 - index``; and whether ``limit`` (-1: none) cut
    them.  Shared by this explorer and the cluster engine."""
    inits, ipar, have, cut = [], [], set(), False
    for i, s in enumerate(model.init_states()):
        c = tuple(eng.encode_words(s)) if eng.wide else eng.encode(s)
        if c in have:
            continue
        if len(inits) == limit:
            cut = True
            break
        have.add(c)
        inits.append(c)
        ipar.append(-1 - i)
    codes = (np.array(inits, np.int64).reshape(-1, eng.ks).T.copy() if eng.wide
             else np.array(inits, eng.dt))
    return codes, ipar, cut

def _len(codes) -> int:
    """How many states ``codes`` holds (one integer each, or one column of words when wide)."""
    return codes.shape[-1]


# --------------------------------------------------------------------------------------------
# Visited sets


class Unsupported(ValueError):
    """The model is table-driven but too large for the vector explorer (a column wider than a
    word, a transition or clause table past ``MAX_TABLE``)."""


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
        return (_at(self.bits, q >> 3) >> (q & 7).astype(np.uint8)) & np.uint8(1) == 0

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
        tab, mask = self.tab, self.mask
        h = self._slot(q)
        s = _at(tab, h)                      # the first probe, over all of ``q``
        out = s == q
        idx = np.flatnonzero(~out & (s != -1))
        h = (_at(h, idx) + 1) & mask
        while idx.size:                      # the few that collided
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


class _Visited:
    """The visited set: a hash set while a bitmap over the code space would cost more than
    ``BITMAP_BYTES_PER_STATE`` per stored state, then (and for good) the bitmap, which is
    faster.  A code space over ``DENSE_CODES`` keeps the hash set."""

    def __init__(self, space: int):
        self.space, self.n = space, 0
        self.bitmap = _Bitmap(space) if self._dense(0) else None
        self.hash = None if self.bitmap is not None else _HashSet(log2=10)

    def _dense(self, n: int) -> bool:
        return self.space <= DENSE_CODES and self.space / 8 <= BITMAP_BYTES_PER_STATE * max(n, 1 << 12)

    def unseen(self, q):
        return (self.bitmap or self.hash).unseen(q)

    def add(self, q) -> None:
        self.n += q.size
        if self.bitmap is None and self._dense(self.n):
            old = self.hash.tab[self.hash.tab != -1]
            self.hash = None                # (freed before the bitmap exists: a lower peak)
            old.sort()
            self.bitmap = _Bitmap(self.space)
            self.bitmap.add(old)
        (self.bitmap or self.hash).add(q)

    @property
    def nbytes(self) -> int:
        return (self.bitmap or self.hash).nbytes


def _hash64(codes):
    """A 64-bit hash (``uint64``) of each wide code (``codes``: a row per word)."""
    h = codes[0].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for i in range(1, codes.shape[0]):
        h ^= h >> np.uint64(31)
        h += codes[i].astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0x165667B19E3779F9)
    return h


class _Spill:
    """A temporary folder of memory-mapped arrays (made on first use; :meth:`close` removes it,
    and the search calls it on every exit path)."""

    def __init__(self, where: str | None = None):
        self.where, self.dir, self.files = where, None, 0

    def empty(self, dtype, size: int):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="memtypes-spill-", dir=self.where)
        self.files += 1
        return np.memmap(os.path.join(self.dir, f"{self.files}.bin"), dtype=dtype, mode="w+",
                         shape=(max(size, 1),))

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class _Grow:
    """An append-only array: in memory (grown in place by ``realloc``), or, once
    :meth:`to_disk`, a memory-mapped file (grown by copying into a larger one)."""

    def __init__(self, dtype, cap: int = 1 << 12):
        self.a = np.empty(cap, dtype)
        self.n = 0
        self.spill: _Spill | None = None

    def append(self, x) -> None:
        m = x.size
        if self.n + m > self.a.size:
            self._grow(self.n + m)
        self.a[self.n:self.n + m] = x
        self.n += m

    def _grow(self, need: int) -> None:
        cap = max(need, self.a.size + (self.a.size >> 1))
        if self.spill is None:
            self.a.resize(cap, refcheck=False)
        else:
            new = self.spill.empty(self.a.dtype, cap)
            new[:self.n] = self.a[:self.n]
            old, self.file = self.file, new.filename
            self.a = new.view(np.ndarray)
            try:
                os.remove(old)              # (its pages stay mapped while anything views it)
            except OSError:
                pass

    def to_disk(self, spill: _Spill) -> None:
        new = spill.empty(self.a.dtype, max(self.a.size, 2 * self.n))
        new[:self.n] = self.a[:self.n]
        self.a, self.spill, self.file = new.view(np.ndarray), spill, new.filename

    def view(self, a: int, b: int):
        return self.a[a:b]

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (nothing once on disk: the page cache decides)."""
        return 0 if self.spill is not None else self.n * self.a.itemsize


class _WideSet:
    """The visited set of wide codes (``k`` words per state): the codes themselves, in discovery
    order, one growing ``int64`` array per word (grown in place: ``realloc`` remaps the pages of
    a large block instead of copying them, and pages not yet written take no memory), and an
    open-addressing table of their *indices* (``int32``, ``-1`` empty; linear probing, load
    <= 1/2), so the set costs ``8k`` bytes per state plus 8-16 bytes of table.  The codes double
    as the frontier of the next level and as the fingerprints of traces: nothing is stored
    twice."""

    _MULT = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
    REBUILD = 1 << 20
    """Codes rehashed per batch when the table grows (bounds the temporary arrays)."""

    def __init__(self, k: int, log2: int = 10):
        self.k, self.n = k, 0
        self.store = [_Grow(np.int64) for _ in range(k)]
        self._table(log2)

    @property
    def words(self):
        return [g.a for g in self.store]

    def to_disk(self, spill: _Spill) -> None:
        for g in self.store:
            g.to_disk(spill)

    def _table(self, log2: int) -> None:
        self.log2 = log2
        self.mask = (1 << log2) - 1
        self.tab = np.full(1 << log2, -1, np.int32)

    def _slot(self, q):
        """Table slots of codes ``q`` (``k`` rows): the words multiplied by odd constants and
        summed, mixed once (xor-shift, multiply), top bits (Fibonacci hashing)."""
        m = self._MULT
        h = q[0].astype(np.uint64) * np.uint64(m[0])
        for i in range(1, self.k):
            h += q[i].astype(np.uint64) * np.uint64(m[i % len(m)] | 1)
        h ^= h >> np.uint64(29)
        h *= np.uint64(m[0])
        return (h >> np.uint64(64 - self.log2)).astype(np.int64)

    def _equal(self, ss, q, idx):
        """Whether stored codes ``ss`` equal codes ``q[:, idx]`` (word 0 first, the others
        only where it matched)."""
        eq = _at(self.words[0], ss) == _at(q[0], idx)
        for i in range(1, self.k):
            sub = np.flatnonzero(eq)
            if not sub.size:
                break
            eq[sub] = _at(self.words[i], _at(ss, sub)) == _at(q[i], _at(idx, sub))
        return eq

    def seen(self, q):
        tab, mask = self.tab, self.mask
        h = self._slot(q)
        ss = _at(tab, h).astype(np.int64)
        # the first probe over all of ``q`` (an empty slot, -1, gathers state 0: masked out)
        live = ss >= 0
        words = self.words
        out = (_at(words[0], ss) == q[0]) & live
        for i in range(1, self.k):
            out &= _at(words[i], ss) == q[i]
        idx = np.flatnonzero(live & ~out)        # the few that collided
        h = (_at(h, idx) + 1) & mask
        ss = _at(tab, h).astype(np.int64)
        live = ss >= 0
        idx, h, ss = idx[live], h[live], ss[live]
        while idx.size:
            eq = self._equal(ss, q, idx)
            out[idx[eq]] = True
            go = ~eq
            idx, h = idx[go], (h[go] + 1) & mask
            ss = _at(tab, h).astype(np.int64)
            live = ss >= 0
            idx, h, ss = idx[live], h[live], ss[live]
        return out

    def unseen(self, q):
        return ~self.seen(q)

    def add(self, q) -> None:
        """Store codes ``q`` (``k`` rows: distinct and not yet present) as the next states."""
        n0, m = self.n, _len(q)
        for g, row in zip(self.store, q):
            g.append(row)
        self.n = n0 + m
        if 2 * self.n > self.tab.size:
            log2 = self.log2
            while (1 << log2) < 2 * self.n:
                log2 += 1
            self.tab = None                 # (freed before the new table exists: a lower peak)
            self._table(log2)
            for a in range(0, self.n, self.REBUILD):
                b = min(self.n, a + self.REBUILD)
                self._insert(np.arange(a, b, dtype=np.int32), self.codes(a, b))
        else:
            self._insert(np.arange(n0, n0 + m, dtype=np.int32), q)

    def _insert(self, idx, q) -> None:
        h = self._slot(q)
        tab, mask = self.tab, self.mask
        while idx.size:
            fi = np.flatnonzero(_at(tab, h) == -1)
            tab[h[fi]] = idx[fi]                 # one of the claimants of each slot wins
            lose = np.ones(idx.size, bool)
            lose[fi[tab[h[fi]] == idx[fi]]] = False
            idx, h = idx[lose], (h[lose] + 1) & mask

    def codes(self, a: int, b: int):
        """The codes of states ``a`` to ``b - 1`` (a copy: the words may move as they grow)."""
        return np.stack([w[a:b] for w in self.words])

    def code(self, i: int) -> int:
        """State ``i``'s code as one integer (word ``j`` at bit ``64 j``)."""
        return sum(int(w[i]) << (64 * j) for j, w in enumerate(self.words))

    @property
    def nbytes(self) -> int:
        return self.tab.nbytes + sum(g.nbytes for g in self.store)


# --------------------------------------------------------------------------------------------
# Tables


class _Table:
    """A lazily filled dense transition table over one group's read codes: for each key, its
    distinct non-trivial moves (a chain's: all its moves; ``cnt``, from ``off`` in the move
    arrays) and the number of moves the model lists (``tcnt``: the serial explorer's
    transitions, duplicates included)."""

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


class _Step:
    """A dense table over a chain step's read codes: its effect on the packed code (``delta``:
    its writes are among its reads), filled on first use."""

    def __init__(self, owner: tuple[int, int], step, radix: list[int], eng: "_Engine"):
        self.owner, self.step, self.radix = owner, step, radix    # (chain, step index) of the model
        self.kstr = [_prod(radix[j + 1:]) for j in range(len(radix))]
        self.wpos = [step.reads.index(c) for c in step.writes]
        self.wstride = [eng.stride[c] for c in step.writes]
        self.wword = [eng.word[c] for c in step.writes]
        self.twords = sorted(set(self.wword))
        self.delta = np.zeros((eng.kf, _prod(radix)) if eng.wide else _prod(radix), eng.dt)
        self.filled = np.zeros(_prod(radix), bool)


class _Group:
    def __init__(self, gi, g, table: _Table, eng: "_Engine"):
        self.gi, self.g, self.table = gi, g, table
        self.steps: list[_Step] = []        # a chain's steps (TableModel Chain)
        self.reads = g.reads
        self.wpos = [g.reads.index(c) for c in g.writes]   # position of each write among the reads
        # plain written columns change the packed code by a constant per move (``delta``);
        # written columns of a block are kept per move (``symw``) and the block re-ranked
        self.wplain = [j for j, c in enumerate(g.writes) if c not in eng.inblock]
        self.wstride = np.array([eng.stride[g.writes[j]] for j in self.wplain], np.int64)
        self.wkstr = np.array([table.kstr[self.wpos[j]] for j in self.wplain], np.int64)
        self.wradix = np.array([table.radix[self.wpos[j]] for j in self.wplain], np.int64)
        self.wword = np.array([eng.word[g.writes[j]] for j in self.wplain], np.int64)
        self.twords = sorted(set(self.wword.tolist()))      # the words its plain writes touch
        # a wide code's delta has a row per word (a chain's: with the transient words)
        self.dwords = (eng.kf if getattr(g, "steps", ()) else eng.ks) if eng.wide else 0
        self.delta = np.zeros((self.dwords, 0) if eng.wide else 0, eng.dt)
        self.wblocks: dict[int, list[tuple[int, int]]] = {}  # block -> [(write index, place)]
        for j, c in enumerate(g.writes):
            if c in eng.inblock:
                bi, place = eng.inblock[c]
                self.wblocks.setdefault(bi, []).append((j, place))
        self.symw: dict[int, object] = {j: np.zeros(0, eng.blocks[bi].cdt)
                                        for bi, ws in self.wblocks.items() for j, _ in ws}
        # one written column of one block: merged by insertion (see _Engine.merged)
        self.sym = None
        if len(self.wblocks) == 1:
            (bi, ws), = self.wblocks.items()
            self.sym = (bi, ws[0][1] if len(ws) == 1 else None)
        self.twin = None                # (column, previous column of the set): see _Engine
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


class _Block:
    """A set of ``k`` interchangeable columns over ``D`` codes, packed as one digit: the rank of
    its sorted codes ``o_0 <= ... <= o_{k-1}`` in the combinatorial number system,
    ``sum_j C(o_j + j, j + 1)`` -- ``C(D + k - 1, k)`` values instead of ``D**k``."""

    def __init__(self, cols: tuple[int, ...], D: int, stride: int, dt):
        self.cols, self.k, self.D, self.stride = cols, len(cols), D, stride
        self.R = comb(D + self.k - 1, self.k)
        # term j of the rank for each code, times the digit's stride
        self.T = [np.array([comb(v + j, j + 1) * stride for v in range(D)], np.int64).astype(dt)
                  for j in range(self.k)]
        self.table = None
        # the block's columns are decoded to (and merged in) the narrowest type of their codes
        self.cdt = np.uint8 if D <= 256 else np.uint16 if D <= 1 << 16 else np.int64
        # C(u, j + 1) for every u: the computed unranking corrects its guesses against them
        self.U = [np.array([comb(u, j + 1) for u in range(D + self.k - 1)], np.int64)
                  for j in range(self.k)]
        rows = comb(D + self.k - 2, self.k - 1)
        self.mergeable = rows * D <= MERGE_ENTRIES
        if self.mergeable:                  # filled row by row (fill_rows)
            self.merge = np.zeros(rows * D, self.T[0].dtype)
            self.filled = np.zeros(rows, bool)
        self._others = None

    def fill_rows(self, r) -> None:
        """Fill rows ``r`` (ranks of ``k - 1`` sorted codes) of the merge table ``merge``:
        ``merge[r * D + v]`` is the digit (times the stride) of those codes with code ``v``
        added, so that a move writing one column of the block costs one lookup instead of a
        merge (the table exists when it has at most ``MERGE_ENTRIES`` entries: ``mergeable``)."""
        todo = r[~_at(self.filled, r)]
        if not todo.size:
            return
        todo = np.unique(todo)
        self.filled[todo] = True
        if self._others is None:            # the sorted codes of every rank of k - 1 codes
            self._others = [(u - j).astype(np.int32)
                            for j, u in enumerate(_colex(self.D + self.k - 2, self.k - 1))]
        x = [np.repeat(_at(o, todo), self.D) for o in self._others]
        v = np.tile(np.arange(self.D, dtype=np.int32), todo.size)
        m = _at(self.T[0], np.minimum(x[0], v)).astype(np.int64)
        for j in range(1, len(x)):
            m += _at(self.T[j], np.minimum(x[j], np.maximum(x[j - 1], v)))
        m += _at(self.T[len(x)], np.maximum(x[-1], v))
        self.merge[(todo[:, None] * self.D + np.arange(self.D)).ravel()] = m

    def dropped(self, cols: list, p: int):
        """The rank of sorted codes ``cols`` (the block's columns of canonical states) without
        the one at place ``p``: the row of the merge table (:meth:`fill_rows`)."""
        r = 0
        for j, o in enumerate(cols):
            if j != p:
                i = j if j < p else j - 1          # its place once ``p`` is gone
                r = r + _at(self.U[i], o.astype(np.int64) + i)
        return r

    def term(self, j: int, o):
        """Term ``j`` of the rank of codes ``o`` (arrays), times the digit's stride: computed for
        the two lowest terms of the bottom block, looked up otherwise."""
        if self.stride == 1 and j < 2:
            if j == 0:
                return o
            o = o.astype(self.T[1].dtype)
            return (o * (o + 1)) >> 1
        return _at(self.T[j], o)

    def rank(self, codes: list[int]) -> int:
        return sum(comb(o + j, j + 1) for j, o in enumerate(sorted(codes))) * self.stride

    def unrank(self, r) -> list:
        """The sorted codes of digits ``r``: one lookup per column in a table of every digit's
        codes (built on first use when the block has at most 2**23 digits)."""
        if self.table is None and self.R <= 1 << 23:
            self.table = [(u - j).astype(self.cdt) for j, u in enumerate(_colex(self.D + self.k - 1, self.k))]
        if self.table is not None:
            return [_at(t, r) for t in self.table]
        return [o.astype(self.cdt) for o in self._unrank(r)]

    def _unrank(self, r) -> list:
        """The sorted codes of digits ``r``, term by term from the largest: ``u_j`` is the
        largest ``u`` with ``C(u, j + 1) <= r``, guessed from ``((j + 1)! r) ** (1 / (j + 1))``
        (the geometric mean of ``u, u - 1, ...``) and corrected exactly against ``U``."""
        r = r.astype(np.int64)
        out = [None] * self.k
        for j in range(self.k - 1, -1, -1):
            U, last = self.U[j], len(self.U[j]) - 1
            if j == 0:
                u = r
            else:
                x = r.astype(np.float64) * factorial(j + 1)
                g = np.sqrt(x) if j == 1 else np.cbrt(x) if j == 2 else x ** (1.0 / (j + 1))
                u = np.clip((g + j / 2).astype(np.int64), 0, last)
                while True:
                    up = (u < last) & (_at(U, np.minimum(u + 1, last)) <= r)
                    down = _at(U, u) > r
                    if not (up.any() or down.any()):
                        break
                    u = u + up - down
            r = r - _at(U, u)
            out[j] = u - j
        return out


def _colex(n: int, k: int) -> list:
    """Every ``k``-combination ``u_0 < ... < u_{k-1}`` of ``range(n)`` in colexicographic order
    (the order of their ranks ``sum_j C(u_j, j + 1)``), as ``k`` arrays: for each largest
    element ``m``, the ``C(m, k - 1)`` first combinations of one element fewer."""
    if k == 1:
        return [np.arange(n, dtype=np.int64)]
    prev = _colex(n - 1, k - 1)
    counts = np.array([comb(m, k - 1) for m in range(k - 1, n)], np.int64)
    starts = np.cumsum(counts) - counts
    rows = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    return [_at(p, rows) for p in prev] + [np.repeat(np.arange(k - 1, n, dtype=np.int64), counts)]


def _block_digits(radix: list[int], symmetric) -> tuple[set[int], int, list]:
    """The blocks of interchangeable columns as mixed-radix digits at the bottom of a code: each
    block's radix is the number of multisets of its size over its columns' domain (the
    combinatorial number system).  Returns ``(columns in a block, product of the radices,
    [(columns, stride, radix), ...])``."""
    sets = [tuple(s) for s in symmetric if len(s) > 1]
    low, blocks = 1, []
    for sym in sets:
        R = comb(radix[sym[0]] + len(sym) - 1, len(sym))
        blocks.append((sym, low, R))
        low *= R
    return {c for s in sets for c in s}, low, blocks


def _layout(radix: list[int], symmetric, transient=frozenset()):
    """The packed code's layout: at the bottom one mixed-radix digit per block of
    interchangeable columns (a slot changing moves the code a little: the visited bitmap is
    touched close to the parent); above them every other column is a bit field, its domain size
    rounded up to a power of two (decoding is a shift and a mask), the ``transient`` columns
    last (zero in every state, so states stay below ``space``).  Returns ``(space, low, bit
    offsets, field bits, blocks, full)``: ``low`` is the product of the blocks' radices, a
    column's stride is ``low << offset``, blocks are ``(columns, stride, radix)``, ``full`` is
    the code space with the transient fields."""
    inblock, low, blocks = _block_digits(radix, symmetric)
    offs, bits, off = {}, {}, 0
    real = None
    for c in sorted(range(len(radix)), key=lambda c: c in transient):
        if c in transient and real is None:
            real = off
        if c not in inblock:
            offs[c], bits[c] = off, (radix[c] - 1).bit_length()
            off += bits[c]
    return low << (off if real is None else real), low, offs, bits, blocks, low << off


def _wide_layout(radix: list[int], symmetric, transient, word_bits: int):
    """A wide code's layout: the blocks' digits at the bottom of word 0 (as in :func:`_layout`),
    then every other state column as a bit field in the first word with room for it (words
    filled in column order, at most ``word_bits`` bits each, word 0 counting its blocks' bits),
    then the transient columns in words after the state's.  Returns ``(low, blocks, place,
    state words, words)`` with ``place[c] = (word, bit offset, field bits)``."""
    inblock, low, blocks = _block_digits(radix, symmetric)
    if low >= 1 << 62:
        raise Unsupported(f"the interchangeable columns' digits need {(low - 1).bit_length()} bits "
                          "(at most 62)")
    place: dict[int, tuple[int, int, int]] = {}
    word, used = 0, (low - 1).bit_length()
    last_state = 0
    for tr in (False, True):
        if tr and any(c in transient for c in range(len(radix))):
            word, used = last_state + 1, 0       # transient columns: words of their own
        for c in range(len(radix)):
            if c in inblock or (c in transient) != tr:
                continue
            b = (radix[c] - 1).bit_length()
            if b > 62:
                raise Unsupported(f"column {c}: {radix[c]} values need {b} bits (at most 62)")
            if used + b > max(word_bits, b) and used:
                word, used = word + 1, 0
            place[c] = (word, used - ((low - 1).bit_length() if word == 0 else 0), b)
            used += b
            if not tr:
                last_state = word
    words = max([w for w, _, _ in place.values()] + [0]) + 1
    return low, blocks, place, last_state + 1, words


class _Engine:
    """Everything one search keeps: domains, strides, transition and clause tables."""

    def __init__(self, model):
        self.model = model
        model.table_setup()
        # Pack over the declared domains when they are small enough for the bitmap; else over
        # the reachable-value domains (a fixpoint over the groups: TableModel.value_domains).
        declared = [c.values for c in model.columns]
        transient = frozenset(c for c, col in enumerate(model.columns) if col.transient)
        t0 = time.perf_counter()
        small = _layout([len(d) for d in declared], model.symmetric, transient)[0] <= DENSE_CODES
        infer = getattr(model, "infer_domains", True)
        self.values = declared if small or not infer else list(model.value_domains())
        self.model_seconds = time.perf_counter() - t0     # time spent calling the model
        self.codes = [{v: i for i, v in enumerate(d)} for d in self.values]
        self.radix = [max(1, len(d)) for d in self.values]
        # ``space``: the codes of states (what the visited set covers); ``full``: with the
        # transient columns chains use between their steps
        self.space, self.low, self.off, fbits, blocks, self.full = _layout(self.radix, model.symmetric,
                                                                            transient)
        # narrow: one integer per state; wide: ``ks`` words per state (``kf`` with the words of
        # the transient columns, used between a chain's steps), ``codes[w]`` the w-th word
        self.wide = self.full >= 1 << WORD_BITS
        self.ks = self.kf = 1
        self.word = {c: 0 for c in range(len(self.radix))}
        if self.wide:
            self.low, blocks, place, self.ks, self.kf = _wide_layout(
                self.radix, model.symmetric, transient, WORD_BITS)
            self.word = {c: w for c, (w, _, _) in place.items()}
            self.off = {c: o for c, (_, o, _) in place.items()}
            fbits = {c: b for c, (_, _, b) in place.items()}
        self.dt = np.int32 if self.full < 1 << 31 else np.int64  # half the bandwidth when it fits
        # a digit per block of interchangeable columns at the bottom, bit fields for the others above
        self.stride: list = [(self.low if self.word[c] == 0 else 1) << self.off[c] if c in self.off
                             else None for c in range(len(self.radix))]
        self.mask = {c: (1 << b) - 1 for c, b in fbits.items()}
        self.inblock: dict[int, tuple[int, int]] = {}
        self.blocks: list = []
        for bi, (sym, stride, _R) in enumerate(blocks):
            for j, c in enumerate(sym):
                self.inblock[c] = (bi, j)
            self.blocks.append(_Block(sym, self.radix[sym[0]], stride, self.dt))
        self.top = len(self.blocks) - 1     # the top block's digit needs no modulo
        tables: dict = {}
        steps: dict = {}                # shared step tables (Step.table)
        self.groups: list[_Group] = []
        for gi, g in enumerate(model.groups):
            # a group (not a step) meets transient columns idle, at code 0: one entry along them
            rr = [1 if c in transient else self.radix[c] for c in g.reads]
            if _prod(rr) > MAX_TABLE:
                raise Unsupported(f"group {g.name}: transition table exceeds {MAX_TABLE} entries")
            tid = (g.table or f"#{gi}", tuple(rr))
            t = tables.get(tid)
            if t is None:
                t = tables[tid] = _Table(rr)
            grp = _Group(gi, g, t, self)
            for si, st in enumerate(getattr(g, "steps", ())):
                sr = [self.radix[c] for c in st.reads]
                if _prod(sr) > MAX_TABLE:
                    raise Unsupported(f"step {st.name} of {g.name}: table exceeds {MAX_TABLE} entries")
                sid = (st.table, tuple(st.reads), tuple(st.writes)) if st.table else None
                stab = steps.get(sid) if sid else None
                if stab is None:
                    stab = _Step((gi, si), st, sr, self)
                    if sid:
                        steps[sid] = stab
                grp.steps.append(stab)
            self.groups.append(grp)
        self._find_twins()
        self.gbits = max(1, len(self.groups).bit_length())
        self.mbits = 1                  # bits of a move index (grows as the tables fill)
        self.cbits = max(1, (self.space - 1).bit_length())
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
            sym = self.blocks[grp.sym[0]].cols
            c, prev = sym[grp.sym[1]], sym[grp.sym[1] - 1]
            want = tuple(prev if x == c else x for x in grp.reads)
            wantw = tuple(prev if x == c else x for x in grp.g.writes)
            for other in self.groups[:grp.gi]:
                if other.table is grp.table and other.reads == want and other.g.writes == wantw:
                    grp.twin = (c, prev)
                    break

    def encode(self, state) -> int:
        """The packed code of ``state`` as one integer (wide: word ``j`` at bit ``64 j``)."""
        if not self.wide:
            out = sum(code[v] * st for code, v, st in zip(self.codes, state, self.stride) if st is not None)
            return out + sum(b.rank([self.codes[c][state[c]] for c in b.cols]) for b in self.blocks)
        return sum(w << (64 * j) for j, w in enumerate(self.encode_words(state)))

    def encode_words(self, state) -> list[int]:
        """The words of a wide code of ``state`` (its state words only)."""
        out = [0] * self.ks
        for c, (code, v, st) in enumerate(zip(self.codes, state, self.stride)):
            if st is not None and self.word[c] < self.ks:
                out[self.word[c]] += code[v] * st
        out[0] += sum(b.rank([self.codes[c][state[c]] for c in b.cols]) for b in self.blocks)
        return out

    def slim(self, k, v):
        """Decoded column ``k`` in the narrowest type of its codes (kept for the next level:
        a level's columns take a byte per state each instead of eight)."""
        m = self.mask.get(k) if isinstance(k, int) else None
        if m is None or v.dtype.itemsize == 1:
            return v
        return v.astype(np.uint8 if m < 1 << 8 else np.uint16 if m < 1 << 16 else v.dtype)

    def orbits(self, codes) -> int:
        """How many states the canonical ``codes`` stand for: per state, the product over the
        blocks of ``k! / prod(m_v!)`` (``m_v``: how many of the block's ``k`` columns hold code
        ``v``), the size of its orbit under permutations of each set of interchangeable columns.
        Summed over the reachable representatives of a model that is symmetric as declared
        (and whose initial states are), it is the unreduced search's state count."""
        total = 0
        for a in range(0, _len(codes), 1 << 18):
            part = codes[..., a:a + (1 << 18)]
            cache: dict = {}
            size = np.ones(_len(part), np.float64)
            for b in self.blocks:
                cols = [self.column(part, c, cache) for c in b.cols]
                run = np.ones(_len(part), np.int64)
                for j in range(1, b.k):      # position within its run of equal codes, from 1
                    run = np.where(cols[j] == cols[j - 1], run + 1, 1)
                    size *= (j + 1) / run    # k! / prod(run lengths!), one factor at a time
            total += int(np.rint(size).sum())
        return total

    def w0(self, codes):
        """The word of ``codes`` that holds the blocks' digits."""
        return codes[0] if self.wide else codes

    def plus(self, base, delta, idx, words=(), keep: bool = False):
        """``base`` (gathered codes) plus the moves' deltas ``delta[idx]``.  Wide: only the
        ``words`` the moves write are added, in place unless ``keep`` (the base is a fresh
        gather), and a chain's delta adds the transient words (zero in states)."""
        if not self.wide:
            return base + _at(delta, idx)
        if delta.shape[0] > base.shape[0]:
            out = np.zeros((delta.shape[0], base.shape[1]), np.int64)
            out[:base.shape[0]] = base
        else:
            out = base.copy() if keep else base
        for w in words:
            out[w] += _at(delta[w], idx)
        return out

    def differs(self, a, b):
        """Per state, whether codes ``a`` and ``b`` differ."""
        return (a != b).any(axis=0) if self.wide else a != b

    def decode_many(self, codes) -> list[tuple]:
        """The model states of packed ``codes``."""
        cache: dict = {}
        cols = [list(map(self.values[c].__getitem__, self.column(codes, c, cache).tolist()))
                for c in range(len(self.radix))]
        return list(zip(*cols))

    # -- decoding helpers ----------------------------------------------------------------------
    def column(self, codes, c: int, cache: dict):
        v = cache.get(c)
        if v is None:
            if c in self.inblock:
                bi = self.inblock[c][0]
                b = self.blocks[bi]
                c0 = self.w0(codes)
                lo = c0 - self._high(codes, cache) * self.low
                digit = lo // b.stride if bi == self.top else (lo // b.stride) % b.R
                for cc, o in zip(b.cols, b.unrank(digit)):
                    cache[cc] = o
                cache[("rest", bi)] = c0 - digit * b.stride
                return cache[c]
            off, w = self.off[c], self.word[c]
            if w and w >= codes.shape[0]:  # a transient column of a wide state: code 0
                v = cache[c] = np.zeros(_len(codes), np.int64)
                return v
            hi = self._high(codes, cache) if w == 0 else codes[w]
            v = cache[c] = ((hi >> off) if off else hi) & self.mask[c]
        return v

    def _high(self, codes, cache: dict):
        """The bit fields of ``codes`` (above the blocks' digits)."""
        if self.low == 1:
            return self.w0(codes)
        hi = cache.get("high")
        if hi is None:
            hi = cache["high"] = self.w0(codes) // self.low
        return hi

    def key(self, codes, reads, kstr, cache: dict):
        """The table keys of ``codes`` (mixed radix over ``reads``, strides ``kstr``).  The
        part over columns outside the blocks is kept in ``cache``: the groups of one table on
        different columns of a block share it."""
        shared = tuple((c, s) for c, s in zip(reads, kstr) if c not in self.inblock)
        k = cache.get(shared)
        if k is None and shared:
            k = cache[shared] = self._key(codes, shared, cache)
        rest = [(c, s) for c, s in zip(reads, kstr) if c in self.inblock]
        if not rest:
            return k
        more = self._key(codes, rest, cache)
        return more if k is None else k + more

    def _key(self, codes, terms, cache: dict):
        k = None
        for c, s in terms:
            term = self.column(codes, c, cache)
            if term.dtype.itemsize < 4:           # a block's narrow codes
                term = term.astype(np.int32)
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
                if not grp.steps and grp.noop(wc, rc):
                    continue                  # the canonical successor is the state itself
                moves += 1                    # the serial explorer counts it
                if wc in have and not grp.steps:
                    continue                  # repeats an earlier move of this state (a chain's
                                              # moves are counted after their steps)
                have.add(wc)
                t.move_key.append(k)
                t.move_writes.append(wc)
            t.cnt[k] = len(t.move_key) - start
            t.off[k] = start
            t.tcnt[k] = moves
            self.mbits = max(self.mbits, len(t.move_key).bit_length())
            t.single = t.single and t.cnt[k] <= 1
        self.model_seconds += time.perf_counter() - t0

    def fill_step(self, grp: _Group, st: _Step, keys) -> None:
        t0 = time.perf_counter()
        step = st.step
        for k in np.unique(keys).tolist():
            rc = [(k // s) % r for s, r in zip(st.kstr, st.radix)]
            vals = tuple(self.values[c][q] for c, q in zip(step.reads, rc))
            w = self.model.step_writes(*st.owner, vals)
            try:
                wc = [self.codes[c][v] for c, v in zip(step.writes, w)]
            except KeyError as e:
                raise ValueError(f"step {step.name} of {grp.g.name}: value {e.args[0]!r} is not in "
                                 f"the domain of a written column {step.writes}") from None
            if self.wide:
                for q, j, s, w in zip(wc, st.wpos, st.wstride, st.wword):
                    st.delta[w, k] += (q - rc[j]) * s
            else:
                st.delta[k] = sum((q - rc[j]) * s for q, j, s in zip(wc, st.wpos, st.wstride))
            st.filled[k] = True
        self.model_seconds += time.perf_counter() - t0

    def chained(self, grp: _Group, succ):
        """The codes after a chain's steps, applied in order to the codes after its move."""
        for st in grp.steps:
            keys = self.key(succ, st.step.reads, st.kstr, {})
            miss = ~_at(st.filled, keys)
            if miss.any():
                self.fill_step(grp, st, keys[miss])
            if self.wide:
                for w in st.twords:
                    succ[w] += _at(st.delta[w], keys)
            else:
                succ = succ + _at(st.delta, keys)
        if self.wide:
            if self.kf > self.ks:
                if succ[self.ks:].any():
                    raise ValueError(f"chain {grp.g.name}: its last step leaves a transient column set")
                succ = succ[:self.ks]
        elif self.full != self.space and (succ >= self.space).any():
            raise ValueError(f"chain {grp.g.name}: its last step leaves a transient column set")
        return succ

    def deltas(self, grp: _Group):
        t = grp.table
        n = len(t.move_key)
        have = _len(grp.delta)
        if have < n:
            keys = np.array(t.move_key[have:], np.int64)
            w = np.array(t.move_writes[have:], np.int64).reshape(n - have, len(grp.wpos))
            wp = w[:, grp.wplain]
            old = (keys[:, None] // grp.wkstr[None, :]) % grp.wradix[None, :]
            if self.wide:
                per = (wp - old) * grp.wstride[None, :]
                d = np.zeros((grp.dwords, n - have), np.int64)
                for wi in range(grp.dwords):
                    sel = grp.wword == wi
                    if sel.any():
                        d[wi] = per[:, sel].sum(axis=1)
                grp.delta = np.concatenate([grp.delta, d], axis=1)
            else:
                d = ((wp - old) * grp.wstride[None, :]).sum(axis=1)
                grp.delta = np.concatenate([grp.delta, d.astype(self.dt)])
            for j in grp.symw:
                bi = self.inblock[grp.g.writes[j]][0]
                grp.symw[j] = np.concatenate([grp.symw[j], w[:, j].astype(self.blocks[bi].cdt)])
        return grp.delta

    def merged(self, grp: _Group, parent, midx, cache: dict, codes):
        """Successors of a group that writes one column of a block, canonical.  The parent is
        canonical, so its other columns of the block are sorted: the block's new digit is one
        lookup in its merge table (row: the others' rank, per parent), or, for a block without
        one, the new value merged into them (``2(k-1)`` minimum/maximum over whole arrays) and
        the block re-ranked (``k`` lookups)."""
        bi, p = grp.sym
        b = self.blocks[bi]
        cols = [self.column(codes, c, cache) for c in b.cols]
        rest = cache[("rest", bi)]
        v = _at(grp.symw[grp.wblocks[bi][0][0]], midx)
        if b.mergeable:                    # one lookup per successor
            row = cache.get(("row", bi, p))
            if row is None:                # per parent: its merge-table row (filled if new)
                r = b.dropped(cols, p)
                b.fill_rows(r)
                row = cache[("row", bi, p)] = (r * b.D).astype(np.int32)
            low = parent(rest) + self.delta0(grp, midx) + _at(b.merge, parent(row) + v)
            return self.rejoin(grp, parent, codes, midx, low)
        x = [parent(o) for j, o in enumerate(cols) if j != p]
        term = b.term
        succ = parent(rest) + self.delta0(grp, midx) + term(0, np.minimum(x[0], v))
        for j in range(1, len(x)):
            succ += term(j, np.minimum(x[j], np.maximum(x[j - 1], v)))
        return self.rejoin(grp, parent, codes, midx, succ + term(len(x), np.maximum(x[-1], v)))

    def delta0(self, grp: _Group, midx):
        """The moves' deltas on the word holding the blocks."""
        return _at(grp.delta[0] if self.wide else grp.delta, midx)

    def rejoin(self, grp: _Group, parent, codes, midx, low):
        """Successors whose block word is ``low``: the other words of a wide code are the
        parent's plus the moves' deltas."""
        if not self.wide:
            return low
        out = parent(codes)
        out[0] = low
        for w in grp.twords:
            if w:
                out[w] += _at(grp.delta[w], midx)
        return out

    def canon(self, grp: _Group, parent, midx, cache: dict, codes):
        """Successors of a group that writes several columns of blocks: each block's columns
        (the parent's, with the written ones replaced) sorted by a network of minimum/maximum,
        then re-ranked."""
        succ = parent(self.w0(codes)) + self.delta0(grp, midx)
        for bi, ws in grp.wblocks.items():
            b = self.blocks[bi]
            cols = [parent(self.column(codes, c, cache)) for c in b.cols]
            succ = succ - parent(self.w0(codes) - cache[("rest", bi)])
            for j, place in ws:
                cols[place] = _at(grp.symw[j], midx)
            for i, j in _network(b.k):
                lo = np.minimum(cols[i], cols[j])
                cols[j] = np.maximum(cols[i], cols[j])
                cols[i] = lo
            for j, o in enumerate(cols):
                succ = succ + b.term(j, o)
        return self.rejoin(grp, parent, codes, midx, succ)

    # -- one chunk of a level ----------------------------------------------------------------------
    def expand(self, codes, cache: dict):
        """Successors of ``codes``: ``(parts, transitions)`` with parts ``(succ, parent row,
        move index, group)`` in group order (a key's moves have increasing indices).  ``cache``
        holds the columns of ``codes`` decoded so far."""
        parts = []
        trans = 0
        for grp in self.groups:
            t = grp.table
            keys = self.key(codes, grp.reads, t.kstr, cache)
            cnt = _at(t.cnt, keys)
            if (cnt < 0).any():
                self.fill(grp, keys[cnt < 0])
                cnt = _at(t.cnt, keys)
            if not grp.steps:             # (a chain's transitions are known after its steps)
                trans += int(_at(t.tcnt, keys).sum())
            live = cnt > 0
            if grp.twin is not None:
                c, prev = grp.twin
                live &= self.column(codes, c, cache) != self.column(codes, prev, cache)
            sel = np.flatnonzero(live)
            if not sel.size:
                continue
            if t.single:                  # at most one move per key: no repetition
                reps = None
                par, midx = sel, _at(t.off, _at(keys, sel))
            else:                         # the moves of a key are contiguous from its offset
                reps = _at(cnt, sel).astype(np.int64)
                par = np.repeat(sel, reps)
                begin = np.cumsum(reps) - reps
                midx = np.repeat(_at(t.off, _at(keys, sel)) - begin, reps) + np.arange(par.size, dtype=np.int64)

            def parent(a):
                """``a[par]``: one gather (about twice as fast as gathering ``a[sel]`` and
                repeating it: ``np.repeat`` with per-item counts copies item by item)."""
                return _at(a, par)

            # (a plain group's move changes some column, so its canonical successor differs
            # from the parent; a chain's moves are checked after their steps)
            delta = self.deltas(grp)
            if grp.steps:                 # a chain: its steps, then drop moves that change nothing
                base = parent(codes)
                succ = self.chained(grp, self.plus(base, delta, midx, grp.twords, keep=True))
                moved = np.flatnonzero(self.differs(succ, base))
                trans += moved.size
                if moved.size < _len(succ):
                    succ, par, midx = _at(succ, moved), _at(par, moved), _at(midx, moved)
                if not succ.size:
                    continue
            elif not grp.wblocks:
                succ = self.plus(parent(codes), delta, midx, grp.twords)
            elif grp.sym is not None and grp.sym[1] is not None:
                succ = self.merged(grp, parent, midx, cache, codes)
            else:
                succ = self.canon(grp, parent, midx, cache, codes)
            parts.append((succ, par, midx, grp.gi))
        return parts, trans

    def first_occurrences(self, succ, ok):
        """The distinct codes of ``succ`` ordered by their smallest order key ``ok``, and the
        parent row of that first occurrence.  Two in-place sorts of packed (code, key) words
        when both fit in 63 bits (numpy's fast non-indirect sort), else two argsorts (by order key,
        then by code) and the smallest position of each code's run."""
        if self.wide:
            return self._first_wide(succ, ok)
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
        # (order keys are distinct: any sort orders them; the first occurrence of a code is the
        # smallest position in that order among its run once the codes are sorted)
        order = np.argsort(ok)
        succ, ok = _at(succ, order), _at(ok, order)
        by = np.argsort(succ)
        sc = _at(succ, by)
        starts = np.flatnonzero(np.concatenate(([True], sc[1:] != sc[:-1])))
        first = np.minimum.reduceat(by, starts)
        first.sort()
        return _at(succ, first).astype(self.dt), _at(ok, first) >> pshift

    def _first_wide(self, succ, ok):
        """:meth:`first_occurrences` of wide codes: in order-key order, the codes are grouped by
        a 64-bit hash of their words (its high bits and the position, packed in one word, one
        in-place sort), then checked equal within each group; a group of different codes
        (two codes alike in the hash's kept bits: rare) makes the chunk take the exact way, a
        stable sort by every word."""
        pshift = self.gbits + self.mbits
        order = np.argsort(ok)
        succ, ok = _at(succ, order), _at(ok, order)
        m = ok.size
        pbits = max(1, (m - 1).bit_length())
        pos_mask = np.uint64((1 << pbits) - 1)
        key = (_hash64(succ) & ~pos_mask) | np.arange(m, dtype=np.uint64)
        key.sort()
        pos = (key & pos_mask).astype(np.int64)
        hk = key >> np.uint64(pbits)
        first = np.empty(m, bool)
        first[0] = True
        np.not_equal(hk[1:], hk[:-1], out=first[1:])
        dup = np.flatnonzero(~first)
        if dup.size:                        # each repeat equals the first of its group?
            lead = np.maximum.accumulate(np.where(first, np.arange(m), 0))
            a, b = _at(pos, dup), _at(pos, _at(lead, dup))
            if (_at(succ, a) != _at(succ, b)).any():
                by = np.lexsort(succ[::-1])       # stable: equal codes keep the order-key order
                sc = _at(succ, by)
                first = np.empty(m, bool)
                first[0] = True
                (sc[:, 1:] != sc[:, :-1]).any(axis=0, out=first[1:])
                pos = by
        keep = np.sort(pos[first])
        return _at(succ, keep), _at(ok, keep) >> pshift

    def masks(self, codes, fi: int, cache: dict):
        """Clause masks of fused group ``fi`` for each state of ``codes`` (filling its table)."""
        got = cache.get(("mask", fi))
        if got is None:
            f = self.fused[fi]
            keys = self.key(codes, f.reads, f.kstr, cache) if f.reads else np.zeros(_len(codes), np.int64)
            got = _at(f.val, keys)
            if (got < 0).any():
                t0 = time.perf_counter()
                for k in np.unique(keys[got < 0]).tolist():
                    vals = [self.values[c][(k // s) % r] for c, s, r in zip(f.reads, f.kstr, f.radix)]
                    f.val[k] = sum(1 << j for j, (pred, pos) in enumerate(f.clauses)
                                   if pred(*[vals[x] for x in pos]))
                got = _at(f.val, keys)
                self.model_seconds += time.perf_counter() - t0
            cache[("mask", fi)] = got
        return got

    def check(self, codes, pending: dict, cache: dict):
        """For each undecided property: index (in ``codes``) of the first state deciding it.
        The undecided ``always`` properties are first checked together (one test per fused
        group); a property is looked at alone only in a batch where something fails.  The
        columns decoded on the way stay in ``cache`` (the states expand at the next level)."""
        out = {}
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
                if _len(codes) and conj == (kind == "sometimes"):
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
                   max_memory: int | None = None, spill_dir: str | None = None,
                   _keep: dict | None = None) -> ExploreResult:
    """Breadth-first search of a table-driven ``model`` (same contract and results as
    :func:`memtypes.explore.search.explore`; ``stop_on_violation`` stops after the chunk of
    ``CHUNK`` states that found the violation, so the count of states stored then may differ
    from the serial explorer's, which stops after its own chunk).

    Once what the search holds in memory would pass ``max_memory`` (bytes; default
    :func:`memtypes.explore.memory.max_memory`), the stored codes and parent indices move to
    memory-mapped files in a temporary folder (in ``spill_dir``, default the system's), the
    columns kept for the next level are dropped (decoded again when expanded), and the search
    goes on (``result.spilled``); the folder is removed on every exit path."""
    why = supports(model)
    if why is not None:
        raise Unsupported(f"the vector explorer cannot run this model: {why}")
    from memtypes.explore import memory
    spill = _Spill(spill_dir)
    try:
        return _explore_vector(model, max_depth, max_states, progress, stop_on_violation,
                               max_seconds, memory.max_memory(max_memory), spill, _keep)
    finally:
        spill.close()


def _explore_vector(model, max_depth, max_states, progress, stop_on_violation, max_seconds,
                    bound, spill: _Spill, _keep) -> ExploreResult:
    t0 = time.perf_counter()
    eng = _Engine(model)
    res = ExploreResult(workers=1, fingerprint="packed")
    wide = eng.wide
    # a wide search keeps its codes in the visited set (in discovery order: the frontier is a
    # range of them); a narrow one keeps them in batches beside its bitmap or hash set
    visited = _WideSet(eng.ks) if wide else _Visited(eng.space)
    limit = max_states if max_states is not None else -1
    deadline = t0 + max_seconds if max_seconds is not None else None
    pending = {name: kind for name, kind, _, _ in eng.props}
    found_v: dict[str, int] = {}
    found_r: dict[str, int] = {}
    # the codes in discovery order (wide: the visited set's own) and the parent indices;
    # a level's frontier is the range of codes the level before stored
    fps = None if wide else _Grow(eng.dt)
    pars = _Grow(np.int32)
    nstates = 0
    spilled = False
    decoded: list[dict] = []       # per stored batch, its columns decoded by the check
    decoded_bytes = 0

    def codes(a: int, b: int):
        return visited.codes(a, b) if wide else fps.view(a, b).copy()

    def held() -> int:
        """Bytes the search holds in memory (its visited set, codes, parents, kept columns)."""
        return visited.nbytes + pars.nbytes + (0 if wide else fps.nbytes) + decoded_bytes + cols_bytes

    def to_disk() -> None:
        nonlocal spilled
        spilled = True
        (visited if wide else fps).to_disk(spill)
        pars.to_disk(spill)

    def store(new, parents) -> None:
        nonlocal nstates, pars, decoded_bytes
        visited.add(new)
        if not wide:
            fps.append(new)
        if nstates + _len(new) >= 1 << 31 and pars.a.dtype != np.int64:
            wider = _Grow(np.int64, max(pars.n, 1))
            wider.append(pars.a[:pars.n])
            if pars.spill is not None:
                wider.to_disk(spill)
            pars = wider
        pars.append(parents)
        cache: dict = {}
        hits = eng.check(new, pending, cache)
        # columns (not masks or keys), kept for the next level unless spilled
        keep = {} if spilled else {k: eng.slim(k, v) for k, v in cache.items()
                                   if isinstance(k, int) or k == "high" or k[0] == "rest"}
        decoded.append(keep)
        decoded_bytes += sum(v.nbytes for v in keep.values())
        for name, j in hits.items():
            (found_v if pending.pop(name) == "always" else found_r)[name] = nstates + j
        nstates += _len(new)
        if not spilled and bound and held() > bound:
            to_disk()

    # initial states
    frontier, ipar, cut = initial_codes(model, eng, limit)
    if cut:
        res.complete, res.truncated_by = False, "max_states"
    fcols: dict = {}
    cols_bytes = 0
    if _len(frontier):
        store(frontier, np.array(ipar, np.int64))
        fcols = decoded.pop()
        decoded_bytes = 0
    depth, base = 0, 0
    last = time.monotonic()
    stop = bool(stop_on_violation and found_v)
    if stop:
        res.complete, res.truncated_by = False, "violation"
    while _len(frontier) and not stop and res.truncated_by is None:
        expanding = max_depth is None or depth < max_depth
        level_new = []
        nfront = _len(frontier)
        for c0 in range(0, nfront, CHUNK):
            chunk = codes(base + c0, base + min(c0 + CHUNK, nfront))
            succs, oks = [], []
            beyond = False
            parts, trans = eng.expand(chunk, {k: v[c0:c0 + CHUNK] for k, v in fcols.items()})
            if expanding:
                res.transitions += trans
            # one lookup in the visited set for the whole chunk, then split by part
            sizes = [_len(p[0]) for p in parts]
            at = np.flatnonzero(visited.unseen(np.concatenate([p[0] for p in parts], axis=-1))) if parts \
                else np.zeros(0, np.int64)
            starts = np.cumsum(sizes) - sizes if parts else []
            news = [x - b for x, b in zip(np.split(at, np.searchsorted(at, starts[1:])), starts)]
            for (succ, par, midx, gi), new_at in zip(parts, news):
                if not expanding:
                    beyond = beyond or bool(new_at.size)
                    continue
                if new_at.size:
                    succs.append(_at(succ, new_at))
                    # order key: (parent row, group, move): the serial explorer's order
                    oks.append((_at(par, new_at) << eng.gbits | gi) << eng.mbits | _at(midx, new_at))
            if beyond:
                res.complete, res.truncated_by = False, "max_depth"
                break
            if not succs:
                continue
            new, parents = eng.first_occurrences(np.concatenate(succs, axis=-1), np.concatenate(oks))
            parents += base + c0
            if limit >= 0 and nstates + _len(new) > limit:
                new, parents = new[..., :limit - nstates], parents[:limit - nstates]
                res.complete, res.truncated_by = False, "max_states"
            if _len(new):
                store(new, parents)
                level_new.append(_len(new))
            if stop_on_violation and found_v:
                stop = True
            if stop or res.truncated_by is not None:
                break
            now = time.monotonic()
            if progress is not None and now - last >= 0.1:
                last = now
                progress(nstates, depth + 1, nfront - c0 - _len(chunk) + sum(level_new))
            if deadline is not None and time.perf_counter() >= deadline:
                res.complete, res.truncated_by = False, "max_seconds"
                break
        if not expanding:
            break
        base += nfront
        frontier = np.zeros((0, sum(level_new)), np.int64)   # (only its size is used)
        fcols = _joined(decoded)
        cols_bytes = sum(v.nbytes for v in fcols.values())
        decoded.clear()
        decoded_bytes = 0
        if _len(frontier):
            depth += 1
    if stop and res.truncated_by is None:
        res.complete, res.truncated_by = False, "violation"
    res.states, res.depth = nstates, depth
    if progress is not None:
        progress(nstates, depth, 0)
    res.spilled = spilled
    if eng.blocks and nstates:
        res.orbits = eng.orbits(codes(0, nstates))

    def chain_of(idx: int) -> tuple[int, list[int]]:
        out = []
        while True:
            p = int(pars.a[idx])
            if p < 0:
                out.reverse()
                return -1 - p, out
            out.append(visited.code(idx) if wide else int(fps.a[idx]))
            idx = p

    for found, dest in ((found_v, res.violations), (found_r, res.reached)):
        for name, idx in sorted(found.items()):
            ii, ch = chain_of(idx)
            dest[name] = _rebuild(model, eng.encode, ii, ch)
    res.seconds = time.perf_counter() - t0
    if _keep is not None:
        _keep.update(visited=visited, engine=eng, fps=codes(0, nstates), parents=pars.view(0, nstates),
                     stored_bytes=visited.nbytes + pars.n * pars.a.itemsize
                     + (0 if wide else fps.n * fps.a.itemsize))
    return res
