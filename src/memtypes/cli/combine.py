"""``memtypes combine``: stage-1 + stage-2 memory attributes per the Arm ARM (DDI 0487 M.a.a).

``memtypes combine S1 S2 [--fwb] [--cd] [--json]`` decodes both inputs, names the rule that
applied and prints the result and its behaviour.  ``memtypes combine --table [--fwb off|on|both]
[--format text|csv|json]`` prints the whole 256 x 16 table per FWB mode (or a summary).

``--fwb`` is a flag for a single combination and takes ``off|on|both`` with ``--table``; a bare
``--fwb`` always means ``on``.
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from typer.core import TyperCommand

from memtypes.arch import behaviour, combine, decode_s1, decode_s2, parse_s1, parse_s2
from memtypes.arch import table as arch_table
from memtypes.arch.attrs import DEVICE_NAMES
from memtypes.arch.names import S1_FORMS, S2_FORMS_FWB, S2_FORMS_NOFWB, s2_name_reasons
from memtypes.cli.app import app
from memtypes.errors import InputError

FWB_VALUES = ("off", "on", "both")
FORMATS = ("text", "csv", "json")

HELP = """Combine a guest stage-1 attribute with a stage-2 MemAttr (Arm ARM D8.6.5/D8.6.6).

\b
S1 (guest MAIR_EL1.Attr<n> byte): 0x.., 0b.. or decimal 0..255, or a name:
  normal-wb (0xff), normal-nc (0x44), normal-wt (0xbb), device-ngnrne (0x00),
  device-ngnre (0x04), device-ngre (0x08), device-gre (0x0c), tagged (0xf0),
  off / mmu-off (guest stage 1 disabled: data accesses Device-nGnRnE OSH).
S2 (stage-2 descriptor MemAttr[3:0]): 0x.., 0b.. or decimal 0..15, or a name:
  without --fwb: s2-normal (0b1111), s2-nc (0b0101), s2-device (0b0001),
    MT_S2_NORMAL, MT_S2_NORMAL_NC, MT_S2_DEVICE_nGnRE, MT_S2_AS_S1,
    MT_S2_NORMAL_NOTAGACCESS (0b0100);
  with --fwb: fwb-normal (0b0110), fwb-nc (0b0101), fwb-device (0b0001),
    fwb-as-s1 (0b0111), MT_S2_FWB_NORMAL, MT_S2_FWB_NORMAL_NC,
    MT_S2_FWB_DEVICE_nGnRE, MT_S2_FWB_AS_S1, MT_S2_FWB_NORMAL_NOTAGACCESS (0b1110).
  MT_S2_* names are case-insensitive; KVM's encodings (asm/memory.h).

\b
--table: all 256 x 16 inputs per FWB mode (--fwb off|on|both, default both).
  CSV/JSON columns: fwb, s1_attr, s2_memattr, status, type, inner, outer, tagged,
  notagaccess, forced_osh, attr_cd1.  status: ok, unpredictable (the stage-1 byte
  is UNPREDICTABLE; wins when both inputs are bad), reserved (the stage-2 encoding
  is Reserved), needs:FEAT_X[|FEAT_Y] (defined only with those features; the row
  carries the value it has with them).

Follows the Arm ARM where QEMU differs.  Data accesses; HCR_EL2.DC = 0.
"""


class _CombineCommand(TyperCommand):
    """Lets ``--fwb`` be a flag (single combination) or take off|on|both (``--table``)."""

    def parse_args(self, ctx, args):  # noqa: D401 - click hook
        out: list[str] = []
        for i, a in enumerate(args):
            if a == "--fwb":
                nxt = args[i + 1] if i + 1 < len(args) else None
                if not ("--table" in args and nxt is not None and nxt.lower() in FWB_VALUES):
                    a = "--fwb=on"
            out.append(a)
        return super().parse_args(ctx, out)


def _s1_arg(text: str) -> int | None:
    try:
        return parse_s1(text)
    except ValueError as e:
        raise InputError(str(e).split("; accepted:")[0], field="S1", expected=S1_FORMS) from None


def _s2_arg(text: str, fwb: bool) -> int:
    try:
        return parse_s2(text, fwb=fwb)
    except ValueError as e:
        raise InputError(str(e).split("; accepted")[0], field="S2",
                         expected=S2_FORMS_FWB if fwb else S2_FORMS_NOFWB) from None


def _fwb_value(fwb: Optional[str], *, table: bool) -> str:
    if fwb is None:
        return "both" if table else "off"
    v = fwb.lower()
    if v not in FWB_VALUES or (v == "both" and not table):
        raise InputError(f"bad --fwb value {fwb!r}", field="--fwb",
                         expected="a bare --fwb, or off|on|both with --table"
                         if table else "a bare --fwb (or --fwb=off)")
    return v


@app.command("combine", cls=_CombineCommand, help=HELP, no_args_is_help=False)
def combine_cmd(
    s1: Optional[str] = typer.Argument(None, metavar="S1", show_default=False,
                                       help="guest stage-1 attribute (see above)"),
    s2: Optional[str] = typer.Argument(None, metavar="S2", show_default=False,
                                       help="stage-2 MemAttr[3:0] (see above)"),
    fwb: Optional[str] = typer.Option(None, "--fwb", metavar="[off|on|both]",
                                      show_default=False,
                                      help="HCR_EL2.FWB = 1 (with --table: off|on|both)"),
    cd: bool = typer.Option(False, "--cd", help="HCR_EL2.CD = 1 (stage-2 Normal -> NC)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object instead of tables"),
    table: bool = typer.Option(False, "--table", help="all 256 x 16 inputs per FWB mode"),
    fmt: str = typer.Option("text", "--format", metavar="[text|csv|json]",
                            help="--table output: summary text, csv or json"),
) -> None:
    mode = _fwb_value(fwb, table=table)
    if table:
        if s1 is not None or s2 is not None:
            raise InputError("--table takes no S1/S2", field="S1",
                             expected="either S1 S2 or --table")
        if fmt.lower() not in FORMATS:
            raise InputError(f"unknown format {fmt!r}", field="--format",
                             expected="text, csv or json")
        _print_table(mode, fmt.lower(), as_json)
        return
    if fmt.lower() != "text":
        raise InputError("--format is for --table", field="--format",
                         expected="--table --format text|csv|json, or --json")
    if s1 is None or s2 is None:
        raise InputError("missing " + ("S1 and S2" if s1 is None else "S2"),
                         field="S1" if s1 is None else "S2",
                         expected="memtypes combine S1 S2 [--fwb] [--cd] [--json], "
                                  "or --table")
    fwb_on = mode == "on"
    v1 = _s1_arg(s1)
    v2 = _s2_arg(s2, fwb_on)
    _print_one(v1, v2, fwb_on, cd, as_json, s2_name_reasons(s2))


# --- rendering -------------------------------------------------------------------------------

def _console():
    from rich.console import Console
    return Console(highlight=False, soft_wrap=False, markup=False, emoji=False)


def _one_dict(v1: int | None, v2: int, fwb: bool, cd: bool, notes: tuple = ()) -> dict:
    c = combine(v1, v2, fwb=fwb, cd=cd)
    a1 = None if v1 is None else decode_s1(v1)
    a2 = decode_s2(v2, fwb=fwb)
    d = c.as_dict()
    d["reasons"] += [r.as_dict() for r in notes]
    d["s1_decoded"] = "stage 1 disabled (Device-nGnRnE)" if a1 is None else a1.describe
    d["s2_decoded"] = a2.label + ("" if a2.status == "ok" else f" [{a2.status}]")
    d["behaviour"] = {k: {"value": val, "section": sec} for k, (val, sec) in behaviour(c).items()}
    return d


def _print_one(v1: int | None, v2: int, fwb: bool, cd: bool, as_json: bool,
               notes: tuple = ()) -> None:
    d = _one_dict(v1, v2, fwb, cd, notes)
    if as_json:
        print(json.dumps(d, indent=1))
        return
    from rich.table import Table
    con = _console()
    s1_txt = "off (stage 1 disabled)" if v1 is None else f"0x{v1:02x}"
    con.print(f"S1 {s1_txt}: {d['s1_decoded']}")
    con.print(f"S2 0b{v2:04b} (FWB={int(fwb)}{', CD=1' if cd else ''}): {d['s2_decoded']}")
    con.print(f"Rule: {d['rule']}")
    con.print(f"Result: {d['label']} (status {d['status']})")
    t = Table(show_header=True)
    t.add_column("property")
    t.add_column("value")
    t.add_column("Arm ARM")
    yn = {0: "no", 1: "yes"}
    t.add_row("type", d["type"], "D8.6.5/D8.6.6")
    t.add_row("inner", d["inner"], "B2.10.1.3")
    t.add_row("outer", d["outer"], "B2.10.1.3")
    t.add_row("attr (MAIR-style)", d["attr"] or "-", "EncodePARAttrs")
    t.add_row("tagged", yn[d["tagged"]], "D10.3")
    t.add_row("notagaccess", yn[d["notagaccess"]], "D8.6.4")
    t.add_section()
    for k, v in d["behaviour"].items():
        val = v["value"]
        t.add_row(k, "yes" if val is True else "no" if val is False else str(val), v["section"])
    con.print(t)
    con.print("Reasons:")
    for r in combine(v1, v2, fwb=fwb, cd=cd).reasons + tuple(notes):
        con.print(f"  {r.rule}: {r.text} ({r.source})" + (" [UNVERIFIED]" if r.unverified
                                                         else ""), soft_wrap=True)


def _label_key(label: str) -> tuple:
    if label in DEVICE_NAMES:
        return (0, DEVICE_NAMES.index(label))
    order = ["Normal-NC", "Normal-WT", "Normal-WB", "Normal-WB-Tagged",
             "Normal-WB-Tagged+NoTagAccess"]
    if label in order:
        return (2, order.index(label))
    return (1, label)


def _status_key(status: str) -> tuple:
    fixed = {"ok": 0, "unpredictable": 8, "reserved": 9}
    return (fixed.get(status, 1), status)


def _print_table(mode: str, fmt: str, as_json: bool) -> None:
    if fmt == "csv":
        print(arch_table.to_csv(arch_table.rows(mode)), end="")
        return
    if fmt == "json" or as_json:
        print(arch_table.to_json(arch_table.rows(mode)), end="")
        return
    from rich.table import Table
    summ = arch_table.summary(mode)
    modes = list(summ)
    t = Table(title=f"S1 x S2: {' + '.join(str(summ[m]['rows']) for m in modes)} rows "
                    f"(D8.6.5/D8.6.6)", show_header=True, title_justify="left")
    t.add_column("")
    for m in modes:
        t.add_column(f"FWB={m}", justify="right")
    statuses = sorted({s for m in modes for s in summ[m]["status"]}, key=_status_key)
    for s in statuses:
        t.add_row(f"status {s}", *[str(summ[m]["status"].get(s, 0)) for m in modes])
    t.add_section()
    labels = sorted({lb for m in modes for lb in summ[m]["label"]}, key=_label_key)
    for lb in labels:
        t.add_row(lb, *[str(summ[m]["label"].get(lb, 0)) for m in modes])
    t.add_section()
    for k, name in (("tagged", "tag access (Tagged)"), ("notagaccess", "NoTagAccess"),
                    ("forced_osh", "forced Outer Shareable")):
        t.add_row(name, *[str(summ[m][k]) for m in modes])
    con = _console()
    con.print(t)
    con.print("Counts of results with a value (ok and needs:); --format csv|json for every row.")
