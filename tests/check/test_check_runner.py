"""The verdict matrix on the toy family: verdicts, ordering, truncation, determinism, workers."""

from __future__ import annotations

import json

import pytest

import toyfam
from memtypes.check import properties as catalogue
from memtypes.check import registry
from memtypes.check.kernels import era_of, parse_kernel
from memtypes.check.runner import plan, run_matrix
from memtypes.errors import InputError
from memtypes.report import jsondoc

FAM = toyfam.FAMILY


def verdicts(m):
    return {(r.kernel, r.variant, r.property): r for r in m.results}


@pytest.fixture(scope="module")
def matrix():
    return run_matrix([FAM], workers=1)


def test_catalogue_names():
    assert catalogue.NAMES == (
        "mmio-never-cacheable", "nc-only-where-allowed", "cacheable-needs-cmo-path",
        "no-cacheability-mismatch", "tags-only-on-tag-storage", "tags-sanitised",
        "tags-survive-save-restore", "migration-fails-early", "memtype-stable-across-migration",
        "device-reads-owner-data", "host-consistent-after-unpin", "coherency-reported")
    for p in catalogue.CATALOGUE:
        assert p.holds_when and p.rationale and p.source and len(p.short) <= 6
    assert len({p.short for p in catalogue.CATALOGUE}) == 12
    with pytest.raises(InputError):
        catalogue.get("nope")


def test_plan_order_and_applies():
    jobs = plan([FAM])
    assert [(j.kernel, j.variant) for j in jobs] == [
        ("5.13", "mainline"), ("5.13", "nosome"), ("5.13", "old-only"),
        ("6.9", "mainline"), ("6.9", "nosome")]
    assert [(j.kernel, j.variant) for j in plan([FAM], kernel="6.9", variant="nosome")] == [
        ("6.9", "nosome")]


def test_verdicts(matrix):
    v = verdicts(matrix)
    mm = v[("6.9", "mainline", "mmio-never-cacheable")]
    assert mm.verdict == "violated" and mm.trace_length == 2 and mm.init_index == 1
    assert [s["actor"] for s in mm.trace] == ["a", "b"]
    assert mm.trace[0]["describe"] == "(1,0,0) -> (2,0,0)"
    assert v[("6.9", "mainline", "nc-only-where-allowed")].verdict == "violated"
    assert v[("5.13", "mainline", "nc-only-where-allowed")].verdict == "holds"
    assert v[("6.9", "mainline", "tags-sanitised")].verdict == "holds"
    assert v[("6.9", "mainline", "cacheable-needs-cmo-path")].verdict == "n/a"
    # a never-reached sometimes target makes non-violated properties vacuous
    vac = v[("6.9", "nosome", "tags-sanitised")]
    assert vac.verdict == "vacuous" and vac.unreached == ["never"]
    assert v[("6.9", "nosome", "mmio-never-cacheable")].verdict == "violated"
    assert all(r.complete for r in matrix.results)
    assert matrix.stats["verdicts"] == {"holds": 8, "violated": 7, "vacuous": 5, "n/a": 40}


def test_result_order(matrix):
    keys = [(r.kernel, r.variant, catalogue.order(r.property)) for r in matrix.results]
    assert len(keys) == 5 * 12
    assert [k[2] for k in keys[:12]] == list(range(12))
    assert keys[0][:2] == ("5.13", "mainline") and keys[-1][:2] == ("6.9", "nosome")


def test_property_filter():
    m = run_matrix([FAM], workers=1, properties=["tags-sanitised", "mmio-never-cacheable"])
    assert [r.property for r in m.results[:2]] == ["mmio-never-cacheable", "tags-sanitised"]
    with pytest.raises(InputError):
        run_matrix([FAM], workers=1, properties=["bogus"])


def test_truncation_holds_within_bound():
    m = run_matrix([FAM], workers=1, kernel="5.13", variant="mainline", max_states=5)
    r = verdicts(m)[("5.13", "mainline", "tags-sanitised")]
    assert r.complete is False
    assert r.verdict in ("holds", "vacuous")
    assert m.stats["incomplete_jobs"] == ["toy 5.13"]
    assert r.as_dict()["complete"] is False
    d = run_matrix([FAM], workers=1, kernel="5.13", variant="mainline", max_depth=1)
    assert d.jobs[0].complete is False


def test_json_deterministic(matrix):
    a = jsondoc.check_doc(run_matrix([FAM], workers=1))
    b = jsondoc.check_doc(run_matrix([FAM], workers=1))
    assert jsondoc.dumps(a) == jsondoc.dumps(b)  # no timings unless asked for
    assert "timings" in jsondoc.check_doc(run_matrix([FAM], workers=1), timings=True)
    doc = json.loads(jsondoc.dumps(a))
    for r in doc["results"]:
        assert {"family", "kernel", "variant", "property", "verdict", "states", "depth",
                "trace"} <= set(r)
        assert r["verdict"] in ("holds", "violated", "vacuous", "n/a")
        assert isinstance(r["kernel"], str)
        assert (r["trace"] != []) == (r["verdict"] == "violated")
        for s in r["trace"]:
            assert {"actor", "action", "detail"} <= set(s)
    assert "timing" not in json.dumps(doc["results"])


def test_workers_two_identical(matrix):
    m2 = run_matrix([FAM], workers=2)
    assert m2.stats["workers"] == 2
    assert [r.as_dict() for r in m2.results] == [r.as_dict() for r in matrix.results]


def test_unpicklable_family_runs_serially():
    import dataclasses
    fam = dataclasses.replace(FAM, applies=lambda k, v: True)
    m = run_matrix([fam], workers=2, kernel="6.9")
    assert m.stats["workers"] == 1 and "serially" in m.stats["note"]
    assert len(m.jobs) == 3


def test_kernel_eras():
    assert era_of("6.12") == "6.9"
    assert era_of("5.10") == "5.13"
    assert era_of("5.14.3") == "5.14"
    assert era_of("6.17") == "6.17"
    assert era_of("7.1") == "7.1"
    assert era_of("7.3") == "7.2" and era_of("9.0") == "7.2"     # newer than the model: the newest era
    assert parse_kernel("6.18.2+cpfn-v4") == ("6.18", "cpfn-v4")
    for bad in ("banana", "6.12.x", "6.17+"):
        with pytest.raises(InputError):
            parse_kernel(bad)


def test_registry():
    fams = registry.families()
    names = [f.name for f in fams]
    missing = registry.missing_families()
    assert len(names) + len(missing) == len(registry.ORDER)
    with pytest.raises(InputError) as e:
        registry.family("nope")
    assert "unknown family" in str(e.value)
    assert registry.family("toy", available=[FAM]) is FAM


def test_renderings_without_describe(tmp_path):
    from rich.console import Console

    from memtypes.check import play
    from memtypes.report import html, text
    m = run_matrix([toyfam.PLAIN_FAMILY, FAM], workers=1, kernel="6.9")
    assert [j.job.family for j in m.jobs] == ["toy-plain", "toy", "toy"]
    r = m.results[0]
    assert r.verdict == "violated" and "describe" not in r.trace[0]
    page = html.render_check(m)
    assert "toy-plain" in page and "violated(2)" in page
    con = Console(width=160, record=True, file=open("/dev/null", "w"))
    text.render_check(con, m)
    out = con.export_text()
    assert "toy-plain: mmio-never-cacheable violated on 6.9" in out
    paths = play.save_traces(m, tmp_path)
    rep = play.run_file(paths[0], [toyfam.PLAIN_FAMILY])
    assert rep.violated == {"mmio-never-cacheable": 2} and rep.final_state is None
