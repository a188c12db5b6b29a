"""The table-driven form of the ``dma-iommufd`` family: the same states, transitions, verdicts and
traces as :class:`~.dma_type1.DmaModel` over :mod:`memtypes.linux.dma.iommufd`, with each move
reading a few columns, so that both explorers work per page (:mod:`memtypes.explore.table`) and
the vectorised one can take more pages (param ``pages``).

The family's shape is what makes a page a unit: IOASes ``A`` and ``B``; ``A`` holds at most one
area, the IOAS_MAP of every page at IOVA 0 (its own pages object); ``B`` holds one-page areas,
each the IOAS_COPY of page ``j`` of ``A``'s area to IOVA ``j`` -- a sub-slice of whichever pages
object ``A`` had then (kernel-vfio.md section 4, TV22).

Columns: per IOAS its hwpts (the records of iommufd.py, their ``snp0`` kept per page instead)
and its v1/reviewed NC counter, ``A``'s area (the pages object id or ``None``), the live pages
objects with their flushed bits, the KVM-VFIO registration (set at start), the sticky
observations ``dev_read`` and ``bad_read``; then per page its cache line, ``populated``, ``B``'s
area at that IOVA (a pages object id or ``None``) and the hwpts whose PTE at that IOVA is an old
SNP=0 one (TV26); and the transient ``op`` column of the chains.  (``unpinned`` is dropped by the
family's canonical form, so it has no column.)

Moves:

* an op that touches one page and the containers (CPU and device accesses, eviction, a failing
  HWPT_ALLOC, device detach) *is* the driver function of iommufd.py (through
  :func:`~memtypes.linux.dma.bind`) on a state rebuilt from the columns it reads, the others at
  their initial values (``_local``); an op that changes a column it does not declare is refused;
* HWPT_ALLOC, hwpt destroy, the TV26 attach, IOAS_MAP and both IOAS_UNMAPs walk every page,
  IOAS_COPY one page: they are chains.  The first part is the driver function on the
  containers it reads (``_HEADS``: ``B``'s areas left out; ``A``'s one area in where the ioctl
  decides for the whole area at once -- iopt_area_fill_domain's flush of ``A``'s span, IOAS_MAP's
  new pages object, pins and failure unwind); it records what the walk must do in the ``op``
  column.  Then, per page in IOVA order, a step loads the flushed bit of the page's pages object
  into the op, a step calls the driver's per-area helpers on that page (``_pin_new`` for the
  zero fill of a new pin; ``_fill`` for the v1 / reviewed pre-map flush of a ``B`` area -- in
  IOVA order, so v1's per-pages-object bit skips a later sub-slice as in the driver, TV22;
  ``_batch_unpin`` for the flush before unpin) and keeps the per-page state of the walk (pins
  held through the other IOAS, ``snp0``), and the first step again stores the bit (only walks
  that fill a ``B`` area or unpin have these bit steps).  The last steps set what only the whole
  walk knows: Intel's ``has_mappings`` of a new ``B`` hwpt once an area was filled (alloc on
  ``B``), and which pages objects the unmaps free (every walk ends there: it clears the op).

The split keeps every table small (a step reads five columns), which is what lets the
vectorised explorer run three pages (``memtypes bench``).

``tests/check/test_dma_iommufd_table.py`` explores both forms for every kernel and variant and
the family's switches, and checks that they reach the same states (as iommufd states) with the
same transitions, depth, verdicts and shortest traces.  Other alphabets are refused.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from memtypes.arch import cache
from memtypes.check.families.dma_type1_table import _closure
from memtypes.check.families.dma_table import DriverTable
from memtypes.explore.table import Chain, Column, Moves, Step
from memtypes.linux.dma import bind, iommufd, op_parts
from memtypes.linux.dma import variants as V
from memtypes.linux.dma.common import flush_pages

(HWA, CNTA, AREAA, HWB, CNTB, PAGES, KVM_FILES, KVM_NC, DEV_READ, BAD_READ) = range(10)
CTL = 10
LINE, POP, SLOT, SNP = range(4)            # a page's columns, from CTL + 4 * page
BOOLS = (False, True)
BIT = (None, False, True)
SETBIT = BIT + ("set",)


class Op(NamedTuple):
    """The transient column while a chain walks the pages (``None`` otherwise).

    ``pid``: the pages object of ``A``'s area (``None``: no area); ``other``: the IOAS not walked
    has hwpts (so page ``j``'s pin of ``pid`` is also held there when ``B``'s area at ``j`` is of
    ``pid``); ``held``: the walked IOAS's hwpts hold pins during the walk (alloc, copy: before
    it; destroy: after it; unmaps: before them).  ``flush``/``unpin``/``pin``: what the ioctl did
    to ``A``'s whole area (alloc on ``A``, IOAS_MAP).  ``cntpos``/``nc``: ``_fill``'s arguments
    for a ``B`` area (counter > 0, NC target).  ``seen``: the walk met an area (alloc on ``B``)
    or a ``B`` area of ``pid`` (unmap of ``A``).  ``snp``: the TV26 upgrade sets or clears the
    hwpt's SNP=0 IOVAs.  ``bit``: the flushed bit of the pages object of this page's walked area,
    loaded before the page's step (``None``: not loaded) and stored after it, ``"set"`` when the
    step set it (so that the page's step does not read every pages object)."""

    kind: str
    io: str | None = None
    hid: str | None = None
    pid: int | None = None
    held: bool = False
    other: bool = False
    flush: bool = False
    unpin: bool = False
    pin: bool = False
    cntpos: bool = False
    nc: bool = False
    seen: bool = False
    snp: str | None = None
    bit: bool | str | None = None


def _col(page: int, k: int) -> int:
    return CTL + 4 * page + k


def _local(name: str, j):
    """What each single-page (or container) op reads and writes; ``j`` its page.  (``pages`` is
    read only where it is written: elsewhere the rebuilt state gets unflagged pages objects for
    the areas it has, which is all an op needs of them there.)"""
    L, P, S, N = (_col(j, k) for k in range(4)) if j is not None else (None,) * 4
    return {
        "guest_read": ((L, P, S, AREAA, HWA, HWB), (L, P)),
        "guest_write": ((L, P, S, AREAA, HWA, HWB), (L, P)),
        "host_read": ((L, P, S, AREAA, HWA, HWB), (L, P)),
        "evict": ((L,), (L,)),
        "dev_read": ((HWA, HWB, AREAA, S, N, L, DEV_READ, BAD_READ), (DEV_READ, BAD_READ)),
        "dev_write": ((HWA, HWB, AREAA, S, N, L), (L,)),
        "hwpt_alloc": ((HWA, HWB, CNTA, CNTB), (CNTA, CNTB)),      # the failing one
        "dev_detach": ((HWA, HWB), (HWA, HWB)),
    }[name]


def _page_of(op: tuple):
    """The page a one-page op touches (IOVA = page in this family's IOASes), or None."""
    name = op[0]
    if name in ("guest_read", "guest_write", "host_read", "evict"):
        return op[1]
    if name in ("dev_read", "dev_write", "ioas_copy"):
        return op[2]
    return None


# what each walking ioctl's first part reads (besides ``op``), writes, and lets the driver change
# without a write because the walk decides it
_HEADS = {
    ("hwpt_alloc", "A"): ((HWA, HWB, CNTA, AREAA, PAGES), (HWA, CNTA, PAGES), ()),
    ("hwpt_alloc", "B"): ((HWA, HWB, CNTB, AREAA), (HWB, CNTB), ()),
    ("hwpt_destroy", None): ((HWA, HWB, CNTA, CNTB, AREAA), (HWA, HWB, CNTA, CNTB), ()),
    ("dev_attach", None): ((HWA, HWB, AREAA), (HWA, HWB), ()),
    ("ioas_map", "A"): ((HWA, CNTA, AREAA, PAGES), (HWA, AREAA, PAGES), ()),
    ("ioas_unmap", "A"): ((HWA, HWB, AREAA), (AREAA,), (PAGES,)),
    ("ioas_unmap", "B"): ((HWA, HWB, AREAA), (), ()),
    ("ioas_copy", "A"): ((HWA, HWB, CNTB, AREAA), (HWB,), (PAGES,)),  # + B's area at the page
}

_PROPERTY_READS = {
    "device-reads-owner-data": lambda n: [(BAD_READ,)],
    "host-consistent-after-unpin": lambda n: [(_col(j, LINE), _col(j, SLOT), AREAA, HWA, HWB)
                                              for j in range(n)],
    "coherency-reported": lambda n: [(HWA, HWB, KVM_FILES, KVM_NC)] + [(HWA, HWB, _col(j, SNP))
                                                                       for j in range(n)],
    "device-read-happened": lambda n: [(DEV_READ,)],
    "page-unpinned": lambda n: [(_col(j, POP), _col(j, SLOT), AREAA, HWA, HWB) for j in range(n)],
    "nc-domain-attached": lambda n: [(HWA, HWB)],
}
"""The columns each property reads: the family's own predicate on a state rebuilt from them (a
conjunction or disjunction over pages is one clause per page; the other pages are initial,
unpinned, unpopulated and clean, so they decide nothing)."""


class IommufdTable(DriverTable):
    """``dma-iommufd`` as a table-driven model (see the module docstring); ``s0``, ``alphabet``
    and ``props`` are the family's (:func:`.dma_iommufd.parts`).  The declared domains are
    tight, so domain inference is off."""

    PROPERTY_READS = _PROPERTY_READS

    def __init__(self, name: str, env, s0: iommufd.Fd, alphabet, props):
        from memtypes.check.families.dma_iommufd import _canon
        from memtypes.check.families.dma_type1 import DmaModel
        self.name, self.env, self.n = name, env, env.npages
        n = self.n
        if env.uncached or env.pfnmap:
            raise ValueError("the table form of dma-iommufd has no uncached or PFNMAP pages")
        self._s0 = s0
        self._ref = DmaModel(name, env, s0, alphabet, props, canon=_canon)
        self._props = props
        self.M = M = CTL + 4 * n
        self._check_alphabet(alphabet)
        self.columns = self._declare(alphabet)
        self._base = self._row(s0)

        def page_steps(j, bits):
            pc = (_col(j, LINE), _col(j, POP), _col(j, SLOT), _col(j, SNP), M)
            page = Step(f"page{j}", pc, pc, lambda vals, j=j: self._page_step(j, vals), table=f"page{j}")
            if not bits:
                return (page,)
            bit = Step(f"bit{j}", (_col(j, SLOT), PAGES, M), (PAGES, M), self._bit_step,
                       table=f"bit{j}")
            return (bit, page, bit)
        hm = Step("has_mappings", (HWB, M), (HWB, M), self._hm_step, table="has_mappings")
        free = Step("free", (PAGES, M), (PAGES, M), self._free_step, table="free")
        groups = []
        for a, op, guard in alphabet:
            name, _args, kw = op_parts(op)
            j = _page_of(op)
            # the steps a walk needs: the bits of the pages objects where a B area is filled or
            # an area unpinned; has_mappings after an alloc on B; "free" last (it clears the op)
            bits = not (name in ("dev_attach", "ioas_map") or (name == "hwpt_alloc" and op[1] == "A"))
            if name == "ioas_copy":
                groups.append(self._chain(a, op, guard, page_steps(j, True) + (free,)))
            elif name in ("hwpt_destroy", "dev_attach", "ioas_map", "ioas_unmap") or (
                    name == "hwpt_alloc" and not kw.get("fail")):
                end = (hm, free) if name == "hwpt_alloc" and op[1] == "B" else (free,)
                groups.append(self._chain(a, op, guard, tuple(
                    st for p in range(n) for st in page_steps(p, bits)) + end))
            else:
                reads, writes = _local(name, j)
                reads = tuple(sorted(reads))
                writes = tuple(c for c in reads if c in writes)
                groups.append(Moves(f"{a.actor}.{a.name}#{len(groups)}", reads, writes,
                                    self._local_fn(a, bind(env, op, "iommufd"), guard, reads, writes)))
        self.groups = tuple(groups)

    def _check_alphabet(self, alphabet) -> None:
        n = self.n
        for _a, op, _g in alphabet:
            name, args, kw = op_parts(op)
            ok = {
                "ioas_map": lambda: args == ("A", 0, 0, n) and set(kw) <= {"fail"},
                "ioas_unmap": lambda: args in (("A", 0, n), ("B", 0, n)),
                "ioas_copy": lambda: (len(args) == 5 and args[0] == "A" and args[2] == 1
                                      and args[3] == "B" and args[1] == args[4] and not kw),
                "hwpt_alloc": lambda: args[0] in ("A", "B") and set(kw) <= {"fail", "fs"},
                "hwpt_destroy": lambda: True, "dev_attach": lambda: True, "dev_detach": lambda: True,
                "guest_read": lambda: True, "guest_write": lambda: True, "host_read": lambda: True,
                "evict": lambda: True, "dev_read": lambda: True, "dev_write": lambda: True,
            }.get(name)
            if ok is None or not ok():
                raise ValueError(f"the table form of dma-iommufd has no op {op!r}")

    def _declare(self, alphabet) -> tuple:
        env, n = self.env, self.n
        allocs, ok_allocs = [], []             # (ioas, hid, first stage) of every / every good alloc
        for _a, op, _g in alphabet:
            if op[0] == "hwpt_alloc":
                kw = op_parts(op)[2]
                allocs.append((op[1], op[2], bool(kw.get("fs"))))
                if not kw.get("fail"):
                    ok_allocs.append(allocs[-1])
        attach = [(op[1], op[2]) for _a, op, _g in alphabet if op[0] == "dev_attach"]
        upgradable = sorted({h for _d, h in attach})

        def records(io):
            out = []
            for _io, hid, fs in (x for x in ok_allocs if x[0] == io):
                devs = [hid] + [d for d, h in attach if h == hid and d != hid]
                dv = tuple(itertools.chain.from_iterable(itertools.permutations(devs, k)
                                                         for k in range(len(devs) + 1)))
                nc0 = env.group(hid).nc
                ncs = (nc0, False) if nc0 else (False,)
                for nc, hm, d in itertools.product(ncs, BOOLS, dv):
                    if hm and not iommufd._tracks_hm(env, nc0, fs):
                        continue
                    out.append((hid, nc, fs, hm, (), d))
            return out

        def hw_domain(io):
            recs = records(io)
            hids = sorted({r[0] for r in recs})
            vals = [()]
            for k in range(1, len(hids) + 1):
                for order in itertools.permutations(hids, k):
                    vals += [tuple(c) for c in itertools.product(*[[r for r in recs if r[0] == h]
                                                                   for h in order])]
            return tuple(vals)

        def cnt_domain(io):
            k = sum(1 for x in allocs if x[0] == io)
            wrap = tuple(iommufd.U32 - i for i in range(k, 0, -1)) if env.variant == V.V1 else ()
            return tuple(range(k + 1)) + wrap

        pids = (None,) + tuple(range(n + 1))
        pages = tuple(tuple((p, 0, n, bit) for p, bit in zip(sub, bits))
                      for k in range(n + 2) for sub in itertools.combinations(range(n + 1), k)
                      for bits in itertools.product(BOOLS, repeat=k))
        snps = tuple(tuple(c) for k in range(len(upgradable) + 1)
                     for c in itertools.combinations(upgradable, k))
        self._hid_io = {}
        for io, hid, _fs in ok_allocs:
            if self._hid_io.setdefault(hid, io) != io:
                raise ValueError(f"hwpt {hid} on two IOASes: the table form has one each")
        P, BB = (None,) + tuple(range(n + 1)), itertools.product
        ops = (None,)
        for io, hid, _fs in ok_allocs:
            if io == "A":
                ops += tuple(Op("alloc", io, hid, pid=p, held=h, other=o, flush=f)
                             for p, h, o, f in BB(P, BOOLS, BOOLS, BOOLS))
            else:
                ops += tuple(Op("alloc", io, hid, pid=p, held=h, other=o, cntpos=c, seen=e, bit=b)
                             for p, h, o, c, e, b in BB(P, BOOLS, BOOLS, BOOLS, BOOLS, SETBIT))
        for _a, op, _g in alphabet:
            if op[0] == "hwpt_destroy" and op[1] in self._hid_io:
                ops += tuple(Op("destroy", self._hid_io[op[1]], op[1], pid=p, held=h, other=o, bit=b)
                             for p, h, o, b in BB(P, BOOLS, BOOLS, BIT))
        for _d, hid in attach:
            if hid in self._hid_io:
                io = self._hid_io[hid]
                ops += tuple(Op("attach", io, hid, pid=p, snp=x)
                             for p, x in BB(P if io == "A" else (None,), ("set", "clear")))
        ops += tuple(Op("map", pin=a, flush=f, unpin=u) for a, f, u in BB(BOOLS, BOOLS, BOOLS))
        ops += tuple(Op("copy", pid=p, held=h, other=o, cntpos=c, nc=x, bit=b)
                     for p, h, o, c, x, b in BB(P[1:], BOOLS, BOOLS, BOOLS, BOOLS, SETBIT))
        ops += tuple(Op(k, pid=p, held=h, other=o, seen=e, bit=b)
                     for k in ("unmapA", "unmapB") for p, h, o, e, b in BB(P, BOOLS, BOOLS, BOOLS, BIT))
        s0 = self._s0
        # a page's cache line: every line the alphabet's CPU and device ops, zero fill, eviction
        # and flush make from the initial ones
        ops_ln = [lambda ln: cache.cpu_read(ln)[0], lambda ln: cache.cpu_write(ln, cache.ZERO),
                  cache.evict, cache.flush]
        for _a, op, _g in alphabet:
            if op[0] == "guest_write":
                ops_ln.append(lambda ln, v=op[2]: cache.cpu_write(ln, v))
            elif op[0] == "dev_write":
                v = op[3] if len(op) > 3 else "B"
                ops_ln += [lambda ln, v=v: cache.ns_write(ln, v), lambda ln, v=v: cache.snoop_write(ln, v)]
        lines = _closure(set(s0.lines[:n]), ops_ln)
        cols = (Column("A.hwpts", hw_domain("A")), Column("A.nc_count", cnt_domain("A")),
                Column("A.area", pids), Column("B.hwpts", hw_domain("B")),
                Column("B.nc_count", cnt_domain("B")), Column("pages", pages),
                Column("kvm_files", (s0.kvm_files,)), Column("kvm_nc", (s0.kvm_nc,)),
                Column("dev_read", BOOLS), Column("bad_read", BOOLS))
        for j in range(n):
            nm = env.names[j]
            cols += (Column(f"{nm}.line", lines), Column(f"{nm}.populated", BOOLS),
                     Column(f"B@{j}", pids), Column(f"{nm}.snp0", snps))
        return cols + (Column("op", ops, transient=True),)

    # --- rows and iommufd states ------------------------------------------------------------------
    def _row(self, s: iommufd.Fd) -> tuple:
        n = self.n
        (na, areas_a, hw_a, cnt_a), (nb, areas_b, hw_b, cnt_b) = s.ioas
        if (na, nb) != ("A", "B"):
            raise ValueError(f"IOASes {na}, {nb}: the table form has A and B")
        if len(areas_a) > 1 or any(ar[0] != 0 or ar[2] != 0 or ar[3] != n for ar in areas_a):
            raise ValueError(f"areas {areas_a} of A: the table form has one area of every page at 0")
        slots = [None] * n
        for iova, pid, off, k in areas_b:
            if k != 1 or off != iova:
                raise ValueError(f"area {(iova, pid, off, k)} of B: the table form has one-page copies")
            slots[iova] = pid
        snp = [set() for _ in range(n)]
        for h in hw_a + hw_b:
            for iova in h[4]:
                snp[iova].add(h[0])
        strip = lambda hw: tuple((h[0], h[1], h[2], h[3], (), h[5]) for h in hw)  # noqa: E731
        row = [strip(hw_a), cnt_a, areas_a[0][1] if areas_a else None, strip(hw_b), cnt_b, s.pages,
               s.kvm_files, s.kvm_nc, s.dev_read, s.bad_read]
        for j in range(n):
            row += [s.lines[j], s.populated[j], slots[j], tuple(sorted(snp[j]))]
        return tuple(row) + (None,)

    def to_state(self, row) -> iommufd.Fd:
        """The iommufd state of a row (between states: the transient column is ignored)."""
        n = self.n
        snp = [row[_col(j, SNP)] for j in range(n)]

        def hw(recs):
            return tuple((h[0], h[1], h[2], h[3], tuple(j for j in range(n) if h[0] in snp[j]), h[5])
                         for h in recs)
        areas_a = ((0, row[AREAA], 0, n),) if row[AREAA] is not None else ()
        areas_b = tuple((j, row[_col(j, SLOT)], j, 1) for j in range(n) if row[_col(j, SLOT)] is not None)
        return iommufd.Fd(
            tuple(row[_col(j, LINE)] for j in range(n)) + self._s0.lines[n:],
            tuple(row[_col(j, POP)] for j in range(n)), row[PAGES],
            (("A", areas_a, hw(row[HWA]), row[CNTA]), ("B", areas_b, hw(row[HWB]), row[CNTB])),
            row[KVM_FILES], row[KVM_NC], row[DEV_READ], row[BAD_READ], False)

    def _rebuilt(self, reads, vals) -> list:
        """A row from the values of ``reads``, the other columns initial; without ``pages``
        among them, unflagged pages objects for the areas it has."""
        row = super()._rebuilt(reads, vals)
        if PAGES not in reads:
            pids = {row[AREAA]} | {row[_col(j, SLOT)] for j in range(self.n)}
            row[PAGES] = tuple((p, 0, self.n, False) for p in sorted(pids - {None}))
        return row

    # --- chains -------------------------------------------------------------------------------------
    def _chain(self, a, op, guard, steps) -> Chain:
        """A walking ioctl: its first part is the driver function on the containers it reads
        (``_HEADS``; see the module docstring), which also gives the walk's :class:`Op`."""
        env, M = self.env, self.M
        name = op[0]
        fn = bind(env, op, "iommufd")
        key = (name, op[1] if name in ("hwpt_alloc", "ioas_map", "ioas_unmap", "ioas_copy") else None)
        dreads, dwrites, decided = _HEADS[key]
        j = _page_of(op)
        if name == "ioas_copy":
            dreads, dwrites = dreads + (_col(j, SLOT),), dwrites + (_col(j, SLOT),)
        reads = tuple(sorted(dreads)) + (M,)
        writes = tuple(c for c in reads if c in dwrites) + (M,)

        def first(vals):
            row = self._rebuilt(reads, vals)
            s = self.to_state(row)
            if key == ("ioas_unmap", "B"):
                # B's areas are the walk's, and so is the guard ("B has an area"): with none
                # the walk changes nothing, so it is no transition
                t, ev = s, ()
            else:
                if not guard(s):
                    return ()
                t, ev = fn(s)
                if any(e[0] == "err" for e in ev) and name != "ioas_map":
                    return ()                     # a failed ioctl changes nothing here
            nxt = self._row(t)
            self._strays(a, row, nxt, dwrites + decided, range(CTL))
            if name == "ioas_copy":
                self._strays(a, row, nxt, dwrites, (_col(j, SLOT),))
            walk = self._walk(name, op, s, t, ev)
            return ((a, tuple(nxt[c] for c in writes[:-1]) + (walk,)),)
        return Chain(f"iommufd.{name}#{op[1:]}", reads, writes, first, steps=steps)

    def _walk(self, name, op, s, t, ev):
        """The :class:`Op` of a walk from the ioctl on the containers: ``s`` before, ``t`` after,
        ``ev`` its events."""
        env = self.env
        fns = {e[0] for e in ev}
        area_a = s.ioas[0][1][0][1] if s.ioas[0][1] else None
        hw = {io[0]: bool(io[2]) for io in s.ioas}
        if name == "hwpt_alloc":
            io, hid = op[1], op[2]
            if io == "A":
                return Op("alloc", io, hid, pid=area_a, held=hw["A"], other=hw["B"],
                          flush="F@fill_domain" in fns)
            return Op("alloc", io, hid, pid=area_a, held=hw["B"], other=hw["A"],
                      cntpos=t.ioas[1][3] > 0)
        if name == "hwpt_destroy":
            hid = op[1]
            i = iommufd.hwpt_of(s, hid)[0]
            io = s.ioas[i][0]
            return Op("destroy", io, hid, pid=area_a, held=bool(t.ioas[i][2]),
                      other=hw["B" if io == "A" else "A"])
        if name == "dev_attach":
            hid = op[2]
            i, before = iommufd.hwpt_of(s, hid)
            after = iommufd.hwpt_of(t, hid)[1]
            if not (before[1] and not after[1]):
                return None                       # joined without an upgrade: no walk
            io = s.ioas[i][0]
            return Op("attach", io, hid, pid=area_a if io == "A" else None,
                      snp="clear" if after[2] else "set")
        if name == "ioas_map":
            return Op("map", pin=hw["A"], flush="F@fill_domains" in fns,
                      unpin="F@batch_unpin" in fns)
        if name == "ioas_copy":
            return Op("copy", pid=area_a, held=hw["B"], other=hw["A"], cntpos=s.ioas[1][3] > 0,
                      nc=any(h[1] for h in s.ioas[1][2]))
        if op[1] == "A":
            return Op("unmapA", pid=area_a, held=hw["A"], other=hw["B"])
        return Op("unmapB", pid=area_a, held=hw["B"], other=hw["A"])

    def _walked(self, op: Op, slot):
        """The pages object of the walked area at this page, or None."""
        b_walk = op.io == "B" or op.kind in ("unmapB", "copy")
        if op.kind in ("map", "attach"):
            return None
        return slot if b_walk else op.pid

    def _bit_step(self, vals):
        """Before a page's step, load the flushed bit of its walked area's pages object into the
        op; after it, store the bit the step set (``_fill``) and clear it."""
        slot, pages, op = vals
        if op is None:
            return pages, op
        if op.bit is not None:                    # after the page's step
            if op.bit == "set":
                pid = self._walked(op, slot)
                pages = tuple((p[0], p[1], p[2], True) if p[0] == pid else p for p in pages)
            return pages, op._replace(bit=None)
        pid = self._walked(op, slot)
        if pid is None or (op.kind == "alloc" and op.io == "A"):
            return pages, op                      # (alloc on A: the ioctl decided the whole area)
        return pages, op._replace(bit=next(p[3] for p in pages if p[0] == pid))

    def _page_step(self, j: int, vals):
        """Page ``j`` of a walk: ``vals`` = (line, populated, B's area here, snp0 hwpts, op)."""
        ln, pop, slot, snp, op = vals
        if op is None:
            return vals
        env, n, s0 = self.env, self.n, self._s0
        lines, popl, ev = list(s0.lines), list(s0.populated), []
        lines[j], popl[j] = ln, pop
        shared = slot is not None and slot == op.pid and op.other  # pin held by the other IOAS too
        k = op.kind
        obj = lambda pid: ((pid, 0, n, bool(op.bit)),)            # noqa: E731
        if k == "alloc" and op.io == "A":
            if op.pid is not None:
                if not (op.held or shared):       # iopt_area_fill_domain pins: zero fill
                    iommufd._pin_new(env, lines, popl, set(), {(op.pid, j)}, op.pid, (j,), ev)
                if op.flush:                      # the ioctl flushed A's whole span
                    flush_pages(env, lines, (j,), "F@fill_domain", ev)
        elif k in ("alloc", "copy"):              # a B area, in IOVA order (v1's bit, TV22)
            if slot is not None and (k == "alloc" or op.held):
                if not (op.held if k == "alloc" else shared):
                    iommufd._pin_new(env, lines, popl, set(), {(slot, j)}, slot, (j,), ev)
                nc = env.group(op.hid).nc if k == "alloc" else op.nc
                fn = "F@fill_domain" if k == "alloc" else "F@fill_domains"
                got = iommufd._fill(env, s0, obj(slot), ("B", (), (), int(op.cntpos)),
                                    (j, slot, j, 1), nc, fn, lines, ev,
                                    "attach_nc" if k == "alloc" else "ioas_copy")
                op = op._replace(seen=k == "alloc", bit="set" if got[0][3] and not op.bit else op.bit)
        elif k == "destroy":
            pid = op.pid if op.io == "A" else slot
            if pid is not None and not (op.held or shared):
                area = (0, pid, 0, n) if op.io == "A" else (j, pid, j, 1)
                iommufd._batch_unpin(env, s0, obj(pid), area, {(pid, j)}, set(), lines, ev)
            snp = tuple(h for h in snp if h != op.hid)
        elif k == "attach":
            here = op.pid is not None if op.io == "A" else slot is not None
            rest = {h for h in snp if h != op.hid}
            snp = tuple(sorted(rest | ({op.hid} if op.snp == "set" and here else set())))
        elif k == "map":
            if op.pin:
                iommufd._pin_new(env, lines, popl, set(), {(0, j)}, 0, (j,), ev)
            if op.flush:
                flush_pages(env, lines, (j,), "F@fill_domains", ev)
            if op.unpin:
                flush_pages(env, lines, (j,), "F@batch_unpin", ev)
        elif k == "unmapA":
            if op.held and not shared:
                iommufd._batch_unpin(env, s0, obj(op.pid), (0, op.pid, 0, n), {(op.pid, j)}, set(),
                                     lines, ev)
            if slot is not None and slot == op.pid:
                op = op._replace(seen=True)
            snp = tuple(h for h in snp if self._hid_io.get(h) != "A")
        elif k == "unmapB" and slot is not None:
            if op.held and not shared:
                iommufd._batch_unpin(env, s0, obj(slot), (j, slot, j, 1), {(slot, j)}, set(), lines, ev)
            slot, op = None, op._replace(seen=True)
            snp = tuple(h for h in snp if self._hid_io.get(h) != "B")
        return lines[j], popl[j], slot, snp, op

    def _hm_step(self, vals):
        """A new ``B`` hwpt whose fill mapped an area: Intel's has_mappings (drivers/iommu/intel/
        iommu.c, e645c20e8e9c, v6.7+), as iommufd.hwpt_alloc sets it when the IOAS has areas."""
        hw_b, op = vals
        if op is not None and op.kind == "alloc" and op.io == "B" and op.seen:
            hw_b = tuple((h[0], h[1], h[2], True, h[4], h[5])
                         if h[0] == op.hid and iommufd._tracks_hm(self.env, h[1], h[2]) else h
                         for h in hw_b)
        return hw_b, op

    def _free_step(self, vals):
        """The end of a walk: the pages objects no area holds any more are freed (iopt_unmap_iova
        drops the areas' references to their iopt_pages, as iommufd.ioas_unmap models it); the op
        cleared."""
        pages, op = vals
        if op is not None and op.kind == "unmapA" and not op.seen:
            pages = tuple(p for p in pages if p[0] != op.pid)
        elif op is not None and op.kind == "unmapB":
            pages = tuple(p for p in pages if p[0] == op.pid)   # B is empty, A's stays
        return pages, None

    to_fd = to_state
