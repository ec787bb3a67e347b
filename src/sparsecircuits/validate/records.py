"""The typed records of validation.json: one `Check` per verdict rule and the `Verdict`.

Both serialize to the JSON of docs/validation.md and read it back; validation files of
earlier versions (checks without `direction` and `meaning`) load too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("ok", "suspect", "insufficient")

# the verdict's checks: name -> (how the value must compare with the threshold to pass,
# what the value measures); docs/validation.md explains each at length
CHECK_RULES: dict[str, tuple[str, str]] = {
    "sufficiency": ("<=", "the circuit's own task loss on held-out pairs; the threshold is the target plus a margin"),
    "necessity": (">=", "how far towards chance the full model's loss moves when only the circuit is ablated "
                        "(1 = all the way; above 1: past chance)"),
    "not_better_than_full": ("<=", "how much lower the circuit's loss is than the full model's (large: the "
                                   "ablation values may be supplying the answer)"),
    "random_circuits": ("<=", "the share of random node sets of the circuit's size that reach the target"),
    "random_init": ("not reached or >", "the size, relative to this circuit, of one pruned from a randomly "
                                        "initialized model to the same target"),
    "nonsense_task": ("not reached or >", "the size, relative to this circuit, of one pruned for a task with "
                                          "shuffled answers to the same target"),
    "seeds": (">=", "the mean node-set Jaccard between this circuit and those pruned with other seeds"),
    "activation_agreement": (">=", "the mean correlation, over task-prompt positions, of each node's activation "
                                   "in the circuit with its activation in the full model"),
}


@dataclass(frozen=True)
class Check:
    """One rule of the verdict: its measured value against its threshold, and the finding
    in the wording of its outcome."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    reason: str

    @property
    def direction(self) -> str:
        """How the value must compare with the threshold to pass ("" for an unknown check)."""
        return CHECK_RULES.get(self.name, ("", ""))[0]

    @property
    def meaning(self) -> str:
        """What the value measures, in one line ("" for an unknown check)."""
        return CHECK_RULES.get(self.name, ("", ""))[1]

    def to_dict(self) -> dict[str, Any]:
        """{"name", "passed", "value", "threshold", "direction", "meaning", "reason"}."""
        return {"name": self.name, "passed": self.passed, "value": self.value, "threshold": self.threshold,
                "direction": self.direction, "meaning": self.meaning, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        """Parse one check record."""
        return cls(str(d["name"]), bool(d["passed"]), d.get("value"), d.get("threshold"), str(d.get("reason", "")))


@dataclass(frozen=True)
class Verdict:
    """A circuit's status (ok | suspect | insufficient), the failed checks' reasons, notes
    that are not pass/fail, every check, the controls not run and the thresholds used."""

    status: str
    reasons: list[str]
    notes: list[str]
    checks: list[Check]
    controls_not_run: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def check(self, name: str) -> Check | None:
        """The check of that name, if it was made."""
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The "verdict" record of validation.json."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "checks": [c.to_dict() for c in self.checks],
            "controls_not_run": list(self.controls_not_run),
            "thresholds": dict(self.thresholds),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Parse a "verdict" record; an unknown status is a ValueError."""
        if d.get("status") not in STATUSES:
            raise ValueError(f"verdict status {d.get('status')!r} is not one of {', '.join(STATUSES)}")
        return cls(
            str(d["status"]),
            [str(r) for r in d.get("reasons", [])],
            [str(n) for n in d.get("notes", [])],
            [Check.from_dict(c) for c in d.get("checks", [])],
            [str(n) for n in d.get("controls_not_run", [])],
            {str(k): float(v) for k, v in d.get("thresholds", {}).items()},
        )
