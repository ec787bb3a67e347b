"""Training: the run config, the schedules, the `Trainer` and the run folder."""

from sparsecircuits.train.config import (
    RunConfig,
    TrainConfig,
    apply_overrides,
    list_presets,
    load_run_config,
)
from sparsecircuits.train.schedule import kept_fraction, learning_rate
from sparsecircuits.train.trainer import (
    Trainer,
    TrainingInterrupted,
    TrainResult,
    native_bf16,
    train,
    weight_decay_params,
)

__all__ = [
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "apply_overrides",
    "kept_fraction",
    "learning_rate",
    "list_presets",
    "load_run_config",
    "native_bf16",
    "train",
    "weight_decay_params",
]
