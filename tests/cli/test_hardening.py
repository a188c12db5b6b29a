"""Issue 18: every class of bad input is one line and exit 2, never a traceback, a hang or a
silent exit 0.  One test per class, on the real families (small runs), through ``main``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memtypes.cli import main
from memtypes.errors import EXPECTED_MAX, InputError
from memtypes.yamlfile import MAX_BYTES, MAX_DEPTH, parse

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "memtypes" / "scenario" / "examples"
VMS = Path(__file__).resolve().parents[1] / "fixtures" / "vms"


def fails(capsys, *argv: str) -> str:
    """Run ``memtypes ARGV``: it must exit 2 with exactly one readable line on stderr."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, (rc, out[-500:], err)
    assert len(lines) == 1 and lines[0].startswith("memtypes: error: "), err
    assert "Traceback" not in err
    assert len(lines[0]) < 400, lines[0]
    return lines[0]


def host_file(tmp_path, text: str) -> str:
    p = tmp_path / "host.yaml"
    p.write_text(text, encoding="utf-8")
    return str(p)


def explain_host(capsys, path: str) -> str:
    return fails(capsys, "explain", "--kernel", "6.12", "--host", path, "--backing", "anon")


# -- the loader: size, kind of file, characters, nesting, aliases ------------------------------

def test_deep_nesting(capsys, tmp_path):
    p = host_file(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested more than" in explain_host(capsys, p)


def test_nesting_at_the_limit_is_accepted_by_the_loader():
    data, _ = parse("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", "x")
    assert isinstance(data["a"], list)
    with pytest.raises(InputError, match="nested more than"):
        parse("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", "x")


def test_size_cap(capsys, tmp_path):
    p = host_file(tmp_path, "name: " + "x" * (MAX_BYTES + 10) + "\n")
    assert "larger than" in explain_host(capsys, p)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_endless_device_refused(capsys):
    assert "a device" in explain_host(capsys, "/dev/zero")


def test_fifo_refused_without_blocking(capsys, tmp_path):
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    assert "a FIFO" in explain_host(capsys, str(fifo))
    assert "a FIFO" in fails(capsys, "run", str(fifo))


def test_directory_refused(capsys, tmp_path):
    assert "directory" in fails(capsys, "run", str(tmp_path))


@pytest.mark.parametrize("char", ["\x00", "\ufffe", "\x07"])
def test_forbidden_characters(capsys, tmp_path, char):
    p = host_file(tmp_path, f"name: h\nfeatures: {{fwb: 1}}\ndescription: a{char}b\n")
    line = explain_host(capsys, p)
    assert f"U+{ord(char):04X}" in line and "host.yaml:3" in line


def test_not_utf8(capsys, tmp_path):
    p = tmp_path / "h.yaml"
    p.write_bytes(b"name: h\n\xff\xfe\n")
    assert "not UTF-8" in explain_host(capsys, str(p))


def test_billion_laughs_refused_before_expansion(capsys, tmp_path):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    prev = "a"
    for c in "bcdefghi":
        lines.append(f"{c}: &{c} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = c
    p = host_file(tmp_path, "\n".join(lines) + "\n")
    assert "expands to more than" in explain_host(capsys, p)


def test_small_aliases_still_work():
    data, _ = parse("a: &x [1, 2]\nb: *x\n", "x")
    assert data == {"a": [1, 2], "b": [1, 2]}


# -- host profiles ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,field", [
    ("name: h\nfeatures: {fwb: 1}\nevidence: [a]\n", "evidence"),
    ("name: h\nfeatures: {fwb: 1}\nkernel: 6.10\n", "kernel"),       # the float 6.1
    ("name: h\nfeatures: {fwb: 1}\nkernel: [6]\n", "kernel"),
    ("name: h\nfeatures: {fwb: 1}\nkernel: \"6.x\"\n", "kernel"),
    ("name: {a: 1}\nfeatures: {fwb: 1}\n", "name"),
    ("name: h\nfeatures: {fwb: 1}\ndescription: [1]\n", "description"),
    ("name: h\nfeatures: {1: 1}\n", "features.1"),
    ("name: h\narch: [arm64]\nfeatures: {fwb: 1}\n", "arch"),
])
def test_host_profile_fields(capsys, tmp_path, text, field):
    line = explain_host(capsys, host_file(tmp_path, text))
    assert f": {field}: " in line


def test_host_kernel_as_text_is_kept(tmp_path):
    from memtypes.hosts.profile import load_file
    p = host_file(tmp_path, 'name: h\nfeatures: {fwb: 1}\nkernel: "6.10"\n')
    assert load_file(p).kernel == "6.10"


def test_x86_host_refused_by_arm64_families(capsys):
    assert "not arm64" in fails(capsys, "check", "--family", "migration", "--kernel", "6.17",
                                "--param", "migration.hosts=[x86-64, grace]")
    assert "not arm64" in fails(capsys, "check", "--family", "passthrough", "--kernel", "6.17",
                                "--param", "passthrough.hosts=[x86-64]")


# -- --param and scenario params: one validator --------------------------------------------------

@pytest.mark.parametrize("param,field", [
    ("migration.mte=1.5", "migration.mte"),
    ("migration.regions=5", "migration.regions"),
    ("migration.guest_s1=1", "migration.guest_s1"),
    ("migration.vmm_checks=5", "migration.vmm_checks"),
    ("migration.hosts=grace", "migration.hosts"),
    ("migration.vmm_checks=[nope]", "migration.vmm_checks"),
    ("migration.guest_s1=[Normal-XX]", "migration.guest_s1"),
    ("migration.mte=[[[[[]]]]]", "migration.mte"),
    ("migration.vms=true", "migration.vms"),
    ("migration.nope=1", "migration.nope"),
    ("migration.hosts=" + "[" * 100 + "]" * 100, "migration.hosts"),
])
def test_migration_params(capsys, param, field):
    line = fails(capsys, "check", "--family", "migration", "--kernel", "6.17", "--param", param)
    assert field in line


@pytest.mark.parametrize("family,param", [
    ("dma-iommufd", "dma-iommufd.tv26=maybe"),
    ("dma-type1", "dma-type1.emulated=2"),
    ("dma-iommufd", "dma-iommufd.stage=3"),
    ("passthrough", "passthrough.slots=two"),
])
def test_dma_params(capsys, family, param):
    line = fails(capsys, "check", "--family", family, "--kernel", "6.9", "--param", param)
    assert param.split("=")[0] in line


def scenario(tmp_path, src: str, insert: str = "", replace: tuple[str, str] | None = None) -> str:
    text = (EXAMPLES / src).read_text()
    if insert:
        text = text.replace("\nsteps:", f"\n{insert}\nsteps:", 1)
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("insert,field", [
    ("params: {nope: 1}", "params.nope"),
    ("params: {emulated: maybe}", "params.emulated"),
    ("params: {pages: 0}", "params.pages"),
    ("host: grace", "host"),
])
def test_scenario_params_validated_like_param(capsys, tmp_path, insert, field):
    line = fails(capsys, "run", scenario(tmp_path, "dma-type1-stale-after-unpin.yaml", insert))
    assert f": {field}: " in line


@pytest.mark.parametrize("old,new,field", [
    ("backing: nvgrace-usemem", "backing: nope", "steps[0].backing"),
    ("slot: 0, backing", "slot: 99, backing", "steps[0].slot"),
])
def test_scenario_errors_name_the_wrong_argument(capsys, tmp_path, old, new, field):
    line = fails(capsys, "run", scenario(tmp_path, "passthrough-grace-usemem.yaml",
                                         replace=(old, new)))
    assert f": {field}: " in line and "missing argument" not in line


# -- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,where", [
    (["check", "--family", "mte", "--property", ","], "--property"),
    (["check", "--family", "mte", "--property", "mmio,"], "--property"),
    (["check", "--family", "mte", "--kernel", "6.12+"], "--kernel"),
    (["explain", "--kernel", "6.12+", "--host", "grace", "--backing", "anon"], "--kernel"),
    (["explain", "--kernel", "6.12", "--host", "grace", "--backing", "anon", "--slot-flags", ",,"],
     "--slot-flags"),
    (["bench", "--seconds", "nan"], "--seconds"),
    (["bench", "--seconds", "inf"], "--seconds"),
    (["bench", "--seconds", "1e308"], "--seconds"),
    (["bench", "--seconds", "0"], "--seconds"),
])
def test_options(capsys, argv, where):
    assert where in fails(capsys, *argv)


def test_property_short_names(capsys):
    assert main(["check", "--family", "mte", "--kernel", "6.17", "--property", "tsan,tstor",
                 "--json", "-"]) == 0
    import json
    doc = json.loads(capsys.readouterr().out)
    assert {r["property"] for r in doc["results"]} == {"tags-sanitised", "tags-only-on-tag-storage"}


# -- VM files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,field", [
    ("memory: anon\ndevices:\n  - {name: a, backing: vfio-pci-bar}\n"
     "  - {name: a, backing: vfio-platform-mmio}\n", "devices[1].name"),
    ("memory: anon\nvmm_checks: mte-cap\n", "vmm_checks"),
    ("name: {a: 1}\nmemory: anon\n", "name"),
    ("memory: anon\ndevices: [{name: [1], backing: anon}]\n", "devices[0].name"),
])
def test_vm_files(capsys, tmp_path, text, field):
    p = tmp_path / "vm.yaml"
    p.write_text(text)
    line = fails(capsys, "migrate", "--vm", str(p), "--from", "grace", "--to", "armv8.0")
    assert f": {field}: " in line


def test_unnamed_devices_of_one_kind_are_still_numbered(capsys, tmp_path):
    p = tmp_path / "vm.yaml"
    p.write_text("memory: anon\ndevices: [vfio-pci-bar, vfio-pci-bar]\n")
    assert main(["migrate", "--vm", str(p), "--from", "grace", "--to", "grace"]) == 0


# -- long messages ------------------------------------------------------------------------------

def test_long_choice_lists_are_cut_with_a_count():
    e = InputError("bad", where="x", expected=", ".join(f"choice{i}" for i in range(60)))
    assert len(e.expected) <= 2 * EXPECTED_MAX and "(54 more)" in e.expected


def test_wrong_backing_message_is_one_short_line(capsys):
    line = fails(capsys, "explain", "--kernel", "6.12", "--host", "grace", "--backing", "nope")
    assert len(line) < 400


# -- output paths ---------------------------------------------------------------------------------

def test_unwritable_output_refused_before_the_search(capsys, tmp_path):
    ok = tmp_path / "ok.json"
    line = fails(capsys, "check", "--family", "mte", "--kernel", "6.17", "--json", str(ok),
                 "--html", "/proc/nope/x.html")
    assert "--html" in line and not ok.exists()


def test_save_traces_into_a_non_empty_directory_refused(capsys, tmp_path):
    (tmp_path / "old.yaml").write_text("x: 1\n")
    assert "not empty" in fails(capsys, "check", "--family", "mte", "--kernel", "6.17",
                                "--save-traces", str(tmp_path))


def test_save_traces_writes_the_whole_set(capsys, tmp_path):
    d = tmp_path / "traces"
    assert main(["check", "--family", "mte", "--kernel", "7.1", "--save-traces", str(d)]) == 0
    assert sorted(p.name for p in d.iterdir()) and not list(tmp_path.glob(".*"))


def test_json_file_prints_only_the_headline(capsys, tmp_path):
    j = tmp_path / "r.json"
    assert main(["check", "--family", "mte", "--kernel", "7.1", "--json", str(j)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mainline: ") and f"wrote {j}" in out
    assert "Counterexamples" not in out and "n/a" not in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("memtypes ")


# -- what a newcomer reads ------------------------------------------------------------------------

def test_headline_first_mainline_then_variants(capsys):
    assert main(["check", "--family", "mte", "--kernel", "7.1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("mainline: ")
    heads = [i for i, line in enumerate(out) if line.startswith(("mainline:", "variants:"))]
    assert [out[i].split(":")[0] for i in heads[:2]] == ["mainline", "variants"]
    counts = next(line for line in out if " job(s), " in line)
    assert "n/a" not in counts


def test_progress_lines_on_a_non_terminal(capsys):
    from memtypes.check.runner import Job
    from memtypes.cli.check import _Progress

    p = _Progress(every=0.0)

    class R:
        states = 1234

    p(1, 3, Job("mte", "7.1", "mainline"), R())
    p(2, 3, None, None)  # a heartbeat while jobs run
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("memtypes check: 1/3 jobs, 1,234 states")


def test_save_traces_alone_still_prints_the_report(capsys, tmp_path):
    assert main(["check", "--family", "mte", "--kernel", "7.1", "--save-traces",
                 str(tmp_path / "t")]) == 0
    out, err = capsys.readouterr()
    assert "Counterexamples" in out and "saved " in err
