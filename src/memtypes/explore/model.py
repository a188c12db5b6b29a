"""The model protocol the explorer checks (after stateright's ``Model`` trait).

A model is a small object:

* ``init_states()``: the initial states, in a deterministic order;
* ``actions(state)``: the enabled actions of a state, in a deterministic order;
* ``next_state(state, action)``: the successor, or ``None`` when the action changes nothing;
* ``properties()``: named ``always`` invariants and ``sometimes`` reachability targets.

A model may also define ``successors(state)`` yielding ``(action, next_state)`` pairs (with the
same order and meaning as ``actions`` + ``next_state``) when it can produce both faster together;
the explorer uses it when present.

Optional fast paths the explorer (``memtypes.explore.search``) also uses when present:
``next_states(state)`` returning the list of next states in the same order as ``successors``
(no actions: the explorer stores fingerprints and finds the actions again only when it rebuilds
a trace), and ``encode(state) -> bytes | int``, a canonical encoding from which the parallel mode
derives seed-independent fingerprints (an int in ``[0, 2**63)`` is used as the fingerprint).

States must be immutable and hashable (tuples of small ints and strings, or frozen dataclasses
with ``slots``).  Actions are :class:`Action` values: an actor, an action name and a tuple of
``(key, value)`` arguments whose values are str, int, bool or tuples of those, so that a trace
is plain data, serialises to JSON/YAML, and replays through the scenario runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator, Literal, NamedTuple, Protocol, Sequence


class Action(NamedTuple):
    actor: str
    name: str
    args: tuple[tuple[str, Any], ...] = ()

    def arg(self, key: str, default: Any = None) -> Any:
        for k, v in self.args:
            if k == key:
                return v
        return default

    def detail(self) -> str:
        return " ".join(f"{k}={_fmt(v)}" for k, v in self.args)

    def as_dict(self) -> dict:
        return {"actor": self.actor, "action": self.name, "detail": self.detail(),
                "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.args}}

    def __str__(self) -> str:
        d = self.detail()
        return f"{self.actor}.{self.name}({d})" if d else f"{self.actor}.{self.name}"


def act(actor: str, name: str, **args: Any) -> Action:
    """Build an :class:`Action`; arguments keep the keyword order given."""
    return Action(actor, name, tuple((k, tuple(v) if isinstance(v, list) else v)
                                     for k, v in args.items()))


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(_fmt(x) for x in v) or "-"
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


State = Hashable


@dataclass(frozen=True)
class Property:
    """A named property.  ``always``: ``check(state)`` must hold in every reachable state;
    ``sometimes``: some reachable state must satisfy ``check`` (a target that proves the run
    reached something interesting).  ``rationale`` and ``source`` say why it matters."""

    name: str
    kind: Literal["always", "sometimes"]
    check: Callable[[Any], bool]
    rationale: str = ""
    source: str = ""


class Model(Protocol):
    name: str

    def init_states(self) -> Sequence[State]: ...

    def actions(self, state: State) -> Iterable[Action]: ...

    def next_state(self, state: State, action: Action) -> State | None: ...

    def properties(self) -> Sequence[Property]: ...


def successors(model: Model, state: State) -> Iterator[tuple[Action, State]]:
    """The successors of ``state``: ``model.successors`` when defined, else actions+next_state.
    A ``None`` next state (no change) is skipped."""
    fast = getattr(model, "successors", None)
    if fast is not None:
        yield from fast(state)
        return
    for a in model.actions(state):
        n = model.next_state(state, a)
        if n is not None:
            yield a, n
