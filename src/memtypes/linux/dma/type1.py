"""VFIO type1 (drivers/vfio/vfio_iommu_type1.c, v6.4-v6.9 era) with the CPU cache flushes of
the three variants, read top to bottom like the driver (kernel-vfio.md section 3, 1.3, 1.8).

State (:class:`T1`, an immutable NamedTuple of tuples; no dicts or lists):

* ``lines``/``populated``/``pins``: page memory (arch/cache lines), whether the kernel handed
  the page over (zero fill done), pin count (user pages);
* ``iommu``: the container has a type1 IOMMU (VFIO_SET_IOMMU done);
* ``domains``: ``(did, ops, nc, groups)`` in ``domain_list`` order, head first (new domains are
  added at the head; the *first* domain is the one used for IOVA->PHYS lookups);
* ``emulated``: attached emulated (mdev) groups;
* ``dmas``: ``(start, n, mapped, flag)`` sorted by IOVA; IOVA page = physical page (identity:
  the model never needs vaddr != phys); ``mapped`` = ``iommu_mapped``; ``flag`` = v1
  ``cache_flush_required`` / reviewed ``is_noncoherent`` (always False upstream);
* ``has_nc`` (v1 ``has_noncoherent_domain``), ``nc_count`` (reviewed ``noncoherent_domains``);
* ``kvm_files``/``kvm_nc``: the KVM-VFIO device (see :mod:`kvm_vfio`);
* ``dev_read``/``bad_read``/``unpinned``: sticky observations for the checker;
* ``vpfn``: per user page, the ``vfio_pfn`` refcount of the external pins made by emulated
  (mdev) devices through VFIO_PIN_PAGES (the dma's ``pfn_list``; identity IOVA = page, dmas do
  not overlap, so one int per page is the whole list).  A vpfn holds *one* page pin of its own
  (counted in ``pins``) whatever its refcount, so a page stays pinned (not reusable by the host)
  while any vpfn holds it (section 3.2 PIN_PAGES/UNPIN_PAGES).

Every operation returns ``(state, events)`` (see :mod:`memtypes.linux.dma.common`).
"""

from __future__ import annotations

from typing import NamedTuple

from memtypes.arch import cache
from memtypes.arch.reason import Reason
from memtypes.linux.dma import variants as V
from memtypes.linux.dma.common import Env, flush_at, flush_pages, initial_lines, zero_fill

SRC = "drivers/vfio/vfio_iommu_type1.c"
V1_PATCH = "<20240507062138.20465-1-yan.y.zhao@intel.com>"


class T1(NamedTuple):
    lines: tuple
    populated: tuple
    pins: tuple
    iommu: bool
    domains: tuple
    emulated: tuple
    dmas: tuple
    has_nc: bool
    nc_count: int
    kvm_files: tuple
    kvm_nc: bool
    dev_read: bool
    bad_read: bool
    unpinned: bool
    vpfn: tuple = ()


def initial(env: Env, init=None) -> T1:
    """A container with no IOMMU set, no group, no dma; pages hold ``S`` (or ``init``)."""
    lines, pop = initial_lines(env, init)
    return T1(lines, pop, (0,) * env.npages, False, (), (), (), False, 0, (), False,
              False, False, False, (0,) * env.npages)


# -- derived values ------------------------------------------------------------------------

def domain_of(s: T1, g: str):
    """The domain record a group is attached to, or None."""
    for d in s.domains:
        if g in d[3]:
            return d
    return None


def attached(s: T1, g: str) -> bool:
    return g in s.emulated or domain_of(s, g) is not None


def nc_domains(s: T1) -> int:
    return sum(1 for d in s.domains if d[2])


def cc_iommu(env: Env, s: T1) -> int:
    """CHECK_EXTENSION(VFIO_DMA_CC_IOMMU) (vfio_domains_have_enforce_cache_coherency): 0 before
    VFIO_SET_IOMMU; else 1 iff every domain enforces coherency (empty list -> 1).  Reviewed:
    ``noncoherent_domains == 0`` -- Alex's literal ``count ? 1 : 0`` is treated as a slip
    (kernel-vfio.md 1.7 #6, UNVERIFIED intent); the values are identical (TV19)."""
    if not s.iommu:
        return 0
    if env.variant == V.REVIEWED:
        return 1 if s.nc_count == 0 else 0
    return 0 if any(d[2] for d in s.domains) else 1


def mapped_page(s: T1, p: int) -> bool:
    """Whether IOVA page ``p`` is mapped in every domain (type1 maps each iommu_mapped dma into all
    domains)."""
    for st, n, m, _f in s.dmas:
        if st <= p < st + n:
            return m
    return False


# -- the flush funnel and unmap/unpin ------------------------------------------------------

def _unpin_remote(env, lines, pins, flag, pages, ev):
    """vfio_unpin_pages_remote: the single "remote unpin" funnel.  v1/reviewed: FLUSH before
    put_pfn when the dma is flagged (4/5 hunk in vfio_unpin_pages_remote; the lazy flush point of
    the changelog, kernel-vfio.md 1.3)."""
    if flush_at(env, "unpin", pages, bool(flag and env.variant)):
        flush_pages(env, lines, pages, "F@unpin", ev)
    for p in pages:
        if p < env.npages:
            pins[p] -= 1


def _unmap_unpin(env, lines, pins, dma, ev):
    """vfio_unmap_unpin: unmap the dma from every domain (IOTLB sync), then unpin the contiguous
    run found in the first domain through the funnel; v1 then clears the flag.  Returns the dma
    with ``mapped`` False and flag cleared."""
    st, n, m, flag = dma
    if m:
        _unpin_remote(env, lines, pins, flag, range(st, st + n), ev)
    return (st, n, False, False)


def _unmap_unpin_all(env, s: T1, lines, pins, ev) -> tuple:
    """vfio_iommu_unmap_unpin_all: vfio_remove_dma of every dma."""
    for d in s.dmas:
        _unmap_unpin(env, lines, pins, d, ev)
    return ()


def _drop_vpfns(vpfn: list, pins: list, pages) -> None:
    """The external pins of ``pages`` go away: each live vpfn releases its one page pin
    (vfio_iova_put_vfio_pfn -> put_pfn when the refcount reaches 0).  Never through the
    vfio_unpin_pages_remote funnel, so never a flush: an emulated device reaches the page through
    the CPU (coherent; section 3.2, "no flush in (b)/(c)")."""
    for p in pages:
        if p < len(vpfn) and vpfn[p]:
            vpfn[p] = 0
            pins[p] -= 1


def _vpfn_pages(s: T1, dma) -> tuple:
    """The pages of ``dma`` with a non-empty ``pfn_list`` entry."""
    st, n = dma[0], dma[1]
    return tuple(p for p in range(st, st + n) if p < len(s.vpfn) and s.vpfn[p])


# -- fine-grained superpage test --------------------------------------------------------------

def has_fgsp(env: Env) -> bool:
    """Whether attach runs vfio_test_domain_fgsp(): in 6.12.118
    (drivers/vfio/vfio_iommu_type1.c vfio_iommu_type1_attach_group()), gone in 7.2.13 and 7.3.4
    (no fgsp field, no test: the attach maps nothing before the replay).  The release that removed
    it, 6.13-7.2, is not verified: the model splits at 7.2."""
    return not env.kernel.at_least(7, 2)


def _test_domain_fgsp(env: Env, lines, nc: bool, probe, ev) -> None:
    """vfio_test_domain_fgsp(domain, regions): allocate 2 zeroed kernel pages K (alloc_pages
    __GFP_ZERO: cacheable zeroing, D(0) above S'), map them at the first aligned IOVA of the first
    valid region, unmap one page to learn fgsp, free.  v1/reviewed: if the domain is NC,
    F@fgsp-pre after alloc/before map and F@fgsp-post after unmap/before free (4/5 hunks; both
    kept after review: Kevin Tian <BN9PR11MB52766D78684F6206121590B98CED2@...>, Alex Williamson
    <20240516143159.0416d6c7...>, kernel-vfio.md 1.7 #5).

    ``probe``: what a device of the group does during the window (TV17): None, ``"read"`` or a
    value to write after reading.  A no-op where the kernel has no such test (:func:`has_fgsp`)."""
    if not has_fgsp(env):
        return
    k0 = env.npages
    kp = (k0, k0 + 1)
    lines[k0] = cache.cpu_write(cache.line(cache.PREV_SCRATCH), cache.ZERO)
    lines[k0 + 1] = cache.cpu_write(cache.line(cache.PREV_SCRATCH), cache.ZERO)
    if flush_at(env, "attach_nc", kp, bool(nc and env.variant)):
        flush_pages(env, lines, kp, "F@fgsp-pre", ev)
    if probe is not None:
        # The attacker guesses the IOVA (first valid region, likely 0): Kevin Tian, 1.7 #5.
        ln = lines[k0]
        v = cache.ns_read(ln) if nc else cache.snoop_read(ln)
        ev.append(("read", "fgsp-probe", env.names[k0], v))
        if probe != "read":
            lines[k0] = cache.ns_write(ln, probe) if nc else cache.snoop_write(ln, probe)
    if flush_at(env, "attach_nc", kp, bool(nc and env.variant)):
        flush_pages(env, lines, kp, "F@fgsp-post", ev)


# -- replay -----------------------------------------------------------------------------------

def _chunks(env: Env, st: int, n: int):
    c = env.chunk
    return [tuple(range(a, min(a + c, st + n))) for a in range(st, st + n, c)]


def _replay(env: Env, s: T1, nc: bool, lines, pop, pins, fail_at, ev):
    """vfio_iommu_replay(iommu, domain): map every dma into the new domain.

    For an ``iommu_mapped`` dma the physical runs come from the first domain (no new pin; one run
    here since IOVA->PHYS is contiguous); otherwise the pages are pinned now (zero fill).
    v1/reviewed: ``set_noncoherent = nc(domain) and not dma.flag``; if set, flag := True and FLUSH
    each run before iommu_map (F@replay).  A flagged dma is never cleared by a CC attach (sticky,
    Alex <20240510105728...>, I6).

    ``fail_at``: the index of the iommu_map call (0-based over the replay) that fails.  Unwind
    (kernel-vfio.md 3.2): the failed chunk of a not-yet-mapped dma is unpinned (funnel: F@unpin
    if flagged); then backwards: mapped dmas are unmapped from the new domain only (flag left
    set: over-flush only, TV12); the others are unmapped and unpinned run by run, then the flag
    cleared.  Returns (dmas, ok)."""
    dmas = list(s.dmas)
    calls = 0
    done = []                                 # (index, runs mapped into the new domain)
    for i, (st, n, m, flag) in enumerate(dmas):
        setnc = bool(env.variant) and nc and not flag
        if setnc:
            flag = True
        dmas[i] = (st, n, m, flag)
        runs = [tuple(range(st, st + n))] if m else _chunks(env, st, n)
        mapped_runs = []
        for run in runs:
            if not m:
                for p in run:
                    pins[p] += 1
                zero_fill(env, lines, pop, run, ev)
            if flush_at(env, "replay", run, setnc):
                flush_pages(env, lines, run, "F@replay", ev)
            if calls == fail_at:
                ev.append(("err", "EIO", "vfio_iommu_replay/iommu_map"))
                if not m:
                    _unpin_remote(env, lines, pins, flag, run, ev)
                done.append((i, mapped_runs))
                for j, jruns in reversed(done):
                    jst, jn, jm, jflag = dmas[j]
                    if jm:
                        continue              # unmap from the new domain only; flag stays
                    for r in reversed(jruns):
                        _unpin_remote(env, lines, pins, jflag, r, ev)
                    dmas[j] = (jst, jn, jm, False)
                return tuple(dmas), False
            calls += 1
            mapped_runs.append(run)
        done.append((i, mapped_runs))
    return tuple((st, n, True, f) for st, n, _m, f in dmas), True


# -- ioctls -------------------------------------------------------------------------------------

def attach(env: Env, s: T1, g: str, *, probe=None, fail_at=None):
    """vfio_iommu_type1_attach_group (VFIO_SET_IOMMU / VFIO_GROUP_SET_CONTAINER with the iommu
    set), steps in driver order:

    1. emulated (mdev) group: add to ``emulated_iommu_groups``; no domain, no pin;
    2. alloc a domain, iommu_attach_group; ``domain.enforce = op ? op() : false`` (v5.19+,
       section 2.3) -- fixed here for the domain's life: ``nc`` is the group's IOMMU capability;
    3. merge: an existing domain with the same iommu_ops *and* the same enforce takes the group;
       the new domain is freed: no fgsp, no replay, no flush (TV05);
    4. vfio_test_domain_fgsp (flushes in v1/reviewed when NC); not in 7.2+ (:func:`has_fgsp`);
    5. vfio_iommu_replay (may fail: ``fail_at``, the domain is then freed and the attach fails);
    6. list_add at the head; v1 recomputes ``has_noncoherent_domain`` if NC (non-merge path only);
       reviewed ``vfio_iommu_link_domain`` counts it (Alex <20240510105728...>)."""
    ev = []
    grp = env.group(g)
    if attached(s, g):
        return s, (("err", "EBUSY", "attach_group"),)
    if grp.emulated:
        return s._replace(iommu=True, emulated=s.emulated + (g,)), ()
    nc = grp.nc
    for i, d in enumerate(s.domains):
        if d[1] == grp.ops and d[2] == nc:
            nd = (d[0], d[1], d[2], d[3] + (g,))
            return s._replace(iommu=True, domains=s.domains[:i] + (nd,) + s.domains[i + 1:]), ()
    lines = list(s.lines)
    pop = list(s.populated)
    pins = list(s.pins)
    _test_domain_fgsp(env, lines, nc, probe, ev)
    dmas, ok = _replay(env, s, nc, lines, pop, pins, fail_at, ev)
    bad = s.bad_read or any(e[0] == "read" and cache.is_previous_owner(e[3]) for e in ev)
    dread = s.dev_read or (probe is not None and has_fgsp(env))
    if not ok:
        return s._replace(lines=tuple(lines), populated=tuple(pop), pins=tuple(pins), dmas=dmas,
                          iommu=True, bad_read=bad, dev_read=dread,
                          unpinned=s.unpinned or any(e[0] == "F@unpin" for e in ev)
                          or _dropped(s.pins, pins)), tuple(ev)
    domains = ((g, grp.ops, nc, (g,)),) + s.domains
    has_nc, cnt = s.has_nc, s.nc_count
    if nc and env.variant == V.V1:
        has_nc = True                         # vfio_update_noncoherent_domain_state
    elif nc and env.variant == V.REVIEWED:
        cnt += 1                              # vfio_iommu_link_domain
    return T1(tuple(lines), tuple(pop), tuple(pins), True, domains, s.emulated, dmas, has_nc,
              cnt, s.kvm_files, s.kvm_nc, dread, bad, s.unpinned, s.vpfn), tuple(ev)


def _dropped(before, after) -> bool:
    return any(a == 0 and b > 0 for b, a in zip(before, after))


def map_dma(env: Env, s: T1, start: int, n: int, *, fail_at=None):
    """VFIO_IOMMU_MAP_DMA -> vfio_dma_do_map.

    * overlap with an existing dma: -EEXIST;
    * no IOMMU domain (only emulated groups, or none): the dma is recorded with its size, nothing
      pinned, ``iommu_mapped`` stays False (replayed at the next attach, TV13);
    * else vfio_pin_map_dma: v1/reviewed set the flag to "any NC domain" *before* pinning so the
      unwind paths flush too (4/5 comment); per pinned chunk: zero fill (first pin), F@pin_map if
      flagged, vfio_iommu_map into all domains.  ``fail_at`` = index of the chunk whose map fails:
      that chunk is unpinned via the funnel (F@unpin), then vfio_remove_dma unmaps and unpins the
      mapped part (F@unpin), TV11."""
    for st, nn, _m, _f in s.dmas:
        if st < start + n and start < st + nn:
            return s, (("err", "EEXIST", "vfio_dma_do_map"),)
    if not s.iommu:
        return s, (("err", "EINVAL", "vfio_dma_do_map (no iommu)"),)
    if not s.domains:
        dmas = tuple(sorted(s.dmas + ((start, n, False, False),)))
        return s._replace(dmas=dmas), ()
    ev = []
    lines = list(s.lines)
    pop = list(s.populated)
    pins = list(s.pins)
    if env.variant == V.V1:
        flag = s.has_nc
    elif env.variant == V.REVIEWED:
        flag = s.nc_count > 0
    else:
        flag = False
    mapped = []
    for ci, chunk in enumerate(_chunks(env, start, n)):
        for p in chunk:
            pins[p] += 1
        zero_fill(env, lines, pop, chunk, ev)
        if flush_at(env, "pin_map", chunk, bool(flag)):
            flush_pages(env, lines, chunk, "F@pin_map", ev)
        if ci == fail_at:
            ev.append(("err", "EIO", "vfio_pin_map_dma/vfio_iommu_map"))
            _unpin_remote(env, lines, pins, flag, chunk, ev)
            if mapped:
                _unpin_remote(env, lines, pins, flag, tuple(p for c in mapped for p in c), ev)
            return s._replace(lines=tuple(lines), populated=tuple(pop), pins=tuple(pins),
                              unpinned=True), tuple(ev)
        mapped.append(chunk)
    dmas = tuple(sorted(s.dmas + ((start, n, True, flag),)))
    return s._replace(lines=tuple(lines), populated=tuple(pop), pins=tuple(pins),
                      dmas=dmas), tuple(ev)


def unmap_dma(env: Env, s: T1, start: int, n: int):
    """VFIO_IOMMU_UNMAP_DMA (v2) -> vfio_dma_do_unmap:

    1. a range that bisects a dma is -EINVAL;
    2. a dma inside whose ``pfn_list`` is not empty (external pins by emulated devices): the
       iommu lock is dropped and every emulated device is notified (vfio_notify_dma_unmap -> the
       device's ``dma_unmap`` callback), which must VFIO_UNPIN_PAGES its pins in the range; then
       the walk retries (section 3.2 UNMAP_DMA).  The model's devices comply: the event
       ``("notify", pages)`` is followed by the drop of those vpfns (no flush: CPU access);
    3. each dma inside is then vfio_remove_dma -> vfio_unmap_unpin (F@unpin if flagged; flag
       cleared)."""
    keep, gone = [], []
    for d in s.dmas:
        st, nn = d[0], d[1]
        if start <= st and st + nn <= start + n:
            gone.append(d)
        elif st < start + n and start < st + nn:
            return s, (("err", "EINVAL", "vfio_dma_do_unmap (bisects a dma)"),)
        else:
            keep.append(d)
    if not gone:
        return s, ()
    ev = []
    lines = list(s.lines)
    pins = list(s.pins)
    vpfn = list(s.vpfn)
    for d in gone:
        ext = _vpfn_pages(s, d)
        if ext:
            ev.append(("notify", tuple(env.names[p] for p in ext)))
            _drop_vpfns(vpfn, pins, ext)
        _unmap_unpin(env, lines, pins, d, ev)
    return s._replace(lines=tuple(lines), pins=tuple(pins), dmas=tuple(keep), vpfn=tuple(vpfn),
                      unpinned=s.unpinned or _dropped(s.pins, pins)), tuple(ev)


def detach(env: Env, s: T1, g: str):
    """vfio_iommu_type1_detach_group.

    * emulated group: removed; if no emulated group and no domain remain, unmap_unpin_all;
    * else iommu_detach_group; if the domain is now empty: when it is the only domain,
      unmap_unpin_all (no emulated group) or unmap_unpin_reaccount (emulated groups remain: dmas
      stay, unpinned and no longer iommu_mapped) -- the flushes are in the funnel (TV14); then
      iommu_domain_free, list_del (v1: recompute has_nc if NC; reviewed: unlink, count-- if NC).
    * detaching from a non-last domain does no unmap/unpin: pages stay pinned and mapped in the
      other domains, their flags stay set (flush later at unpin, TV08/TV23 analogue)."""
    if g in s.emulated:
        em = tuple(x for x in s.emulated if x != g)
        pins, vpfn = list(s.pins), list(s.vpfn)
        if not em:
            # the last emulated device closed: its close_device unpinned what it pinned
            # (the model does not track which device holds a vpfn; with another emulated group
            # left, the pins stay)
            _drop_vpfns(vpfn, pins, range(len(vpfn)))
        if em or s.domains:
            return s._replace(emulated=em, pins=tuple(pins), vpfn=tuple(vpfn),
                              unpinned=s.unpinned or _dropped(s.pins, pins)), ()
        ev = []
        lines = list(s.lines)
        _unmap_unpin_all(env, s, lines, pins, ev)
        return s._replace(emulated=em, dmas=(), lines=tuple(lines), pins=tuple(pins),
                          vpfn=tuple(vpfn), unpinned=s.unpinned or _dropped(s.pins, pins)), \
            tuple(ev)
    d = domain_of(s, g)
    if d is None:
        return s, (("err", "ENODEV", "detach_group"),)
    rest = tuple(x for x in d[3] if x != g)
    i = s.domains.index(d)
    if rest:
        nd = (d[0], d[1], d[2], rest)
        return s._replace(domains=s.domains[:i] + (nd,) + s.domains[i + 1:]), ()
    ev = []
    lines, pins = list(s.lines), list(s.pins)
    dmas = s.dmas
    if len(s.domains) == 1:
        if not s.emulated:
            dmas = _unmap_unpin_all(env, s, lines, pins, ev)
        else:
            dmas = tuple(_unmap_unpin(env, lines, pins, x, ev) for x in s.dmas)
    domains = s.domains[:i] + s.domains[i + 1:]
    has_nc, cnt = s.has_nc, s.nc_count
    if d[2] and env.variant == V.V1:
        has_nc = any(x[2] for x in domains)   # vfio_update_noncoherent_domain_state
    elif d[2] and env.variant == V.REVIEWED:
        cnt -= 1                              # vfio_iommu_unlink_domain
    return s._replace(lines=tuple(lines), pins=tuple(pins), dmas=dmas, domains=domains,
                      has_nc=has_nc, nc_count=cnt,
                      unpinned=s.unpinned or _dropped(s.pins, pins)), tuple(ev)


def release(env: Env, s: T1):
    """vfio_iommu_type1_release: drop emulated groups; unmap_unpin_all (F@unpin before the
    domains are detached and freed, TV16); detach every group and free every domain.  Reviewed:
    each domain is unlinked (count must reach 0: Alex's sanity check); v1 leaves has_nc as is,
    but the vfio_iommu is freed, so the model returns a fresh container."""
    ev = []
    lines, pins = list(s.lines), list(s.pins)
    vpfn = list(s.vpfn)
    _drop_vpfns(vpfn, pins, range(len(vpfn)))   # emulated devices closed (unpinned) first
    _unmap_unpin_all(env, s, lines, pins, ev)
    cnt = s.nc_count - sum(1 for d in s.domains if d[2]) if env.variant == V.REVIEWED else 0
    assert cnt == 0, "noncoherent_domains must be 0 after unlinking every domain"
    return T1(tuple(lines), s.populated, tuple(pins), False, (), (), (), False, 0, s.kvm_files,
              s.kvm_nc, s.dev_read, s.bad_read,
              s.unpinned or _dropped(s.pins, pins), tuple(vpfn)), tuple(ev)


# -- emulated (mdev) external pins ----------------------------------------------------------------

def _dma_at(s: T1, p: int):
    for d in s.dmas:
        if d[0] <= p < d[0] + d[1]:
            return d
    return None


def pin_pages(env: Env, s: T1, g: str, p: int):
    """VFIO_PIN_PAGES of IOVA page ``p`` by the emulated device of group ``g``
    (vfio_iommu_type1_pin_pages, section 3.2):

    1. no emulated device registered with a dma_unmap callback (``device_list`` empty; the
       model: ``g`` is not an attached emulated group): -EINVAL;
    2. no dma covers ``p`` (vfio_find_dma): -EINVAL;
    3. a vpfn already exists (vfio_iova_get_vfio_pfn): refcount + 1, no new page pin;
    4. else vfio_pin_page_external: pin_user_pages_remote of that one page (a pin of its own, on
       top of any IOMMU pin; the first pin of an untouched page zero-fills it, HOST_ZERO), then
       vfio_add_to_pfn_list (refcount 1).
    No IOMMU mapping and no flush in any variant: the emulated device accesses the page through
    the CPU, coherently (section 3.2 "no flush in (b)/(c)")."""
    if g not in s.emulated:
        return s, (("err", "EINVAL", "vfio_iommu_type1_pin_pages (no dma_unmap device)"),)
    if _dma_at(s, p) is None:
        return s, (("err", "EINVAL", "vfio_iommu_type1_pin_pages (no dma)"),)
    vpfn = list(s.vpfn)
    if vpfn[p]:
        vpfn[p] += 1
        return s._replace(vpfn=tuple(vpfn)), ()
    ev = []
    lines, pop, pins = list(s.lines), list(s.populated), list(s.pins)
    pins[p] += 1
    zero_fill(env, lines, pop, (p,), ev)
    vpfn[p] = 1
    return s._replace(lines=tuple(lines), populated=tuple(pop), pins=tuple(pins),
                      vpfn=tuple(vpfn)), tuple(ev)


def unpin_pages(env: Env, s: T1, g: str, p: int):
    """VFIO_UNPIN_PAGES of IOVA page ``p`` (vfio_iommu_type1_unpin_pages ->
    vfio_unpin_page_external -> vfio_iova_put_vfio_pfn): refcount - 1; at 0 the vpfn is removed
    and its page pin put (put_pfn directly, not the vfio_unpin_pages_remote funnel: no flush).
    No vpfn (or no dma): the kernel WARNs and skips (-EINVAL here)."""
    if _dma_at(s, p) is None or not s.vpfn[p]:
        return s, (("err", "EINVAL", "vfio_iommu_type1_unpin_pages"),)
    vpfn, pins = list(s.vpfn), list(s.pins)
    vpfn[p] -= 1
    if vpfn[p] == 0:
        pins[p] -= 1
    return s._replace(vpfn=tuple(vpfn), pins=tuple(pins),
                      unpinned=s.unpinned or _dropped(s.pins, pins)), ()


# -- agents ------------------------------------------------------------------------------------

def dev_read(env: Env, s: T1, g: str, p: int):
    """A device of group ``g`` reads IOVA page ``p``: non-snooped if its domain is NC (worst case:
    every TLP No-Snoop, section 6), snooped if CC.  Unmapped: an IOMMU fault (no data)."""
    if g in s.emulated:
        return _emulated_read(env, s, g, p)
    d = domain_of(s, g)
    if d is None or not mapped_page(s, p):
        return s, (("err", "FAULT", f"iommu fault {g}"),)
    ln = s.lines[p]
    v = cache.ns_read(ln) if d[2] else cache.snoop_read(ln)
    bad = s.bad_read or cache.is_previous_owner(v)
    return s._replace(dev_read=True, bad_read=bad), (("read", g, env.names[p], v),)


def _emulated_read(env: Env, s: T1, g: str, p: int):
    """An emulated (mdev) device reads a page it pinned: through the CPU (the vendor driver
    maps the pinned pfn), so it sees the cache value -- coherent.  Not pinned by a vpfn: the
    driver has no pfn for it (modelled as a fault)."""
    if not s.vpfn[p]:
        return s, (("err", "FAULT", f"not pinned {g}"),)
    lines = list(s.lines)
    lines[p], v = cache.cpu_read(lines[p])
    bad = s.bad_read or cache.is_previous_owner(v)
    return s._replace(lines=tuple(lines), dev_read=True, bad_read=bad), (("read", g,
                                                                           env.names[p], v),)


def dev_write(env: Env, s: T1, g: str, p: int, v: str = "B"):
    """A device of group ``g`` writes ``v`` to IOVA page ``p`` (NS if NC: DRAM only)."""
    d = domain_of(s, g)
    if d is None or not mapped_page(s, p):
        return s, (("err", "FAULT", f"iommu fault {g}"),)
    ln = s.lines[p]
    nl = cache.ns_write(ln, v) if d[2] else cache.snoop_write(ln, v)
    return s._replace(lines=s.lines[:p] + (nl,) + s.lines[p + 1:]), ()


def cpu_read(env: Env, s: T1, p: int, agent: str = "guest"):
    """A CPU read of page ``p`` (guest through its WB mapping, or the host on reuse): the value
    is reported as ``A->B`` when a later eviction would change it (stale clean line)."""
    lines = list(s.lines)
    pop = list(s.populated)
    ev = []
    zero_fill(env, lines, pop, (p,), ev)
    view = cache.host_view(lines[p])
    lines[p], _v = cache.cpu_read(lines[p])
    ev.append(("read", agent, env.names[p], view))
    return s._replace(lines=tuple(lines), populated=tuple(pop)), tuple(ev)


def cpu_write(env: Env, s: T1, p: int, v: str = "G"):
    lines = list(s.lines)
    pop = list(s.populated)
    ev = []
    zero_fill(env, lines, pop, (p,), ev)
    lines[p] = cache.cpu_write(lines[p], v)
    return s._replace(lines=tuple(lines), populated=tuple(pop)), tuple(ev)


def evict(env: Env, s: T1, p: int):
    """A nondeterministic cache eviction of page ``p`` (= FLUSH of that line)."""
    nl = cache.evict(s.lines[p])
    if nl == s.lines[p]:
        return s, ()
    return s._replace(lines=s.lines[:p] + (nl,) + s.lines[p + 1:]), ()


REASONS = {
    "merge": Reason("type1/attach/merge", f"{SRC} vfio_iommu_type1_attach_group (v5.19+)",
                    "a domain with the same iommu_ops and enforce_cache_coherency takes the group; "
                    "no fgsp, no replay"),
    "pin_map": Reason("type1/pin_map/flush", f"{SRC} vfio_pin_map_dma, 4/5 {V1_PATCH}",
                      "flag := any NC domain before pinning; FLUSH each chunk before mapping"),
    "unpin": Reason("type1/unpin/flush", f"{SRC} vfio_unpin_pages_remote, 4/5 {V1_PATCH}",
                    "FLUSH flagged pages before put_pfn (the lazy flush point)"),
    "replay": Reason("type1/replay/flush", f"{SRC} vfio_iommu_replay, 4/5 {V1_PATCH}",
                     "set_noncoherent = NC domain and dma not yet flagged; FLUSH before iommu_map"),
    "fgsp": Reason("type1/fgsp/flush", f"{SRC} vfio_test_domain_fgsp, 4/5 {V1_PATCH}; "
                   "<BN9PR11MB52766D78684F6206121590B98CED2@...>",
                   "NC domain: FLUSH the 2 scratch pages before map and after unmap"),
    "cc_iommu": Reason("type1/cc_iommu", f"{SRC} vfio_domains_have_enforce_cache_coherency",
                       "VFIO_DMA_CC_IOMMU = every domain enforces coherency (reviewed: count==0; "
                       "Alex's `count ? 1 : 0` treated as a slip)", unverified=True),
}
