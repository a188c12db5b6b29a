"""Generated inputs for `memtypes` (issue 18) and the oracle that judges each run.

Four kinds of input, each a Hypothesis strategy of :class:`Case`:

* ``scenario``: a scenario file (`memtypes run FILE`), mutated from the shipped examples;
* ``vm``: a VM file (`memtypes migrate --vm FILE`), mutated from the test fixtures;
* ``host``: a host profile (`memtypes explain --host FILE`), mutated from a built-in profile;
* ``param``: one `--param FAMILY.KEY=VALUE` of `memtypes check` (a small bounded run).

A mutation either sets one field to a generated value, deletes a key, inserts characters into
the text, or replaces the whole text by a generated YAML document.  Where the file format says
plainly that the mutated field is wrong (a non-string kernel, an unknown key, a value of the
wrong type, a name outside the known choices), the case carries ``must_refuse``: accepting it
with exit 0 is a *silent acceptance*.  The oracle is written from the formats as documented
(module docstrings and README), not from the validators it checks.

:func:`run_case` runs one case in this process through ``memtypes.cli.main`` and classifies it:
``accepted`` (exit 0 or 1), ``refused`` (exit 2 and one ``memtypes: error:`` line),
``traceback`` (an exception escaped, or exit 2 without that one line), ``hang`` (no answer
within the alarm) or ``silent`` (accepted although ``must_refuse``).
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "src" / "memtypes" / "scenario" / "examples").glob("*.yaml"))
VMS = [p for p in sorted((ROOT / "tests" / "fixtures" / "vms").glob("*.yaml"))
       if p.name != "bad-backing.yaml"]
HOST_BASE = (ROOT / "src" / "memtypes" / "hosts" / "builtin" / "grace.yaml").read_text()

ARM64_HOSTS = ("grace", "armv8.0", "armv8.5-mte", "armv8.5-mte-nofwb", "armv9-mte-perm")
KINDS = ("vfio-pci-bar", "vfio-platform-mmio", "nvgrace-resmem", "nvgrace-usemem", "gicv2-gicv",
         "devmem-ram", "anon", "shmem", "file", "pmem", "guest-memfd", "mixedmap-cacheable")
CHECKS = ("cacheable-pfnmap-cap", "mte-cap")
S1 = ("Device-nGnRnE", "Device-nGnRE", "Normal-NC", "Normal-WB", "Tagged")
FAMILIES = ("passthrough", "mte", "migration", "dma-type1", "dma-iommufd")
VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:-rc\d+)?$")

WORDS = ARM64_HOSTS + KINDS + CHECKS + S1 + FAMILIES + (
    "x86-64", "6.12", "6.17", "7.1", "5.0", "8.0", "4.19", "6.12+", "+mte-rfc-2020", "mainline",
    "mte-rfc-2020", "true", "false", "yes", "null", "~", "0", "1", "-1", "1e308", "nan", ".inf",
    "fwb=1,dic=1", "first", "second", "", " ", "&a", "*a", "!!python/object:os.system",
    "\x00", "\ufffe", "\u202e", "é", "slot", "backing", "with_tags", "name", "kernel")


def _scalars() -> st.SearchStrategy:
    return st.one_of(
        st.none(), st.booleans(), st.integers(-3, 20), st.integers(-(2 ** 70), 2 ** 70),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12))


def values(depth: int = 3) -> st.SearchStrategy:
    return st.recursive(_scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), inner,
                        max_size=4)), max_leaves=12)


@dataclass
class Case:
    kind: str
    text: str
    """File text, or the --param argument."""
    must_refuse: bool = False
    why: str = ""


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=200)


def _is_version(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    base, plus, var = v.strip().partition("+")
    m = VERSION.match(base.strip())
    if not m or (plus and not var.strip()):
        return False
    return (5, 0) <= (int(m.group(1)), int(m.group(2))) <= (7, 1)


@st.composite
def _text_mutation(draw, text: str) -> str:
    i = draw(st.integers(0, len(text)))
    junk = draw(st.one_of(st.sampled_from(["\x00", "\ufffe", "\t", ":", "- ", "[", "{", "&a ",
                                           "*a", "!!binary ", "'", '"', "\n  ", "\r", "%"]),
                          st.text(max_size=4)))
    cut = draw(st.integers(0, 3))
    return text[:i] + junk + text[i + cut:]


# -- scenario files -------------------------------------------------------------------------------

SCENARIO_KEYS = ("family", "kernel", "variant", "host", "hosts", "params", "init",
                 "description", "steps")


@st.composite
def scenarios(draw) -> Case:
    base = draw(st.sampled_from(EXAMPLES))
    text = base.read_text()
    data = yaml.safe_load(text)
    op = draw(st.sampled_from(["set", "set", "param", "step", "delete", "text", "random"]))
    if op == "text":
        return Case("scenario", draw(_text_mutation(text)))
    if op == "random":
        return Case("scenario", _dump(draw(values())))
    must, why = False, ""
    if op == "delete":
        key = draw(st.sampled_from(list(data)))
        del data[key]
        must, why = key in ("family", "kernel", "steps"), f"missing {key}"
    elif op == "set":
        key = draw(st.one_of(st.sampled_from(SCENARIO_KEYS), st.sampled_from(WORDS)))
        v = draw(values())
        data[key] = v
        fam = data.get("family")
        if key not in SCENARIO_KEYS:
            must, why = True, f"unknown key {key!r}"
        elif key == "kernel":
            must, why = not _is_version(v), f"kernel {v!r}"
        elif key == "family":
            must, why = not (isinstance(v, str) and v.replace("_", "-") in FAMILIES), f"family {v!r}"
        elif key == "init":
            must, why = isinstance(v, bool) or not isinstance(v, int) or v < 0, f"init {v!r}"
        elif key in ("host",):
            must = not isinstance(v, str) or v.strip() not in ARM64_HOSTS \
                or fam in ("dma-type1", "dma-iommufd") or "hosts" in data
            why = f"host {v!r}"
        elif key == "variant":
            # an empty optional key (null) is the key left out, as for params: and host files
            must, why = v is not None and not (isinstance(v, str) and v.strip()), f"variant {v!r}"
        elif key == "params":
            must, why = v is not None and not isinstance(v, dict), f"params {v!r}"
    elif op == "param":
        key = draw(st.sampled_from(["pages", "slots", "vms", "nope", "emulated", "tv26", "mte",
                                    "regions", "stage"]))
        v = draw(values())
        params = data.get("params") or {}
        params[key] = v
        data["params"] = params
        must, why = _param_must_refuse(str(data.get("family")), key, v, scenario=True), \
            f"params.{key}={v!r}"
    elif op == "step":
        steps = data.get("steps") or []
        if steps:
            i = draw(st.integers(0, len(steps) - 1))
            arg = draw(st.one_of(st.sampled_from(sorted(steps[i])), st.sampled_from(WORDS)))
            known = {k for s in yaml.safe_load(text)["steps"] for k in s}
            steps[i][arg] = draw(values())
            must, why = arg not in known, f"step argument {arg!r}"
    return Case("scenario", _dump(data), must, why)


# -- VM files --------------------------------------------------------------------------------------

VM_KEYS = ("name", "memory", "mte", "devices", "vmm_checks")


@st.composite
def vms(draw) -> Case:
    text = draw(st.sampled_from(VMS)).read_text()
    data = yaml.safe_load(text) or {}
    op = draw(st.sampled_from(["set", "set", "device", "text", "random"]))
    if op == "text":
        return Case("vm", draw(_text_mutation(text)))
    if op == "random":
        return Case("vm", _dump(draw(values())))
    must, why = False, ""
    if op == "set":
        key = draw(st.one_of(st.sampled_from(VM_KEYS), st.sampled_from(WORDS)))
        v = draw(st.one_of(values(), st.sampled_from(KINDS), st.lists(st.sampled_from(CHECKS))))
        data[key] = v
        why = f"{key}={v!r}"
        if key not in VM_KEYS:
            must = True
        elif key == "name":
            must = v is not None and not (isinstance(v, str) and v.strip())
        elif key == "mte":
            must = not (isinstance(v, bool) or v in (0, 1))
        elif key == "memory":
            must = not (isinstance(v, str) and v in KINDS) and not isinstance(v, dict)
        elif key == "devices":
            must = v is not None and not isinstance(v, list)
        elif key == "vmm_checks":
            must = v is not None and not (isinstance(v, list) and all(
                isinstance(c, str) and c in CHECKS for c in v))
    else:
        name = draw(st.one_of(st.sampled_from(["a", "gpu", "ram"]), values()))
        backing = draw(st.one_of(st.sampled_from(KINDS), values()))
        devs = list(data.get("devices") or [])
        devs.append({"name": name, "backing": backing})
        if draw(st.booleans()):
            devs.append({"name": name, "backing": "vfio-pci-bar"})
            must, why = True, f"duplicate device name {name!r}"
        data["devices"] = devs
        if not (isinstance(name, str) and name.strip()) or not (
                isinstance(backing, str) and backing in KINDS):
            must, why = True, f"device {name!r} {backing!r}"
    return Case("vm", _dump(data), must, why)


# -- host profiles -----------------------------------------------------------------------------

FEATURES = ("fwb", "dic", "mte", "mte_perm", "xs")
FLAG_TEXT = ("0", "1", "true", "false", "yes", "no", "on", "off")


@st.composite
def hosts(draw) -> Case:
    data = yaml.safe_load(HOST_BASE)
    op = draw(st.sampled_from(["feature", "set", "set", "text", "random"]))
    if op == "text":
        return Case("host", draw(_text_mutation(HOST_BASE)))
    if op == "random":
        return Case("host", _dump(draw(values())))
    must, why = False, ""
    if op == "feature":
        k = draw(st.one_of(st.sampled_from(FEATURES), st.sampled_from(WORDS)))
        v = draw(st.one_of(values(), st.sampled_from(FLAG_TEXT)))
        data["features"][k] = v
        ok_val = isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)) or (
            isinstance(v, str) and v.strip().lower() in FLAG_TEXT)
        must, why = k not in FEATURES or not ok_val, f"features.{k}={v!r}"
    else:
        key = draw(st.sampled_from(("name", "description", "arch", "kernel", "evidence",
                                    "features")))
        v = draw(st.one_of(values(), st.sampled_from(["6.10", "arm64", "x86_64"])))
        data[key] = v
        why = f"{key}={v!r}"
        if key in ("name", "description"):
            must = v is not None and not (isinstance(v, str) and v.strip())
        elif key == "arch":
            must = v is not None and v not in ("arm64", "x86_64")
        elif key == "kernel":
            must = v is not None and not (isinstance(v, str) and VERSION.match(v.strip()))
        elif key == "evidence":
            must = bool(v) and not isinstance(v, dict)
        elif key == "features":
            must = bool(v) and not isinstance(v, dict)
    return Case("host", _dump(data), must, why)


# -- --param -------------------------------------------------------------------------------------

BOOLS = {"dma-type1": ("probe", "fail", "kvm", "emulated", "table"),
         "dma-iommufd": ("fail", "map_fail", "kvm", "guest_write", "cc_reads", "destroy", "tv26",
                         "table")}
# the oracle's bounds are the families' own (a raised bound, e.g. 5 slots for the bench, moves both)
from memtypes.check.families.dma_iommufd import MAX_PAGES as _IOMMUFD_PAGES  # noqa: E402
from memtypes.check.families.dma_type1 import MAX_PAGES as _TYPE1_PAGES  # noqa: E402
from memtypes.check.families.passthrough import MAX_SLOTS as _SLOTS  # noqa: E402

INTS = {("passthrough", "slots"): _SLOTS, ("mte", "slots"): _SLOTS, ("migration", "vms"): 6,
        ("dma-type1", "pages"): _TYPE1_PAGES, ("dma-iommufd", "pages"): _IOMMUFD_PAGES}
KEYS = {"passthrough": ("hosts", "regions", "slots"), "mte": ("hosts", "regions", "slots"),
        "migration": ("hosts", "regions", "mte", "vmm_checks", "guest_s1", "vms"),
        "dma-type1": ("pages",) + BOOLS["dma-type1"],
        "dma-iommufd": ("pages", "data_pages", "stage") + BOOLS["dma-iommufd"]}


def _param_must_refuse(fam: str, key: str, v: Any, *, scenario: bool = False) -> bool:
    """Whether ``FAMILY.KEY = v`` is plainly outside the documented parameter."""
    if fam not in KEYS:
        return not scenario  # a scenario with a bad family is refused anyway
    if key not in KEYS[fam]:
        return True
    if key in BOOLS.get(fam, ()):
        return not isinstance(v, bool)
    if (fam, key) in INTS:
        return isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= INTS[fam, key]
    if key == "stage":
        return v not in ("first", "second")
    if not isinstance(v, list):
        return True
    if len(set(map(repr, v))) < len(v) or len(v) > 32:
        return True
    # passthrough and mte slots may be backed by any driver KIND, "hole" (nothing mapped at
    # the slot's address) included; a migrated VM's regions are real memory (no hole)
    regions = KINDS + ("hole",) if fam in ("passthrough", "mte") else KINDS
    choices = {"hosts": ARM64_HOSTS, "vmm_checks": CHECKS, "guest_s1": S1,
               "regions": regions, "mte": (True, False), "data_pages": (0, 1)}[key]
    if key == "mte":
        return not all(isinstance(x, bool) for x in v)
    if key == "data_pages":
        return not all(isinstance(x, int) and not isinstance(x, bool) and x in (0, 1) for x in v)
    if key in ("hosts", "regions") and not v and fam != "migration":
        return True
    if key == "hosts":
        return any(not isinstance(x, str) or ("=" not in x and x.strip() not in ARM64_HOSTS)
                   for x in v)
    return not all(isinstance(x, str) and x in choices for x in v)


def _domain(fam: str, key: str) -> st.SearchStrategy:
    if key in BOOLS.get(fam, ()):
        return st.one_of(st.booleans(), st.sampled_from([0, 1, "yes", "maybe"]))
    if (fam, key) in INTS:
        return st.integers(-1, INTS[fam, key] + 2)
    if key == "stage":
        return st.sampled_from(["first", "second", "third", 1])
    pools = {"hosts": ARM64_HOSTS + ("x86-64", "fwb=1,dic=1", "nope"),
             "regions": KINDS + ("hole", "nope"), "vmm_checks": CHECKS + ("nope",),
             "guest_s1": S1 + ("Normal-XX",), "mte": (True, False, 0, "no"),
             "data_pages": (0, 1, 2, -1, True)}
    pool = pools.get(key, ("x", 1, True))
    return st.one_of(st.lists(st.sampled_from(pool), max_size=5),
                     st.sampled_from(pool))


@st.composite
def params(draw) -> Case:
    fam = draw(st.sampled_from(FAMILIES)) if draw(st.integers(0, 9)) else draw(st.sampled_from(WORDS))
    key = draw(st.sampled_from(KEYS.get(fam, ("x",)))) if draw(st.integers(0, 9)) \
        else draw(st.sampled_from(WORDS))
    raw_kind = draw(st.sampled_from(["value", "value", "list", "text", "domain", "domain"]))
    if raw_kind == "domain":  # near the documented values, so that runs get past the parser
        raw = yaml.safe_dump(draw(_domain(fam, key)), default_flow_style=True, width=10_000).strip()
        if raw.endswith("\n..."):
            raw = raw[:-4].strip()
    elif raw_kind == "text":
        raw = draw(st.one_of(st.sampled_from(WORDS), st.text(max_size=10)))
    else:
        v = draw(values()) if raw_kind == "value" else draw(st.lists(st.one_of(
            st.sampled_from(WORDS), st.integers(-1, 3), st.booleans()), max_size=4))
        raw = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
        if raw.endswith("\n..."):
            raw = raw[:-4].strip()
    sep = draw(st.sampled_from(["="] * 8 + [":", ""]))
    text = f"{fam}.{key}{sep}{raw}"
    must = False
    if sep != "=" or fam not in FAMILIES:
        must = True
    else:
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            must = True
        else:
            must = _param_must_refuse(fam, key, value)
    return Case("param", text, must, f"--param {text}")


KINDS_OF_CASES = {"scenario": scenarios, "vm": vms, "host": hosts, "param": params}


# -- running one case ------------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def argv_for(case: Case, path: Path) -> list[str]:
    if case.kind == "scenario":
        return ["run", str(path)]
    if case.kind == "vm":
        return ["migrate", "--vm", str(path), "--from", "grace", "--to", "armv8.0"]
    if case.kind == "host":
        return ["explain", "--kernel", "6.12", "--host", str(path), "--backing", "anon"]
    fam = case.text.partition(".")[0]
    return ["check", "--family", fam if fam in FAMILIES else "migration", "--kernel", "6.9",
            "--variant", "mainline", "--max-states", "50", "--workers", "1", "--param", case.text]


def run_case(case: Case, path: Path, *, timeout: int = 20) -> tuple[str, str]:
    """(outcome, detail) of one case; ``path`` is where a file case is written."""
    from memtypes.cli import main

    if case.kind != "param":
        path.write_text(case.text, encoding="utf-8", errors="surrogatepass")
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv_for(case, path))
    except Hang:
        return "hang", case.why
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - anything escaping main is a traceback
        return "traceback", f"{type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    lines = err.getvalue().strip().splitlines()
    if "Traceback" in err.getvalue():
        return "traceback", err.getvalue()[-300:]
    if rc == 2:
        if len(lines) == 1 and lines[0].startswith("memtypes: error: "):
            return "refused", lines[0]
        return "traceback", f"exit 2 without one error line: {err.getvalue()[-300:]!r}"
    if rc in (0, 1):
        if case.must_refuse:
            return "silent", case.why
        return "accepted", ""
    return "traceback", f"exit {rc}"
