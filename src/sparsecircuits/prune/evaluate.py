"""Evaluating a node set: the task loss on a fixed batch with every other candidate node
ablated, in groups of similar prompt length (less padding), norms frozen when asked."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.interventions import intervened, last_norm_stats
from sparsecircuits.prune.batches import length_chunks, select_pairs
from sparsecircuits.tasks import TaskBatch, task_loss

EVAL_CHUNKS = 8  # length groups of an evaluated batch at most


class CircuitEvaluator:
    """Task loss of the model on a fixed batch with some nodes ablated (norms frozen to the
    full model's on this batch when asked).

    The batch is evaluated in groups of pairs of similar prompt length (less padding); the
    full model's norm scales are recorded once per group, on construction.
    """

    def __init__(
        self,
        model: SparseTransformer,
        batch: TaskBatch,
        values: Mapping[str, torch.Tensor],
        freeze_norms: bool,
    ) -> None:
        self.model, self.batch, self.values, self.freeze_norms = model, batch, values, freeze_norms
        n = len(batch) // 2
        self.groups = [
            (torch.cat([part, part + n]), select_pairs(batch, part))
            for part in length_chunks(batch, torch.arange(n), max_chunks=EVAL_CHUNKS)
        ]
        self.norm_stats = [
            last_norm_stats(model, sub.tokens, sub.last_pos)
            if freeze_norms
            else None
            for _, sub in self.groups
        ]

    @torch.no_grad()
    def logits(self, keep: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Last-position logits [M, V] with the nodes not in `keep` ablated (None: full model)."""
        model = self.model
        out = torch.empty(len(self.batch), model.cfg.vocab_size)
        for (rows, sub), stats in zip(self.groups, self.norm_stats, strict=True):
            with intervened(model, keep or {}, self.values, stats):
                out[rows] = model.last_logits(sub.tokens, sub.last_pos)
        return out

    def loss(self, keep: Mapping[str, torch.Tensor] | None = None) -> float:
        """Task loss with the nodes not in `keep` ablated."""
        return float(task_loss(self.logits(keep), self.batch))
