"""The family contract: a finite model of one kind of scenario, checkable for each kernel.

A family module in ``memtypes/check/families/`` exposes one :class:`Family`.  ``build(kernel,
variant, params)`` returns an ``explore.model.Model`` whose ``properties()`` are

* ``always`` properties named exactly as in the catalogue (``check/properties.py``, the names of
  DESIGN.md), each a predicate over that family's states; and
* ``sometimes`` targets (free names, e.g. ``device-read-happened``) that the run must reach for
  its ``always`` verdicts to count as ``holds`` rather than ``vacuous``.

``kernel`` is an era's first version as a string (``"6.9"``); ``variant`` is ``"mainline"`` or a
variant name from ``variants``.  ``params`` is JSON-able (host features, bounds, regions), so a
trace can be saved as a scenario file and rebuilt exactly.  A model may define
``describe(state, action, next_state) -> str`` to say what a step did (the scenario runner prints
it) and ``format_state(state) -> str``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

ERAS: tuple[str, ...] = ("5.13", "5.14", "6.2", "6.9", "6.17", "6.18", "7.1", "7.2")
"""The KVM arm64 eras by first version (reference/kernel-kvm.md section 1); "5.13" stands for
every version up to 5.13."""


class LiveVariants(Sequence):
    """A family's variants as a live sequence: its fixed ones, then whatever ``more()`` returns
    now (the variants registered from files and packages), so a family picks up a user variant
    like a built-in one.  ``more`` must be picklable (a module-level function or a partial)."""

    def __init__(self, fixed: Sequence[str], more: Callable[[], Sequence[str]]) -> None:
        self.fixed = tuple(fixed)
        self.more = more

    def _all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.fixed + tuple(self.more())))

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self):
        return iter(self._all())

    def __contains__(self, x) -> bool:
        return x in self._all()

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, LiveVariants)) else NotImplemented

    def __add__(self, other):
        return self._all() + tuple(other)

    def __radd__(self, other):
        return tuple(other) + self._all()

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return f"LiveVariants{self._all()!r}"


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    build: Callable[[str, str, Mapping[str, Any]], Any]
    default_params: Mapping[str, Any] = field(default_factory=dict)
    variants: Sequence[str] = ()
    kernels: tuple[str, ...] = ERAS
    properties: tuple[str, ...] = ()
    """The catalogue properties this family checks; the others are ``n/a`` for it."""
    applies: Callable[[str, str], bool] | None = None
    """``applies(kernel, variant)``: whether the variant makes sense in that era (None: always)."""
    init_text: Callable[[Mapping[str, Any], int], str] | None = None
    """``init_text(params, index)``: what initial state ``index`` is (the host and its features),
    for counterexamples; None: the model's ``format_state`` of it."""
    legend: str = ""
    """A short legend of the notation of this family's traces (printed under its counterexamples)."""
    bench_params: Mapping[str, Any] = field(default_factory=dict)
    """What ``memtypes bench`` changes in ``default_params``: a larger instance of the same model,
    so that a search runs long enough to measure the explorer rather than its start-up."""

    def applies_to(self, kernel: str, variant: str) -> bool:
        if variant != "mainline" and variant not in self.variants:
            return False
        return kernel in self.kernels and (self.applies is None or self.applies(kernel, variant))


def int_param(params: Mapping[str, Any], family: str, key: str, default: int, lo: int = 1,
              hi: int | None = None) -> int:
    """Integer parameter ``key`` of ``family`` (from ``lo`` to ``hi``): a wrong one is an
    :class:`~memtypes.errors.InputError` naming ``FAMILY.KEY`` (one line, exit code 2)."""
    from memtypes.errors import InputError
    v = params.get(key, default)
    rng = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        num = isinstance(v, int) and not isinstance(v, bool)
        raise InputError(f"{v} is out of range" if num else f"'{v}' is not an integer",
                         where=f"{family}.{key}", expected=f"an integer {rng}"
                         + (" (larger models are built eagerly and do not fit in memory)"
                            if hi is not None and num and v > hi else ""))
    return v


def _kind(v: Any) -> str:
    if v is None:
        return "empty"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _same_type(value: Any, like: Any) -> bool:
    if isinstance(like, bool):
        return isinstance(value, bool)
    if isinstance(like, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(like, str):
        return isinstance(value, str)
    return isinstance(value, type(like))


MAX_LIST = 32
"""Longest list parameter accepted (hosts, regions, ...: the built-in choices are fewer)."""


def check_params(fam: Family, params: Mapping[str, Any], *, where: str = "--param") -> dict[str, Any]:
    """Validate overrides of ``fam``'s parameters: every key one of its ``default_params``, every
    value of its default's type (a boolean for a boolean, an integer for an integer, a list of
    the default's element type for a list; the element type of an empty default list is a
    string).  ``--param`` and scenario ``params:`` both go through here, so a value is refused
    or accepted the same way on either path; the family's ``build`` checks ranges and names.
    Raises :class:`~memtypes.errors.InputError` naming ``FAMILY.KEY``."""
    from memtypes.errors import InputError, choices

    out: dict[str, Any] = {}
    for key, value in params.items():
        target = f"{fam.name}.{key}"
        if key not in fam.default_params:
            raise InputError(f"family {fam.name} has no parameter '{key}'", where=where,
                             field=str(key) if where != "--param" else target,
                             expected=choices(fam.default_params, limit=16) or "no parameters")
        like = fam.default_params[key]
        if isinstance(like, (list, tuple)):
            elem = like[0] if like else ""
            example = "[" + ", ".join(str(x).lower() if isinstance(x, bool) else str(x)
                                      for x in (like or ["NAME"])) + "]"
            if not isinstance(value, list):
                raise InputError(f"'{value}' is {_kind(value)}", where=where, field=target,
                                 expected=f"a list like {example}")
            for x in value:
                if not _same_type(x, elem):
                    raise InputError(f"element '{x}' is {_kind(x)}", where=where, field=target,
                                     expected=f"a list of {_kind(elem).split(' ', 1)[1]}s like {example}")
            if len(value) > MAX_LIST:
                raise InputError(f"{len(value)} elements", where=where, field=target,
                                 expected=f"at most {MAX_LIST}")
            dup = next((x for i, x in enumerate(value) if x in value[:i]), None)
            if dup is not None:
                raise InputError(f"'{dup}' is listed twice", where=where, field=target,
                                 expected="each value once")
            out[key] = list(value)
        elif not _same_type(value, like):
            ex = str(like).lower() if isinstance(like, bool) else str(like)
            raise InputError(f"'{value}' is {_kind(value)}", where=where, field=target,
                             expected=f"{_kind(like)} (default {ex})"
                             + (": true or false" if isinstance(like, bool) else ""))
        else:
            out[key] = value
    return out
