"""What the tests of the DMA families' table forms share: a search summarised for comparison
(states, depth, transitions, completeness, and each property's shortest trace)."""

from __future__ import annotations


def summary(r):
    return (r.states, r.depth, r.transitions, r.complete,
            {n: (t.init_index, t.actions) for n, t in r.violations.items()},
            {n: (t.init_index, t.actions) for n, t in r.reached.items()})
