"""Text renderings (Rich renderables) of a check run and of a scenario run."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from memtypes.check import properties as catalogue
from memtypes.report.model import counterexamples, family_tables, headline, legend, row_label

STYLE = {"holds": "green", "violated": "bold red", "vacuous": "yellow", "n/a": "dim"}


def matrix_tables(matrix) -> list[RenderableType]:
    out: list[RenderableType] = []
    for t in family_tables(matrix):
        table = Table(title=f"{t['family']}", title_justify="left", title_style="bold",
                      show_lines=False, expand=False)
        table.add_column("kernel", no_wrap=True)
        for num, short, _ in t["columns"]:
            table.add_column(f"{num}:{short}", no_wrap=True)
        table.add_column("states", justify="right", no_wrap=True)
        for row in t["rows"]:
            cells = [Text(txt, style=STYLE.get(v, "")) for v, txt in row["cells"]]
            states = f"{row['states']}" + ("" if row["complete"] else "+")
            label = Text(row["label"], style="" if row["mainline"] else "italic")
            table.add_row(label, *cells, states)
        if t["na"]:
            nums = ", ".join(str(catalogue.NAMES.index(p) + 1) for p in t["na"])
            table.caption = f"n/a for {t['family']}: {nums}"
            table.caption_justify = "left"
        out.append(table)
    return out


def legend_text(matrix) -> Text:
    t = Text()
    for num, short, name, _ in legend(matrix):
        t.append(f"{num:>2}:{short:<6}", style="bold")
        t.append(f" {name}\n")
    t.append("violated(N): the shortest counterexample has N steps; vacuous: no violation but a "
             "sometimes target was never reached;\n"
             "holds*: holds within bound (a bound cut the search); states+: search cut by a bound\n",
             style="dim")
    return t


def steps_text(steps: list[dict[str, Any]], init: int = 0, indent: str = "  ",
               init_text: str | None = None) -> Text:
    t = Text()
    t.append(f"{indent}0. initial state #{init}" + (f": {init_text}" if init_text else "") + "\n",
             style="dim")
    for i, s in enumerate(steps, start=1):
        t.append(f"{indent}{i}. ")
        t.append(f"{s['actor']}", style="cyan")
        t.append(f" {s['action']}", style="bold")
        if s.get("detail"):
            t.append(f" {s['detail']}")
        t.append("\n")
        if s.get("describe"):
            for line in str(s["describe"]).splitlines():
                t.append(f"{indent}     {line}\n", style="dim")
    return t


def counterexamples_render(matrix) -> list[RenderableType]:
    out: list[RenderableType] = []
    legends: dict[str, str] = {}
    for cx in counterexamples(matrix):
        head = Text()
        head.append(f"{cx.family}: {cx.property}", style="bold red")
        head.append(f" violated on {', '.join(cx.rows)}; shortest counterexample, "
                    f"{len(cx.steps)} step(s):")
        ctx = cx.context or {}
        parts = [head]
        if ctx.get("variant_source"):
            parts.append(Text(f"  (variant from {ctx['variant_source']})", style="dim"))
        parts.append(steps_text(cx.steps, cx.init, init_text=ctx.get("init")))
        out.append(Group(*parts))
        if ctx.get("legend"):
            legends[cx.family] = ctx["legend"]
    for fam, leg in legends.items():
        out.append(Text(f"legend ({fam}): {leg}\n", style="dim"))
    return out


def notes_text(matrix) -> Text:
    t = Text()
    s = matrix.stats
    for j in matrix.jobs:
        un = [k for k, v in j.sometimes.items() if not v]
        if un and any(r.verdict == "vacuous" for r in j.results):
            t.append(f"vacuous: {j.job.family} {row_label(j.job.kernel, j.job.variant)}: never "
                     f"reached {', '.join(un)}\n", style="yellow")
    if s.get("incomplete_jobs"):
        b = s["bounds"]
        bound = ", ".join(f"{k}={v}" for k, v in b.items() if v)
        t.append(f"holds within bound ({bound}): search cut in {len(s['incomplete_jobs'])} "
                 f"job(s): {', '.join(s['incomplete_jobs'])}\n", style="yellow")
    if s.get("missing_families"):
        t.append(f"families not installed: {', '.join(s['missing_families'])}\n", style="dim")
    tm = s.get("timing", {})
    t.append(f"checked {s['jobs']} job(s) in {tm.get('seconds', 0):.1f} s on {s['workers']} "
             "worker(s); the summary is at the top\n", style="dim")
    if s.get("note"):
        t.append(f"note: {s['note']}\n", style="dim")
    return t


def headline_text(matrix) -> Text:
    t = Text()
    style = ""
    for line in headline(matrix):
        if not line.startswith(" "):
            style = ("bold red" if line.startswith("mainline") else "bold yellow") \
                if line.split(":")[0] in ("mainline", "variants") and "no violation" not in line \
                else "bold" if line.startswith(("mainline", "variants")) else ""
            t.append(line + "\n", style=style)
        else:
            t.append(line + "\n", style="red" if style == "bold red" else "")
    return t


def render_check(console: Console, matrix) -> None:
    if not matrix.jobs:
        console.print("no jobs: no family models this kernel/variant selection")
        console.print(notes_text(matrix))
        return
    console.print(headline_text(matrix))
    for t in matrix_tables(matrix):
        console.print(t)
    console.print(legend_text(matrix))
    cxs = counterexamples_render(matrix)
    if cxs:
        console.print(Text("Counterexamples", style="bold underline"))
        for c in cxs:
            console.print(c)
    console.print(notes_text(matrix))


def _beyond(spec) -> str:
    """``; newer than the model, assuming 7.3`` for a kernel past what the model knows."""
    from memtypes.linux.version import beyond_model, parse_version, split_variant
    try:
        mark = beyond_model(parse_version(split_variant(str(spec))[0]))
    except Exception:       # the scenario loader validated it; never fail a report on this
        return ""
    return f"; {mark}" if mark else ""


def render_run(console: Console, rep) -> None:
    s = rep.scenario
    fam = rep.extra.get("family", s.family)
    kern = rep.extra.get("kernel", s.kernel)
    var = rep.extra.get("variant", s.variant or "mainline")
    console.print(Text(f"{s.path}: {fam} on kernel {row_label(kern, var)} "
                       f"(from {s.kernel}{_beyond(s.kernel)}), initial state #{s.init}", style="bold"))
    for n in rep.init_broken:
        console.print(Text(f"  initial state violates {n}", style="bold red"))
    for o in rep.steps:
        t = Text()
        t.append(f"{o.index:>3}. ")
        t.append(o.action.actor, style="cyan")
        t.append(f" {o.action.name}", style="bold")
        d = o.action.detail()
        if d:
            t.append(f" {d}")
        if not o.changed:
            t.append("  (no change)", style="dim")
        console.print(t)
        if o.describe:
            for line in o.describe.splitlines():
                console.print(Text(f"       {line}", style="dim"))
        for n in o.broken:
            console.print(Text(f"       VIOLATED {n}: {catalogue.get(n).holds_when}"
                               if n in catalogue.NAMES else f"       VIOLATED {n}",
                               style="bold red"))
        for n in o.reached:
            console.print(Text(f"       reached {n}", style="green"))
    if rep.final_state:
        console.print(Text(f"final state: {rep.final_state}", style="dim"))
    if rep.violated:
        console.print(Text("violated: " + ", ".join(f"{k} (step {v})" for k, v in rep.violated.items()),
                           style="bold red"))
    else:
        console.print(Text("no property violated", style="green"))
    if rep.unreached:
        console.print(Text("not reached: " + ", ".join(rep.unreached), style="dim"))
