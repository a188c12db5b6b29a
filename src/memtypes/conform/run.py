"""``memtypes conform``: the model's predictions against what real kernels do.

For each kernel x CPU: generate the cases from the model (``cases.py``), build the agent
(``build.py``), pack it with the cases and the vfio modules into an initramfs (``initrd.py``),
boot the kernel under QEMU as a KVM host (``qemu.py``), answer the agent's stage-2 walk
requests through the gdbstub (``gdbstub.py``), then compare every observation with the model's
prediction for the same exact kernel version and the CPU features the agent reported
(``compare.py``).  ``--live`` runs the same agent on this machine's own kernel instead.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from memtypes.conform import cases as cases_mod
from memtypes.conform.build import build_agent
from memtypes.conform.compare import AGREE, MISMATCH, Comparison, compare, host_features, parse_lines
from memtypes.errors import InputError
from memtypes.linux.kvm.eras import ERAS, Kernel, kernel as model_kernel

DEFAULT_CPUS = ("max", "cortex-a57", "neoverse-n1")
CPU_MTE = {"max"}                     # QEMU CPU models with MTE (realkernel.md: only `max`)
VFIO_MODULES = ("vfio-pci", "vfio_iommu_type1")
BOOT_TIMEOUT_S = 240.0


@dataclass
class TargetResult:
    """One kernel on one CPU: the comparison, or why it did not run."""

    kernel: str                       # the upstream version booted (e.g. 6.12.118)
    cpu: str
    release: str = ""
    model_kernel: str = ""            # what the model used ("7.3 (newer than the model: ...)")
    comparison: Comparison | None = None
    error: str = ""
    wall_s: float = 0.0
    boot_s: float | None = None       # QEMU start to the agent's first line
    agent_s: float | None = None      # the agent's first line to its "done"
    qemu_version: str = ""
    raw_lines: list[str] = field(default_factory=list)
    cases: list = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.comparison is not None

    def counts(self) -> dict[str, int]:
        return self.comparison.counts() if self.comparison else {}

    def as_dict(self) -> dict:
        d = {"kernel": self.kernel, "cpu": self.cpu, "release": self.release,
             "timing": {"wall_s": round(self.wall_s, 1),
                        "boot_s": None if self.boot_s is None else round(self.boot_s, 1),
                        "agent_s": None if self.agent_s is None else round(self.agent_s, 1)},
             "model_kernel": self.model_kernel, "qemu": self.qemu_version, "error": self.error or None}
        if self.comparison:
            d["host"] = self.comparison.host.as_dict()
            d["counts"] = self.counts()
            d["rows"] = [r.as_dict() for r in self.comparison.rows]
        return d


def resolve_model_kernel(version: str) -> tuple[Kernel | None, str]:
    """The model's kernel for an exact booted version, or None and why the model refuses it."""
    try:
        k = model_kernel(version, where="kernel")
    except InputError as e:
        return None, e.one_line()
    return k, f"{k.version} (era {k.rules.span})"


def incomplete(lines: list[str], cmp: Comparison) -> str:
    """Why a run's observations do not cover every case although it produced some ("" if they
    do): the agent printed no ``done`` line (it crashed, hung or the kernel died mid-run), or
    it could not open /dev/kvm.  Its cases are "not observable here", which --strict alone
    would let pass."""
    if not any('"done": true' in ln for ln in lines if "@@{" in ln):
        return "the agent did not finish (no 'done' line): the cases after the last one seen did not run"
    if not cmp.host.kvm:
        return "the agent could not open /dev/kvm: KVM did not come up in this kernel"
    return ""


def _refused(case_list, why: str) -> Comparison:
    from memtypes.conform.compare import NOT_MODELLED, Row
    cmp = Comparison(host_features([]))
    cmp.rows = [Row(c.id, "*", NOT_MODELLED, None, None, (), why) for c in case_list]
    return cmp


def compare_target(version: str, case_list, lines: list[str]) -> tuple[Comparison, str]:
    """Observations of one boot (console lines) against the model for ``version``."""
    k, label = resolve_model_kernel(version)
    obs = parse_lines(lines)
    if k is None:
        cmp = _refused(case_list, f"the model has no rules for this kernel: {label}")
        cmp.host = host_features(obs)
        return cmp, label
    return compare(k, case_list, obs), label


def _cases_for(version: str, *, mte: bool, pci: bool, vfio: bool) -> list:
    k, _ = resolve_model_kernel(version)
    if k is None:   # still run what the newest era would ask: the observations are recorded
        k = model_kernel(f"{ERAS[-1].first[0]}.{ERAS[-1].first[1]}")
        k = replace(k, version=_version_of(version) or k.version)
    return cases_mod.generate(k, mte=mte, pci=pci, vfio=vfio)


def _version_of(text: str):
    """``text`` as a KernelVersion (linux.version.parse_version), or None if it is not one."""
    from memtypes.linux.version import parse_version
    try:
        return parse_version(text)
    except InputError:
        return None


# --- QEMU -------------------------------------------------------------------------------------------
def run_qemu_target(pkg, cpu: str, *, qemu, agent: Path, timeout_s: float = BOOT_TIMEOUT_S,
                    walk: bool = True, stop: threading.Event | None = None,
                    on_event: Callable[[str], None] | None = None) -> TargetResult:
    """Fetch, pack, boot and compare one kernel package on one QEMU CPU model."""
    from memtypes.conform import fetch, initrd, qemu as qemu_mod
    res = TargetResult(pkg.version, cpu, qemu_version=getattr(qemu, "version", ""))
    t0 = time.monotonic()
    try:
        if isinstance(pkg, fetch.KernelFiles):      # --kernel-image: nothing to fetch
            files = pkg
        else:
            if on_event:
                on_event(f"{pkg.version}/{cpu}: fetching")
            files = fetch.fetch_kernel(pkg)
        res.release = files.release
        mods: list[Path] = []
        if files.modules_dir is not None:
            try:
                mods = fetch.modules_closure(files.modules_dir, list(VFIO_MODULES))
            except InputError:
                mods = []
        case_list = _cases_for(pkg.version, mte=cpu in CPU_MTE, pci=True, vfio=bool(mods))
        if not walk:
            case_list = [replace(c, walk=False) for c in case_list]
        members = initrd.agent_members(agent, cases_mod.cases_json(case_list), mods)
        with tempfile.TemporaryDirectory(prefix="memtypes-conform-") as tmp:
            rd = Path(tmp) / "initrd.cpio"
            rd.write_bytes(initrd.cpio_bytes(members))
            if on_event:
                on_event(f"{pkg.version}/{cpu}: booting")
            boot = qemu_mod.boot(qemu, files, rd, cpu, mte=cpu in CPU_MTE, smmu=True, ivshmem=True,
                                 timeout_s=timeout_s, gdb=walk)
        lines = list(boot.lines)
        res.raw_lines, res.cases = lines, case_list
        res.boot_s = boot.init_s
        if boot.init_s is not None and boot.done:
            res.agent_s = boot.done_s - boot.init_s if boot.done_s is not None else None
        cmp, label = compare_target(pkg.version, case_list, lines)
        res.comparison, res.model_kernel = cmp, label
        if boot.error or not boot.done:
            res.error = boot.error or "the agent did not finish"
        else:
            res.error = incomplete(lines, cmp)
    except InputError as e:
        res.error = e.one_line()
    except Exception as e:  # noqa: BLE001 - one kernel failing never stops the others; --strict counts it
        res.error = f"{type(e).__name__}: {e}"
    res.wall_s = time.monotonic() - t0
    return res


def run_qemu(kernels: list[str], cpus: list[str], *, jobs: int = 2, kernel_image: Path | None = None,
             modules: Path | None = None, timeout_s: float = BOOT_TIMEOUT_S, walk: bool = True,
             on_event: Callable[[str], None] | None = None) -> list[TargetResult]:
    """Every selected kernel x CPU, ``jobs`` QEMUs at once; results in (kernel, cpu) order."""
    from memtypes.conform import fetch
    agent = build_agent()
    qemu = fetch.fetch_qemu()
    if kernel_image is not None:
        pkgs = [fetch.local_kernel(kernel_image, modules)]
    else:
        if on_event:
            on_event("reading the registry's kernel list")
        fetch.update()
        pkgs = fetch.select(kernels or ["default"])
    targets = [(p, c) for p in pkgs for c in cpus]
    results: list[TargetResult | None] = [None] * len(targets)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futs = {pool.submit(run_qemu_target, p, c, qemu=qemu, agent=agent, timeout_s=timeout_s, walk=walk,
                            on_event=on_event): i for i, (p, c) in enumerate(targets)}
        for f in futs:
            i = futs[f]
            results[i] = f.result()
            if on_event:
                r = results[i]
                on_event(f"{r.kernel}/{r.cpu}: " + (r.error or summary_line(r)))
    except BaseException:
        # Ctrl-C, SIGTERM or an error: no new boot starts, every running QEMU is killed now (its
        # boot thread then sees the console close and returns at once)
        pool.shutdown(wait=False, cancel_futures=True)
        from memtypes.conform import qemu as qemu_mod
        qemu_mod._kill_all()
        raise
    pool.shutdown(wait=True)
    return [r for r in results if r is not None]


# --- live -------------------------------------------------------------------------------------------
def run_live(*, vfio: str | None = None, timeout_s: float = 120.0) -> tuple[TargetResult, list[dict]]:
    """The agent on this machine's running kernel (arm64 with /dev/kvm).  Returns the result
    against the model for the running version and, per era, how many observations agree."""
    if platform.machine() not in ("aarch64", "arm64"):
        raise InputError(f"this host is {platform.machine()}, not arm64: --live needs an arm64 KVM host",
                         where="conform --live", expected="an arm64 host with /dev/kvm (or --qemu)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise InputError("/dev/kvm is missing or not accessible", where="conform --live",
                         expected="a KVM host where this user may open /dev/kvm")
    agent = build_agent()
    release = platform.release()
    version = release.split("-")[0].split("+")[0]
    # MTE cases only where the CPU has it (HWCAP2_MTE: "mte" among /proc/cpuinfo's Features)
    try:
        has_mte = any(ln.startswith("Features") and " mte" in ln
                      for ln in Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        has_mte = False
    case_list = [replace(c, walk=False) for c in
                 _cases_for(version, mte=has_mte, pci=False, vfio=bool(vfio))]
    with tempfile.TemporaryDirectory(prefix="memtypes-live-") as tmp:
        cf = Path(tmp) / "cases.json"
        cf.write_bytes(cases_mod.cases_json(case_list))
        env = dict(os.environ)
        if vfio:
            env["MEMTYPES_VFIO_BDF"] = vfio
        why = ""
        try:
            # stdin closed: the agent never waits for a walk answer here (walk is off)
            proc = subprocess.run([str(agent), str(cf)], capture_output=True, timeout=timeout_s, env=env,
                                  stdin=subprocess.DEVNULL)
            out = proc.stdout
            if proc.returncode:
                why = f"the agent exited with status {proc.returncode}"
        except subprocess.TimeoutExpired as e:      # the child is killed; keep what it printed
            out = e.stdout or b""
            why = f"the agent did not finish within {timeout_s:g} s"
        except OSError as e:
            raise InputError(f"cannot run the agent {agent}: {e.strerror}", where="conform --live",
                             expected="an executable agent (built by memtypes)") from None
    lines = out.decode("utf-8", "replace").splitlines()
    res = TargetResult(version, "live", release=release, raw_lines=lines, cases=case_list)
    res.comparison, res.model_kernel = compare_target(version, case_list, lines)
    res.error = why or incomplete(lines, res.comparison)
    eras = []
    obs = parse_lines(lines)
    for e in ERAS:
        k = model_kernel(f"{e.first[0]}.{e.first[1]}")
        c = compare(k, case_list, obs).counts()
        eras.append({"era": e.span, "agree": c[AGREE], "mismatch": c[MISMATCH]})
    return res, eras


# --- recorded observations ---------------------------------------------------------------------------
def observations_text(r: TargetResult) -> str:
    """One target's observations as a replayable file: a header line naming the kernel, CPU and
    the cases the agent ran, then the agent's and the harness's ``@@`` lines as they came."""
    head = {"conform": {"kernel": r.kernel, "cpu": r.cpu, "release": r.release, "qemu": r.qemu_version,
                        "cases": [c.as_agent() for c in r.cases]}}
    body = [ln[ln.find("@@{"):] for ln in r.raw_lines if "@@{" in ln]
    return "\n".join(["@@" + json.dumps(head, sort_keys=True)] + body) + "\n"


MAX_OBS_BYTES = 16 << 20


def replay(path: Path, *, kernel: str | None = None) -> TargetResult:
    """Compare a recorded observation file (``observations_text``) with the model as it is now;
    ``kernel`` overrides the recorded version (e.g. to ask which era a live host matches)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file '{path}'", where="--replay", expected="a file written by --save-observations")
    if p.stat().st_size > MAX_OBS_BYTES:
        raise InputError(f"'{path}' is larger than {MAX_OBS_BYTES >> 20} MiB", where="--replay",
                         expected="a recorded observation file")
    if p.suffix == ".gz":
        # read at most MAX_OBS_BYTES + 1 unpacked bytes: a small file can unpack to gigabytes
        try:
            with gzip.open(p, "rb") as f:
                data = f.read(MAX_OBS_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"not a gzip file ({e})", where=str(path), expected="a recorded observation file") from None
        if len(data) > MAX_OBS_BYTES:
            raise InputError(f"'{path}' unpacks to more than {MAX_OBS_BYTES >> 20} MiB", where="--replay",
                             expected="a recorded observation file")
    else:
        data = p.read_bytes()
    lines = data.decode("utf-8", "replace").splitlines()
    try:
        if not lines or not lines[0].startswith("@@{"):
            raise ValueError("the first line does not start with '@@{'")
        head = json.loads(lines[0][2:])["conform"]
        case_list = [cases_mod.Case(**cases_mod.from_agent(d)) for d in head["cases"]]
        version = str(kernel or head["kernel"])
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise InputError(f"not a recorded observation file ({type(e).__name__}: {str(e)[:200]})",
                         where=str(path), line=1,
                         expected="the header line written by --save-observations") from None
    res = TargetResult(version, str(head.get("cpu", "")), release=str(head.get("release", "")),
                       qemu_version=str(head.get("qemu", "")), raw_lines=lines[1:], cases=case_list)
    res.comparison, res.model_kernel = compare_target(version, case_list, lines[1:])
    res.error = incomplete(lines[1:], res.comparison)
    return res


def summary_line(r: TargetResult) -> str:
    if not r.ran:
        return f"not run: {r.error}"
    c = r.counts()
    parts = [f"{c['agree']} agree", f"{c['mismatch']} mismatch", f"{c['not observable here']} not observable here",
             f"{c['not modelled']} not modelled"]
    tail = f"; {r.error}" if r.error else ""
    timing = f" ({r.wall_s:.0f} s" + (f": boot {r.boot_s:.1f} s, agent {r.agent_s:.1f} s"
                                      if r.boot_s is not None and r.agent_s is not None else "") + ")"
    return ", ".join(parts) + timing + tail
