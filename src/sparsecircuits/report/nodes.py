"""Per-node details of a report that need the model: ablation values, single-node removal,
activations on task pairs, top-activating snippets and tokenized task examples.

Everything goes through the same pieces as pruning and validation (`circuit_ablation_values`,
the hook interventions of `model.interventions`, frozen norms for
circuits pruned with frozen norm scales) and the tasks package, so the numbers are the
ones pruning and validation see. Single-node removal (`removal_losses`) stacks copies of
the task rows, one per removed node, and runs only what the removal can change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsecircuits.circuits import Circuit
from sparsecircuits.data.shards import TokenShards, sample_batch
from sparsecircuits.data.tokenizer import decode
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.interventions import intervened, last_norm_stats, record_norm_scales
from sparsecircuits.model.locations import hook_location, node_width
from sparsecircuits.prune.pipeline import circuit_ablation_values
from sparsecircuits.tasks import make_batch, p_correct, task_loss
from sparsecircuits.tasks.loss import TaskBatch, check_fits
from sparsecircuits.validate.pipeline import task_from_info

REMOVAL_GROUP = 4  # task rows of similar length per group in single-node removal
REMOVAL_ROWS = 32  # batch rows per forward pass of single-node removal


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


def _last(cache: Mapping[str, torch.Tensor], hook: str, last_pos: torch.Tensor) -> torch.Tensor:
    act = cache[hook].flatten(2)
    return act[torch.arange(act.shape[0]), last_pos]


def _snippets(model: SparseTransformer, nodes: list[dict[str, Any]], windows: torch.Tensor, token: _Tokens,
              n_snippets: int, radius: int) -> None:
    hooks = sorted({n["hook"] for n in nodes})
    _, cache = model.run_with_cache(windows, names_filter=hooks)
    for n in nodes:
        act = cache[n["hook"]].flatten(2)[:, :, n["index"]]  # [N, T]
        peak, where = act.abs().max(dim=1)
        snippets, seen = [], set()
        for w in torch.argsort(peak, descending=True).tolist():
            if float(peak[w]) == 0.0 or len(snippets) == n_snippets:
                break
            t = int(where[w])
            key = tuple(windows[w, max(0, t - 4) : t + 1].tolist())
            if key in seen:  # overlapping windows can show the same text twice
                continue
            seen.add(key)
            lo, hi = max(0, t - radius), min(windows.shape[1], t + radius + 1)
            snippets.append({
                "tokens": [token(i) for i in windows[w, lo:hi].tolist()],
                "acts": [round(float(a), 5) for a in act[w, lo:hi]],
                "focus": t - lo,
                "max": float(act[w, t]),
            })
        n["snippets"] = snippets


def window_tokens(shards: Any, n_windows: int, window: int, seed: int) -> torch.Tensor:
    """A fixed, seeded [n, window] batch of validation tokens from a corpus folder or TokenShards."""
    if isinstance(shards, (str, Path)):
        shards = TokenShards.open(shards)
    val = np.asarray(shards.val)
    window = min(window, len(val) - 2)
    if window < 2:
        raise InputError(f"token shards {shards.path}: the validation split is too short for snippets; rebuild the corpus")
    x, _ = sample_batch(val, n_windows, window, np.random.default_rng(seed))
    return x.long()


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
    lasts = {name: {h: _last(cache, h, last_pos) for h in cache} for name, cache in caches.items() if cache}
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
    n_windows: int,
    window: int,
    n_snippets: int,
    radius: int,
    seed: int,
    max_removal_nodes: int = 600,
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
    hooks = sorted({node["hook"] for node in nodes})
    full_logits, full_cache = model.run_with_cache(batch.tokens, names_filter=hooks)
    try:
        values = circuit_ablation_values(model, circuit, tokenizer, task, data=shards)
    except InputError as exc:
        values = None
        data["notes"].append(f"ablation values, node removal and circuit activations not computed: {exc}")
    p_circ, circ_cache = None, {}
    if values is not None:
        p_circ, circ_cache = _circuit_details(data, circuit, model, batch, values, hooks, max_removal_nodes)
    _node_acts(nodes, {"full": full_cache, "circuit": circ_cache}, batch.last_pos, len(pairs))
    data["examples"] += _examples(pairs[:n_examples], p_correct(full_logits, batch), p_circ, token)
    if shards is not None:
        windows = window_tokens(shards, n_windows, min(window, model.cfg.n_ctx), seed)
        _snippets(model, nodes, windows, token, n_snippets, radius)
