"""What a variant takes away: a narrowing variant is reported "holds, but loses: ..."."""

from __future__ import annotations

import json

import pytest

from memtypes.check.reaches import losses
from memtypes.cli import main
from memtypes.linux import userfiles

NEVER_NC = """\
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.kvm_host import S2_DEVICE, S2_NC
from memtypes.linux.kvm.variants import Variant, register

WHY = Reason("variant/never-nc", "test", "Normal-NC never used: Device instead")


def s2_attr(rules, host, vma, force_nc, rs, default):
    s2 = default()
    if s2 == S2_NC:
        rs.append(WHY)
        return S2_DEVICE
    return s2


register(Variant("never-nc", ("6.9", "6.17"), hooks={"s2_attr": s2_attr}, why=WHY))
"""


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    userfiles.reset()


def test_narrowing_variant_holds_but_loses(capsys, tmp_path):
    f = tmp_path / "never_nc.py"
    f.write_text(NEVER_NC)
    out_json = tmp_path / "c.json"
    rc = main(["check", "--variants", str(f), "--family", "passthrough", "--kernel", "6.17+never-nc",
               "--workers", "1", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads(out_json.read_text())
    assert all(r["verdict"] != "violated" for r in d["results"])
    (e,) = d["stats"]["loses"]
    assert (e["kernel"], e["variant"], e["holds"]) == ("6.17", "never-nc", True)
    assert [c["name"] for c in e["loses"]] == ["vfio-pci-bar-normal-nc"]
    assert ("passthrough 6.17+never-nc: holds, but loses: a vfio-pci BAR gets Normal-NC at stage 2 "
            "(mainline 6.17 reaches it)") in out


def test_capabilities_follow_the_eras():
    hosts = ["armv8.0", "grace", "armv8.5-mte"]
    # cpfn-memslot-flag keeps usemem Normal-WB reachable (with its memslot flag): nothing lost
    assert losses("6.17", "cpfn-memslot-flag", hosts) == []
    # mte-rfc-2020 tags anonymous memory as mainline does; nothing lost there
    assert "anon-mte-tagged" not in [c.name for c in losses("6.9", "mte-rfc-2020", hosts)]
    assert [c.name for c in losses("6.9", "device-as-cacheable", hosts)] == ["vfio-pci-bar-normal-nc"]
