"""``memtypes diff A B``: what changes between two kernels, releases or variants."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from memtypes.cli import variants_opt
from memtypes.cli.app import app

HELP = """What changes between two kernels, releases or variants (A -> B).

\b
A and B as --kernel takes them: 6.16, 6.17.2, 6.17+VARIANT (a KVM or DMA variant, built-in or
from --variants FILE.py).  Lists the rule switches and hooks that differ with their reasons, and
every change over the explain space (each backing, host class FWB/DIC/MTE, slot flags, MTE off or enabled before or after the slot,
fault kind, a remap over the slot), grouped so one change over many hosts is one line; with
--check, the check verdicts that change, each with its shortest counterexample.
"""


@app.command("diff", help=HELP, no_args_is_help=True)
def diff_cmd(
    a: str = typer.Argument(..., help="kernel A: VERSION[+VARIANT]"),
    b: str = typer.Argument(..., help="kernel B: VERSION[+VARIANT]"),
    check: bool = typer.Option(False, "--check", help="also compare the verdicts of memtypes check"),
    max_states: Optional[int] = typer.Option(None, "--max-states",
                                             help="state bound per check job (default 20000; 0: none)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    html_out: Optional[str] = typer.Option(None, "--html", help="write a self-contained HTML page"),
    variant_files: Optional[List[str]] = variants_opt.option(),
) -> None:
    from memtypes.check.diff import diff
    from memtypes.errors import InputError
    from memtypes.report import diff as rdiff
    from memtypes.yamlfile import write_atomic

    vfiles = variants_opt.load(variant_files)
    if max_states is not None and max_states < 0:
        raise InputError(f"'{max_states}' is negative", where="--max-states", expected="an integer >= 0")
    res = diff(a, b, check=check, max_states=max_states)
    if as_json:
        d = res.as_dict()
        if vfiles:
            d["variant_files"] = vfiles
        sys.stdout.write(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("\n".join(rdiff.text_lines(res)) + "\n")
    if html_out:
        write_atomic(html_out, rdiff.html_page(res))
