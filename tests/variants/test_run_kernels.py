"""memtypes run: steps that change nothing, and one scenario under several kernels side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memtypes.cli import main
from memtypes.linux import userfiles

ROOT = Path(__file__).resolve().parents[2]
FWB_NC = str(ROOT / "examples" / "variants" / "fwb_cacheable_uncached.py")

SCEN = """\
family: passthrough
kernel: "6.17"
host: {host}
params:
  regions: [{backing}, anon]
steps:
  - {{actor: vmm, action: create_memslot, slot: 0, backing: {backing}}}
  - {{actor: guest, action: access, slot: 0, s1: Normal-WB}}
"""


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    userfiles.reset()


def scen(tmp_path, host="armv8.0", backing="nvgrace-usemem"):
    p = tmp_path / "s.yaml"
    p.write_text(SCEN.format(host=host, backing=backing))
    return str(p)


def test_step_that_changes_nothing_is_allowed(capsys, tmp_path):
    """6.17 refuses usemem on a host without FWB (P4): the slot is never created, the access is
    not possible; both steps are shown as changing nothing instead of an error."""
    rc = main(["run", scen(tmp_path), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [(s["changed"], s["describe"]) for s in d["steps"]] == [
        (False, "not possible here: changes nothing"), (False, "not possible here: changes nothing")]


def test_unknown_action_still_an_error(capsys, tmp_path):
    p = Path(scen(tmp_path))
    p.write_text(p.read_text().replace("action: access", "action: acess"))
    assert main(["run", str(p)]) == 2
    assert "step 2" in capsys.readouterr().err


def test_side_by_side_marks_where_runs_part(capsys, tmp_path):
    rc = main(["run", scen(tmp_path), "--kernel", "6.16,6.17", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["parts_at"] == 1
    a, b = d["runs"]
    assert (a["spec"], b["spec"]) == ("6.16", "6.17")
    assert a["steps"][1]["changed"] and "map DEVICE" in a["steps"][1]["describe"]
    assert not b["steps"][0]["changed"]
    main(["run", scen(tmp_path), "--kernel", "6.16,6.17"])
    out = capsys.readouterr().out
    assert "<- the runs part here" in out and "the runs part at step 1" in out
    assert "[user_mem_abort]" in out        # printed as text, not read as markup


def test_side_by_side_with_a_user_variant(capsys, tmp_path):
    """The FWB example variant under run: the BAR becomes Normal cacheable on grace only."""
    p = scen(tmp_path, host="grace", backing="vfio-pci-bar")
    rc = main(["run", p, "--variants", FWB_NC, "--kernel", "6.17,6.17+fwb-cacheable-uncached", "--json"])
    d = json.loads(capsys.readouterr().out)
    main_run, var_run = d["runs"]
    assert d["parts_at"] == 2
    assert "map NC" in main_run["steps"][1]["describe"] and main_run["violated"] == {}
    assert "map NORMAL" in var_run["steps"][1]["describe"]
    assert var_run["violated"]["mmio-never-cacheable"] == 2


def test_same_runs_do_not_part(capsys, tmp_path):
    rc = main(["run", scen(tmp_path, host="grace"), "--kernel", "6.17,6.18,7.1", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["parts_at"] is None
