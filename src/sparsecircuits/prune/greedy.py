"""Greedy elimination of nodes: the `acdc` method, and the minimality pass any method can
end with.

Both visit nodes in an order and drop a node when the task loss without it stays at most
a threshold. `acdc` starts from every candidate node and visits them from the output
backwards (later layers first, within a layer the locations in reverse forward order), on
train pairs. The minimality pass starts from a method's circuit and visits its nodes from
the lowest score up, on the held-out pairs, then measures each remaining node's loss
increase: the circuit is 1-minimal when removing any single node breaks the target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from sparsecircuits.model.locations import hook_location, node_locations, node_width
from sparsecircuits.prune.batches import frozen_weights, select_pairs
from sparsecircuits.prune.evaluate import CircuitEvaluator
from sparsecircuits.prune.removal import removal_losses
from sparsecircuits.prune.scores import ScoreInputs

Keep = dict[str, torch.Tensor]


def eliminate(
    evaluator: CircuitEvaluator, keep: Keep, order: Sequence[tuple[str, int]], threshold: float,
    progress: bool = False, desc: str = "eliminating",
) -> tuple[Keep, list[tuple[str, int]]]:
    """Visit `order`; drop each kept node whose removal keeps the loss <= threshold.
    Returns the remaining flags and the dropped nodes in the order they were dropped."""
    keep = {h: f.clone() for h, f in keep.items()}
    dropped = []
    for hook, index in tqdm(order, desc=desc, unit="node", disable=not progress, leave=False):
        if not keep[hook][index]:
            continue
        keep[hook][index] = False
        if evaluator.loss(keep) <= threshold:
            dropped.append((hook, index))
        else:
            keep[hook][index] = True
    return keep, dropped


def _output_backwards(hooks: Sequence[str], widths: Mapping[str, int]) -> list[tuple[str, int]]:
    """Every node of `hooks`, later layers first, locations in reverse forward order."""
    order = {loc.alias: i for i, loc in enumerate(node_locations())}

    def key(hook: str) -> tuple[int, int]:
        layer, alias = hook_location(hook)
        return (-layer, -order[alias])

    return [(h, i) for h in sorted(hooks, key=key) for i in range(widths[h])]


def acdc_scores(inputs: ScoreInputs) -> tuple[dict[str, torch.Tensor], int]:
    """Scores from greedy elimination (kept nodes 1 + ..., dropped nodes by how late they
    were dropped) and the number kept. The threshold is the target loss, or the full
    model's loss on these pairs when that is higher."""
    model, config = inputs.model, inputs.config
    n = len(inputs.train) // 2
    batch = select_pairs(inputs.train, torch.arange(min(n, config.n_eval_pairs)))
    widths = {h: node_width(model, h) for h in inputs.hooks}
    with frozen_weights(model), torch.no_grad():
        evaluator = CircuitEvaluator(model, batch, inputs.values, config.freeze_norms)
        threshold = max(config.target_loss, evaluator.loss(None))
        full = {h: torch.ones(w, dtype=torch.bool) for h, w in widths.items()}
        keep, dropped = eliminate(evaluator, full, _output_backwards(inputs.hooks, widths), threshold,
                                  inputs.progress, "acdc")
    total = sum(widths.values())
    scores = {h: keep[h].double() * (1.0 + total) for h in widths}
    for step, (hook, index) in enumerate(dropped):
        scores[hook][index] = step + 1.0  # dropped later = needed longer
    return scores, sum(int(f.sum()) for f in keep.values())


def minimality_pass(
    evaluator: CircuitEvaluator, keep: Keep, ranking: Sequence[tuple[str, int]], target: float,
    progress: bool = False,
) -> tuple[Keep, dict[str, Any]]:
    """Drop the circuit's nodes that it does not need (lowest-ranked first), then record
    each remaining node's loss increase and whether the circuit is 1-minimal."""
    kept = [node for node in reversed(ranking) if keep[node[0]][node[1]]]
    keep, dropped = eliminate(evaluator, keep, kept, target, progress, "minimality")
    base = evaluator.loss(keep)
    remaining = [node for node in ranking if keep[node[0]][node[1]]]
    losses = removal_losses(evaluator.model, keep, evaluator.values, evaluator.batch, remaining,
                            evaluator.freeze_norms) if remaining else []
    increase = {f"{hook}:{index}": loss - base for (hook, index), loss in zip(remaining, losses, strict=True)}
    minimal = all(loss > target for loss in losses)
    return keep, {"one_minimal": minimal, "dropped": len(dropped), "loss_increase": increase}
