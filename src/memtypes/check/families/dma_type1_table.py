"""The table-driven form of the ``dma-type1`` family (no emulated group): the same states,
transitions, verdicts and traces as :class:`~.dma_type1.DmaModel` over
:mod:`memtypes.linux.dma.type1`, with each move reading a few columns, so that both explorers
work per page (:mod:`memtypes.explore.table`) and the vectorised one can take several pages.

Columns: the container (``iommu``, ``domains``, ``has_nc``, ``nc_count``, ``kvm_files``,
``kvm_nc``, the sticky observations ``dev_read``, ``bad_read``, ``unpinned``), the fgsp scratch
pages ``K0``/``K1``, then per user page its cache line, ``populated``, pin count and dma (``None``
or ``(iommu_mapped, flag)``: the family's dmas are one page each at IOVA = page), and the
transient ``op`` column of the chains.

Moves:

* an op that touches one page and the container (CPU and device accesses, eviction, MAP_DMA,
  UNMAP_DMA, KVM FILE_ADD) *is* the driver function of :mod:`memtypes.linux.dma.type1`
  (through :func:`~memtypes.linux.dma.bind`), applied to a state rebuilt from the columns it
  reads, the others at their initial values (``_local`` lists what each op reads and writes;
  an op that changes a column it does not declare is refused);
* attach, detach and release walk every dma: they are chains (a move, one step per page in IOVA
  order, then a step on the container), built from the same driver functions (type1.py, after
  drivers/vfio/vfio_iommu_type1.c v6.4-v6.9, kernel-vfio.md section 3), for the family's
  alphabet: one-page dmas and an injected replay failure at the first ``iommu_map`` call only
  (``fail_at=0``):

  - attach (vfio_iommu_type1_attach_group): the move merges into a domain with the same ops
    and enforce; else each page is ``type1._replay`` (vfio_iommu_replay) of its one dma, failing
    at the first dma met when the failure is injected (the unwind then touches that dma only),
    and the last step is ``type1._test_domain_fgsp`` on K0/K1 and the domain list (list_add,
    has_nc / noncoherent_domains).  With the failure injected and no dma the attach is not
    offered (the family's guard): its steps then change nothing, so it is no transition;
  - detach (vfio_iommu_type1_detach_group) and release (vfio_iommu_type1_release): each page
    is ``type1._unmap_unpin`` (vfio_unmap_unpin) of its dma when the driver walks the dmas
    (detach of the only domain, release), and the last step is ``type1.detach`` /
    ``type1.release`` on the container, the dmas gone.

``tests/check/test_dma_type1_table.py`` explores both forms, for every kernel and variant at
one page and for one job at two pages, and checks that they reach the same states (as type1
states) with the same transitions, depth, verdicts and shortest traces.  The groups must never
share a domain (the family's ``gcc`` and ``gnc`` differ in coherency), and the fgsp probe is
``None`` or ``"read"``: other settings are refused.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from memtypes.arch import cache
from memtypes.check.families.dma_table import DriverTable
from memtypes.explore.table import Chain, Column, Moves, Step
from memtypes.linux.dma import bind, op_parts, type1
from memtypes.linux.dma import variants as V

(IOMMU, DOMAINS, HAS_NC, NC_COUNT, KVM_FILES, KVM_NC, DEV_READ, BAD_READ, UNPINNED,
 K0, K1) = range(11)
CTL = 11
_CONTAINER = (IOMMU, DOMAINS, HAS_NC, NC_COUNT, DEV_READ, BAD_READ, UNPINNED, K0, K1)
"""What the last step of a chain reads and writes (with the op)."""
LINE, POP, PINS, DMA = range(4)            # a page's columns, from CTL + 4 * page

DMAS = (None, (False, False), (False, True), (True, False), (True, True))


def _closure(start, ops) -> tuple:
    seen, todo = set(start), list(start)
    while todo:
        ln = todo.pop()
        for f in ops:
            nl = f(ln)
            if nl not in seen:
                seen.add(nl)
                todo.append(nl)
    return tuple(sorted(seen))


LINES = _closure([cache.line(cache.PREV)], [
    lambda ln: cache.cpu_read(ln)[0], lambda ln: cache.cpu_write(ln, "G"),
    lambda ln: cache.cpu_write(ln, cache.ZERO), cache.evict, cache.flush,
    lambda ln: cache.ns_write(ln, "B"), lambda ln: cache.snoop_write(ln, "B")])
"""A user page's cache line: every line the family's ops (guest read and write of ``G``, zero
fill, eviction, flush, device writes of ``B``) make from the initial ``S`` (19 lines; an op
that made another would stop the vector explorer with a domain error, and the tests)."""


class Op(NamedTuple):
    """The transient column while a chain runs (``None`` otherwise)."""

    op: str                     # attach / detach / release
    group: str | None
    probe: str | None           # attach: what a device does in the fgsp window
    fail: bool                  # attach: the replay's first iommu_map fails
    walk: bool                  # the pages' dmas are walked
    seen: bool                  # attach: a dma was met
    failed: bool                # attach: the replay failed
    acc: bool                   # a page was unpinned (F@unpin or a pin count dropped to 0)


# what each single-page (or container) op reads and writes; ``p``: the page's columns
def _local(name: str, page):
    L, P, N, D = page if page is not None else (None,) * 4
    rw = {
        "guest_read": ((L, P, N), (L, P)),
        "host_read": ((L, P, N), (L, P)),
        "guest_write": ((L, P, N), (L, P)),
        "evict": ((L,), (L,)),
        "dev_read": ((DOMAINS, DEV_READ, BAD_READ, L, D), (DEV_READ, BAD_READ)),
        "dev_write": ((DOMAINS, L, D), (L,)),
        "map": ((IOMMU, DOMAINS, HAS_NC, NC_COUNT, UNPINNED, L, P, N, D), (UNPINNED, L, P, N, D)),
        "unmap": ((UNPINNED, L, N, D), (UNPINNED, L, N, D)),
        "kvm_add": ((IOMMU, DOMAINS, NC_COUNT, KVM_FILES, KVM_NC), (KVM_FILES, KVM_NC)),
    }.get(name)
    if rw is None:
        raise ValueError(f"the table form of dma-type1 has no op {name!r}")
    return rw


_PROPERTY_READS = {
    "device-reads-owner-data": lambda n: [(BAD_READ,)],
    "host-consistent-after-unpin": lambda n: [(CTL + 4 * p + LINE, CTL + 4 * p + PINS) for p in range(n)]
    + [(K0,), (K1,)],
    "coherency-reported": lambda n: [(IOMMU, DOMAINS, NC_COUNT, KVM_FILES, KVM_NC)],
    "device-read-happened": lambda n: [(DEV_READ,)],
    "page-unpinned": lambda n: [(UNPINNED,)],
    "nc-domain-attached": lambda n: [(DOMAINS,)],
}
"""The columns each property reads (a conjunction over pages is one clause per page: the
property itself, on a state rebuilt from that page, the others initial and so harmless)."""


class Type1Table(DriverTable):
    """``dma-type1`` as a table-driven model (see the module docstring); ``alphabet`` and
    ``props`` are the family's (:func:`.dma_type1.parts`).  The declared domains are tight
    (lines by closure, pins 0..2), so domain inference is off: it would cost more than it saves."""

    PROPERTY_READS = _PROPERTY_READS

    def __init__(self, name: str, env, alphabet, props):
        from memtypes.check.families.dma_type1 import DmaModel
        self.name, self.env, self.n = name, env, env.npages
        if any(g.emulated for g in env.groups):
            raise ValueError("the table form of dma-type1 has no emulated group")
        if len({(g.ops, g.nc) for g in env.groups}) != len(env.groups):
            # (the family's gcc and gnc differ in nc: an attach never merges into a domain, and
            # a domain holds one group; the columns and the failing attach rely on it)
            raise ValueError("the table form of dma-type1 needs groups that never share a domain")
        self._s0 = type1.initial(env)
        self._ref = DmaModel(name, env, self._s0, alphabet, props)
        self._props = props
        n = self.n
        self.MODE = CTL + 4 * n
        recs = [(g.name, g.ops, g.nc, (g.name,)) for g in env.groups]
        domains = tuple(itertools.chain.from_iterable(itertools.permutations(recs, k)
                                                      for k in range(len(recs) + 1)))
        files = tuple(itertools.chain.from_iterable(
            itertools.permutations([g.name for g in env.groups], k) for k in range(len(env.groups) + 1)))
        gnames = tuple(g.name for g in env.groups)
        B = (False, True)
        modes = ((None,)
                 + tuple(Op("attach", g, probe, fail, True, seen, failed, acc) for g in gnames
                         for probe in (None, "read") for fail, seen, failed, acc in itertools.product(B, B, B, B))
                 + tuple(Op("detach", g, None, False, walk, False, False, acc) for g in gnames
                         for walk, acc in itertools.product(B, B))
                 + tuple(Op("release", None, None, False, True, False, False, acc) for acc in B))
        kl = {self._s0.lines[n]}                   # what the fgsp test leaves on K0/K1
        for nc, probe in itertools.product((False, True), (None, "read")):
            lines = list(self._s0.lines)
            type1._test_domain_fgsp(env, lines, nc, probe, [])
            kl.update(lines[n:])
        kl = tuple(sorted(kl))
        self.columns = (Column("iommu", B), Column("domains", domains), Column("has_nc", B),
                        Column("nc_count", tuple(range(len(recs) + 1))), Column("kvm_files", files),
                        Column("kvm_nc", B), Column("dev_read", B), Column("bad_read", B),
                        Column("unpinned", B), Column("K0", kl), Column("K1", kl)) + tuple(
            c for p in range(n) for c in (Column(f"{env.names[p]}.line", LINES),
                                          Column(f"{env.names[p]}.populated", B),
                                          Column(f"{env.names[p]}.pins", (0, 1, 2)),
                                          Column(f"{env.names[p]}.dma", DMAS))) + (
            Column("op", modes, transient=True),)
        self._base = self._row(self._s0)
        groups = []
        for a, op, guard in alphabet:
            name = op[0]
            if name in ("attach", "detach", "release"):
                groups.append(self._chain(a, op))
                continue
            page = None
            if name in ("guest_read", "host_read", "guest_write", "evict", "map", "unmap"):
                page = op[1]
            elif name in ("dev_read", "dev_write"):
                page = op[2]
            cols = None if page is None else tuple(CTL + 4 * page + k for k in range(4))
            reads, writes = _local(name, cols)
            reads = tuple(sorted(reads))
            writes = tuple(c for c in reads if c in writes)
            groups.append(Moves(f"{a.actor}.{a.name}#{len(groups)}", reads, writes,
                                self._local_fn(a, bind(env, op), guard, reads, writes)))
        self.groups = tuple(groups)

    # --- rows and type1 states ----------------------------------------------------------------
    def _row(self, t: type1.T1) -> tuple:
        n = self.n
        dma = [None] * n
        for st, nn, m, f in t.dmas:
            if nn != 1:
                raise ValueError(f"dma at {st} spans {nn} pages: the table form has one-page dmas")
            dma[st] = (m, f)
        row = [t.iommu, t.domains, t.has_nc, t.nc_count, t.kvm_files, t.kvm_nc, t.dev_read,
               t.bad_read, t.unpinned, t.lines[n], t.lines[n + 1]]
        for p in range(n):
            row += [t.lines[p], t.populated[p], t.pins[p], dma[p]]
        return tuple(row) + (None,)

    def to_state(self, row) -> type1.T1:
        """The type1 state of a row (between states: the transient column is ignored)."""
        n = self.n
        page = [row[CTL + 4 * p: CTL + 4 * p + 4] for p in range(n)]
        return type1.T1(
            tuple(pg[LINE] for pg in page) + (row[K0], row[K1]), tuple(pg[POP] for pg in page),
            tuple(pg[PINS] for pg in page), row[IOMMU], row[DOMAINS], (),
            tuple((p, 1, pg[DMA][0], pg[DMA][1]) for p, pg in enumerate(page) if pg[DMA] is not None),
            row[HAS_NC], row[NC_COUNT], row[KVM_FILES], row[KVM_NC], row[DEV_READ], row[BAD_READ],
            row[UNPINNED], (0,) * n)

    # --- chains: attach, detach, release --------------------------------------------------------
    def _chain(self, a, op) -> Chain:
        env, M = self.env, self.MODE
        name, _args, kw = op_parts(op)
        if name == "attach":
            g = op[1]
            if (kw.get("fail_at") not in (None, 0) or kw.get("probe") not in (None, "read")
                    or set(kw) - {"fail_at", "probe"}):
                raise ValueError(f"the table form of dma-type1 cannot attach with {kw}")
            start = Op("attach", g, kw.get("probe"), kw.get("fail_at") == 0, True, False, False, False)
            grp = env.group(g)

            def first(vals):
                iommu, domains, mode = vals
                if any(g in d[3] for d in domains):
                    return ()                                 # attached already (guard)
                for i, d in enumerate(domains):               # merge: no fgsp, no replay (TV05)
                    if d[1] == grp.ops and d[2] == grp.nc:
                        nd = (d[0], d[1], d[2], d[3] + (g,))
                        return ((a, (True, domains[:i] + (nd,) + domains[i + 1:], mode)),)
                return ((a, (iommu, domains, start)),)
            head = Chain(f"vfio.attach#{g}{kw}", (IOMMU, DOMAINS, M), (IOMMU, DOMAINS, M), first)
        elif name == "detach":
            g = op[1]

            def first(vals):
                domains, mode = vals
                d = next((d for d in domains if g in d[3]), None)
                if d is None:
                    return ()                                 # not attached (guard)
                rest = tuple(x for x in d[3] if x != g)
                if rest:
                    i = domains.index(d)
                    return ((a, (domains[:i] + ((d[0], d[1], d[2], rest),) + domains[i + 1:], mode)),)
                return ((a, (domains, Op("detach", g, None, False, len(domains) == 1, False, False, False))),)
            head = Chain(f"vfio.detach#{g}", (DOMAINS, M), (DOMAINS, M), first)
        else:
            def first(vals):
                iommu, mode = vals
                if not iommu:
                    return ()
                return ((a, (iommu, Op("release", None, None, False, True, False, False, False))),)
            head = Chain("vfio.release", (IOMMU, M), (IOMMU, M), first)
        # the steps are the same in every chain (they read the op): one table each
        steps = tuple(Step(f"page{p}", tuple(range(CTL + 4 * p, CTL + 4 * p + 4)) + (M,),
                           tuple(range(CTL + 4 * p, CTL + 4 * p + 4)) + (M,),
                           lambda vals, p=p: self._page_step(p, vals), table=f"page{p}")
                      for p in range(self.n))
        ctl = _CONTAINER + (M,)
        steps += (Step("container", ctl, ctl, self._container_step, table="container"),)
        return Chain(head.name, head.reads, head.writes, head.fn, steps=steps)

    def _page_step(self, p: int, vals):
        """One page of a chain's walk, by the driver's own per-dma functions on this page's one
        dma: ``vals`` = (line, populated, pins, dma, op)."""
        ln, pop, pins, dma, mode = vals
        if mode is None or not mode.walk or dma is None or mode.failed:
            return vals
        env, n = self.env, self.n
        lines, popl, pinsl, ev = [None] * (n + 2), [False] * n, [0] * n, []
        lines[p], popl[p], pinsl[p] = ln, pop, pins
        m, flag = dma
        if mode.op == "attach":
            # vfio_iommu_replay of this dma: the injected failure is the first iommu_map call,
            # the first dma's (the unwind then touches that dma only)
            one = self._s0._replace(dmas=((p, 1, m, flag),))
            fail_at = 0 if mode.fail and not mode.seen else None
            ((_st, _n, m, flag),), ok = type1._replay(env, one, env.group(mode.group).nc, lines, popl,
                                                      pinsl, fail_at, ev)
            acc = mode.acc or any(e[0] == "F@unpin" for e in ev)
            return lines[p], popl[p], pinsl[p], (m, flag), mode._replace(seen=True, failed=not ok, acc=acc)
        # detach (last domain) and release: vfio_unmap_unpin, and the dma goes
        type1._unmap_unpin(env, lines, pinsl, (p, 1, m, flag), ev)
        acc = mode.acc or (pins > 0 and pinsl[p] == 0)
        return lines[p], pop, pinsl[p], None, mode._replace(acc=acc)

    def _container_step(self, vals):
        """The end of a chain: the container's columns, and the op cleared."""
        iommu, domains, has_nc, cnt, dread, bad, unpinned, k0, k1, mode = vals
        if mode is None:
            return vals
        env = self.env
        if mode.op == "attach":
            if mode.fail and not mode.seen:         # no dma: the failing attach is not offered
                return vals[:-1] + (None,)
            g = env.group(mode.group)
            lines, ev = [None] * (self.n + 2), []
            lines[self.n], lines[self.n + 1] = k0, k1
            type1._test_domain_fgsp(env, lines, g.nc, mode.probe, ev)
            bad = bad or any(e[0] == "read" and cache.is_previous_owner(e[3]) for e in ev)
            dread = dread or (mode.probe is not None and type1.has_fgsp(env))
            if mode.failed:                         # the domain is freed, the attach fails
                unpinned = unpinned or mode.acc
            else:                                   # list_add at the head
                domains = ((g.name, g.ops, g.nc, (g.name,)),) + domains
                if g.nc and env.variant == V.V1:
                    has_nc = True
                elif g.nc and env.variant == V.REVIEWED:
                    cnt += 1
            return True, domains, has_nc, cnt, dread, bad, unpinned, lines[self.n], lines[self.n + 1], None
        # detach and release: the driver's own, on the container once the pages are walked
        t = self.to_state(self._rebuilt(_CONTAINER + (self.MODE,), vals))
        t = (type1.detach(env, t, mode.group) if mode.op == "detach" else type1.release(env, t))[0]
        return (t.iommu, t.domains, t.has_nc, t.nc_count, t.dev_read, t.bad_read,
                t.unpinned or mode.acc, k0, k1, None)

    to_t1 = to_state
