"""What the table-driven forms of the DMA families share (:mod:`.dma_type1_table`,
:mod:`.dma_iommufd_table`): a row *is* a state of the driver model (``to_state``), a column
the driver does not read defaults to its value in the initial row (``_rebuilt``), each property
is the family's own predicate on states rebuilt from the few columns it reads
(``PROPERTY_READS``), and traces are rendered by the model over the driver file (``_ref``)."""

from __future__ import annotations

from memtypes.explore.table import Clause, TableModel, TableProperty


class DriverTable(TableModel):
    """Base of the DMA families' table forms.  A subclass sets ``_base`` (the initial row),
    ``_ref`` (the family's model over the driver), ``_props`` (the family's properties), ``n``
    (pages) and ``PROPERTY_READS`` (property name -> ``n -> [columns of each clause]``), and
    defines ``to_state`` (row -> driver state, the transient column ignored) and ``_row``
    (driver state -> row).  Their declared domains are tight, so domain inference is off."""

    infer_domains = False
    PROPERTY_READS: dict = {}

    def to_state(self, row):
        raise NotImplementedError

    def _rebuilt(self, reads, vals) -> list:
        """The initial row with the values ``vals`` of columns ``reads``."""
        row = list(self._base)
        for c, v in zip(reads, vals):
            row[c] = v
        return row

    def _strays(self, a, row, nxt, writes, cols) -> None:
        """A driver function applied to a rebuilt row must change only what its move writes."""
        stray = [self.columns[c].name for c in cols if c not in writes and nxt[c] != row[c]]
        if stray:
            raise AssertionError(f"{a.actor}.{a.name} changed undeclared column(s) {stray}")

    def _local_fn(self, a, fn, guard, reads, writes):
        """The moves of a one-page op: the driver function ``fn`` (guarded by the family's
        ``guard``) on the row rebuilt from ``reads``, as the values of ``writes``."""
        def moves(vals):
            row = self._rebuilt(reads, vals)
            s = self.to_state(row)
            if not guard(s):
                return ()
            nxt = self._row(fn(s)[0])
            self._strays(a, row, nxt, writes, range(len(row) - 1))
            return ((a, tuple(nxt[c] for c in writes)),)
        return moves

    # --- the TableModel protocol ------------------------------------------------------------------
    def init_rows(self):
        return [self._base]

    def table_properties(self):
        out = []
        for pr in self._props:
            reads = self.PROPERTY_READS.get(pr.name)
            if reads is None:
                raise ValueError(f"property {pr.name}: the table form does not know what it reads")
            clauses = tuple(Clause(r, lambda *v, r=r, check=pr.check:
                                   bool(check(self.to_state(self._rebuilt(r, v)))))
                            for r in reads(self.n))
            out.append(TableProperty(pr.name, pr.kind, clauses, pr.rationale, pr.source))
        return out

    # --- rendering: the driver model's ------------------------------------------------------------
    def describe(self, s, a, n=None) -> str:
        return self._ref.describe(self.to_state(s), a, None if n is None else self.to_state(n))

    def format_state(self, s) -> str:
        return self._ref.format_state(self.to_state(s))

    def events(self, s, a):
        return self._ref.events(self.to_state(s), a)
