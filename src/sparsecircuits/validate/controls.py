"""Controls: what a circuit's small size and low loss must be compared with before trusting it.

Each control returns a JSON-ready dict of numbers; `verdict.py` turns them into flags.
Cheap controls only evaluate (random circuits, activation agreement); the others prune
again with the circuit's own settings (random-init model, nonsense task, seeds, frozen
norm scales, the other ablation), so their cost is that of a pruning run each.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from sparsecircuits.circuits import Circuit, jaccard
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.interventions import intervened, record_norm_scales
from sparsecircuits.model.sparsity import project_to_budget_
from sparsecircuits.prune import PruneConfig, ablation_values, prune
from sparsecircuits.tasks import Task, TaskBatch, task_loss
from sparsecircuits.validate.metrics import (
    KeepMasks,
    full_norm_stats,
    keep_masks_of,
    n_nodes,
    run_final_logits,
)
from sparsecircuits.validate.nonsense import nonsense_task

DEFAULT_RANDOM_DRAWS = 20
DEFAULT_SEEDS = 3
# Correlations below this count a node as disagreeing with the full model.
AGREEMENT_NODE_MIN = 0.5
AGREEMENT_RANDOM_DRAWS = 3  # random same-size circuits for the agreement baseline


def _stats(xs: Sequence[float]) -> dict[str, float]:
    xs = [float(x) for x in xs]
    return {
        "min": min(xs),
        "max": max(xs),
        "mean": statistics.fmean(xs),
        "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0,
    }


# --- cheap controls: evaluation only ------------------------------------------------------


def random_keep(keep: KeepMasks, generator: torch.Generator) -> KeepMasks:
    """Masks with the same number of kept nodes per hook, at uniformly random indices."""
    out = {}
    for hook, mask in keep.items():
        flags = torch.zeros_like(mask)
        flags[torch.randperm(mask.numel(), generator=generator)[: int(mask.sum())]] = True
        out[hook] = flags
    return out


def control_random_circuits(
    model: SparseTransformer,
    circuit_or_keep: Any,
    task_batch: TaskBatch,
    values: Mapping[str, torch.Tensor],
    target_loss: float,
    n_draws: int = DEFAULT_RANDOM_DRAWS,
    seed: int = 0,
    freeze_norms: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Task loss of `n_draws` random circuits with as many nodes per location as the circuit.

    Catches tasks so easy at this size that any circuit solves them: the circuit's own nodes
    should do far better than random ones.
    """
    if n_draws < 1:
        raise InputError(f"n_draws={n_draws}; give at least one random circuit draw")
    keep = keep_masks_of(model, circuit_or_keep)
    stats = full_norm_stats(model, task_batch) if freeze_norms else None
    own = float(task_loss(run_final_logits(model, task_batch, keep, values, stats), task_batch))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(n_draws), desc="random circuits", disable=not progress, leave=False):
        final = run_final_logits(model, task_batch, random_keep(keep, gen), values, stats)
        losses.append(float(task_loss(final, task_batch)))
    return {
        "n_draws": n_draws,
        "n_nodes": n_nodes(keep),
        "circuit_loss": own,
        "losses": losses,
        "loss": _stats(losses),
        "fraction_reaching_target": sum(x <= target_loss for x in losses) / n_draws,
        "fraction_at_or_below_circuit": sum(x <= own for x in losses) / n_draws,
    }


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Correlation of two samples; for a constant sample, 1.0 if both are equal else 0.0."""
    x, y = x.double(), y.double()
    sx, sy = float(x.std(unbiased=False)), float(y.std(unbiased=False))
    tiny = 1e-8 * (1.0 + float(x.abs().max()) + float(y.abs().max()))
    if sx <= tiny or sy <= tiny:
        return 1.0 if sx <= tiny and sy <= tiny and torch.allclose(x, y, atol=tiny * 10) else 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def _node_correlations(
    model: SparseTransformer, keep: KeepMasks, task_batch: TaskBatch, values: Mapping[str, torch.Tensor],
    stats: Any, where: torch.Tensor,
) -> list[dict[str, Any]]:
    """Per kept node, the correlation of its activation with the nodes outside `keep`
    ablated and in the full model, over the [M, T] positions `where`."""
    hooks = [h for h, m in keep.items() if bool(m.any())]
    _, full = model.run_with_cache(task_batch.tokens, names_filter=hooks)
    with intervened(model, keep, values, stats):
        _, pruned = model.run_with_cache(task_batch.tokens, names_filter=hooks)
    per_node = []
    for hook in hooks:
        a, b = full[hook].flatten(2)[where], pruned[hook].flatten(2)[where]
        for i in keep[hook].nonzero().flatten().tolist():
            per_node.append({"node": f"{hook}:{i}", "corr": _pearson(a[:, i], b[:, i])})
    return per_node


def _mean_corr(per_node: list[dict[str, Any]]) -> float:
    return statistics.fmean(p["corr"] for p in per_node)


@torch.no_grad()
def control_activation_agreement(
    model: SparseTransformer,
    circuit_or_keep: Any,
    task_batch: TaskBatch,
    values: Mapping[str, torch.Tensor],
    freeze_norms: bool = False,
    n_random: int = AGREEMENT_RANDOM_DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Per circuit node, the correlation of its activation in the pruned and the full model.

    Samples are every real (non-padding) position of every task prompt. Catches circuits
    whose nodes change meaning once the rest of the model is ablated: the circuit then
    uses a mechanism the full model does not. Beside the verdict's figure (`mean`): the
    same at the last prompt position only (`last_position_mean`, where the answer is read)
    and for `n_random` random circuits of the same size per location (`random_mean`), the
    drift expected of any node set that small; `excess_over_random` = mean - random_mean.
    """
    keep = keep_masks_of(model, circuit_or_keep)
    if not any(bool(m.any()) for m in keep.values()):
        empty = {"n_nodes": 0, "n_samples": 0, "mean": None, "median": None, "min": None}
        return {**empty, "fraction_below": None, "node_min": AGREEMENT_NODE_MIN, "per_node": []}
    # every position is compared, so the norm stats come from a full forward pass
    stats = record_norm_scales(model, lambda: model(task_batch.tokens)) if freeze_norms else None
    positions = torch.arange(task_batch.tokens.shape[1]).unsqueeze(0)
    real = positions <= task_batch.last_pos.unsqueeze(1)
    per_node = _node_correlations(model, keep, task_batch, values, stats, real)
    last = _node_correlations(model, keep, task_batch, values, stats, positions == task_batch.last_pos.unsqueeze(1))
    gen = torch.Generator().manual_seed(seed)
    random = [_mean_corr(_node_correlations(model, random_keep(keep, gen), task_batch, values, stats, real))
              for _ in range(n_random)]
    corrs = [p["corr"] for p in per_node]
    mean = statistics.fmean(corrs)
    random_mean = statistics.fmean(random) if random else None
    return {
        "n_nodes": len(per_node),
        "n_samples": int(real.sum()),
        "mean": mean,
        "median": statistics.median(corrs),
        "min": min(corrs),
        "fraction_below": sum(c < AGREEMENT_NODE_MIN for c in corrs) / len(corrs),
        "node_min": AGREEMENT_NODE_MIN,
        "last_position_mean": _mean_corr(last),
        "random_mean": random_mean,
        "excess_over_random": None if random_mean is None else mean - random_mean,
        "per_node": per_node,
    }


# --- controls that prune again ------------------------------------------------------------


def _node_set(model: SparseTransformer, circuit: Circuit) -> set[tuple[str, int]]:
    keep = keep_masks_of(model, circuit)
    return {(h, int(i)) for h, m in keep.items() for i in m.nonzero().flatten().tolist()}


def _summary(model: SparseTransformer, circuit: Circuit, reference_nodes: int) -> dict[str, Any]:
    """Size and losses of a control circuit, and its size relative to the circuit's."""
    size = len(_node_set(model, circuit))
    return {
        "reached_target": bool(circuit.target_met and circuit.losses.circuit <= circuit.target_loss),
        "n_nodes": size,
        "n_edges": circuit.n_edges,
        "size_ratio": size / reference_nodes if reference_nodes else None,
        "losses": circuit.losses.to_dict(),
    }


def _prune(
    model: SparseTransformer,
    task: Task,
    tokenizer: Tokenizer,
    config: PruneConfig,
    data: Any,
    cache_dir: str | Path | None,
    progress: bool,
) -> Circuit:
    result = prune(model, task, tokenizer, config, data=data, cache_dir=cache_dir, progress=progress)
    return result.circuit


def random_init_model(model: SparseTransformer, seed: int = 0, match_sparsity: bool = True) -> SparseTransformer:
    """A freshly initialized model of the same config (the paper's init, seeded).

    With `match_sparsity`, every projected tensor keeps as many nonzeros (its largest in
    magnitude) as the same tensor of `model`, so circuit sizes in edges are comparable.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = SparseTransformer(model.cfg)
    if match_sparsity:
        trained = dict(model.named_parameters())
        kinds = fresh.parameter_kinds()
        for name, p in fresh.named_parameters():
            if kinds[name] != "exempt":
                project_to_budget_(p.data, int(torch.count_nonzero(trained[name])))
    return fresh.eval()


def control_random_init(
    model: SparseTransformer,
    task: Task,
    tokenizer: Tokenizer,
    config: PruneConfig,
    reference_nodes: int,
    data: Any = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Prune a randomly initialized model of the same config with the same settings.

    Catches pruning that builds a solution out of random weights: if a random model also
    yields a circuit reaching the target at a comparable size, the circuit's size says
    little about what the trained model learned.
    """
    fresh = random_init_model(model, seed=seed)
    circuit = _prune(fresh, task, tokenizer, config, data, cache_dir, progress)
    out = _summary(fresh, circuit, reference_nodes)
    out["init_seed"] = seed
    return out


def control_nonsense_task(
    model: SparseTransformer,
    task: Task,
    tokenizer: Tokenizer,
    config: PruneConfig,
    reference_nodes: int,
    data: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Prune the same model on the task's prompts with answers assigned by a hash.

    Catches pruning that fits arbitrary labels: if a nonsense labelling of the same
    prompts also reaches the target at a comparable size, low loss is not evidence of a
    mechanism.
    """
    nonsense = nonsense_task(task)
    circuit = _prune(model, nonsense, tokenizer, config, data, cache_dir, progress)
    out = _summary(model, circuit, reference_nodes)
    out["task"] = nonsense.name
    return out


def control_seed_variance(
    model: SparseTransformer,
    task: Task,
    tokenizer: Tokenizer,
    config: PruneConfig,
    circuit: Circuit,
    n_seeds: int = DEFAULT_SEEDS,
    data: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Prune with `n_seeds - 1` further seeds; compare node sets (Jaccard) with the circuit's.

    Catches circuits that are one of many equally good node sets: conclusions about
    "the" mechanism need the seeds to agree.
    """
    if n_seeds < 2:
        raise InputError(f"n_seeds={n_seeds}; seed variance needs at least 2 seeds")
    circuits = [circuit]
    seeds = [config.seed + i for i in range(n_seeds)]
    for s in seeds[1:]:
        circuits.append(_prune(model, task, tokenizer, replace(config, seed=s), data, cache_dir, progress))
    sets = [_node_set(model, c) for c in circuits]
    matrix = [[jaccard(a, b) for b in sets] for a in sets]
    off = [matrix[i][j] for i in range(n_seeds) for j in range(n_seeds) if i != j]
    losses = [c.losses.circuit for c in circuits]  # None for a hand-made circuit
    return {
        "seeds": seeds,
        "n_nodes": [len(s) for s in sets],
        "n_edges": [c.n_edges for c in circuits],
        "losses": losses,
        "reached_target": [bool(c.target_met) for c in circuits],
        "jaccard": matrix,
        "mean_jaccard": statistics.fmean(off),
        "min_jaccard": min(off),
        "size": _stats([len(s) for s in sets]),
        "loss": _stats([x for x in losses if x is not None]),
    }


def control_frozen_norms(
    model: SparseTransformer,
    task: Task,
    tokenizer: Tokenizer,
    config: PruneConfig,
    circuit: Circuit,
    task_batch: TaskBatch,
    values: Mapping[str, torch.Tensor],
    data: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate the circuit with the other norm mode, and prune again with it.

    Norm scales normally recompute from the thinned residual, which can rescale a
    circuit's few channels back up; pinned to the full model's scales they cannot. A
    circuit that only works with free norms relies on that rescaling.
    """
    other = not config.freeze_norms
    keep = keep_masks_of(model, circuit)
    stats = full_norm_stats(model, task_batch) if other else None
    final = run_final_logits(model, task_batch, keep, values, stats)
    repruned = _prune(model, task, tokenizer, replace(config, freeze_norms=other), data, cache_dir, progress)
    out = _summary(model, repruned, n_nodes(keep))
    out["freeze_norms"] = other
    out["circuit_loss_other_mode"] = float(task_loss(final, task_batch))
    return out


def control_zero_vs_mean(
    model: SparseTransformer,
    task: Task,
    tokenizer: Tokenizer,
    config: PruneConfig,
    circuit: Circuit,
    task_batch: TaskBatch,
    data: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate the circuit under the other ablation (zero if it used mean, else mean) and
    prune again with it.

    Zero ablation tends to give smaller circuits than mean ablation (the critique): the
    comparison shows how much of a circuit's size is the ablation's choice.
    """
    other = "mean" if config.ablation == "zero" else "zero"
    values = ablation_values(model, other, data=data, task_batch=task_batch, cache_dir=cache_dir)
    keep = keep_masks_of(model, circuit)
    stats = full_norm_stats(model, task_batch) if config.freeze_norms else None
    final = run_final_logits(model, task_batch, keep, values, stats)
    repruned = _prune(model, task, tokenizer, replace(config, ablation=other), data, cache_dir, progress)
    out = _summary(model, repruned, n_nodes(keep))
    out["ablation"] = other
    out["circuit_loss_other_ablation"] = float(task_loss(final, task_batch))
    return out


# --- the registry -------------------------------------------------------------------------


@dataclass
class ControlContext:
    """Everything a control may need, gathered once by `validate`."""

    model: SparseTransformer
    tokenizer: Tokenizer
    circuit: Circuit
    task: Task
    task_batch: TaskBatch
    values: Mapping[str, torch.Tensor]
    config: PruneConfig
    data: Any = None
    cache_dir: str | Path | None = None
    n_random: int = DEFAULT_RANDOM_DRAWS
    n_seeds: int = DEFAULT_SEEDS
    seed: int = 0
    progress: bool = False

    @property
    def n_nodes(self) -> int:
        """Number of circuit nodes at the pruned locations."""
        return n_nodes(keep_masks_of(self.model, self.circuit))

    def prune_kwargs(self) -> dict[str, Any]:
        """Arguments shared by every control that prunes again."""
        return {"data": self.data, "cache_dir": self.cache_dir, "progress": self.progress}


@dataclass(frozen=True)
class ControlSpec:
    """A registered control: its name on the command line, cost, and what it catches."""

    name: str
    run: Callable[[ControlContext], dict[str, Any]]
    prunes: int  # pruning runs it needs (0 = evaluation only; -1 = n_seeds - 1)
    catches: str


def _ctx_args(c: ControlContext) -> tuple:
    return c.model, c.task, c.tokenizer, c.config


CONTROLS: dict[str, ControlSpec] = {
    spec.name: spec
    for spec in (
        ControlSpec(
            "random_circuits",
            lambda c: control_random_circuits(
                c.model, c.circuit, c.task_batch, c.values, c.circuit.target_loss,
                n_draws=c.n_random, seed=c.seed, freeze_norms=c.config.freeze_norms,
                progress=c.progress,
            ),
            0,
            "tasks that any circuit of this size solves",
        ),
        ControlSpec(
            "random_init",
            lambda c: control_random_init(*_ctx_args(c), c.n_nodes, seed=c.seed, **c.prune_kwargs()),
            1,
            "pruning that builds a solution out of random weights",
        ),
        ControlSpec(
            "nonsense_task",
            lambda c: control_nonsense_task(*_ctx_args(c), c.n_nodes, **c.prune_kwargs()),
            1,
            "pruning that fits arbitrary labels of the same prompts",
        ),
        ControlSpec(
            "seeds",
            lambda c: control_seed_variance(*_ctx_args(c), c.circuit, n_seeds=c.n_seeds, **c.prune_kwargs()),
            -1,
            "circuits that are one of many equally good node sets",
        ),
        ControlSpec(
            "frozen_norms",
            lambda c: control_frozen_norms(
                *_ctx_args(c), c.circuit, c.task_batch, c.values, **c.prune_kwargs()
            ),
            1,
            "circuits that rely on norms rescaling a thinned residual",
        ),
        ControlSpec(
            "zero_ablation",
            lambda c: control_zero_vs_mean(*_ctx_args(c), c.circuit, c.task_batch, **c.prune_kwargs()),
            1,
            "circuit size that is an artifact of the ablation choice",
        ),
        ControlSpec(
            "activation_agreement",
            lambda c: control_activation_agreement(
                c.model, c.circuit, c.task_batch, c.values, freeze_norms=c.config.freeze_norms, seed=c.seed
            ),
            0,
            "nodes that change meaning once the rest of the model is ablated",
        ),
    )
}
CORE_CONTROLS: tuple[str, ...] = ("random_circuits", "nonsense_task", "random_init", "activation_agreement")


def parse_controls(spec: str | Sequence[str] | None) -> list[str]:
    """Control names from 'all', 'core', 'none' or a comma-separated list (order kept)."""
    if spec is None:
        return list(CORE_CONTROLS)
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    names: list[str] = []
    for item in items:
        if item == "all":
            expanded = list(CONTROLS)
        elif item == "core":
            expanded = list(CORE_CONTROLS)
        elif item == "none":
            expanded = []
        elif item in CONTROLS:
            expanded = [item]
        else:
            raise InputError(
                f"--controls: unknown control {item!r}; use all, core, none or a comma-separated "
                f"list of {', '.join(CONTROLS)}"
            )
        names += [n for n in expanded if n not in names]
    return names
