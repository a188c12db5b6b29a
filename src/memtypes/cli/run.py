"""``memtypes run FILE``: a scenario file step by step, with property checks at each step."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from typing import List, Optional

from memtypes.cli import variants_opt
from memtypes.cli.app import app


@app.command("run")
def run(
    file: str = typer.Argument(..., help="A scenario YAML file (see memtypes.scenario)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a property is violated."),
    variant_files: Optional[List[str]] = variants_opt.option(),
) -> int:
    """Run a scenario file step by step; report each step and any property it breaks."""
    from memtypes.check.play import run_file
    from memtypes.report import jsondoc, text

    variants_opt.load(variant_files)
    rep = run_file(file)
    for note in rep.extra.get("notes", ()):
        Console(stderr=True).print(f"memtypes: warning: {note}", soft_wrap=True, markup=False)
    if json_out:
        sys.stdout.write(jsondoc.dumps(jsondoc.run_doc(rep)))
    else:
        text.render_run(Console(width=None if sys.stdout.isatty() else 160), rep)
    if strict and rep.violated:
        return 1
    return 0
