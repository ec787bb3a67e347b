"""The typed records of validation.json: one `Check` per verdict rule and the `Verdict`.

Both serialize to exactly the JSON this library has always written (docs/validation.md)
and read it back, so validation files of earlier versions load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("ok", "suspect", "insufficient")


@dataclass(frozen=True)
class Check:
    """One rule of the verdict: its measured value against its threshold, and the finding
    in the wording of its outcome."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """{"name", "passed", "value", "threshold", "reason"}."""
        return {"name": self.name, "passed": self.passed, "value": self.value,
                "threshold": self.threshold, "reason": self.reason}

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
