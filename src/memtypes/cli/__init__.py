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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the interrupt path (workers killed, staged
    outputs removed) runs for it too."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("memtypes")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    import signal

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["--version"], ["-V"]):
        print(f"memtypes {_version()}")
        return 0
    command = typer.main.get_command(app)
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding): leave SIGTERM alone
        old_term = None
    try:
        # make_context + invoke rather than command.main: click's main turns an interrupt into
        # a silent exit 130 (and SIGTERM's exception with it) before this handler sees it
        with command.make_context("memtypes", args) as ctx:
            rv = command.invoke(ctx)
    except KeyboardInterrupt as e:
        # Ctrl-C (even twice) or SIGTERM: the workers are gone and nothing partial was left
        # behind (outputs are staged and renamed only when complete); one line, 130 / 143
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except ValueError:
                pass
        from memtypes.yamlfile import COMMITTED
        term = isinstance(e, Terminated)
        done = f"wrote {', '.join(COMMITTED)}" if COMMITTED else "no output written"
        print(f"memtypes: {'terminated' if term else 'interrupted'}: {done}", file=sys.stderr)
        return 143 if term else 130
    except InputError as e:
        print(f"memtypes: error: {e.one_line()}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if getattr(e, "ctx", None) else str(e))
        return 2
    except click.exceptions.ClickException as e:  # usage errors, bad option values
        msg = " ".join(e.format_message().split())
        print(f"memtypes: error: {msg}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("memtypes: interrupted: no output written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `memtypes ... | head`: the reader went away; not an error
        _silence_stdout()
        return 0
    except SystemExit as e:  # Rich turns a broken pipe into SystemExit
        if isinstance(e.code, int):
            _silence_stdout()
            return e.code
        raise
    finally:
        if old_term is not None:
            try:
                signal.signal(signal.SIGTERM, old_term)
            except (ValueError, TypeError):
                pass
    return rv if isinstance(rv, int) else 0


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
