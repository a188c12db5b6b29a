"""``memtypes explain`` end to end through memtypes.cli.main."""

from __future__ import annotations

import json

import pytest

from memtypes.cli import main


def run_json(capsys, *args):
    rc = main(["explain", *args, "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def test_json_keys_usemem_612_vs_617(capsys):
    d = run_json(capsys, "--kernel", "6.12", "--host", "grace", "--backing", "nvgrace-usemem")
    assert set(d) >= {"kernel", "host", "memslot", "fault", "guest", "reasons"}
    assert d["kernel"] == {"version": "6.12", "era": "6.9-6.16", "variant": "mainline", "assumed": None,
                           "note": None}
    assert d["memslot"] == {"result": "ok", "errno": None, "rule": None}
    f = d["fault"]
    assert set(f) >= {"result", "s2", "memattr", "errno", "where", "mte_sanitised", "cmo"}
    assert (f["result"], f["s2"], f["memattr"]) == ("map", "DEVICE", 1)
    assert d["guest"]["Normal-WB"] == "Device-nGnRE"
    assert all(set(r) >= {"rule", "source", "text"} for r in d["reasons"])
    d = run_json(capsys, "--kernel", "6.17", "--host", "grace", "--backing", "nvgrace-usemem")
    assert (d["fault"]["s2"], d["fault"]["memattr"]) == ("NORMAL", 6)
    assert d["guest"]["Device-nGnRE"] == "Normal-WB"
    assert list(d["guest"]) == ["Device-nGnRnE", "Device-nGnRE", "Normal-NC", "Normal-WB", "Tagged"]


def test_memslot_error_and_skipped_fault(capsys):
    d = run_json(capsys, "--kernel", "6.17", "--host", "armv8.0", "--backing", "nvgrace-usemem")
    assert d["memslot"] == {"result": "error", "errno": "-EINVAL", "rule": "P4"}
    assert d["fault"]["result"] == "skipped" and d["guest"] == {}


def test_pabt_and_unverified(capsys):
    d = run_json(capsys, "--kernel", "6.12", "--host", "grace", "--backing", "vfio-pci-bar", "--fault", "exec")
    assert (d["fault"]["result"], d["fault"]["errno"]) == ("pabt", "-ENOEXEC")
    # 6.18-7.1 refuse a guest_memfd slot in an MTE VM (P8, seen by conform on 6.18.5-7.1.13; the first
    # 6.18 release is not verified) ...
    d = run_json(capsys, "--kernel", "6.18", "--host", "armv8.5-mte", "--backing", "guest-memfd", "--vm-mte",
                 "--slot-flags", "gmem_only")
    assert (d["memslot"]["errno"], d["memslot"]["rule"]) == ("-EINVAL", "P8")
    assert any(r.get("unverified") for r in d["reasons"])


def test_gmem_mte_after_the_slot_is_not_sanitised():
    # ... but still grant KVM_CAP_ARM_MTE once the slot exists (seen on 6.18.5-6.18.15): the guest_memfd
    # page is then mapped without its tags sanitised; 7.2 refuses the capability instead
    from memtypes.arch.features import Features
    from memtypes.linux.kvm.eras import kernel
    from memtypes.linux.kvm.explain import explain
    mte = Features(fwb=True, dic=True, mte=True)
    ex = explain(kernel("6.18.15"), mte, "guest-memfd", slot_flags="gmem_only", mte_after_memslot=True)
    assert ex.vm_mte_after == ("ok", None) and ex.fault.s2 == "NORMAL" and ex.fault.mte_sanitised is False
    ex = explain(kernel("7.3"), mte, "guest-memfd", slot_flags="gmem_only", mte_after_memslot=True)
    assert ex.vm_mte_after == ("error", "-EINVAL")


def test_remap_mte(capsys):
    d = run_json(capsys, "--kernel", "6.12", "--host", "armv8.5-mte", "--backing", "anon", "--vm-mte",
                 "--remap", "file")
    assert d["memslot"]["result"] == "ok"
    assert (d["fault"]["result"], d["fault"]["errno"]) == ("error", "-EFAULT")


def test_variant_and_inline_host(capsys):
    d = run_json(capsys, "--kernel", "6.17+mte-rfc-2020", "--host", "fwb=1,dic=1,mte=1", "--backing", "pmem",
                 "--vm-mte")
    assert d["kernel"]["variant"] == "mte-rfc-2020" and d["fault"]["mte_sanitised"] is True


def test_deterministic_json(capsys):
    args = ["--kernel", "6.6", "--host", "armv8.0", "--backing", "anon", "--fault", "exec"]
    main(["explain", *args, "--json"])
    a = capsys.readouterr().out
    main(["explain", *args, "--json"])
    assert capsys.readouterr().out == a


def test_text_output(capsys):
    rc = main(["explain", "--kernel", "6.18", "--host", "armv8.5-mte", "--backing", "guest-memfd", "--vm-mte",
               "--slot-flags", "gmem_only"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "KVM_SET_USER_MEMORY_REGION" in out and "Reasons:" in out and "[UNVERIFIED]" in out
    assert "P8" in out and "-EINVAL" in out
    rc = main(["explain", "--kernel", "6.18", "--host", "armv8.5-mte", "--backing", "guest-memfd",
               "--slot-flags", "gmem_only"])
    assert rc == 0 and "Normal-WB" in capsys.readouterr().out


@pytest.mark.parametrize("args,word", [
    (["--kernel", "4.19", "--host", "grace", "--backing", "anon"], "4.19"),
    (["--kernel", "6.12.x", "--host", "grace", "--backing", "anon"], "6.12.x"),
    (["--kernel", "6.12.-1", "--host", "grace", "--backing", "anon"], "6.12.-1"),
    (["--kernel", "6.12", "--host", "grace", "--backing", "anon", "--hva-align", "3M"], "3M"),
    (["--kernel", "6.12", "--host", "grace", "--backing", "floppy"], "floppy"),
    (["--kernel", "6.12", "--host", "grace", "--backing", "anon", "--remap", "tape"], "tape"),
    (["--kernel", "6.12", "--host", "nope=1", "--backing", "anon"], "nope"),
    (["--kernel", "6.12", "--host", "no-such-host", "--backing", "anon"], "no-such-host"),
    (["--kernel", "6.12+bogus", "--host", "grace", "--backing", "anon"], "bogus"),
    (["--kernel", "6.12", "--host", "grace", "--backing", "anon", "--slot-flags", "turbo"], "turbo"),
    (["--kernel", "6.12", "--host", "grace", "--backing", "anon", "--fault", "jump"], "jump"),
])
def test_bad_input_exit_2(capsys, args, word):
    rc = main(["explain", *args])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0]


def test_guest_table_flags_the_unverified_linux_mair_values(capsys):
    # arch.md 1.4: the usual Linux guest MAIR bytes behind the guest table are UNVERIFIED;
    # explain must say so whenever it shows that table, and not when there is no mapping.
    import json

    from memtypes.cli import main

    assert main(["explain", "--kernel", "6.12", "--host", "grace", "--backing", "vfio-pci-bar",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    mair = [r for r in d["reasons"] if r["rule"] == "linux/mair/usual-s1"]
    assert d["guest"] and mair and mair[0].get("unverified") is True
    assert main(["explain", "--kernel", "6.17", "--host", "armv8.0", "--backing", "nvgrace-usemem",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert not d["guest"] and all(r["rule"] != "linux/mair/usual-s1" for r in d["reasons"])
