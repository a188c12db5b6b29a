"""The ``memtypes`` command.

Exit codes: 0 done (findings are results, not failures), 1 a property violated under
``--strict``, 2 bad input or usage (one line on stderr, never a traceback).
"""

from __future__ import annotations

import sys

import typer

from memtypes.cli.app import app, click
from memtypes.errors import InputError

# Each command registers itself on ``app`` when imported (one import line per command).
from memtypes.cli import combine as _combine  # noqa: F401,E402
from memtypes.cli import check as _check  # noqa: F401,E402
from memtypes.cli import run as _run  # noqa: F401,E402
from memtypes.cli import explain as _explain  # noqa: F401,E402
from memtypes.cli import probe as _probe  # noqa: F401,E402
from memtypes.cli import migrate as _migrate  # noqa: F401,E402
from memtypes.cli import bench as _bench  # noqa: F401,E402
from memtypes.cli import conform as _conform  # noqa: F401,E402
from memtypes.cli import caps as _caps  # noqa: F401,E402
from memtypes.cli import diff as _diff  # noqa: F401,E402


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="memtypes", standalone_mode=False)
    except InputError as e:
        print(f"memtypes: error: {e.one_line()}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if getattr(e, "ctx", None) else str(e))
        return 2
    except click.exceptions.UsageError as e:
        msg = " ".join(e.format_message().split())
        print(f"memtypes: error: {msg}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("memtypes: aborted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `memtypes ... | head`: the reader went away; not an error
        _silence_stdout()
        return 0
    except SystemExit as e:  # Rich turns a broken pipe into SystemExit
        if isinstance(e.code, int):
            _silence_stdout()
            return e.code
        raise
    return rv if isinstance(rv, int) else 0


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
