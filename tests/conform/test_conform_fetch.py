"""conform.fetch without network: the private APT configuration, the kernel index parsed
from recorded ``apt-cache`` output, ``--kernels`` specs, Debian version order, the module
closure over synthetic ELF modules."""

from __future__ import annotations

import gzip
import os
import lzma
import struct
import subprocess
import time
from pathlib import Path

import pytest

from memtypes.conform import fetch as F
from memtypes.errors import InputError

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture()
def kernels():
    return F.kernels_from_stanzas(F.parse_stanzas((FIX / "apt-cache-show-kernels.txt")
                                                  .read_text()))


def by_version(ks):
    return {k.version: k for k in ks}


# ---------------------------------------------------------------- cache and APT config

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMTYPES_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert F.cache_dir() == tmp_path / "xdg" / "memtypes"
    monkeypatch.setenv("MEMTYPES_CACHE", str(tmp_path / "mine"))
    assert F.cache_dir() == tmp_path / "mine"


def test_private_apt_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMTYPES_CACHE", str(tmp_path))
    conf = F.ensure_config()
    text = conf.read_text()
    assert f'Dir::State "{tmp_path}/apt/state";' in text
    assert f'Dir::Etc::sourcelist "{tmp_path}/apt/etc/apt/sources.list";' in text
    assert 'APT::Architectures { "amd64"; "arm64"; };' in text
    assert 'Acquire::Check-Valid-Until "false";' in text
    sources = (tmp_path / "apt/etc/apt/sources.list").read_text().splitlines()
    suites = [ln.split()[3] for ln in sources]
    assert suites == ["bookworm", "bookworm-updates", "bookworm-backports", "bookworm-security",
                      "trixie", "trixie-backports", "sid", "experimental"]
    assert all("signed-by=/usr/share/keyrings/debian-archive-keyring.gpg" in ln
               for ln in sources)
    assert (tmp_path / "apt/state/status").read_text() == ""
    before = conf.stat().st_mtime_ns
    F.ensure_config()                       # idempotent: not rewritten
    assert conf.stat().st_mtime_ns == before


def _fake_apt(monkeypatch, rc, stderr="", stdout=""):
    calls = []

    def fake(args, **kw):
        calls.append(args)
        return subprocess.CompletedProcess(args, rc, stdout, stderr)
    monkeypatch.setattr(F, "_apt", fake)
    return calls


def test_update_skips_fresh_indexes_and_reports_failures(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMTYPES_CACHE", str(tmp_path))
    err = "E: Failed to fetch http://deb.debian.org/debian/dists/sid/InRelease  " \
          "Temporary failure resolving 'deb.debian.org'"
    calls = _fake_apt(monkeypatch, 100, stderr=err)
    with pytest.raises(InputError, match="apt-get update of the Debian indexes failed: .*"
                                         "Temporary failure resolving"):
        F.update()
    _fake_apt(monkeypatch, 0)
    assert F.update() == "updated"
    calls = _fake_apt(monkeypatch, 100, stderr=err)
    assert F.update() == "fresh" and calls == []
    # a day later the failure leaves the old indexes in use
    stamp = tmp_path / "apt/state/updated"
    old = time.time() - 2 * F.DAY_S
    os.utime(stamp, (old, old))
    r = F.update()
    assert r.startswith("stale: apt-get update failed") and calls == [["apt-get", "update", "-q"]]


# ---------------------------------------------------------------- index parsing

def test_candidate_names_keep_generic_arm64_only():
    names = (FIX / "apt-cache-pkgnames.txt").read_text().split()
    got = F.candidate_names(names)
    assert "linux-image-6.1.0-57-arm64" in got
    assert "linux-image-6.1.0-57-arm64-unsigned" in got
    assert "linux-binary-7.3.4+deb13-arm64" in got
    assert "linux-modules-7.3-arm64" in got
    for bad in ("-cloud-", "-rt-", "-16k", "-dbg", "amd64"):
        assert not any(bad in n for n in got), bad
    assert "linux-image-6.12-arm64" not in got        # meta package without a release
    assert "linux-modules-arm64" not in got


def test_kernels_from_recorded_apt_cache_show(kernels):
    k = by_version(kernels)
    assert list(k) == ["6.1.192", "6.12.90", "6.12.117", "6.12.118", "6.19.14", "7.2.12",
                       "7.2.13", "7.3-rc7", "7.3.4"]
    # 6.1: the point release is in the package version, not the name; signed and newest
    # Debian revision preferred
    assert k["6.1.192"].image_pkg == "linux-image-6.1.0-57-arm64"
    assert k["6.1.192"].release == "6.1.0-57-arm64"
    assert k["6.1.192"].alternatives == ("linux-image-6.1.0-56-arm64=6.1.192-2",
                                         "linux-image-6.1.0-57-arm64-unsigned=6.1.192-3")
    assert k["6.12.117"].image_pkg == "linux-image-6.12.117+deb13-arm64"   # 6.12.117-1 newer
    assert k["6.12.90"].release == "6.12.90+deb12.1-arm64"
    assert not k["6.12.118"].split and k["6.12.118"].series == "6.12"
    # 6.19+: Image in linux-binary; modules missing from the index are recorded
    s = k["6.19.14"]
    assert (s.split, s.image_pkg, s.modules_available, s.modules_version) == \
        (True, "linux-binary-6.19.14+deb13-arm64", False, None)
    t = k["7.3.4"]
    assert (t.modules_pkg, t.modules_version, t.modules_available) == \
        ("linux-modules-7.3.4+deb13-arm64", "7.3.4-1~bpo13+1", True)
    assert (t.base_pkg, t.base_version) == ("linux-base-7.3.4+deb13-arm64", "7.3.4-1~bpo13+1")
    assert t.size == 12231124 + 86036480 + 4725456   # binary + modules + base
    assert k["7.3-rc7"].prerelease and k["7.3-rc7"].release == "7.3-arm64"


def test_parse_stanzas_folds_continuations():
    recs = F.parse_stanzas("Package: a\nDescription: one\n two\n\n\nPackage: b\nVersion: 1\n")
    assert recs == [{"Package": "a", "Description": "one\ntwo"},
                    {"Package": "b", "Version": "1"}]


@pytest.mark.parametrize("deb,up", [
    ("6.1.192-3", "6.1.192"), ("6.12.118-1~deb12u1", "6.12.118"), ("7.3~rc7-1~exp1", "7.3-rc7"),
    ("1:7.0.13-1~bpo13+1", "7.0.13"), ("foo", None)])
def test_upstream_of(deb, up):
    assert F.upstream_of(deb) == up


@pytest.mark.parametrize("a,b,c", [
    ("6.12.117-1~deb12u1", "6.12.117-1", -1), ("1.0~rc1", "1.0", -1), ("1:1.0", "2.0", 1),
    ("6.1.192-3", "6.1.192-3", 0), ("1.0a", "1.0", 1), ("1.0-1", "1.0-1+b1", -1),
    ("1.2", "1.10", -1), ("1:10.0.2+ds-2+deb13u1~bpo12+1", "1:10.0.13+ds-0+deb13u1", -1)])
def test_debian_version_order(a, b, c):
    assert F.debian_version_cmp(a, b) == c
    assert F.debian_version_cmp(b, a) == -c


# ---------------------------------------------------------------- --kernels

def test_select_forms(kernels):
    v = lambda specs: [k.version for k in F.select(specs, kernels)]  # noqa: E731
    assert v("default") == ["6.1.192", "6.12.118", "6.19.14", "7.2.13", "7.3.4"]
    assert v(["7.3"]) == ["7.3.4"]
    assert v(["6.12.117"]) == ["6.12.117"]
    assert v(["7.3-rc7"]) == ["7.3-rc7"]
    assert v(["6.12.43..6.12.117"]) == ["6.12.90", "6.12.117"]
    assert v(["6.12.118,6.1", "6.12.90..6.12.118"]) == ["6.1.192", "6.12.90", "6.12.117",
                                                         "6.12.118"]


@pytest.mark.parametrize("spec,msg", [
    ("6.13", "--kernels: no arm64 kernel of series 6.13 in the registry"),
    ("6.12.116", "--kernels: no arm64 kernel 6.12.116 in the registry (expected one of "
                 "6.12.90, 6.12.117, 6.12.118)"),
    ("6.12.118..6.12.90", "empty range"),
    ("6.12..6.13", "bad range"),
    ("6.2.1..6.2.9", "no arm64 kernel in 6.2.1..6.2.9"),
    ("latest", "bad kernel spec 'latest'"),
    ("", "no kernel named"),
])
def test_select_errors_are_one_line(kernels, spec, msg):
    with pytest.raises(InputError) as e:
        F.select([spec], kernels)
    assert msg in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- QEMU helpers

def test_qemu_version_from_madison(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMTYPES_CACHE", str(tmp_path))
    monkeypatch.setattr(F, "update", lambda *a, **k: "fresh")
    _fake_apt(monkeypatch, 0, stdout=(FIX / "apt-cache-madison-qemu.txt").read_text())
    assert F.qemu_version_in("bookworm-backports") == "1:10.0.2+ds-2+deb13u1~bpo12+1"
    assert F.qemu_version_in("bookworm") == "1:7.2+dfsg-7+deb12u18+b3"
    with pytest.raises(InputError, match="no qemu-system-arm in bullseye"):
        F.qemu_version_in("bullseye")


def test_package_for_missing_library():
    deps = "libaio1 (>= 0.3.93), libcapstone4 (>= 4), libfdt1 (>= 1.6.1), libfuse3-3 (>= 3.2.3)"
    assert F.package_for_soname("libcapstone.so.4", deps) == "libcapstone4"
    assert F.package_for_soname("libfuse3.so.3", deps) == "libfuse3-3"
    assert F.package_for_soname("libnothere.so.2", deps) == "libnothere"


def test_local_kernel_reads_the_banner(tmp_path):
    banner = (b"Linux version 6.1.0-57-arm64 (debian-kernel@lists.debian.org) (gcc-12) "
              b"#1 SMP Debian 6.1.192-3 (2026-11-26)\n\0")
    img = tmp_path / "vmlinuz"
    img.write_bytes(gzip.compress(b"\0" * 100 + banner + b"\0" * 100))
    k = F.local_kernel(img)
    assert (k.version, k.release, k.modules_dir) == ("6.1.192", "6.1.0-57-arm64", None)
    plain = tmp_path / "Image"
    plain.write_bytes(b"Linux version 7.4.0-rc2-dirty (me@box) #3 SMP\n")
    assert F.local_kernel(plain).version == "7.4.0-rc2"
    with pytest.raises(InputError, match="no such kernel image"):
        F.local_kernel(tmp_path / "nope")


# ---------------------------------------------------------------- modules

def elf_module(modinfo: dict[str, str]) -> bytes:
    """A minimal ELF64 little-endian relocatable with .shstrtab and .modinfo sections."""
    info = b"".join(f"{k}={v}".encode() + b"\0" for k, v in modinfo.items())
    shstr = b"\0.shstrtab\0.modinfo\0"
    ehsize, shentsize = 64, 64
    data = shstr + info
    shoff = ehsize + len(data)
    shoff += -shoff % 8
    hdr = bytearray(b"\x7fELF" + bytes([2, 1, 1]) + bytes(9))
    hdr += struct.pack("<HHIQQQIHHHHHH", 1, 183, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize,
                       3, 1)
    body = bytes(hdr) + data
    body += bytes(shoff - len(body))
    sh = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sh += struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, ehsize, len(shstr), 0, 0, 1, 0)
    sh += struct.pack("<IIQQQQIIQQ", 11, 1, 0, 0, ehsize + len(shstr), len(info), 0, 0, 1, 0)
    return body + sh


def test_modinfo_reads_the_section():
    m = F.modinfo(elf_module({"license": "GPL", "depends": "a,b", "name": "x"}))
    assert m == {"license": ["GPL"], "depends": ["a,b"], "name": ["x"]}


def test_modules_closure_dependency_order(tmp_path):
    d = tmp_path / "lib/modules/7.3.4+deb13-arm64"
    (d / "kernel/drivers/vfio/pci").mkdir(parents=True)
    mods = {"kernel/drivers/vfio/vfio.ko.xz": "iommufd",
            "kernel/drivers/iommu/iommufd/iommufd.ko.xz": "",
            "kernel/drivers/vfio/pci/vfio-pci-core.ko.xz": "vfio,irqbypass",
            "kernel/drivers/vfio/pci/vfio-pci.ko.xz": "vfio-pci-core,vfio",
            "kernel/drivers/vfio/vfio_iommu_type1.ko": "vfio"}
    for rel, deps in mods.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        elf = elf_module({"depends": deps, "name": p.name.split(".")[0]})
        p.write_bytes(lzma.compress(elf) if rel.endswith(".xz") else elf)
    (d / "modules.builtin").write_text("kernel/virt/lib/irqbypass.ko\n")
    got = [p.name for p in F.modules_closure(d, ["vfio_pci", "vfio-iommu-type1"])]
    assert got == ["iommufd.ko.xz", "vfio.ko.xz", "vfio-pci-core.ko.xz", "vfio-pci.ko.xz",
                   "vfio_iommu_type1.ko"]
    assert F.modules_closure(d, ["irqbypass"]) == []
    with pytest.raises(InputError, match="no module nosuch in"):
        F.modules_closure(d, ["nosuch"])


def test_modules_closure_cycle(tmp_path):
    for n, dep in (("a", "b"), ("b", "a")):
        (tmp_path / f"{n}.ko").write_bytes(elf_module({"depends": dep}))
    with pytest.raises(InputError, match="cycle: a -> b -> a"):
        F.modules_closure(tmp_path, ["a"])


# ---------------------------------------------------------------- download and extract

@pytest.fixture()
def fake_registry(monkeypatch, tmp_path):
    """A registry without network: ``apt-get download`` writes a tar (named .deb) of a
    package tree, and ``dpkg-deb -x`` is a script that untars it."""
    import tarfile
    import threading
    monkeypatch.setenv("MEMTYPES_CACHE", str(tmp_path / "cache"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    dpkg = bindir / "dpkg-deb"
    dpkg.write_text('#!/bin/sh\n[ "$1" = -x ] || exit 2\ntar -xf "$2" -C "$3" || '
                    '{ echo "dpkg-deb: error: $2 is not a Debian format archive" >&2; '
                    'exit 2; }\n')
    dpkg.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    trees = {
        "linux-binary-7.3.4+deb13-arm64": {"usr/lib/modules/7.3.4+deb13-arm64/vmlinuz": b"I"},
        "linux-modules-7.3.4+deb13-arm64": {
            "usr/lib/modules/7.3.4+deb13-arm64/kernel/drivers/vfio/vfio.ko.xz": b"M"},
        "linux-base-7.3.4+deb13-arm64": {"usr/lib/modules/7.3.4+deb13-arm64/config": b"C"},
        "linux-image-6.1.0-57-arm64": {"boot/vmlinuz-6.1.0-57-arm64": b"I",
                                       "boot/config-6.1.0-57-arm64": b"C",
                                       "lib/modules/6.1.0-57-arm64/kernel/x.ko": b"M"},
    }
    calls = []
    lock = threading.Lock()

    def fake_apt(args, *, cwd=None, timeout=600):
        with lock:
            calls.append(args)
        if args[:2] != ["apt-get", "download"]:
            return subprocess.CompletedProcess(args, 0, "", "")
        for spec in args[3:]:
            name = spec.split(":")[0].split("=")[0]
            if name not in trees:
                return subprocess.CompletedProcess(args, 100, "",
                                                   f"E: Unable to locate package {name}")
            deb = Path(cwd) / f"{name}_1_arm64.deb"
            if trees[name] == "corrupt":
                deb.write_bytes(b"not a deb")
                continue
            with tarfile.open(deb, "w") as t:
                for rel, data in trees[name].items():
                    src = Path(cwd) / ".src" / rel
                    src.parent.mkdir(parents=True, exist_ok=True)
                    src.write_bytes(data)
                    t.add(src, arcname=rel)
        return subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(F, "_apt", fake_apt)
    return trees, calls


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for d in (cache / "kernels", cache / "debs") if d.is_dir()
                  for p in d.iterdir() if p.name.startswith("."))


def test_fetch_kernel_split_and_whole(fake_registry, kernels, tmp_path):
    trees, calls = fake_registry
    k = by_version(kernels)
    kf = F.fetch_kernel(k["7.3.4"])
    assert kf.release == "7.3.4+deb13-arm64" and kf.image.read_bytes() == b"I"
    assert kf.modules_dir == kf.root / "usr/lib/modules/7.3.4+deb13-arm64"
    assert kf.config.read_bytes() == b"C"
    assert calls[-1][3:] == ["linux-binary-7.3.4+deb13-arm64:arm64=7.3.4-1~bpo13+1",
                             "linux-modules-7.3.4+deb13-arm64:arm64=7.3.4-1~bpo13+1",
                             "linux-base-7.3.4+deb13-arm64:arm64=7.3.4-1~bpo13+1"]
    n = len(calls)
    assert F.fetch_kernel(k["7.3.4"]) == kf and len(calls) == n      # reused, no apt
    old = F.fetch_kernel(k["6.1.192"])
    assert (old.image.name, old.modules_dir.name, old.config.name) == \
        ("vmlinuz-6.1.0-57-arm64", "6.1.0-57-arm64", "config-6.1.0-57-arm64")
    assert _leftovers(tmp_path / "cache") == []
    assert list((tmp_path / "cache/debs").iterdir()) == []         # .debs dropped


def test_fetch_kernel_failures_leave_nothing(fake_registry, kernels, tmp_path):
    trees, calls = fake_registry
    k = by_version(kernels)
    with pytest.raises(InputError, match="Unable to locate package linux-image-6.12.118"):
        F.fetch_kernel(k["6.12.118"])
    trees["linux-image-6.1.0-57-arm64"] = "corrupt"
    with pytest.raises(InputError, match="dpkg-deb -x linux-image-6.1.0-57-arm64_1_arm64.deb "
                                         "failed: dpkg-deb: error: .* is not a Debian"):
        F.fetch_kernel(k["6.1.192"])
    cache = tmp_path / "cache"
    assert _leftovers(cache) == []
    assert [p.name for p in (cache / "kernels").iterdir()] == []


def test_fetch_kernel_twice_in_parallel(fake_registry, kernels):
    from concurrent.futures import ThreadPoolExecutor
    trees, calls = fake_registry
    k = by_version(kernels)["7.3.4"]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda _: F.fetch_kernel(k), range(4)))
    assert all(g == got[0] for g in got)
    assert sum(1 for c in calls if c[:2] == ["apt-get", "download"]) == 1
