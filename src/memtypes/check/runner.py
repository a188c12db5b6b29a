"""The verdict matrix: every family x kernel era x variant, explored, one verdict per property.

For each job (family, kernel, variant) the family's model is built with its default parameters
(updated by the caller's), explored breadth-first within the bounds, and each catalogue property
gets a verdict:

* ``n/a``: the family (or this model) does not check it;
* ``violated``: some reachable state breaks it; the shortest counterexample comes with it;
* ``vacuous``: no violation, but some ``sometimes`` target of the model was never reached, so
  the run proved nothing interesting;
* ``holds``: no violation and every ``sometimes`` target reached.  When a bound cut the search
  the verdict is still ``holds`` with ``complete: false`` ("holds within bound").

Jobs run over ``workers`` processes (spawn-safe); results come back in plan order whatever the
completion order, and nothing in :meth:`PropertyResult.as_dict` depends on timing, so the same
inputs give byte-identical JSON.  The pool is this module's own (one pipe per worker, one job in
flight per worker): an interrupt (Ctrl-C, or SIGTERM turned into an exception by the CLI) kills
every worker at once and reaps it, and a worker dies with its parent, so no job outlives the
run.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Callable, Mapping, Sequence

from memtypes.check import properties as catalogue
from memtypes.check.family import Family
from memtypes.check.kernels import kernel_order
from memtypes.errors import InputError
from memtypes.explore.model import Action

DEFAULT_MAX_STATES = 20_000
"""Per-job state bound of the default run (keeps ``memtypes check`` under a minute on 2 cores);
``max_states=0`` lifts it."""
DEFAULT_MAX_DEPTH: int | None = None

VERDICTS = ("holds", "violated", "vacuous", "n/a")


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class Job:
    family: str
    kernel: str
    variant: str

    @property
    def label(self) -> str:
        return self.kernel if self.variant == "mainline" else f"{self.kernel}+{self.variant}"


@dataclass
class PropertyResult:
    family: str
    kernel: str
    variant: str
    property: str
    verdict: str
    states: int = 0
    depth: int = 0
    complete: bool = True
    trace: list[dict[str, Any]] = field(default_factory=list)
    init_index: int = 0
    unreached: list[str] = field(default_factory=list)

    @property
    def trace_length(self) -> int:
        return len(self.trace)

    def signature(self) -> tuple:
        return (self.init_index,) + tuple((s["actor"], s["action"], s["detail"]) for s in self.trace)

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family, "kernel": self.kernel, "variant": self.variant,
            "property": self.property, "verdict": self.verdict, "states": self.states,
            "depth": self.depth, "complete": self.complete, "trace_length": self.trace_length,
            "init": self.init_index if self.verdict == "violated" else None,
            "trace": [dict(s) for s in self.trace], "unreached": list(self.unreached),
        }


@dataclass
class JobResult:
    job: Job
    params: dict[str, Any]
    states: int
    transitions: int
    depth: int
    complete: bool
    seconds: float
    sometimes: dict[str, bool]
    results: list[PropertyResult]
    unlisted: list[str] = field(default_factory=list)
    """``always`` properties of the model that are not in the catalogue (not reported)."""
    explorer: str = "serial"
    """Which explorer searched the job: ``vector`` (table-driven model, numpy) or ``serial``."""


@dataclass
class MatrixResult:
    jobs: list[JobResult]
    properties: tuple[str, ...]
    families: list[Family]
    stats: dict[str, Any]

    @property
    def results(self) -> list[PropertyResult]:
        return [r for j in self.jobs for r in j.results]

    @property
    def violations(self) -> list[PropertyResult]:
        return [r for r in self.results if r.verdict == "violated"]

    def family(self, name: str) -> Family:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(name)

    def job(self, family: str, kernel: str, variant: str) -> JobResult:
        for j in self.jobs:
            if (j.job.family, j.job.kernel, j.job.variant) == (family, kernel, variant):
                return j
        raise KeyError((family, kernel, variant))


def plan(families: Sequence[Family], *, kernel: str | None = None,
         variant: str | None = None) -> list[Job]:
    """The jobs in report order: family order, kernel era order, mainline then variants."""
    jobs: list[Job] = []
    for fam in families:
        kernels = sorted(fam.kernels, key=kernel_order)
        for k in kernels:
            if kernel is not None and k != kernel:
                continue
            for v in ("mainline",) + tuple(fam.variants):
                if variant is not None and v != variant:
                    continue
                if fam.applies_to(k, v):
                    jobs.append(Job(fam.name, k, v))
    return jobs


def _merge_params(fam: Family, params: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    merged = dict(fam.default_params)
    if params:
        merged.update(params.get(fam.name, {}))
    return merged


def step_dicts(model: Any, init_index: int, actions: Sequence[Action],
               states: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Trace steps as plain data: actor, action, detail, args (and describe when the model can)."""
    if states is None or len(states) != len(actions) + 1:
        from memtypes.explore import replay
        states = replay(model, init_index, list(actions))
    describe = getattr(model, "describe", None)
    out = []
    for i, a in enumerate(actions):
        d = a.as_dict()
        step = {"actor": d["actor"], "action": d["action"], "detail": d["detail"], "args": d["args"]}
        if describe is not None and len(states) == len(actions) + 1:
            try:
                text = describe(states[i], a, states[i + 1])
            except Exception:  # a describe() bug must not lose the counterexample
                text = None
            if text:
                step["describe"] = str(text)
        out.append(step)
    return out


def run_job(fam: Family, job: Job, params: Mapping[str, Any], *, max_depth: int | None,
            max_states: int | None, props: Sequence[str], explorer: str = "auto") -> JobResult:
    """Build, explore and judge one (family, kernel, variant)."""
    from memtypes.explore import explore

    t0 = time.perf_counter()
    model = fam.build(job.kernel, job.variant, dict(params))
    mprops = list(model.properties())
    always = [p.name for p in mprops if p.kind == "always"]
    sometimes = [p.name for p in mprops if p.kind == "sometimes"]
    res = explore(model, max_depth=max_depth, max_states=max_states or None, backend=explorer)
    reached = {s: s in res.reached for s in sometimes}
    unreached = [s for s in sometimes if not reached[s]]
    checked = set(always) & set(fam.properties or catalogue.NAMES)
    results: list[PropertyResult] = []
    for name in props:
        r = PropertyResult(job.family, job.kernel, job.variant, name, "n/a",
                           states=res.states, depth=res.depth, complete=bool(res.complete))
        if name in checked:
            tr = res.violations.get(name)
            if tr is not None:
                r.verdict = "violated"
                r.init_index = tr.init_index
                r.trace = step_dicts(model, tr.init_index, tr.actions, getattr(tr, "states", None))
            elif unreached:
                r.verdict = "vacuous"
                r.unreached = list(unreached)
            else:
                r.verdict = "holds"
        results.append(r)
    return JobResult(job, dict(params), res.states, res.transitions, res.depth,
                     bool(res.complete), time.perf_counter() - t0, reached, results,
                     unlisted=sorted(set(always) - set(catalogue.NAMES)),
                     explorer="vector" if res.fingerprint == "packed" else "serial")


# -- process pool ---------------------------------------------------------------------------

_POOL_FAMILIES: dict[str, Family] = {}


def _pool_init(fams_blob: bytes, variant_files: tuple[str, ...] = ()) -> None:
    global _POOL_FAMILIES
    from memtypes.linux import userfiles
    userfiles.load_files(variant_files)     # the user's variants, before any model is built
    _POOL_FAMILIES = {f.name: f for f in pickle.loads(fams_blob)}


def _pool_run(job: Job, params: dict, max_depth, max_states, props, explorer) -> JobResult:
    return run_job(_POOL_FAMILIES[job.family], job, params, max_depth=max_depth,
                   max_states=max_states, props=props, explorer=explorer)


def _variant_files() -> tuple[str, ...]:
    """The variants files loaded here, for the workers to load too."""
    from memtypes.linux import userfiles
    return tuple(f["path"] for f in userfiles.loaded())


def _pool_main(conn, fams_blob: bytes, parent: int | None = None,
               variant_files: tuple[str, ...] = ()) -> None:
    """A pool worker: jobs in, results (or the exception) out, until ``None`` or EOF."""
    from memtypes.explore.parallel import worker_setup
    worker_setup(parent)
    _pool_init(fams_blob, variant_files)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        i, args = msg
        try:
            out = ("ok", i, _pool_run(*args))
        except Exception as e:  # sent back and raised in the parent
            try:
                pickle.dumps(e)
            except Exception:
                e = RuntimeError(f"{type(e).__name__}: {e}")
            out = ("err", i, e)
        conn.send(out)


def _run_pool(used: int, blob: bytes, jobs: Sequence[Job], argv: Sequence[tuple],
              on_done: Callable[[int, JobResult], None],
              tick: Callable[[], None] | None = None) -> None:
    """Run ``argv[i]`` (the arguments of :func:`_pool_run`) over ``used`` spawned workers, one
    job in flight per worker, calling ``on_done(i, result)`` in the parent as results arrive.
    Any exception in the parent (an interrupt included) kills and reaps every worker before it
    propagates; a worker that dies becomes one error line."""
    from multiprocessing.connection import wait

    from memtypes.explore.parallel import stop_resource_tracker, stop_workers

    ctx = get_context("spawn")
    procs, conns = [], []
    ok = False
    try:
        for _ in range(used):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_pool_main, args=(b, blob, os.getpid(), _variant_files()), daemon=True)
            p.start()
            b.close()
            procs.append(p)
            conns.append(a)
        todo = list(range(len(jobs)))
        todo.reverse()
        busy: dict[Any, int] = {}
        for c in conns:
            if todo:
                i = todo.pop()
                c.send((i, argv[i]))
                busy[c] = i
        while busy:
            ready = wait(list(busy), timeout=0.5)
            if not ready and tick is not None:
                tick()
            for c in ready:
                try:
                    kind, i, val = c.recv()
                except (EOFError, OSError):
                    p = procs[conns.index(c)]
                    p.join(timeout=1)
                    code = p.exitcode
                    job = jobs[busy[c]]
                    how = f"killed by signal {-code}" if code is not None and code < 0 \
                        else f"exit code {code}"
                    raise InputError(f"a worker process died ({how}) on {job.family} {job.label}",
                                     where="memtypes check",
                                     expected="enough memory (try --max-states or --workers 1)") from None
                del busy[c]
                if kind == "err":
                    raise val
                on_done(i, val)
                if todo:
                    j = todo.pop()
                    c.send((j, argv[j]))
                    busy[c] = j
        for c in conns:
            c.send(None)
        ok = True
    finally:
        stop_workers(procs, graceful=ok)
        for c in conns:
            c.close()
        stop_resource_tracker()


ProgressFn = Callable[[int, int, "Job | None", "JobResult | None"], None]
"""``progress(done, total, job, result)`` after each job; the pool also calls it with ``job``
and ``result`` None about twice a second while jobs run (a heartbeat)."""
EXPLORERS = ("auto", "serial", "vector")


def run_matrix(families: Sequence[Family] | None = None, *, kernel: str | None = None,
               variant: str | None = None, properties: Sequence[str] | None = None,
               max_depth: int | None = DEFAULT_MAX_DEPTH,
               max_states: int | None = DEFAULT_MAX_STATES,
               workers: int | None = None,
               params: Mapping[str, Mapping[str, Any]] | None = None,
               progress: ProgressFn | None = None, explorer: str = "auto") -> MatrixResult:
    """Run the matrix.  ``families`` defaults to the built-in ones (:mod:`.registry`);
    ``kernel`` is an era's first version; ``params`` maps a family name to parameter
    overrides; ``max_states=0``/``None`` lifts the per-job bound; ``explorer``: ``auto``,
    ``serial`` or ``vector`` (see :func:`memtypes.explore.explore`)."""
    if explorer not in EXPLORERS:
        raise InputError(f"unknown explorer '{explorer}'", where="--explorer", expected=", ".join(EXPLORERS))
    from memtypes.check import registry

    missing: list[str] = []
    if families is None:
        families = registry.families()
        missing = registry.missing_families()
    families = list(families)
    props = tuple(properties) if properties else catalogue.NAMES
    for p in props:
        catalogue.get(p)
    props = tuple(sorted(dict.fromkeys(props), key=catalogue.order))
    jobs = plan(families, kernel=kernel, variant=variant)
    by_name = {f.name: f for f in families}
    job_params = [_merge_params(by_name[j.family], params) for j in jobs]
    if explorer == "vector":
        from memtypes.explore import vector
        for j, p in {j.family: (j, p) for j, p in zip(jobs, job_params)}.values():
            why = vector.supports(by_name[j.family].build(j.kernel, j.variant, dict(p)))
            if why is not None:
                raise InputError(f"family {j.family}: {why}", where="--explorer vector",
                                 expected="--explorer auto or serial")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise InputError(f"'{workers}' workers", where="--workers", expected="an integer >= 1")
    t0 = time.perf_counter()
    results: list[JobResult | None] = [None] * len(jobs)
    used = min(workers, len(jobs)) or 1
    note = ""
    blob = b""
    if used > 1:
        try:
            blob = pickle.dumps(families)
        except Exception as e:  # e.g. a family built from lambdas: run in this process
            used, note = 1, f"families not picklable ({type(e).__name__}); ran serially"
    done = 0
    if used > 1:
        def on_done(i: int, r: JobResult) -> None:
            nonlocal done
            results[i] = r
            done += 1
            if progress:
                progress(done, len(jobs), jobs[i], r)

        _run_pool(used, blob, jobs,
                  [(job, p, max_depth, max_states, props, explorer)
                   for job, p in zip(jobs, job_params)], on_done,
                  (lambda: progress(done, len(jobs), None, None)) if progress else None)
    else:
        for i, (job, p) in enumerate(zip(jobs, job_params)):
            results[i] = run_job(by_name[job.family], job, p, max_depth=max_depth,
                                 max_states=max_states, props=props, explorer=explorer)
            done += 1
            if progress:
                progress(done, len(jobs), job, results[i])
    jr = [r for r in results if r is not None]
    seconds = time.perf_counter() - t0
    counts = {v: 0 for v in VERDICTS}
    within = 0
    for r in (x for j in jr for x in j.results):
        counts[r.verdict] += 1
        if r.verdict == "holds" and not r.complete:
            within += 1
    states = sum(j.states for j in jr)
    stats: dict[str, Any] = {
        "jobs": len(jr),
        "families": [f.name for f in families],
        "missing_families": missing,
        "properties": list(props),
        "verdicts": counts,
        "holds_within_bound": within,
        "incomplete_jobs": [f"{j.job.family} {j.job.label}" for j in jr if not j.complete],
        "bounds": {"max_states": max_states or None, "max_depth": max_depth},
        "states": states,
        "transitions": sum(j.transitions for j in jr),
        "workers": used,
        "per_job": [{"family": j.job.family, "kernel": j.job.kernel, "variant": j.job.variant,
                     "states": j.states, "transitions": j.transitions, "depth": j.depth,
                     "complete": j.complete, "explorer": j.explorer,
                     "unreached": [k for k, v in j.sometimes.items() if not v],
                     "unlisted_properties": j.unlisted} for j in jr],
        "timing": {"seconds": round(seconds, 3),
                   "states_per_second": round(states / seconds) if seconds > 0 else None,
                   "job_seconds": [round(j.seconds, 3) for j in jr]},
    }
    if note:
        stats["note"] = note
    return MatrixResult(jr, props, families, stats)
