"""Issue 18, in the suite: a bounded Hypothesis fuzz of the YAML inputs (scenario, VM and host
files) and of `--param`.  No generated input may give a traceback, hang, or be accepted when
the documented format plainly refuses it (see ``inputs.py``).  A few seconds in all; the
campaign of thousands of inputs is ``tests/fuzz/campaign.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import KINDS_OF_CASES, Case, run_case  # noqa: E402

BOUNDED = settings(max_examples=25, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


@pytest.mark.parametrize("kind", sorted(KINDS_OF_CASES))
def test_generated_inputs_meet_the_contract(kind, tmp_path):
    @BOUNDED
    @given(case=KINDS_OF_CASES[kind]())
    def one(case: Case):
        outcome, detail = run_case(case, tmp_path / "input.yaml")
        assert outcome in ("accepted", "refused"), (outcome, case.text[:500], detail)

    one()


@pytest.mark.parametrize("case", [
    Case("param", "migration.mte=1.5", True),
    Case("param", "dma-type1.emulated=2", True),
    Case("vm", "memory: anon\nvmm_checks: mte-cap\n", True),
    Case("host", "name: h\nfeatures: {fwb: 1}\nkernel: 6.10\n", True),
])
def test_the_oracle_flags_known_bad_inputs_as_refused(case, tmp_path):
    # the oracle's own check: these are the silent acceptances; now refused
    assert run_case(case, tmp_path / "input.yaml")[0] == "refused"
