"""The comparison of real kernels' observations with the model, on observation files recorded
from real runs of the agent (``memtypes conform --save-observations``) under QEMU 10.0.2:
Debian's 6.1.192, 6.12.118, 6.18.15, 7.1.7, 7.1.8 and 7.3.4 arm64 kernels on ``-cpu max``
(FWB, DIC, MTE, VHE), 6.1.192 and 6.12.118 on ``-cpu cortex-a57`` (none of those, nVHE) and
7.3.4 on ``neoverse-n1`` (none of those, VHE)."""

import gzip
import json
from pathlib import Path

import pytest

from memtypes.cli import main
from memtypes.conform import run as conform_run
from memtypes.conform.compare import (
    AGREE, MISMATCH, NOT_MODELLED, NOT_OBSERVABLE, compare, host_features, observations_by_case, parse_lines,
)
from memtypes.conform.cases import Case
from memtypes.linux.kvm.eras import kernel

OBS = Path(__file__).parent / "fixtures" / "observations"
FILES = sorted(OBS.glob("*.obs.gz"))


def _lines(name: str) -> list[str]:
    return gzip.decompress((OBS / name).read_bytes()).decode().splitlines()


def _rows(res):
    return {(r.case, r.key): r for r in res.comparison.rows}


def test_fixtures_present():
    assert {f.name for f in FILES} >= {"6.1.192-max.obs.gz", "6.12.118-max.obs.gz",
                                       "6.12.118-cortex-a57.obs.gz", "6.18.15-max.obs.gz",
                                       "7.1.7-max.obs.gz", "7.1.8-max.obs.gz", "7.3.4-max.obs.gz"}


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_the_model_agrees_with_every_recorded_kernel(path):
    """Zero mismatches and nothing unobservable on what real kernels did (the CI runs the same
    comparison live, --strict, on every series of the registry)."""
    res = conform_run.replay(path)
    bad = [(r.case, r.key, r.observed, r.expected) for r in res.comparison.rows
           if r.status in (MISMATCH, NOT_OBSERVABLE)]
    assert not bad
    c = res.comparison.counts()
    assert c[AGREE] > 150 and c[NOT_MODELLED] <= 2


def test_a_stable_backport_located_by_two_releases():
    """7.1.7 grants KVM_CAP_ARM_MTE after a guest_memfd slot, 7.1.8 refuses it: the model has the
    backport at 7.1.8 (eras.BACKPORTS), and each file agrees with its own release only."""
    key = ("mte-after/guest-memfd/read", "enable_cap:after-memslot")
    old = _rows(conform_run.replay(OBS / "7.1.7-max.obs.gz"))[key]
    new = _rows(conform_run.replay(OBS / "7.1.8-max.obs.gz"))[key]
    assert (old.status, old.observed) == (AGREE, {"errno": ""})
    assert (new.status, new.observed) == (AGREE, {"errno": "EINVAL"})
    swapped = _rows(conform_run.replay(OBS / "7.1.8-max.obs.gz", kernel="7.1.7"))[key]
    assert swapped.status == MISMATCH


def test_host_facts_come_from_the_agent():
    mx = host_features(parse_lines(_lines("6.12.118-max.obs.gz")))
    assert (mx.features.fwb, mx.features.dic, mx.features.mte, mx.mode) == (True, True, True, "vhe")
    assert mx.release == "6.12.118+deb12-arm64"
    a57 = host_features(parse_lines(_lines("6.12.118-cortex-a57.obs.gz")))
    assert (a57.features.fwb, a57.features.dic, a57.features.mte, a57.mode) == (False, False, False, "nvhe")


def test_what_6_12_118_does_on_max():
    rows = _rows(conform_run.replay(OBS / "6.12.118-max.obs.gz"))
    bar = rows[("vfio-pci-bar/read", "walk")]
    # vfio-pci sets VM_ALLOW_ANY_UNCACHED (6.9+): Normal-NC MemAttr 0b0101, no exec, a PMD block
    assert bar.status == AGREE and bar.observed["memattr"] == 5 and bar.observed["size"] == "PMD"
    assert bar.observed["x"] is False
    anon = rows[("anon-private/read", "walk")]
    assert anon.status == AGREE and anon.observed["memattr"] == 6 and anon.observed["x"] is True  # FWB, DIC
    assert rows[("anon-shared/read", "walk")].observed["size"] == "PAGE"      # shmem: no THP by default
    assert rows[("vfio-pci-bar/exec", "run:access")].observed == {"outcome": "exception", "errno": "", "ec": 0x21}
    assert rows[("hole/read", "run:access")].observed["errno"] == "EFAULT"
    assert rows[("readonly/anon-private/write", "run:access")].observed["outcome"] == "mmio"
    assert rows[("log_dirty/vfio-pci-bar/read", "memslot")].observed == {"errno": "EINVAL"}
    assert rows[("mte-cap-order", "enable_cap:after-vcpu")].observed == {"errno": "EINVAL"}
    assert rows[("mte-pretag/anon-private/read", "copy_tags:from-guest")].observed["nonzero"] == 4
    assert rows[("mte-before/vfio-pci-bar/read", "memslot")].observed == {"errno": "EINVAL"}
    for r in rows.values():
        if r.status == AGREE:
            assert all(r.observed.get(k) == v for k, v in r.expected.items())
            assert r.reasons, r.case


def test_nvhe_without_fwb_maps_ram_0xf_without_exec():
    rows = _rows(conform_run.replay(OBS / "6.12.118-cortex-a57.obs.gz"))
    w = rows[("anon-private/read", "walk")]
    assert w.status == AGREE and w.observed["memattr"] == 0xF and w.observed["x"] is False


def test_a_changed_observation_is_a_mismatch():
    lines = _lines("6.12.118-max.obs.gz")
    head = json.loads(lines[0][2:])["conform"]
    cases = [Case(**conform_run.cases_mod.from_agent(d)) for d in head["cases"]]
    bent = [ln.replace('"memattr": 5', '"memattr": 1') for ln in lines[1:]]
    cmp = compare(kernel("6.12.118"), cases, parse_lines(bent))
    bad = [r for r in cmp.rows if r.status == MISMATCH]
    assert bad and all(r.key == "walk" and "vfio" in r.case for r in bad)
    assert bad[0].observed["memattr"] == 1 and bad[0].expected["memattr"] == 5


def test_missing_steps_and_unknown_backings():
    k = kernel("6.12.118")
    case = Case(id="anon-private/read", backing="anon-private", access="read", walk=True)
    started = ['@@{"case": "anon-private/read", "obs": "start", "kind": "slot"}',
               '@@{"case": "anon-private/read", "obs": "memslot", "ret": 0, "errno": ""}']
    by = {(r.key, r.status) for r in compare(k, [case], parse_lines(started)).rows}
    assert ("memslot", AGREE) in by and ("run:access", MISMATCH) in by and ("walk", NOT_OBSERVABLE) in by
    never = compare(k, [case], parse_lines([]))
    assert {r.status for r in never.rows} == {NOT_OBSERVABLE}
    odd = Case(id="x", backing="no-such-backing", access="read")
    assert [r.status for r in compare(k, [odd], []).rows] == [NOT_MODELLED]


def test_observation_keys():
    by = observations_by_case(parse_lines(_lines("6.18.15-max.obs.gz")))
    gm = by["guest-memfd/read"]
    assert gm["memslot"] == {"errno": ""} and gm["run:access"]["outcome"] == "done"
    assert by["caps"]["cap:244"]["vm"] == 3     # GUEST_MEMFD_FLAG_MMAP | INIT_SHARED


# --- the command line --------------------------------------------------------------------------------
def test_cli_replay_json_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    f = str(OBS / "6.12.118-max.obs.gz")
    assert main(["conform", "--replay", f, "--json", str(a)]) == 0
    assert main(["conform", "--replay", f, "--json", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    t = doc["targets"][0]
    assert t["kernel"] == "6.12.118" and t["cpu"] == "max" and t["host"]["features"]["fwb"] == 1
    assert t["counts"]["agree"] > 100
    assert "6.12.118 max:" in capsys.readouterr().out


def test_cli_strict_fails_on_a_mismatch(tmp_path):
    lines = _lines("6.12.118-max.obs.gz")
    bent = tmp_path / "bent.obs"
    bent.write_text("\n".join([lines[0]] + [ln.replace('"memattr": 5', '"memattr": 1') for ln in lines[1:]]))
    assert main(["conform", "--replay", str(bent)]) == 0
    assert main(["conform", "--replay", str(bent), "--strict"]) == 1
    html = tmp_path / "r.html"
    assert main(["conform", "--replay", str(bent), "--html", str(html)]) == 0
    assert "mismatch" in html.read_text() and "vfio-pci-bar/read" in html.read_text()


@pytest.mark.parametrize("argv", [
    ["conform", "--qemu", "--live"],
    ["conform", "--jobs", "0"],
    ["conform", "--timeout", "nan"],
    ["conform", "--replay", "/nonexistent.obs"],
    ["conform", "--replay", __file__],
    ["conform", "--json", "/proc/nope/x.json", "--replay", str(OBS / "6.12.118-max.obs.gz")],
    ["conform", "--modules", "/tmp"],
    ["conform", "--kernel-image", "/nonexistent/Image"],
    ["conform", "--replay", str(OBS / "6.12.118-max.obs.gz"), "--kernels", "6.12"],
])
def test_cli_bad_input_is_one_line(argv, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memtypes: error:")
    assert not list(tmp_path.iterdir())


def test_cli_live_refuses_a_non_arm64_host(monkeypatch, capsys):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert main(["conform", "--live"]) == 2
    assert "not arm64" in capsys.readouterr().err


def test_cli_a_user_variant_against_what_a_kernel_did(capsys, tmp_path):
    """--variants on conform: a proposed rule (map VM_ALLOW_ANY_UNCACHED VMAs cacheable on FWB hosts)
    held against 6.18.15's recorded behaviour differs exactly where vfio-pci BARs were mapped."""
    from pathlib import Path as P
    from memtypes.linux import userfiles
    example = P(__file__).resolve().parents[2] / "examples" / "variants" / "fwb_cacheable_uncached.py"
    try:
        rc = main(["conform", "--replay", str(OBS / "6.18.15-max.obs.gz"), "--as-kernel",
                   "6.18.15+fwb-cacheable-uncached", "--variants", str(example), "--json", str(tmp_path / "v.json")])
    finally:
        userfiles.reset()
    assert rc == 0
    assert "6.18.15+fwb-cacheable-uncached max:" in capsys.readouterr().out
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["facts"]["variant_files"][0]["path"].endswith("fwb_cacheable_uncached.py")
    bad = [r for r in doc["targets"][0]["rows"] if r["status"] == "mismatch"]
    assert bad and all("vfio-pci-bar" in r["case"] and r["key"] == "walk" for r in bad)
    assert {(r["observed"]["memattr"], r["expected"]["memattr"]) for r in bad} == {(5, 6)}   # NC seen, WB proposed


def _bent_header(tmp_path, name, **change):
    lines = _lines("6.12.118-max.obs.gz")
    head = json.loads(lines[0][2:])
    for c in head["conform"]["cases"]:
        if c.get("kind") == "slot":
            c.update(change)
    f = tmp_path / name
    f.write_text("\n".join(["@@" + json.dumps(head)] + lines[1:]) + "\n")
    return f


@pytest.mark.parametrize("change, field", [({"access": "jump"}, "access"), ({"mte": "later"}, "mte"),
                                           ({"flags": "readonly,bogus"}, "flags"), ({"backing": 5}, "backing"),
                                           ({"remap": ["x"]}, "remap"), ({"kind": "other"}, "kind")])
def test_cli_replay_names_a_corrupt_case_field(tmp_path, capsys, change, field):
    """A recorded file whose cases were edited is refused with the file, line 1 and the field (a
    wrong 'mte' used to be read as 'off'; a wrong 'access' was blamed on a --fault option)."""
    f = _bent_header(tmp_path, "bent.obs", **change)
    assert main(["conform", "--replay", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bent.obs:1:" in err[0] and f"field '{field}'" in err[0]


def test_cli_replay_corrupt_and_oversized_gzip(tmp_path, capsys):
    good = gzip.compress(gzip.decompress((OBS / "6.12.118-max.obs.gz").read_bytes()))
    broken = tmp_path / "broken.obs.gz"
    broken.write_bytes(good[:20] + b"\0" * 64 + good[84:400])          # a damaged deflate stream
    bomb = tmp_path / "bomb.obs.gz"
    bomb.write_bytes(gzip.compress(b"@@{}\n" + b"\n" * (conform_run.MAX_OBS_BYTES + 10)))
    assert bomb.stat().st_size < 1 << 20
    for f, what in ((broken, "not a gzip file"), (bomb, "unpacks to more than")):
        assert main(["conform", "--replay", str(f)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and what in err[0], err


def test_a_walk_record_missing_a_field_cannot_agree():
    """A walk record without xn/s2ap (or with a non-integer) decodes to None and is a mismatch;
    it used to default to xn=0 (executable) and s2ap=0, which could agree by accident. A walk
    without the bytes at its output address is not self-checked: not observable."""
    lines = _lines("6.12.118-max.obs.gz")
    head = json.loads(lines[0][2:])["conform"]
    cases = [Case(**conform_run.cases_mod.from_agent(d)) for d in head["cases"]]
    k = kernel("6.12.118")
    key = ("anon-private/read", "walk")

    def bent(edit):
        out = []
        for ln in lines[1:]:
            d = json.loads(ln[2:]) if ln.startswith("@@{") else None
            if d and isinstance(d.get("s2"), dict) and d["s2"].get("id") == key[0]:
                edit(d["s2"])
                ln = "@@" + json.dumps(d)
            out.append(ln)
        return {(r.case, r.key): r for r in compare(k, cases, parse_lines(out)).rows}[key]

    assert bent(lambda w: None).status == AGREE
    r = bent(lambda w: w.pop("xn"))
    assert r.status == MISMATCH and r.observed["x"] is None
    assert bent(lambda w: w.update(s2ap="3")).status == MISMATCH
    assert bent(lambda w: w.update(level=[3])).status == MISMATCH
    assert bent(lambda w: w.pop("data")).status == NOT_OBSERVABLE


def test_an_observation_without_errno_is_not_success():
    """The agent always prints "errno" (empty on success); a line without it must not read as
    success ("")."""
    k = kernel("6.12.118")
    case = Case(id="anon-private/read", backing="anon-private", access="read")
    lines = ['@@{"case": "anon-private/read", "obs": "start", "kind": "slot"}',
             '@@{"case": "anon-private/read", "obs": "memslot", "ret": 0}']
    rows = {r.key: r for r in compare(k, [case], parse_lines(lines)).rows}
    assert rows["memslot"].status == MISMATCH and rows["memslot"].observed == {"errno": None}
    ok = compare(k, [case], parse_lines([lines[0], lines[1][:-1] + ', "errno": ""}']))
    assert {r.key: r.status for r in ok.rows}["memslot"] == AGREE


def test_cli_saved_observations_stay_in_their_folder(tmp_path):
    """A --replay header's kernel becomes a file name under --save-observations: a '../' in it
    must not write outside the folder."""
    lines = _lines("6.12.118-max.obs.gz")
    head = json.loads(lines[0][2:])
    head["conform"]["kernel"] = "../../escaped"
    f = tmp_path / "in.obs"
    f.write_text("\n".join(["@@" + json.dumps(head)] + lines[1:]) + "\n")
    out = tmp_path / "a" / "b"
    assert main(["conform", "--replay", str(f), "--save-observations", str(out), "--json", str(tmp_path / "r.json")]) == 0
    assert [p.name for p in out.iterdir()] == ["_.._escaped-max.obs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "in.obs", "r.json"]
    assert conform_run.replay(out / "_.._escaped-max.obs").comparison.rows


@pytest.mark.parametrize("how", ["crashed", "no-kvm"])
def test_cli_strict_fails_on_a_run_that_did_not_finish(tmp_path, capsys, how):
    """A run cut short (the agent's 'done' line missing: a crash, a hang, a panic mid-run) or one
    where /dev/kvm did not open leaves its cases "not observable here", not mismatched: --strict
    must still fail, and the summary says why."""
    lines = _lines("6.12.118-max.obs.gz")
    if how == "crashed":
        body = lines[1:len(lines) // 2]
    else:
        body = [ln.replace('"kvm": 1', '"kvm": 0') for ln in lines[1:] if '"obs": "host"' in ln or '"done"' in ln]
    f = tmp_path / "cut.obs"
    f.write_text("\n".join([lines[0]] + body) + "\n")
    assert main(["conform", "--replay", str(OBS / "6.12.118-max.obs.gz"), "--strict"]) == 0
    capsys.readouterr()
    assert main(["conform", "--replay", str(f), "--strict"]) == 1
    out = capsys.readouterr().out
    assert ("did not finish" if how == "crashed" else "/dev/kvm") in out
    assert main(["conform", "--replay", str(f)]) == 0


def test_cli_replay_text_is_not_read_as_markup(tmp_path, capsys):
    """Versions and case ids from a --replay header are printed as they are: '[/bold]' in them
    was a Rich MarkupError traceback."""
    lines = _lines("6.12.118-max.obs.gz")
    head = json.loads(lines[0][2:])
    head["conform"]["release"] = "6.12.118[/bold]"
    head["conform"]["cases"][0]["id"] = "caps[/x]"
    f = tmp_path / "m.obs"
    f.write_text("\n".join(["@@" + json.dumps(head)] + [ln.replace('"case": "caps"', '"case": "caps[/x]"')
                                                         for ln in lines[1:]]) + "\n")
    assert main(["conform", "--replay", str(f), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "6.12.118[/bold]" in out and "caps[/x]" in out


def test_cli_replay_deeply_nested_lines(tmp_path, capsys):
    """A line nested too deep for json (RecursionError) is skipped like any damaged line; in the
    header it is one line, exit 2."""
    lines = _lines("6.12.118-max.obs.gz")
    deep = "[" * 100000 + "]" * 100000
    body = tmp_path / "body.obs"
    body.write_text("\n".join([lines[0], '@@{"case": "caps", "x": ' + deep + "}"] + lines[1:]) + "\n")
    assert main(["conform", "--replay", str(body), "--strict"]) == 0
    head = tmp_path / "head.obs"
    head.write_text('@@{"conform": ' + deep + "}\n")
    assert main(["conform", "--replay", str(head)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head.obs:1:" in err[0]


def test_a_kmsg_line_that_is_not_text_is_skipped():
    obs = parse_lines(['@@{"case": "host", "obs": "kmsg", "line": null}',
                       '@@{"case": "host", "obs": "kmsg", "line": "CPU features: detected: Stage-2 Force Write-Back"}'])
    h = host_features(obs)
    assert h.features.fwb and h.kmsg == ("CPU features: detected: Stage-2 Force Write-Back",)


def test_live_agent_that_hangs_is_reported_not_a_traceback(monkeypatch, tmp_path):
    """--live: an agent that stops answering is killed at the time limit and the target says so
    (subprocess.TimeoutExpired was a traceback); what it printed before is compared."""
    import os as _os
    fake = tmp_path / "agent"
    fake.write_text("#!/bin/sh\necho '@@{\"case\": \"host\", \"obs\": \"host\", \"release\": \"x\", \"kvm\": 1}'\n"
                    "exec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    monkeypatch.setattr("platform.release", lambda: "6.12.118-test")
    real_access = _os.access
    monkeypatch.setattr(conform_run.os, "access", lambda p, m: True if p == "/dev/kvm" else real_access(p, m))
    monkeypatch.setattr(conform_run, "build_agent", lambda: fake)
    res, eras = conform_run.run_live(timeout_s=0.5)
    assert "did not finish within 0.5 s" in res.error
    assert res.comparison.host.kvm and res.comparison.host.release == "x"
    assert eras and all(e["agree"] == 0 for e in eras)


def test_an_interrupt_stops_every_boot_at_once(monkeypatch):
    """Ctrl-C (or any exception) while kernels boot: no further boot starts and every running
    QEMU is killed at once, then the interrupt goes on up (the CLI prints one line, exit 130)."""
    from memtypes.conform import fetch, qemu
    started, killed = [], []
    monkeypatch.setattr(conform_run, "build_agent", lambda: Path("/agent"))
    monkeypatch.setattr(fetch, "fetch_qemu", lambda: None)
    monkeypatch.setattr(fetch, "update", lambda: "fresh")
    monkeypatch.setattr(fetch, "select", lambda specs: ["6.12.118", "7.2.13", "7.3.4"])
    monkeypatch.setattr(qemu, "_kill_all", lambda: killed.append(True))

    def target(pkg, cpu, **kw):
        started.append((pkg, cpu))
        raise KeyboardInterrupt
    monkeypatch.setattr(conform_run, "run_qemu_target", target)
    with pytest.raises(KeyboardInterrupt):
        conform_run.run_qemu(["default"], ["max", "cortex-a57"], jobs=1)
    assert started == [("6.12.118", "max")] and killed == [True]
