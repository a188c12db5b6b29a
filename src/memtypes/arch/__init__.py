"""The Arm architecture: encodings, stage-1 + stage-2 combining, MTE, memory semantics, caches.

Imports nothing else of memtypes.  Each architectural rule is a small pure function named after
the rule it implements and citing its Arm ARM (DDI 0487 M.a.a) section.
"""

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.arch.attrs import Policy, S1Attr, S2Attr
from memtypes.arch.s1 import decode_s1
from memtypes.arch.s2 import decode_s2
from memtypes.arch.combine import Combined, combine, effective_shareability
from memtypes.arch.names import (S1_DEVICE_nGnRE, S1_DEVICE_nGnRnE, S1_NORMAL_NC, S1_NORMAL_WB,
                                 S1_TAGGED, USUAL_S1, R_LINUX_MAIR, parse_s1, parse_s2)
from memtypes.arch.semantics import behaviour

__all__ = ["Features", "Reason", "Policy", "S1Attr", "S2Attr", "decode_s1", "decode_s2",
           "Combined", "combine", "effective_shareability", "S1_DEVICE_nGnRnE",
           "S1_DEVICE_nGnRE", "S1_NORMAL_NC", "S1_NORMAL_WB", "S1_TAGGED", "USUAL_S1", "R_LINUX_MAIR",
           "parse_s1", "parse_s2", "behaviour"]
