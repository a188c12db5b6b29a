"""Family ``dma-iommufd``: iommufd IOASes with coherent and non-coherent hwpts, IOAS_COPY
sub-slices sharing one pages object, injected failures, CPU caches and a non-snooping device
(kernel-vfio.md sections 4, 1.6, 1.8, 6; TV20-TV23, TV27).

Alphabet: IOASes ``A`` and ``B``; devices ``hcc`` (IOMMU_CAP_ENFORCE_CACHE_COHERENCY: a CC hwpt)
and ``hnc`` (an NC hwpt).  ``hcc`` is allocated on ``A`` (TV22's coherent IOAS) and ``hnc`` on
``B``; ``hcc`` can also be allocated on ``B`` with an injected ``iopt_table_add_domain`` failure
(TV27 played on ``B``: the failed CC add underflows B's v1 counter, then ``hnc`` joins ``B``
unflushed).  With ``destroy``, ``hnc`` can be destroyed (off by default because it quadruples the
v1 space; pages are then unpinned by IOAS_UNMAP).  There is one IOAS_MAP of a pages object over
``P0,P1`` (``pages``) at IOVA 0 of ``A`` (with ``map_fail``, also an injected iommu_map failure) and its unmap,
an IOAS_COPY of each page of that area into ``B`` (two sub-slices of the same pages object, TV22),
and the unmap of ``B``.  Devices: non-snooped reads by ``hnc`` at both IOVAs (snooped ``hcc``
reads with ``cc_reads``).  On the data pages (``P1`` only by default, to keep the space small):
guest CPU read (and write with ``guest_write``), non-snooped writes by ``hnc``, evictions, and
host reads once unpinned (reuse).  The KVM-VFIO FILE_ADD of ``hnc`` happens at start.

Kernels: iommufd and the device-capability answer of ``vfio_file_enforced_coherent`` both date
from v6.2, so ``6.2`` (first iommufd era) and ``6.9`` (the series' base) are checked, and ``7.2``
(what ships now, 7.2-7.3): there io_pagetable.c/pages.c have no CPU cache flush for non-coherent
domains (the flush series was not merged: upstream = no flush), and an attach no longer
"upgrades" a non-CC hwpt (linux/dma/iommufd.attach_upgrades: from 6.12 a CC-capable device joins
it as it is, so TV26's upgrade never happens and its hwpt stays reported non-coherent).  Later
eras otherwise only change x86 EPT memtype details (section 2.6).
``coherency-reported`` here is KVM's registration, plus (TV26) no hwpt that reports
enforce_cache_coherency while a device can still reach SNP=0 PTEs through it; iommufd has no
VFIO_DMA_CC_IOMMU (the v1 counter is internal; its underflow shows up as a missed flush,
device-reads-owner-data).

Params (JSON; ``default_params`` below), besides the bounds above (``fail``, ``map_fail``,
``kvm``, ``guest_write``, ``data_pages``, ``cc_reads``, ``destroy``):

* ``pages`` (default 2): the size of the IOAS_MAP (every page at IOVA 0 of ``A``), one IOAS_COPY
  per page into ``B``, device reads at every IOVA; ``data_pages`` are pages below it.
* ``table`` (default ``true``): the table-driven form (:mod:`.dma_iommufd_table`: the same
  states, transitions and traces, explored per page and vectorised with numpy); ``false``: the
  model over :mod:`memtypes.linux.dma.iommufd` itself, state by state.

* ``tv26`` (default ``false``): the Intel VT-d in-place "upgrade" (kernel-vfio.md 2.2, 2.3, 5 item
  2, TV26).  Adds ``hnc`` detach (its hwpt and mappings stay), the attach of the CC-capable
  ``hcc`` to ``hnc``'s hwpt on ``B`` (iommufd asks the domain to enforce coherency), ``hcc`` reads
  at both IOVAs, and the KVM-VFIO FILE_ADD of ``hcc`` at start.  On ``6.2`` (<= v6.6, before
  e645c20e8e9c) a second-stage upgrade succeeds with the old PTEs still SNP=0, so
  ``coherency-reported`` is violated in every variant; on ``6.9`` (v6.7+) the attach fails with
  -EINVAL once the domain has had mappings, and the property holds.  (6.6.y carries the fix too
  per the reference; exact stable release UNVERIFIED, the model splits at 6.7.)  On ``7.2``
  (from 6.12: iommufd.attach_upgrades) there is no upgrade: ``hcc`` joins the non-CC hwpt and its
  DMA is non-snooped at every IOVA; KVM stays registered non-coherent because ``hnc``'s file was
  added too, so the property holds (with ``hcc``'s file alone KVM would hear "coherent":
  vfio_file_enforced_coherent() asks the device's capability, not its hwpt).
* ``stage`` (default ``"second"``): ``"second"`` or ``"first"``, the Intel stage of ``hnc``'s hwpt;
  a first-stage upgrade sets PGSNP for every mapping and is allowed in every era.

From the API: ``run_matrix([FAMILY], kernel="6.2", params={"dma-iommufd": {"tv26": True}})``
(or ``FAMILY.build("6.2", variant, {**FAMILY.default_params, "tv26": True})``).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from memtypes.check.families.dma_type1 import LEGEND, SOURCE, DmaModel, dma_applies, variant_name
from memtypes.check.family import Family, LiveVariants, int_param
from memtypes.errors import InputError
from memtypes.explore.model import Property, act
from memtypes.linux.dma import Group, apply, iommufd, make_env
from memtypes.linux.dma import variants as dma_variants

KERNELS = ("6.2", "6.9", "7.2")
VARIANTS = ("vfio-flush-v1", "vfio-flush-reviewed")


def iommufd_init_text(params: Mapping[str, Any], index: int) -> str:
    n = params.get("pages", 2)
    return (f"IOASes A and B, no hwpt; devices hcc (coherent) and hnc (non-coherent); pages "
            f"P0..P{n - 1} hold S (a previous owner's data) in DRAM, nothing cached; KVM-VFIO "
            "FILE_ADD of hnc done")


MAX_PAGES = 10
"""Most pages a model is built with: the tables grow with 2**pages (12 pages take 1.6 GB
before the search starts); the default is 2, the benchmark 3."""


def build(kernel: str, variant: str, params: Mapping[str, Any]):
    """The family's model: its table-driven form (:mod:`.dma_iommufd_table`, same states,
    transitions and traces, explored per page) unless param ``table`` is false; else the
    :class:`DmaModel` over :mod:`memtypes.linux.dma.iommufd`."""
    name, env, s0, alpha, props = parts(kernel, variant, params)
    if params.get("table", True):
        from memtypes.check.families.dma_iommufd_table import IommufdTable
        return IommufdTable(name, env, s0, alpha, props)
    return DmaModel(name, env, s0, alpha, props, canon=_canon)


def parts(kernel: str, variant: str, params: Mapping[str, Any]):
    """``(name, env, initial state, alphabet, properties)`` of the model over the iommufd state."""
    n = int_param(params, "dma-iommufd", "pages", 2, hi=MAX_PAGES)
    fail = bool(params.get("fail", True))
    kvm = bool(params.get("kvm", True))
    gw = bool(params.get("guest_write", False))
    map_fail = bool(params.get("map_fail", False))
    cc_reads = bool(params.get("cc_reads", False))
    destroy = bool(params.get("destroy", False))
    tv26 = bool(params.get("tv26", False))
    stage = str(params.get("stage", "second"))
    if stage not in ("second", "first"):
        raise InputError(f"unknown stage {stage!r}", where="dma-iommufd.stage", expected="second or first")
    fs = stage == "first"
    data = params.get("data_pages", (1,))
    if not isinstance(data, (list, tuple)) or any(
            isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < n for p in data):
        raise InputError(f"{data!r} is not a list of pages below pages={n}", where="dma-iommufd.data_pages",
                         expected=f"a list of pages from 0 to {n - 1} (pages={n})")
    data = tuple(data)
    env = make_env(variant_name(variant), kernel, npages=n,
                   groups=(Group("hcc", nc=False), Group("hnc", nc=True)))
    s0 = iommufd.initial(env, ("A", "B"))
    if kvm:
        # The VMM adds the device to the KVM-VFIO device at start (v6.2+: the device capability
        # decides, so the order does not matter; section 2.4).
        s0 = apply(env, s0, ("kvm_add", "hnc"))[0]
        if tv26:
            s0 = apply(env, s0, ("kvm_add", "hcc"))[0]
    H = ("hcc", "hnc")
    alpha = []

    def add(a, op, guard):
        alpha.append((a, op, guard))

    def has_area(s, io, iova):
        for x in s.ioas:
            if x[0] == io:
                return any(ar[0] <= iova < ar[0] + ar[3] for ar in x[1])
        return False

    for io, h in (("A", "hcc"), ("B", "hnc")):
        op = ("hwpt_alloc", io, h, {"fs": True}) if fs and h == "hnc" else ("hwpt_alloc", io, h)
        add(act("iommufd", "hwpt_alloc", ioas=io, dev=h), op,
            lambda s, h=h: iommufd.hwpt_of(s, h) is None and iommufd.dev_hwpt(s, h) is None)
    if tv26:
        add(act("iommufd", "dev_detach", dev="hnc"), ("dev_detach", "hnc"),
            lambda s: iommufd.dev_hwpt(s, "hnc") is not None)
        add(act("iommufd", "dev_attach", dev="hcc", hwpt="hnc"), ("dev_attach", "hcc", "hnc"),
            lambda s: iommufd.dev_hwpt(s, "hcc") is None and iommufd.hwpt_of(s, "hnc") is not None)
    if fail:
        add(act("iommufd", "hwpt_alloc", ioas="B", dev="hcc", fail="add_domain"),
            ("hwpt_alloc", "B", "hcc", {"fail": True}),
            # bound: only on an IOAS without domains and a zero counter (the TV27 setting), so
            # the v1 counter wraps once instead of walking down
            lambda s: iommufd.hwpt_of(s, "hcc") is None and not s.ioas[1][2]
            and s.ioas[1][3] == 0)
    if destroy:
        add(act("iommufd", "hwpt_destroy", dev="hnc"), ("hwpt_destroy", "hnc"),
            lambda s: iommufd.hwpt_of(s, "hnc") is not None)
    add(act("iommufd", "ioas_map", ioas="A", iova=0, pages=n), ("ioas_map", "A", 0, 0, n),
        lambda s: not has_area(s, "A", 0))
    if map_fail:
        add(act("iommufd", "ioas_map", ioas="A", iova=0, pages=n, fail="iommu_map"),
            ("ioas_map", "A", 0, 0, n, {"fail": True}),
            lambda s: not has_area(s, "A", 0) and bool(s.ioas[0][2]))
    add(act("iommufd", "ioas_unmap", ioas="A", iova=0, pages=n), ("ioas_unmap", "A", 0, n),
        lambda s: has_area(s, "A", 0))
    for i in range(n):
        add(act("iommufd", "ioas_copy", src="A", src_iova=i, pages=1, dst="B", dst_iova=i),
            ("ioas_copy", "A", i, 1, "B", i),
            lambda s, i=i: has_area(s, "A", i) and not has_area(s, "B", i))
    add(act("iommufd", "ioas_unmap", ioas="B", iova=0, pages=n), ("ioas_unmap", "B", 0, n),
        lambda s: bool(s.ioas[1][1]))
    for p in data:
        add(act("guest", "cpu_read", page=p), ("guest_read", p),
            lambda s, p=p: iommufd.pinned(env, s)[p])
        if gw:
            add(act("guest", "cpu_write", page=p, value="G"), ("guest_write", p, "G"),
                lambda s, p=p: iommufd.pinned(env, s)[p])
    for i in range(n):
        for h in (H if cc_reads or tv26 else ("hnc",)):
            add(act(h, "dev_read", iova=i), ("dev_read", h, i),
                lambda s, h=h, i=i: iommufd.resolve(s, h, i) is not None)
    for i in data:
        add(act("hnc", "dev_write", iova=i, value="B"), ("dev_write", "hnc", i, "B"),
            lambda s, i=i: iommufd.resolve(s, "hnc", i) is not None)
    for p in data:
        add(act("host", "reuse_read", page=p), ("host_read", p),
            lambda s, p=p: s.populated[p] and not iommufd.pinned(env, s)[p])
        add(act("cpu", "evict", page=env.names[p]), ("evict", p),
            lambda s, p=p: s.lines[p][1] != "I")

    def stable(s) -> bool:
        h = iommufd.pinned(env, s)
        for p, ln in enumerate(s.lines[:env.npages]):
            if not h[p] and ln[1] == "C" and ln[2] != ln[0]:
                return False
        return True

    def coherency(s) -> bool:
        if iommufd.stale_path(s):
            return False                      # TV26: "coherent" hwpt with SNP=0 PTEs in use
        for f in s.kvm_files:
            r = iommufd.dev_hwpt(s, f)
            if r is not None and r[1][1] and not s.kvm_nc:
                return False
        return True

    def nc_attached(s) -> bool:
        return iommufd.hwpt_of(s, "hnc") is not None

    props = [
        Property("device-reads-owner-data", "always", lambda s: not s.bad_read,
                 "a non-snooping device must never read the previous owner's data", SOURCE),
        Property("host-consistent-after-unpin", "always", stable,
                 "no stale clean line above newer memory once a page is unpinned", SOURCE),
        Property("coherency-reported", "always", coherency,
                 "KVM's non-coherent DMA registration matches the NC hwpts attached", SOURCE),
        Property("device-read-happened", "sometimes", lambda s: s.dev_read),
        Property("page-unpinned", "sometimes", lambda s: any(
            pop and not h for pop, h in zip(s.populated, iommufd.pinned(env, s)))),
        Property("nc-domain-attached", "sometimes", nc_attached),
    ]
    return f"dma-iommufd[{kernel},{variant}]", env, s0, alpha, props


def _canon(s):
    """Drop the sticky ``unpinned`` observation (page-unpinned is derived from the state here)."""
    return s._replace(unpinned=False) if s.unpinned else s


FAMILY = Family(
    name="dma-iommufd",
    description="iommufd: CC and NC hwpts, IOAS_MAP/COPY (sub-slices)/UNMAP, hwpt add and "
                "destroy, injected failures, CPU caches and a non-snooping device",
    build=build,
    default_params={"pages": 2, "fail": True, "map_fail": False, "kvm": True, "guest_write": False,
                    "data_pages": [1], "cc_reads": False, "destroy": False, "tv26": False,
                    "stage": "second", "table": True},
    variants=LiveVariants(VARIANTS, functools.partial(dma_variants.user_variants, "iommufd")),
    init_text=iommufd_init_text,
    legend=LEGEND,
    applies=functools.partial(dma_applies, "iommufd"),
    kernels=KERNELS,
    properties=("device-reads-owner-data", "host-consistent-after-unpin", "coherency-reported"),
    bench_params={"pages": 3, "data_pages": [0, 1, 2], "guest_write": True},
)
