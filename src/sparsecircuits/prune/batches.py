"""Sub-batches of task pairs for discovery: pairs grouped by prompt length (less padding),
and the model's own weights frozen while nodes are scored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sparsecircuits.model import SparseTransformer
from sparsecircuits.tasks import TaskBatch

MAX_CHUNKS = 4  # length groups per batch at most (see length_chunks)
CHUNK_COST = 128  # fixed cost of one forward + backward pass, in padded token positions


def select_pairs(batch: TaskBatch, idx: torch.Tensor) -> TaskBatch:
    """The sub-batch of pairs `idx` (A rows and B rows), trimmed to its longest prompt."""
    n = len(batch) // 2
    rows = torch.cat([idx, idx + n])
    last = batch.last_pos[rows]
    width = int(last.max()) + 1
    return TaskBatch(batch.tokens[rows, :width], last, batch.correct[rows], batch.wrong[rows])


def length_chunks(batch: TaskBatch, idx: torch.Tensor, max_chunks: int = MAX_CHUNKS) -> list[torch.Tensor]:
    """Split pairs `idx` into at most `max_chunks` groups of similar prompt length.

    Pairs are sorted by length and cut into equal-count groups; the number of groups is the
    one with the fewest padded positions plus `CHUNK_COST` positions per group (one forward
    pass's fixed cost). The task loss is a mean over rows, so the size-weighted sum of the
    groups' losses, and its gradient, equal the whole batch's.
    """
    n = len(batch) // 2
    length = torch.maximum(batch.last_pos[idx], batch.last_pos[idx + n]) + 1
    order = torch.sort(length, stable=True).indices
    best: list[torch.Tensor] = [order]
    best_cost = float("inf")
    for c in range(1, min(max_chunks, len(idx)) + 1):
        groups = torch.tensor_split(order, c)
        cost = sum(len(g) * int(length[g].max()) for g in groups) + c * CHUNK_COST
        if cost < best_cost:
            best, best_cost = list(groups), cost
    return [idx[g] for g in best]


@contextmanager
def frozen_weights(model: SparseTransformer) -> Iterator[SparseTransformer]:
    """Turn off gradients of the model's own parameters (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
