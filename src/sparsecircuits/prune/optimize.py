"""Optimizing the node masks: task loss + k_coef x (number of kept nodes), with AdamW.

docs/method.md section 4. The forward pass runs the whole prompt, but only each prompt's last
position is unembedded (`SparseTransformer.last_logits`), which is all the task loss reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.interventions import (
    frozen_norms,
    last_norm_stats,
    last_position_activations,
)
from sparsecircuits.model.locations import node_hooks
from sparsecircuits.prune.batches import frozen_weights, length_chunks, select_pairs
from sparsecircuits.prune.masks import NodeMasks
from sparsecircuits.tasks import TaskBatch, task_loss


@contextmanager
def full_model_norms(
    model: SparseTransformer, batch: TaskBatch, enabled: bool = True
) -> Iterator[SparseTransformer]:
    """With `enabled`, pin every norm's scale to the full model's on `batch` (recorded on
    entry, so enter this before attaching masks or ablations); otherwise do nothing."""
    if not enabled:
        yield model
        return
    stats = last_norm_stats(model, batch.tokens, batch.last_pos)
    with frozen_norms(model, stats):
        yield model


@contextmanager
def _drift(
    model: SparseTransformer, hooks: list[str], reference: Mapping[str, torch.Tensor] | None,
    gates: list[torch.Tensor], batch: TaskBatch,
) -> Iterator[list[torch.Tensor]]:
    """Collects, per hook, sum over kept nodes (gate) of the node's mean squared drift from
    `reference` over real positions, in units of its variance there (nothing without a
    reference). Attached after the masks, so it reads the masked activations."""
    terms: list[torch.Tensor] = []
    if reference is None:
        yield terms
        return
    gate_of = dict(zip(hooks, gates, strict=True))

    def read(x: torch.Tensor, hook: HookPoint) -> None:
        ref = reference[hook.name].flatten(2)
        # every position up to the prompt's last (the last block's later hooks see only that one)
        real = torch.arange(x.shape[1]).unsqueeze(0) <= batch.last_pos.unsqueeze(1)
        diff = (x.flatten(2) - ref)[real]
        scale = ref[real].var(dim=0, unbiased=False) + 1e-6
        terms.append((gate_of[hook.name] * diff.pow(2).mean(dim=0) / scale).sum())

    with model.hooks([(h, read) for h in hooks]):
        yield terms


def optimize_masks(
    model: SparseTransformer,
    train: TaskBatch,
    values: Mapping[str, torch.Tensor],
    config: Any,  # a PruneConfig
    progress: bool = True,
) -> tuple[NodeMasks, list[dict[str, float]]]:
    """Train the node masks on `train`; returns the masks and a loss history.

    Each step draws `batch_pairs` pairs (seeded), runs the masked model and minimizes
    task loss + k_coef x (kept nodes) with AdamW; tau is clamped to [-1, 1] after each step.
    With `faithful_coef`, each kept node also pays its activation drift from the full model
    (mean squared difference over real positions, in units of its variance), so that the
    circuit's nodes keep carrying the signals they carry in the full model.
    """
    gen = torch.Generator().manual_seed(config.seed)
    masks = NodeMasks(
        model,
        node_hooks(model, config.locations),
        init=config.init_tau,
        noise=config.init_noise,
        temperature=config.temperature,
        generator=gen,
    )
    opt = torch.optim.AdamW(
        masks.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    n_pairs = len(train) // 2
    history: list[dict[str, float]] = []
    log_every = max(1, config.steps // 50)
    bar = tqdm(range(config.steps), desc="pruning", unit="step", disable=not progress, leave=False)
    with frozen_weights(model):
        for step in bar:
            idx = torch.randint(n_pairs, (min(config.batch_pairs, n_pairs),), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss_task = torch.zeros(())
            for part in length_chunks(train, idx):
                batch = select_pairs(train, part)
                reference = (last_position_activations(model, masks.hooks, batch.tokens, batch.last_pos)
                             if config.faithful_coef else None)
                with (
                    full_model_norms(model, batch, config.freeze_norms),
                    masks.applied(model, values) as gates,
                    _drift(model, masks.hooks, reference, gates, batch) as drift,
                ):
                    logits = model.last_logits(batch.tokens, batch.last_pos)
                part_loss = task_loss(logits, batch) + config.faithful_coef * sum(drift)
                part_loss = part_loss * (len(part) / len(idx))
                part_loss.backward()
                loss_task = loss_task + part_loss.detach()
            kept = torch.stack([g.sum() for g in masks.gates()]).sum()
            (config.k_coef * kept).backward()
            opt.step()
            masks.clamp_()
            if step % log_every == 0 or step == config.steps - 1:
                record = {"step": step, "task_loss": float(loss_task.detach()), "kept": int(kept.detach())}
                history.append(record)
                bar.set_postfix(loss=f"{record['task_loss']:.3f}", kept=record["kept"])
    return masks, history
