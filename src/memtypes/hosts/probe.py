"""``memtypes probe``: read a live host (or a saved tree) into a host profile, changing nothing.

Pure reading functions take a ``root`` path (``/`` for the live host, a fixture directory in
tests).  The only device access is :class:`KvmProbe` (``/dev/kvm`` ioctls, read-only:
KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, and a scratch KVM_CREATE_VM fd closed at once).
Under a non-``/`` root the real device is never opened: ``ROOT/dev/kvm.json`` stands in::

    {"api_version": 12,            # or "EACCES" / omitted
     "open": "EACCES",             # optional: opening /dev/kvm fails with this errno name
     "create_vm": "ok",            # or an errno name (no VM fd then)
     "system": {"16": 1, "243": "EINVAL"},   # KVM_CHECK_EXTENSION on /dev/kvm
     "vm": {"243": 1}}                       # KVM_CHECK_EXTENSION on the VM fd
    # a capability not listed answers 0, as the kernel does for an unknown capability

Profile additions (all extra keys; :func:`memtypes.hosts.profile.from_dict` keeps them):
``unknown`` (features that could not be determined: their value in ``features`` is a
placeholder 0), ``kernel_release``, ``cpu``, ``kvm``, ``devices``, ``pci``, ``iommu_groups``,
``probe`` (root and notes).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from memtypes.arch.features import Features
from memtypes.errors import InputError
from memtypes.hosts.profile import HostProfile, from_dict

# --- ioctl numbers (include/uapi/linux/kvm.h; _IO(type, nr) = (type << 8) | nr) -------------
KVMIO = 0xAE


def _IO(type_: int, nr: int) -> int:  # noqa: N802 - kernel macro name
    return (type_ << 8) | nr


KVM_GET_API_VERSION = _IO(KVMIO, 0x00)   # 0xAE00
KVM_CREATE_VM = _IO(KVMIO, 0x01)         # 0xAE01
KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)   # 0xAE03

# number -> (name, scope); scope says where the answer is meaningful.
CAPS: dict[int, tuple[str, str]] = {
    16: ("KVM_CAP_SYNC_MMU", "system"),
    143: ("KVM_CAP_X86_DISABLE_EXITS", "system"),
    205: ("KVM_CAP_ARM_MTE", "system"),
    234: ("KVM_CAP_GUEST_MEMFD", "vm"),
    235: ("KVM_CAP_VM_TYPES", "system"),
    243: ("KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED", "vm"),
    244: ("KVM_CAP_GUEST_MEMFD_FLAGS", "vm"),
    245: ("KVM_CAP_ARM_SEA_TO_USER", "system"),
}
CAP_CACHEABLE_PFNMAP = 243
CAP_ARM_MTE = 205

IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x00100000

FWB_NOT_VISIBLE = ("FEAT_S2FWB (ID_AA64MMFR2_EL1.FWB) cannot be seen from userspace; inferred "
                   "from KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) = FWB && DIC on a VM fd "
                   "when the kernel is >= 6.17")
DIC_NOT_VISIBLE = ("CTR_EL0.DIC is readable only with a native `mrs` (not from Python) and "
                   "sysfs cpu0/cache lists levels and sizes, not DIC; inferred from "
                   "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) = FWB && DIC on a VM fd when "
                   "the kernel is >= 6.17")

_ARM_PARTS = {  # (implementer, part) -> name, for display only
    (0x41, 0xD08): "Cortex-A72", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse N1",
    (0x41, 0xD40): "Neoverse V1", (0x41, 0xD49): "Neoverse N2", (0x41, 0xD4F): "Neoverse V2",
    (0x41, 0xD84): "Neoverse V3", (0x41, 0xD8E): "Neoverse N3",
}
_PCI_CLASSES = {0x0100: "SCSI", 0x0106: "SATA", 0x0108: "NVMe", 0x0200: "Ethernet",
                0x0207: "InfiniBand", 0x0300: "VGA", 0x0302: "3D controller", 0x0600: "host bridge",
                0x0604: "PCI bridge", 0x1200: "accelerator"}
X86_FLAGS = ("clflush", "clflushopt", "clwb", "pat", "ss", "svm", "vmx")


def _errname(e: int) -> str:
    return errno.errorcode.get(e, f"E{e}")


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel.lstrip("/")).read_text()
    except (OSError, UnicodeDecodeError):
        return None


# --- KVM ---------------------------------------------------------------------------------

class KvmProbe:
    """The real ``/dev/kvm``: read-only ioctls; a scratch VM fd is closed immediately."""

    def __init__(self, path: str = "/dev/kvm") -> None:
        self.path = path

    def probe(self, caps: dict[int, tuple[str, str]] = CAPS) -> dict[str, Any]:
        import fcntl

        out: dict[str, Any] = {"device": "/dev/kvm"}
        if not os.path.exists(self.path):
            out.update(present=False, error="ENOENT")
            return out
        out["present"] = True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            out["error"] = _errname(e.errno or 0)
            return out

        def ask(f: int, req: int, arg: int = 0) -> int | str:
            try:
                return fcntl.ioctl(f, req, arg)
            except OSError as e:
                return _errname(e.errno or 0)

        try:
            out["api_version"] = ask(fd, KVM_GET_API_VERSION)
            vm = ask(fd, KVM_CREATE_VM, 0)
            out["create_vm"] = "ok" if isinstance(vm, int) else vm
            try:
                rows = []
                for num in sorted(caps):
                    rows.append(_cap_row(num, caps, ask(fd, KVM_CHECK_EXTENSION, num),
                                         ask(vm, KVM_CHECK_EXTENSION, num)
                                         if isinstance(vm, int) else None))
                out["caps"] = rows
            finally:
                if isinstance(vm, int):
                    os.close(vm)
        finally:
            os.close(fd)
        return out


class CannedKvm:
    """``ROOT/dev/kvm.json`` standing in for ``/dev/kvm`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def probe(self, caps: dict[int, tuple[str, str]] = CAPS) -> dict[str, Any]:
        out: dict[str, Any] = {"device": "/dev/kvm"}
        if not self.path.exists():
            out.update(present=False, error="ENOENT")
            return out
        out["present"] = True
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as e:
            out["error"] = f"unreadable {self.path.name}: {e}"
            return out
        if data.get("open"):
            out["error"] = str(data["open"])
            return out
        out["api_version"] = data.get("api_version", "ENOTTY")
        cv = str(data.get("create_vm", "ok"))
        out["create_vm"] = cv
        system = {str(k): v for k, v in (data.get("system") or {}).items()}
        vm = {str(k): v for k, v in (data.get("vm") or {}).items()}
        out["caps"] = [_cap_row(n, caps, system.get(str(n), 0),
                                vm.get(str(n), 0) if cv == "ok" else None)
                       for n in sorted(caps)]
        return out


def _cap_row(num: int, caps: dict[int, tuple[str, str]], sysv: Any, vmv: Any) -> dict[str, Any]:
    name, scope = caps.get(num, (f"cap {num}", "system"))
    return {"number": num, "name": name, "scope": scope, "system": sysv,
            "vm": vmv if vmv is not None else "no VM fd"}


def cap_value(kvm: dict[str, Any], num: int, where: str) -> Any:
    for row in kvm.get("caps", []):
        if row["number"] == num:
            return row[where]
    return None


# --- CPU and kernel ----------------------------------------------------------------------

def read_cpuinfo(root: Path) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (key -> value); empty if unreadable."""
    text = _read(root, "proc/cpuinfo") or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip(), v.strip())
    return out


def read_arch(root: Path, cpuinfo: dict[str, str], live: bool) -> tuple[str, str]:
    """(profile arch, evidence)."""
    machine = platform.machine() if live else (_read(root, "proc/sys/kernel/arch") or "").strip()
    src = "uname machine" if live else "proc/sys/kernel/arch"
    if not machine:
        if "CPU implementer" in cpuinfo or "Features" in cpuinfo:
            machine, src = "aarch64", "/proc/cpuinfo (CPU implementer)"
        elif "vendor_id" in cpuinfo or "flags" in cpuinfo:
            machine, src = "x86_64", "/proc/cpuinfo (vendor_id/flags)"
    arch = {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64", "amd64": "x86_64"}.get(machine)
    if arch is None:
        raise InputError(f"unsupported or unknown architecture '{machine or '?'}'",
                         where=str(root), expected="an arm64 or x86_64 host")
    return arch, f"{src} = {machine}"


def kernel_version(release: str) -> str | None:
    """``6.1.0-28-amd64`` -> ``6.1``; ``6.18.44-fc`` -> ``6.18``; None if not a version."""
    m = re.match(r"^v?(\d+)\.(\d+)", release.strip())
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else None


def read_kernel(root: Path, live: bool) -> tuple[str | None, str]:
    rel = (_read(root, "proc/sys/kernel/osrelease") or "").strip()
    if not rel and live:
        rel = platform.release()
    return (kernel_version(rel) if rel else None), rel


def _midr(root: Path, reg: str) -> str | None:
    v = _read(root, f"sys/devices/system/cpu/cpu0/regs/identification/{reg}")
    return v.strip() if v else None


def _getauxval_hwcaps() -> dict[str, str]:  # pragma: no cover - arm64 only
    try:
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        libc.getauxval.argtypes = [ctypes.c_ulong]
        return {"AT_HWCAP": hex(libc.getauxval(16)), "AT_HWCAP2": hex(libc.getauxval(26))}
    except (OSError, AttributeError):
        return {}


def _ver_ge(v: str | None, major: int, minor: int) -> bool:
    if not v:
        return False
    a, b = (int(x) for x in v.split("."))
    return (a, b) >= (major, minor)


def cpu_features(arch: str, cpuinfo: dict[str, str], kernel: str | None, kvm: dict[str, Any],
                 root: Path, live: bool) -> tuple[dict[str, int], dict[str, str], list[str],
                                                  dict[str, Any]]:
    """(features, evidence, unknown, cpu section)."""
    feats = {n: 0 for n in Features.names()}
    ev: dict[str, str] = {}
    unknown: list[str] = []
    cpu: dict[str, Any] = {}
    if arch == "x86_64":
        flags = set(cpuinfo.get("flags", "").split())
        cpu["model"] = cpuinfo.get("model name", "")
        cpu["vendor"] = cpuinfo.get("vendor_id", "")
        cpu["flags"] = sorted(f for f in X86_FLAGS if f in flags)
        for n in feats:
            ev[n] = "not applicable: x86_64 host (Arm feature)"
        return feats, ev, unknown, cpu

    hw = sorted(set(cpuinfo.get("Features", "").split()))
    cpu["hwcaps"] = hw
    for reg in ("midr_el1", "revidr_el1"):
        v = _midr(root, reg)
        cpu[reg] = v if v else "unreadable"
    midr = cpu["midr_el1"]
    if midr != "unreadable":
        try:
            m = int(midr, 16)
            impl, part = (m >> 24) & 0xFF, (m >> 4) & 0xFFF
            cpu["part"] = _ARM_PARTS.get((impl, part), f"implementer {impl:#x} part {part:#x}")
        except ValueError:
            pass
    if live:
        cpu["auxv"] = _getauxval_hwcaps()

    # MTE: HWCAP2_MTE ("mte") means FEAT_MTE2 usable by the kernel and exposed.
    mte_cap = cap_value(kvm, CAP_ARM_MTE, "system")
    if not cpuinfo:
        unknown.append("mte")
        ev["mte"] = "unknown: /proc/cpuinfo unreadable"
    else:
        feats["mte"] = int("mte" in hw)
        ev["mte"] = (f"/proc/cpuinfo Features {'has' if 'mte' in hw else 'lacks'} 'mte' "
                     f"(HWCAP2_MTE, FEAT_MTE2)"
                     + (", 'mte3'" if "mte3" in hw else "")
                     + (f"; KVM_CAP_ARM_MTE (205) on /dev/kvm = {mte_cap}"
                        if mte_cap is not None else ""))

    # FWB and DIC: only through cap 243 on a VM fd, kernel >= 6.17.
    pf = cap_value(kvm, CAP_CACHEABLE_PFNMAP, "vm")
    if _ver_ge(kernel, 6, 17) and isinstance(pf, int) and not isinstance(pf, bool):
        if pf:
            feats["fwb"] = feats["dic"] = 1
            tail = "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) = 1 on a VM fd: FWB && DIC"
        else:
            tail = ("KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) = 0 on a VM fd: not (FWB && "
                    "DIC); which one is missing cannot be told from userspace, both recorded 0")
        ev["fwb"] = f"{FWB_NOT_VISIBLE}; kernel {kernel}: {tail}"
        ev["dic"] = f"{DIC_NOT_VISIBLE}; kernel {kernel}: {tail}"
    else:
        why = (f"kernel {kernel} < 6.17 (cap 243 unknown to it)" if kernel and not
               _ver_ge(kernel, 6, 17) else f"cap 243 on a VM fd = {pf}")
        for n, txt in (("fwb", FWB_NOT_VISIBLE), ("dic", DIC_NOT_VISIBLE)):
            unknown.append(n)
            ev[n] = f"unknown (recorded 0): {txt}; here {why}"
    for n, what in (("mte_perm", "FEAT_MTE_PERM"), ("xs", "FEAT_XS")):
        unknown.append(n)
        ev[n] = f"unknown (recorded 0): {what} has no hwcap; not visible from userspace"
    # pKVM: the kernel command line asks for it (arch/arm64/kvm/arm.c early_kvm_mode_cfg(),
    # "kvm-arm.mode=protected"); whether KVM then really runs protected is in dmesg only
    cmdline = _read(root, "/proc/cmdline")
    if cmdline is None:
        unknown.append("pkvm")
        ev["pkvm"] = "unknown (recorded 0): /proc/cmdline unreadable"
    else:
        feats["pkvm"] = int("kvm-arm.mode=protected" in cmdline.split())
        ev["pkvm"] = ("/proc/cmdline " + ("has" if feats["pkvm"] else "lacks") + " kvm-arm.mode=protected "
                      "(arch/arm64/kvm/arm.c early_kvm_mode_cfg())")
    return feats, ev, sorted(unknown), cpu


# --- PCI and IOMMU -----------------------------------------------------------------------

def _bar_name(i: int) -> str:
    return f"BAR{i}" if i < 6 else ("ROM" if i == 6 else f"resource{i}")


def parse_resource(text: str) -> list[dict[str, Any]]:
    """Lines ``start end flags`` (hex) of a sysfs PCI ``resource`` file; unused ones dropped."""
    out = []
    for i, line in enumerate(text.splitlines()):
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            start, end, flags = (int(p, 16) for p in parts[:3])
        except ValueError:
            continue
        if start == 0 and end == 0:
            continue
        kind = "mem" if flags & IORESOURCE_MEM else ("io" if flags & IORESOURCE_IO else "other")
        out.append({"index": i, "name": _bar_name(i), "start": f"{start:#x}",
                    "size": end - start + 1, "flags": f"{flags:#x}", "type": kind,
                    "prefetch": bool(flags & IORESOURCE_PREFETCH),
                    "64bit": bool(flags & IORESOURCE_MEM_64)})
    return out


def _link_base(p: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(p))
    except OSError:
        return None


def read_pci(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    base = root / "sys/bus/pci/devices"
    notes: list[str] = []
    if not base.is_dir():
        return [], [f"{base}: absent"]
    devs = []
    for d in sorted(base.iterdir(), key=lambda p: p.name):
        def f(name: str) -> str | None:
            try:
                return (d / name).read_text().strip()
            except (OSError, UnicodeDecodeError):
                return None
        cls = f("class")
        entry: dict[str, Any] = {"address": d.name, "vendor": f("vendor"), "device": f("device"),
                                 "class": cls}
        try:
            entry["class_name"] = _PCI_CLASSES.get(int(cls, 16) >> 8, "") if cls else ""
        except ValueError:
            entry["class_name"] = ""
        entry["driver"] = _link_base(d / "driver")
        entry["iommu_group"] = _link_base(d / "iommu_group")
        res = f("resource")
        if res is None:
            notes.append(f"{d.name}: resource unreadable")
        entry["bars"] = parse_resource(res or "")
        devs.append(entry)
    return devs, notes


def read_iommu_groups(root: Path) -> dict[str, dict[str, Any]]:
    base = root / "sys/kernel/iommu_groups"
    if not base.is_dir():
        return {}
    groups = sorted((g for g in base.iterdir() if g.name.isdigit()), key=lambda g: int(g.name))
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        devs = sorted(p.name for p in (g / "devices").iterdir()) if (g / "devices").is_dir() else []
        t = _read(g, "type")
        out[g.name] = {"type": t.strip() if t else None, "devices": devs}
    return out


# --- the whole probe ---------------------------------------------------------------------

def probe(root: str | Path = "/", kvm: Any = None) -> dict[str, Any]:
    """Read the host under ``root`` into a profile dict (the format of hosts.profile)."""
    rootp = Path(root)
    live = rootp.resolve() == Path("/")
    if not rootp.is_dir():
        raise InputError("not a directory", where=str(root), field="--root",
                         expected="a directory holding proc/, sys/, dev/")
    notes: list[str] = []
    cpuinfo = read_cpuinfo(rootp)
    if not cpuinfo:
        notes.append("/proc/cpuinfo unreadable or empty")
    arch, arch_ev = read_arch(rootp, cpuinfo, live)
    kernel, release = read_kernel(rootp, live)
    if not release:
        notes.append("kernel release unreadable")
    if kvm is None:
        kvm = KvmProbe() if live else CannedKvm(rootp / "dev/kvm.json")
    kvm_info = kvm.probe()
    if not kvm_info.get("present"):
        notes.append("/dev/kvm absent")
    elif kvm_info.get("error"):
        notes.append(f"/dev/kvm not usable: {kvm_info['error']}")
    feats, ev, unknown, cpu = cpu_features(arch, cpuinfo, kernel, kvm_info, rootp, live)
    ev = {"arch": arch_ev, **ev}
    pci, pci_notes = read_pci(rootp)
    notes += pci_notes
    host = (_read(rootp, "proc/sys/kernel/hostname") or "").strip() or "host"
    d: dict[str, Any] = {
        "name": f"probed-{host}",
        "description": f"probed by memtypes probe ({'live host' if live else 'tree ' + str(root)})",
        "arch": arch,
        "features": feats,
    }
    if kernel:
        d["kernel"] = kernel
    d["evidence"] = dict(sorted(ev.items()))
    d["unknown"] = unknown
    d["kernel_release"] = release or None
    d["cpu"] = cpu
    d["kvm"] = kvm_info
    d["devices"] = {p: (rootp / p.lstrip("/")).exists() if not (p == "/dev/kvm" and not live)
                    else kvm_info.get("present", False)
                    for p in ("/dev/kvm", "/dev/vfio/vfio", "/dev/iommu")}
    d["pci"] = pci
    d["iommu_groups"] = read_iommu_groups(rootp)
    d["probe"] = {"root": str(root), "notes": notes}
    return d


def to_profile(d: dict[str, Any], where: str = "probe") -> HostProfile:
    return from_dict(d, where=where)
