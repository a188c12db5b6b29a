"""The cluster engine on a local Dask cluster of two worker processes: the same states, order,
depth, transitions, verdicts and shortest traces as the serial explorer (random models, chains,
a wide model, bounds, a real job through ``memtypes check --cluster``); an address that does
not answer and a worker killed mid-search are one line each.  Skipped only when the
``cluster`` extra (Dask distributed) is not installed."""

from __future__ import annotations

import json
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numpy")
pytest.importorskip("distributed")

from memtypes.explore import cluster, explore                                 # noqa: E402
from memtypes.explore.toy import FlushPages, TableCounters                    # noqa: E402

from test_explore_vector import random_chain_models, random_models, summary   # noqa: E402


@pytest.fixture(scope="module")
def client():
    with cluster.connect("local:2") as c:
        yield c


def same(model, client, **kw):
    a = explore(model, backend="serial", **kw)
    b = cluster.explore_cluster(model, client, **kw)
    assert b.workers == 2
    if "max_states" in kw:        # (a cut search counts the transitions of its own batches)
        assert summary(a)[:2] + summary(a)[3:] == summary(b)[:2] + summary(b)[3:]
    else:
        assert summary(a) == summary(b)
    return b


def test_known_models(client):
    for m in (TableCounters(4, 2, bad=5), TableCounters(6, 3, bad=7, symmetric=True),
              FlushPages(5, 3)):
        r = same(m, client)
        assert r.states == explore(m, backend="vector").states
        same(m, client, max_depth=2)
        same(m, client, max_states=10)


def test_a_wide_model_within_a_bound(client):
    """70 pages: two words per state (bounded: the model has 2**71 states)."""
    from memtypes.explore import vector
    m = FlushPages(70, 1)
    assert vector._Engine(m).wide
    r = same(m, client, max_states=3000)
    assert len(r.violations["never-k"]) == 2 and r.states == 3000


_slow = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])


@settings(max_examples=25, **_slow)
@given(random_models(), st.sampled_from([None, 2]), st.sampled_from([None, 5]))
def test_random_models_agree(client, model, max_depth, max_states):
    kw = {k: v for k, v in (("max_depth", max_depth), ("max_states", max_states)) if v is not None}
    same(model, client, **kw)


@settings(max_examples=15, **_slow)
@given(random_chain_models())
def test_random_chain_models_agree(client, model):
    same(model, client)


def test_check_cli_on_the_cluster_matches_one_process(capsys, client):
    from memtypes.cli import main
    sel = ["check", "--family", "dma-type1", "--kernel", "6.9", "--json", "-"]
    assert main(sel + ["--cluster", "local:2"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(sel + ["--workers", "1", "--explorer", "vector"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["results"] == b["results"] and a["results"]
    assert [j["states"] for j in a["stats"]["per_job"]] == [j["states"] for j in b["stats"]["per_job"]]
    assert cluster.active() is client                       # its own closed with the command


@pytest.mark.parametrize("spec,msg", [("127.0.0.1:9", "no Dask scheduler answers"),
                                      ("local:0", "local:N"), ("local:two", "local:N")])
def test_bad_cluster_is_one_line(capsys, spec, msg):
    from memtypes.cli import main
    assert main(["check", "--family", "dma-type1", "--cluster", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cluster" in err and msg in err


def test_a_worker_lost_mid_search_is_one_error():
    with cluster.connect("local:2") as c:
        pids = sorted(c.run(os.getpid).values())
        killed = []

        def kill_one(states, depth, frontier):
            if not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        with pytest.raises(cluster.ClusterError, match="worker"):
            cluster.explore_cluster(TableCounters(8, 3), c, progress=kill_one)
    assert cluster.active() is not c and c.status == "closed"
