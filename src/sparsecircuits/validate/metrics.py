"""Circuit metrics: sufficiency, necessity, faithfulness, accuracy and KL on task prompts.

Every metric is one last-position pass (`SparseTransformer.last_logits`) of the model
under `sparsecircuits.model.interventions.ablate`, which replaces the activations of the nodes whose keep mask is False by their ablation values:

- `full`: no ablation; `circuit`: every node outside the circuit ablated (sufficiency);
- `circuit_ablated`: only the circuit's nodes ablated (necessity);
- `ablate_all`: every node of every pruned location ablated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS, SparseTransformer
from sparsecircuits.model.interventions import NormStats, intervened, last_norm_stats
from sparsecircuits.model.locations import node_hooks, node_width
from sparsecircuits.tasks import TaskBatch, task_accuracy, task_loss

CHANCE_LOSS = math.log(2.0)

KeepMasks = dict[str, torch.Tensor]


def pruned_hooks(model: SparseTransformer, circuit: Any) -> list[str]:
    """Hooks of the locations a circuit was pruned at (`pruning.locations`; all when absent)."""
    locations = (getattr(circuit, "pruning", None) or {}).get("locations") or LOCATIONS
    return node_hooks(model, locations)


def keep_masks_of(model: SparseTransformer, circuit_or_keep: Any) -> KeepMasks:
    """Keep masks (hook -> bool[width]) of a Circuit's pruned locations, or of a dict of masks.

    A Circuit lists every node of the locations it did not prune; those locations are left
    out here, so that necessity and ablate-all only ablate nodes pruning could choose.
    """
    if hasattr(circuit_or_keep, "keep_masks"):
        masks = circuit_or_keep.keep_masks(model)
        return {h: masks[h] for h in pruned_hooks(model, circuit_or_keep)}
    if not isinstance(circuit_or_keep, Mapping):
        raise InputError(
            f"circuit_or_keep is a {type(circuit_or_keep).__name__}; give a Circuit or a dict "
            "hook name -> bool tensor of the location's width"
        )
    masks = {}
    for hook, mask in circuit_or_keep.items():
        name = model.resolve_hook_name(hook)
        mask = torch.as_tensor(mask, dtype=torch.bool)
        width = node_width(model, name)
        if mask.shape != (width,):
            raise InputError(
                f"keep mask for {hook} has shape {tuple(mask.shape)}; the location has {width} "
                "nodes, give a bool tensor of that length"
            )
        masks[name] = mask
    return masks


def invert(keep: KeepMasks) -> KeepMasks:
    """Masks keeping everything except the given nodes (for necessity)."""
    return {h: ~m for h, m in keep.items()}


def none_kept(keep: KeepMasks) -> KeepMasks:
    """Masks ablating every node of the same locations."""
    return {h: torch.zeros_like(m) for h, m in keep.items()}


def n_nodes(keep: KeepMasks) -> int:
    """Number of kept nodes over all locations."""
    return int(sum(int(m.sum()) for m in keep.values()))


def full_norm_stats(model: SparseTransformer, batch: TaskBatch) -> NormStats:
    """Every norm's center and scale in the full model on the batch's prompts (to freeze them)."""
    return last_norm_stats(model, batch.tokens, batch.last_pos)


@torch.no_grad()
def run_final_logits(
    model: SparseTransformer,
    batch: TaskBatch,
    keep: KeepMasks | None,
    values: Mapping[str, torch.Tensor],
    norm_stats: NormStats | None = None,
) -> torch.Tensor:
    """Final-position logits [M, V] of the task prompts, with nodes outside `keep` ablated."""
    with intervened(model, keep, values, norm_stats):
        return model.last_logits(batch.tokens, batch.last_pos)


def _loss(final: torch.Tensor, batch: TaskBatch) -> float:
    return float(task_loss(final, batch))


def kl_full_to(full_final: torch.Tensor, other_final: torch.Tensor) -> float:
    """Mean over prompts of KL(p_full || p_other) of the next-token distributions (nats)."""
    logp = F.log_softmax(full_final.double(), dim=-1)
    logq = F.log_softmax(other_final.double(), dim=-1)
    return float((logp.exp() * (logp - logq)).sum(-1).mean())


def faithfulness(full: float, circuit: float, ablate_all: float) -> float | None:
    """(L_ablate_all - L_circuit) / (L_ablate_all - L_full); None when the denominator is ~0."""
    denom = ablate_all - full
    if abs(denom) < 1e-6:
        return None
    return (ablate_all - circuit) / denom


def necessity(full: float, circuit_ablated: float) -> float | None:
    """How far ablating the circuit moves the loss from the full model's toward chance (ln 2).

    (L_circuit_ablated - L_full) / (ln 2 - L_full): 0 = no effect, 1 = chance; None when
    the full model itself is at chance.
    """
    denom = CHANCE_LOSS - full
    if denom < 1e-6:
        return None
    return (circuit_ablated - full) / denom


@dataclass(frozen=True)
class Metrics:
    """Task losses (per-prompt two-sided binary CE, nats), accuracies and KL of one circuit."""

    full: float
    circuit: float
    circuit_ablated: float
    ablate_all: float
    faithfulness: float | None
    necessity: float | None
    accuracy_full: float
    accuracy_circuit: float
    kl: float
    n_nodes: int
    n_prompts: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def compute_metrics(
    model: SparseTransformer,
    circuit_or_keep: Any,
    task_batch: TaskBatch,
    values: Mapping[str, torch.Tensor],
    freeze_norms: bool = False,
) -> Metrics:
    """Full, circuit, circuit-ablated and all-ablated losses, faithfulness, accuracy and KL.

    `circuit_or_keep` is a Circuit or a dict hook -> bool[width] (True = in the circuit);
    locations absent from it are never ablated. `values` are the ablation values per hook.
    With `freeze_norms` (circuits pruned that way), every ablated run uses the full model's
    norm scales on the same prompts.
    """
    keep = keep_masks_of(model, circuit_or_keep)
    stats = full_norm_stats(model, task_batch) if freeze_norms else None
    full = run_final_logits(model, task_batch, None, values)
    circ = run_final_logits(model, task_batch, keep, values, stats)
    necc = run_final_logits(model, task_batch, invert(keep), values, stats)
    none = run_final_logits(model, task_batch, none_kept(keep), values, stats)
    l_full, l_circ = _loss(full, task_batch), _loss(circ, task_batch)
    l_necc, l_none = _loss(necc, task_batch), _loss(none, task_batch)
    return Metrics(
        full=l_full,
        circuit=l_circ,
        circuit_ablated=l_necc,
        ablate_all=l_none,
        faithfulness=faithfulness(l_full, l_circ, l_none),
        necessity=necessity(l_full, l_necc),
        accuracy_full=task_accuracy(full, task_batch),
        accuracy_circuit=task_accuracy(circ, task_batch),
        kl=kl_full_to(full, circ),
        n_nodes=n_nodes(keep),
        n_prompts=int(task_batch.tokens.shape[0]),
    )
