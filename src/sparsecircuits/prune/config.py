"""PruneConfig: every discovery setting, validated at construction (the shared ones, the
`masks` method's, and the other methods' own)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS
from sparsecircuits.prune.ablation import ABLATIONS
from sparsecircuits.prune.methods import METHODS

TIE_BREAKS = ("index", "attribution")


@dataclass
class PruneConfig:
    """Every pruning setting (docs/method.md section 4 defaults unless noted).

    CPU defaults, chosen to prune one task of the `small-sparse` preset within a minute on 2
    cores (benchmarks/RESULTS.md, prune section): `steps` 150 (paper: ~2000), `batch_pairs`
    32 (paper: 64) and `lr` 1e-2 (paper: 3e-3). Adam moves each tau by at most about lr per
    step, so at 1e-2 a node can go from its initial 0.1 to either clamp within ~110 steps;
    the masks only have to rank the nodes, and the bisection then picks the smallest top-k
    set that meets the target on held-out pairs. Measured on the small preset (a sparse
    model at 500 training steps): 4x the steps gave larger circuits, not smaller (94 -> 134
    and 126 -> 173 nodes on two tasks, same held-out loss); on a dense model, 400 steps x 64
    pairs at lr 3e-3 gave 17% fewer nodes than the defaults (133 vs 160) for 3x the time.
    For the paper's setting pass steps=2000, batch_pairs=64, lr=3e-3.
    `k_coef` multiplies the raw number of kept nodes (not a fraction), as in the paper: with
    Adam, a node is pruned when its task-loss gradient is smaller than k_coef, a per-node
    threshold that does not depend on how many nodes the model has; keeping all 2,816 nodes
    of the small preset costs 0.28 nats. `temperature` is the sigmoid temperature of the
    surrogate gradient. Bisection and the reported losses use `n_eval_pairs` held-out (test
    split) pairs; the masks are trained on `n_train_pairs` train-split pairs.
    `method` picks the discovery method (`prune.methods.METHODS`; the mask settings above
    are the `masks` method's), `minimal` ends any method with the minimality pass.
    """

    locations: tuple[str, ...] = LOCATIONS
    steps: int = 150
    batch_pairs: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    k_coef: float = 1e-4
    init_tau: float = 0.1
    init_noise: float = 0.01
    temperature: float = 1.0
    target_loss: float = 0.15
    ablation: str = "mean"
    calibrate_steps: int = 16
    freeze_norms: bool = False
    seed: int = 0
    n_train_pairs: int = 1024
    n_eval_pairs: int = 128
    method: str = "masks"  # a discovery method of prune.methods.METHODS
    tie_break: str = "index"  # masks: order equal taus by node index or by attribution
    ig_steps: int = 8  # attribution_ig: points on the integration path
    minimal: bool = True  # end with the minimality pass (drop nodes the circuit does not need)
    faithful_coef: float = 0.0  # masks: penalty per kept node on its activation drift from the full model

    def __post_init__(self) -> None:
        self.locations = tuple(self.locations)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        unknown = [a for a in self.locations if a not in LOCATIONS]
        if unknown or not self.locations:
            raise InputError(
                f"PruneConfig.locations {list(self.locations)} must be a non-empty subset of "
                + ", ".join(LOCATIONS)
            )
        if self.method not in METHODS:
            raise InputError(f"PruneConfig.method {self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        if self.tie_break not in TIE_BREAKS:
            raise InputError(f"PruneConfig.tie_break {self.tie_break!r} is unknown; choose one of {', '.join(TIE_BREAKS)}")
        if self.ablation not in ABLATIONS:
            raise InputError(
                f"PruneConfig.ablation {self.ablation!r} is unknown; choose one of {', '.join(ABLATIONS)}"
            )
        for name in ("steps", "batch_pairs", "n_train_pairs", "n_eval_pairs", "ig_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"PruneConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.calibrate_steps, int) or self.calibrate_steps < 0:
            raise InputError(f"PruneConfig.calibrate_steps must be >= 0, got {self.calibrate_steps!r}")
        numbers = ("lr", "temperature", "target_loss", "k_coef", "weight_decay", "init_noise", "faithful_coef",
                   "init_tau")
        for name in numbers:
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"PruneConfig.{name} must be a finite number, got {getattr(self, name)!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"PruneConfig.betas must be two numbers in [0, 1), got {list(self.betas)}")
        for name in ("lr", "temperature", "target_loss"):
            if not getattr(self, name) > 0:
                raise InputError(f"PruneConfig.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("k_coef", "weight_decay", "init_noise", "faithful_coef"):
            if getattr(self, name) < 0:
                raise InputError(f"PruneConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not -1.0 <= self.init_tau <= 1.0:
            raise InputError(f"PruneConfig.init_tau must be in [-1, 1], got {self.init_tau!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["locations"] = list(self.locations)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneConfig:
        """Build from a dict (unknown keys are an error naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown PruneConfig field(s): {', '.join(unknown)}")
        return cls(**d)
