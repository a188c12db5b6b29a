"""`memtypes check --explorer`: the vectorised and the serial explorer give the same JSON
results on the real table-driven families; a family that is not table-driven is refused for
``vector`` with one line and exit 2."""

from __future__ import annotations

import json

import pytest

from memtypes.cli import main

pytest.importorskip("numpy")


def check_json(capsys, *args):
    rc = main(["check", "--workers", "1", "--json", "-", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize("family,kernel", [("passthrough", "6.17"), ("migration", "6.17"),
                                           ("dma-type1", "6.9")])
def test_explorers_agree_on_results(capsys, family, kernel):
    sel = ["--family", family, "--kernel", kernel]
    v = check_json(capsys, *sel, "--explorer", "vector")
    s = check_json(capsys, *sel, "--explorer", "serial")
    assert v["results"] == s["results"] and v["results"]
    assert {j["explorer"] for j in v["stats"]["per_job"]} == {"vector"}
    assert {j["explorer"] for j in s["stats"]["per_job"]} == {"serial"}
    assert [j["states"] for j in v["stats"]["per_job"]] == [j["states"] for j in s["stats"]["per_job"]]


def test_auto_uses_vector_where_it_pays(capsys):
    """The default jobs are small: auto keeps them serial; two slots make passthrough large
    enough for the vectorised explorer.  dma-iommufd's codes (three pages objects' bits, hwpts,
    SNP=0 PTEs per page) exceed the serial bound even at two pages."""
    for fam in ("passthrough", "mte", "migration"):
        d = check_json(capsys, "--family", fam, "--kernel", "6.9", "--variant", "mainline")
        assert {j["explorer"] for j in d["stats"]["per_job"]} == {"serial"}, fam
    d = check_json(capsys, "--family", "passthrough", "--kernel", "6.9", "--variant", "mainline",
                   "--param", "passthrough.slots=2")
    assert [j["explorer"] for j in d["stats"]["per_job"]] == ["vector"]
    d = check_json(capsys, "--family", "dma-type1", "--kernel", "6.9", "--variant", "mainline",
                   "--param", "dma-type1.pages=2")
    assert [j["explorer"] for j in d["stats"]["per_job"]] == ["vector"]
    d = check_json(capsys, "--family", "dma-iommufd", "--kernel", "6.9", "--variant", "mainline")
    assert [j["explorer"] for j in d["stats"]["per_job"]] == ["vector"]


def test_vector_refused_for_a_serial_family(capsys):
    rc = main(["check", "--family", "dma-iommufd", "--param", "dma-iommufd.table=false",
               "--explorer", "vector"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "dma-iommufd" in err and "--explorer" in err


def test_unknown_explorer(capsys):
    assert main(["check", "--explorer", "gpu"]) == 2
    assert "auto, serial, vector" in capsys.readouterr().err


def test_dma_type1_table_form_and_type1_model_agree(capsys):
    """``--param dma-type1.table=false`` explores the model over linux/dma/type1.py itself:
    the same results as the table form (which the vectorised explorer can run)."""
    sel = ["--family", "dma-type1", "--kernel", "5.14"]
    t = check_json(capsys, *sel, "--explorer", "vector")
    d = check_json(capsys, *sel, "--param", "dma-type1.table=false")
    assert t["results"] == d["results"] and d["results"]
    assert {j["explorer"] for j in d["stats"]["per_job"]} == {"serial"}
    assert main(["check", *sel, "--param", "dma-type1.table=false", "--explorer", "vector"]) == 2
    assert "not a table-driven model" in capsys.readouterr().err


def test_a_model_too_large_for_the_vector_explorer_is_one_line(capsys, monkeypatch):
    """A model the vector explorer cannot pack or table (here: tables capped at 2 entries)
    under ``--explorer vector``: one line naming the option and what is too large, exit 2."""
    from memtypes.explore import vector
    monkeypatch.setattr(vector, "MAX_TABLE", 2)
    rc = main(["check", "--workers", "1", "--family", "dma-type1", "--kernel", "6.9",
               "--variant", "mainline", "--explorer", "vector"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "--explorer vector" in err and "exceeds 2 entries" in err
