"""iommufd (drivers/iommu/iommufd/: io_pagetable.c, pages.c, hw_pagetable.c) with the CPU cache
flushes of the three variants (kernel-vfio.md sections 4, 1.6, 1.8).

State (:class:`Fd`, an immutable NamedTuple):

* ``lines``/``populated``: page memory and whether the zero fill happened (as in type1);
* ``pages``: ``(pid, first, n, bit)`` the ``iopt_pages`` objects: physical pages
  ``first..first+n-1``; ``bit`` = v1 ``cache_flush_required`` / reviewed sticky "permanently
  non-coherent" bit (Jason <20240521160442.GI20229@nvidia.com>); pid = smallest free int;
* ``ioas``: ``(name, areas, hwpts, cnt)``; ``areas`` = ``(iova, pid, off, n)`` sorted by IOVA,
  each a (sub-)slice ``off..off+n-1`` of one pages object -- several areas, even in several
  IOASes, can share one pages object (IOAS_COPY); ``hwpts`` = ``(hid, nc, fs, hm, snp0, devs)``
  in insertion order (the first is the storage domain): ``nc`` the hwpt does not enforce cache
  coherency; ``fs`` an Intel VT-d first-stage domain (PGSNP in the PASID entry) rather than a
  second-stage one (SNP per PTE); ``hm`` Intel's ``has_mappings`` (v6.7+, e645c20e8e9c: set by
  the first map, never cleared -- UNVERIFIED beyond the reference's "fails if has_mappings";
  recorded only where it can decide something: NC second-stage hwpts on v6.7+); ``snp0`` the
  IOVAs whose PTEs were written with SNP=0 before an in-place "upgrade" of a second-stage domain
  (<= v6.6, TV26) and are still mapped; ``devs`` the devices attached; ``cnt`` = ``noncoherent_domain_cnt`` (v1: an unsigned
  32-bit counter that *can underflow*, TV27; reviewed: maintained in add/remove_domain);
* ``kvm_files``/``kvm_nc``, ``dev_read``/``bad_read``/``unpinned`` as in type1.

Each pages object pins its own span: ``(pid, page)`` is pinned iff an area of ``pid`` covering
``page`` lies in an IOAS with at least one hwpt (domains hold the pins; in-kernel accesses are not
modelled); a physical page is pinned while any pages object pins it.  Hwpt ids are the names of
the devices they were allocated for (IOMMU_HWPT_ALLOC for that device, then attach); a device can
later be detached (the hwpt and its mappings stay) and another device attached to the hwpt
(``dev_attach``, TV26).  The IOMMU is Intel VT-d where the enforce op matters (section 2.2).
"""

from __future__ import annotations

from typing import NamedTuple

from memtypes.arch import cache
from memtypes.arch.reason import Reason
from memtypes.linux.dma import variants as V
from memtypes.linux.dma.common import Env, flush_at, flush_pages, initial_lines, zero_fill
from memtypes.linux.dma.type1 import cpu_read, cpu_write, evict  # noqa: F401 (same semantics)

SRC = "drivers/iommu/iommufd"
V1_PATCH = "<20240507062212.20535-1-yan.y.zhao@intel.com>"
U32 = 1 << 32


class Fd(NamedTuple):
    lines: tuple
    populated: tuple
    pages: tuple
    ioas: tuple
    kvm_files: tuple
    kvm_nc: bool
    dev_read: bool
    bad_read: bool
    unpinned: bool


def initial(env: Env, ioases=("A", "B"), init=None) -> Fd:
    """IOASes ``ioases`` allocated (IOMMU_IOAS_ALLOC), empty; pages hold ``S`` (or ``init``)."""
    lines, pop = initial_lines(env, init)
    return Fd(lines, pop, (), tuple((n, (), (), 0) for n in ioases), (), False,
              False, False, False)


# -- derived values ---------------------------------------------------------------------------

def _ioas_index(s: Fd, name: str) -> int:
    for i, io in enumerate(s.ioas):
        if io[0] == name:
            return i
    raise KeyError(name)


def _pages(s: Fd, pid: int):
    for pg in s.pages:
        if pg[0] == pid:
            return pg
    raise KeyError(pid)


def area_pages(s: Fd, area) -> tuple:
    """The physical pages of an area: its sub-slice of its pages object."""
    pg = _pages(s, area[1])
    a = pg[1] + area[2]
    return tuple(range(a, a + area[3]))


def held(env: Env, s: Fd, ioas=None) -> set:
    """The pins: ``{(pid, page)}`` -- each pages object pins its own span (pin_user_pages per
    iopt_pages), held while an area of it lies in an IOAS with at least one domain."""
    h = set()
    for io in (s.ioas if ioas is None else ioas):
        if io[2]:
            for ar in io[1]:
                pid = ar[1]
                for p in area_pages(s, ar):
                    h.add((pid, p))
    return h


def pinned(env: Env, s: Fd) -> list:
    """Per user page: pinned by at least one pages object."""
    out = [False] * env.npages
    for _pid, p in held(env, s):
        out[p] = True
    return out


def hwpt_of(s: Fd, hid: str):
    """``(ioas index, hwpt record)`` of hwpt ``hid``, or None."""
    for i, io in enumerate(s.ioas):
        for h in io[2]:
            if h[0] == hid:
                return i, h
    return None


def dev_hwpt(s: Fd, dev: str):
    """``(ioas index, hwpt record)`` of the hwpt device ``dev`` is attached to, or None."""
    for i, io in enumerate(s.ioas):
        for h in io[2]:
            if dev in h[5]:
                return i, h
    return None


def nc_hwpts(s: Fd, name: str) -> int:
    return sum(1 for h in s.ioas[_ioas_index(s, name)][2] if h[1])


def resolve(s: Fd, dev: str, iova: int):
    """``(phys page, ns)`` device ``dev`` reaches at ``iova`` through its hwpt, or None.  ``ns``:
    the access can be non-snooped -- an NC hwpt (worst case, section 6), or an old SNP=0 PTE of
    an upgraded second-stage hwpt (TV26: Snoop Control forces snoop only where SNP=1)."""
    r = dev_hwpt(s, dev)
    if r is None:
        return None
    h = r[1]
    io = s.ioas[r[0]]
    for ar in io[1]:
        if ar[0] <= iova < ar[0] + ar[3]:
            return area_pages(s, ar)[iova - ar[0]], h[1] or iova in h[4]
    return None


def stale_path(s: Fd) -> bool:
    """A hwpt that reports enforce_cache_coherency with a device attached still has SNP=0 PTEs
    (TV26, <= v6.6): coherent by every report, non-coherent in fact."""
    return any(not h[1] and h[4] and h[5] for io in s.ioas for h in io[2])


def _tracks_hm(env: Env, nc: bool, fs: bool) -> bool:
    """Whether Intel's has_mappings can decide an enforce: only on v6.7+ (e645c20e8e9c; in
    6.6.y too per the reference -- the exact stable release UNVERIFIED, the model keeps 6.6 on
    the old side as the brief's TV26 split does), second stage, not yet enforcing."""
    return nc and not fs and env.kernel.at_least(6, 7)


def attach_upgrades(env: Env) -> bool:
    """Whether IOMMU_DEVICE_ATTACH of an IOMMU_CAP_ENFORCE_CACHE_COHERENCY-capable device to an
    existing non-CC hwpt asks the domain to enforce coherency (the "upgrade", step 3 of
    :func:`dev_attach`; reference kernel-vfio.md 2.3, up to the 6.9 base).  Not in 6.12.118,
    7.2.13 or 7.3.4: drivers/iommu/iommufd/device.c iommufd_hw_pagetable_attach() has no
    enforce call, iommufd_hwpt_paging_enforce_cc() runs only in iommufd_hwpt_paging_alloc(),
    whose comment says a non-CC hwpt "can be later reused by another device (either non-CC or
    CC)": the capable device joins the non-coherent hwpt as it is.  The model splits at 6.12
    (a stable tree does not drop such code, so mainline 6.12 lacked it; the release that
    removed it, 6.10-6.12, is UNVERIFIED)."""
    return not env.kernel.at_least(6, 12)


def _set_bit(pages: tuple, pid: int) -> tuple:
    return tuple((p[0], p[1], p[2], True) if p[0] == pid else p for p in pages)


def _pin_new(env, lines, pop, was, now, pid, pages_of_area, ev):
    newly = tuple(p for p in pages_of_area if (pid, p) in now and (pid, p) not in was)
    if newly:
        zero_fill(env, lines, pop, newly, ev)


# -- fill / unfill -------------------------------------------------------------------------------

def _fill(env: Env, s: Fd, pages: tuple, io, area, nc_target: bool, fn: str, lines, ev,
          point: str | None = None) -> tuple:
    """The pre-map flush of iopt_area_fill_domain (``fn`` = F@fill_domain, one new NC/CC
    domain) and iopt_area_fill_domains (``fn`` = F@fill_domains, a new area into every domain).

    v1 (5/5): ``cfr = iopt.cnt > 0 and not pages.bit``; if cfr: set the pages bit and flush the
    area's span -- a sub-slice area of an already-flagged pages object is skipped (TV22 gap,
    Jason 2024-05-14 quoted in <ZkRe/HeAIgscsYZw@...>).
    Reviewed (1.8): flush whenever the target domain is NC (fill_domain: this hwpt;
    fill_domains: the IOAS has any NC domain); the pages bit is only for the unpin flush.
    The variant's flush point (``point``: ``attach_nc`` for F@fill_domain, ``pin_map`` or
    ``ioas_copy`` for F@fill_domains) decides the flush itself; the bit is the base's
    bookkeeping.  Returns the new ``pages`` tuple."""
    if point is None:
        point = "attach_nc" if fn == "F@fill_domain" else "pin_map"
    v = env.variant
    flush = False
    if v == V.V1:
        pg = _pages(s._replace(pages=pages), area[1])
        if io[3] > 0 and not pg[3]:
            pages = _set_bit(pages, area[1])
            flush = True
    elif v == V.REVIEWED and nc_target:
        pages = _set_bit(pages, area[1])
        flush = True
    span = area_pages(s._replace(pages=pages), area)
    if flush_at(env, point, span, flush):
        flush_pages(env, lines, span, fn, ev)
    return pages


def _batch_unpin(env: Env, s: Fd, pages: tuple, area, was, now, lines, ev) -> bool:
    """batch_unpin for the span of ``area`` no longer held: v1/reviewed FLUSH it first when the
    pages bit is set (5/5; reviewed: sticky bit, Jason <20240521160442.GI20229@nvidia.com>).
    Returns whether something was unpinned."""
    pid = area[1]
    gone = tuple(p for p in area_pages(s._replace(pages=pages), area)
                 if (pid, p) in was and (pid, p) not in now)
    if not gone:
        return False
    if flush_at(env, "unpin", gone, bool(env.variant and _pages(s._replace(pages=pages), pid)[3])):
        flush_pages(env, lines, gone, "F@batch_unpin", ev)
    for p in gone:
        was.discard((pid, p))                 # an area sharing the span unpins it once
    return True


# -- ioctls ----------------------------------------------------------------------------------------

def hwpt_alloc(env: Env, s: Fd, ioas: str, hid: str, *, fail: bool = False, fs: bool = False):
    """IOMMU_HWPT_ALLOC for device ``hid`` on ``ioas`` and attach (iommufd_hwpt_paging_alloc).

    Coherency: a device with IOMMU_CAP_ENFORCE_CACHE_COHERENCY gets a CC hwpt (enforce before
    add_domain); otherwise NC (section 2.3).  v1: ``cnt++`` for an NC hwpt *before*
    iopt_table_add_domain; on its failure the ``out_detach`` unwind decrements *unconditionally*
    -> a CC hwpt's failure underflows the unsigned counter (TV27, from the diff; UNVERIFIED by
    execution).  Reviewed: counted inside iopt_table_add_domain (Jason
    <20240509141332.GP4650@nvidia.com>), nothing to unwind.  ``fail``: iopt_table_add_domain fails
    before filling any area (e.g. -ENOMEM reserving the xarray slot) -- choice of the model.
    Success: iopt_area_fill_domain for every area (pin, zero fill, F@fill_domain per variant).
    ``fs``: an Intel first-stage domain (else second stage), the TV26 "stage" choice."""
    if hwpt_of(s, hid) is not None or dev_hwpt(s, hid) is not None:
        return s, (("err", "EBUSY", "iommufd_device_attach"),)
    nc = env.group(hid).nc
    i = _ioas_index(s, ioas)
    name, areas, hwpts, cnt = s.ioas[i]
    v = env.variant
    if v == V.V1 and nc:
        cnt = (cnt + 1) % U32
    if fail:
        if v == V.V1:
            cnt = (cnt - 1) % U32             # out_detach: unconditional decrement (defect)
        io = (name, areas, hwpts, cnt)
        return (s._replace(ioas=s.ioas[:i] + (io,) + s.ioas[i + 1:]),
                (("err", "ENOMEM", "iopt_table_add_domain"),))
    if v == V.REVIEWED and nc:
        cnt += 1                              # counted inside iopt_table_add_domain
    hm = _tracks_hm(env, nc, fs) and bool(areas)   # iopt_table_add_domain fills every area
    io = (name, areas, hwpts + ((hid, nc, fs, hm, (), (hid,)),), cnt)
    newio = s.ioas[:i] + (io,) + s.ioas[i + 1:]
    ev = []
    lines, pop = list(s.lines), list(s.populated)
    was = held(env, s)
    now = held(env, s, newio)
    pages = s.pages
    for ar in areas:
        _pin_new(env, lines, pop, was, now, ar[1], area_pages(s, ar), ev)
        pages = _fill(env, s, pages, io, ar, nc, "F@fill_domain", lines, ev)
    return s._replace(lines=tuple(lines), populated=tuple(pop), pages=pages, ioas=newio), tuple(ev)


def hwpt_destroy(env: Env, s: Fd, hid: str):
    """Detach and destroy hwpt ``hid`` (iommufd_hwpt_paging_destroy -> iopt_table_remove_domain).
    Other domains remain in the IOAS: unmap only (the storage domain switches, pages stay pinned,
    TV23); else unmap and unpin (F@batch_unpin if the pages bit is set).  v1 decrements the counter
    after remove for an NC hwpt; reviewed inside remove_domain."""
    r = hwpt_of(s, hid)
    if r is None:
        return s, (("err", "ENOENT", "iommufd_hwpt_destroy"),)
    i, h = r
    name, areas, hwpts, cnt = s.ioas[i]
    if h[1] and env.variant == V.V1:
        cnt = (cnt - 1) % U32
    elif h[1] and env.variant == V.REVIEWED:
        cnt -= 1
    io = (name, areas, tuple(x for x in hwpts if x[0] != hid), cnt)
    newio = s.ioas[:i] + (io,) + s.ioas[i + 1:]
    ev = []
    lines = list(s.lines)
    was = held(env, s)
    now = held(env, s, newio)
    un = False
    for ar in areas:
        un |= _batch_unpin(env, s, s.pages, ar, was, now, lines, ev)
    return s._replace(lines=tuple(lines), ioas=newio, unpinned=s.unpinned or un), tuple(ev)


def _new_pid(s: Fd) -> int:
    used = {p[0] for p in s.pages}
    i = 0
    while i in used:
        i += 1
    return i


def _add_area(env: Env, s: Fd, i: int, area, pages: tuple, fail: bool, where: str):
    """Insert ``area`` into IOAS ``i`` and iopt_area_fill_domains; on an injected iommu_map
    failure unwind (unmap, batch_unpin what this op pinned) and drop the area."""
    name, areas, hwpts, cnt = s.ioas[i]
    for ar in areas:
        if ar[0] < area[0] + area[3] and area[0] < ar[0] + ar[3]:
            return s, (("err", "EEXIST", where),)
    if not fail:
        # the fill maps into every domain: Intel sets has_mappings (second stage, v6.7+)
        hwpts = tuple((h[0], h[1], h[2], True, h[4], h[5]) if _tracks_hm(env, h[1], h[2])
                      else h for h in hwpts)
    io = (name, tuple(sorted(areas + (area,))), hwpts, cnt)
    newio = s.ioas[:i] + (io,) + s.ioas[i + 1:]
    s2 = s._replace(pages=pages)
    ev = []
    lines, pop = list(s.lines), list(s.populated)
    was = held(env, s2)
    now = held(env, s2, newio)
    if hwpts:
        _pin_new(env, lines, pop, was, now, area[1], area_pages(s2, area), ev)
        pages = _fill(env, s2, pages, io, area, any(h[1] for h in hwpts), "F@fill_domains",
                      lines, ev, "ioas_copy" if where == "iopt_copy" else "pin_map")
    if fail and hwpts:
        ev.append(("err", "EIO", f"{where}/iommu_map"))
        s3 = s2._replace(pages=pages)
        un = _batch_unpin(env, s3, pages, area, set(now), was, lines, ev)
        old = {q[0] for q in s.pages}        # a new pages object dies; a shared one keeps its bit
        keep = tuple(p for p in pages if p[0] in old)
        return s._replace(lines=tuple(lines), populated=tuple(pop), pages=keep,
                          unpinned=s.unpinned or un), tuple(ev)
    return s._replace(lines=tuple(lines), populated=tuple(pop), pages=pages, ioas=newio), tuple(ev)


def ioas_map(env: Env, s: Fd, ioas: str, iova: int, first: int, n: int, *, fail: bool = False):
    """IOMMU_IOAS_MAP: a new pages object over ``first..first+n-1`` and an area at ``iova``;
    with domains, iopt_area_fill_domains pins (zero fill) and maps into every domain, with the
    variant's pre-map flush (TV20).  ``fail``: an iommu_map failure during the fill."""
    pid = _new_pid(s)
    pages = tuple(sorted(s.pages + ((pid, first, n, False),)))
    return _add_area(env, s, _ioas_index(s, ioas), (iova, pid, 0, n), pages, fail,
                     "iopt_map_pages")


def ioas_copy(env: Env, s: Fd, src: str, src_iova: int, n: int, dst: str, dst_iova: int, *,
              fail: bool = False):
    """IOMMU_IOAS_COPY: the range (inside one area of ``src``) becomes an area of ``dst`` sharing
    the same pages object -- a sub-slice (Jason 2024-05-14: areas are not 1:1 with pages)."""
    io = s.ioas[_ioas_index(s, src)]
    for ar in io[1]:
        if ar[0] <= src_iova and src_iova + n <= ar[0] + ar[3]:
            area = (dst_iova, ar[1], ar[2] + (src_iova - ar[0]), n)
            return _add_area(env, s, _ioas_index(s, dst), area, s.pages, fail, "iopt_copy")
    return s, (("err", "ENOENT", "iopt_get_pages"),)


def ioas_unmap(env: Env, s: Fd, ioas: str, iova: int, n: int):
    """IOMMU_IOAS_UNMAP: areas inside the range are removed (a range cutting an area: -EINVAL);
    iopt_area_unfill_domains: unmap every domain, then batch_unpin the spans no longer held
    (F@batch_unpin if the pages bit is set; TV23).  A pages object without areas is freed."""
    i = _ioas_index(s, ioas)
    name, areas, hwpts, cnt = s.ioas[i]
    keep, gone = [], []
    for ar in areas:
        if iova <= ar[0] and ar[0] + ar[3] <= iova + n:
            gone.append(ar)
        elif ar[0] < iova + n and iova < ar[0] + ar[3]:
            return s, (("err", "EINVAL", "iopt_unmap_iova"),)
        else:
            keep.append(ar)
    if not gone:
        return s, (("err", "ENOENT", "iopt_unmap_iova"),)
    # the old SNP=0 PTEs of the unmapped IOVAs are gone; a new map writes SNP=1 (TV26)
    dead = {ar[0] + k for ar in gone for k in range(ar[3])}
    hwpts = tuple((h[0], h[1], h[2], h[3], tuple(x for x in h[4] if x not in dead), h[5])
                  if h[4] else h for h in hwpts)
    newio = s.ioas[:i] + ((name, tuple(keep), hwpts, cnt),) + s.ioas[i + 1:]
    ev = []
    lines = list(s.lines)
    was = held(env, s)
    now = held(env, s, newio)
    un = False
    for ar in gone:
        un |= _batch_unpin(env, s, s.pages, ar, was, now, lines, ev)
    live = {ar[1] for io in newio for ar in io[1]}
    pages = tuple(p for p in s.pages if p[0] in live)
    return s._replace(lines=tuple(lines), pages=pages, ioas=newio,
                      unpinned=s.unpinned or un), tuple(ev)


# -- attach / detach of devices to existing hwpts (TV26) ---------------------------------------

def dev_detach(env: Env, s: Fd, dev: str):
    """IOMMU detach of ``dev`` (iommufd_device_detach): the device leaves its hwpt; the hwpt, its
    domain in the IOAS, its mappings and the pins stay (the user still owns the hwpt object)."""
    r = dev_hwpt(s, dev)
    if r is None:
        return s, (("err", "ENODEV", "iommufd_device_detach"),)
    i, h = r
    name, areas, hwpts, cnt = s.ioas[i]
    nh = (h[0], h[1], h[2], h[3], h[4], tuple(x for x in h[5] if x != dev))
    hwpts = tuple(nh if x[0] == h[0] else x for x in hwpts)
    return s._replace(ioas=s.ioas[:i] + ((name, areas, hwpts, cnt),) + s.ioas[i + 1:]), ()


def dev_attach(env: Env, s: Fd, dev: str, hid: str):
    """IOMMU_DEVICE_ATTACH of ``dev`` to the existing hwpt ``hid`` (iommufd_device_attach ->
    iommufd_hwpt_attach_device; section 2.3; Intel VT-d enforce op, section 2.2), in order:

    1. ``dev`` already attached: -EBUSY; no such hwpt: -ENOENT;
    2. ``dev`` is not IOMMU_CAP_ENFORCE_CACHE_COHERENCY-capable (its IOMMU lacks Snoop Control)
       and the hwpt enforces: the driver refuses (Intel 9d6ab26a75f4, v5.19) -> -EINVAL;
    3. ``dev`` capable and the hwpt does not enforce: from 6.12 (:func:`attach_upgrades`) it joins
       the non-coherent hwpt as it is; before, iommufd "upgrades" it
       (iommufd_hwpt_paging_enforce_cc); failure -> attach -EINVAL.  intel_iommu_enforce_cache_
       coherency:
       a. an attached device's IOMMU lacks Snoop Control (domain_support_force_snooping): fails;
       b. first stage: PGSNP set in the PASID entry of every attached device -- every mapping,
          old or new, is snooped: succeeds;
       c. second stage, v6.7+ (e645c20e8e9c "support enforce_cache_coherency only for empty
          domains", Lu Baolu <20231114011036.70142-1-baolu.lu@linux.intel.com>, Fixes
          fc0051cb9590; also in 6.6.y per the reference, stable release UNVERIFIED):
          ``has_mappings`` -> fails;
       d. second stage, <= v6.6 (before that fix): ``set_pte_snp`` -- only *future* PTEs get SNP;
          the PTEs already there keep SNP=0 (``snp0``): accesses through those IOVAs stay
          non-snooped while the hwpt, and KVM (v6.2+: device capability, section 2.4), report
          coherent (section 5 item 2);
    4. the device joins the hwpt.
    The flush series' NC counters are not touched by the upgrade (neither v1 nor the review
    hooks this path; from the diff, UNVERIFIED): a later destroy of the now-CC hwpt does not
    decrement, which can only over-flush."""
    if dev_hwpt(s, dev) is not None:
        return s, (("err", "EBUSY", "iommufd_device_attach"),)
    r = hwpt_of(s, hid)
    if r is None:
        return s, (("err", "ENOENT", "iommufd_device_attach"),)
    i, h = r
    capable = not env.group(dev).nc
    nc, snp0 = h[1], h[4]
    if not capable and not nc:
        return s, (("err", "EINVAL", "intel_iommu_attach_device (no Snoop Control)"),)
    if capable and nc and attach_upgrades(env):
        if any(env.group(d).nc for d in h[5]):
            return s, (("err", "EINVAL", "iommufd_hwpt_paging_enforce_cc (no Snoop Control)"),)
        if h[2]:
            snp0 = ()                          # first stage: PGSNP covers every mapping
        elif h[3]:
            return s, (("err", "EINVAL", "iommufd_hwpt_paging_enforce_cc (has_mappings)"),)
        else:
            io = s.ioas[i]
            snp0 = tuple(sorted(ar[0] + k for ar in io[1] for k in range(ar[3])))
        nc = False
    nh = (h[0], nc, h[2], h[3], snp0, h[5] + (dev,))
    name, areas, hwpts, cnt = s.ioas[i]
    hwpts = tuple(nh if x[0] == hid else x for x in hwpts)
    return s._replace(ioas=s.ioas[:i] + ((name, areas, hwpts, cnt),) + s.ioas[i + 1:]), ()


# -- devices ------------------------------------------------------------------------------------

def dev_read(env: Env, s: Fd, hid: str, iova: int):
    """Device ``hid`` reads ``iova`` through its hwpt: NS through an NC hwpt or an old SNP=0 PTE
    (DRAM), snooped otherwise."""
    r = resolve(s, hid, iova)
    if r is None:
        return s, (("err", "FAULT", f"iommu fault {hid}"),)
    p, nc = r
    ln = s.lines[p]
    v = cache.ns_read(ln) if nc else cache.snoop_read(ln)
    bad = s.bad_read or cache.is_previous_owner(v)
    return s._replace(dev_read=True, bad_read=bad), (("read", hid, env.names[p], v),)


def dev_write(env: Env, s: Fd, hid: str, iova: int, v: str = "B"):
    r = resolve(s, hid, iova)
    if r is None:
        return s, (("err", "FAULT", f"iommu fault {hid}"),)
    p, nc = r
    ln = s.lines[p]
    nl = cache.ns_write(ln, v) if nc else cache.snoop_write(ln, v)
    return s._replace(lines=s.lines[:p] + (nl,) + s.lines[p + 1:]), ()


REASONS = {
    "fill": Reason("iommufd/fill/flush", f"{SRC}/pages.c iopt_area_fill_domain(s), 5/5 {V1_PATCH}",
                   "v1: flush if cnt>0 and the pages bit is clear; reviewed: if the target is NC"),
    "unpin": Reason("iommufd/batch_unpin/flush", f"{SRC}/pages.c batch_unpin, 5/5 {V1_PATCH}",
                    "flush spans of flagged pages before unpin_user_page_range_dirty_lock"),
    "tv22": Reason("iommufd/v1/sub-slice-gap", "Jason Gunthorpe 2024-05-14 in <ZkRe/HeAIgscsYZw@...>",
                   "a per-pages flushed bit misses sub-slice areas created by IOAS_COPY",
                   unverified=True),
    "tv26": Reason("intel-iommu/enforce-cc/empty-only", "drivers/iommu/intel/iommu.c "
                   "intel_iommu_enforce_cache_coherency, e645c20e8e9c "
                   "<20231114011036.70142-1-baolu.lu@linux.intel.com> (v6.7; 6.6.y UNVERIFIED)",
                   "a second-stage domain with mappings cannot be upgraded; before, old PTEs kept "
                   "SNP=0 under a domain reported coherent", unverified=True),
    "tv26-joins-nc": Reason("iommufd/attach/no-upgrade", "drivers/iommu/iommufd/device.c "
                            "iommufd_hw_pagetable_attach(), hw_pagetable.c iommufd_hwpt_paging_alloc() 6.12.118, "
                            "7.2.13, 7.3.4", "a CC-capable device attached to a non-CC hwpt joins it as it is "
                            "(no enforce call on attach); removal release between 6.10 and 6.12 not verified"),
    "tv27": Reason("iommufd/v1/cnt-underflow", f"{SRC}/hw_pagetable.c iommufd_hwpt_paging_alloc "
                   f"out_detach, 5/5 {V1_PATCH}",
                   "a CC hwpt whose iopt_table_add_domain fails decrements the NC counter",
                   unverified=True),
}
