"""Case generation for the conform agent: from the model's input space, stable, and readable
by the agent's flat JSON reader."""

import json

from hypothesis import given, strategies as st

from memtypes.conform.cases import AGENT_BACKINGS, Case, cases_json, from_agent, generate
from memtypes.linux.kvm.eras import kernel


def test_ids_unique_and_stable():
    a = generate(kernel("6.12.118"), mte=True)
    b = generate(kernel("6.12.118"), mte=True)
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)
    assert cases_json(a) == cases_json(b)


def test_guest_memfd_only_where_the_kernel_has_it():
    assert not any(c.backing == "guest-memfd" for c in generate(kernel("6.17"), mte=False))
    assert any(c.backing == "guest-memfd" for c in generate(kernel("6.18"), mte=False))


def test_mte_cases_only_on_mte_cpus_and_vfio_only_with_modules():
    no = generate(kernel("6.12"), mte=False, vfio=False)
    assert not any(c.mte != "off" for c in no)
    assert not any("vfio" in c.id for c in no)
    yes = generate(kernel("6.12"), mte=True)
    assert {c.mte for c in yes} == {"off", "before", "after"}
    assert any(c.pretag and c.tags for c in yes)
    assert any(c.tags_errors for c in yes)


def test_every_slot_case_names_an_agent_backing():
    for c in generate(kernel("7.1"), mte=True):
        if c.kind == "slot":
            assert c.backing in AGENT_BACKINGS
            assert c.remap is None or c.remap in AGENT_BACKINGS


def test_agent_json_is_flat_and_round_trips():
    cs = generate(kernel("6.18"), mte=True)
    rows = json.loads(cases_json(cs))
    for d in rows:
        # the agent's reader takes only flat objects of strings, integers and null
        assert all(v is None or isinstance(v, (str, int)) for v in d.values())
        assert all(len(str(v)) < 190 and len(k) < 31 for k, v in d.items())
    assert [Case(**from_agent(d)) for d in rows] == cs


@given(st.sampled_from(["5.14", "6.1.192", "6.9", "6.12.118", "6.17.3", "6.18", "7.1"]), st.booleans(),
       st.booleans(), st.booleans())
def test_generation_is_total(version, mte, pci, vfio):
    cs = generate(kernel(version), mte=mte, pci=pci, vfio=vfio)
    assert cs[0].kind == "caps" and cs[1].kind == "mte-cap-order"
    assert pci or not any(c.backing.startswith("pci-") for c in cs)
