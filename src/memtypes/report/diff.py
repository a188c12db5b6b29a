"""Renderings of ``memtypes diff``: text lines, JSON (``DiffResult.as_dict``) and a
self-contained HTML page (no logic of their own)."""

from __future__ import annotations

import html as _html


def _val(v) -> str:
    return "on" if v is True else "off" if v is False else str(v)


def text_lines(res) -> list[str]:
    a, b = res.a, res.b
    out = [f"memtypes diff {a.spec} -> {b.spec}: kernel {a.kernel.version} (era {a.kernel.rules.span}"
           f"{'' if a.kernel.variant == 'mainline' else ' + ' + a.kernel.variant}) against "
           f"{b.kernel.version} (era {b.kernel.rules.span}"
           f"{'' if b.kernel.variant == 'mainline' else ' + ' + b.kernel.variant})"]
    r = res.rules
    out.append("")
    out.append("Rules that differ:")
    if not (r["switches"] or r["hooks"] or r["dma"]):
        out.append("  none (same switches and hooks)")
    for s in r["switches"]:
        out.append(f"  {s['switch']}: {_val(s['before'])} -> {_val(s['after'])}")
    for h in r["hooks"]:
        out.append(f"  hook {h['hook']}: {h['before'] or 'the era rule'} -> {h['after'] or 'the era rule'}")
    if r["dma"]:
        for side, d in (("A", r["dma"]["before"]), ("B", r["dma"]["after"])):
            off = ", ".join(d["flush_points_off"]) or "none"
            hooks = ", ".join(d["hooks"]) or "none"
            out.append(f"  DMA {side}: {d['name']} (base {d['base']}; flush points off: {off}; hooks: {hooks})")
    if r["reasons"]:
        out.append("  why:")
        for x in r["reasons"]:
            out.append(f"    [{x['side']}] {x['rule']}: {x['text']} ({x['source']})"
                       + (" [UNVERIFIED]" if x.get("unverified") else ""))
    out.append("")
    changed = sum(c.cells for c in res.changes)
    out.append(f"explain space: {res.cells} cells per side (backing x host class FWB/DIC/MTE x slot "
               f"flags x MTE off, before or after the slot x fault x remap); {changed} change, in {len(res.changes)} group(s)")
    out.append("  (a range may include cells that neither side maps, refused the same way on both)")
    for c in res.changes:
        out.extend("  " + line for line in c.lines())
    if res.verdicts is not None:
        out.append("")
        v = res.verdicts
        out.append("check verdicts that change:" if v["changes"] else "check verdicts: none change")
        for n in v["notes"]:
            out.append(f"  note: {n}")
        for ch in v["changes"]:
            x, y = ch["before"], ch["after"]
            out.append(f"  {ch['family']}: {ch['property']}: {x['verdict']} ({x['kernel']}"
                       f"{'' if x['variant'] == 'mainline' else '+' + x['variant']}) -> {y['verdict']} "
                       f"({y['kernel']}{'' if y['variant'] == 'mainline' else '+' + y['variant']})")
            cx = ch["counterexample"]
            if cx:
                out.append(f"    shortest counterexample ({'B' if cx['side'] == 'B' else 'A'} side), "
                           f"initial state #{cx['init']}:")
                for i, s in enumerate(cx["trace"], start=1):
                    out.append(f"      {i}. {s['actor']} {s['action']} {s.get('detail', '')}".rstrip())
                    if s.get("describe"):
                        out.extend(f"           {line}" for line in str(s["describe"]).splitlines())
    return out


def html_page(res) -> str:
    body = _html.escape("\n".join(text_lines(res)))
    title = _html.escape(f"memtypes diff {res.a.spec} {res.b.spec}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            "<style>body{font-family:monospace;white-space:pre;margin:1em}</style></head>"
            f"<body>{body}</body></html>\n")
