"""Build the conform agent (``agent/agent.c``) as a static arm64 program.

memtypes ships the agent's source only; it compiles it on first use into the cache, keyed by
the source's hash, with ``aarch64-linux-gnu-gcc -static`` on an x86 host (Debian's
``gcc-aarch64-linux-gnu`` and ``libc6-dev-arm64-cross``) or ``gcc -static`` on an arm64 host.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from memtypes.conform.fetch import cache_dir
from memtypes.errors import InputError

CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Wno-format-truncation")
INSTALL_CROSS = "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"


def agent_source() -> bytes:
    return resources.files("memtypes.conform").joinpath("agent/agent.c").read_bytes()


def compiler() -> str:
    """The compiler that makes a static arm64 binary on this machine, or InputError."""
    native = platform.machine() in ("aarch64", "arm64")
    cc = "gcc" if native else "aarch64-linux-gnu-gcc"
    if shutil.which(cc) is None:
        raise InputError(f"no {cc}: the conform agent cannot be built", where="conform",
                         expected=f"a static arm64 C compiler ({'apt-get install gcc libc6-dev' if native else INSTALL_CROSS})")
    return cc


def build_agent(out_dir: Path | None = None) -> Path:
    """Compile the agent if needed; return the path of the static binary."""
    src = agent_source()
    digest = hashlib.sha256(src + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out_dir = out_dir or cache_dir() / "agent"
    binary = out_dir / f"memtypes-agent-{digest}"
    if binary.exists():
        return binary
    cc = compiler()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        c = Path(tmp) / "agent.c"
        c.write_bytes(src)
        tmp_bin = Path(tmp) / "agent"
        proc = subprocess.run([cc, *CFLAGS, "-o", str(tmp_bin), str(c), "-lpthread"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
            raise InputError(f"building the agent failed: {first}", where=cc,
                             expected=f"a working static arm64 toolchain ({INSTALL_CROSS})")
        os.replace(tmp_bin, binary)   # atomic: a half-built agent is never used
    return binary
