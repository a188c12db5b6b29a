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


def int_param(params: Mapping[str, Any], family: str, key: str, default: int, lo: int = 1) -> int:
    """Integer parameter ``key`` of ``family`` (at least ``lo``): a wrong one is an
    :class:`~memtypes.errors.InputError` naming ``FAMILY.KEY`` (one line, exit code 2)."""
    from memtypes.errors import InputError
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise InputError(f"'{v}' is not an integer >= {lo}", where=f"{family}.{key}",
                         expected=f"an integer >= {lo}")
    return v
