"""The learning-rate and kept-fraction schedules of a training run (docs/method.md section 2)."""

from __future__ import annotations

import math

from sparsecircuits.model.sparsity import kept_fraction_schedule
from sparsecircuits.train.config import TrainConfig


def learning_rate(step: int, cfg: TrainConfig, kept: float = 1.0) -> float:
    """Learning rate of optimizer step `step` (0-based) when matrices keep `kept` of their entries.

    Linear warmup over warmup_frac of the steps, then linear decay towards zero, times
    sqrt(target_density / kept) in sparse runs with `sharkfin` (lower while still dense).
    """
    warm = int(cfg.warmup_frac * cfg.steps)
    mult = (step + 1) / warm if step < warm else (cfg.steps - step) / max(1, cfg.steps - warm)
    if cfg.sharkfin and cfg.sparse:
        assert cfg.target_density is not None
        mult *= math.sqrt(cfg.target_density / kept)
    return cfg.lr * mult


def kept_fraction(step: int, cfg: TrainConfig) -> float:
    """Scheduled kept fraction of the matrices after `step` optimizer steps (1.0 when dense)."""
    if not cfg.sparse:
        return 1.0
    assert cfg.target_density is not None
    return kept_fraction_schedule(
        step, cfg.steps, cfg.target_density, cfg.anneal_start_frac, cfg.anneal_end_frac, cfg.anneal_shape
    )
