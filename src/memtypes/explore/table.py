"""Table-driven models: a state is a fixed-width row of columns with finite domains, and every
action reads and writes only a few columns.

This is the "canonical fixed-width state encoding" of peers.md section 4.4: it lets one model
definition run on two back-ends,

* the per-state explorer (:mod:`memtypes.explore.search`, any :class:`~.model.Model`), through
  the ordinary ``init_states`` / ``successors`` / ``properties`` derived here; and
* the vectorised level-synchronous explorer (:mod:`memtypes.explore.vector`), which never calls
  the model per state: it calls each group's ``fn`` once per distinct *projection* of a state on
  the group's ``reads`` (a transition table filled lazily, like TLC's action caching), packs a
  state into one exact integer (no hash, no collision) and applies a move as one integer
  addition.

A model subclasses :class:`TableModel` and sets

* ``columns``: :class:`Column` values (a name and the finite, ordered domain of values; a value's
  *code* is its index);
* ``groups``: :class:`Moves` values in the model's deterministic order; ``fn(read_values)``
  returns ``(Action, written_values)`` pairs in order.  ``writes`` must be a subset of ``reads``
  (so the effect of a move on the packed state depends only on the read values);
* ``symmetric``: sets of interchangeable columns (same domain): a state is canonical with their
  codes ascending (symmetry reduction, as in stateright's ``Representative``);
* a :class:`Chain` in ``groups`` is one atomic action that touches more columns than one table
  could be keyed by (a flush or unmap of every page, say): its first part is an ordinary group
  (the enabled moves), then its :class:`Step` parts run in order, each a deterministic function
  of a few columns of the state so far.  Steps pass what they learn forward in *transient*
  columns (``Column(..., transient=True)``): they hold their first value in every state and
  only differ from it between the steps of a chain, whose last step must restore it;
* ``init_rows()`` and ``table_properties()``: :class:`TableProperty` values whose ``clauses``
  each read a few columns: an ``always`` property holds when every clause holds, a ``sometimes``
  target is reached when any clause holds (``quantifier`` overrides either).

States are plain tuples of column values, so traces, scenario files and ``describe`` work as for
any model.  The contract (writes within reads, functions of the read values only) is what makes
the two back-ends agree; ``tests/explore`` checks that they find the same states in the same order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Sequence

from memtypes.explore.model import Action, Property

__all__ = ["Column", "Moves", "Chain", "Step", "Clause", "TableProperty", "TableModel"]


@dataclass(frozen=True)
class Column:
    name: str
    values: tuple
    """The finite domain, in code order (a value's code is its index)."""
    transient: bool = False
    """Scratch space of :class:`Chain` steps: ``values[0]`` in every state."""


@dataclass(frozen=True)
class Moves:
    """A group of actions over a few columns.  ``fn(read_values)`` (the values of ``reads``, in
    that order) returns the enabled moves as ``(Action, values of writes)`` pairs, in order.
    Groups with the same non-empty ``table`` share the vector back-end's transition table: their
    ``fn`` must give the same writes for the same read values (their actions may differ)."""

    name: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    fn: Callable[[tuple], Iterable[tuple[Action, tuple]]]
    table: str = ""


@dataclass(frozen=True)
class Step:
    """One deterministic part of a :class:`Chain`: ``fn(read_values)`` returns the values of
    ``writes`` (a subset of ``reads``) on the state left by the parts before."""

    name: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    fn: Callable[[tuple], tuple]
    table: str = ""
    """Steps with the same non-empty ``table`` (in any chain) share one table: their ``fn``
    must give the same writes for the same read values."""


@dataclass(frozen=True)
class Chain(Moves):
    """A group whose moves (its ``fn``, as for :class:`Moves`) are each followed by ``steps``, in
    order, within the same transition.  A move whose steps leave the state unchanged is no
    transition.  Chains must not write symmetric columns."""

    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Clause:
    """``pred(*values)`` over the values of ``reads``."""

    reads: tuple[int, ...]
    pred: Callable[..., bool]


@dataclass(frozen=True)
class TableProperty:
    name: str
    kind: Literal["always", "sometimes"]
    clauses: tuple[Clause, ...]
    rationale: str = ""
    source: str = ""
    quantifier: Literal["all", "any", None] = None
    """How the clauses combine: by default ``all`` for ``always`` and ``any`` for ``sometimes``."""

    @property
    def conjunction(self) -> bool:
        return (self.quantifier or ("all" if self.kind == "always" else "any")) == "all"


def _getter(idx: tuple[int, ...]) -> Callable[[tuple], tuple]:
    if len(idx) == 1:
        (i,) = idx
        return lambda s: (s[i],)
    from operator import itemgetter
    return itemgetter(*idx)


class TableModel:
    """Base class of table-driven models (see the module docstring)."""

    name: str = "table-model"
    columns: tuple[Column, ...] = ()
    groups: tuple[Moves, ...] = ()
    symmetric: tuple[tuple[int, ...], ...] = ()
    infer_domains: bool = True
    """Whether the vector explorer may pack states over :meth:`value_domains` when the declared
    domains are too wide for a bitmap.  A model whose declared domains are already tight and
    whose inference would cost more than it saves (many wide tables) sets it to False."""

    # --- to be defined by the model -----------------------------------------------------------
    def init_rows(self) -> Sequence[tuple]:
        raise NotImplementedError

    def table_properties(self) -> Sequence[TableProperty]:
        raise NotImplementedError

    # --- derived structure --------------------------------------------------------------------
    def table_setup(self) -> None:
        """Validate the declaration and build the code maps; called once, lazily."""
        if getattr(self, "_tm_ready", False):
            return
        cols = self.columns
        ncol = len(cols)
        symcols = {c for s in self.symmetric for c in s}
        for g in self.groups:
            for part in (g,) + tuple(getattr(g, "steps", ())):
                bad = [c for c in part.reads + part.writes if not 0 <= c < ncol]
                if bad:
                    raise ValueError(f"group {g.name}: column index {bad[0]} out of range")
                if not set(part.writes) <= set(part.reads):
                    raise ValueError(f"group {g.name}: writes {part.writes} must be among its reads "
                                     f"{part.reads}")
                if isinstance(g, Chain) and symcols & set(part.writes):
                    raise ValueError(f"chain {g.name}: writes symmetric column(s) "
                                     f"{sorted(symcols & set(part.writes))}")
        transient = {c for c, col in enumerate(cols) if col.transient}
        kinds: dict[str, bool] = {}
        shapes: dict[str, tuple] = {}
        for g in self.groups:
            chain = isinstance(g, Chain)
            if not chain and transient & set(g.writes):
                raise ValueError(f"group {g.name}: only a chain may write transient columns")
            if g.table and kinds.setdefault(g.table, chain) != chain:
                raise ValueError(f"table {g.table}: shared by a chain and a plain group")
            for st in getattr(g, "steps", ()):
                if st.table and shapes.setdefault(st.table, (st.reads, st.writes)) != (st.reads, st.writes):
                    raise ValueError(f"step table {st.table}: steps sharing it must read and write "
                                     f"the same columns")
        for sym in self.symmetric:
            if len({cols[c].values for c in sym}) != 1:
                raise ValueError(f"symmetric columns {sym} must share one domain")
            if any(cols[c].transient for c in sym):
                raise ValueError(f"symmetric columns {sym} cannot be transient")
        self._tm_transient = tuple((c, col.values[0]) for c, col in enumerate(cols) if col.transient)
        self._tm_code = [{v: i for i, v in enumerate(c.values)} for c in cols]
        strides, acc = [0] * ncol, 1
        for c in range(ncol - 1, -1, -1):
            if not cols[c].transient:           # (a transient column is at code 0 in a state)
                strides[c] = acc
                acc *= len(cols[c].values)
        self._tm_strides, self._tm_space = tuple(strides), acc
        self._tm_get = [_getter(g.reads) for g in self.groups]
        self._tm_memo: list[dict] = [{} for _ in self.groups]
        # groups sharing a table share one memo of their writes (their actions may differ)
        tids = [g.table or f"#{gi}" for gi, g in enumerate(self.groups)]
        shared: dict[str, dict] = {}
        self._tm_wmemo: list[dict] = [shared.setdefault(t, {}) for t in tids]
        self._tm_canon = [bool(symcols & set(g.writes)) for g in self.groups]
        # per chain: (getter, writes) of each step, and one memo per step
        self._tm_steps = [tuple((_getter(st.reads), st.writes) for st in getattr(g, "steps", ()))
                          for g in self.groups]
        sshared: dict[str, dict] = {}
        self._tm_smemo = [[sshared.setdefault(st.table, {}) if st.table else {}
                           for st in getattr(g, "steps", ())] for g in self.groups]
        self._tm_ready = True

    @property
    def code_space(self) -> int:
        """The number of distinct codes of :meth:`encode` (product of the declared domain sizes)."""
        self.table_setup()
        return self._tm_space

    def canon(self, row: tuple) -> tuple:
        """The representative of ``row``: each symmetric set of columns sorted by code."""
        if not self.symmetric:
            return row
        self.table_setup()
        out = list(row)
        for sym in self.symmetric:
            code = self._tm_code[sym[0]]
            vals = sorted((row[c] for c in sym), key=code.__getitem__)
            for c, v in zip(sym, vals):
                out[c] = v
        return tuple(out)

    def moves_of(self, gi: int, vals: tuple) -> tuple:
        """Group ``gi``'s moves for read values ``vals`` (memoised: ``fn`` is pure)."""
        memo = self._tm_memo[gi]
        mv = memo.get(vals)
        if mv is None:
            g = self.groups[gi]
            mv = memo[vals] = tuple((a, tuple(w)) for a, w in g.fn(vals))
        return mv

    def writes_of(self, gi: int, vals: tuple) -> tuple:
        """The written values of group ``gi``'s moves for read values ``vals``, in order (one
        memo per table: groups sharing a table have the same writes)."""
        memo = self._tm_wmemo[gi]
        w = memo.get(vals)
        if w is None:
            w = memo[vals] = tuple(x for _a, x in self.moves_of(gi, vals))
        return w

    def step_writes(self, gi: int, si: int, vals: tuple) -> tuple:
        """The values step ``si`` of chain ``gi`` writes for read values ``vals`` (memoised)."""
        memo = self._tm_smemo[gi][si]
        w = memo.get(vals)
        if w is None:
            st = self.groups[gi].steps[si]
            w = memo[vals] = tuple(st.fn(vals))
            if len(w) != len(st.writes):
                raise ValueError(f"step {st.name} of chain {self.groups[gi].name}: {len(w)} values "
                                 f"for {len(st.writes)} written columns")
        return w

    def encode(self, state: tuple) -> int:
        """The exact code of ``state``, mixed radix over the declared domains (what the
        multi-process explorer partitions by; the vector explorer packs its own way)."""
        self.table_setup()
        return sum(code[v] * st for code, v, st in zip(self._tm_code, state, self._tm_strides))

    def value_domains(self, max_combos: int = 1 << 18) -> tuple[tuple, ...]:
        """For each column, the values it can hold in a reachable state (an over-approximation),
        in the declared order: start from the initial rows and apply every group to every
        combination of the values known so far for its reads until nothing new appears.  This
        is a non-relational abstraction, sound because a group's moves are a function of its
        read values only; the vector explorer packs states over these smaller domains.  The
        functions are called on combinations that no state may have (a chain's steps too), so
        they must return something for them; values outside the declared domains are skipped.  If a
        group would need more than ``max_combos`` combinations, the declared domains are kept.
        The moves computed here stay memoised (:meth:`moves_of`) for the search."""
        got = getattr(self, "_tm_domains", None)
        if got is not None:
            return got
        self.table_setup()
        cols = self.columns
        known: list[set] = [set() for _ in cols]
        for sym in self.symmetric:                  # interchangeable columns share one set
            for c in sym[1:]:
                known[c] = known[sym[0]]
        for row in self.init_states():
            for c, v in enumerate(row):
                known[c].add(v)
        # every relation from read values to written values: the groups, and each step of a
        # chain on its own (the values between steps are over-approximated the same way)
        rels = []
        for gi, g in enumerate(self.groups):
            rels.append((self._tm_wmemo[gi], g.name, g.reads, g.writes,
                         lambda vals, gi=gi: self.writes_of(gi, vals)))
            for si, st in enumerate(getattr(g, "steps", ())):
                rels.append((self._tm_smemo[gi][si], f"{g.name}/{st.name}", st.reads, st.writes,
                             lambda vals, gi=gi, si=si: (self.step_writes(gi, si, vals),)))
        # values already combined, per (table, value sets read): groups that share a table and
        # read the same sets (interchangeable columns) are evaluated once
        used: dict[tuple, list] = {}
        changed = True
        while changed:
            changed = False
            for memo, gname, reads, writes, writes_of in rels:
                sig = (id(memo), tuple(id(known[c]) for c in reads))
                old = used.setdefault(sig, [[] for _ in reads])
                cur = [sorted(known[c], key=self._tm_code[c].__getitem__) for c in reads]
                if all(len(d) == len(o) for d, o in zip(cur, old)):
                    continue                    # nothing new for this group
                n = 1
                for d in cur:
                    n *= len(d)
                if n > max_combos:
                    self._tm_domains = tuple(c.values for c in cols)
                    return self._tm_domains
                new = [[v for v in d if v not in o_set] for d, o_set in zip(cur, map(set, old))]
                # semi-naive: each combination with at least one new value, exactly once
                for j in range(len(cur)):
                    if not new[j]:
                        continue
                    for vals in itertools.product(*old[:j], new[j], *cur[j + 1:]):
                        for w in writes_of(vals):
                            for c, v in zip(writes, w):
                                # (a value outside the declared domain can only come from a
                                # combination no state has: the search fails on a reached one)
                                if v not in known[c] and v in self._tm_code[c]:
                                    known[c].add(v)
                                    changed = True
                used[sig] = cur
        self._tm_domains = tuple(tuple(v for v in col.values if v in known[c]) for c, col in enumerate(cols))
        return self._tm_domains

    # --- the Model protocol ---------------------------------------------------------------------
    def init_states(self) -> list[tuple]:
        self.table_setup()
        rows = [self.canon(tuple(r)) for r in self.init_rows()]
        for r in rows:
            self._idle(r, "an initial row")
        return rows

    def _idle(self, row, what: str) -> None:
        for c, v in self._tm_transient:
            if row[c] != v:
                raise ValueError(f"{what} leaves transient column {self.columns[c].name} at "
                                 f"{row[c]!r} (expected {v!r})")

    def successors(self, state: tuple) -> Iterable[tuple[Action, tuple]]:
        self.table_setup()
        for gi, g in enumerate(self.groups):
            mv = self.moves_of(gi, self._tm_get[gi](state))
            if not mv:
                continue
            writes, canon, steps = g.writes, self._tm_canon[gi], self._tm_steps[gi]
            for a, w in mv:
                n = list(state)
                for c, v in zip(writes, w):
                    n[c] = v
                for si, (get, sw) in enumerate(steps):    # a chain's steps, in order
                    for c, v in zip(sw, self.step_writes(gi, si, get(n))):
                        n[c] = v
                if steps:
                    self._idle(n, f"chain {g.name}")
                n = tuple(n)
                if canon:
                    n = self.canon(n)
                if n != state:
                    yield a, n

    def next_states(self, state: tuple) -> list[tuple]:
        return [n for _, n in self.successors(state)]

    def actions(self, state: tuple) -> list[Action]:
        return [a for a, _ in self.successors(state)]

    def next_state(self, state: tuple, action: Action) -> tuple | None:
        for a, n in self.successors(state):
            if a == action:
                return n
        return None

    def properties(self) -> list[Property]:
        props = getattr(self, "_tm_props", None)
        if props is None:
            props = self._tm_props = [self._property(p) for p in self.table_properties()]
        return props

    @staticmethod
    def _property(tp: TableProperty) -> Property:
        parts = [(_getter(cl.reads), cl.pred, {}) for cl in tp.clauses]

        def holds(get, pred, memo, s) -> bool:
            k = get(s)
            v = memo.get(k)
            if v is None:
                v = memo[k] = bool(pred(*k))
            return v

        if tp.conjunction:
            def check(s: Any) -> bool:
                return all(holds(g, p, m, s) for g, p, m in parts)
        else:
            def check(s: Any) -> bool:
                return any(holds(g, p, m, s) for g, p, m in parts)
        return Property(tp.name, tp.kind, check, tp.rationale, tp.source)
