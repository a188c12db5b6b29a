"""Bad input: the one error type every layer raises for things a user typed or wrote.

It renders as exactly one line (file, line, field, what was expected) and makes the CLI exit
with code 2. It imports nothing of memtypes, so any layer above ``arch`` may raise it; ``arch``
itself raises plain ``ValueError`` and its callers translate.
"""

from __future__ import annotations


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
        self.expected = expected
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
