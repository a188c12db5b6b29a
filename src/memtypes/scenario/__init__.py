"""Scenario files: a family, a kernel, parameters and a list of steps, run step by step.

Format (YAML, loaded safely: plain mappings, lists and scalars only, no object tags)::

    # comments are free
    family: passthrough          # a family name (memtypes check lists them)
    kernel: "6.12"               # any version (quote it); mapped to its era; "6.12+VARIANT" ok
    variant: mainline            # optional: mainline (default) or a variant of the family
    host: grace                  # optional: one host (built-in name, YAML file, fwb=1,...);
                                 #   sets params["hosts"] = [host]
    hosts: [grace, armv8.0]      # optional instead of host: several hosts
    params: {...}                # optional, family-specific (regions, devices, bounds)
    init: 0                      # optional: index of the family's initial state
    description: "..."           # optional free text
    steps:                       # required: actions, in order
      - {actor: vmm, action: create_memslot, slot: 0, backing: nvgrace-usemem}
      - {actor: guest, action: access, slot: 0, s1: Normal-WB}

Each step names an ``actor`` and an ``action``; every other key is an argument (a string, an
integer, a boolean or a list of those).  A step runs when exactly that action, with those
arguments (in any order), is enabled in the current state; otherwise the run stops with an
error naming the file, the line and the actions that are enabled.  After every step the
family's ``always`` properties are checked (a property that breaks is reported at the step that
broke it) and ``sometimes`` targets are noted when first reached.

Every error is an :class:`memtypes.errors.InputError` naming the file, line and field.
``memtypes check --save-traces DIR`` writes each counterexample in this format, and
``memtypes run FILE`` replays it to the same violation.
"""

from memtypes.scenario.file import Scenario, Step, dump, load, loads, save
from memtypes.scenario.run import RunReport, StepOutcome, run

__all__ = ["Scenario", "Step", "dump", "load", "loads", "save", "run", "RunReport", "StepOutcome"]
