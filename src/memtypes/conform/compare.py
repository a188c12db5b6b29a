"""Observations against predictions: agree, mismatch, not observable here, not modelled.

The agent prints ``@@{...}`` lines (see ``agent/agent.c``); the harness adds one ``walk`` line
per stage-2 walk.  :func:`parse_lines` keeps them, :func:`host_features` reads the CPU features
the booted kernel really detected, and :func:`compare` lines every observation up with the
model's prediction for the same case (``predict.py``).  A field is compared only where the
model predicts it; nothing is skipped by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.conform.cases import Case
from memtypes.conform.predict import Prediction, predict
from memtypes.linux.kvm.eras import Kernel

AGREE = "agree"
MISMATCH = "mismatch"
NOT_OBSERVABLE = "not observable here"
NOT_MODELLED = "not modelled"
STATUSES = (AGREE, MISMATCH, NOT_OBSERVABLE, NOT_MODELLED)

SIZES = {3: "PAGE", 2: "PMD", 1: "PUD"}
# what the agent puts at the slot's first bytes (agent.c MAGIC, RET_INSN), as the walk reads them
MAGIC_HEX = (0x4D454D5459504553).to_bytes(8, "little").hex()
RET_HEX = (0xD65F03C0).to_bytes(4, "little").hex()


def parse_lines(lines: list[str]) -> list[dict]:
    """The ``@@{json}`` observation lines among a boot's console output, in order."""
    out = []
    for line in lines:
        i = line.find("@@{")
        if i < 0:
            continue
        try:
            d = json.loads(line[i + 2:])
        except (json.JSONDecodeError, RecursionError):    # a damaged line (or one nested too deep)
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


@dataclass(frozen=True)
class HostFacts:
    release: str = ""
    features: Features = Features()
    mode: str = "unknown"          # vhe, nvhe, protected
    kvm: bool = False
    kmsg: tuple[str, ...] = ()
    ipa_limit: int | None = None   # "kvm [1]: IPA Size Limit: N bits" (arch/arm64/kvm/reset.c kvm_set_ipa_limit)

    def as_dict(self) -> dict:
        return {"release": self.release, "mode": self.mode, "kvm": self.kvm, "ipa_limit": self.ipa_limit,
                "features": {k: int(v) for k, v in self.features.as_dict().items()}}


def host_features(obs: list[dict]) -> HostFacts:
    """FWB from the kernel's cpufeature line ("CPU features: detected: Stage-2 Force Write-Back",
    the ARM64_HAS_STAGE2_FWB entry of arch/arm64/kernel/cpufeature.c arm64_features[], which KVM
    tests), DIC from CTR_EL0 as EL0 reads it (UNVERIFIED for --live: a kernel that traps EL0's
    CTR_EL0 reads may show EL0 another DIC than it uses itself), MTE from HWCAP2_MTE, the KVM
    mode from KVM's init line.  Only kmsg lines the agent kept are searched: a lost line reads as
    "feature absent"."""
    host = next((o for o in obs if o.get("obs") == "host"), {})
    kmsg = tuple(o["line"] for o in obs if o.get("obs") == "kmsg" and isinstance(o.get("line"), str))
    text = "\n".join(kmsg)
    fwb = "Stage-2 Force Write-Back" in text
    # arch/arm64/kvm/arm.c kvm_arm_init(): "Protected nVHE mode", "Hyp nVHE mode" (older: "Hyp mode")
    # or "VHE mode" initialized successfully
    mode = ("protected" if "Protected nVHE mode" in text else
            "nvhe" if ("nVHE mode initialized" in text or "Hyp mode initialized" in text) else
            "vhe" if "VHE mode initialized" in text else "unknown")
    feats = Features(fwb=fwb, dic=bool(host.get("dic")), mte=bool(host.get("hwcap2_mte")))
    if "pkvm" in Features.names():
        feats = replace(feats, pkvm=mode == "protected")
    m = re.search(r"IPA Size Limit: (\d+) bits", text)
    return HostFacts(str(host.get("release", "")), feats, mode, bool(host.get("kvm")), kmsg,
                     int(m.group(1)) if m else None)


def _field(w: dict, key: str) -> int | None:
    v = w.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def decode_walk(w: dict) -> dict:
    """The model's view of a stage-2 leaf the harness read (gdbstub.walk_tables fields).  A field
    missing from the record, or not an integer, decodes to None (so it cannot agree with any
    prediction), never to a default that might."""
    memattr, level, s2ap, xn = (_field(w, k) for k in ("memattr", "level", "s2ap", "xn"))
    data = w.get("data")
    return {"memattr": memattr, "size": None if level is None else SIZES.get(level, level),
            # S2AP[1] (descriptor bit 7) grants write (Arm ARM, stage-2 data access permissions;
            # section number UNVERIFIED: not in ../shared/reference/arch.md)
            "w": None if s2ap is None else bool(s2ap & 2),
            # XN[1:0] (bits [54:53]) 0b00 and 0b11 allow execution at EL1 (Arm ARM D8.4.2, FEAT_XNX,
            # section number UNVERIFIED; without FEAT_XNX bit 53 is RES0: only 0b00 and 0b10 occur)
            "x": None if xn is None else xn in (0, 3),
            # the walk's output address holds what the agent wrote at the slot's first bytes
            # (MAGIC, or a RET for exec): the walk was of this VM's slot, not another table
            "self_check": isinstance(data, str) and data.startswith((MAGIC_HEX, RET_HEX)),
            "raw": w}


def observations_by_case(obs: list[dict]) -> dict[str, dict[str, dict]]:
    """{case id: {observation key: values}} (keys as in ``predict.Prediction``)."""
    by: dict[str, dict[str, dict]] = {}
    for o in obs:
        if isinstance(o.get("s2"), dict) and o["s2"].get("id"):
            # the harness's stage-2 walk (qemu.py _serve_walk): the leaf descriptor's fields
            w = o["s2"]
            d = by.setdefault(str(w["id"]), {})
            if w.get("error"):
                d["walk"] = {"error": w["error"]}
            else:
                d["walk"] = decode_walk(w)
            continue
        case, kind = o.get("case"), o.get("obs")
        if not case or not kind:
            continue
        d = by.setdefault(str(case), {})
        if kind == "start":
            d["_started"] = {}
        elif kind == "memslot":
            d["memslot"] = {"errno": o.get("errno")}
        elif kind == "run" and o.get("phase") == "access":
            d["run:access"] = {"outcome": o.get("outcome"), "errno": o.get("errno"), "ec": o.get("ec")}
        elif kind == "read":
            d["read"] = {"value_ok": bool(o.get("value_ok"))}
        elif kind == "enable_cap":
            d[f"enable_cap:{o.get('when')}"] = {"errno": o.get("errno")}
        elif kind == "copy_tags":
            d[f"copy_tags:{o.get('what')}"] = {"errno": o.get("errno"), "nonzero": o.get("nonzero")}
        elif kind == "cap":
            d[f"cap:{o.get('cap')}"] = {k: o.get(k) for k in ("system", "system_errno", "vm", "vm_errno")}
        elif kind == "mmap" and not o.get("ok"):
            d["_unavailable"] = {"why": f"{o.get('what')}: {o.get('step', 'mmap')} failed ({o.get('errno')})"}
        elif kind == "error":
            d["_error"] = {"why": f"{o.get('what')} ({o.get('errno', '')})"}
    return by


@dataclass
class Row:
    case: str
    key: str
    status: str
    observed: dict | None = None
    expected: dict | None = None
    reasons: tuple[Reason, ...] = ()
    note: str = ""

    def as_dict(self) -> dict:
        d = {"case": self.case, "key": self.key, "status": self.status, "observed": self.observed,
             "expected": self.expected, "reasons": [r.as_dict() for r in self.reasons]}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Comparison:
    host: HostFacts
    rows: list[Row] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for r in self.rows:
            c[r.status] += 1
        return c


def _match(expected: dict, observed: dict) -> bool:
    return all(observed.get(k) == v for k, v in expected.items())


def compare(kernel: Kernel, cases: list[Case], obs: list[dict]) -> Comparison:
    """Every case's observations against the model's predictions for ``kernel`` on the CPU
    features the agent reported."""
    facts = host_features(obs)
    by = observations_by_case(obs)
    cmp = Comparison(facts)
    for case in cases:
        seen = by.get(case.id, {})
        pred: Prediction = predict(kernel, facts.features, case, ipa_limit=facts.ipa_limit)
        blocked = seen.get("_unavailable") or seen.get("_error")
        if "*" in pred.na:
            for key, val in sorted(seen.items()):
                if not key.startswith("_"):
                    cmp.rows.append(Row(case.id, key, NOT_MODELLED, val, None, (), pred.na["*"]))
            if not seen:
                cmp.rows.append(Row(case.id, "*", NOT_MODELLED, None, None, (), pred.na["*"]))
            continue
        for key, exp in pred.expect.items():
            got = seen.get(key)
            why = pred.reasons.get(key, ())
            if got is None:
                if blocked:
                    note, status = blocked["why"], NOT_OBSERVABLE
                elif "_started" not in seen:
                    note, status = "the run ended before this case", NOT_OBSERVABLE
                elif key == "walk":
                    note, status = "no stage-2 walk (no gdbstub, or the access did not complete)", NOT_OBSERVABLE
                else:
                    note, status = "no observation: the agent stopped before this step", MISMATCH
                cmp.rows.append(Row(case.id, key, status, None, exp, why, note))
            elif "error" in got and key == "walk":
                cmp.rows.append(Row(case.id, key, NOT_OBSERVABLE, got, exp, why, str(got["error"])))
            elif key == "walk" and not got.get("self_check"):
                shown = {k: v for k, v in got.items() if k != "raw"}
                cmp.rows.append(Row(case.id, key, NOT_OBSERVABLE, shown, exp, why,
                                    "walk self-check failed: the output address does not hold what the agent "
                                    "wrote (or the walk record has no 'data')"))
            else:
                shown = {k: v for k, v in got.items() if k != "raw"}
                cmp.rows.append(Row(case.id, key, AGREE if _match(exp, got) else MISMATCH, shown, exp, why))
        for key, val in sorted(seen.items()):
            if key.startswith("_") or key in pred.expect:
                continue
            note = pred.na.get(key, f"no prediction for {key.split(':')[0]} observations like {key}")
            shown = {k: v for k, v in val.items() if k != "raw"}
            cmp.rows.append(Row(case.id, key, NOT_MODELLED, shown, None, (), note))
    return cmp
