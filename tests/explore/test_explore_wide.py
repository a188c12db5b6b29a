"""Wide packed codes (several 64-bit words per state) in the vectorised explorer: the same
states, order, depth, transitions, verdicts and traces as the serial explorer on random models
and chains forced wide (``WORD_BITS`` lowered), its parts (the word layout, the visited set of
wide codes, the first-occurrence dedup and its exact fallback), a real job forced wide, and the
fallback rules (``auto`` keeps a wide model vectorised; a column no word holds is refused)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")

from memtypes.explore import explore                                          # noqa: E402
from memtypes.explore import vector                                           # noqa: E402
from memtypes.explore.toy import FlushPages, TableCounters                    # noqa: E402

from test_explore_vector import random_chain_models, random_models, same, summary  # noqa: E402


@pytest.fixture
def narrow_words(monkeypatch):
    """Words of ``bits`` bits: small models pack into several words."""
    def set_bits(bits: int) -> None:
        monkeypatch.setattr(vector, "WORD_BITS", bits)
    return set_bits


def engine(model):
    return vector._Engine(model)


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_counters_and_flush_pages_wide(narrow_words, bits):
    narrow_words(bits)
    for m in (TableCounters(4, 2, bad=5), TableCounters(6, 3, bad=7, symmetric=True),
              FlushPages(3, 2), FlushPages(5, 3)):
        eng = engine(m)
        assert eng.wide and eng.kf >= eng.ks >= 1
        r = same(m)
        assert r.fingerprint == "packed"
    assert engine(FlushPages(5, 3)).kf > engine(FlushPages(5, 3)).ks   # transient words apart


def test_layout_puts_every_column_in_one_word(narrow_words):
    """Columns never straddle words; a word holds at most WORD_BITS bits (word 0 counting the
    blocks' digits); transient columns sit in words after the state's; every state's code
    round-trips through its words."""
    narrow_words(4)
    m = FlushPages(5, 3)
    eng = engine(m)
    used: dict[int, int] = {}
    for c, w in eng.word.items():
        if c in eng.off:
            used[w] = used.get(w, 0) + (eng.mask[c]).bit_length()
            assert eng.off[c] + eng.mask[c].bit_length() <= max(4, eng.mask[c].bit_length())
        if m.columns[c].transient:
            assert w >= eng.ks
        else:
            assert w < eng.ks
    assert all(b <= 4 for b in used.values())
    r = explore(m, backend="serial")
    states = [m.init_states()[0]] + [s for t in r.violations.values() for s in t.states]
    for s in states:
        words = eng.encode_words(s)
        codes = np.array(words, np.int64).reshape(-1, 1)
        assert eng.decode_many(codes) == [s]
        assert eng.encode(s) == sum(w << (64 * j) for j, w in enumerate(words))


@settings(max_examples=80, deadline=None)
@given(random_models(), st.sampled_from([None, 1, 3]), st.sampled_from([None, 3, 10]),
       st.sampled_from([0, 1, 3]))
def test_random_models_agree_wide(model, max_depth, max_states, bits):
    """(0 bits per word: every column in a word of its own.)"""
    old = vector.WORD_BITS, vector.CHUNK
    try:
        vector.WORD_BITS, vector.CHUNK = bits, 4
        assert engine(model).wide or bits
        same(model, max_depth=max_depth)
        if max_states is not None:     # (a cut search counts the transitions of its batches)
            a = explore(model, backend="serial", max_states=max_states, max_depth=max_depth)
            b = explore(model, backend="vector", max_states=max_states, max_depth=max_depth)
            assert summary(a)[:2] + summary(a)[3:] == summary(b)[:2] + summary(b)[3:]
    finally:
        vector.WORD_BITS, vector.CHUNK = old


@settings(max_examples=50, deadline=None)
@given(random_chain_models(), st.sampled_from([None, 2]), st.sampled_from([0, 2, 4]))
def test_random_chain_models_agree_wide(model, max_depth, bits):
    old = vector.WORD_BITS, vector.CHUNK, vector.MERGE_ENTRIES
    try:
        vector.WORD_BITS, vector.CHUNK, vector.MERGE_ENTRIES = bits, 4, 0
        same(model, max_depth=max_depth)
    finally:
        vector.WORD_BITS, vector.CHUNK, vector.MERGE_ENTRIES = old


def test_wide_set_agrees_with_a_python_set():
    """Lookups and inserts over random 3-word codes across several table growths."""
    rng = np.random.default_rng(5)
    v, ref = vector._WideSet(3), {}
    for _ in range(30):
        q = rng.integers(0, 6, (3, 700))         # few distinct values: many repeats
        keys = [tuple(x) for x in q.T.tolist()]
        assert v.unseen(q).tolist() == [k not in ref for k in keys]
        fresh = {}
        for i, k in enumerate(keys):
            if k not in ref and k not in fresh:
                fresh[k] = i
        new = q[:, sorted(fresh.values())]
        for k in (tuple(x) for x in new.T.tolist()):
            ref[k] = len(ref)
        v.add(new)
    assert v.n == len(ref) and v.tab.size >= 2 * v.n
    for k, i in ref.items():                      # discovery order kept
        assert tuple(v.codes(i, i + 1)[:, 0].tolist()) == k
        assert v.code(i) == sum(x << (64 * j) for j, x in enumerate(k))


@pytest.mark.parametrize("collide", [False, True])
def test_first_occurrences_wide(monkeypatch, narrow_words, collide):
    """Distinct codes in order-key order with the order key's parent; with every hash equal
    (the exact fallback: a stable sort by every word) the answer is the same."""
    narrow_words(2)
    eng = engine(TableCounters(4, 2))
    if collide:
        monkeypatch.setattr(vector, "_hash64", lambda c: np.zeros(c.shape[1], np.uint64))
    rng = np.random.default_rng(1)
    succ = rng.integers(0, 3, (eng.ks, 500))
    ok = rng.permutation(10_000)[:500].astype(np.int64)
    got, parents = eng.first_occurrences(succ, ok)
    order = np.argsort(ok)
    want, seen = [], set()
    for i in order.tolist():
        k = tuple(succ[:, i].tolist())
        if k not in seen:
            seen.add(k)
            want.append((k, int(ok[i]) >> (eng.gbits + eng.mbits)))
    assert [tuple(x) for x in got.T.tolist()] == [k for k, _ in want]
    assert parents.tolist() == [p for _, p in want]


@pytest.mark.parametrize("family,kernel,variant,params,bits", [
    ("dma-type1", "6.9", "vfio-flush-reviewed", {"pages": 1}, 20),   # chains, transient words
    ("dma-iommufd", "6.9", "mainline", {}, 24),                      # chains, wider ops column
    ("passthrough", "7.1", "mainline", {"slots": 2}, 8),             # slots merged in word 0
])
def test_real_jobs_forced_wide_match_serial(narrow_words, family, kernel, variant, params, bits):
    from memtypes.check.registry import families
    fam = {f.name: f for f in families()}[family]
    p = dict(fam.default_params, **params)
    narrow_words(bits)
    eng = engine(fam.build(kernel, variant, dict(p)))
    assert eng.wide and eng.ks >= 2
    r = same(fam.build(kernel, variant, dict(p)))
    assert r.violations or r.reached


def test_auto_picks_the_vector_explorer_for_wide_models(monkeypatch, narrow_words):
    """A model too wide for one word stays on the vector explorer under ``auto`` (it used to
    fall back to the serial one)."""
    narrow_words(3)
    monkeypatch.setattr(vector, "SMALL_CODES", 0)
    m = TableCounters(7, 3, bad=9)
    assert engine(m).wide
    r = explore(m)
    assert r.fingerprint == "packed" and summary(r) == summary(explore(m, backend="serial"))


def test_a_column_too_wide_for_a_word_is_refused():
    with pytest.raises(vector.Unsupported, match="column 2: .* bits"):
        vector._wide_layout([2, 2, 1 << 63], (), frozenset(), 62)
    with pytest.raises(vector.Unsupported, match="interchangeable"):
        vector._wide_layout([1 << 40] * 3, ((0, 1, 2),), frozenset(), 62)
