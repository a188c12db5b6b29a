"""The ``memtypes`` command.

Exit codes: 0 done (findings are results, not failures), 1 a property violated under
``--strict``, 2 bad input or usage (one line on stderr, never a traceback).
"""

from __future__ import annotations

import sys

import click
import typer

from memtypes.cli.app import app
from memtypes.errors import InputError

# Each command registers itself on ``app`` when imported (one import line per command).


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="memtypes", standalone_mode=False)
    except InputError as e:
        print(f"memtypes: error: {e.one_line()}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as e:  # pragma: no cover - click >= 8.2
        print(e.ctx.get_help() if e.ctx else str(e))
        return 2
    except click.exceptions.UsageError as e:
        msg = " ".join(e.format_message().split())
        print(f"memtypes: error: {msg}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        print("memtypes: aborted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. `memtypes ... | head`
        return 0
    return rv if isinstance(rv, int) else 0
