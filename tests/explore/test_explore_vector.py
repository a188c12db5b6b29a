"""The vectorised explorer against the serial one: the same states in the same order, the same
depth, transitions, verdicts and shortest traces, on synthetic table-driven models (fixed and
random), under bounds, across chunk boundaries, with both visited structures and with inferred
domains; plus its parts (bitmap, hash set, domain inference) and the fallback rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")

from memtypes.explore import explore, replay                                  # noqa: E402
from memtypes.explore import vector                                           # noqa: E402
from memtypes.explore.model import Action                                     # noqa: E402
from memtypes.explore.table import Chain, Clause, Column, Moves, Step, TableModel, TableProperty  # noqa: E402
from memtypes.explore.toy import FlushPages, TableCounters                    # noqa: E402


def summary(r):
    return (r.states, r.depth, r.transitions, r.complete, r.truncated_by,
            {n: (t.init_index, t.actions, t.states) for n, t in r.violations.items()},
            {n: (t.init_index, t.actions, t.states) for n, t in r.reached.items()})


def same(model, **kw):
    a = explore(model, backend="serial", **kw)
    b = explore(model, backend="vector", **kw)
    assert b.fingerprint == "packed" and a.fingerprint == "hash"
    assert summary(a) == summary(b)
    return b


# --------------------------------------------------------------------------------------------
# Fixed models with known answers


def test_counters_known_counts_and_traces():
    r = same(TableCounters(4, 2, bad=5))
    assert r.states == 3 ** 4 and r.depth == 8 and r.complete
    assert len(r.violations["sum-below"]) == 5 and len(r.reached["all-max"]) == 8
    t = r.violations["sum-below"]
    assert replay(TableCounters(4, 2, bad=5), t.init_index, t.actions) == t.states
    assert r.collision_probability == 0.0          # packed codes are exact


def test_counters_symmetric_pairs():
    r = same(TableCounters(6, 3, bad=7, symmetric=True))
    # three interchangeable pairs of 0..3 counters: C(4+1, 2) = 10 multisets per pair
    assert r.states == 10 ** 3


@pytest.mark.parametrize("kw", [dict(max_depth=3), dict(max_depth=0), dict(max_states=50),
                                dict(max_states=1), dict(stop_on_violation=False)])
def test_bounds_match_serial(kw):
    same(TableCounters(5, 2, bad=6), **kw)


def test_small_chunks_and_hash_set(monkeypatch):
    """Levels split over many chunks, the hash-set visited structure, and merging a block's
    new value without the merge table, change nothing."""
    monkeypatch.setattr(vector, "CHUNK", 8)
    same(TableCounters(5, 3, bad=9, symmetric=True))
    monkeypatch.setattr(vector, "MERGE_ENTRIES", 0)
    same(TableCounters(5, 3, bad=9, symmetric=True))
    monkeypatch.setattr(vector, "DENSE_CODES", 0)
    r = same(TableCounters(5, 3, bad=9, symmetric=True))
    assert r.states > 8


def test_inferred_domains_match(monkeypatch):
    """When the declared code space is too large for a bitmap the explorer packs states over
    the inferred (reachable-value) domains: same answers."""
    monkeypatch.setattr(vector, "DENSE_CODES", 10)
    m = Sparse()
    same(m)
    doms = m.value_domains()
    assert len(doms[0]) < len(m.columns[0].values)


class Sparse(TableModel):
    """A counter that only ever holds even numbers out of a domain of 0..99, with a flag."""

    name = "sparse"
    columns = (Column("n", tuple(range(100))), Column("f", (False, True)))

    def __init__(self):
        self.groups = (Moves("add2", (0,), (0,), lambda v: [(Action("a", "add2"), (v[0] + 2,))] if v[0] < 20 else []),
                       Moves("flag", (0, 1), (1,), lambda v: [(Action("a", "flag"), (True,))] if v[0] == 10 else []))

    def init_rows(self):
        return [(0, False)]

    def table_properties(self):
        return [TableProperty("not-16", "always", (Clause((0,), lambda n: n != 16),)),
                TableProperty("flagged", "sometimes", (Clause((1,), bool),))]


def test_value_domains_sound_on_sparse():
    m = Sparse()
    doms = m.value_domains()
    reach = set()
    todo = list(m.init_states())
    while todo:
        s = todo.pop()
        if s in reach:
            continue
        reach.add(s)
        todo.extend(m.next_states(s))
    for c in range(2):
        assert {s[c] for s in reach} <= set(doms[c])
    assert doms[0] == tuple(range(0, 21, 2))


def test_auto_keeps_small_models_serial(monkeypatch):
    assert explore(TableCounters(3, 2)).fingerprint == "hash"          # 27 codes
    monkeypatch.setattr(vector, "SMALL_CODES", 0)
    assert explore(TableCounters(3, 2)).fingerprint == "packed"


def test_unsupported_falls_back_to_serial(monkeypatch):
    monkeypatch.setattr(vector, "SMALL_CODES", 0)
    monkeypatch.setattr(vector, "MAX_TABLE", 2)
    m = TableCounters(3, 2)                        # each group's table has 3 entries
    assert explore(m).fingerprint == "hash"
    with pytest.raises(vector.Unsupported):
        explore(m, backend="vector")


def test_models_that_are_not_table_driven_use_the_serial_explorer():
    from memtypes.explore.toy import Counters
    assert explore(Counters(3, 2)).fingerprint == "hash"
    with pytest.raises(vector.Unsupported):
        explore(Counters(3, 2), backend="vector")
    with pytest.raises(ValueError):
        explore(Counters(3, 2), backend="gpu")
    with pytest.raises(ValueError, match="unknown explorer backend"):
        explore(Counters(3, 2), backend="gpu", workers=2)
    with pytest.raises(ValueError, match="one process"):
        explore(TableCounters(3, 2), backend="vector", workers=2)


def test_writes_outside_reads_rejected():
    class Bad(Sparse):
        def __init__(self):
            self.groups = (Moves("x", (0,), (1,), lambda v: []),)
    with pytest.raises(ValueError, match="must be among its reads"):
        explore(Bad(), backend="serial")


# --------------------------------------------------------------------------------------------
# Visited structures


def test_bitmap_and_hash_set_agree_with_a_python_set():
    rng = np.random.default_rng(7)
    space = 1 << 20
    bm, hs, ref = vector._Bitmap(space), vector._HashSet(log2=4), set()
    for _ in range(30):
        q = rng.integers(0, space, 300)
        for vs in (bm, hs):
            assert vs.seen(q).tolist() == [int(x) in ref for x in q]
        new = np.unique(q[~bm.seen(q)])
        bm.add(new)
        hs.add(new)
        ref.update(int(x) for x in new)
    assert hs.n == len(ref) and 2 * hs.n <= hs.tab.size   # grew, load <= 1/2


# --------------------------------------------------------------------------------------------
# Random table-driven models: the two explorers agree exactly


class Random(TableModel):
    name = "random"

    def __init__(self, sizes, groups, props, inits, sym, chain=None):
        self.columns = tuple(Column(f"c{i}", tuple(range(n))) for i, n in enumerate(sizes))
        self.symmetric = sym
        self.groups = tuple(Moves(f"g{gi}", reads, writes, self._fn(gi, table), tbl)
                            for gi, (reads, writes, table, tbl) in enumerate(groups))
        self._props = props
        self._inits = inits
        if chain is not None:             # a transient column (the last) and a chain using it
            nt, firsts, steps = chain     # (a second first part: a chain sharing the steps)
            self.columns += (Column("t", tuple(range(nt)), transient=True),)
            self._inits = [r + (0,) for r in inits]
            shared = tuple(Step(f"s{si}", sr, sw, st.__getitem__, table=f"s{si}")
                           for si, (sr, sw, st) in enumerate(steps))
            self.groups += tuple(Chain(f"chain{i}", reads, writes, self._fn(len(groups) + i, table),
                                       steps=shared) for i, (reads, writes, table) in enumerate(firsts))

    @staticmethod
    def _fn(gi, table):
        def fn(vals):
            return [(Action("g", f"g{gi}", (("m", j),)), w) for j, w in enumerate(table.get(vals, ()))]
        return fn

    def init_rows(self):
        return self._inits

    def table_properties(self):
        return self._props


@st.composite
def random_models(draw):
    return Random(*draw(model_specs()))


@st.composite
def model_specs(draw):
    ncol = draw(st.integers(1, 4))
    size = draw(st.integers(2, 4))
    sizes = [size if draw(st.booleans()) else draw(st.integers(2, 4)) for _ in range(ncol)]
    same_cols = [c for c in range(ncol) if sizes[c] == size]
    sym = ()
    if len(same_cols) >= 2 and draw(st.booleans()):
        sym = (tuple(same_cols[:draw(st.integers(2, len(same_cols)))]),)
    groups = []
    for _ in range(draw(st.integers(1, 4))):
        reads = tuple(sorted(draw(st.sets(st.integers(0, ncol - 1), min_size=1, max_size=ncol))))
        writes = tuple(sorted(draw(st.sets(st.sampled_from(reads), min_size=1, max_size=len(reads)))))
        table = {}
        for vals in itertools.product(*[range(sizes[c]) for c in reads]):
            k = draw(st.integers(0, 2))
            table[vals] = [tuple(draw(st.integers(0, sizes[c] - 1)) for c in writes) for _ in range(k)]
        groups.append((reads, writes, table, ""))
    props = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["always", "sometimes"]))
        clauses = []
        for _ in range(draw(st.integers(0, 2))):
            reads = tuple(sorted(draw(st.sets(st.integers(0, ncol - 1), min_size=1, max_size=2))))
            good = draw(st.sets(st.tuples(*[st.integers(0, sizes[c] - 1) for c in reads]), max_size=8))
            clauses.append(Clause(reads, lambda *v, good=frozenset(good), kind=kind: (v in good) == (kind == "sometimes")))
        q = draw(st.sampled_from([None, "all", "any"]))
        props.append(TableProperty(f"p{i}", kind, tuple(clauses), quantifier=q))
    inits = [tuple(draw(st.integers(0, n - 1)) for n in sizes) for _ in range(draw(st.integers(1, 3)))]
    return sizes, groups, props, inits, sym


@settings(max_examples=120, deadline=None)
@given(random_models(), st.sampled_from([None, 1, 2, 4]), st.sampled_from([None, 3, 10]))
def test_random_models_agree(model, max_depth, max_states):
    same(model, max_depth=max_depth, max_states=max_states)


class PlainFlushPages:
    """:class:`FlushPages` written as a plain model (the flush done by one function), as the
    independent reference for the chain's semantics."""

    def __init__(self, n, k):
        self.n, self.k = n, k

    def init_states(self):
        return [("clean",) * self.n + (False, 0)]

    def successors(self, s):
        pages, count = s[:self.n], s[-1]
        for i, p in enumerate(pages):
            if p == "clean":
                yield (Action("cpu", "write", (("page", i),)),
                       pages[:i] + ("dirty",) + pages[i + 1:] + (False, count))
        if "dirty" in pages:
            yield Action("cpu", "flush_all", ()), ("clean",) * self.n + (False, min(count + 1, self.k))

    def actions(self, s):
        return [a for a, _ in self.successors(s)]

    def next_state(self, s, a):
        return dict(self.successors(s)).get(a)

    def properties(self):
        from memtypes.explore.model import Property
        return [Property("flushed-k", "sometimes", lambda s: s[-1] == self.k),
                Property("never-k", "always", lambda s: s[-1] < self.k)]


@pytest.mark.parametrize("n,k", [(1, 1), (3, 2), (5, 3)])
def test_chain_flush_pages_known_answers(n, k):
    """A chain (a flush of every page) gives the states, transitions, depth and shortest
    traces of the same model written as one function, on both explorers."""
    r = same(FlushPages(n, k))
    ref = explore(PlainFlushPages(n, k), backend="serial")
    assert r.states == ref.states == 2 ** n * (k + 1)
    assert (r.transitions, r.depth) == (ref.transitions, ref.depth)
    t = r.violations["never-k"]
    assert len(t) == 2 * k and t.actions == ref.violations["never-k"].actions
    assert [a.name for a in t.actions] == ["write", "flush_all"] * k
    assert len(r.reached["flushed-k"]) == 2 * k


def test_chain_must_restore_its_transient_column():
    class Leaky(FlushPages):
        def _count(self, vals):
            return True, min(vals[1] + vals[0], self.k)
    for backend in ("serial", "vector"):
        with pytest.raises(ValueError, match="transient column"):
            explore(Leaky(2, 1), backend=backend)


def test_chain_must_not_write_symmetric_columns():
    m = FlushPages(2, 1)
    m.symmetric = ((0, 1),)
    with pytest.raises(ValueError, match="writes symmetric column"):
        explore(m, backend="serial")


@st.composite
def random_chain_models(draw):
    """A random model plus a transient column and one or two chains: a move (any number per
    state) sets the transient column, then 1-3 deterministic steps over random columns, the
    last one restoring the transient column; two chains share their steps' tables."""
    sizes, groups, props, inits, sym = draw(model_specs())
    ncol, t = len(sizes), len(sizes)
    nt = draw(st.integers(2, 3))
    sizes_t = sizes + [nt]
    symcols = {c for s in sym for c in s}
    free = [c for c in range(ncol) if c not in symcols]      # a chain may write these

    def part(first: bool, last: bool):
        reads = tuple(sorted(draw(st.sets(st.integers(0, ncol - 1), max_size=min(ncol, 3))) | {t}))
        writes = tuple(sorted(draw(st.sets(st.sampled_from([c for c in reads if c in free] or [t]),
                                           max_size=2)) | {t}))
        table = {}
        for vals in itertools.product(*[range(sizes_t[c]) for c in reads]):
            def one():
                return tuple(0 if (c == t and last) else draw(st.integers(0, sizes_t[c] - 1))
                             for c in writes)
            if first:
                table[vals] = [one() for _ in range(draw(st.integers(0, 2)))] if vals[-1] == 0 else []
            else:
                table[vals] = one()
        return reads, writes, table

    firsts = [part(True, False) for _ in range(draw(st.integers(1, 2)))]
    nsteps = draw(st.integers(1, 3))
    steps = [part(False, i == nsteps - 1) for i in range(nsteps)]
    return Random(sizes, groups, props, inits, sym, chain=(nt, firsts, steps))


@settings(max_examples=80, deadline=None)
@given(random_chain_models(), st.sampled_from([None, 2]), st.sampled_from([None, 1, 5]))
def test_random_chain_models_agree(model, max_depth, max_states):
    """Chains (a move, then deterministic steps through a transient column) give the same
    search on both explorers, with declared and with inferred domains, over batches of a few
    states (the serial explorer's cut under ``max_states`` counts its own batches'
    transitions, so that bound is compared on states, verdicts and traces)."""
    same(model, max_depth=max_depth)
    old = vector.DENSE_CODES, vector.CHUNK
    try:
        vector.DENSE_CODES, vector.CHUNK = 0, 4
        same(model, max_depth=max_depth)
        if max_states is not None:
            a = explore(model, backend="serial", max_states=max_states)
            b = explore(model, backend="vector", max_states=max_states)
            assert summary(a)[:2] + summary(a)[3:] == summary(b)[:2] + summary(b)[3:]
    finally:
        vector.DENSE_CODES, vector.CHUNK = old


def test_chain_declaration_errors():
    """A plain group may not write a transient column, a table is not shared by a chain and
    a plain group, and steps sharing a table read and write the same columns."""
    def model(groups):
        m = FlushPages(2, 1)
        m.groups = groups(m)
        return m
    flush = lambda m: m.groups[-1]                                              # noqa: E731
    bad = [
        (lambda m: m.groups + (Moves("w", (2,), (2,), lambda v: [], ""),), "only a chain"),
        (lambda m: (Moves("x", (0,), (0,), lambda v: [], "t"),
                    Chain("y", (2,), (2,), flush(m).fn, "t", steps=flush(m).steps)), "shared by a chain"),
        (lambda m: (Chain("y", (2,), (2,), flush(m).fn, steps=(
            Step("a", (0, 2), (0, 2), lambda v: v, table="s"),
            Step("b", (1, 2), (1, 2), lambda v: (v[0], False), table="s"))),), "same columns"),
    ]
    for groups, msg in bad:
        for backend in ("serial", "vector"):
            with pytest.raises(ValueError, match=msg):
                explore(model(groups), backend=backend)


@settings(max_examples=30, deadline=None)
@given(random_models())
def test_random_models_agree_on_inferred_domains_and_hash_set(model):
    """... and with blocks merged by minimum/maximum instead of the merge table."""
    old = vector.DENSE_CODES, vector.CHUNK, vector.MERGE_ENTRIES
    try:
        vector.DENSE_CODES, vector.CHUNK, vector.MERGE_ENTRIES = 0, 4, 0
        same(model)
    finally:
        vector.DENSE_CODES, vector.CHUNK, vector.MERGE_ENTRIES = old


def test_visited_switches_from_hash_set_to_bitmap(monkeypatch):
    """The hash set gives way to the bitmap once the bitmap is cheap enough per state, and
    keeps every code across the switch."""
    space = 1 << 24
    monkeypatch.setattr(vector, "BITMAP_BYTES_PER_STATE", space / 8 / 6000)
    v, ref = vector._Visited(space), set()
    assert v.hash is not None and v.bitmap is None
    rng = np.random.default_rng(3)
    switched_at = None
    for _ in range(40):
        q = rng.integers(0, space, 400)
        assert v.unseen(q).tolist() == [int(x) not in ref for x in q]
        new = np.unique(q[v.unseen(q)])
        v.add(new)
        ref.update(int(x) for x in new)
        if switched_at is None and v.bitmap is not None:
            switched_at = len(ref)
    assert v.hash is None and switched_at is not None and 6000 <= switched_at < 6400
    assert v.n == len(ref)


@pytest.mark.parametrize("D,k", [(5, 2), (7, 3), (10, 4), (6, 5), (3, 6)])
def test_block_rank_and_unrank_are_inverse(D, k):
    """A block of k interchangeable columns over D codes packs every sorted k-tuple into
    0 .. C(D+k-1, k)-1 and back, with the lookup table and with the computed inverse."""
    b = vector._Block(tuple(range(k)), D, 1, np.int64)
    combos = list(itertools.combinations_with_replacement(range(D), k))
    ranks = np.array([b.rank(list(c)) for c in combos])
    assert sorted(ranks.tolist()) == list(range(b.R)) and b.R == len(combos)
    for cols in (b.unrank(ranks), b._unrank(ranks)):
        assert (np.stack(cols, axis=1) == np.array(combos)).all()


@pytest.mark.parametrize("D,k,stride", [(5, 2, 1), (7, 3, 3), (6, 4, 1), (4, 5, 2)])
def test_block_merge_table_adds_a_code_to_the_others(D, k, stride):
    """Row ``r`` of the merge table, for the k-1 sorted codes of place-dropped rank ``r``,
    holds the digit of those codes with ``v`` added, for every ``v``; rows are filled only
    when asked for."""
    b = vector._Block(tuple(range(k)), D, stride, np.int64)
    assert b.mergeable
    combos = list(itertools.combinations_with_replacement(range(D), k))
    cols = [np.array(c, np.uint8) for c in zip(*combos)]
    b.fill_rows(np.array([2, 2, 0]))
    assert sorted(np.flatnonzero(b.filled).tolist()) == [0, 2]
    for p in range(k):
        r = b.dropped(cols, p)
        b.fill_rows(r)
        for c, row in zip(combos, r.tolist()):
            others = list(c[:p] + c[p + 1:])
            for v in range(D):
                assert b.merge[row * D + v] == b.rank(others + [v])
