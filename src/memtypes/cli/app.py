"""The Typer application object; each command lives in its own module under ``memtypes.cli``.

Commands parse their options, call one layer below, and render through ``memtypes.report``.
Bad input is raised as :class:`memtypes.errors.InputError` and becomes one line and exit 2 in
:func:`memtypes.cli.main`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="memtypes",
    help="What memory type a KVM guest really gets, whether DMA stays coherent, and whether a "
         "kernel rule (or a proposed one) is safe.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
