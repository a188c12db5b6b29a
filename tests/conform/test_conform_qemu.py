"""conform.qemu: the QEMU command line, and boot() driving a stand-in QEMU program
(conform_fakeqemu.py) through the agent protocol, a stage-2 walk over its fake gdbstub,
the time limit, a kernel panic and an early exit."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from memtypes.conform.fetch import KernelFiles, QemuFiles
from memtypes.conform.qemu import boot, command, parse_record

HERE = Path(__file__).parent
KERNEL = KernelFiles("6.12.118", "6.12.118+deb12-arm64", Path("/k/vmlinuz"), None)



def _assert_gone(pid: int, why: str) -> None:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(why)

def test_command_line():
    q = QemuFiles(Path("/q/qemu-system-aarch64"), Path("/q/share"), "10.0.2", {})
    cmd = command(q, KERNEL, Path("/r/initrd.gz"), "max", mte=True, smmu=True, ivshmem=True,
                  gdb_sock=Path("/t/gdb.sock"))
    assert cmd[:5] == ["/q/qemu-system-aarch64", "-L", "/q/share", "-audio", "none"]
    s = " ".join(cmd)
    assert "-M virt,virtualization=on,gic-version=3,mte=on,iommu=smmuv3 -cpu max -smp 1 " \
           "-m 1G -accel tcg -nographic -no-reboot -nic none -kernel /k/vmlinuz " \
           "-initrd /r/initrd.gz" in s
    assert cmd[cmd.index("-append") + 1] == "console=ttyAMA0 rdinit=/init panic=-1 quiet"
    assert "-object memory-backend-ram,id=m,size=2M -device ivshmem-plain,memdev=m" in s
    assert s.endswith("-gdb unix:/t/gdb.sock,server,nowait")
    old = QemuFiles(Path("/usr/bin/qemu-system-aarch64"), None, "7.2.22", {})
    plain = command(old, KERNEL, Path("/r/i"), "cortex-a57", mte=False, smmu=False,
                    ivshmem=False)
    assert "-L" not in plain and "-audio" not in plain and "-gdb" not in plain
    assert plain[plain.index("-M") + 1] == "virt,virtualization=on,gic-version=3"


def test_parse_record():
    assert parse_record('@@{"done": true}') == {"done": True}
    assert parse_record("@@go {}") is None
    assert parse_record("@@{broken") is None
    assert parse_record('@@[1]') is None
    assert parse_record("[ 1.0] hello") is None


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    script = tmp_path / "qemu-system-aarch64"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "conform_fakeqemu.py"}" "$@"\n')
    script.chmod(0o755)

    def make(scenario):
        monkeypatch.setenv("FAKE_QEMU", scenario)
        return QemuFiles(script, None, "10.0.2", {})
    return make


def test_boot_serves_a_walk_request(fake, tmp_path):
    seen = []
    r = boot(fake("walk"), KERNEL, tmp_path / "initrd", "max", mte=True, timeout_s=60,
             on_line=lambda line, ctl: seen.append(line), gdb=True)
    assert r.error is None, r.error
    assert r.done and r.status == 0 and r.init_s is not None
    s2 = [rec["s2"] for rec in r.records if "s2" in rec]
    assert len(s2) == 2
    w = s2[0]
    assert s2[1]["id"] == "w2" and s2[1]["data"] == "00000014"     # "bytes": 4
    assert (w["id"], w["ipa"], w["level"], w["block_size"], w["memattr"], w["s2ap"]) == \
        ("w1", 0x80000000, 2, 0x200000, 6, 3)
    assert w["oa"] == 0x40000000 and w["data"] == "0000001400000000"
    assert w["vttbr"] >> 48 == 5
    # the agent got exactly the recorded result back
    got = [rec["got"] for rec in r.records if "got" in rec]
    assert got == [json.loads(json.dumps(x)) for x in s2]
    # echoed @@go lines are not recorded; the harness's own line is, after the request
    assert not any(ln.startswith("@@go ") for ln in r.lines)
    i = next(i for i, ln in enumerate(r.lines) if '"walk"' in ln)
    assert r.lines[i + 1].startswith('@@{"s2": ')
    assert seen == r.lines


def test_boot_without_gdb_answers_the_agent_with_an_error(fake, tmp_path):
    r = boot(fake("walk"), KERNEL, tmp_path / "initrd", "max", timeout_s=60, gdb=False)
    assert r.done and r.error is None
    assert r.records[2]["s2"]["error"].startswith("no gdbstub")
    assert r.records[3]["got"]["error"].startswith("no gdbstub")


def test_time_limit_kills_the_whole_process_group(fake, tmp_path):
    # the stand-in prints "still booting" well within the limit, even on a loaded machine
    r = boot(fake("hang"), KERNEL, tmp_path / "initrd", "max", timeout_s=4, gdb=False)
    assert r.error == "timed out after 4 s at 'still booting'"
    assert not r.done and r.status is not None and r.status < 0
    child = next(rec["child"] for rec in r.records if "child" in rec)
    _assert_gone(child, "QEMU's child process survived")     # reaped by init shortly after SIGKILL


def test_kernel_panic_is_reported(fake, tmp_path):
    r = boot(fake("panic"), KERNEL, tmp_path / "initrd", "max", timeout_s=60, gdb=False)
    assert r.error == ("kernel panic: [    2.0] Kernel panic - not syncing: Attempted to kill "
                       "init! exitcode=0x00000100")
    assert r.splats == ["[    1.9] Unable to handle kernel NULL pointer dereference at "
                        "virtual address 0"]


def test_early_exit_is_reported_with_the_last_line(fake, tmp_path):
    r = boot(fake("exit"), KERNEL, tmp_path / "initrd", "nosuch", timeout_s=60, gdb=False)
    assert r.status == 1
    assert r.error == ("QEMU exited with status 1 before the agent was done: "
                       "qemu-system-aarch64: -cpu nosuch: unable to find CPU model 'nosuch'")


def test_missing_binary(tmp_path):
    q = QemuFiles(tmp_path / "nope", None, "10.0", {})
    r = boot(q, KERNEL, tmp_path / "initrd", "max", timeout_s=5, gdb=False)
    assert r.error.startswith("cannot start") and r.lines == []


def test_sigterm_kills_qemu_and_exits(fake, tmp_path):
    """SIGTERM to the process running boot(): QEMU's process group is killed, exit 143."""
    import signal
    import subprocess
    qf = fake("hang")
    prog = f"""
import sys
from pathlib import Path
from memtypes.conform.fetch import KernelFiles, QemuFiles
from memtypes.conform.qemu import boot
k = KernelFiles("6.12.118", "r", Path("/k"), None)
q = QemuFiles(Path({str(qf.binary)!r}), None, "10.0.2", {{}})
def on_line(line, ctl):
    print(line, flush=True)
boot(q, k, Path("/i"), "max", timeout_s=60, gdb=False, on_line=on_line)
print("returned", flush=True)
"""
    p = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, FAKE_QEMU="hang"))
    child = None
    for line in p.stdout:
        if line.startswith('@@{"child"'):
            child = json.loads(line[2:])["child"]
            break
    assert child is not None
    p.send_signal(signal.SIGTERM)
    rest = p.stdout.read()
    assert p.wait(timeout=30) == 143
    assert "returned" not in rest
    _assert_gone(child, "QEMU's child process survived SIGTERM")


def test_on_line_can_stop_the_run(fake, tmp_path):
    def on_line(line, ctl):
        if line == "still booting":
            ctl.stop("seen enough")
    r = boot(fake("hang"), KERNEL, tmp_path / "initrd", "max", timeout_s=60, gdb=False,
             on_line=on_line)
    assert r.error == "seen enough" and r.lines[-1] == "still booting"
    assert r.status is not None and r.status < 0      # killed


def test_broken_gdbstub_lets_the_guest_run_and_fails_every_walk(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_GDB", "no-xfer")
    r = boot(fake("walk"), KERNEL, tmp_path / "initrd", "max", timeout_s=60, gdb=True)
    assert r.done and r.error is None
    errs = [rec["s2"]["error"] for rec in r.records if "s2" in rec]
    assert errs == ["gdbstub: the gdbstub offers no target description "
                    "(qXfer:features:read)"] * 2
    assert r.lines.count("stub: continued") == 1       # resumed once, never halted again
