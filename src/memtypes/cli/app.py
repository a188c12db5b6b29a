"""The Typer application object; each command lives in its own module under ``memtypes.cli``.

Commands parse their options, call one layer below, and render through ``memtypes.report``.
Bad input is raised as :class:`memtypes.errors.InputError` and becomes one line and exit 2 in
:func:`memtypes.cli.main`.
"""

from __future__ import annotations

import typer

try:  # typer >= 0.2x vendors its own click; older typer depends on the click package
    from typer import _click as click  # noqa: F401 (re-exported for memtypes.cli)
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]  # noqa: F401

app = typer.Typer(
    name="memtypes",
    help="What memory type a KVM guest really gets, whether DMA stays coherent, and whether a "
         "kernel rule (or a proposed one) is safe.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
