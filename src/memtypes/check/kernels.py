"""Kernel versions as the checker uses them: any version maps to its era's first version."""

from __future__ import annotations

from memtypes.check.family import ERAS
from memtypes.errors import InputError
from memtypes.linux.version import parse_version, split_variant


def _key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def era_of(text: str, *, where: str = "--kernel") -> str:
    """``6.12`` -> ``6.9``; ``5.10`` -> ``5.13`` (the era of every version up to 5.13)."""
    v = parse_version(text, where=where)
    key = (v.major, v.minor)
    era = ERAS[0]
    for e in ERAS:
        if _key(e) <= key:
            era = e
    return era


def parse_kernel(text: str, *, where: str = "--kernel") -> tuple[str, str | None]:
    """``6.17.3+mte-rfc-2020`` -> (``6.17``, ``mte-rfc-2020``)."""
    base, variant = split_variant(text.strip())
    if "+" in text and not (variant or "").strip():
        raise InputError(f"'{text}' has an empty variant", where=where, expected="VERSION[+VARIANT]")
    return era_of(base, where=where), variant


def kernel_order(kernel: str) -> int:
    return ERAS.index(kernel) if kernel in ERAS else len(ERAS)


def parse_kernels(text: str, *, where: str = "--kernel") -> list[tuple[str, str | None]]:
    """``6.12,6.17+mine`` / ``6.9..7.1`` -> ``[(era, variant or None), ...]`` in order, without
    repeats (a range covers every era from its start to its end)."""
    from memtypes.linux.kvm.eras import rule_points
    out: list[tuple[str, str | None]] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            raise InputError(f"'{text}' has an empty item", where=where,
                             expected="VERSION[+VARIANT], comma-separated, or A..B")
        base, variant = split_variant(item)
        if ".." in base:
            a, _, b = base.partition("..")
            lo, hi = parse_version(a, where=where), parse_version(b, where=where)
            if lo > hi:
                raise InputError(f"range {base} runs backwards", where=where, expected="A..B with A <= B")
            items = [v + (f"+{variant}" if variant else "") for v in rule_points(lo, hi)]
        else:
            items = [item]
        for it in items:
            pair = parse_kernel(it, where=where)
            if pair not in out:
                out.append(pair)
    return out


def family_era(fam, era: str) -> str:
    """The era a family models for ``era``: itself, else the latest modelled era not after it,
    else its first one (dma-type1 models 5.14, 6.2, 6.9: 7.1 -> 6.9, 5.10 (era 5.13) -> 5.14)."""
    ks = sorted(fam.kernels, key=kernel_order)
    if era in ks:
        return era
    before = [k for k in ks if kernel_order(k) <= kernel_order(era)]
    return before[-1] if before else ks[0]


def _selected(pairs: frozenset, orig, kernel: str, variant: str) -> bool:
    if (kernel, variant) not in pairs and (kernel, None) not in pairs:
        return False
    return orig is None or orig(kernel, variant)


def select(fams, pairs, *, variant: str | None = None):
    """Families restricted to the (era, variant) pairs asked for, each era mapped to the one the
    family models (:func:`family_era`); returns ``(families, notes)``, a note per mapping."""
    import functools
    from dataclasses import replace
    out, notes = [], []
    for fam in fams:
        mapped = set()
        for era, v in pairs:
            fe = family_era(fam, era)
            want = v if v is not None else variant
            if want not in (None, "mainline") and want not in fam.variants:
                continue              # the family does not model this variant: no job, no note
            if fe != era:
                later = kernel_order(fe) > kernel_order(era)
                note = (f"{fam.name} does not distinguish kernel era {era}: checked as "
                        + (f"the earliest era it models, {fe} (before it the family's subject "
                           f"may not exist)" if later else f"the era it models, {fe}")
                        + f"; it models {', '.join(sorted(fam.kernels, key=kernel_order))}")
                if note not in notes:
                    notes.append(note)
            mapped.add((fe, v if v is not None else variant))
        out.append(replace(fam, kernels=tuple(sorted({e for e, _ in mapped}, key=kernel_order)),
                           applies=functools.partial(_selected, frozenset(mapped), fam.applies)))
    return out, notes
