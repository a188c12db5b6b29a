"""The issue 18 fuzz campaign (outside the suite): N generated inputs over the four kinds
(scenario, VM and host files, --param), each run through `memtypes` in this process, counted
by outcome.  Usage:

    .venv/bin/python tests/fuzz/campaign.py [N_PER_KIND] [--show K]

Prints one JSON object: per kind and in total, how many inputs were accepted, refused (one
line, exit 2), and how many were tracebacks, hangs or silent acceptances, with the first few
examples of each failure class.  Exit status 1 when any failure class is non-empty.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import KINDS_OF_CASES, run_case  # noqa: E402

BAD = ("traceback", "hang", "silent")


def campaign(n: int, show: int = 5) -> dict:
    report: dict = {"per_kind": {}, "examples": {b: [] for b in BAD}}
    total: Counter = Counter()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "input.yaml"
        for kind, strategy in KINDS_OF_CASES.items():
            counts: Counter = Counter()

            @settings(max_examples=n, deadline=None, database=None, derandomize=False,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy())
            def one(case):
                outcome, detail = run_case(case, path)
                counts[outcome] += 1
                counts["inputs"] += 1
                if outcome in BAD and len(report["examples"][outcome]) < show:
                    report["examples"][outcome].append(
                        {"kind": kind, "input": case.text[:300], "detail": detail[:300]})

            one()
            report["per_kind"][kind] = dict(counts)
            total.update(counts)
    report["total"] = {k: total.get(k, 0) for k in ("inputs", "accepted", "refused") + BAD}
    report["seconds"] = round(time.monotonic() - t0, 1)
    return report


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2500
    show = int(sys.argv[sys.argv.index("--show") + 1]) if "--show" in sys.argv else 5
    rep = campaign(n, show)
    print(json.dumps(rep, indent=2, ensure_ascii=True))
    sys.exit(1 if any(rep["total"][b] for b in BAD) else 0)
