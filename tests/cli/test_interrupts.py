"""Issue 18: Ctrl-C (SIGINT to the process group, once or twice) and SIGTERM stop `memtypes
check` and its worker pool: exit 130 / 143, one line, no process left, no output written.
Real subprocesses and signals; every wait is bounded (a hang fails the test, it never blocks
the suite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

# a run that lasts minutes: every passthrough job with three slots, unbounded, on 2 workers
LONG = ["check", "--param", "passthrough.slots=3", "--max-states", "0", "--explorer", "serial",
        "--workers", "2"]


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(tmp_path: Path) -> tuple[subprocess.Popen, list[int], dict[str, Path]]:
    outs = {"json": tmp_path / "r.json", "html": tmp_path / "r.html", "traces": tmp_path / "tr"}
    p = subprocess.Popen([sys.executable, "-m", "memtypes", *LONG, "--json", str(outs["json"]),
                          "--html", str(outs["html"]), "--save-traces", str(outs["traces"])],
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < deadline and p.poll() is None:
        kids = children(p.pid)
        if len(kids) >= 3:  # two workers and the resource tracker
            break
        time.sleep(0.1)
    time.sleep(1.0)  # let the workers take their first jobs
    kids = children(p.pid)
    assert p.poll() is None and len(kids) >= 2, (p.poll(), kids)
    return p, kids, outs


def finish(p: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("memtypes check did not stop after the signal")
    return p.returncode, err


def assert_clean(kids: list[int], outs: dict[str, Path], tmp_path: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)], "orphaned worker or resource tracker"
    assert not any(o.exists() for o in outs.values())
    assert sorted(x.name for x in tmp_path.iterdir()) == [], "a partial or temporary output"


@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_stops_check_and_its_workers(tmp_path, times):
    p, kids, outs = start(tmp_path)
    for _ in range(times):
        os.killpg(p.pid, signal.SIGINT)
        time.sleep(0.05)
    rc, err = finish(p)
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "memtypes: interrupted: no output written", err
    assert "Traceback" not in err
    assert_clean(kids, outs, tmp_path)


def test_sigterm_leaves_no_orphans(tmp_path):
    p, kids, outs = start(tmp_path)
    os.kill(p.pid, signal.SIGTERM)  # the main process only, as a service manager would
    rc, err = finish(p)
    assert rc == 143, err
    assert err.strip().splitlines()[-1] == "memtypes: terminated: no output written", err
    assert "Traceback" not in err
    assert_clean(kids, outs, tmp_path)


def test_workers_die_with_a_killed_parent(tmp_path):
    p, kids, outs = start(tmp_path)
    os.kill(p.pid, signal.SIGKILL)  # no cleanup can run: the workers' death signal must
    p.communicate(timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)]
    assert not any(o.exists() for o in outs.values())


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_workers_remove_their_spill_folders(tmp_path, sig, code):
    """A search past --max-memory spills to a temporary folder in each worker; an interrupt of
    the parent reaches the workers as SIGTERM and their folders go with them."""
    spill = tmp_path / "tmp"
    spill.mkdir()
    env = dict(os.environ, TMPDIR=str(spill))
    p = subprocess.Popen([sys.executable, "-m", "memtypes", "check", "--family", "dma-type1", "--kernel", "6.9",
                          "--param", "dma-type1.pages=3", "--max-states", "0", "--max-memory", "1M"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(spill.glob("memtypes-spill-*")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert list(spill.glob("memtypes-spill-*")), "no worker spilled"
    os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
    assert p.wait(timeout=30) == code
    assert not list(spill.iterdir())
