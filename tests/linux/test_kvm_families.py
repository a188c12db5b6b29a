"""The passthrough and mte checker families: contract, sizes, and the verdicts the references expect."""

from __future__ import annotations

from collections import deque

import pytest

from memtypes.check.family import ERAS
from memtypes.check.families import mte, passthrough
from memtypes.explore.model import successors


def bfs(model):
    props = model.properties()
    always = [p for p in props if p.kind == "always"]
    some = [p for p in props if p.kind == "sometimes"]
    seen = {s: None for s in model.init_states()}
    q = deque(seen)
    viol, reached = {}, set()
    while q:
        s = q.popleft()
        for p in always:
            if p.name not in viol and not p.check(s):
                viol[p.name] = s
        for p in some:
            if p.check(s):
                reached.add(p.name)
        for a, n in successors(model, s):
            assert isinstance(a.args, tuple)
            if n not in seen:
                seen[n] = (s, a)
                q.append(n)
    return len(seen), set(viol), {p.name for p in some} - reached, seen, viol


def verdicts(fam, kernel, variant="mainline", **params):
    p = dict(fam.FAMILY.default_params)
    p.update(params)
    n, viol, unreached, _, _ = bfs(fam.build(kernel, variant, p))
    assert not unreached, unreached
    return viol


def test_family_contract():
    for fam in (passthrough, mte):
        F = fam.FAMILY
        assert F.build is fam.build and F.applies is fam.applies
        assert set(F.variants) >= {"normal-nc-for-all-io", "mte-rfc-2020"}
        m = fam.build("6.17", "mainline", F.default_params)
        names = {p.name for p in m.properties() if p.kind == "always"}
        assert names == set(F.properties)
        assert len(m.init_states()) == 3
    assert not passthrough.applies("5.14", "cpfn-memslot-flag") and passthrough.applies("6.9", "cpfn-memslot-flag")
    assert not mte.applies("5.13", "mainline") and mte.applies("5.13", "mte-rfc-2020")


@pytest.mark.parametrize("era,violated", [
    ("5.14", False), ("6.9", True), ("6.17", False), ("6.18", False), ("7.1", False)])
def test_usemem_mismatch_6_9_to_6_16(era, violated):
    regions = ["nvgrace-usemem", "anon", "vfio-pci-bar"]
    assert ("no-cacheability-mismatch" in verdicts(passthrough, era, regions=regions)) is violated


def test_mainline_passthrough_6_17_holds_all_but_gmem_tags():
    assert verdicts(passthrough, "6.17") == set()
    assert verdicts(passthrough, "6.18") == {"tags-sanitised"}          # TV26 (UNVERIFIED)


@pytest.mark.parametrize("variant,prop,era", [
    ("device-as-cacheable", "mmio-never-cacheable", "6.9"),
    ("normal-nc-for-all-io", "nc-only-where-allowed", "6.17"),
    ("cacheable-pfnmap-no-fwb-check", "cacheable-needs-cmo-path", "6.17"),
])
def test_variant_verdicts_passthrough(variant, prop, era):
    assert prop in verdicts(passthrough, era, variant)


def test_nc_for_all_io_gicv_alone():
    assert "nc-only-where-allowed" in verdicts(passthrough, "6.17", "normal-nc-for-all-io", regions=["gicv2-gicv", "anon"])
    assert "nc-only-where-allowed" not in verdicts(passthrough, "6.17", regions=["gicv2-gicv", "anon"])


def test_cpfn_no_fwb_check_needs_a_non_fwb_host():
    assert "cacheable-needs-cmo-path" not in verdicts(passthrough, "6.17", "cacheable-pfnmap-no-fwb-check",
                                                      hosts=["grace"])


@pytest.mark.parametrize("era", ["6.9", "6.17", "7.1"])
def test_mte_family_mainline(era):
    assert verdicts(mte, era) == ({"tags-sanitised"} if era in ("6.18", "7.1") else set())


@pytest.mark.parametrize("era", ["5.13", "6.17"])
def test_mte_rfc_2020(era):
    v = verdicts(mte, era, "mte-rfc-2020")
    assert {"tags-only-on-tag-storage", "tags-survive-save-restore"} <= v


def holds(model, name, state) -> bool:
    return next(p for p in model.properties() if p.name == name).check(state)


def test_mte_memslot_check_only_mmap_over():
    """Alexandru Elisei's order dependence: the slot is created over allowed memory, then the VMM
    mmaps pmem over it; with no fault-time re-check the guest gets tags on memory without storage."""
    m = mte.build("6.17", "mte-memslot-check-only", mte.FAMILY.default_params)
    from memtypes.explore.model import act
    s = m.init_states()[2]                              # armv8.5-mte
    for a in (act("vmm", "enable_mte"), act("vmm", "start_vcpus"),
              act("vmm", "create_memslot", slot=0, backing="anon"),
              act("vmm", "mmap_over", slot=0, backing="pmem"), act("guest", "access", slot=0, s1="Normal-WB")):
        s = m.next_state(s, a)
        assert s is not None, a
    assert not holds(m, "tags-only-on-tag-storage", s)
    m = mte.build("6.17", "mainline", mte.FAMILY.default_params)
    s = m.init_states()[2]
    for a in (act("vmm", "enable_mte"), act("vmm", "start_vcpus"),
              act("vmm", "create_memslot", slot=0, backing="anon"),
              act("vmm", "mmap_over", slot=0, backing="pmem")):
        s = m.next_state(s, a)
    assert m.next_state(s, act("guest", "access", slot=0, s1="Normal-WB")) is None   # -EFAULT


def test_gmem_mte_describe_surfaces_unverified():
    from memtypes.explore.model import act
    m = mte.build("6.18", "mainline", mte.FAMILY.default_params)
    s = m.init_states()[2]
    # 6.18-7.1 refuse the slot in an MTE VM (P8) but grant MTE after the slot exists (conform, 6.18.5+)
    assert m.next_state(m.next_state(s, act("vmm", "enable_mte")),
                        act("vmm", "create_memslot", slot=0, backing="guest-memfd", flags="gmem_only")) is None
    for a in (act("vmm", "create_memslot", slot=0, backing="guest-memfd", flags="gmem_only"),
              act("vmm", "enable_mte"), act("vmm", "start_vcpus")):
        s = m.next_state(s, a)
    a = act("guest", "access", slot=0, s1="Normal-WB")
    n = m.next_state(s, a)
    assert "UNVERIFIED" in m.describe(s, a, n) and not holds(m, "tags-sanitised", n)
    assert "tags=S" in m.format_state(n)


def test_all_jobs_small():
    """The default jobs stay small (speed is measured by ``memtypes bench``, not here)."""
    for fam in (passthrough, mte):
        for v in ("mainline",) + fam.FAMILY.variants:
            for k in ERAS:
                if fam.FAMILY.applies_to(k, v):
                    n, *_ = bfs(fam.build(k, v, fam.FAMILY.default_params))
                    assert n < 5000
