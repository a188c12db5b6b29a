"""Real arm64 kernels and QEMU 10, fetched by package name from Debian's registry.

Everything lives under one cache folder (``$MEMTYPES_CACHE``, else
``$XDG_CACHE_HOME/memtypes``, else ``~/.cache/memtypes``):

- ``apt/``: a private APT configuration (``apt.conf``, its own sources list, state, cache and
  an empty dpkg status file; architectures amd64 + arm64). ``apt-get``/``apt-cache`` run with
  ``APT_CONFIG`` pointing at it, so the machine's own apt setup is never read for sources nor
  changed. Suites: see ``SUITES`` (facts: ../shared/reference/realkernel.md).
- ``debs/``: downloaded packages, only while they are being extracted.
- ``kernels/<package>_<version>/``: a kernel package (and, from 6.19 on, its modules
  package) extracted with ``dpkg-deb -x``.
- ``qemu/<version>/``: qemu-system-arm, -common and -data extracted with ``dpkg-deb -x``.

Extraction goes to a temporary sibling folder that is renamed into place when complete, so a
folder that exists is whole; two processes fetching the same package at once both succeed
(the loser of the rename discards its copy). Every failure is one ``InputError`` line that
names what is missing and the command that installs it.
"""

from __future__ import annotations

import fcntl
import functools
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from memtypes.errors import InputError

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITES: tuple[tuple[str, str], ...] = (
    (MIRROR, "bookworm"), (MIRROR, "bookworm-updates"), (MIRROR, "bookworm-backports"),
    (SECURITY, "bookworm-security"),
    (MIRROR, "trixie"), (MIRROR, "trixie-backports"),
    (MIRROR, "sid"), (MIRROR, "experimental"),
)
DAY_S = 24 * 3600
QEMU_SUITE = "bookworm-backports"   # QEMU 10 built against bookworm's libraries
QEMU_PACKAGES = ("qemu-system-arm", "qemu-system-common", "qemu-system-data")
WHERE = "conform"
Progress = Callable[[str], None]     # receives one line per slow step (update, download...)


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


# ---------------------------------------------------------------------------- cache and APT

def cache_dir() -> Path:
    """The cache folder (created on first use by the functions that write to it)."""
    env = os.environ.get("MEMTYPES_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "memtypes"


def apt_dir() -> Path:
    return cache_dir() / "apt"


def _sources_text() -> str:
    return "".join(f"deb [signed-by={KEYRING}] {uri} {suite} main\n" for uri, suite in SUITES)


def _conf_text(a: Path) -> str:
    etc = a / "etc" / "apt"
    lines = [
        'Dir "/";',
        f'Dir::Etc "{etc}";',
        f'Dir::Etc::sourcelist "{etc}/sources.list";',
        f'Dir::Etc::sourceparts "{etc}/sources.list.d";',
        f'Dir::Etc::preferencesparts "{etc}/preferences.d";',
        f'Dir::Etc::parts "{etc}/apt.conf.d";',
        f'Dir::Etc::trusted "{etc}/trusted.gpg";',
        f'Dir::Etc::trustedparts "{etc}/trusted.gpg.d";',
        f'Dir::State "{a}/state";',
        f'Dir::State::status "{a}/state/status";',
        f'Dir::Cache "{a}/cache";',
        'APT::Architecture "amd64";',
        'APT::Architectures { "amd64"; "arm64"; };',
        'Acquire::Languages "none";',
        # sid's and experimental's Release files on this mirror carry an expired Valid-Until
        'Acquire::Check-Valid-Until "false";',
    ]
    if os.geteuid() == 0:
        lines.append('APT::Sandbox::User "root";')   # the _apt user cannot write our folders
    return "\n".join(lines) + "\n"


def _write_if_changed(p: Path, text: str) -> bool:
    if p.exists() and p.read_text() == text:
        return False
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return True


def ensure_config() -> Path:
    """Create (or bring up to date) the private APT configuration; return apt.conf's path."""
    a = apt_dir()
    try:
        for d in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d",
                  "etc/apt/trusted.gpg.d", "state/lists/partial", "cache/archives/partial"):
            (a / d).mkdir(parents=True, exist_ok=True)
        status = a / "state" / "status"
        if not status.exists():
            status.write_text("")
        _write_if_changed(a / "etc" / "apt" / "sources.list", _sources_text())
        _write_if_changed(a / "apt.conf", _conf_text(a))
    except OSError as e:
        raise InputError(f"cannot write the package cache {a}: {e.strerror}", where=WHERE,
                         expected="a writable folder (set MEMTYPES_CACHE)") from None
    return a / "apt.conf"


@contextmanager
def _locked(name: str, *, shared: bool = False):
    """An advisory lock on cache/.<name>.lock across processes and threads: exclusive
    (index updates, extractions of one package) or shared (queries of the indexes)."""
    p = cache_dir() / f".{name}.lock"
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise InputError(f"{tool} not found: install it with `apt-get install {package}`",
                         where=WHERE)
    return path


def _apt(args: list[str], *, cwd: Path | None = None, timeout: float = 600
         ) -> subprocess.CompletedProcess:
    conf = ensure_config()
    tool = args[0]
    _need(tool, "apt")
    env = dict(os.environ, APT_CONFIG=str(conf), LC_ALL="C")
    try:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InputError(f"`{' '.join(args[:3])} ...` did not finish in {timeout:.0f} s "
                         "(network?)", where=WHERE) from None


def _apt_error(proc: subprocess.CompletedProcess) -> str:
    """The most telling line of a failed apt run."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    for pat in ("Temporary failure resolving", "Could not resolve", "Failed to fetch",
                "Unable to locate package", "Can't find a source", "Version '", "E: "):
        for ln in lines:
            if pat in ln:
                return ln
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _lists_age_s() -> float | None:
    """Seconds since the last successful update, or None when the indexes are incomplete."""
    stamp = apt_dir() / "state" / "updated"
    if not stamp.exists():
        return None
    if stamp.read_text() != _sources_text():
        return None                     # suites changed since
    return max(0.0, time.time() - stamp.stat().st_mtime)


def update(max_age_s: float = DAY_S, *, force: bool = False,
           progress: Progress | None = None) -> str:
    """Refresh the private indexes with ``apt-get update`` when they are older than
    ``max_age_s`` (or missing, or ``force``). Returns "fresh" (nothing done), "updated", or
    "stale: <why>" when the update failed but older complete indexes remain usable; raises
    InputError when it failed and there are no usable indexes."""
    ensure_config()
    with _locked("apt"):
        age = _lists_age_s()
        if not force and age is not None and age < max_age_s:
            return "fresh"
        _say(progress, "updating the Debian indexes (apt-get update, about 60 MB)")
        proc = _apt(["apt-get", "update", "-q"])
        bad = proc.returncode != 0 or re.search(r"^(E:|W: Failed to fetch)", proc.stderr, re.M)
        if not bad:
            stamp = apt_dir() / "state" / "updated"
            stamp.write_text(_sources_text())
            return "updated"
        why = _apt_error(proc)
        if age is not None:
            return f"stale: apt-get update failed ({why}); using indexes {age / 3600:.0f} h old"
        raise InputError(f"apt-get update of the Debian indexes failed: {why}", where=WHERE,
                         expected=f"network access to {MIRROR}")


# ---------------------------------------------------------------------------- Debian versions

def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_part(a: str, b: str) -> int:
    """Compare an upstream version or revision as dpkg does (Debian Policy 5.6.12)."""
    while a or b:
        na = re.match(r"[^\d]*", a).group()
        nb = re.match(r"[^\d]*", b).group()
        a, b = a[len(na):], b[len(nb):]
        for i in range(max(len(na), len(nb))):
            ca = _order(na[i]) if i < len(na) else 0
            cb = _order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        da = re.match(r"\d*", a).group()
        db = re.match(r"\d*", b).group()
        a, b = a[len(da):], b[len(db):]
        ia, ib = int(da or 0), int(db or 0)
        if ia != ib:
            return -1 if ia < ib else 1
    return 0


def debian_version_cmp(a: str, b: str) -> int:
    """-1, 0 or 1 as ``dpkg --compare-versions a lt/eq/gt b``."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), up, rev
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


# ---------------------------------------------------------------------------- kernel index

@dataclass(frozen=True, order=False)
class KernelPkg:
    """One upstream kernel release available from the registry, for arm64 (generic flavour).

    ``version`` is the upstream release ("6.12.118", "7.3-rc7"), ``series`` its first two
    components, ``release`` the kernel's ``uname -r`` ("6.12.118+deb12-arm64"). The Image is
    in ``image_pkg`` at ``image_version`` (the Debian package version); from 6.19 on
    (``split``) the modules are a separate ``modules_pkg``, which the index sometimes lacks
    (``modules_available`` False), and the config, System.map and modules.builtin a separate
    ``base_pkg`` (None where the index lacks it: seen for 6.19 to 7.1). ``alternatives``
    lists other packages ("name=version") that carry the same upstream release (unsigned
    builds, other suites); ``size`` is the download size in bytes."""

    version: str
    series: str
    release: str
    image_pkg: str
    image_version: str
    split: bool
    modules_pkg: str | None
    modules_version: str | None
    modules_available: bool
    base_pkg: str | None = None
    base_version: str | None = None
    size: int = 0
    alternatives: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        return version_key(self.version)

    @property
    def prerelease(self) -> bool:
        return "-rc" in self.version


def version_key(v: str) -> tuple:
    """Sort key of an upstream release: 7.3-rc7 < 7.3 (= 7.3.0) < 7.3.4."""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?", v)
    if not m:
        raise ValueError(v)
    a, b, c, rc = m.groups()
    return (int(a), int(b), int(c or 0), int(rc) if rc else 1 << 30)


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """The RFC 822-style records of ``apt-cache show`` (continuation lines folded in)."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, last = {}, None
        elif line[0] in " \t":
            if last:
                cur[last] += "\n" + line.strip()
        elif ":" in line:
            k, _, v = line.partition(":")
            cur[k.strip()] = v.strip()
            last = k.strip()
    if cur:
        out.append(cur)
    return out


def upstream_of(debian_version: str) -> str | None:
    """The upstream kernel release inside a Debian kernel package version:
    "6.1.192-3" -> "6.1.192", "6.12.118-1~deb12u1" -> "6.12.118", "7.3~rc7-1~exp1" ->
    "7.3-rc7"; None when it does not look like one."""
    v = debian_version.split(":", 1)[-1]
    m = re.match(r"(\d+\.\d+(?:\.\d+)?)(?:~rc(\d+))?(?=[-+~]|$)", v)
    if not m:
        return None
    return m.group(1) + (f"-rc{m.group(2)}" if m.group(2) else "")


_ABI = r"\d+\.\d+(?:\.\d+)?(?:-\d+|\+deb\d+(?:\.\d+)?)?"
RE_IMAGE = re.compile(r"linux-image-(?P<abi>\d+\.\d+\.\d+(?:-\d+|\+deb\d+(?:\.\d+)?))-arm64"
                      r"(?P<unsigned>-unsigned)?")
RE_BINARY = re.compile(rf"linux-binary-(?P<abi>{_ABI})-arm64")
RE_MODULES = re.compile(rf"linux-modules-(?P<abi>{_ABI})-arm64")
RE_BASE = re.compile(rf"linux-base-(?P<abi>{_ABI})-arm64")


def candidate_names(pkgnames: list[str]) -> list[str]:
    """The package names that may hold a generic arm64 kernel (or its modules)."""
    return sorted(n for n in set(pkgnames)
                  if RE_IMAGE.fullmatch(n) or RE_BINARY.fullmatch(n) or RE_MODULES.fullmatch(n)
                  or RE_BASE.fullmatch(n))


def kernels_from_stanzas(stanzas: list[dict[str, str]]) -> list[KernelPkg]:
    """Group ``apt-cache show`` records into one KernelPkg per upstream release.

    Rules: a ``linux-image-<abi>-arm64[-unsigned]`` record with a real Image (it does not
    depend on ``linux-binary-``) is a whole kernel; from 6.19 the Image is in
    ``linux-binary-<abi>-arm64`` and the modules in ``linux-modules-<abi>-arm64`` of the same
    Debian version, and ``linux-image-<abi>-arm64`` is a meta package (skipped). When several
    packages carry one upstream release, the signed one wins over ``-unsigned``, then the
    newest Debian version, then the name; the others are kept as ``alternatives``."""
    recs = [s for s in stanzas if s.get("Architecture", "arm64") == "arm64"
            and "Package" in s and "Version" in s]
    modules: dict[tuple[str, str], dict] = {}
    for s in recs:
        if RE_MODULES.fullmatch(s["Package"]) or RE_BASE.fullmatch(s["Package"]):
            modules[(s["Package"], s["Version"])] = s
    cands: dict[str, list[tuple[int, dict, dict | None, str]]] = {}
    for s in recs:
        name, ver = s["Package"], s["Version"]
        up = upstream_of(s.get("Built-Using", "").partition("(= ")[2].rstrip(")") or ver) \
            or upstream_of(ver)
        if up is None:
            continue
        if m := RE_IMAGE.fullmatch(name):
            if "linux-binary-" in s.get("Depends", ""):
                continue               # 6.19+ meta package
            rank = 1 if m.group("unsigned") else 0
            cands.setdefault(up, []).append((rank, s, (None, None), f"{m.group('abi')}-arm64"))
        elif m := RE_BINARY.fullmatch(name):
            abi = m.group("abi")
            mod = modules.get((f"linux-modules-{abi}-arm64", ver))
            base = modules.get((f"linux-base-{abi}-arm64", ver))
            cands.setdefault(up, []).append((0, s, (mod, base), f"{abi}-arm64"))
    out = []
    for up, lst in cands.items():
        # signed first, then the newest Debian version, then the name
        lst.sort(key=lambda c: c[1]["Package"])
        lst.sort(key=functools.cmp_to_key(lambda a, b: debian_version_cmp(b[1]["Version"],
                                                                           a[1]["Version"])))
        lst.sort(key=lambda c: c[0])
        rank, s, (mod, base), release = lst[0]
        split = RE_BINARY.fullmatch(s["Package"]) is not None
        modname = f"linux-modules-{release[:-len('-arm64')]}-arm64" if split else None
        size = sum(int(x.get("Size", "0") or 0) for x in (s, mod, base) if x)
        try:
            key = version_key(up)
        except ValueError:
            continue
        series = f"{key[0]}.{key[1]}"
        out.append(KernelPkg(
            version=up, series=series, release=release,
            image_pkg=s["Package"], image_version=s["Version"], split=split,
            modules_pkg=modname, modules_version=mod["Version"] if mod else None,
            modules_available=(mod is not None) if split else True,
            base_pkg=base["Package"] if base else None,
            base_version=base["Version"] if base else None, size=size,
            alternatives=tuple(f"{x[1]['Package']}={x[1]['Version']}" for x in lst[1:])))
    out.sort(key=lambda k: k.key)
    return out


def available_kernels(progress: Progress | None = None) -> list[KernelPkg]:
    """Every generic arm64 kernel in the private indexes (updating them first if they are
    missing or older than a day), oldest first."""
    update(progress=progress)
    with _locked("apt", shared=True):
        proc = _apt(["apt-cache", "pkgnames", "linux-"])
        if proc.returncode != 0:
            raise InputError(f"apt-cache pkgnames failed: {_apt_error(proc)}", where=WHERE)
        names = candidate_names(proc.stdout.split())
        if not names:
            raise InputError("the Debian indexes list no arm64 kernels", where=WHERE,
                             expected="indexes of bookworm..experimental (run with a network)")
        stanzas: list[dict[str, str]] = []
        for i in range(0, len(names), 200):
            proc = _apt(["apt-cache", "show"] + [f"{n}:arm64" for n in names[i:i + 200]])
            if proc.returncode not in (0, 100):
                raise InputError(f"apt-cache show failed: {_apt_error(proc)}", where=WHERE)
            stanzas += parse_stanzas(proc.stdout)
    return kernels_from_stanzas(stanzas)


# ---------------------------------------------------------------------------- --kernels specs

RE_SERIES = re.compile(r"\d+\.\d+")
RE_EXACT = re.compile(r"\d+\.\d+\.\d+|\d+\.\d+-rc\d+")


def select(specs: list[str] | str, available: list[KernelPkg] | None = None,
           progress: Progress | None = None) -> list[KernelPkg]:
    """The kernels ``specs`` name (a list, or one comma-separated string): ``default`` (every
    series, its newest point release that has its modules; release candidates only where a
    series has nothing else), a series ``7.2`` (likewise), an exact release ``6.12.117`` or
    ``7.3-rc7``, a range ``6.12.43..6.12.118`` (every release the registry has in it, ends
    included). Result: deduplicated, oldest first. A spec that is malformed or names nothing
    the registry has raises InputError."""
    if isinstance(specs, str):
        specs = [specs]
    items = [p.strip() for s in specs for p in s.split(",") if p.strip()]
    if not items:
        raise InputError("no kernel named", where="--kernels",
                         expected="default, a series (7.2), a release (6.12.117) or a range "
                                  "(6.12.43..6.12.118)")
    avail = available_kernels(progress) if available is None else available
    by_series: dict[str, list[KernelPkg]] = {}
    for k in avail:
        by_series.setdefault(k.series, []).append(k)

    def newest(series: str) -> KernelPkg:
        # the newest final release whose modules the registry has (vfio is a module in every
        # Debian arm64 config: without them the vfio-pci cases cannot run); the newest release
        # when none has them (seen: 6.19.14, 7.0.13, 7.1.13 lack linux-modules-* in the index)
        lst = sorted(by_series[series], key=lambda k: k.key)
        final = [k for k in lst if not k.prerelease] or lst
        with_mods = [k for k in final if k.modules_available]
        return (with_mods or final)[-1]

    have = ", ".join(sorted(by_series, key=lambda s: version_key(s)))
    chosen: dict[str, KernelPkg] = {}
    for it in items:
        if it == "default":
            for s in by_series:
                k = newest(s)
                chosen[k.version] = k
        elif RE_SERIES.fullmatch(it):
            if it not in by_series:
                raise InputError(f"no arm64 kernel of series {it} in the registry",
                                 where="--kernels", expected=f"one of {have}")
            k = newest(it)
            chosen[k.version] = k
        elif RE_EXACT.fullmatch(it):
            hit = [k for k in avail if k.version == it]
            if not hit:
                s = ".".join(it.split("-")[0].split(".")[:2])
                rel = ", ".join(k.version for k in by_series.get(s, [])) or f"series {have}"
                raise InputError(f"no arm64 kernel {it} in the registry", where="--kernels",
                                 expected=f"one of {rel}")
            chosen[it] = hit[0]
        elif ".." in it:
            lo, _, hi = it.partition("..")
            if not (RE_EXACT.fullmatch(lo) and RE_EXACT.fullmatch(hi)):
                raise InputError(f"bad range {it!r}", where="--kernels",
                                 expected="two releases such as 6.12.43..6.12.118")
            klo, khi = version_key(lo), version_key(hi)
            if klo > khi:
                raise InputError(f"empty range {it!r}: {lo} is newer than {hi}",
                                 where="--kernels", expected="LOW..HIGH")
            hit = [k for k in avail if klo <= k.key <= khi]
            if not hit:
                raise InputError(f"no arm64 kernel in {it} in the registry",
                                 where="--kernels", expected=f"series {have}")
            for k in hit:
                chosen[k.version] = k
        else:
            raise InputError(f"bad kernel spec {it!r}", where="--kernels",
                             expected="default, a series (7.2), a release (6.12.117) or a "
                                      "range (6.12.43..6.12.118)")
    return sorted(chosen.values(), key=lambda k: k.key)


# ---------------------------------------------------------------------------- download+extract

@dataclass(frozen=True)
class KernelFiles:
    """An extracted kernel: ``image`` (the arm64 Image/vmlinuz QEMU boots with -kernel),
    ``release`` (uname -r), ``modules_dir`` (lib/modules/<release>, None when the registry
    lacks the modules package), ``config`` (the kernel's .config, None when the registry
    lacks it), ``root`` (the extraction folder)."""

    version: str
    release: str
    image: Path
    modules_dir: Path | None
    root: Path | None = None
    config: Path | None = None


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", s)


def _sweep(folder: Path, prefix: str, *, older_than_s: float) -> None:
    """Remove temporary folders ``prefix*`` in ``folder`` left by a process that was killed
    (older than ``older_than_s``; 0 when the caller holds the lock that guards them)."""
    if not folder.is_dir():
        return
    now = time.time()
    for p in folder.glob(prefix + "*"):
        try:
            if p.is_dir() and now - p.stat().st_mtime >= older_than_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _download(specs: list[str], into: Path) -> list[Path]:
    """``apt-get download`` each "name[:arch]=version" into a fresh folder below ``into``;
    the .deb paths."""
    _need("dpkg-deb", "dpkg")            # before downloading what could not be unpacked
    into.mkdir(parents=True, exist_ok=True)
    _sweep(into, ".dl-", older_than_s=6 * 3600)
    tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=into))
    proc = _apt(["apt-get", "download", "-q"] + specs, cwd=tmp)
    debs = sorted(tmp.glob("*.deb"))
    if proc.returncode != 0 or len(debs) != len(specs):
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"apt-get download {' '.join(specs)} failed: {_apt_error(proc)}",
                         where=WHERE, expected="the package in the registry (try again after "
                                               "the indexes update) and network access")
    return debs


def _extract(debs: list[Path], dest: Path) -> None:
    """``dpkg-deb -x`` every .deb into a temporary sibling of ``dest``, then rename it to
    ``dest`` (if another process got there first, its copy stays and ours is dropped)."""
    dpkg = _need("dpkg-deb", "dpkg")
    _sweep(dest.parent, f".{dest.name}.", older_than_s=0)   # callers hold dest's lock
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for deb in debs:
            proc = subprocess.run([dpkg, "-x", str(deb), str(tmp)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                raise InputError(f"dpkg-deb -x {deb.name} failed: {err}", where=WHERE,
                                 expected="an intact package (it is downloaded again next run)")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def find_kernel_files(root: Path, version: str = "") -> KernelFiles:
    """The Image, release and modules folder inside an extracted kernel package."""
    images = sorted(root.glob("boot/vmlinuz-*")) + sorted(root.glob("usr/lib/modules/*/vmlinuz"))
    if not images:
        raise InputError(f"no kernel Image in {root}", where=WHERE,
                         expected="boot/vmlinuz-* or usr/lib/modules/<release>/vmlinuz")
    image = images[0]
    release = (image.name[len("vmlinuz-"):] if image.name.startswith("vmlinuz-")
               else image.parent.name)
    mods = None
    for d in (root / "usr/lib/modules" / release, root / "lib/modules" / release):
        if (d / "kernel").is_dir():
            mods = d
            break
    config = next((c for c in (root / "boot" / f"config-{release}",
                               root / "usr/lib/modules" / release / "config") if c.is_file()),
                  None)
    return KernelFiles(version=version or release, release=release, image=image,
                       modules_dir=mods, root=root, config=config)


def image_version_string(image: Path) -> str | None:
    """The ``Linux version ...`` banner inside a kernel Image (gzip-compressed or not)."""
    import gzip
    try:
        data = Path(image).read_bytes()
    except OSError:
        return None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None
    m = re.search(rb"Linux version (\d[^\0\n]{0,400})", data)
    return m.group(1).decode(errors="replace") if m else None


def local_kernel(image: Path, modules_dir: Path | None = None) -> KernelFiles:
    """A kernel the user built or fetched (``--kernel-image FILE [--modules DIR]``): the
    release from the Image's version banner, the upstream version from the banner's trailing
    Debian version when present ("... Debian 6.1.192-3"), else from the release."""
    image = Path(image)
    if not image.is_file():
        raise InputError(f"no such kernel image: {image}", where="--kernel-image")
    banner = image_version_string(image)
    if modules_dir is not None and not Path(modules_dir).is_dir():
        raise InputError(f"no such modules folder: {modules_dir}", where="--modules")
    if banner is None:
        if modules_dir is None:
            raise InputError(f"{image} has no 'Linux version' banner", where="--kernel-image",
                             expected="an arm64 Image, plain or gzip-compressed")
        release = Path(modules_dir).name
    else:
        release = banner.split()[0]
    up = None
    if banner:
        m = re.search(r"Debian (\S+)\s*\(\d{4}-\d\d-\d\d\)\s*$", banner) or \
            re.search(r"Debian (\S+)", banner)
        if m:
            up = upstream_of(m.group(1))
    if up is None:
        m = re.match(r"(\d+\.\d+(?:\.\d+)?)(-rc\d+)?", release)
        up = (m.group(1) + (m.group(2) or "")) if m else release
    config = None
    if modules_dir is not None and (Path(modules_dir) / "config").is_file():
        config = Path(modules_dir) / "config"
    return KernelFiles(version=up, release=release, image=image,
                       modules_dir=Path(modules_dir) if modules_dir else None,
                       root=None, config=config)


def fetch_kernel(pkg: KernelPkg, progress: Progress | None = None) -> KernelFiles:
    """Download and extract ``pkg`` (and its modules package when the index has it) into the
    cache; return its files. Idempotent: an extracted kernel is reused without any network."""
    base = cache_dir() / "kernels"
    dest = base / _safe(f"{pkg.image_pkg}_{pkg.image_version}")
    if not dest.is_dir():
        base.mkdir(parents=True, exist_ok=True)
        with _locked(f"kernel-{dest.name}"):
            if not dest.is_dir():
                specs = [f"{pkg.image_pkg}:arm64={pkg.image_version}"]
                if pkg.split and pkg.modules_available and pkg.modules_pkg:
                    specs.append(f"{pkg.modules_pkg}:arm64={pkg.modules_version}")
                if pkg.base_pkg:
                    specs.append(f"{pkg.base_pkg}:arm64={pkg.base_version}")
                _say(progress, f"downloading {pkg.image_pkg}"
                     f"{' and its modules' if len(specs) > 1 else ''} "
                     f"({pkg.size / 1e6:.0f} MB)")
                debs = _download(specs, cache_dir() / "debs")
                try:
                    _say(progress, f"extracting {pkg.image_pkg}")
                    _extract(debs, dest)
                finally:
                    shutil.rmtree(debs[0].parent, ignore_errors=True)
    kf = find_kernel_files(dest, pkg.version)
    if kf.release != pkg.release:
        raise InputError(f"{pkg.image_pkg} holds kernel {kf.release}, not {pkg.release}",
                         where=WHERE)
    return kf


# ---------------------------------------------------------------------------- QEMU

@dataclass(frozen=True)
class QemuFiles:
    """A runnable qemu-system-aarch64: ``binary``, ``datadir`` (for -L; None for a system
    QEMU), ``version`` ("10.0.2"), ``env`` (extra environment: QEMU_MODULE_DIR so an extracted
    QEMU never loads the system QEMU's modules)."""

    binary: Path
    datadir: Path | None
    version: str
    env: dict[str, str] = field(default_factory=dict)


def _qemu_version(binary: Path, env: dict[str, str]) -> str:
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              env=dict(os.environ, **env), timeout=30)
    except OSError as e:
        raise InputError(f"cannot run {binary}: {e.strerror}", where=WHERE) from None
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", proc.stdout)
    if proc.returncode != 0 or not m:
        err = (proc.stderr.strip().splitlines() or ["no version line"])[-1]
        raise InputError(f"{binary} --version failed: {err}", where=WHERE)
    return m.group(1)


def missing_libraries(binary: Path) -> list[str]:
    """Shared libraries ``binary`` needs that the machine lacks (from ``ldd``)."""
    ldd = shutil.which("ldd")
    if not ldd:
        return []
    proc = subprocess.run([ldd, str(binary)], capture_output=True, text=True)
    return sorted({ln.split()[0] for ln in proc.stdout.splitlines() if "not found" in ln})


def package_for_soname(soname: str, depends: str) -> str:
    """The package of a Depends field that ships ``soname`` (libcapstone.so.4 ->
    libcapstone4): the dependency whose name starts with the library's base name."""
    base = soname.split(".so")[0].lower()
    deps = [d.strip().split()[0] for d in re.split(r"[,|]", depends) if d.strip()]
    hits = sorted(d for d in deps if d.lower().startswith(base))
    return hits[0] if hits else base


def qemu_version_in(suite: str, progress: Progress | None = None) -> str:
    """The Debian version of qemu-system-arm that ``suite`` carries (``apt-cache madison``)."""
    update(progress=progress)
    with _locked("apt", shared=True):
        proc = _apt(["apt-cache", "madison", "qemu-system-arm"])
    for ln in proc.stdout.splitlines():
        parts = [p.strip() for p in ln.split("|")]
        if len(parts) >= 3 and re.search(rf"\s{re.escape(suite)}/", " " + parts[2]):
            return parts[1]
    raise InputError(f"the registry has no qemu-system-arm in {suite}", where=WHERE,
                     expected="QEMU 10 from bookworm-backports")


def fetch_qemu(*, system_fallback: bool = False, progress: Progress | None = None
               ) -> QemuFiles:
    """QEMU 10 from bookworm-backports, extracted into the cache (reused when present). With
    ``system_fallback``, a failure to fetch or run it falls back to the machine's own
    ``qemu-system-aarch64`` (``apt-get install qemu-system-arm``)."""
    try:
        return _fetch_qemu(progress)
    except InputError:
        if not system_fallback:
            raise
        sysq = shutil.which("qemu-system-aarch64")
        if not sysq:
            raise InputError("no QEMU: neither QEMU 10 from the registry nor a system "
                             "qemu-system-aarch64 (`apt-get install qemu-system-arm`)",
                             where=WHERE) from None
        return QemuFiles(Path(sysq), None, _qemu_version(Path(sysq), {}), {})


def _fetch_qemu(progress: Progress | None) -> QemuFiles:
    base = cache_dir() / "qemu"
    existing = sorted(p for p in base.glob("*") if p.is_dir() and not p.name.startswith("."))
    if existing:
        root = existing[-1]
    else:
        ver = qemu_version_in(QEMU_SUITE, progress)
        root = base / _safe(ver)
        base.mkdir(parents=True, exist_ok=True)
        with _locked("qemu"):
            if not root.is_dir():
                _say(progress, f"downloading QEMU {ver} from {QEMU_SUITE} (about 13 MB)")
                debs = _download([f"{p}={ver}" for p in QEMU_PACKAGES], cache_dir() / "debs")
                try:
                    _extract(debs, root)
                finally:
                    shutil.rmtree(debs[0].parent, ignore_errors=True)
    binary = root / "usr/bin/qemu-system-aarch64"
    datadir = root / "usr/share/qemu"
    if not binary.exists():
        raise InputError(f"{binary} missing from the extracted QEMU", where=WHERE,
                         expected=f"remove {root} and run again")
    moddirs = sorted(root.glob("usr/lib/*/qemu"))
    env = {"QEMU_MODULE_DIR": str(moddirs[0])} if moddirs else {}
    missing = missing_libraries(binary)
    if missing:
        proc = _apt(["apt-cache", "show", "--no-all-versions", "qemu-system-arm"])
        deps = " ".join(s.get("Depends", "") for s in parse_stanzas(proc.stdout))
        pkgs = sorted({package_for_soname(m, deps) for m in missing})
        raise InputError(f"QEMU needs {', '.join(missing)}: install with "
                         f"`apt-get install {' '.join(pkgs)}`", where=WHERE)
    return QemuFiles(binary, datadir, _qemu_version(binary, env), env)


# ---------------------------------------------------------------------------- modules

def read_module(path: Path) -> bytes:
    """A kernel module's ELF bytes, decompressing .ko.xz (lzma), .ko.gz and .ko.zst (the
    ``zstd`` program: no zstd in Python's standard library)."""
    data = Path(path).read_bytes()
    name = Path(path).name
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        import gzip
        return gzip.decompress(data)
    if name.endswith(".zst"):
        zstd = _need("zstd", "zstd")
        return subprocess.run([zstd, "-dc"], input=data, capture_output=True,
                              check=True).stdout
    return data


def modinfo(elf: bytes) -> dict[str, list[str]]:
    """The key=value strings of a module's ``.modinfo`` section (ELF64 little-endian)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF module")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def sh(i):
        return struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
    stroff = sh(shstrndx)[4]
    out: dict[str, list[str]] = {}
    for i in range(shnum):
        s = sh(i)
        end = elf.index(b"\0", stroff + s[0])
        if elf[stroff + s[0]:end] == b".modinfo":
            for item in elf[s[4]:s[4] + s[5]].split(b"\0"):
                k, eq, v = item.decode(errors="replace").partition("=")
                if eq:
                    out.setdefault(k, []).append(v)
    return out


def _modname(n: str) -> str:
    return n.split(".ko")[0].replace("-", "_")


def modules_closure(modules_dir: Path, names: list[str]) -> list[Path]:
    """The module files to load for ``names`` (and their dependencies, from each module's
    ``depends=``), dependencies first, each once. Names compare with '-' and '_' equal; a
    module built into the kernel (``modules.builtin``) needs no file and is left out; an
    unknown name raises InputError."""
    index: dict[str, Path] = {}
    for p in sorted(Path(modules_dir).rglob("*.ko*")):
        if re.search(r"\.ko(\.xz|\.zst|\.gz)?$", p.name):
            index.setdefault(_modname(p.name), p)
    builtin = set()
    bfile = Path(modules_dir) / "modules.builtin"
    if bfile.exists():
        builtin = {_modname(Path(ln.strip()).name) for ln in bfile.read_text().splitlines()
                   if ln.strip()}
    order: list[Path] = []
    seen: set[str] = set()
    deps_cache: dict[str, list[str]] = {}

    def visit(n: str, chain: tuple[str, ...]):
        n = _modname(n)
        if n in seen:
            return
        if n in chain:
            raise InputError(f"module dependency cycle: {' -> '.join(chain + (n,))}",
                             where=str(modules_dir))
        if n not in index:
            if n in builtin:
                seen.add(n)
                return
            why = "" if bfile.exists() else " (and no modules.builtin to say it is built in)"
            raise InputError(f"no module {n} in {modules_dir}{why}", where=WHERE,
                             expected="a module name of this kernel")
        if n not in deps_cache:
            info = modinfo(read_module(index[n]))
            deps_cache[n] = [d for v in info.get("depends", []) for d in v.split(",") if d]
        for d in deps_cache[n]:
            visit(d, chain + (n,))
        seen.add(n)
        order.append(index[n])

    for n in names:
        visit(n, ())
    return order
