"""`prune`: a model and a task in, a Circuit out (docs/method.md section 4, end to end).

1. generate train pairs (to optimize the masks) and held-out test pairs (to bisect and
   report on); 2. compute the ablation values; 3. optimize the node masks; 4. rank nodes
   by tau and bisect for the smallest top-k set whose loss is at most the target;
5. calibrate the logits; 6. measure the reference losses, count edges, build the Circuit.
"""

from __future__ import annotations

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
from sparsecircuits.model.interventions import intervened, last_norm_stats
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.prune.ablation import Data, ablation_values
from sparsecircuits.prune.bisect import bisect_k, rank_nodes, top_k_keep
from sparsecircuits.prune.calibrate import Calibration, calibrate
from sparsecircuits.prune.optimize import (
    PruneConfig,
    frozen_weights,
    length_chunks,
    optimize_masks,
    select_pairs,
)
from sparsecircuits.tasks import EncodedPair, Task, TaskBatch, make_batch, task_loss
from sparsecircuits.tasks.loss import check_fits

EVAL_CHUNKS = 8  # length groups of the held-out batch at most


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
        masks, history = optimize_masks(model, train, values, config, progress=progress)
        seconds["optimize"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with frozen_weights(model):
            result = _discretize(model, masks.tau_dict(), held_out, values, config, progress)
        seconds["bisect_and_calibrate"] = time.perf_counter() - t0
    finally:
        model.train(was_training)
    keep, k, curve, calibration, losses = result

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
        pruning={**config.to_dict(), "n_masked_nodes": masks.n_nodes(), "k": k},
        version=__version__,
        masks=masks.tau_dict(),
    )
    return PruneResult(circuit, masks.tau_dict(), curve, calibration, history, seconds)


def _discretize(
    model: SparseTransformer,
    tau: Mapping[str, torch.Tensor],
    batch: TaskBatch,
    values: Mapping[str, torch.Tensor],
    config: PruneConfig,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], int | None, list[dict[str, float]], Calibration, dict[str, float]]:
    """Bisect over k, calibrate, and measure the reference losses on the held-out batch."""
    evaluator = CircuitEvaluator(model, batch, values, config.freeze_norms)
    ranking = rank_nodes(tau)
    widths = {h: node_width(model, h) for h in tau}
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

    n_kept = sum(int((t > 0).sum()) for t in tau.values())
    k, curve = bisect_k(loss_at, len(ranking), config.target_loss, hint=n_kept)
    # When even every node misses the target, keep the nodes the masks kept.
    k_used = n_kept if k is None else k
    pruned = top_k_keep(ranking, k_used, widths)
    # Every node location appears in the circuit; locations that were not pruned keep all.
    keep = {
        h: pruned.get(h, torch.ones(node_width(model, h), dtype=torch.bool)) for h in all_node_hooks(model)
    }
    circuit_logits = logits_at(k_used)
    calibration = calibrate(circuit_logits, batch, steps=config.calibrate_steps)
    losses = {
        "full": loss_at(len(ranking)),  # keeping every masked node runs the model unchanged
        "circuit": float(task_loss(circuit_logits, batch)),
        "circuit_calibrated": calibration.loss_after,
        "ablate_all": loss_at(0),
        "circuit_ablated": evaluator.loss({h: ~flags for h, flags in pruned.items()}),
    }
    bar.close()
    return keep, k, curve, calibration, losses


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
