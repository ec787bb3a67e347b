"""Evaluating a planted model with some node set kept, exactly as pruning evaluates a circuit:
the same ablation values (`ablation_values` on the train pairs / the mean data) and the same
`CircuitEvaluator` (norms not frozen, pruning's default)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from sparsecircuits.circuits.ids import parse_node_id
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.prune import CircuitEvaluator, ablation_values
from sparsecircuits.tasks import EncodedPair, make_batch

from .models import Planted


def planted_values(
    planted: Planted, train_pairs: Sequence[EncodedPair], cache_dir: str | Path
) -> dict[str, torch.Tensor]:
    """The ablation values pruning uses for this model (task means over `train_pairs`)."""
    return ablation_values(
        planted.model, planted.ablation, data=planted.data, task_batch=make_batch(train_pairs),
        cache_dir=cache_dir,
    )


def keep_flags(planted: Planted, node_ids: Iterable[str]) -> dict[str, torch.Tensor]:
    """Bool keep flags over every node hook: True exactly at `node_ids`."""
    model = planted.model
    keep = {h: torch.zeros(node_width(model, h), dtype=torch.bool) for h in all_node_hooks(model)}
    for nid in node_ids:
        h, i = parse_node_id(nid)
        keep[h][i] = True
    return keep


class PlantedEvaluator:
    """Task loss of a planted model on held-out pairs with only some nodes kept."""

    def __init__(self, planted: Planted, eval_pairs: Sequence[EncodedPair], values: Mapping[str, torch.Tensor]) -> None:
        self.planted = planted
        self.evaluator = CircuitEvaluator(planted.model, make_batch(eval_pairs), values, freeze_norms=False)

    def full(self) -> float:
        """The full model's loss."""
        return self.evaluator.loss(None)

    def kept(self, node_ids: Iterable[str]) -> float:
        """The loss with exactly `node_ids` kept, every other node ablated."""
        return self.evaluator.loss(keep_flags(self.planted, node_ids))
