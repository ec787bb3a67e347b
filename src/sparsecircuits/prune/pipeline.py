"""`prune`: a model and a task in, a Circuit out (docs/method.md section 4, end to end).

1. generate train pairs (to optimize the masks) and held-out test pairs (to bisect and
   report on); 2. compute the ablation values; 3. optimize the node masks; 4. rank nodes
   by tau and bisect for the smallest top-k set whose loss is at most the target;
5. calibrate the logits; 6. measure the reference losses, count edges, build the Circuit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sparsecircuits import __version__
from sparsecircuits.checkpoint import Checkpoint, model_fingerprint, stage_inputs
from sparsecircuits.circuits import (
    Circuit,
    compute_edges,
    embed_links,
    residual_links,
    unembed_links,
)
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.locations import all_node_hooks, node_hooks, node_width
from sparsecircuits.prune.ablation import Data, ablation_values
from sparsecircuits.prune.batches import frozen_weights
from sparsecircuits.prune.bisect import bisect_k, rank_nodes, top_k_keep
from sparsecircuits.prune.calibrate import Calibration, calibrate
from sparsecircuits.prune.config import PruneConfig
from sparsecircuits.prune.evaluate import CircuitEvaluator
from sparsecircuits.prune.greedy import minimality_pass
from sparsecircuits.prune.methods import get_method
from sparsecircuits.prune.scores import NodeScores, ScoreInputs
from sparsecircuits.tasks import EncodedPair, Task, TaskBatch, make_batch, task_loss
from sparsecircuits.tasks.loss import check_fits


@dataclass
class PruneResult:
    """The circuit plus what produced it: tau per hook, the loss-vs-k curve, the
    calibration, the optimization history and the wall-clock seconds per phase."""

    circuit: Circuit
    tau: dict[str, torch.Tensor]
    curve: list[dict[str, float]]
    calibration: Calibration
    history: list[dict[str, float]]
    seconds: dict[str, float] = field(default_factory=dict)


def _task_info(task: Any) -> dict[str, Any]:
    return {
        "name": getattr(task, "name", "pairs"),
        "source": getattr(task, "source", "python"),
        "parameters": dict(getattr(task, "params", {}) or {}),
    }


def prune(
    model: SparseTransformer | Checkpoint,
    task: Task,
    tokenizer: Any = None,
    config: PruneConfig | None = None,
    data: Data = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    model_path: str | Path | None = None,
) -> PruneResult:
    """Prune `model` to the smallest node set that does `task` (see the module docstring).

    `data` (a corpus folder or token array) feeds the `mean` ablation; its values are
    cached in `cache_dir` (normally the checkpoint folder, see `ablation_values`).
    `model_path` is recorded in the circuit. Given a `Checkpoint`, the tokenizer, corpus,
    cache folder and path default to the checkpoint's.
    """
    given = stage_inputs(model, tokenizer, data, cache_dir)
    model, tokenizer, data, cache_dir = given.model, given.tokenizer, given.data, given.cache_dir
    model_path = model_path if model_path is not None else given.path
    config = config or PruneConfig()
    train_pairs = task.generate(tokenizer, config.n_train_pairs, seed=config.seed, split="train")
    eval_pairs = task.generate(tokenizer, config.n_eval_pairs, seed=config.seed, split="test")
    return prune_pairs(
        model, train_pairs, eval_pairs, config, data=data, task_info=_task_info(task),
        progress=progress, cache_dir=cache_dir, model_path=model_path,
    )


def prune_pairs(
    model: SparseTransformer,
    train_pairs: Sequence[EncodedPair],
    eval_pairs: Sequence[EncodedPair],
    config: PruneConfig | None = None,
    data: Data = None,
    task_info: Mapping[str, Any] | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    model_path: str | Path | None = None,
) -> PruneResult:
    """`prune` on given pairs: masks are trained on `train_pairs`, bisection, calibration and
    the reported losses use `eval_pairs`."""
    config = config or PruneConfig()
    task_info = dict(task_info or {"name": "pairs", "source": "python", "parameters": {}})
    if not train_pairs or not eval_pairs:
        raise InputError("pruning needs at least one train pair and one evaluation pair")
    check_fits(model, list(train_pairs) + list(eval_pairs), task_info["name"])
    was_training = model.training
    model.eval()
    seconds: dict[str, float] = {}
    try:
        torch.manual_seed(config.seed)
        t0 = time.perf_counter()
        train, held_out = make_batch(train_pairs), make_batch(eval_pairs)
        values = ablation_values(
            model, config.ablation, data=data, task_batch=train, cache_dir=cache_dir, progress=progress
        )
        seconds["ablation_values"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        hooks = node_hooks(model, config.locations)
        found = get_method(config.method).score(ScoreInputs(model, train, values, hooks, config, progress))
        seconds["score"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with frozen_weights(model):
            result = _discretize(model, found, held_out, values, config, progress)
        seconds["bisect_and_calibrate"] = time.perf_counter() - t0
    finally:
        model.train(was_training)
    keep, k, curve, calibration, losses, minimality = result
    broken = [name for name, value in losses.items() if not math.isfinite(value)]
    if broken:
        raise InputError(f"the task loss is not finite ({broken[0]} = {losses[broken[0]]}): the model's logits "
                         "overflow; check the checkpoint (`sparsecircuits tasks eval`)")
    scores = {h: t.float() for h, t in found.scores.items()}

    nodes = {h: flags.nonzero().flatten().tolist() for h, flags in keep.items()}
    prompt_tokens = sorted({int(t) for p in eval_pairs for t in (*p.prompt_ids, *p.alt_prompt_ids)})
    answer_tokens = sorted({int(t) for p in eval_pairs for t in (p.target_id, p.alt_id)})
    circuit = Circuit(
        model={"path": str(model_path) if model_path is not None else None, "fingerprint": model_fingerprint(model)},
        task=task_info,
        ablation=config.ablation,
        target_loss=config.target_loss,
        target_met=k is not None,
        nodes=nodes,
        edges=compute_edges(model, nodes),
        residual_links=residual_links(model, nodes),
        embed_links=embed_links(model, nodes, prompt_tokens),
        unembed_links=unembed_links(model, nodes, answer_tokens),
        losses=losses,
        curve=curve,
        calibration={"scale": calibration.scale, "shift": calibration.shift},
        tokens={"prompt": prompt_tokens, "answer": answer_tokens},
        seed=config.seed,
        pruning={**config.to_dict(), "n_masked_nodes": sum(t.numel() for t in scores.values()), "k": k},
        minimality=minimality,
        version=__version__,
        masks=scores,
    )
    return PruneResult(circuit, scores, curve, calibration, found.history, seconds)


def _discretize(
    model: SparseTransformer,
    found: NodeScores,
    batch: TaskBatch,
    values: Mapping[str, torch.Tensor],
    config: PruneConfig,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], int | None, list[dict[str, float]], Calibration, dict[str, float], dict | None]:
    """Rank by score, bisect over k (the method's hint first), optionally end with the
    minimality pass, calibrate, and measure the reference losses on the held-out batch."""
    evaluator = CircuitEvaluator(model, batch, values, config.freeze_norms)
    ranking = rank_nodes(found.scores)
    widths = {h: node_width(model, h) for h in found.scores}
    bar = tqdm(desc="bisecting k", unit="eval", disable=not progress, leave=False)
    logits_by_k: dict[int, torch.Tensor] = {}

    def logits_at(k: int) -> torch.Tensor:
        if k not in logits_by_k:
            logits_by_k[k] = evaluator.logits(top_k_keep(ranking, k, widths))
            bar.update(1)
        return logits_by_k[k]

    def loss_at(k: int) -> float:
        loss = float(task_loss(logits_at(k), batch))
        bar.set_postfix(k=k, loss=f"{loss:.3f}")
        return loss

    k, curve = bisect_k(loss_at, len(ranking), config.target_loss, hint=found.hint)
    # When even every node misses the target, keep the nodes the method proposed (all of
    # them for a method that proposes no set): never an empty circuit by default.
    k_used = (found.hint or len(ranking)) if k is None else k
    pruned = top_k_keep(ranking, k_used, widths)
    minimality = None
    if config.minimal and k is not None:
        pruned, minimality = minimality_pass(evaluator, pruned, ranking, config.target_loss, progress)
    # Every node location appears in the circuit; locations that were not pruned keep all.
    keep = {
        h: pruned.get(h, torch.ones(node_width(model, h), dtype=torch.bool)) for h in all_node_hooks(model)
    }
    circuit_logits = logits_at(k_used) if minimality is None else evaluator.logits(pruned)
    calibration = calibrate(circuit_logits, batch, steps=config.calibrate_steps)
    losses = {
        "full": loss_at(len(ranking)),  # keeping every candidate node runs the model unchanged
        "circuit": float(task_loss(circuit_logits, batch)),
        "circuit_calibrated": calibration.loss_after,
        "ablate_all": loss_at(0),
        "circuit_ablated": evaluator.loss({h: ~flags for h, flags in pruned.items()}),
    }
    bar.close()
    return keep, k, curve, calibration, losses, minimality


def circuit_ablation_values(
    model: SparseTransformer,
    circuit: Any,
    tokenizer: Any,
    task: Any,
    data: Data = None,
    cache_dir: str | Path | None = None,
) -> dict[str, torch.Tensor]:
    """The ablation values a circuit was pruned with, so that validation and the report see
    what pruning saw: for `task_mean`, the means over the pruning's own train pairs
    (`pruning.n_train_pairs` pairs of the train split, `pruning.seed`)."""
    task_batch = None
    if circuit.ablation == "task_mean":
        defaults = PruneConfig()
        n = int(circuit.pruning.get("n_train_pairs", defaults.n_train_pairs))
        seed = int(circuit.pruning.get("seed", defaults.seed))
        task_batch = make_batch(task.generate(tokenizer, n, seed=seed, split="train"))
    return ablation_values(model, circuit.ablation, data=data, task_batch=task_batch, cache_dir=cache_dir)
