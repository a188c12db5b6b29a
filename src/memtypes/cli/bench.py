"""``memtypes bench``: the explorer's distinct states per second on each family, beside the
raw rate at which this process hashes and inserts the same states into a set, the ratio, and
memory per stored state (the logic lives in :mod:`memtypes.explore.bench`)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memtypes.cli.app import app
from memtypes.errors import InputError


MAX_SECONDS = 3600.0
"""Longest time budget per model ``--seconds`` accepts (an hour)."""


@app.command("bench")
def bench(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    family: Optional[str] = typer.Option(None, "--family", "-f",
                                         help="Only this family ('counters': the synthetic model)."),
    seconds: float = typer.Option(10.0, "--seconds", help="Time budget per model (seconds)."),
    size: str = typer.Option("default", "--size",
                             help="default (each family's bench model, timed against the raw rate) "
                                  "or large (millions of states, one run each to completion: CPU "
                                  "time, peak memory, growth per added page)."),
) -> None:
    """Benchmark the explorer: states/s vs the raw hash-and-insert rate, bytes per state."""
    from memtypes.explore.bench import bench_models, default_models
    if not 0 < seconds <= MAX_SECONDS:  # also refuses nan (every comparison is false) and inf
        raise InputError(f"'{seconds}' seconds", where="--seconds",
                         expected=f"a number > 0 and <= {MAX_SECONDS}")
    if size not in ("default", "large"):
        raise InputError(f"unknown size '{size}'", where="--size", expected="default or large")
    if size == "large":
        return _large(family, json_out)
    models = default_models(family)
    if not models:
        raise InputError(f"unknown family '{family}'", where="--family", field="family",
                         expected="a family name or 'counters'")
    console = Console(stderr=True)
    with console.status("benchmarking", spinner="dots") as status:
        out = bench_models(models, seconds=seconds,
                           progress=lambda label: status.update(f"benchmarking {label}"))
    if json_out:
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    t = Table(title="memtypes bench: the explorer against the raw hash-and-insert rate of the "
                    "same states (target ratio >= 1/3, < 100 B/state)")
    for col in ("model", "explorer", "states", "t/st", "states/s", "raw/s", "ratio", "target",
                "model s", "B/st", "peak"):
        t.add_column(col, justify="left" if col in ("model", "explorer") else "right",
                     no_wrap=col == "model")
    for r in out["results"]:
        t.add_row(escape(r["model"]) + ("" if r["complete"] else " (cut)"), r["explorer"],
                  f"{r['states']:,}", f"{r['transitions_per_state']:.1f}",
                  _si(r["explorer_states_per_sec"]), _si(r["raw_states_per_sec"]),
                  f"{r['ratio']:.3f}", "met" if r["meets_target"] else "missed",
                  f"{r['model_seconds']:.2f}", f"{r['visited_bytes_per_state']:.0f}",
                  f"{r['peak_bytes_per_state']:.0f}")
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(t)
    console.print("explorer: vector (numpy; table-driven models) or serial (per state); t/st: "
                  "transitions per state; ratio: explorer / raw states per second; model s: "
                  "seconds in the model's own code; B/st: visited-set bytes per state; peak: traced "
                  "peak bytes per state; (cut): the time budget ended the search")


def _large(family: str | None, json_out: bool) -> None:
    from memtypes.explore.bench import bench_large, large_models
    models = large_models(family)
    if not models:
        raise InputError(f"no large size for '{family}'", where="--family", field="family",
                         expected="dma-type1, dma-iommufd or passthrough")
    console = Console(stderr=True)
    with console.status("benchmarking", spinner="dots") as status:
        out = bench_large(models, progress=lambda label: status.update(f"benchmarking {label}"))
    if json_out:
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    t = Table(title="memtypes bench --size large: one run each to completion")
    for col in ("model", "explorer", "states", "depth", "wall s", "CPU s", "states/CPU s",
                "peak B/st", "load"):
        t.add_column(col, justify="left" if col in ("model", "explorer") else "right", no_wrap=col == "model")
    for r in out["results"]:
        peak = r["peak_bytes_per_state"]
        t.add_row(escape(r["model"]) + ("" if r["complete"] else " (cut)"), r["explorer"],
                  f"{r['states']:,}", str(r["depth"]), f"{r['wall_seconds']:.1f}",
                  f"{r['cpu_seconds']:.1f}", _si(r["states_per_cpu_sec"]),
                  "-" if peak is None else f"{peak:.0f}", f"{r['load_average_before']}")
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(t)
    for name, g in out["growth"].items():
        console.print(f"growth per added page ({escape(g['from'])} to {escape(g['to'])}): states "
                      f"x{g['states_per_page']}, CPU time x{g['cpu_seconds_per_page']}, peak "
                      f"memory x{g['peak_bytes_per_page']}")
    console.print(f"{out['cpus']} CPUs; load: the 1-minute load average before each run (other "
                  "processes sharing the cores); peak: growth of the run's resident set per state")


def _si(v: float) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k" if v >= 1e3 else f"{v:.0f}"
