"""memtypes.explore: a generic explicit-state explorer (knows models, not kernels).

``explore(model, ...)`` runs a breadth-first search and returns an :class:`ExploreResult` with
the shortest counterexample of each violated ``always`` property and the shortest witness of each
reached ``sometimes`` target, rebuilt by replay (:func:`replay`).  See :mod:`.search` for the
design, :mod:`.parallel` for the multi-process mode, :mod:`.table` for table-driven models
and :mod:`.vector` for their vectorised explorer (numpy; ``explore`` uses it when it can).
"""

from memtypes.explore.model import Action, Model, Property, State, act, successors
from memtypes.explore.search import (ExploreResult, Trace, explore, next_states_fn, replay,
                                     stable_fingerprint)
from memtypes.explore.table import Chain, Clause, Column, Moves, Step, TableModel, TableProperty

__all__ = ["Action", "Model", "Property", "State", "act", "successors", "explore",
           "ExploreResult", "Trace", "replay", "stable_fingerprint", "next_states_fn",
           "Chain", "Clause", "Column", "Moves", "Step", "TableModel", "TableProperty"]
