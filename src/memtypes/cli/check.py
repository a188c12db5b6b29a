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

from memtypes.cli import variants_opt
from memtypes.cli.app import app
from memtypes.errors import InputError


class _Progress:
    """Progress over jobs on stderr after ~1 s: a Rich bar on a terminal; otherwise (CI logs,
    a redirected stderr) one plain line every ``every`` seconds: jobs done, states, rate."""

    def __init__(self, delay: float = 1.0, every: float = 5.0) -> None:
        self.console = Console(stderr=True)
        self.t0 = time.monotonic()
        self.delay = delay
        self.every = every
        self.last = self.t0
        self.states = 0
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int, job, result=None) -> None:
        if result is not None:
            self.states += result.states
        now = time.monotonic()
        if not self.console.is_terminal:
            if now - self.last >= self.every:
                self.last = now
                dt = now - self.t0
                print(f"memtypes check: {done}/{total} jobs, {self.states:,} states, "
                      f"{self.states / dt:,.0f} states/s, {dt:.0f} s", file=sys.stderr, flush=True)
            return
        if job is None:
            return
        if self.bar is None:
            if now - self.t0 < self.delay:
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
            self.bar = None


def _props(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    from memtypes.check import properties as catalogue
    out = []
    for v in values:
        parts = [x.strip() for x in v.split(",")]
        if not all(parts):
            raise InputError(f"'{v}' has an empty property name", where="--property",
                             expected="property names or short column names, comma-separated")
        out.extend(catalogue.get(p).name for p in parts)
    return out


def _nonneg(v: int | None, opt: str) -> None:
    if v is not None and v < 0:
        raise InputError(f"'{v}' is negative", where=opt, expected="an integer >= 0")


def _params(items: Optional[List[str]], fams: list) -> dict[str, dict]:
    """``--param FAMILY.KEY=VALUE`` -> ``{family: {key: value}}``; VALUE is read as YAML (with
    the file loader's bounds) and validated by :func:`memtypes.check.family.check_params`, the
    check scenario files' ``params:`` get too."""
    from memtypes.check.family import check_params
    from memtypes.errors import choices
    from memtypes.yamlfile import parse_value

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
                             expected=choices(names) or "a family being checked")
        try:
            value = parse_value(raw, f"--param {target}")
        except InputError as e:
            raise InputError(f"'{raw}' is not a YAML value: {e.what}", where="--param",
                             field=target) from None
        out.setdefault(fam, {}).update(check_params(names[fam], {key: value}))
    return out


@app.command("check")
def check(
    family: Optional[str] = typer.Option(None, "--family", help="Only this family."),
    kernel: Optional[str] = typer.Option(None, "--kernel",
                                         help="Only this kernel (any version, mapped to its era; "
                                              "VERSION+VARIANT also selects a variant); several: "
                                              "6.12,6.17+VARIANT or a range 6.9..7.1.  A family "
                                              "that does not distinguish an era checks the one it "
                                              "models (and says so)."),
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
    timings: bool = typer.Option(False, "--timings",
                                 help="Add a 'timings' section (wall-clock seconds) to --json; "
                                      "without it the JSON is byte-identical from run to run."),
    param: Optional[List[str]] = typer.Option(
        None, "--param", metavar="FAMILY.KEY=VALUE",
        help="Override a family parameter (VALUE is YAML: true, 2, [grace, armv8.0]); repeatable, "
             "e.g. --param dma-iommufd.tv26=true."),
    variant_files: Optional[List[str]] = variants_opt.option(),
    host: Optional[str] = typer.Option(
        None, "--host", metavar="H[,H...]",
        help="The hosts of every family that takes hosts (passthrough, mte, migration): built-in "
             "names, YAML profiles or inline fwb=1,dic=1,mte=0 (separate inline ones with ';'); "
             "the same as --param FAMILY.hosts=[...] for each.  A family's own --param wins."),
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
    from memtypes.check.kernels import parse_kernels, select
    from memtypes.check.play import trace_files as write_traces
    from memtypes.report import html as rhtml
    from memtypes.report import jsondoc, text

    vfiles = variants_opt.load(variant_files)
    fams = registry.families()
    if family is not None:
        fams = [registry.family(family, available=fams)]
    era = None
    mapping: list[str] = []
    note = None
    if kernel is not None:
        pairs = parse_kernels(kernel)
        from memtypes.linux.kvm.eras import era_of
        from memtypes.linux.version import beyond_model, parse_version, split_variant
        marks = []
        for part in kernel.split(","):
            base = split_variant(part.strip())[0]
            if ".." not in base:
                mark = beyond_model(parse_version(base))
                if mark:
                    marks.append(f"kernel {part.strip()}: {mark} (era {era_of(parse_version(base)).era})")
        note = "; ".join(marks) or None
        known = sorted({v for f in fams for v in f.variants})
        for _e, kv in pairs:
            if kv is not None and kv != "mainline" and kv not in known:
                raise InputError(f"unknown variant '{kv}'", where="--kernel",
                                 expected="mainline" + "".join(f", {v}" for v in known))
            if kv is not None and variant is not None and variant != kv:
                raise InputError(f"--variant {variant} contradicts --kernel {kernel}",
                                 where="--variant", expected=kv)
        if len(pairs) == 1 and all(e in f.kernels for f in fams for e, _ in pairs):
            era, kv = pairs[0]      # one era every family models: the plain selection
            variant = kv if kv is not None else variant
        else:
            fams, mapping = select(fams, pairs, variant=variant)
    if variant is not None and variant != "mainline":
        known = sorted({v for f in fams for v in f.variants})
        if variant not in known:
            raise InputError(f"unknown variant '{variant}'", where="--variant",
                             expected="mainline" + "".join(f", {v}" for v in known))
    props = _props(prop)
    params = _params(param, fams)
    if host is not None:
        from memtypes.check.family import check_params
        from memtypes.hosts.profile import split_hosts
        hosts = split_hosts(host, where="--host")
        took = [f for f in fams if "hosts" in f.default_params]
        if not took:
            raise InputError("no family being checked takes hosts", where="--host",
                             expected="--family passthrough, mte or migration (or none)")
        for f in took:
            if "hosts" not in params.get(f.name, {}):
                params.setdefault(f.name, {}).update(check_params(f, {"hosts": hosts}))
    _nonneg(max_depth, "--max-depth")
    _nonneg(max_states, "--max-states")
    if workers is not None and workers < 1:
        raise InputError(f"'{workers}' workers", where="--workers", expected="an integer >= 1")
    from memtypes.yamlfile import OutputSet, check_writable
    for opt, val in (("--json", json_out), ("--html", html_out)):
        if val and val != "-":
            check_writable(val, where=opt)
    if save_traces:
        check_writable(save_traces, where="--save-traces", directory=True)
    outs = [Path(v).absolute() for v in (json_out, html_out) if v and v != "-"]
    if len(set(outs)) < len(outs):
        raise InputError("--json and --html name the same file", where="--html",
                         expected="two different files")
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
    if note:
        matrix.stats["kernel_note"] = note
    if not matrix.jobs:
        raise InputError("no family models this selection", where="--kernel/--variant",
                         expected="a kernel era and variant some family models")

    if mapping:
        matrix.stats["kernel_mapping"] = mapping
    from memtypes.check import reaches
    from memtypes.check.context import annotate
    annotate(matrix)
    lost = reaches.lines(reaches.annotate(matrix))
    # every output is staged, then renamed into place together: nothing partial, ever
    with OutputSet() as out:
        doc = None
        if json_out:
            d = jsondoc.check_doc(matrix, timings=timings)
            if vfiles:
                d["variant_files"] = vfiles
            doc = jsondoc.dumps(d)
            if json_out != "-":
                out.file(json_out, doc, where="--json")
        if html_out:
            out.file(html_out, rhtml.render_check(matrix), where="--html")
        traces = []
        if save_traces:
            traces = out.directory(save_traces, write_traces(matrix), where="--save-traces")
        out.commit()

    if json_out == "-":
        sys.stdout.write(doc)
    elif json_out or html_out:
        # the full report went to a file: print only what matters and where it went
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(text.headline_text(matrix), end="")
        for line in lost:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        for opt, val in (("--json", json_out), ("--html", html_out)):
            if val:
                console.print(f"wrote {val} ({opt[2:]})")
    else:
        console = Console(width=None if sys.stdout.isatty() else 160)
        if note:
            console.print(note, markup=False, highlight=False)
        text.render_check(console, matrix)
        for note in mapping:
            console.print(f"note: {note}", markup=False, highlight=False)
        for line in lost:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if save_traces:
        Console(stderr=True).print(f"saved {len(traces)} counterexample(s) in {save_traces}")
    if strict and matrix.violations:
        return 1
    return 0
