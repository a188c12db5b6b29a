"""memtypes probe on saved trees (tests/fixtures/hosts/*) and on the real /dev/kvm."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from memtypes.hosts import probe as P
from memtypes.hosts.profile import from_dict, load_file, resolve

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def run(name: str) -> dict:
    return P.probe(FIX / name)


def cap(d: dict, num: int) -> dict:
    return next(r for r in d["kvm"]["caps"] if r["number"] == num)


def test_probe_ioctl_numbers():
    assert P.KVMIO == 0xAE
    assert P.KVM_GET_API_VERSION == 0xAE00
    assert P.KVM_CREATE_VM == 0xAE01
    assert P.KVM_CHECK_EXTENSION == 0xAE03
    assert {n: v[0] for n, v in P.CAPS.items() if n in (16, 205, 243, 244, 245)} == {
        16: "KVM_CAP_SYNC_MMU", 205: "KVM_CAP_ARM_MTE",
        243: "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED", 244: "KVM_CAP_GUEST_MEMFD_FLAGS",
        245: "KVM_CAP_ARM_SEA_TO_USER"}


@pytest.mark.parametrize("release,want", [("6.1.0-28-amd64", "6.1"), ("6.17.0-1001-nvidia-64k", "6.17"),
                                          ("6.18.44-fc-v657", "6.18"), ("7.1-rc2", "7.1"),
                                          ("garbage", None)])
def test_probe_kernel_version(release, want):
    assert P.kernel_version(release) == want


def test_probe_grace():
    d = run("grace")
    assert d["arch"] == "arm64" and d["kernel"] == "6.17"
    assert d["features"] == {"fwb": 1, "dic": 1, "mte": 0, "mte_perm": 0, "xs": 0, "pkvm": 0}
    assert d["unknown"] == ["mte_perm", "xs"]
    assert "cannot be seen from userspace" in d["evidence"]["fwb"]
    assert "KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED (243) = 1" in d["evidence"]["fwb"]
    assert "lacks 'mte'" in d["evidence"]["mte"]
    assert "lacks kvm-arm.mode=protected" in d["evidence"]["pkvm"]
    assert cap(d, 243)["system"] == "EINVAL" and cap(d, 243)["vm"] == 1
    assert d["kvm"]["api_version"] == 12
    assert d["cpu"]["part"] == "Neoverse V2"
    (gpu,) = d["pci"]
    assert gpu["driver"] == "nvgrace-gpu-vfio-pci" and gpu["vendor"] == "0x10de"
    assert gpu["iommu_group"] == "12" and gpu["class_name"] == "3D controller"
    bars = {b["name"]: b for b in gpu["bars"]}
    assert sorted(bars) == ["BAR0", "BAR2", "BAR4"]
    assert bars["BAR0"]["size"] == 16 << 20 and not bars["BAR0"]["prefetch"] and bars["BAR0"]["64bit"]
    assert bars["BAR4"]["size"] == 1 << 40 and bars["BAR4"]["prefetch"] and bars["BAR4"]["type"] == "mem"
    assert d["iommu_groups"] == {"12": {"type": "DMA", "devices": ["0009:01:00.0"]}}
    prof = from_dict(d, where="x")
    assert prof.features.fwb and prof.features.dic and not prof.features.mte


def test_probe_arm64_without_fwb():
    d = run("arm64-nofwb")
    assert d["kernel"] == "6.17"
    assert d["features"]["fwb"] == 0 and d["features"]["dic"] == 0
    assert "fwb" not in d["unknown"]
    assert "= 0 on a VM fd" in d["evidence"]["fwb"]
    assert d["pci"] == [] and d["iommu_groups"] == {}


def test_probe_arm64_612_fwb_unknown():
    d = run("arm64-6.12")
    assert d["kernel"] == "6.12"
    assert d["features"]["fwb"] == 0 and "fwb" in d["unknown"] and "dic" in d["unknown"]
    assert "6.12 < 6.17" in d["evidence"]["fwb"]
    assert cap(d, 243)["vm"] == 0
    # pKVM read from the kernel command line (this fixture boots kvm-arm.mode=protected)
    assert d["features"]["pkvm"] == 1 and "has kvm-arm.mode=protected" in d["evidence"]["pkvm"]


def test_probe_pkvm_unknown_without_cmdline():
    d = run("arm64-nofwb")
    assert d["features"]["pkvm"] == 0 and "pkvm" in d["unknown"]


def test_probe_x86():
    d = run("x86")
    assert d["arch"] == "x86_64" and d["kernel"] == "6.1" and d["kernel_release"] == "6.1.0-28-amd64"
    assert not any(d["features"].values()) and d["unknown"] == []
    assert all("not applicable" in d["evidence"][k] for k in d["features"])
    assert cap(d, 243)["vm"] == 0 and cap(d, 143)["system"] == 15
    assert d["cpu"]["flags"] == ["clflush", "clflushopt", "clwb", "pat", "ss", "vmx"]
    (nic,) = d["pci"]
    assert nic["driver"] == "i40e" and nic["iommu_group"] is None
    assert [(b["name"], b["type"]) for b in nic["bars"]] == [("BAR0", "mem"), ("BAR2", "io")]


def test_probe_deterministic():
    assert json.dumps(run("grace")) == json.dumps(run("grace"))


def test_probe_missing_kvm_and_unreadable(tmp_path):
    root = tmp_path / "h"
    shutil.copytree(FIX / "arm64-nofwb", root, symlinks=True)
    (root / "dev/kvm.json").unlink()
    d = P.probe(root)
    assert d["kvm"] == {"device": "/dev/kvm", "present": False, "error": "ENOENT"}
    assert "/dev/kvm absent" in d["probe"]["notes"]
    assert "fwb" in d["unknown"]
    (root / "dev/kvm.json").write_text("{not json")
    d = P.probe(root)
    assert d["kvm"]["present"] and "unreadable" in d["kvm"]["error"]
    (root / "dev/kvm.json").write_text('{"open": "EACCES"}')
    d = P.probe(root)
    assert d["kvm"]["error"] == "EACCES" and "/dev/kvm not usable: EACCES" in d["probe"]["notes"]
    (root / "dev/kvm.json").write_text('{"api_version": 12, "create_vm": "EPERM", "system": {"243": "EINVAL"}}')
    d = P.probe(root)
    assert cap(d, 243)["vm"] == "no VM fd" and "fwb" in d["unknown"]


def test_probe_substitute_kvm():
    class Fake:
        def probe(self):
            return {"device": "/dev/kvm", "present": True, "api_version": 12, "create_vm": "ok",
                    "caps": [P._cap_row(243, P.CAPS, "EINVAL", 1)]}
    d = P.probe(FIX / "arm64-nofwb", kvm=Fake())
    assert d["features"]["fwb"] == 1


def test_probe_parse_resource():
    text = ("0x0000000000001000 0x0000000000001fff 0x0000000000040200\n"
            "0x0000000000000000 0x0000000000000000 0x0000000000000000\nbad line\n")
    (r,) = P.parse_resource(text)
    assert r["size"] == 4096 and r["type"] == "mem" and not r["64bit"] and not r["prefetch"]


def _kvm_usable() -> bool:
    if not os.path.exists("/dev/kvm"):
        return False
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _kvm_usable(), reason="/dev/kvm absent or not openable")
def test_probe_real_dev_kvm():
    info = P.KvmProbe().probe()
    assert info["present"] and info["api_version"] == 12
    sync = next(r for r in info["caps"] if r["number"] == 16)
    assert isinstance(sync["system"], int) and sync["system"] >= 1


def test_probe_live_host_loads_back(tmp_path):
    d = P.probe("/")
    f = tmp_path / "live.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    assert resolve(str(f)).arch == d["arch"]
    assert load_file(f).name == d["name"]
