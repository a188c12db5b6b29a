"""Renderings of ``memtypes conform``: a Rich table per kernel x CPU, a summary line per
kernel, a deterministic JSON document and a self-contained HTML page.  No logic of its own:
the statuses, predictions and reasons come from ``memtypes.conform``."""

from __future__ import annotations

import json
from typing import Any

SHOW = ("mismatch", "not observable here")


def conform_doc(results, *, facts: dict) -> dict[str, Any]:
    """The JSON document: the host facts (QEMU version, cache, ...), then per kernel x CPU the
    booted release, the CPU features the agent reported, every observation with the model's
    prediction and reasons, and the counts."""
    return {"facts": facts, "targets": [r.as_dict() for r in results]}


def _fmt(d: dict | None) -> str:
    if not d:
        return ""
    return ", ".join(f"{k}={v}" for k, v in d.items())


def render_text(con, results, *, verbose: bool = False) -> None:
    """Every text from a target (versions, case ids, observed values, errors; a --replay file's
    header supplies them) is escaped: a '[/x]' in it is shown, not read as Rich markup."""
    from rich.markup import escape as esc
    from rich.table import Table

    for r in results:
        head = f"[bold]{esc(r.kernel)}[/bold] on [bold]{esc(r.cpu)}[/bold]"
        if r.release:
            head += f"  ({esc(r.release)}"
            if r.comparison:
                f = r.comparison.host.features
                head += f"; {esc(r.comparison.host.mode)}; fwb={int(f.fwb)} dic={int(f.dic)} mte={int(f.mte)}"
            head += ")"
        con.print(head)
        if r.model_kernel:
            con.print(f"  model: {esc(r.model_kernel)}")
        if not r.ran:
            con.print(f"  [red]not run[/red]: {esc(r.error)}")
            continue
        rows = [x for x in r.comparison.rows if verbose or x.status in SHOW]
        if rows:
            t = Table(show_header=True, header_style="bold", pad_edge=False)
            for col in ("case", "observation", "status", "observed", "model", "why"):
                t.add_column(col, overflow="fold")
            for x in rows:
                shown = x.reasons if x.status == "mismatch" else x.reasons[-2:]
                why = "; ".join(rr.rule + (" [UNVERIFIED]" if rr.unverified else "") for rr in shown) or x.note
                style = {"mismatch": "red", "agree": "green"}.get(x.status, "yellow")
                t.add_row(esc(x.case), esc(x.key), f"[{style}]{x.status}[/{style}]", esc(_fmt(x.observed)),
                          esc(_fmt(x.expected)), esc(why))
            con.print(t)
        nm = [x for x in r.comparison.rows if x.status == "not modelled"]
        if nm and not verbose:
            con.print(f"  not modelled ({len(nm)}): {esc(not_modelled_brief(nm))} (--verbose lists them)",
                      highlight=False)
        con.print("  " + esc(summary(r)))


def not_modelled_brief(rows) -> str:
    """What the model does not cover, grouped: capabilities, agent backings, other notes."""
    caps = sorted({int(x.key.split(":")[1]) for x in rows if x.key.startswith("cap:")})
    kinds = sorted({x.note.rsplit("'", 2)[-2] for x in rows if x.note.startswith("the model has no backing kind")})
    other = sorted({x.note for x in rows if not x.key.startswith("cap:")
                    and not x.note.startswith("the model has no backing kind")})
    parts = []
    if caps:
        parts.append("capabilities " + ", ".join(map(str, caps)))
    if kinds:
        parts.append("backings " + ", ".join(kinds))
    parts.extend(other[:3])
    if len(other) > 3:
        parts.append(f"{len(other) - 3} more")
    return "; ".join(parts)


def summary(r) -> str:
    """One target's counts, timing and error, as ``conform.run.summary_line`` writes them."""
    from memtypes.conform.run import summary_line
    return summary_line(r)


def render_html(results, *, facts: dict) -> str:
    from memtypes.report.html import _env
    return _env().get_template("conform.html.j2").render(results=results, facts=facts, summary=summary,
                                                          fmt=_fmt, json=json)
