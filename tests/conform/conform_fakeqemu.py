"""A stand-in for qemu-system-aarch64 in the conform.qemu tests: prints console lines for
the scenario named by $FAKE_QEMU (walk, hang, panic, exit) and, when given
``-gdb unix:PATH,server,nowait``, serves a fake gdbstub there whose stage-2 tables map
IPA 0x80000000 to a 2 MiB block at PA 0x40000000 (MemAttr 0x6)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conform_fakegdb import FakeStub, Tables  # noqa: E402

args = sys.argv[1:]
scenario = os.environ.get("FAKE_QEMU", "walk")


LOCK = threading.Lock()
CONTINUED = threading.Event()     # the stub got "c" (the harness resumed the machine)


def out(s):
    with LOCK:
        sys.stdout.write(s + "\r\n")
        sys.stdout.flush()


if "-gdb" in args:
    path = args[args.index("-gdb") + 1].split(":", 1)[1].split(",")[0]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    t = Tables()
    l1 = t.alloc(2)
    l2 = t.alloc()
    t.put(l1 + 8 * 2, l2 | 3)                                   # IPA 0x80000000: level 1
    t.put(l2, 0x40000000 | 6 << 2 | 3 << 6 | 3 << 8 | 1 << 10 | 1)   # 2 MiB block

    def serve():
        conn, _ = srv.accept()
        stub = FakeStub(conn, regs={"HCR_EL2": 1, "VTTBR_EL2": 5 << 48 | l1,
                                    "VTCR_EL2": 24 | 1 << 6 | 3 << 12},
                        hello_stop=True, xfer=os.environ.get("FAKE_GDB") != "no-xfer",
                        on_continue=lambda: (out("stub: continued"), CONTINUED.set()))
        for a, v in t.mem.items():
            stub.set_u64(a, v)
        stub.set_u64(0x40000000, 0x14000000)
        stub.serve()
    threading.Thread(target=serve, daemon=True).start()

out("qemu-fake: " + " ".join(a for a in args if a.startswith("-")))
if scenario == "walk":
    out('@@{"hello": 1}')
    out('@@{"walk": {"ipa": 2147483648, "id": "w1"}}')
    line = sys.stdin.readline()
    if "-gdb" in args:
        CONTINUED.wait(10)                  # the harness resumes before it answers
    out(line.rstrip("\n"))                  # the console echoes what it got
    assert line.startswith("@@go "), line
    out("@@" + json.dumps({"got": json.loads(line[5:])}))
    out('@@{"walk": {"ipa": 2147483648, "id": "w2", "bytes": 4}}')
    line = sys.stdin.readline()
    out("@@" + json.dumps({"got": json.loads(line[5:])}))
    out('@@{"done": true}')
    out("[    3.1] reboot: Power down")
elif scenario == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    out('@@{"child": %d}' % child.pid)
    out("still booting")
    time.sleep(120)
elif scenario == "panic":
    out("[    1.9] Unable to handle kernel NULL pointer dereference at virtual address 0")
    out("[    2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100")
elif scenario == "exit":
    out("qemu-system-aarch64: -cpu nosuch: unable to find CPU model 'nosuch'")
    sys.exit(1)
