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
    kernels: Optional[str] = typer.Option(
        None, "--kernel", help="Run under these kernels instead of the file's (A,B,... or a range "
                               "A..B; VERSION+VARIANT allowed): side by side, marking where the "
                               "runs part."),
) -> int:
    """Run a scenario file step by step; report each step and any property it breaks."""
    from memtypes.check.play import run_file
    from memtypes.report import jsondoc, text

    variants_opt.load(variant_files)
    if kernels is not None:
        return _side_by_side(file, kernels, json_out, strict)
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


def _side_by_side(file: str, kernels: str, json_out: bool, strict: bool) -> int:
    from rich.table import Table
    from rich.text import Text

    from memtypes.check.kernels import parse_kernels
    from memtypes.check.play import parting, run_kernels
    from memtypes.report import jsondoc

    specs = []
    for item in kernels.split(","):
        item = item.strip()
        if ".." in item.partition("+")[0]:
            from memtypes.linux.kvm.eras import rule_points
            from memtypes.linux.version import parse_version, split_variant
            base, var = split_variant(item)
            a, _, b = base.partition("..")
            specs += [v + (f"+{var}" if var else "") for v in rule_points(parse_version(a, where="--kernel"),
                                                                         parse_version(b, where="--kernel"))]
        else:
            specs.append(item)
    parse_kernels(",".join(specs))            # one clear line for a bad version
    reps = run_kernels(file, specs)
    part = parting(reps)
    for note in reps[0].extra.get("notes", ()):
        Console(stderr=True).print(f"memtypes: warning: {note}", soft_wrap=True, markup=False)
    if json_out:
        doc = {"runs": [dict(jsondoc.run_doc(r), spec=r.extra["spec"]) for r in reps], "parts_at": part}
        sys.stdout.write(jsondoc.dumps(doc))
    else:
        con = Console(width=None if sys.stdout.isatty() else 200)
        s = reps[0].scenario
        con.print(Text(f"{s.path}: {reps[0].extra['family']} under {len(reps)} kernel(s), initial "
                       f"state #{s.init}", style="bold"))
        t = Table(show_header=True)
        t.add_column("step")
        for r in reps:
            lab = r.extra["spec"] + (f" (era {r.extra['kernel']})" if r.extra["kernel"] != r.extra["spec"] else "")
            t.add_column(lab)
        for i, st in enumerate(s.steps):
            cells = []
            for r in reps:
                o = r.steps[i]
                first = (o.describe or "").splitlines()[0] if o.describe else ""
                txt = first
                if not o.changed and "changes nothing" not in txt:
                    txt = (txt + " " if txt else "") + "(no change)"
                if o.broken:
                    txt += "\nVIOLATED " + ", ".join(o.broken)
                cells.append(Text(txt))
            mark = "  <- the runs part here" if part == i + 1 else ""
            t.add_row(Text(f"{i + 1}. {st.label()}{mark}"), *cells)
        con.print(t)
        for r in reps:
            v = ", ".join(f"{k} (step {n})" for k, n in r.violated.items()) or "none"
            con.print(f"{r.extra['spec']}: violated {v}")
        con.print("the runs do not part" if part is None else f"the runs part at step {part}")
    if strict and any(r.violated for r in reps):
        return 1
    return 0
