"""memtypes.check.migrate: the cases of the cacheable-PFNMAP thread (seeds/001) and MTE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memtypes.check import migrate as mig
from memtypes.check.migrate import load_vm, migrate, vm_from_dict
from memtypes.errors import InputError
from memtypes.hosts.profile import resolve

VMS = Path(__file__).resolve().parent.parent / "fixtures" / "vms"


def run(vm: str, a: str, b: str, ka: str = "6.17", kb: str = "6.17", **kw):
    return migrate(load_vm(VMS / f"{vm}.yaml"), resolve(a), resolve(b), ka, kb, **kw)


def test_usemem_fwb_to_nonfwb_refused_at_cap_check_or_memslot_never_late():
    r = run("usemem-only", "grace", "armv8.0")
    f = r.forward
    assert f.started
    assert f.with_checks.verdict == "refused" and f.with_checks.stage == "capability-check"
    assert f.with_checks.taken == ("cacheable-pfnmap-cap",)
    assert f.without_checks.verdict == "refused"
    assert (f.without_checks.stage, f.without_checks.errno, f.without_checks.rule) == ("memslot", "-EINVAL", "P4")
    assert f.verdict() == "refused-early"
    rules = {x.rule for x in f.reasons}
    assert "migrate/cap243-purpose" in rules and "migrate/device-both-ways" in rules
    # back: it never started on armv8.0
    assert not r.back.started
    assert r.back.verdict() == "never-started"
    assert r.back.source.stage == "memslot" and r.back.source.rule == "P4"


def test_usemem_616_to_617_runs_but_changes_device_to_normal():
    r = run("usemem-only", "grace", "grace", "6.16", "6.17")
    f = r.forward
    assert f.with_checks.runs and f.without_checks.runs
    assert f.verdict() == "migrates-with-memtype-change"
    s2 = [c for c in f.changes if c.kind == "stage-2"]
    assert [(c.region, c.before, c.after) for c in s2] == [("gpu-usemem", "DEVICE", "NORMAL")]
    assert "migrate/usemem-6.17" in {x.rule for x in f.reasons}
    # the guest's Normal-WB mapping goes from Device-nGnRE to Normal-WB
    g = {c.s1: (c.before, c.after) for c in f.changes if c.kind == "guest"}
    assert g["Normal-WB"] == ("Device-nGnRE", "Normal-WB")
    # back to 6.16: cap 243 is unknown there (0): the careful VMM refuses; without: NORMAL -> DEVICE
    b = r.back
    assert b.with_checks.stage == "capability-check"
    assert b.without_checks.runs
    assert [(c.before, c.after) for c in b.changes if c.kind == "stage-2"] == [("NORMAL", "DEVICE")]


def test_mixedmap_cacheable_on_nonfwb_fails_only_after_resume():
    r = run("mixedmap", "grace", "armv8.0")
    f = r.forward
    assert f.without_checks.verdict == "fails-after-resume"
    assert f.without_checks.stage == "fault" and f.without_checks.errno == "-EFAULT"
    assert f.without_checks.rule == "kvm/user_mem_abort/cacheable-pfnmap-efault"
    # memslot creation passed (P4 only checks VM_PFNMAP)
    ms = [s for s in f.without_checks.steps if s.stage == "memslot"]
    assert all(s.result == "ok" for s in ms)
    assert f.verdict() == "fails-after-resume"
    assert f.with_checks.stage == "capability-check"
    rules = {x.rule for x in f.reasons}
    assert {"migrate/p4-pfnmap-only", "migrate/cap-mandatory", "migrate/memslot-courtesy"} <= rules


def test_mixedmap_before_617_is_device_everywhere():
    r = run("mixedmap", "grace", "armv8.0", "6.16", "6.16")
    f = r.forward
    assert f.without_checks.runs
    assert [(a.s2, b.s2) for a, b in f.regions][1] == ("DEVICE", "DEVICE")


def test_mte_vm_to_host_without_mte():
    r = run("mte", "armv8.5-mte", "grace")
    f = r.forward
    assert f.with_checks.stage == "capability-check" and f.with_checks.rule == "cap 205 = 0"
    assert f.without_checks.stage == "enable-cap" and f.without_checks.errno == "-EINVAL"
    assert f.verdict() == "refused-early"
    assert not r.back.started
    assert "migrate/mte/qemu-blocker" in {x.rule for x in f.reasons}


def test_mte_vm_between_mte_hosts_restores_tags():
    r = run("mte", "armv8.5-mte", "armv8.5-mte-nofwb", "6.12", "6.12")
    f = r.forward
    assert f.with_checks.runs and f.without_checks.runs
    tags = [s for s in f.without_checks.steps if s.stage == "restore-tags"]
    assert tags and tags[0].result == "ok"
    assert "migrate/mte/tags-before-logging" in {x.rule for x in tags[0].reasons}
    assert not [c for c in f.changes if c.kind == "stage-2"]


def test_plain_ram_vm_migrates_both_ways():
    r = run("plain", "grace", "armv8.0")
    for d in (r.forward, r.back):
        assert d.verdict() == "migrates"
        assert d.with_checks.runs and d.without_checks.runs
        assert not [c for c in d.changes if c.kind == "stage-2"]
    # RAM with a guest Normal-NC mapping: NC on armv8.0, forced WB on grace (no cap covers it)
    g = [c for c in r.forward.changes if c.kind == "guest" and c.s1 == "Normal-NC"]
    assert g and g[0].region == "ram" and (g[0].before, g[0].after) == ("Normal-WB", "Normal-NC")
    assert g[0].unverified
    assert "migrate/ram-fwb-guest-nc" in {x.rule for x in r.forward.reasons}
    # the vfio BAR is NC on both hosts
    bar = [(a.s2, b.s2) for a, b in r.forward.regions if a.backing == "vfio-pci-bar"]
    assert bar == [("NC", "NC")]
    assert "migrate/nc-consistent" in {x.rule for x in r.forward.reasons}


def test_gpu_vm_nvgrace_absent_before_69():
    r = run("gpu-usemem", "grace", "grace", "6.9", "6.8")
    assert r.forward.without_checks.stage == "device"
    assert r.back.verdict() == "never-started"


def test_vmm_checks_override_and_default_kernel():
    vm = load_vm(VMS / "usemem-only.yaml")
    r = migrate(vm, resolve("grace"), resolve("armv8.0"), vmm_checks=())
    assert r.kernel_src.rules.era == "7.2" and r.kernel_dst.rules.era == "7.2"   # the newest: 7.3
    assert r.forward.with_checks.taken == ()
    assert r.forward.with_checks.stage == "memslot"


def test_variant_kernels():
    r = run("mixedmap", "grace", "armv8.0", "6.17+cpfn-memslot-flag", "6.17+cpfn-memslot-flag")
    # without the memslot flag the region is forced non-cacheable as before 6.17
    assert r.forward.without_checks.runs


def test_json_is_deterministic_and_complete():
    a = json.dumps(run("gpu-usemem", "grace", "armv8.0").as_dict())
    b = json.dumps(run("gpu-usemem", "grace", "armv8.0").as_dict())
    assert a == b
    d = json.loads(a)
    assert set(d) == {"vm", "from", "to", "directions", "context"}
    fwd = d["directions"][0]
    assert {"verdict", "summary", "source", "with_checks", "without_checks", "regions",
            "memtype_changes", "reasons"} <= set(fwd)


def test_x86_host_rejected():
    with pytest.raises(InputError):
        run("plain", "grace", "x86-64")


# --- VM file format ---------------------------------------------------------------------------------
def test_vm_defaults_and_names():
    vm = vm_from_dict({"devices": ["vfio-pci-bar", "vfio-pci-bar"]})
    assert [(r.name, r.backing) for r in vm.regions] == [("ram", "anon"), ("vfio-pci-bar", "vfio-pci-bar"),
                                                         ("vfio-pci-bar-2", "vfio-pci-bar")]
    assert vm.vmm_checks == mig.CHECKS and vm.mte is False


def test_bad_backing_names_file_and_line():
    with pytest.raises(InputError) as e:
        load_vm(VMS / "bad-backing.yaml")
    msg = e.value.one_line()
    assert "bad-backing.yaml:7" in msg and "devices[1].backing" in msg and "vfio-pcie-bar" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text,line,field", [
    ("name: x\nmemroy: anon\n", 2, "memroy"),
    ("mte: maybe\n", 1, "mte"),
    ("vmm_checks: [cacheable-pfnmap-cap, fwb-cap]\n", 1, "vmm_checks"),
    ("devices:\n  - {name: a, backing: anon, colour: red}\n", 2, "devices[0].colour"),
    ("devices:\n  - name: a\n", 2, "devices[0].backing"),
    ("memory: {backing: anon, slot_flags: bogus}\n", 1, "memory.slot_flags"),
    ("devices: nope\n", 1, "devices"),
])
def test_bad_fields(tmp_path, text, line, field):
    p = tmp_path / "vm.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_vm(p)
    assert e.value.line == line and e.value.field == field


def test_not_yaml_and_missing(tmp_path):
    p = tmp_path / "vm.yaml"
    p.write_text("devices: [a\n")
    with pytest.raises(InputError) as e:
        load_vm(p)
    assert "not valid YAML" in str(e.value)
    with pytest.raises(InputError):
        load_vm(tmp_path / "none.yaml")
    p.write_text("- a\n")
    with pytest.raises(InputError):
        load_vm(p)


def test_conservative_refusal_before_617():
    r = run("usemem-only", "grace", "grace", "6.16", "6.16")
    assert r.forward.with_checks.stage == "capability-check"
    assert r.forward.without_checks.runs and r.forward.conservative
    assert "migrate/vmm-check/cap243-unknown" in {x.rule for s in r.forward.with_checks.steps for x in s.reasons}
