"""Family ``dma-type1``: VFIO type1 with a coherent and a non-coherent group, CPU caches and a
non-snooping device (kernel-vfio.md sections 3, 6, 7).

Alphabet (small and bounded): groups ``gcc`` (its IOMMU enforces coherency) and ``gnc`` (no Snoop
Control: NC domain), same iommu_ops; user pages ``P0..P{n-1}`` (param ``pages``, default 1);
dma ranges one page each; attach (plain, with a device probing the fgsp window, with an injected
replay iommu_map failure), detach, MAP_DMA (plain and with an injected vfio_iommu_map failure), UNMAP_DMA,
release; guest CPU read/write of pinned pages; device read (both groups) and non-snooped write
(``gnc``); eviction of any cached line; host read of an unpinned page (reuse); KVM-VFIO
FILE_ADD of ``gnc``.

Param ``emulated`` (default ``false``): adds the emulated (mdev) group ``gem``: its attach and
detach, VFIO_PIN_PAGES / VFIO_UNPIN_PAGES of each page by its device (vpfn refcount bounded by 2),
its CPU-side (coherent) reads of pinned pages; UNMAP_DMA then notifies it to unpin first
(kernel-vfio.md 3.2).  The other params bound the default alphabet: ``pages`` (1), ``probe``
(fgsp-window probe attach), ``fail`` (injected replay / map failures), ``kvm`` (FILE_ADD of
``gnc``).  Without emulated groups the family is explored in its table-driven form
(:mod:`.dma_type1_table`: the same states, transitions and traces, and the vectorised explorer
can run it: ``pages=3`` is 0.8-1.4 million states per job); param ``table=false`` explores the
model over :mod:`memtypes.linux.dma.type1` directly instead.

Kernels: the DMA rules of type1 do not depend on the arm64 KVM eras.  What changes is what KVM is
told (section 2.4): ``5.14`` stands for <= v6.1, where ``vfio_file_enforced_coherent`` of a group
without a container is "coherent" (FILE_ADD before attach leaves KVM unregistered: TV24, so
``coherency-reported`` is violated there in every variant; <= v5.18 UNVERIFIED), ``6.2`` for the
device-capability rule (v6.2+), ``6.9`` for the era of the code the series was written against
(base e67572cd2204), ``7.2`` for what ships now: drivers/vfio/vfio_iommu_type1.c,
drivers/vfio/group.c and virt/kvm/vfio.c are identical in 7.2.13 and 7.3.4 and have no CPU cache
flush for non-coherent domains (the series was not merged: upstream = no flush), and the attach
no longer runs vfio_test_domain_fgsp() (type1.has_fgsp), so the probe attach is not offered there;
later eras change only x86 EPT memtype details (section 2.6), which these properties do
not observe.  With ``emulated``, ``kvm_file_add`` of ``gem`` is in the alphabet too: from 6.2 an
mdev group is reported non-coherent to KVM (its devices have no IOMMU).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from memtypes.arch import cache
from memtypes.check.family import Family, LiveVariants, int_param
from memtypes.explore.model import Action, Property, act
from memtypes.linux.dma import Group, bind, make_env, type1
from memtypes.linux.dma import variants as dma_variants

KERNELS = ("5.14", "6.2", "6.9", "7.2")
VARIANTS = ("vfio-flush-v1", "vfio-flush-reviewed")
SOURCE = ('"Enforce CPU cache flush for non-coherent device assignment" v1 '
          "<20240507061802.20184-1-yan.y.zhao@intel.com> and its review (kernel-vfio.md 1.7)")


def variant_name(variant: str) -> str:
    return "vfio-upstream" if variant == "mainline" else variant


LEGEND = ("F@point(pages): a CPU cache flush (clean+invalidate) at that flush point; "
          "'no flush': the step flushed nothing; zero-fill(P): the kernel zeroes the page at its "
          "first pin; 'X read P=v': the value read; values: S a previous owner's data, S' a "
          "scratch page's, 0 the zero fill, G guest data, B device data; A->B: reads A now, B "
          "once the stale clean line is evicted; gcc/hcc: a device whose IOMMU enforces "
          "coherency, gnc/hnc: a non-snooping device in a non-coherent domain")


def type1_init_text(params: Mapping[str, Any], index: int) -> str:
    n = params.get("pages", 1)
    return (f"a type1 container, nothing attached; groups gcc (coherent) and gnc (non-coherent"
            f"){' and the emulated gem' if params.get('emulated') else ''}; user pages P0..P{n - 1} "
            "hold S (a previous owner's data) in DRAM, nothing cached")


def dma_applies(backend: str, kernel: str, variant: str) -> bool:
    """A DMA variant applies to the backends and DMA eras it names (built-ins: all)."""
    if variant == "mainline":
        return True
    v = dma_variants.DMA_VARIANTS.get(variant)
    return v is not None and v.applies(backend, kernel)


def _applies(kernel: str, variant: str) -> bool:
    return dma_applies("type1", kernel, variant)


class DmaModel:
    """An explore Model over a DMA backend state; actions are a fixed alphabet filtered by guards.
    ``alphabet``: ``[(Action, op tuple, guard(state) -> bool), ...]`` in a deterministic order."""

    def __init__(self, name, env, init, alphabet, props, canon=None):
        self.name = name
        self._canon = canon
        self.env = env
        self._init = init
        self._alphabet = alphabet
        self._props = props
        backend = "type1" if isinstance(init, type1.T1) else "iommufd"
        self._bound = [(a, bind(env, op, backend), g) for a, op, g in alphabet]
        self._fns = {a: fn for a, fn, _g in self._bound}

    def init_states(self):
        return [self._init]

    def actions(self, s):
        return [a for a, _op, g in self._alphabet if g(s)]

    def next_state(self, s, a: Action):
        ns, _ev = self._fns[a](s)
        if self._canon is not None:
            ns = self._canon(ns)
        return None if ns == s else ns

    def successors(self, s):
        canon = self._canon
        for a, fn, g in self._bound:
            if g(s):
                ns, _ev = fn(s)
                if canon is not None:
                    ns = canon(ns)
                if ns != s:
                    yield a, ns

    def properties(self):
        return self._props

    def events(self, s, a: Action):
        return self._fns[a](s)[1]

    def describe(self, s, a: Action, n=None) -> str:
        """The flushes done and the values read by this step."""
        ev = self.events(s, a)
        parts = []
        for e in ev:
            if e[0].startswith("F@"):
                parts.append(f"{e[0]}({','.join(e[1])})")
            elif e[0] == "read":
                parts.append(f"{e[1]} read {e[2]}={e[3]}" if e[2] else f"{e[1]}={e[3]}")
            elif e[0] == "zero":
                parts.append(f"zero-fill({','.join(e[1])})")
            elif e[0] == "err":
                parts.append(f"error {e[1]} in {e[2]}")
            elif e[0] == "kvm":
                parts.append(f"kvm {e[1]} non-coherent DMA")
            elif e[0] == "notify":
                parts.append(f"notify emulated devices to unpin({','.join(e[1])})")
            elif e[0] == "skip":
                parts.append(f"no CLFLUSH on {e[1]} (uncacheable)")
        if not any(e[0].startswith("F@") for e in ev):
            parts.append("no flush")
        return "; ".join(parts)

    def format_state(self, s) -> str:
        env = self.env
        lines = s.lines if hasattr(s, "pins") else s.lines[:env.npages]  # iommufd: no fgsp pages
        mem = " ".join(f"{env.names[i]}[{cache.fmt(ln)}]" for i, ln in enumerate(lines))
        head = {f: getattr(s, f) for f in s._fields if f not in ("lines", "populated")}
        return f"{mem} " + " ".join(f"{k}={v}" for k, v in head.items())


def _user_pages_stable(s, npages, pinned) -> bool:
    for p, ln in enumerate(s.lines):
        if (p >= npages or not pinned(s, p)) and ln[1] == "C" and ln[2] != ln[0]:
            return False
    return True


MAX_PAGES = 16
"""Most pages a model is built with (1000 pages took 18 s to build before the search);
the default is 1, the benchmark 3."""


def build(kernel: str, variant: str, params: Mapping[str, Any]):
    """The family's model: its table-driven form (:mod:`.dma_type1_table`, same states,
    transitions and traces, explored per page) unless emulated groups are on or param ``table``
    is false; else the :class:`DmaModel` over :mod:`memtypes.linux.dma.type1`."""
    name, env, s0, alpha, props = parts(kernel, variant, params)
    if not params.get("emulated", False) and params.get("table", True):
        from memtypes.check.families.dma_type1_table import Type1Table
        return Type1Table(name, env, alpha, props)
    return DmaModel(name, env, s0, alpha, props)


def parts(kernel: str, variant: str, params: Mapping[str, Any]):
    """``(name, env, initial state, alphabet, properties)`` of the model over the type1 state."""
    n = int_param(params, "dma-type1", "pages", 1, hi=MAX_PAGES)
    probe = bool(params.get("probe", True)) and type1.has_fgsp(make_env(variant_name(variant), kernel))
    fail = bool(params.get("fail", True))
    kvm = bool(params.get("kvm", True))
    emulated = bool(params.get("emulated", False))
    groups = (Group("gcc", nc=False), Group("gnc", nc=True))
    if emulated:
        groups += (Group("gem", emulated=True),)
    env = make_env(variant_name(variant), kernel, npages=n, groups=groups)
    s0 = type1.initial(env)
    G = ("gcc", "gnc")
    alpha = []

    def add(a, op, guard):
        alpha.append((a, op, guard))

    for g in G:
        add(act("vfio", "attach", group=g), ("attach", g),
            lambda s, g=g: not type1.attached(s, g))
    if probe:
        add(act("vfio", "attach", group="gnc", probe=True), ("attach", "gnc", {"probe": "read"}),
            lambda s: not type1.attached(s, "gnc"))
    if fail:
        for g in G:
            add(act("vfio", "attach", group=g, fail="replay"), ("attach", g, {"fail_at": 0}),
                lambda s, g=g: not type1.attached(s, g) and bool(s.dmas))
    for g in G:
        add(act("vfio", "detach", group=g), ("detach", g), lambda s, g=g: type1.attached(s, g))
    for p in range(n):
        add(act("vfio", "map_dma", iova=p, pages=1), ("map", p, 1),
            lambda s, p=p: s.iommu and all(d[0] != p for d in s.dmas))
        if fail:
            add(act("vfio", "map_dma", iova=p, pages=1, fail="iommu_map"),
                ("map", p, 1, {"fail_at": 0}),
                lambda s, p=p: bool(s.domains) and all(d[0] != p for d in s.dmas))
        add(act("vfio", "unmap_dma", iova=p, pages=1), ("unmap", p, 1),
            lambda s, p=p: any(d[0] == p for d in s.dmas))
    add(act("vfio", "release"), ("release",), lambda s: s.iommu)
    if emulated:
        add(act("vfio", "attach", group="gem"), ("attach", "gem"),
            lambda s: "gem" not in s.emulated)
        add(act("vfio", "detach", group="gem"), ("detach", "gem"), lambda s: "gem" in s.emulated)
        for p in range(n):
            add(act("gem", "pin_pages", iova=p), ("pin_pages", "gem", p),
                lambda s, p=p: "gem" in s.emulated and s.vpfn[p] < 2
                and any(d[0] <= p < d[0] + d[1] for d in s.dmas))
            add(act("gem", "unpin_pages", iova=p), ("unpin_pages", "gem", p),
                lambda s, p=p: s.vpfn[p] > 0)
            add(act("gem", "dev_read", iova=p), ("dev_read", "gem", p),
                lambda s, p=p: "gem" in s.emulated and s.vpfn[p] > 0)
    for p in range(n):
        add(act("guest", "cpu_read", page=p), ("guest_read", p), lambda s, p=p: s.pins[p] > 0)
        add(act("guest", "cpu_write", page=p, value="G"), ("guest_write", p, "G"),
            lambda s, p=p: s.pins[p] > 0)
        for g in G:
            add(act(g, "dev_read", iova=p), ("dev_read", g, p),
                lambda s, p=p, g=g: type1.domain_of(s, g) is not None and type1.mapped_page(s, p))
        add(act("gnc", "dev_write", iova=p, value="B"), ("dev_write", "gnc", p, "B"),
            lambda s, p=p: type1.domain_of(s, "gnc") is not None and type1.mapped_page(s, p))
        add(act("host", "reuse_read", page=p), ("host_read", p),
            lambda s, p=p: s.pins[p] == 0 and s.populated[p])
    for p in range(n):
        add(act("cpu", "evict", page=env.names[p]), ("evict", p),
            lambda s, p=p: s.lines[p][1] != "I")
    if kvm:
        add(act("vmm", "kvm_file_add", file="gnc"), ("kvm_add", "gnc"),
            lambda s: "gnc" not in s.kvm_files)
        if emulated:
            # what KVM is told about an mdev group (kvm_vfio.file_enforced_coherent)
            add(act("vmm", "kvm_file_add", file="gem"), ("kvm_add", "gem"),
                lambda s: "gem" not in s.kvm_files)

    def pinned(s, p):
        return s.pins[p] > 0

    def coherency(s) -> bool:
        if s.iommu and type1.cc_iommu(env, s) != (0 if type1.nc_domains(s) else 1):
            return False
        for f in s.kvm_files:
            d = type1.domain_of(s, f)
            if d is not None and d[2] and not s.kvm_nc:
                return False
        return True

    props = [
        Property("device-reads-owner-data", "always", lambda s: not s.bad_read,
                 "a non-snooping device must never read the previous owner's data", SOURCE),
        Property("host-consistent-after-unpin", "always",
                 lambda s: _user_pages_stable(s, n, pinned),
                 "no stale clean line above newer memory once a page is unpinned", SOURCE),
        Property("coherency-reported", "always", coherency,
                 "VFIO_DMA_CC_IOMMU and KVM's registration match the NC domains", SOURCE),
        Property("device-read-happened", "sometimes", lambda s: s.dev_read),
        Property("page-unpinned", "sometimes", lambda s: s.unpinned),
        Property("nc-domain-attached", "sometimes", lambda s: type1.nc_domains(s) > 0),
    ]
    if emulated:
        props.append(Property("external-pin-held", "sometimes", lambda s: any(s.vpfn)))
    return f"dma-type1[{kernel},{variant}]", env, s0, alpha, props


FAMILY = Family(
    name="dma-type1",
    description="VFIO type1: coherent and non-coherent domains, pin/map/unmap/unpin, replay, "
                "fgsp, injected map failures, CPU caches and a non-snooping device",
    build=build,
    default_params={"pages": 1, "probe": True, "fail": True, "kvm": True, "emulated": False,
                    "table": True},
    variants=LiveVariants(VARIANTS, functools.partial(dma_variants.user_variants, "type1")),
    init_text=type1_init_text,
    legend=LEGEND,
    applies=_applies,
    kernels=KERNELS,
    properties=("device-reads-owner-data", "host-consistent-after-unpin", "coherency-reported"),
    bench_params={"pages": 3},
)
