"""Boot one real arm64 kernel as a KVM host under ``qemu-system-aarch64`` (TCG), with the
agent as its init, and talk to the agent over the serial console.

Machine (facts: ../shared/reference/realkernel.md): ``-M virt,virtualization=on,
gic-version=3`` (EL2, so the guest kernel brings up KVM), ``mte=on`` for MTE,
``iommu=smmuv3`` for an SMMU in front of PCI, an ``ivshmem-plain`` device (2 MiB BAR2) to pass
through with vfio-pci (vendor:device 1af4:1110, at 0000:00:01.0 since ``-nic none`` leaves
out the default network card); ``-nographic`` puts the first UART on QEMU's
stdin/stdout.

Protocol with the agent: it prints lines beginning ``@@`` followed by a JSON object. On
``@@{"walk": {"ipa": N, "id": "..."}}`` (optionally ``"bytes": K``, 0..4096, how much to read
at the output address; 8 by default) the agent's vCPU is spinning inside its guest; the
harness halts QEMU through the gdbstub, walks stage 2 for that IPA, lets QEMU run again,
records the result as its own line ``@@{"s2": {"id": ..., "ipa": N, ...}}`` and writes
``@@go <the same JSON>`` followed by a newline to the console, which the agent reads on stdin
before it releases its guest. ``@@{"done": true}`` ends the run (the agent then powers the
machine off). Lines the agent's console echoes back (``@@go ...``) are skipped.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from memtypes.conform.fetch import KernelFiles, QemuFiles
from memtypes.conform.gdbstub import GdbError, RemoteClient, Stage2Walker

APPEND = "console=ttyAMA0 rdinit=/init panic=-1 quiet"
PANIC_MARKERS = ("Kernel panic - not syncing",)
# kernel messages worth reporting that do not end the run (printed even with "quiet": the
# oops path logs at KERN_ALERT/KERN_EMERG)
SPLAT_MARKERS = ("Internal error:", "Unable to handle kernel", "BUG:", "Oops")
DONE_GRACE_S = 10.0          # after "done", how long QEMU has to power off


@dataclass
class BootResult:
    """What one boot produced. ``lines``: every console line (CR stripped) plus the
    harness's ``@@{"s2": ...}`` lines in the order they happened; ``records``: the parsed
    ``@@`` JSON objects (agent's and harness's); ``status``: QEMU's exit status (negative:
    killed by that signal; None: still running when abandoned); ``wall_s``: start to exit;
    ``init_s``: start to the first ``@@`` line (None if never); ``done``: the agent said
    done; ``error``: one line, or None when the run was clean; ``splats``: kernel oops/BUG
    lines seen (the run went on)."""

    lines: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    status: int | None = None
    wall_s: float = 0.0
    init_s: float | None = None
    done_s: float | None = None     # start to the agent's "done"
    done: bool = False
    error: str | None = None
    splats: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


class BootControl:
    """Handed to ``on_line``: ``walk_s2(ipa)`` walks stage 2 now (the guest must be
    spinning), ``send(text)`` writes to the guest's console."""

    def __init__(self, proc: subprocess.Popen, sock: Path | None) -> None:
        self._proc = proc
        self._sock = sock
        self._client: RemoteClient | None = None
        self._walker: Stage2Walker | None = None
        self.stop_reason: str | None = None
        self._broken: str | None = None

    def stop(self, reason: str) -> None:
        """End the run after this line: QEMU is killed and ``reason`` becomes the error."""
        self.stop_reason = reason

    def send(self, text: str) -> None:
        if "\x01" in text:
            raise ValueError("Ctrl-A would reach QEMU's monitor multiplexer")
        if self._proc.stdin is None:
            raise RuntimeError("the console is closed")
        self._proc.stdin.write(text.encode())
        self._proc.stdin.flush()

    def walk_s2(self, ipa: int, data_bytes: int = 8) -> dict:
        """{"level", "block_size", "memattr", "s2ap", "xn", "af", "sh", "oa", "desc",
        "path", "data" (``data_bytes`` at the output address, hex), "vttbr", "vtcr", "hcr",
        "features", "tries", ...} or {"error": "..."}."""
        if self._sock is None:
            return {"error": "no gdbstub: boot(..., gdb=True) is needed for stage-2 walks"}
        try:
            self._connect()
            return self._walker.walk(ipa, data_bytes=data_bytes)
        except (GdbError, OSError) as e:
            return self._fail(e)

    def sysregs(self) -> dict:
        """The EL2/ID registers the walk uses and their decoded ``features`` (FWB, DIC,
        MTE, VHE, ...), read now; {"error": ...} without a gdbstub."""
        if self._sock is None:
            return {"error": "no gdbstub: boot(..., gdb=True) is needed to read registers"}
        try:
            self._connect()
            return self._walker.snapshot()
        except (GdbError, OSError) as e:
            return self._fail(e)

    def _fail(self, e: Exception) -> dict:
        """After a protocol failure: let the guest run again (QEMU halted it when the client
        connected), drop the connection, and answer every later request with this error
        rather than halting the machine again."""
        self._broken = f"gdbstub: {e}"
        if self._client is not None:
            try:
                self._client.running = False
                self._client.cont()
            except (GdbError, OSError):
                pass
            self._client.close()
            self._client = self._walker = None
        return {"error": self._broken}

    def _connect(self) -> None:
        if self._broken:
            raise GdbError(self._broken.removeprefix("gdbstub: "))
        if self._client is None:
            self._client = RemoteClient(self._sock)
            self._client.handshake()
            self._walker = Stage2Walker(self._client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# -- processes to kill on exit or SIGTERM
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()
_SIG_INSTALLED = False


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all() -> None:
    with _LIVE_LOCK:
        pids = list(_LIVE)
    for pid in pids:
        _kill_group(pid)


def _install_handlers() -> None:
    """Once, from the main thread: SIGTERM kills the QEMUs still running (then behaves as
    before: the previous handler, or exit status 143); atexit does the same."""
    global _SIG_INSTALLED
    if _SIG_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    _SIG_INSTALLED = True
    atexit.register(_kill_all)
    prev = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        _kill_all()
        if callable(prev):
            prev(signum, frame)
        else:
            raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)


def command(qemu: QemuFiles, kernel: KernelFiles, initrd: Path, cpu: str, *, mte: bool,
            smmu: bool, ivshmem: bool, gdb_sock: Path | None = None, memory: str = "1G",
            append: str = APPEND, extra: list[str] | None = None) -> list[str]:
    """The QEMU command line (see the module docstring)."""
    machine = "virt,virtualization=on,gic-version=3"
    if mte:
        machine += ",mte=on"
    if smmu:
        machine += ",iommu=smmuv3"
    cmd = [str(qemu.binary)]
    if qemu.datadir is not None:
        # an extracted QEMU: its firmware folder, and no audio backend, else it probes the
        # system QEMU's audio modules and aborts ("Only modules from the same build can be
        # loaded"); QEMU 7.2's -audio would want a model, but a system QEMU needs neither
        cmd += ["-L", str(qemu.datadir), "-audio", "none"]
    cmd += ["-M", machine, "-cpu", cpu, "-smp", "1", "-m", memory, "-accel", "tcg",
            "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", str(kernel.image), "-initrd", str(initrd), "-append", append]
    if ivshmem:
        cmd += ["-object", "memory-backend-ram,id=m,size=2M", "-device",
                "ivshmem-plain,memdev=m"]
    if gdb_sock is not None:
        cmd += ["-gdb", f"unix:{gdb_sock},server,nowait"]
    return cmd + list(extra or [])


def _reader(stream, q: queue.Queue) -> None:
    buf = b""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            q.put(line.decode("utf-8", "replace").rstrip("\r"))
    if buf:
        q.put(buf.decode("utf-8", "replace").rstrip("\r"))
    q.put(None)


def parse_record(line: str) -> dict | None:
    """The JSON object of an ``@@`` line, or None (not a record, or malformed)."""
    if not line.startswith("@@{"):
        return None
    try:
        obj = json.loads(line[2:])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def boot(qemu: QemuFiles, kernel: KernelFiles, initrd: Path, cpu: str, *, mte: bool = False,
         smmu: bool = False, ivshmem: bool = False, timeout_s: float = 60.0,
         on_line: Callable[[str, BootControl], None] | None = None, gdb: bool = True,
         memory: str = "1G", append: str = APPEND, extra: list[str] | None = None
         ) -> BootResult:
    """Boot, feed every console line to ``on_line(line, ctl)``, serve the agent's walk
    requests, and return when QEMU exits (after the agent's done, a kernel panic, or on its
    own), when the time limit passes, or when ``on_line`` calls ``ctl.stop``; QEMU is given
    ``DONE_GRACE_S`` to power off after done or a panic. QEMU runs in its own process group
    and is killed (with everything it started) on any way out of this function, an
    exception from ``on_line`` or Ctrl-C included."""
    _install_handlers()
    res = BootResult()
    tmp = Path(tempfile.mkdtemp(prefix="memtypes-qemu-"))
    sock = tmp / "gdb.sock" if gdb else None
    res.command = command(qemu, kernel, initrd, cpu, mte=mte, smmu=smmu, ivshmem=ivshmem,
                          gdb_sock=sock, memory=memory, append=append, extra=extra)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(res.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, **qemu.env))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        res.error = f"cannot start {qemu.binary}: {e.strerror}"
        return res
    with _LIVE_LOCK:
        _LIVE.add(proc.pid)
    ctl = BootControl(proc, sock)
    q: queue.Queue = queue.Queue()
    th = threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True)
    th.start()
    deadline = t0 + timeout_s
    done_at: float | None = None
    eof = False
    try:
        while True:
            now = time.monotonic()
            limit = deadline if done_at is None else min(deadline, done_at + DONE_GRACE_S)
            if now >= limit:
                last = res.lines[-1] if res.lines else "(no output)"
                if done_at is None:
                    res.error = f"timed out after {timeout_s:g} s at {last!r}"
                elif res.error is None:
                    res.error = f"QEMU did not power off within {DONE_GRACE_S:g} s of done"
                break
            try:
                line = q.get(timeout=min(0.5, limit - now))
            except queue.Empty:
                continue
            if line is None:
                eof = True
                break
            if line.startswith("@@go "):
                continue                    # the console echoing what we sent
            res.lines.append(line)
            rec = parse_record(line)
            if rec is not None:
                if res.init_s is None:
                    res.init_s = time.monotonic() - t0
                res.records.append(rec)
            if any(m in line for m in PANIC_MARKERS) and res.error is None:
                res.error = f"kernel panic: {line.strip()}"
                done_at = time.monotonic()  # panic=-1 and -no-reboot: QEMU exits now
            elif rec is None and any(m in line for m in SPLAT_MARKERS):
                res.splats.append(line.strip())
            if on_line is not None:
                on_line(line, ctl)
            if rec is not None and isinstance(rec.get("walk"), dict):
                _serve_walk(rec["walk"], ctl, res, on_line)
            if ctl.stop_reason is not None:
                res.error = ctl.stop_reason
                break
            if rec is not None and rec.get("done") is True:
                res.done = True
                done_at = time.monotonic()
                res.done_s = done_at - t0
                if proc.stdin:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass
    finally:
        ctl.close()
        if proc.poll() is None and not eof:
            _kill_group(proc.pid)
        try:
            res.status = proc.wait(timeout=DONE_GRACE_S if eof else 5)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            res.status = proc.wait()
        _kill_group(proc.pid)            # anything QEMU left in its group
        with _LIVE_LOCK:
            _LIVE.discard(proc.pid)
        th.join(timeout=5)               # EOF follows the kill: the reader ends by itself
        for s in (proc.stdin, proc.stdout):
            try:
                if s:
                    s.close()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        res.wall_s = time.monotonic() - t0
    if res.error is None and not res.done:
        last = next((ln for ln in reversed(res.lines) if ln.strip()), "(no output)")
        res.error = f"QEMU exited with status {res.status} before the agent was done: {last}"
    return res


def _serve_walk(req: dict, ctl: BootControl, res: BootResult, on_line) -> None:
    ipa = req.get("ipa")
    nbytes = req.get("bytes", 8)
    out: dict = {"id": req.get("id"), "ipa": ipa}
    if not isinstance(ipa, int) or ipa < 0:
        out["error"] = f"bad walk request {json.dumps(req)}: ipa must be a non-negative integer"
    elif not isinstance(nbytes, int) or not 0 <= nbytes <= 4096:
        out["error"] = f"bad walk request {json.dumps(req)}: bytes must be 0..4096"
    else:
        t = time.monotonic()
        out.update(ctl.walk_s2(ipa, nbytes))
        out["walk_ms"] = round((time.monotonic() - t) * 1000, 1)
    line = "@@" + json.dumps({"s2": out}, sort_keys=True)
    res.lines.append(line)
    res.records.append({"s2": out})
    if on_line is not None:
        on_line(line, ctl)
    try:
        ctl.send("@@go " + json.dumps(out, sort_keys=True) + "\n")
    except (OSError, RuntimeError, ValueError) as e:
        if res.error is None:
            res.error = f"cannot answer the agent's walk request: {e}"
