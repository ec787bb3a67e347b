"""Validate circuits: sufficiency, necessity, faithfulness, controls and a verdict.

A small circuit with low loss is not yet an explanation (docs/method.md section 5): pruning
also reaches low loss on nonsense tasks and random models. `validate` computes a
circuit's metrics, runs the chosen controls and writes a verdict (ok | suspect |
insufficient) with documented thresholds to validation.json; see docs/validation.md.
"""

from sparsecircuits.validate.controls import (
    CONTROLS,
    CORE_CONTROLS,
    ControlContext,
    ControlSpec,
    control_activation_agreement,
    control_frozen_norms,
    control_nonsense_task,
    control_random_circuits,
    control_random_init,
    control_seed_variance,
    control_zero_vs_mean,
    jaccard,
    parse_controls,
    random_init_model,
    random_keep,
)
from sparsecircuits.validate.metrics import (
    CHANCE_LOSS,
    Metrics,
    compute_metrics,
    faithfulness,
    keep_masks_of,
    kl_full_to,
    necessity,
)
from sparsecircuits.validate.nonsense import NonsenseTask, nonsense_pair, nonsense_task
from sparsecircuits.validate.pipeline import (
    VALIDATION_FILE,
    VALIDATION_FORMAT,
    ValidationReport,
    prune_config_of,
    task_from_info,
    validate,
)
from sparsecircuits.validate.verdict import Thresholds, verdict

__all__ = [
    "CHANCE_LOSS",
    "CONTROLS",
    "CORE_CONTROLS",
    "VALIDATION_FILE",
    "VALIDATION_FORMAT",
    "ControlContext",
    "ControlSpec",
    "Metrics",
    "NonsenseTask",
    "Thresholds",
    "ValidationReport",
    "compute_metrics",
    "control_activation_agreement",
    "control_frozen_norms",
    "control_nonsense_task",
    "control_random_circuits",
    "control_random_init",
    "control_seed_variance",
    "control_zero_vs_mean",
    "faithfulness",
    "jaccard",
    "keep_masks_of",
    "kl_full_to",
    "necessity",
    "nonsense_pair",
    "nonsense_task",
    "parse_controls",
    "prune_config_of",
    "random_init_model",
    "random_keep",
    "task_from_info",
    "validate",
    "verdict",
]
