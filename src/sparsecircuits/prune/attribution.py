"""Attribution patching at node level, with an integrated-gradients variant.

The score of a node is |sum over prompts and positions of grad . (activation - ablation
value)|, the first-order estimate of how much ablating it moves the answer margin (the
correct answer's logit minus the wrong one's, which does not saturate the way the task
loss does). With `steps` > 1 the gradient is averaged over `steps` midpoints of the line
from every candidate node ablated (alpha = 0) to none (alpha = 1), each node's activation
replaced by value + alpha (activation - value): integrated gradients, which also sees
nodes that only matter together (an AND of two nodes has no gradient at either end).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.interventions import last_position_activations
from sparsecircuits.model.locations import node_width
from sparsecircuits.prune.batches import frozen_weights, length_chunks, select_pairs
from sparsecircuits.prune.scores import ScoreInputs
from sparsecircuits.tasks import TaskBatch, answer_margins


def _leaf(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
    """The embedding as a leaf that needs a gradient (the weights are frozen)."""
    return x.detach().requires_grad_(True)


def _margin_grads(inputs: ScoreInputs, batch: TaskBatch, alpha: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(activations, d margin / d activation) at every candidate hook, on one batch, with every
    candidate node at value + alpha (activation - value)."""
    model, values = inputs.model, inputs.values
    acts: dict[str, torch.Tensor] = {}

    def grab(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        if alpha != 1.0:
            v = values[hook.name].to(x.dtype).view(x.shape[2:])
            x = v + alpha * (x - v)
        acts[hook.name] = x
        return x

    with torch.enable_grad(), model.hooks([("hook_embed", _leaf)] + [(h, grab) for h in inputs.hooks]):
        margin = answer_margins(model.last_logits(batch.tokens, batch.last_pos), batch).sum()
        names = list(acts)
        grads = torch.autograd.grad(margin, [acts[h] for h in names], allow_unused=True)
    out = {h: (torch.zeros_like(acts[h]) if g is None else g) for h, g in zip(names, grads, strict=True)}
    return {h: a.detach() for h, a in acts.items()}, out


def _effect(act: torch.Tensor, grad: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Sum over batch and positions of grad . (activation - value), per node [width]."""
    delta = act.flatten(2) - value.to(act.dtype)
    return (grad.flatten(2) * delta).sum(dim=(0, 1)).double()


def attribution_scores(inputs: ScoreInputs, steps: int = 1) -> dict[str, torch.Tensor]:
    """|estimated margin change when ablating the node| per candidate node, over the train pairs."""
    model, train, config = inputs.model, inputs.train, inputs.config
    totals = {h: torch.zeros(node_width(model, h), dtype=torch.float64) for h in inputs.hooks}
    alphas = [1.0] if steps <= 1 else [(i + 0.5) / steps for i in range(steps)]
    n = len(train) // 2
    with frozen_weights(model):
        for start in range(0, n, config.batch_pairs):
            idx = torch.arange(start, min(n, start + config.batch_pairs))
            for part in length_chunks(train, idx):
                batch = select_pairs(train, part)
                clean = (last_position_activations(model, inputs.hooks, batch.tokens, batch.last_pos)
                         if steps > 1 else None)
                for alpha in alphas:
                    acts, grads = _margin_grads(inputs, batch, alpha)
                    base = clean if clean is not None else acts
                    for h in inputs.hooks:
                        totals[h] += _effect(base[h], grads[h], inputs.values[h]) / len(alphas)
    return {h: t.abs().float() for h, t in totals.items()}


def tie_broken(scores: Mapping[str, torch.Tensor], inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """`scores` with ties broken by attribution: equal scores (e.g. taus clamped at the same
    bound) are ordered by their nodes' attribution, different scores keep their order."""
    attr = attribution_scores(inputs, steps=1)
    flat = torch.cat([scores[h].flatten().double() for h in scores])
    gaps = torch.unique(flat).diff()
    gap = float(gaps.min()) if len(gaps) else 1.0
    top = max(float(a.max()) for a in attr.values()) or 1.0
    return {h: scores[h].double() + 0.5 * gap * attr[h].double() / top for h in scores}
