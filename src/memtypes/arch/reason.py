"""Reasons: every decision in memtypes returns a value that carries why.

A :class:`Reason` names the rule that applied (a stable id such as ``D8.6.6/force-wb`` or
``kvm/user_mem_abort/force_nc``), where the rule comes from (Arm ARM section, kernel file and
function with version or commit) and a short human sentence.  ``explain`` prints these and never
re-derives them.  ``unverified`` marks a rule the references flag as UNVERIFIED, so that the
output says so instead of guessing silently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    source: str
    text: str
    unverified: bool = False

    def as_dict(self) -> dict:
        d = {"rule": self.rule, "source": self.source, "text": self.text}
        if self.unverified:
            d["unverified"] = True
        return d

    def __str__(self) -> str:
        flag = " [UNVERIFIED]" if self.unverified else ""
        return f"{self.rule}: {self.text} ({self.source}){flag}"
