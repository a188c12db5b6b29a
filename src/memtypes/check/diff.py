"""``memtypes diff A B``: what changes between two kernels, releases or variants.

A and B are what ``--kernel`` takes (``6.16``, ``6.17.2``, ``6.17+mine``); a DMA variant
(``6.9+vfio-flush-v1``) names the DMA side of a kernel, the KVM side staying mainline.

1. **The explain space**: every backing (``linux.drivers.KINDS``) x host class (FWB, DIC, MTE:
   the 8 combinations) x slot flags (none, log_dirty, readonly; gmem_only for guest_memfd) x
   MTE enabled or not x fault kind (read, write, exec) x a remap of any backing over the slot
   (or none), explained under A and under B (:func:`memtypes.linux.kvm.explain.explain`).
   A cell changes when the memslot result, the stage-2 type, MemAttr, size, permissions, error
   (errno and where) or the MTE tag sanitising differ.  Changes are grouped: one line per
   (backing, remap, before -> after), with the set of hosts, flags, MTE and faults it covers
   written as a few products ("FWB+DIC hosts; any slot flags; MTE off; read, write").
2. **The rules**: the switches and hooks of A's and B's Rules that differ, with the reasons
   (the ``changed_by`` entries and variant citations that one side has and the other lacks);
   for DMA variants, the base and flush points.
3. **With check**: every family's verdicts under A and under B (each family at the era it
   models: a DMA family at its nearest modelled era, said so), the verdicts that change, each
   with its shortest counterexample.

The MTE enable order (before or after the memslot) is not a dimension: ``explain`` enables MTE
before any memslot, as KVM requires before the first vCPU.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any

from memtypes.arch.features import Features
from memtypes.errors import InputError
from memtypes.linux import drivers
from memtypes.linux.dma import variants as dma_variants
from memtypes.linux.kvm import eras
from memtypes.linux.kvm.eras import Kernel
from memtypes.linux.kvm.explain import explain
from memtypes.linux.version import split_variant

FLAG_SETS = ("", "log_dirty", "readonly")
FAULTS = ("read", "write", "exec")
REMAPS: tuple[str | None, ...] = (None,) + tuple(k for k in drivers.KINDS if k != "gicv2-gicv")
HOST_CLASSES: tuple[tuple[bool, bool, bool], ...] = tuple(
    tuple(bool(x) for x in c) for c in itertools.product((1, 0), repeat=3))
"""(fwb, dic, mte), FWB+DIC+MTE first."""
BUILTIN_HOSTS = {(True, True, False): "grace", (False, False, False): "armv8.0",
                 (True, True, True): "armv8.5-mte", (False, True, True): "armv8.5-mte-nofwb"}
"""Built-in profiles of a class, named beside it (armv8.5-mte-nofwb: DIC, MTE, no FWB)."""


@dataclass(frozen=True)
class Side:
    """One side of a diff: the KVM kernel and, if named, a DMA variant."""

    spec: str
    kernel: Kernel
    dma: str | None = None

    @property
    def label(self) -> str:
        return self.spec


def side(spec: str, *, where: str) -> Side:
    base, variant = split_variant(spec.strip())
    if variant and variant not in _kvm_variants() and variant in dma_variants.DMA_VARIANTS:
        return Side(spec, eras.kernel(base, where=where), variant)
    if variant and variant in dma_variants.ALIASES:
        return Side(spec, eras.kernel(base, where=where), dma_variants.get(variant).name)
    return Side(spec, eras.kernel(spec.strip(), where=where))


def _kvm_variants():
    from memtypes.linux.kvm import variants
    return variants.VARIANTS


# -- the explain space ------------------------------------------------------------------------

def host_text(c: tuple[bool, bool, bool]) -> str:
    f, d, m = c
    return "+".join(n for n, on in (("FWB", f), ("DIC", d), ("MTE", m)) if on) or "no FWB/DIC/MTE"


def _side_fields(ex) -> dict[str, str]:
    """What a cell ends in, field by field, as short texts."""
    if ex.memslot is None:
        return {"memslot": f"n/a ({ex.memslot_na})"}
    if not ex.memslot.ok:
        return {"memslot": f"{ex.memslot.errno} ({ex.memslot.rule})"}
    f = ex.fault
    d = {"memslot": "ok"}
    if ex.vm_mte_after is not None:     # KVM_ENABLE_CAP(MTE) after the slot: granted or refused
        d["mte"] = "MTE granted" if ex.vm_mte_after[0] == "ok" else f"MTE refused {ex.vm_mte_after[1]}"
    if f.result == "map":
        d.update({"result": f"{f.s2} (MemAttr 0x{f.memattr:x})", "size": f.size,
                  "W": "W" if f.w else "no W", "X": "X" if f.x else "no X",
                  "tags": "tags sanitised" if f.mte_sanitised else "tags not sanitised"})
    elif f.result == "pabt":
        d["result"] = f"{f.errno} (guest prefetch abort)"
    elif f.result == "error":
        d["result"] = f"{f.errno} at {f.where}"
    else:
        d["result"] = f.result + (f" at {f.where}" if f.where else "")
    return d


def _outcome(d: dict) -> str:
    if d["memslot"] != "ok":
        return "memslot " + d["memslot"]
    return d["result"]


def _change_text(ea, eb) -> tuple[str, str]:
    """The outcome (memslot refusal, stage-2 type and MemAttr, or the error) when it changes;
    else only the details that differ (size, W, X, tags)."""
    fa, fb = _side_fields(ea), _side_fields(eb)
    oa, ob = _outcome(fa), _outcome(fb)
    if (fa["memslot"] == "ok") != (fb["memslot"] == "ok"):
        return "memslot " + fa["memslot"], "memslot " + fb["memslot"]   # what follows is moot
    if oa != ob:
        return oa, ob
    keys = [k for k in ("mte", "size", "W", "X", "tags") if fa.get(k) != fb.get(k)]
    return (f"{oa}, " + ", ".join(fa.get(k, "-") for k in keys),
            f"{ob}, " + ", ".join(fb.get(k, "-") for k in keys))


def _cell_key(ex) -> tuple:
    ms = ex.memslot
    f = ex.fault
    return ((None, ex.memslot_na) if ms is None else (ms.ok, ms.errno, ms.rule),
            f.result, f.s2, f.memattr, f.size, f.w, f.x, f.errno, f.where, f.mte_sanitised, ex.vm_mte_after)


MTE_ORDERS = ("off", "before", "after")
"""KVM_CAP_ARM_MTE not enabled, enabled before the memslot, or after it (before any vCPU)."""
_MTE_SETS = {
    frozenset({"off"}): "no MTE VM", frozenset({"before"}): "MTE enabled before the slot",
    frozenset({"after"}): "MTE enabled after the slot",
    frozenset({"off", "before"}): "MTE off or enabled before the slot",
    frozenset({"off", "after"}): "MTE off or enabled after the slot",
    frozenset({"before", "after"}): "MTE enabled (before or after the slot)",
}


def space():
    """Every cell of the explain space: (backing, remap, flags, MTE order, fault, host class)."""
    for b in drivers.KINDS:
        flag_sets = FLAG_SETS + (("gmem_only",) if b == "guest-memfd" else ())
        remaps = (None,) if b == "gicv2-gicv" else REMAPS
        for rm in remaps:
            for fl, mte, fk, hc in itertools.product(flag_sets, MTE_ORDERS, FAULTS, HOST_CLASSES):
                yield b, rm, fl, mte, fk, hc


def _explain(k: Kernel, cell):
    b, rm, fl, mte, fk, hc = cell
    host = Features(fwb=hc[0], dic=hc[1], mte=hc[2])
    return explain(k, host, b, vm_mte=mte == "before", mte_after_memslot=mte == "after",
                   slot_flags=fl or None, remap=rm, fault=fk)


def _boxes(points: set, dims: int, allowed: set | None = None) -> list[tuple[frozenset, ...]]:
    """``points`` (tuples of ``dims`` values) as a few products of value sets, each inside
    ``points | allowed`` (``allowed``: cells that may be covered or not, e.g. those refused the
    same way on both sides before the change could show).  Greedy: from the first uncovered
    point, grow a box one dimension at a time by every value that keeps it inside; repeat."""
    ok = points | (allowed or set())
    universe = [sorted({c[d] for c in ok}, key=repr) for d in range(dims)]
    left = set(points)
    out = []
    while left:
        seed = min(left, key=repr)
        box = [frozenset({seed[d]}) for d in range(dims)]
        for d in range(dims):
            for v in universe[d]:
                if v in box[d]:
                    continue
                trial = box[:d] + [frozenset({v})] + box[d + 1:]
                if all(c in ok for c in itertools.product(*trial)):
                    box[d] = box[d] | {v}
        out.append(tuple(box))
        left -= set(itertools.product(*box))
    return out


def _hosts_text(hs: frozenset) -> str:
    if len(hs) == len(HOST_CLASSES):
        return "any host"
    lits = []
    for i, name in enumerate(("FWB", "DIC", "MTE")):
        vals = {h[i] for h in hs}
        if len(vals) == 1:
            lits.append((i, vals.pop(), name))
    sub = [h for h in HOST_CLASSES if all(h[i] == v for i, v, _ in lits)]
    comp = frozenset(HOST_CLASSES) - hs
    clits = []
    for i, name in enumerate(("FWB", "DIC", "MTE")):
        vals = {h[i] for h in comp}
        if len(vals) == 1:
            clits.append((i, vals.pop(), name))
    csub = [h for h in HOST_CLASSES if all(h[i] == v for i, v, _ in clits)]
    if len(sub) == len(hs):
        text = " ".join(("" if v else "no ") + n for _i, v, n in lits) + " hosts"
    elif comp and len(csub) == len(comp) and all(v for _i, v, _n in clits):
        text = "hosts without " + "+".join(n for _i, _v, n in clits)
    elif len(comp) == 1:
        (c,) = comp
        name = host_text(c) + ("" if c[2] else " without MTE")
        return "any host but " + name + (f" (e.g. {BUILTIN_HOSTS[c]})" if c in BUILTIN_HOSTS else "")
    else:
        text = "hosts " + ", ".join(host_text(h) for h in HOST_CLASSES if h in hs)
    named = [BUILTIN_HOSTS[h] for h in HOST_CLASSES if h in hs and h in BUILTIN_HOSTS]
    return text + (f" (e.g. {', '.join(named)})" if named else "")


def _set_text(vals: frozenset, universe: tuple, label, any_text: str) -> str:
    if set(universe) <= set(vals):
        return any_text
    return ", ".join(label(v) for v in universe if v in vals)


@dataclass
class Change:
    vma: str
    """The backing whose VMA the fault sees (the remap, if any)."""
    before: str
    after: str
    where: list[str]
    cells: int
    reasons: list[str] = field(default_factory=list)
    remap: bool = False
    """Only when the VMA is mmapped over an existing slot (a path the direct slot does not take)."""

    def as_dict(self) -> dict:
        return {"vma": self.vma, "remap": self.remap, "before": self.before, "after": self.after,
                "where": self.where, "cells": self.cells, "reasons": self.reasons}

    def lines(self) -> list[str]:
        head = f"{self.vma}{' (remapped)' if self.remap else ''}: {self.before} -> {self.after}"
        return [head] + [f"    on {w}" for w in self.where]


def _origin_text(vals: frozenset, vma: str) -> str:
    if vals == {"slot"}:
        return ""
    over = sorted(v for v in vals if v != "slot")
    allk = [k for k in drivers.KINDS if k not in ("gicv2-gicv", vma)]
    return ("mmapped over a slot of any backing" if set(allk) <= set(over)
            else "mmapped over a slot of " + ", ".join(over))


def _same_failure(ea, eb) -> bool:
    """Neither side maps the page, and both end the same way (the memslot refused, a write to a
    read-only slot left to the VMM, an MTE refusal, ...): no change can show there, so such a
    cell may fall inside a printed range or not."""
    return not ea.fault.mapped and _cell_key(ea) == _cell_key(eb)


def explain_changes(a: Kernel, b: Kernel) -> tuple[list[Change], int]:
    """The changed cells, grouped by (the VMA faulted on, the change); and the number of cells.

    A remap cell (backing X, then VMA Y mmapped over the slot) is listed only when a slot
    created over Y directly never shows that change (e.g. the remap bypasses a memslot check);
    otherwise the direct line stands for it."""
    results = {}
    n = 0
    for cell in space():
        n += 1
        results[cell] = (_explain(a, cell), _explain(b, cell))
    groups: dict[tuple, dict] = {}
    dontcare: dict[tuple, set] = {}
    direct_changes = {(c[0],) + _change_text(*results[c]) for c in results
                      if c[1] is None and _cell_key(results[c][0]) != _cell_key(results[c][1])}
    for cell, (ea, eb) in results.items():
        bk, rm, fl, mte, fk, hc = cell
        vma = rm or bk
        origin = "slot" if rm is None else bk
        kind = "slot" if rm is None else "remap"
        point = (hc, origin, fl, mte, fk)
        if _same_failure(ea, eb):
            dontcare.setdefault((vma, kind), set()).add(point)
            continue
        if rm is not None and (_side_fields(ea)["memslot"] != "ok" or _side_fields(eb)["memslot"] != "ok"):
            dontcare.setdefault((vma, kind), set()).add(point)   # the remap never happens
            continue
        if _cell_key(ea) == _cell_key(eb):
            continue
        ta, tb = _change_text(ea, eb)
        if ta == tb:      # differs only where the text does not look (e.g. the errno's site)
            ta, tb = ta + f" [{ea.fault.where}]", tb + f" [{eb.fault.where}]"
        if rm is not None and (rm, ta, tb) in direct_changes:
            continue          # a slot created over the VMA directly shows this change: its line says it
        sa, sb = _side_fields(ea), _side_fields(eb)
        if rm is not None and {k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k)} == {"mte"}:
            continue          # KVM_ENABLE_CAP(MTE) after the slot does not see the remap: the slot's line says it

        g = groups.setdefault((vma, kind, ta, tb), {"points": set(), "reasons": None})
        g["points"].add(point)
        if g["reasons"] is None:
            ra = {r.rule for r in ea.reasons}
            g["reasons"] = [f"{r.rule}: {r.text}" for r in eb.reasons if r.rule not in ra]
    out = []
    for (vma, kind, ta, tb), g in groups.items():
        flag_u = FLAG_SETS + (("gmem_only",) if vma == "guest-memfd" else ())
        wheres = []
        for hs, origins, fls, mtes, fks in _boxes(g["points"], 5, dontcare.get((vma, kind))):
            parts = [_hosts_text(hs), _origin_text(origins, vma),
                     _set_text(fls, flag_u, lambda v: v or "no flags", "any slot flags"),
                     "MTE VM or not" if set(MTE_ORDERS) <= mtes else _MTE_SETS[frozenset(mtes)],
                     _set_text(fks, FAULTS, lambda v: f"{v} fault", "any fault")]
            wheres.append(", ".join(p for p in parts if p))
        out.append(Change(vma, ta, tb, sorted(wheres), len(g["points"]), g["reasons"],
                          remap=kind == "remap"))
    out.sort(key=lambda c: (drivers.KINDS.index(c.vma), c.remap, -c.cells, c.before, c.after))
    return out, n


# -- rules ------------------------------------------------------------------------------------

_SKIP = ("era", "span", "first", "changed_by", "variant", "hooks")


def rule_changes(a: Side, b: Side) -> dict[str, Any]:
    ra, rb = a.kernel.rules, b.kernel.rules
    switches = [{"switch": f.name, "before": getattr(ra, f.name), "after": getattr(rb, f.name)}
                for f in fields(ra) if f.name not in _SKIP and getattr(ra, f.name) != getattr(rb, f.name)]
    ha, hb = dict(ra.hooks), dict(rb.hooks)
    hooks = [{"hook": h, "before": _fn(ha.get(h)), "after": _fn(hb.get(h))}
             for h in sorted(set(ha) | set(hb)) if ha.get(h) is not hb.get(h)]
    la, lb = _history(ra), _history(rb)
    ca, cb = set(la), set(lb)
    why = ([{"side": "B", **r.as_dict()} for r in lb if r not in ca]
           + [{"side": "A", **r.as_dict()} for r in la if r not in cb])
    dma = None
    if a.dma != b.dma:
        da = dma_variants.get(a.dma or "mainline")
        db = dma_variants.get(b.dma or "mainline")
        dma = {"before": _dma_desc(da), "after": _dma_desc(db)}
    return {"switches": switches, "hooks": hooks, "reasons": why, "dma": dma}


def _history(r) -> list:
    """Every reason that shaped ``r``: the changes of each era up to its own, then its own
    refinements and variant citations (in order, without repeats)."""
    out = []
    for e in eras.ERAS:
        if e.first <= r.first:
            out.extend(e.changed_by)
    out.extend(r.changed_by)
    return list(dict.fromkeys(out))


def _fn(f) -> str | None:
    if f is None:
        return None
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def _dma_desc(v) -> dict:
    return {"name": v.name, "base": v.base,
            "flush_points_off": sorted(k for k, on in v.changes.items() if not on),
            "hooks": sorted(v.hooks), "why": v.why.as_dict() if v.why else None, "source": v.source}


# -- verdicts -----------------------------------------------------------------------------------

def _jobs(s: Side, fams) -> list[tuple[Any, str, str, str]]:
    """(family, era it models, variant, note) per family for one side."""
    from memtypes.check.kernels import family_era
    out = []
    kv = s.kernel.variant
    for fam in fams:
        era = family_era(fam, s.kernel.era)
        note = "" if era == s.kernel.era else f"{fam.name} models {s.kernel.era} as era {era}"
        is_dma = fam.name.startswith("dma-")
        v = (s.dma or "mainline") if is_dma else kv
        if v != "mainline" and not fam.applies_to(era, v):
            note = (note + "; " if note else "") + f"variant {v} not modelled by {fam.name}: mainline"
            v = "mainline"
        out.append((fam, era, v, note))
    return out


def verdict_changes(a: Side, b: Side, *, families=None, max_states=None, params=None) -> dict:
    from memtypes.check import registry, runner
    fams = registry.families() if families is None else list(families)
    ja, jb = _jobs(a, fams), _jobs(b, fams)
    changes, notes = [], []
    for (fam, ea, va, na), (_f, eb, vb, nb) in zip(ja, jb):
        for n in (na, nb):
            if n and n not in notes:
                notes.append(n)
        if (ea, va) == (eb, vb):
            continue          # the same job on both sides: nothing can change
        kw = dict(workers=1, params=params,
                  max_states=runner.DEFAULT_MAX_STATES if max_states is None else max_states)
        ma = runner.run_matrix([fam], kernel=ea, variant=va, **kw)
        mb = runner.run_matrix([fam], kernel=eb, variant=vb, **kw)
        ra = {r.property: r for r in ma.results}
        for r in mb.results:
            x = ra.get(r.property)
            if x is None or x.verdict == r.verdict:
                continue
            cx = r if r.verdict == "violated" else x if x.verdict == "violated" else None
            changes.append({"family": fam.name, "property": r.property,
                            "before": {"kernel": ea, "variant": va, "verdict": x.verdict,
                                       "trace_length": x.trace_length},
                            "after": {"kernel": eb, "variant": vb, "verdict": r.verdict,
                                      "trace_length": r.trace_length},
                            "counterexample": ({"side": "B" if cx is r else "A",
                                                "init": cx.init_index, "trace": cx.trace}
                                               if cx is not None else None)})
    return {"changes": changes, "notes": notes}


@dataclass
class DiffResult:
    a: Side
    b: Side
    cells: int
    changes: list[Change]
    rules: dict[str, Any]
    verdicts: dict | None = None

    def as_dict(self) -> dict:
        return {"a": self.a.kernel.as_dict() | {"spec": self.a.spec, "dma_variant": self.a.dma},
                "b": self.b.kernel.as_dict() | {"spec": self.b.spec, "dma_variant": self.b.dma},
                "cells": self.cells, "changed_cells": sum(c.cells for c in self.changes),
                "changes": [c.as_dict() for c in self.changes],
                "rules": _jsonable(self.rules), "verdicts": self.verdicts}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def diff(spec_a: str, spec_b: str, *, check: bool = False, max_states=None, params=None) -> DiffResult:
    a = side(spec_a, where="memtypes diff A")
    b = side(spec_b, where="memtypes diff B")
    if a.kernel.rules == b.kernel.rules and a.dma == b.dma and str(a.kernel.version) == str(b.kernel.version):
        raise InputError(f"{spec_a} and {spec_b} are the same kernel", where="memtypes diff",
                         expected="two different kernels, releases or variants")
    changes, n = explain_changes(a.kernel, b.kernel)
    res = DiffResult(a, b, n, changes, rule_changes(a, b))
    if check:
        res.verdicts = verdict_changes(a, b, max_states=max_states, params=params)
    return res
