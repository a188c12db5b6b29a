"""A toy family for the checker's tests (not part of the package).

State (x, y, flag).  Actor ``a`` increments x up to ``xmax``, ``b`` increments y up to
``ymax``, ``c`` sets the flag when x == 2 (not on kernel 5.13).

* mmio-never-cacheable: not (x == 2 and y == 1)   -> violated, 2 steps from init #1
* nc-only-where-allowed: flag == 0                 -> violated, 2 steps from init #1 (holds on 5.13)
* tags-sanitised, coherency-reported: always true  -> holds
* sometimes ``x-max`` (x == xmax); variant ``nosome`` adds ``never`` (x == 99) -> vacuous
"""

from __future__ import annotations

from memtypes.check.family import Family
from memtypes.explore.model import Property, act


class ToyModel:
    name = "toy"

    def __init__(self, kernel: str, variant: str, params):
        self.kernel, self.variant = kernel, variant
        self.xmax = int(params.get("xmax", 3))
        self.ymax = int(params.get("ymax", 2))

    def init_states(self):
        return [(0, 0, 0), (1, 0, 0)]

    def actions(self, s):
        x, y, f = s
        out = []
        if x < self.xmax:
            out.append(act("a", "inc", var="x", by=1))
        if y < self.ymax:
            out.append(act("b", "inc", var="y", by=1))
        if x == 2 and not f and self.kernel != "5.13":
            out.append(act("c", "set", flag=True))
        return out

    def next_state(self, s, a):
        x, y, f = s
        if a.actor == "a":
            return (x + 1, y, f)
        if a.actor == "b":
            return (x, y + 1, f)
        if a.actor == "c":
            return (x, y, 1)
        return None

    def properties(self):
        props = [
            Property("mmio-never-cacheable", "always", lambda s: not (s[0] == 2 and s[1] == 1)),
            Property("nc-only-where-allowed", "always", lambda s: s[2] == 0),
            Property("tags-sanitised", "always", lambda s: True),
            Property("coherency-reported", "always", lambda s: s[0] <= self.xmax),
            Property("x-max", "sometimes", lambda s: s[0] == self.xmax),
        ]
        if self.variant == "nosome":
            props.append(Property("never", "sometimes", lambda s: s[0] == 99))
        return props

    def describe(self, s, a, n):
        return f"({s[0]},{s[1]},{s[2]}) -> ({n[0]},{n[1]},{n[2]})"

    def format_state(self, s):
        return f"x={s[0]} y={s[1]} flag={s[2]}"


def applies(kernel, variant):
    return not (variant == "old-only" and kernel != "5.13")


def build(kernel, variant, params):
    return ToyModel(kernel, variant, params)


FAMILY = Family(
    name="toy",
    description="a toy family for tests",
    build=build,
    default_params={"xmax": 3, "ymax": 2},
    variants=("nosome", "old-only"),
    kernels=("5.13", "6.9"),
    properties=("mmio-never-cacheable", "nc-only-where-allowed", "tags-sanitised",
                "coherency-reported"),
    applies=applies,
)


class PlainModel(ToyModel):
    """The toy model without ``describe``/``format_state`` (both are optional)."""

    describe = None
    format_state = None


def build_plain(kernel, variant, params):
    return PlainModel(kernel, variant, params)


PLAIN_FAMILY = Family(
    name="toy-plain", description="the toy family without describe", build=build_plain,
    default_params={"xmax": 3, "ymax": 2}, kernels=("6.9",),
    properties=("mmio-never-cacheable", "nc-only-where-allowed"))
