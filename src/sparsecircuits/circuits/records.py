"""The typed records inside circuit.json: the task, the losses, the calibration and the
pruning settings. Each serializes to exactly the JSON this library has always written and
reads older files (missing fields stay None; unknown pruning settings are kept)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LOSS_KEYS = ("full", "circuit", "circuit_calibrated", "ablate_all", "circuit_ablated")


@dataclass(frozen=True)
class TaskRecord:
    """Which task a circuit does: a registered name, a JSONL file, or a derived task.

    `source` is "builtin" / "python" (a registered task), a JSONL path, or "nonsense";
    `extra` keeps any other field (e.g. a description) as it was written."""

    name: str
    source: str = "builtin"
    parameters: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """{"name", "source", "parameters", ...extra}."""
        return {"name": self.name, "source": self.source, "parameters": dict(self.parameters), **self.extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskRecord:
        """Parse a task record; `params` is read as an older spelling of `parameters`."""
        d = dict(d)
        name = str(d.pop("name", "task"))
        source = str(d.pop("source", "builtin"))
        params = d.pop("parameters", None)
        if params is None:
            params = d.pop("params", None) or {}
        return cls(name, source, dict(params), d)


@dataclass(frozen=True)
class CircuitLosses:
    """Task losses (nats) measured by pruning on the held-out pairs; None when not measured.

    full: the model; circuit: everything outside the circuit ablated; circuit_calibrated:
    the same with the fitted logit calibration; ablate_all: every pruned location ablated;
    circuit_ablated: only the circuit's nodes ablated."""

    full: float | None = None
    circuit: float | None = None
    circuit_calibrated: float | None = None
    ablate_all: float | None = None
    circuit_ablated: float | None = None

    def to_dict(self) -> dict[str, float]:
        """The measured losses by name (unmeasured ones left out)."""
        return {k: getattr(self, k) for k in LOSS_KEYS if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CircuitLosses:
        """Parse {"full", "circuit", ...}; other keys are an error naming them."""
        unknown = sorted(set(d) - set(LOSS_KEYS))
        if unknown:
            raise ValueError(f"unknown loss key(s) {unknown}; known: {', '.join(LOSS_KEYS)}")
        losses = {k: float(v) for k, v in d.items()}
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"losses.{bad[0]} is {losses[bad[0]]}, not a finite number")
        return cls(**losses)


@dataclass(frozen=True)
class CalibrationRecord:
    """The logit calibration fitted to a circuit: scale x logits + shift on each pair's
    A-side answer (see `prune.calibrate`); identity by default."""

    scale: float = 1.0
    shift: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """{"scale", "shift"}."""
        return {"scale": self.scale, "shift": self.shift}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CalibrationRecord | None:
        """Parse {"scale", "shift"}; an empty record (a hand-made circuit) is None."""
        if not d:
            return None
        return cls(float(d.get("scale", 1.0)), float(d.get("shift", 0.0)))


@dataclass(frozen=True)
class PruningRecord:
    """How a circuit was found: the discovery settings (for node-mask pruning, every
    `PruneConfig` field), the k the bisection chose (None when the target was not met) and
    how many nodes were candidates. Written flat, as `{**settings, "k", "n_masked_nodes"}`."""

    settings: dict[str, Any] = field(default_factory=dict)
    k: int | None = None
    n_masked_nodes: int | None = None

    def get(self, name: str, default: Any = None) -> Any:
        """One setting (or `k` / `n_masked_nodes`) by name."""
        if name in ("k", "n_masked_nodes"):
            value = getattr(self, name)
            return default if value is None else value
        return self.settings.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON record."""
        out = dict(self.settings)
        if self.n_masked_nodes is not None:  # written by pruning, with k (None: target not met)
            out["n_masked_nodes"] = self.n_masked_nodes
            out["k"] = self.k
        elif self.k is not None:
            out["k"] = self.k
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruningRecord:
        """Parse the flat record."""
        d = dict(d)
        k, n = d.pop("k", None), d.pop("n_masked_nodes", None)
        return cls(d, None if k is None else int(k), None if n is None else int(n))

