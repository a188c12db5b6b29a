"""``memtypes conform``: hold the model against real kernels running as KVM hosts.

``memtypes conform [--qemu] [--kernels SPEC,...] [--cpus CPU,...] [--kernel-image FILE
[--modules DIR]] [--jobs N] [--json FILE] [--html FILE] [--strict]`` or ``memtypes conform
--live [--vfio BDF]``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import typer

from memtypes.cli import variants_opt
from memtypes.cli.app import app
from memtypes.errors import InputError

HELP = """Compare the model's predictions with what real Linux kernels do as KVM hosts.

\b
--qemu (default): Debian's arm64 kernels, fetched by package name into ~/.cache/memtypes
under a private APT configuration (the machine's apt setup is never changed), each booted
under QEMU (TCG, -M virt,virtualization=on) with memtypes' agent as init.  The agent drives
/dev/kvm (capabilities, memslots over every backing, a tiny guest that reads, writes and
executes, MTE tags) and the harness reads the stage-2 descriptors through QEMU's gdbstub.
Each observation is compared with the model for the exact kernel version and the CPU
features the booted kernel detected: agree, mismatch, not observable here, not modelled.
--live: the same agent on this arm64 host's running kernel (scratch VMs only; nothing is
bound to vfio unless --vfio BDF names a device); reports which era its behaviour matches.

\b
--kernels: series (7.2: its newest point release), exact releases (6.12.117), ranges of
point releases (6.12.43..6.12.118: every one the registry has), default (every series).
--cpus: QEMU CPU models (default max,cortex-a57,neoverse-n1: FWB+MTE+DIC with VHE, no FWB
with nVHE, no FWB with VHE).
"""


def _split(values: Optional[List[str]]) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _check_out(path: Optional[str], opt: str) -> Optional[Path]:
    """Fail before any work if an output file cannot be written."""
    if path is None:
        return None
    p = Path(path)
    d = p.parent if str(p.parent) else Path(".")
    if p.is_dir() or not d.is_dir() or not os.access(d, os.W_OK):
        raise InputError(f"cannot write '{path}'", where=opt, expected="a file path in a writable folder")
    return p


def _obs_name(kernel: str, cpu: str) -> str:
    """KERNEL-CPU.obs, a plain name inside the --save-observations folder even when the kernel
    or CPU came from a --replay file's header ("../x" must not leave the folder)."""
    name = re.sub(r"[^A-Za-z0-9.+_-]", "_", f"{kernel}-{cpu}").lstrip(".") or "target"
    return name[:200] + ".obs"


def _write_atomic(p: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command("conform", help=HELP)
def conform_cmd(
    qemu: bool = typer.Option(False, "--qemu", help="boot Debian's kernels under QEMU (the default)"),
    live: bool = typer.Option(False, "--live", help="run the agent on this arm64 host's kernel"),
    kernels: Optional[List[str]] = typer.Option(None, "--kernels", help="SPEC[,SPEC...] (default: every series)"),
    cpus: Optional[List[str]] = typer.Option(None, "--cpus", help="CPU[,CPU...] (default max,cortex-a57,neoverse-n1)"),
    kernel_image: Optional[str] = typer.Option(None, "--kernel-image", help="an arm64 Image you built"),
    modules: Optional[str] = typer.Option(None, "--modules", help="its modules folder (lib/modules/RELEASE)"),
    jobs: int = typer.Option(2, "--jobs", help="QEMUs at once"),
    timeout: float = typer.Option(240.0, "--timeout", help="seconds per boot before QEMU is killed"),
    vfio: Optional[str] = typer.Option(None, "--vfio", help="--live: a PCI device (BDF) the agent may bind to vfio-pci"),
    replay_files: Optional[List[str]] = typer.Option(None, "--replay", help="compare a recorded observation file "
                                                     "(from --save-observations) instead of booting (repeatable)"),
    as_kernel: Optional[str] = typer.Option(None, "--as-kernel", help="--replay: compare with this kernel's "
                                            "rules instead of the recorded one's (e.g. which era a distro kernel "
                                            "matches, or V+VARIANT: a proposed rule against what kernels did)"),
    save_obs: Optional[str] = typer.Option(None, "--save-observations", help="write each target's raw observations "
                                           "into this folder (replayable with --replay)"),
    json_out: Optional[str] = typer.Option(None, "--json", help="write the observations and predictions as JSON"),
    html_out: Optional[str] = typer.Option(None, "--html", help="write an HTML report"),
    strict: bool = typer.Option(False, "--strict", help="exit 1 if any mismatch remains (or a kernel did not run, or did not finish)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="list agreeing observations too"),
    variant_files: Optional[List[str]] = variants_opt.option(),
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from memtypes.conform import run as conform_run
    from memtypes.report import conform as rep
    from memtypes.report.jsondoc import dumps

    vfiles = variants_opt.load(variant_files)    # --as-kernel V+VARIANT may name one of them
    if qemu and live:
        raise InputError("--qemu and --live exclude each other", where="conform", expected="one of them")
    if jobs < 1 or jobs > 16:
        raise InputError(f"--jobs {jobs} is out of range", where="--jobs", expected="1 to 16")
    if not (timeout > 0 and timeout <= 3600):
        raise InputError(f"--timeout {timeout} is out of range", where="--timeout", expected="0 < seconds <= 3600")
    if modules and not kernel_image:
        raise InputError("--modules needs --kernel-image", where="--modules", expected="--kernel-image FILE")
    if kernel_image and not Path(kernel_image).is_file():
        raise InputError(f"no such file '{kernel_image}'", where="--kernel-image", expected="an arm64 kernel Image")
    if modules and not Path(modules).is_dir():
        raise InputError(f"no such folder '{modules}'", where="--modules", expected="a lib/modules/RELEASE folder")
    jp, hp = _check_out(json_out, "--json"), _check_out(html_out, "--html")
    if replay_files and (live or qemu or kernels or kernel_image):
        raise InputError("--replay compares recorded files: it takes no --qemu, --live, --kernels or --kernel-image",
                         where="--replay", expected="--replay FILE [--replay FILE ...]")
    if as_kernel and not replay_files:
        raise InputError("--as-kernel needs --replay", where="--as-kernel", expected="--replay FILE --as-kernel V")
    if as_kernel:
        from memtypes.linux.kvm.eras import kernel as model_kernel
        model_kernel(as_kernel, where="--as-kernel")      # one line and exit 2 if it is not a version
    save_dir = Path(save_obs) if save_obs else None
    if save_dir is not None and save_dir.exists() and not save_dir.is_dir():
        raise InputError(f"'{save_obs}' is not a folder", where="--save-observations", expected="a folder")
    if save_dir is not None:
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create '{save_obs}': {e.strerror}", where="--save-observations",
                             expected="a writable folder") from None
        if not os.access(save_dir, os.W_OK):
            raise InputError(f"cannot write into '{save_obs}'", where="--save-observations",
                             expected="a writable folder")
    con = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
    err = Console(stderr=True, soft_wrap=True)
    t0 = time.monotonic()

    def event(msg: str) -> None:
        err.print(f"[dim]{time.monotonic() - t0:6.1f}s[/dim] {escape(msg)}", highlight=False)

    facts: dict = {"mode": "replay" if replay_files else "live" if live else "qemu"}
    if vfiles:
        facts["variant_files"] = vfiles
    if replay_files:
        results = [conform_run.replay(Path(f), kernel=as_kernel) for f in replay_files]
    elif live:
        res, eras = conform_run.run_live(vfio=vfio)
        results = [res]
        facts["eras"] = eras
    else:
        cpu_list = _split(cpus) or list(conform_run.DEFAULT_CPUS)
        results = conform_run.run_qemu(_split(kernels), cpu_list, jobs=jobs,
                                       kernel_image=Path(kernel_image) if kernel_image else None,
                                       modules=Path(modules) if modules else None, timeout_s=timeout,
                                       on_event=event)
        facts["qemu"] = next((r.qemu_version for r in results if r.qemu_version), "")
    facts["cpus"] = sorted({r.cpu for r in results})
    if save_dir is not None:
        for r in results:
            if r.raw_lines:
                _write_atomic(save_dir / _obs_name(r.kernel, r.cpu), conform_run.observations_text(r))
    if jp is None and hp is None:
        rep.render_text(con, results, verbose=verbose)
    if live:
        best = max(facts["eras"], key=lambda e: (e["agree"] - e["mismatch"], e["era"]))
        con.print(f"behaviour matches era {best['era']} best "
                  f"({best['agree']} agree, {best['mismatch']} mismatch)")
    if jp is not None:
        _write_atomic(jp, dumps(rep.conform_doc(results, facts=facts)))
    if hp is not None:
        _write_atomic(hp, rep.render_html(results, facts=facts))
    for r in results:
        con.print(escape(f"{r.kernel} {r.cpu}: {rep.summary(r)}"), highlight=False)
    # a target that did not run, or ran only in part (no 'done', no /dev/kvm), fails --strict:
    # its missing cases are "not observable here", not agreement
    bad = sum(r.counts().get("mismatch", 0) for r in results) + sum(not r.ran or bool(r.error) for r in results)
    if strict and bad:
        raise typer.Exit(1)
