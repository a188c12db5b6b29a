"""The Arm architecture: encodings, stage-1 + stage-2 combining, MTE, memory semantics, caches.

Imports nothing else of memtypes.  Each architectural rule is a small pure function named after
the rule it implements and citing its Arm ARM (DDI 0487 M.a.a) section.
"""

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason

__all__ = ["Features", "Reason"]
