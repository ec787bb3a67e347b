"""What a discovery method gets and gives: `ScoreInputs` in, `NodeScores` out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsecircuits.model import SparseTransformer
from sparsecircuits.tasks import TaskBatch


@dataclass(frozen=True)
class ScoreInputs:
    """What every method sees: the model, the train pairs, the ablation values, the
    candidate hooks (the pruned locations) and the settings."""

    model: SparseTransformer
    train: TaskBatch
    values: Mapping[str, torch.Tensor]
    hooks: list[str]
    config: Any  # PruneConfig
    progress: bool = False


@dataclass
class NodeScores:
    """A method's result: hook -> score per node; a k expected to meet the target (the
    bisection tries it first); the method's log."""

    scores: dict[str, torch.Tensor]
    hint: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
