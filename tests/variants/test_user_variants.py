"""Variants from the user's own files (--variants), hooks at named decision points, DMA variants
through the same register(), and the two example files under examples/variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memtypes.arch.features import Features
from memtypes.cli import main
from memtypes.linux import userfiles
from memtypes.linux.kvm import kernel

ROOT = Path(__file__).resolve().parents[2]
FWB_NC = str(ROOT / "examples" / "variants" / "fwb_cacheable_uncached.py")
NO_UNPIN = str(ROOT / "examples" / "variants" / "flush_no_unpin.py")
GRACE = Features(fwb=True, dic=True)


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    userfiles.reset()


def run_json(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out


def test_fwb_example_explain_changes_only_fwb_hosts(capsys):
    rc, out = run_json(capsys, "explain", "--variants", FWB_NC, "--kernel", "6.17+fwb-cacheable-uncached",
                       "--host", "grace", "--backing", "vfio-pci-bar", "--json")
    assert rc == 0
    d = json.loads(out.out)
    assert (d["fault"]["s2"], d["fault"]["memattr"]) == ("NORMAL", 6)
    assert any(r["rule"] == "variant/fwb-cacheable-uncached" for r in d["reasons"])
    assert d["variant_files"][0]["path"] == FWB_NC
    assert d["variant_files"][0]["sha256"] == userfiles.file_hash(FWB_NC)
    # no FWB: the hook falls back to the era's choice (Normal-NC, VM_ALLOW_ANY_UNCACHED)
    rc, out = run_json(capsys, "explain", "--variants", FWB_NC, "--kernel", "6.17+fwb-cacheable-uncached",
                       "--host", "armv8.0", "--backing", "vfio-pci-bar", "--json")
    assert json.loads(out.out)["fault"]["s2"] == "NC"
    # the platform MMIO VMA lacks VM_ALLOW_ANY_UNCACHED: Device on a FWB host too
    rc, out = run_json(capsys, "explain", "--variants", FWB_NC, "--kernel", "6.17+fwb-cacheable-uncached",
                       "--host", "grace", "--backing", "vfio-platform-mmio", "--json")
    assert json.loads(out.out)["fault"]["s2"] == "DEVICE"


def test_fwb_example_check_counterexample(capsys, tmp_path):
    out_json = tmp_path / "c.json"
    rc, out = run_json(capsys, "check", "--variants", FWB_NC, "--family", "passthrough",
                       "--kernel", "6.12+fwb-cacheable-uncached", "--property", "mmio-never-cacheable",
                       "--workers", "1", "--json", str(out_json), "--save-traces", str(tmp_path / "tr"))
    assert rc == 0
    doc = json.loads(out_json.read_text())
    assert doc["variant_files"] == [{"path": FWB_NC, "sha256": userfiles.file_hash(FWB_NC)}]
    (r,) = [x for x in doc["results"] if x["property"] == "mmio-never-cacheable"]
    assert (r["kernel"], r["variant"], r["verdict"]) == ("6.9", "fwb-cacheable-uncached", "violated")
    steps = [(s["actor"], s["action"], s["args"].get("backing")) for s in r["trace"]]
    assert steps[0] == ("vmm", "create_memslot", "vfio-pci-bar")
    assert "map NORMAL" in r["trace"][-1]["describe"]
    # the counterexample explains itself: the host and its features, the variant's file, and
    # the violating step's reasons with their sources, every stage-1 choice's outcome
    ctx = r["context"]
    assert ctx["init"].startswith("host ") and "(FWB, DIC" in ctx["init"]
    assert ctx["variant_source"] == FWB_NC
    last = r["trace"][-1]["describe"]
    assert "why: variant/fwb-cacheable-uncached (example patch under review" in last
    assert "other guest stage-1 choices: " in last and "Normal-NC -> Normal-WB" in last
    # replay the saved trace: it records the file and reloads it
    (trace,) = (tmp_path / "tr").glob("*.yaml")
    assert "variant_files" in trace.read_text()
    userfiles.reset()
    rc, out = run_json(capsys, "run", str(trace), "--json")
    assert rc == 0 and json.loads(out.out)["violated"]["mmio-never-cacheable"] == 2


def test_fwb_example_mainline_holds(capsys, tmp_path):
    out_json = tmp_path / "c.json"
    rc, _ = run_json(capsys, "check", "--variants", FWB_NC, "--family", "passthrough", "--kernel", "6.12",
                     "--variant", "mainline", "--property", "mmio-never-cacheable", "--workers", "1",
                     "--json", str(out_json))
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["verdict"] == "holds"


def test_trace_replay_missing_or_changed_file(capsys, tmp_path):
    user = tmp_path / "mine.py"
    user.write_text(Path(FWB_NC).read_text().replace("fwb-cacheable-uncached", "mine"))
    rc, _ = run_json(capsys, "check", "--variants", str(user), "--family", "passthrough",
                     "--kernel", "6.17+mine", "--property", "mmio-never-cacheable", "--workers", "1",
                     "--save-traces", str(tmp_path / "tr"))
    (trace,) = (tmp_path / "tr").glob("*.yaml")
    userfiles.reset()
    user.write_text(user.read_text() + "\n# edited\n")
    rc, out = run_json(capsys, "run", str(trace))
    assert rc == 0 and "changed since the trace was saved" in out.err
    userfiles.reset()
    user.unlink()
    rc, out = run_json(capsys, "run", str(trace))
    assert rc == 2 and "mine.py recorded in this trace is missing" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_flush_no_unpin_example_violates_and_reviewed_holds(capsys, tmp_path):
    out_json = tmp_path / "c.json"
    rc, _ = run_json(capsys, "check", "--variants", NO_UNPIN, "--family", "dma-type1", "--kernel", "6.9",
                     "--property", "host-consistent-after-unpin", "--workers", "1", "--json", str(out_json))
    res = {r["variant"]: r for r in json.loads(out_json.read_text())["results"]}
    assert res["flush-no-unpin"]["verdict"] == "violated"
    assert res["vfio-flush-reviewed"]["verdict"] == "holds"
    tr = res["flush-no-unpin"]["trace"]
    # the counterexample: the guest caches the page, a non-snooping device writes memory under
    # that clean line, and the unpin (detach/unmap/release) leaves it there without a flush
    acts = [s["action"] for s in tr]
    assert "cpu_read" in acts and "dev_write" in acts
    assert acts.index("cpu_read") < acts.index("dev_write")
    assert tr[-1]["action"] in ("unmap_dma", "detach", "release") and tr[-1]["describe"] == "no flush"
    ctx = res["flush-no-unpin"]["context"]
    assert "gnc (non-coherent)" in ctx["init"] and "F@point(pages)" in ctx["legend"]
    assert ctx["variant_source"] == NO_UNPIN
    assert not any("F@unpin" in s.get("describe", "") for s in tr)


def test_flush_no_unpin_on_iommufd_in_worker_processes(capsys, tmp_path):
    """Two workers (spawned processes): they load the file themselves."""
    out_json = tmp_path / "c.json"
    rc, _ = run_json(capsys, "check", "--variants", NO_UNPIN, "--family", "dma-iommufd", "--variant",
                     "flush-no-unpin", "--property", "host-consistent-after-unpin", "--workers", "2",
                     "--json", str(out_json))
    doc = json.loads(out_json.read_text())
    assert doc["stats"]["workers"] == 2
    assert {(r["kernel"], r["verdict"]) for r in doc["results"]} == {("6.2", "violated"), ("6.9", "violated"),
                                                                     ("7.2", "violated")}


def test_safe_dma_hook_holds(capsys, tmp_path):
    """A hook that flushes at every unpin point (whatever the base decides): the safe one holds."""
    f = tmp_path / "always.py"
    f.write_text(
        "from memtypes.linux.dma.variants import DmaVariant\n"
        "from memtypes.linux.kvm.variants import register\n"
        "def always(env, pages, default):\n"
        "    return True\n"
        "register(DmaVariant('unpin-always', base='vfio-flush-reviewed', hooks={'flush_unpin': always},\n"
        "                    backends=('type1',)))\n")
    out_json = tmp_path / "c.json"
    rc, _ = run_json(capsys, "check", "--variants", str(f), "--family", "dma-type1", "--kernel", "6.9",
                     "--variant", "unpin-always", "--workers", "1", "--json", str(out_json))
    res = {r["property"]: r["verdict"] for r in json.loads(out_json.read_text())["results"]}
    assert res["host-consistent-after-unpin"] == "holds"
    assert res["device-reads-owner-data"] == "holds"


BAD = {
    "import nosuchmodule_h17\n": "ModuleNotFoundError",
    "x = 1\n": "registers no variant",
    "def f(:\n": "SyntaxError",
    "raise RuntimeError('boom')\n": "RuntimeError: boom (line 1)",
    "from memtypes.linux.kvm.variants import Variant, register\n"
    "register(Variant('mte-rfc-2020', ('6.9',), {}))\n": "already a built-in KVM variant",
    "from memtypes.linux.kvm.variants import Variant, register\n"
    "register(Variant('x1', ('6.10',), {}))\n": "unknown era(s) 6.10",
    "from memtypes.linux.kvm.variants import Variant, register\n"
    "register(Variant('x1', ('6.9',), {'nope': True}))\n": "unknown Rules fields ['nope']",
    "from memtypes.linux.kvm.variants import Variant, register\n"
    "register(Variant('x1', ('6.9',), hooks={'s2_atr': print}))\n": "unknown hook 's2_atr'",
    "from memtypes.linux.kvm.variants import Variant, register\n"
    "def h(rules, host): pass\n"
    "register(Variant('x1', ('6.9',), hooks={'s2_attr': h}))\n": "hook s2_attr(rules, host) has the wrong signature",
    "from memtypes.linux.kvm.variants import DmaVariant, register\n"
    "register(DmaVariant('y', changes={'unpinn': False}))\n": "unknown flush point(s) unpinn",
    "from memtypes.linux.kvm.variants import DmaVariant, register\n"
    "register(DmaVariant('vfio-flush-v1'))\n": "already a built-in DMA variant",
}


@pytest.mark.parametrize("text", list(BAD))
def test_bad_variant_files_one_line_exit_2(capsys, tmp_path, text):
    f = tmp_path / "bad.py"
    f.write_text(text)
    rc, out = run_json(capsys, "explain", "--variants", str(f), "--kernel", "6.12", "--host", "grace",
                       "--backing", "anon")
    assert rc == 2 and out.out == ""
    line, = out.err.strip().splitlines()
    assert str(f) in line and BAD[text] in line
    # nothing half-registered: a good file loads afterwards, the bad file's names are free
    assert "x1" not in __import__("memtypes.linux.kvm.variants", fromlist=["VARIANTS"]).VARIANTS


def test_two_files_same_name_refused(capsys, tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    text = Path(FWB_NC).read_text()
    a.write_text(text)
    b.write_text(text)
    rc, out = run_json(capsys, "explain", "--variants", str(a), "--variants", str(b), "--kernel", "6.12",
                       "--host", "grace", "--backing", "anon")
    assert rc == 2 and f"a KVM variant from {a}" in out.err


def test_hooks_memslot_capability_device_mte(tmp_path):
    from memtypes.linux.kvm import KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED as CAP243, check_extension
    from memtypes.linux.kvm.explain import explain
    f = tmp_path / "hooks.py"
    f.write_text(
        "from memtypes.arch.reason import Reason\n"
        "from memtypes.linux.kvm.variants import Variant, register\n"
        "W = Reason('variant/h', 'test', 'hooked')\n"
        "def p2(rules, host, vm, change, slot, vma, rs, default):\n"
        "    rs.append(W)\n"
        "    return None                    # PFNMAP + dirty logging allowed\n"
        "def cap(rules, host, cap, vm_fd, default):\n"
        "    return (7, None, W) if cap == 243 else default()\n"
        "def dev(rules, host, slot, vma, rs, default):\n"
        "    d = default()\n"
        "    return (d[0], False, None) if vma.phys.pfn_valid else d   # pfn_valid memory never forced\n"
        "def mte(rules, vma, rs, default):\n"
        "    rs.append(W)\n"
        "    return None\n"
        "register(Variant('hooked', ('6.9', '6.17'), hooks={'memslot_P2': p2, 'check_extension': cap,\n"
        "                 'device_test': dev, 'mte_fault_check': mte}, why=W))\n")
    userfiles.load_files([str(f)])
    k = kernel("6.17+hooked")
    assert k.rules.hook("memslot_P2") is not None and kernel("6.17").rules.hooks == ()
    e = explain(k, GRACE, "vfio-pci-bar", slot_flags="log_dirty")
    assert e.memslot.ok and any(r.rule == "variant/h" for r in e.reasons)
    assert not explain(kernel("6.17"), GRACE, "vfio-pci-bar", slot_flags="log_dirty").memslot.ok
    assert check_extension(k.rules, GRACE, CAP243)[0] == 7
    assert check_extension(kernel("6.17").rules, GRACE, CAP243)[0] == 1
    # MTE fault check replaced: a shmem VMA without VM_MTE_ALLOWED remapped over an MTE slot is tagged
    mte_host = Features(fwb=True, dic=True, mte=True)
    base = explain(kernel("6.12"), mte_host, "anon", vm_mte=True, remap="devmem-ram")
    hooked = explain(kernel("6.12+hooked"), mte_host, "anon", vm_mte=True, remap="devmem-ram")
    assert base.fault.errno == "-EFAULT" and hooked.fault.result == "map" and hooked.fault.tagged


def test_entry_point_group(monkeypatch, tmp_path):
    import importlib.metadata as md
    import sys
    mod = tmp_path / "pkgvar_h17.py"
    mod.write_text(Path(NO_UNPIN).read_text().replace("flush-no-unpin", "pkg-no-unpin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = md.EntryPoint("pkg", "pkgvar_h17", userfiles.GROUP)
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == userfiles.GROUP else [])
    monkeypatch.setattr(userfiles, "_EP_DONE", [False])
    userfiles.load_entry_points()
    from memtypes.linux.dma import variants as dv
    assert dv.DMA_VARIANTS["pkg-no-unpin"].source.startswith("entry point pkg")
    sys.modules.pop("pkgvar_h17", None)


def test_counterexample_shows_the_stage1_choice_that_exhibits(capsys, tmp_path):
    """6.9-6.16 map nvgrace usemem Device while the host maps it cacheable: the access shown is
    the guest asking Normal-WB and getting Device, not the first choice tried (Device-nGnRnE),
    and the saved trace still replays to the violation."""
    out_json = tmp_path / "c.json"
    rc, _ = run_json(capsys, "check", "--family", "passthrough", "--kernel", "6.12", "--variant", "mainline",
                     "--property", "no-cacheability-mismatch", "--workers", "1", "--json", str(out_json),
                     "--save-traces", str(tmp_path / "tr"))
    (r,) = json.loads(out_json.read_text())["results"]
    last = r["trace"][-1]
    assert last["args"]["s1"] == "Normal-WB" and "guest Normal-WB -> Device-nGnRE" in last["describe"]
    assert "stage1" in r["context"]
    (trace,) = (tmp_path / "tr").glob("*.yaml")
    rc, out = run_json(capsys, "run", str(trace), "--json")
    assert json.loads(out.out)["violated"] == {"no-cacheability-mismatch": 2}


def test_entry_point_that_fails_is_one_line(monkeypatch, capsys, tmp_path):
    import importlib.metadata as md
    ep = md.EntryPoint("broken", "no_such_module_h17:register", userfiles.GROUP)
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == userfiles.GROUP else [])
    monkeypatch.setattr(userfiles, "_EP_DONE", [False])
    rc, out = run_json(capsys, "explain", "--kernel", "6.12", "--host", "grace", "--backing", "anon")
    assert rc == 2
    (line,) = out.err.strip().splitlines()
    assert "memtypes.variants entry point broken" in line and "ModuleNotFoundError" in line
