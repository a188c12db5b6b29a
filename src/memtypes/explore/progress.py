"""A Rich progress display for :func:`memtypes.explore.explore`'s ``progress`` hook.

Usage (the CLI layer)::

    with RichProgress(label="passthrough 6.17") as prog:
        res = explore(model, progress=prog)

Nothing is drawn unless stderr is a terminal and the run has lasted more than ``delay``
seconds (1 s by default), so short runs and redirected output stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class RichProgress:
    """A callable ``progress(states, depth, frontier)`` that renders one live status line."""

    def __init__(self, label: str = "exploring", delay: float = 1.0, file: Any = None,
                 force: bool = False):
        self.label = label
        self.delay = delay
        self.file = file if file is not None else sys.stderr
        self.force = force
        self.enabled = force or bool(getattr(self.file, "isatty", lambda: False)())
        self._t0 = time.monotonic()
        self._live = None

    def __enter__(self) -> "RichProgress":
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _text(self, states: int, depth: int, frontier: int) -> str:
        dt = time.monotonic() - self._t0
        rate = states / dt if dt > 0 else 0.0
        return (f"{self.label}: {states:,} states, depth {depth}, frontier {frontier:,}, "
                f"{rate:,.0f} states/s, {dt:.1f} s")

    def __call__(self, states: int, depth: int, frontier: int) -> None:
        if not self.enabled or time.monotonic() - self._t0 < self.delay:
            return
        if self._live is None:
            from rich.console import Console
            from rich.live import Live
            self._live = Live("", console=Console(file=self.file, force_terminal=self.force or None),
                             transient=True,
                              refresh_per_second=10)
            self._live.start()
        self._live.update(self._text(states, depth, frontier))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
