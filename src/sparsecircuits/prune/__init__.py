"""Prune a model to a task circuit (docs/method.md section 4).

`prune(model, task, tokenizer, PruneConfig(...), data=CORPUS)` returns a `PruneResult`
whose `.circuit` is a `sparsecircuits.circuits.Circuit`. The pieces are public too:
`ablate` (evaluate any node set), `ablation_values` (mean / zero / task-mean values),
`NodeMasks` and `optimize_masks` (the learned masks), `bisect_k` and `calibrate`. The
hook interventions (`ablate`, `frozen_norms`, ...) live in `sparsecircuits.model.interventions`.
"""

from sparsecircuits.prune.ablation import ABLATIONS, ablation_values
from sparsecircuits.prune.bisect import bisect_k, rank_nodes, top_k_keep
from sparsecircuits.prune.calibrate import Calibration, apply_calibration, calibrate
from sparsecircuits.prune.config import PruneConfig
from sparsecircuits.prune.evaluate import CircuitEvaluator
from sparsecircuits.prune.masks import NodeMasks, heaviside
from sparsecircuits.prune.optimize import full_model_norms, optimize_masks
from sparsecircuits.prune.pipeline import PruneResult, prune, prune_pairs

__all__ = [
    "ABLATIONS",
    "Calibration",
    "CircuitEvaluator",
    "NodeMasks",
    "PruneConfig",
    "PruneResult",
    "ablation_values",
    "apply_calibration",
    "bisect_k",
    "calibrate",
    "full_model_norms",
    "heaviside",
    "optimize_masks",
    "prune",
    "prune_pairs",
    "rank_nodes",
    "top_k_keep",
]
