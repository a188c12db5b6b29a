"""Bad input: the one error type every layer raises for things a user typed or wrote.

It renders as exactly one line (file, line, field, what was expected) and makes the CLI exit
with code 2. It imports nothing of memtypes, so any layer above ``arch`` may raise it; ``arch``
itself raises plain ``ValueError`` and its callers translate.
"""

from __future__ import annotations

import re


class InputError(ValueError):
    """A value a user supplied is not acceptable.

    ``where`` names the origin (an option such as ``--kernel``, or a file path), ``line`` the
    1-based line in that file when known, ``field`` the key, and ``expected`` the accepted forms.
    """

    def __init__(self, what: str, *, where: str = "", line: int | None = None,
                 field: str = "", expected: str = "") -> None:
        self.what = what
        self.where = where
        self.line = line
        self.field = field
        self.expected = _short(expected)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        loc = self.where
        if self.line is not None:
            loc = f"{loc}:{self.line}" if loc else f"line {self.line}"
        parts = [p for p in (loc, self.field) if p]
        head = ": ".join(parts)
        msg = f"{head}: {self.what}" if head else self.what
        if self.expected:
            msg += f" (expected {self.expected})"
        return " ".join(msg.split())


EXPECTED_MAX = 160
"""Longest ``expected`` text kept whole: a longer comma-separated list of choices is cut to its
first few and a count, so that one line stays one readable line."""


def choices(items, limit: int = 6) -> str:
    """``a, b, c, ... (12 more)``: the first ``limit`` of ``items`` and how many are left out."""
    items = [str(x) for x in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"


def _short(expected: str) -> str:
    """``expected`` cut to a readable length: a list of choices (``a, b, c``, or ``x; y; z``,
    maybe after a ``label: ``) keeps its first few items and says how many it left out."""
    if len(expected) <= EXPECTED_MAX:
        return expected
    head, colon, rest = expected.partition(": ")
    if not colon or len(head) > EXPECTED_MAX // 2 or (", " not in rest and "; " not in rest):
        head, rest = "", expected
    for sep, keep in (("; ", 3), (", ", 6)):
        if sep not in rest:
            continue
        parts = rest.split(sep)
        extra = 0
        m = re.fullmatch(r"\.\.\. \((\d+) more\)\)?", parts[-1])
        if m:  # already cut once: keep the count right
            parts.pop()
            extra = int(m.group(1))
        if len(parts) > keep:
            cut = sep.join(parts[:keep]) + f"{sep}... ({len(parts) - keep + extra} more)"
            cut = f"{head}: {cut}" if head else cut
            if len(cut) <= EXPECTED_MAX * 2:
                return cut
    return expected[:EXPECTED_MAX - 3] + "..."
