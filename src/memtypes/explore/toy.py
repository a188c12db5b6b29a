"""Small synthetic models with known answers, for tests and for ``memtypes bench``.

* :class:`Counters`: ``n`` counters, each ``0..k``; an action increments one counter.  It has
  exactly ``(k+1)**n`` states and depth ``n*k`` (the peers.md benchmark model, 8 counters 0..3).
* :class:`Graph`: an explicit directed graph (adjacency lists) with "bad" and "goal" nodes.
* :class:`TableCounters`: :class:`Counters` as a table-driven model.
* :class:`FlushPages`: pages dirtied one at a time and a flush of every page at once, a
  table-driven model with a :class:`~memtypes.explore.table.Chain`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from memtypes.explore.model import Action, Property
from memtypes.explore.table import Chain, Clause, Column, Moves, Step, TableModel, TableProperty


class Counters:
    """``n`` counters in ``0..k``.  ``bad``: an always-property "sum-below" violated when the sum
    of the counters reaches ``bad`` (shortest counterexample: ``bad`` steps).  ``goal``: a
    sometimes-target "all-max" (reached after ``n*k`` steps)."""

    def __init__(self, n: int = 8, k: int = 3, bad: int | None = None):
        self.name = f"counters-{n}x{k}"
        self.n, self.k, self.bad = n, k, bad
        self._acts = [Action("c", "inc", (("i", i),)) for i in range(n)]

    def init_states(self) -> Sequence[tuple]:
        return [(0,) * self.n]

    def actions(self, s: tuple) -> Iterable[Action]:
        k = self.k
        return [a for i, a in enumerate(self._acts) if s[i] < k]

    def next_state(self, s: tuple, a: Action) -> tuple | None:
        i = a.args[0][1]
        if s[i] >= self.k:
            return None
        return s[:i] + (s[i] + 1,) + s[i + 1:]

    def successors(self, s: tuple):
        k = self.k
        for i, a in enumerate(self._acts):
            v = s[i]
            if v < k:
                yield a, s[:i] + (v + 1,) + s[i + 1:]

    def next_states(self, s: tuple) -> list:
        # Same order as ``successors``; one list mutated in place is the cheapest splice.
        k = self.k
        cur = list(s)
        out = []
        for i, v in enumerate(s):
            if v < k:
                cur[i] = v + 1
                out.append(tuple(cur))
                cur[i] = v
        return out

    def properties(self) -> Sequence[Property]:
        props = []
        if self.bad is not None:
            bad = self.bad
            props.append(Property("sum-below", "always", lambda s: sum(s) < bad))
        top = self.k * self.n
        props.append(Property("all-max", "sometimes", lambda s: sum(s) == top))
        return props


class Graph:
    """An explicit graph: ``edges[u]`` lists the successors of node ``u`` (ints).  ``bad`` nodes
    violate the always-property "not-bad"; ``goal`` nodes satisfy the sometimes-target "goal"."""

    def __init__(self, edges: dict[int, Sequence[int]], inits: Sequence[int],
                 bad: Iterable[int] = (), goal: Iterable[int] = ()):
        self.name = "graph"
        self.edges = {u: list(vs) for u, vs in edges.items()}
        self.inits = list(inits)
        self.bad, self.goal = frozenset(bad), frozenset(goal)

    def init_states(self) -> Sequence[int]:
        return self.inits

    def actions(self, s: int) -> Iterable[Action]:
        return [Action("g", "go", (("to", v),)) for v in dict.fromkeys(self.edges.get(s, ()))]

    def next_state(self, s: int, a: Action) -> int | None:
        v = a.args[0][1]
        return None if v == s else v

    def properties(self) -> Sequence[Property]:
        bad, goal = self.bad, self.goal
        return [Property("not-bad", "always", lambda s: s not in bad),
                Property("goal", "sometimes", lambda s: s in goal)]


class Lock:
    """A broken test-and-set lock for ``n`` threads: each thread reads the lock word (``pc`` 0->1),
    then, if it read "free", takes it (1->2, without re-checking), then releases (2->0).  The
    always-property "mutex" (at most one thread in pc 2) fails after exactly 4 steps."""

    def __init__(self, n: int = 2):
        self.name = f"lock-{n}"
        self.n = n

    def init_states(self):
        return [((0,) * self.n, 0)]  # (pcs, lock word)

    def actions(self, s):
        pcs, _ = s
        return [Action(f"t{i}", ("read", "take", "release")[pc]) for i, pc in enumerate(pcs)]

    def next_state(self, s, a):
        pcs, lock = s
        i = int(a.actor[1:])
        pc = pcs[i]
        if pc == 0:
            if lock:
                return None  # spin: no change
            return pcs[:i] + (1,) + pcs[i + 1:], lock
        if pc == 1:
            return pcs[:i] + (2,) + pcs[i + 1:], 1
        return pcs[:i] + (0,) + pcs[i + 1:], 0

    def properties(self):
        return [Property("mutex", "always", lambda s: s[0].count(2) <= 1),
                Property("someone-in", "sometimes", lambda s: 2 in s[0]),
                Property("never", "sometimes", lambda s: False)]


class TableCounters(TableModel):
    """:class:`Counters` as a table-driven model (one column per counter, one group per counter
    sharing one transition table), for the vector explorer; same states, order and answers.
    ``symmetric``: counters ``2i`` and ``2i+1`` are interchangeable."""

    def __init__(self, n: int = 8, k: int = 3, bad: int | None = None, symmetric: bool = False):
        self.name = f"table-counters-{n}x{k}"
        self.n, self.k, self.bad = n, k, bad
        dom = tuple(range(k + 1))
        self.columns = tuple(Column(f"c{i}", dom) for i in range(n))
        self.groups = tuple(Moves(f"inc{i}", (i,), (i,), self._inc(i), table="inc") for i in range(n))
        self.symmetric = tuple((i, i + 1) for i in range(0, n - 1, 2)) if symmetric else ()

    def _inc(self, i: int):
        a = Action("c", "inc", (("i", i),))
        k = self.k
        return lambda vals: [(a, (vals[0] + 1,))] if vals[0] < k else []

    def init_rows(self):
        return [(0,) * self.n]

    def table_properties(self):
        allc = tuple(range(self.n))
        props = []
        if self.bad is not None:
            bad = self.bad
            props.append(TableProperty("sum-below", "always", (Clause(allc, lambda *v: sum(v) < bad),)))
        props.append(TableProperty("all-max", "sometimes",
                                   tuple(Clause((i,), lambda v, k=self.k: v == k) for i in allc),
                                   quantifier="all"))
        return props


class FlushPages(TableModel):
    """``n`` pages, each ``clean`` or ``dirty`` (action ``cpu.write`` page ``i``), and a flush
    of every page at once (``cpu.flush_all``), which counts the flushes that found a dirty page
    (up to ``k``).  The flush is a :class:`~memtypes.explore.table.Chain`: a move, then one step
    per page (clean it, note in the transient column ``found`` whether it was dirty), then a
    step that counts and restores ``found``; each table reads two columns whatever ``n`` is.
    A flush of clean pages changes nothing (no transition).  States: exactly ``2**n * (k + 1)``
    (pages can be dirtied again after any flush).  Target ``flushed-k`` (and the violation of
    ``never-k``): ``2k`` steps, write and flush ``k`` times."""

    CLEAN, DIRTY = "clean", "dirty"

    def __init__(self, n: int = 3, k: int = 2):
        self.name = f"flush-pages-{n}x{k}"
        self.n, self.k = n, k
        self.FOUND, self.COUNT = n, n + 1
        self.columns = tuple(Column(f"page{i}", (self.CLEAN, self.DIRTY)) for i in range(n)) + (
            Column("found", (False, True), transient=True), Column("flushes", tuple(range(k + 1))))
        self.groups = tuple(
            Moves(f"write{i}", (i,), (i,), lambda v, i=i: [(Action("cpu", "write", (("page", i),)),
                                                             (self.DIRTY,))] if v[0] == self.CLEAN else [],
                  table="write")
            for i in range(n)) + (Chain(
                "flush_all", (self.FOUND,), (self.FOUND,), lambda v: [(Action("cpu", "flush_all", ()), (False,))],
                steps=tuple(Step(f"page{i}", (i, self.FOUND), (i, self.FOUND), self._clean)
                            for i in range(n)) + (
                    Step("count", (self.FOUND, self.COUNT), (self.FOUND, self.COUNT), self._count),)),)

    def _clean(self, vals):
        page, found = vals
        return self.CLEAN, found or page == self.DIRTY

    def _count(self, vals):
        found, count = vals
        return False, min(count + found, self.k)

    def init_rows(self):
        return [(self.CLEAN,) * self.n + (False, 0)]

    def table_properties(self):
        return [TableProperty("flushed-k", "sometimes", (Clause((self.COUNT,), lambda c: c == self.k),)),
                TableProperty("never-k", "always", (Clause((self.COUNT,), lambda c: c < self.k),))]
