"""``memtypes check``: every family x kernel era x variant, a verdict per property."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from memtypes.cli.app import app
from memtypes.errors import InputError


class _Progress:
    """Rich progress over jobs on stderr, shown only on a terminal and after ~1 s."""

    def __init__(self, delay: float = 1.0) -> None:
        self.console = Console(stderr=True)
        self.t0 = time.monotonic()
        self.delay = delay
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int, job) -> None:
        if not self.console.is_terminal:
            return
        if self.bar is None:
            if time.monotonic() - self.t0 < self.delay:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
                TimeElapsedColumn
            self.bar = Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"),
                                console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=total)
        self.bar.update(self.task, completed=done, description=f"{job.family} {job.label}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _props(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    from memtypes.check import properties as catalogue
    out = []
    for v in values:
        for p in filter(None, (x.strip() for x in v.split(","))):
            catalogue.get(p)
            out.append(p)
    return out or None


def _nonneg(v: int | None, opt: str) -> None:
    if v is not None and v < 0:
        raise InputError(f"'{v}' is negative", where=opt, expected="an integer >= 0")


def _params(items: Optional[List[str]], fams: list) -> dict[str, dict]:
    """``--param FAMILY.KEY=VALUE`` -> ``{family: {key: value}}``; VALUE is read as YAML."""
    import yaml

    out: dict[str, dict] = {}
    names = {f.name: f for f in fams}
    for item in items or ():
        target, eq, raw = item.partition("=")
        fam, dot, key = target.partition(".")
        if not eq or not dot or not key:
            raise InputError(f"'{item}' is not FAMILY.KEY=VALUE", where="--param",
                             expected="e.g. dma-iommufd.tv26=true")
        if fam not in names:
            raise InputError(f"unknown family '{fam}'", where="--param",
                             expected=", ".join(names) or "a family being checked")
        if key not in names[fam].default_params:
            raise InputError(f"family {fam} has no parameter '{key}'", where="--param",
                             expected=", ".join(names[fam].default_params) or "no parameters")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError(f"'{raw}' is not a YAML value", where="--param", field=target) from None
        out.setdefault(fam, {})[key] = value
    return out


@app.command("check")
def check(
    family: Optional[str] = typer.Option(None, "--family", help="Only this family."),
    kernel: Optional[str] = typer.Option(None, "--kernel",
                                         help="Only this kernel (any version, mapped to its era; "
                                              "VERSION+VARIANT also selects a variant)."),
    variant: Optional[str] = typer.Option(None, "--variant",
                                          help="Only this variant (mainline or a variant name)."),
    prop: Optional[List[str]] = typer.Option(None, "--property",
                                             help="Only these properties (repeat or comma-separate)."),
    max_depth: Optional[int] = typer.Option(None, "--max-depth", help="Depth bound per job."),
    max_states: Optional[int] = typer.Option(None, "--max-states",
                                             help="State bound per job (default 20000; 0: none)."),
    workers: Optional[int] = typer.Option(None, "--workers",
                                          help="Processes (default min(2, CPUs))."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write JSON to FILE ('-': stdout)."),
    html_out: Optional[str] = typer.Option(None, "--html", help="Write a self-contained HTML page."),
    save_traces: Optional[str] = typer.Option(None, "--save-traces",
                                              help="Write each counterexample as a scenario file in DIR."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a property is violated."),
    explorer: str = typer.Option("auto", "--explorer",
                                 help="auto (vectorised for table-driven families large enough to "
                                      "gain, when numpy is installed), serial or vector: the same "
                                      "answers either way."),
    param: Optional[List[str]] = typer.Option(
        None, "--param", metavar="FAMILY.KEY=VALUE",
        help="Override a family parameter (VALUE is YAML: true, 2, [grace, armv8.0]); repeatable, "
             "e.g. --param dma-iommufd.tv26=true."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", metavar="SIZE",
        help="Memory bound per job (e.g. 4G; default 3/4 of this machine's memory): past it the "
             "vector explorer spills its states to disk, the serial one stops."),
    cluster_spec: Optional[str] = typer.Option(
        None, "--cluster", metavar="local:N|ADDRESS",
        help="Explore the table-driven jobs on a Dask cluster (pip install 'memtypes[cluster]'): "
             "local:N starts N local worker processes; ADDRESS joins a running scheduler."),
) -> int:
    """Check every family x kernel era x variant; print the verdict matrix and counterexamples."""
    from memtypes.check import registry, runner
    from memtypes.check.kernels import parse_kernel
    from memtypes.check.play import save_traces as write_traces
    from memtypes.report import html as rhtml
    from memtypes.report import jsondoc, text
    from memtypes.yamlfile import write_atomic

    fams = registry.families()
    if family is not None:
        fams = [registry.family(family, available=fams)]
    era = None
    if kernel is not None:
        era, kv = parse_kernel(kernel)
        if kv is not None:
            if variant is not None and variant != kv:
                raise InputError(f"--variant {variant} contradicts --kernel {kernel}",
                                 where="--variant", expected=kv)
            variant = kv
    if variant is not None and variant != "mainline":
        known = sorted({v for f in fams for v in f.variants})
        if variant not in known:
            raise InputError(f"unknown variant '{variant}'", where="--variant",
                             expected="mainline" + "".join(f", {v}" for v in known))
    props = _props(prop)
    params = _params(param, fams)
    _nonneg(max_depth, "--max-depth")
    _nonneg(max_states, "--max-states")
    if workers is not None and workers < 1:
        raise InputError(f"'{workers}' workers", where="--workers", expected="an integer >= 1")
    for opt, val in (("--json", json_out), ("--html", html_out)):
        if val and val != "-" and Path(val).is_dir():
            raise InputError("is a directory", where=opt, expected="a file path")
    if save_traces and Path(save_traces).exists() and not Path(save_traces).is_dir():
        raise InputError("not a directory", where="--save-traces", expected="a directory")
    if not fams:
        raise InputError("no families are installed", where="memtypes check")

    from memtypes.explore import memory
    from memtypes.explore.vector import Unsupported
    env_before = os.environ.get(memory.ENV)
    if max_memory is not None:
        try:
            os.environ[memory.ENV] = str(memory.parse_size(max_memory))  # (inherited by workers)
        except ValueError as e:
            raise InputError(str(e), where="--max-memory", expected="a size > 0 such as 4G or 512M") from None
    progress = _Progress()
    from memtypes.explore import cluster
    on_cluster = cluster.connect(cluster_spec) if cluster_spec else contextlib.nullcontext()
    if cluster_spec:
        workers = 1             # (the jobs run one after another, each over the whole cluster)
    try:
        with on_cluster:
            matrix = runner.run_matrix(
                fams, kernel=era, variant=variant, properties=props, max_depth=max_depth,
                max_states=runner.DEFAULT_MAX_STATES if max_states is None else max_states,
                workers=workers, params=params, progress=progress, explorer=explorer)
    except Unsupported as e:    # a model too wide or too large for the chosen explorer
        raise InputError(str(e), where=f"--explorer {explorer}",
                         expected="--explorer auto or serial") from None
    except memory.MemoryBound as e:
        raise InputError(str(e), where="--max-memory") from None
    except cluster.ClusterError as e:
        raise InputError(str(e), where="--cluster", expected="local:N or a Dask scheduler's address") from None
    finally:
        progress.stop()
        if env_before is None:
            os.environ.pop(memory.ENV, None)
        else:
            os.environ[memory.ENV] = env_before
    matrix.stats["missing_families"] = registry.missing_families() if family is None else []
    if not matrix.jobs:
        raise InputError("no family models this selection", where="--kernel/--variant",
                         expected="a kernel era and variant some family models")

    if json_out != "-":
        console = Console(width=None if sys.stdout.isatty() else 160)
        text.render_check(console, matrix)
    if json_out:
        doc = jsondoc.dumps(jsondoc.check_doc(matrix))
        if json_out == "-":
            sys.stdout.write(doc)
        else:
            write_atomic(json_out, doc)
    if html_out:
        write_atomic(html_out, rhtml.render_check(matrix))
    if save_traces:
        paths = write_traces(matrix, save_traces)
        if json_out != "-":
            Console(stderr=True).print(f"saved {len(paths)} counterexample(s) in {save_traces}")
    if strict and matrix.violations:
        return 1
    return 0
