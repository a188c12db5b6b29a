"""memtypes diff: kernels, releases and variants over the explain space, rules, and verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memtypes.check.diff import _boxes, diff
from memtypes.cli import main
from memtypes.linux import userfiles

ROOT = Path(__file__).resolve().parents[2]
FWB_NC = str(ROOT / "examples" / "variants" / "fwb_cacheable_uncached.py")
NO_UNPIN = str(ROOT / "examples" / "variants" / "flush_no_unpin.py")


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    userfiles.reset()


@pytest.fixture(scope="module")
def d616_617():
    return diff("6.16", "6.17")


def test_cacheable_pfnmap_on_grace_in_a_few_lines(d616_617):
    usemem = [c for c in d616_617.changes if c.vma == "nvgrace-usemem" and not c.remap]
    grace = [c for c in usemem if any("grace" in w for w in c.where)]
    # the headline: DEVICE -> NORMAL on FWB+DIC hosts (Grace), read/write faults, one range
    (main_change,) = [c for c in grace if c.before.startswith("DEVICE") and c.after.startswith("NORMAL")]
    assert main_change.where == ["FWB DIC hosts (e.g. armv8.5-mte, grace), any slot flags, MTE off or enabled "
                                 "before the slot, read fault, write fault",
                                 "FWB DIC no MTE hosts (e.g. grace), any slot flags, MTE VM or not, read fault, "
                                 "write fault"]
    # with MTE enabled after the slot on an MTE host, the fault-time MTE check refuses the cacheable
    # PFNMAP page instead (usemem has no VM_MTE_ALLOWED)
    (efault,) = [c for c in usemem if c.after == "-EFAULT at user_mem_abort" and c.before.startswith("DEVICE")]
    assert "MTE enabled" in efault.where[0] and "FWB DIC MTE hosts" in efault.where[0]
    assert "kvm/user_mem_abort/cacheable-pfnmap" in " ".join(main_change.reasons)
    # and the refusal without FWB+DIC (P4), one range
    (p4,) = [c for c in usemem if c.after == "memslot -EINVAL (P4)"]
    assert p4.where[0].startswith("hosts without FWB+DIC")
    assert len(usemem) <= 5     # P4, DEVICE->NORMAL and its exec twin, and the two MTE-after refusals
    text = "\n".join(line for c in usemem for line in c.lines())
    assert len(text.splitlines()) <= 12   # 5 changes; the MTE-after refusals are the 4 lines added by the order


def test_rules_and_reasons(d616_617):
    sw = {s["switch"]: (s["before"], s["after"]) for s in d616_617.rules["switches"]}
    assert sw["device_test"] == ("map_memory", "pfnmap_map_memory")
    assert sw["cacheable_pfnmap"] == (False, True)
    assert [r["rule"] for r in d616_617.rules["reasons"]] == ["era/6.17/cacheable-pfnmap"]


def test_unchanged_backings_not_listed(d616_617):
    assert not [c for c in d616_617.changes if c.vma in ("anon", "vfio-pci-bar", "gicv2-gicv")]


def test_boxes_cover_exactly():
    pts = {(h, f) for h in range(3) for f in range(2)} - {(2, 1)}
    boxes = _boxes(pts, 2)
    cover = {(h, f) for hs, fs in boxes for h in hs for f in fs}
    assert cover == pts
    # a don't-care cell lets one product cover it all
    assert len(_boxes(pts, 2, {(2, 1)})) == 1


def test_variant_diff_fwb_example(capsys):
    rc = main(["diff", "6.12", "6.12+fwb-cacheable-uncached", "--variants", FWB_NC, "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert d["rules"]["hooks"][0]["hook"] == "s2_attr" and d["rules"]["switches"] == []
    direct = {c["vma"]: c for c in d["changes"] if not c["remap"]}
    assert set(direct) == {"vfio-pci-bar", "vfio-pci-cdev-bar", "nvgrace-resmem", "mixedmap-uncached"}
    bar = direct["vfio-pci-bar"]
    assert (bar["before"], bar["after"]) == ("NC (MemAttr 0x5)", "NORMAL (MemAttr 0x6)")
    assert bar["where"] == ["FWB hosts (e.g. armv8.5-mte, grace), any slot flags, MTE VM or not, any fault"]
    assert d["variant_files"][0]["sha256"] == userfiles.file_hash(FWB_NC)


def test_dma_variant_diff_check(capsys, tmp_path):
    page = tmp_path / "d.html"
    rc = main(["diff", "6.9+vfio-flush-reviewed", "6.9+flush-no-unpin", "--variants", NO_UNPIN,
               "--check", "--html", str(page)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "flush points off: unpin" in out
    assert "dma-type1: host-consistent-after-unpin: holds (6.9+vfio-flush-reviewed) -> violated" in out
    assert "dma-iommufd: host-consistent-after-unpin: holds" in out
    assert "0 change, in 0 group(s)" in out           # the KVM side is the same
    assert page.read_text().startswith("<!DOCTYPE html>") and "host-consistent-after-unpin" in page.read_text()


def test_kvm_variant_diff_check_verdicts(capsys):
    rc = main(["diff", "6.17", "6.17+fwb-cacheable-uncached", "--variants", FWB_NC, "--check", "--json"])
    d = json.loads(capsys.readouterr().out)
    ch = {(c["family"], c["property"]): c for c in d["verdicts"]["changes"]}
    c = ch[("passthrough", "mmio-never-cacheable")]
    assert (c["before"]["verdict"], c["after"]["verdict"]) == ("holds", "violated")
    steps = c["counterexample"]["trace"]
    assert steps[0]["args"]["backing"] == "vfio-pci-bar" and "map NORMAL" in steps[-1]["describe"]
    assert "dma-type1 models 6.17 as era 6.9" in d["verdicts"]["notes"]


@pytest.mark.parametrize("argv,msg", [
    (["diff", "6.9", "6.9"], "are the same kernel"),
    (["diff", "6.9", "6.9+bogus"], "unknown kernel variant 'bogus'"),
    (["diff", "6.9", "6.12.x"], "not a kernel version"),
])
def test_diff_bad_input(capsys, argv, msg):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
