"""Per-node details of a report that need the model: ablation values, single-node removal,
activations on task pairs (last token, every token, class means), attention patterns,
the whole-range loss curve, pretraining snippets at activation quantiles and tokenized
task examples.

Everything goes through the same pieces as pruning and validation (`circuit_ablation_values`,
the hook interventions of `model.interventions`, frozen norms for
circuits pruned with frozen norm scales) and the tasks package, so the numbers are the
ones pruning and validation see; single-node removal is `prune.removal.removal_losses`,
the one the minimality pass records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sparsecircuits.circuits import Circuit
from sparsecircuits.data.tokenizer import decode
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.interventions import intervened, record_norm_scales
from sparsecircuits.prune.pipeline import circuit_ablation_values
from sparsecircuits.prune.removal import removal_losses
from sparsecircuits.report.mechanisms import (
    add_token_acts,
    attention_view,
    pattern_hook,
    whole_curve,
)
from sparsecircuits.report.snippets import add_snippets
from sparsecircuits.tasks import make_batch, p_correct, task_loss
from sparsecircuits.tasks.loss import TaskBatch, check_fits
from sparsecircuits.validate.pipeline import task_from_info


class _Tokens:
    """Token id -> display string, decoded once per id."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self.cache:
            self.cache[token_id] = decode(self.tokenizer, [token_id])
        return self.cache[token_id]


def _last(cache: Mapping[str, torch.Tensor], hook: str, last_pos: torch.Tensor) -> torch.Tensor:
    act = cache[hook].flatten(2)
    return act[torch.arange(act.shape[0]), last_pos]


def _circuit_details(
    data: dict[str, Any], circuit: Circuit, model: SparseTransformer, batch: TaskBatch,
    values: Mapping[str, torch.Tensor], hooks: list[str], max_removal_nodes: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The circuit's run on the report pairs (as in pruning and validation: norm scales
    frozen to the full model's when pruned so): per-node ablation values and single-node
    removal losses go into `data`; returns p(correct) per row and the circuit's cache."""
    nodes = data["nodes"]
    keep = circuit.keep_masks(model)
    freeze = bool(circuit.pruning.get("freeze_norms"))
    stats = record_norm_scales(model, lambda: model(batch.tokens)) if freeze else None
    with intervened(model, keep, values, stats):
        circ_logits, circ_cache = model.run_with_cache(batch.tokens, names_filter=hooks)
    base = float(task_loss(circ_logits, batch))
    data["circuit"]["losses"].setdefault("circuit_report_pairs", base)
    if len(nodes) > max_removal_nodes:
        data["notes"].append(f"single-node removal not computed: {len(nodes)} nodes > {max_removal_nodes}")
    else:
        losses = removal_losses(model, keep, values, batch, [(n["hook"], n["index"]) for n in nodes], freeze)
        for node, loss in zip(nodes, losses, strict=True):
            node["delta_loss"] = loss - base
    for node in nodes:
        node["ablation_value"] = float(values[node["hook"]][node["index"]])
    return p_correct(circ_logits, batch), circ_cache


def _node_acts(nodes: list[dict[str, Any]], caches: Mapping[str, Mapping[str, torch.Tensor]],
               last_pos: torch.Tensor, n: int) -> None:
    """Each node's activation at the last prompt position of the A and B prompts, per run."""
    hooks = {node["hook"] for node in nodes}
    lasts = {name: {h: _last(cache, h, last_pos) for h in hooks} for name, cache in caches.items() if cache}
    for node in nodes:
        acts = {}
        for name, last in lasts.items():
            col = last[node["hook"]][:, node["index"]]
            acts[name] = {"a": [round(float(v), 5) for v in col[:n]], "b": [round(float(v), 5) for v in col[n:]]}
        node["acts"] = acts


def _examples(pairs: Sequence[Any], p_full: torch.Tensor, p_circ: torch.Tensor | None, token: _Tokens) -> list[dict[str, Any]]:
    """The tokenized example pairs with p(correct) in the full model (and the circuit)."""
    n, out = len(p_full) // 2, []
    for i, pair in enumerate(pairs):
        probs_a = {"full": float(p_full[i])}
        probs_b = {"full": float(p_full[n + i])}
        if p_circ is not None:
            probs_a["circuit"], probs_b["circuit"] = float(p_circ[i]), float(p_circ[n + i])
        out.append({
            "a_tokens": [token(t) for t in pair.prompt_ids], "target": token(pair.target_id), "a_probs": probs_a,
            "b_tokens": [token(t) for t in pair.alt_prompt_ids], "alt": token(pair.alt_id), "b_probs": probs_b,
        })
    return out


@torch.inference_mode()
def add_model_details(
    data: dict[str, Any],
    circuit: Circuit,
    model: SparseTransformer,
    tokenizer: Any,
    shards: Any | None,
    *,
    n_pairs: int,
    n_examples: int,
    snippet_tokens: int,
    window: int,
    n_snippets: int,
    radius: int,
    seed: int,
    max_removal_nodes: int = 600,
    progress: bool = False,
) -> None:
    """Fill in `data` (from `build_report_data`) with everything that needs the model.

    Single-node removal costs about one forward pass of the task batch per node; it is
    skipped (with a note) for circuits of more than `max_removal_nodes` nodes."""
    model.eval()
    nodes = data["nodes"]
    token = _Tokens(tokenizer)
    task = task_from_info(data["task"])
    if not data["task"].get("description") and task.description:
        data["task"]["description"] = task.description
    pairs = task.generate(tokenizer, n_pairs, seed=seed, split="test")
    check_fits(model, pairs, task.name)
    batch = make_batch(pairs)
    hooks = sorted({node["hook"] for node in nodes} | {pattern_hook(layer) for layer in range(model.cfg.n_layer)})
    full_logits, full_cache = model.run_with_cache(batch.tokens, names_filter=hooks)
    try:
        values = circuit_ablation_values(model, circuit, tokenizer, task, data=shards)
    except InputError as exc:
        values = None
        data["notes"].append(f"ablation values, node removal and circuit activations not computed: {exc}")
    p_circ, circ_cache = None, {}
    if values is not None:
        p_circ, circ_cache = _circuit_details(data, circuit, model, batch, values, hooks, max_removal_nodes)
        if circuit.masks:
            data["curve_full"] = whole_curve(model, circuit.masks, batch, values,
                                             bool(circuit.pruning.get("freeze_norms")), [circuit.n_nodes])
            data["curve_full_pairs"] = f"{len(pairs)} test pairs (the report's)"
            data["circuit"]["n_total_nodes"] = sum(t.numel() for t in circuit.masks.values())
    caches = {"full": full_cache, "circuit": circ_cache}
    _node_acts(nodes, caches, batch.last_pos, len(pairs))
    data["class_positions"] = add_token_acts(nodes, caches, batch, n_examples)
    data["attention"] = attention_view(model, nodes, caches, batch, token)
    data["notes"] += data["attention"].pop("notes")
    data["examples"] += _examples(pairs[:n_examples], p_correct(full_logits, batch), p_circ, token)
    if shards is not None:
        add_snippets(model, nodes, shards, token, n_tokens=snippet_tokens, window=window, n_snippets=n_snippets,
                     radius=radius, progress=progress)
