"""`memtypes check --param FAMILY.KEY=VALUE` reaches the family's build params."""

import json

import pytest

from memtypes.cli import main


def test_param_turns_on_tv26_upgrade(tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["check", "--family", "dma-iommufd", "--kernel", "6.2+vfio-flush-reviewed",
            "--property", "coherency-reported", "--workers", "1", "--json", str(out)]
    assert main(args) == 0
    base = {r["property"]: r["verdict"] for r in json.loads(out.read_text())["results"]}
    assert base["coherency-reported"] == "holds"
    assert main(args + ["--param", "dma-iommufd.tv26=true"]) == 0
    with_tv26 = {r["property"]: r for r in json.loads(out.read_text())["results"]}
    # TV26 (kernel-vfio.md section 7): on <=6.6 the upgrade of a populated second-stage hwpt
    # succeeds while old PTEs keep SNP=0, so KVM and the hwpt report coherency they lack.
    assert with_tv26["coherency-reported"]["verdict"] == "violated"
    assert with_tv26["coherency-reported"]["trace"]
    capsys.readouterr()


def test_param_bad_key_is_one_line_exit_2(capsys):
    assert main(["check", "--family", "dma-iommufd", "--param", "dma-iommufd.nope=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "tv26" in err[0]


def test_param_bad_form_is_one_line_exit_2(capsys):
    assert main(["check", "--param", "tv26"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FAMILY.KEY=VALUE" in err[0]


@pytest.mark.parametrize("param,names", [
    ("dma-iommufd.pages=x", "dma-iommufd.pages"),
    ("dma-iommufd.pages=0", "dma-iommufd.pages"),
    ("dma-iommufd.data_pages=[2]", "dma-iommufd.data_pages"),   # (pages=2: pages 0 and 1)
    ("dma-iommufd.stage=third", "dma-iommufd.stage"),
    ("dma-type1.pages=true", "dma-type1.pages"),
    ("migration.vms=0", "migration.vms"),
])
def test_param_bad_value_is_one_line_exit_2(capsys, param, names):
    fam = param.split(".")[0]
    assert main(["check", "--family", fam, "--kernel", "6.9", "--param", param]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0] and "expected" in err[0]
