"""Single-node removal, batched: the task loss of a circuit with each of its nodes removed
in turn, as one ablation per node would give it (the minimality pass's per-node loss
increase, and the report's). Copies of the task rows, one per removed node, go through the
model together, starting at the node's layer from the circuit's cached residual stream;
later blocks whose inputs are all ablated add their cached outputs instead of running.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.interventions import intervened, last_norm_stats, record_norm_scales
from sparsecircuits.model.locations import hook_location, node_width
from sparsecircuits.tasks import task_loss
from sparsecircuits.tasks.loss import TaskBatch

REMOVAL_GROUP = 4  # task rows of similar length per group in single-node removal
REMOVAL_ROWS = 32  # batch rows per forward pass of single-node removal


def _row_removal_fn(flags: torch.Tensor, value: torch.Tensor):
    def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        copies = flags.shape[0]
        rows = x.reshape(copies, -1, x.shape[1], flags.shape[1])
        return torch.where(flags.view(copies, 1, 1, -1), rows, value.to(x.dtype)).view(x.shape)

    return fn


@contextmanager
def removed_per_copy(
    model: SparseTransformer, nodes: Sequence[tuple[str, int]], values: Mapping[str, torch.Tensor]
) -> Iterator[SparseTransformer]:
    """For a batch of len(nodes) equal copies, replace node i (hook, index) by its ablation
    value in copy i only; combine with `ablate` for the rest of the circuit."""
    fwd_hooks = []
    for hook in sorted({h for h, _ in nodes}):
        flags = torch.ones(len(nodes), node_width(model, hook), dtype=torch.bool)
        for copy, (h, index) in enumerate(nodes):
            if h == hook:
                flags[copy, index] = False
        fwd_hooks.append((hook, _row_removal_fn(flags, values[hook])))
    with model.hooks(fwd_hooks):
        yield model


def _dead_blocks(model: SparseTransformer, keep: Mapping[str, torch.Tensor]) -> list[int]:
    """Blocks whose attention and MLP inputs are entirely ablated: what they add to the
    residual stream depends on positions only."""
    def ablated(alias: str) -> bool:
        hook = model.resolve_hook_name(alias)
        return hook in keep and not bool(torch.as_tensor(keep[hook]).any())

    return [layer for layer in range(model.cfg.n_layer)
            if ablated(f"blocks.{layer}.attn_in") and ablated(f"blocks.{layer}.mlp_in")]


def _tile(batch: TaskBatch, copies: int) -> TaskBatch:
    return TaskBatch(batch.tokens.repeat(copies, 1), *(t.repeat(copies) for t in (batch.last_pos, batch.correct, batch.wrong)))


def removal_losses(
    model: SparseTransformer,
    keep: Mapping[str, torch.Tensor],
    values: Mapping[str, torch.Tensor],
    batch: TaskBatch,
    nodes: Sequence[tuple[str, int]],
    freeze_norms: bool = False,
    group_rows: int = REMOVAL_GROUP,
    max_rows: int = REMOVAL_ROWS,
) -> list[float]:
    """Task loss of the circuit `keep` with each of `nodes` (hook, index) removed in turn.

    Equals running `ablate` with that node's flag False (norms frozen to the full model's
    when `freeze_norms`) once per node. Here rows of similar prompt length go in groups of `group_rows`,
    trimmed to their longest prompt; the nodes of one layer share passes of up to
    `max_rows` rows (one group copy per node) that start from that layer's cached residual;
    later blocks whose inputs are all ablated add their cached outputs instead of running."""
    n_layer = model.cfg.n_layer
    full_stats = record_norm_scales(model, lambda: model(batch.tokens)) if freeze_norms else None
    stats = last_norm_stats(model, batch.tokens, batch.last_pos) if freeze_norms else None
    resid_hooks = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layer)]
    dead = {layer: (f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out")
            for layer in _dead_blocks(model, keep)}
    with intervened(model, keep, values, full_stats):
        _, cache = model.run_with_cache(batch.tokens, names_filter=resid_hooks + [h for hs in dead.values() for h in hs])
    by_layer: dict[int, list[int]] = {}
    for i, (hook, _) in enumerate(nodes):
        by_layer.setdefault(hook_location(hook)[0], []).append(i)
    per_row = torch.zeros(len(nodes), len(batch))
    for rows in torch.argsort(batch.last_pos, stable=True).split(group_rows):
        width = int(batch.last_pos[rows].max()) + 1
        group = TaskBatch(batch.tokens[rows, :width], batch.last_pos[rows], batch.correct[rows], batch.wrong[rows])
        group_cache = {h: t[rows, :width] for h, t in cache.items()}
        group_stats = None if stats is None else {h: t[rows, :width] for h, t in stats.items()}
        per_pass = max(1, max_rows // len(rows))
        for layer, order in sorted(by_layer.items()):
            for s in range(0, len(order), per_pass):
                chunk = order[s : s + per_pass]
                n = len(chunk)
                tiled = _tile(group, n)
                tiled_stats = None if group_stats is None else {h: t.repeat(n, 1, 1) for h, t in group_stats.items()}
                added = {d: (group_cache[a].repeat(n, 1, 1), group_cache[m].repeat(n, 1, 1))
                         for d, (a, m) in dead.items() if d > layer}
                x = group_cache[resid_hooks[layer]].repeat(n, 1, 1)
                with (intervened(model, keep, values, tiled_stats),
                      removed_per_copy(model, [nodes[i] for i in chunk], values)):
                    logits = model.last_logits(tiled.tokens, tiled.last_pos, resid=x, start=layer, added=added)
                per_row[torch.tensor(chunk)[:, None], rows] = task_loss(logits, tiled, reduction="none").view(n, -1)
    return per_row.mean(dim=1).tolist()
