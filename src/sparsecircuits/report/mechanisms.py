"""What a node and a head do on the task prompts, for the report's heatmaps and attention
view, and the loss of the top-k node set over the whole range of k.

Everything here reads activation caches of the report batch (`make_batch`: rows 0..n-1 the
A prompts, n..2n-1 the B prompts, right-padded) from the full model and from the circuit
run, so the numbers are those of the same forward passes as the rest of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sparsecircuits.model import SparseTransformer
from sparsecircuits.prune.bisect import rank_nodes, top_k_keep
from sparsecircuits.prune.evaluate import CircuitEvaluator
from sparsecircuits.tasks import TaskBatch

MAX_HEADS = 32  # attention patterns drawn per report (the circuit's heads first)
ATTENTION_PAIRS = 2  # example pairs whose prompts' patterns are drawn (they dominate a page's size)
CURVE_POINTS = 24  # log-spaced k of the whole-range loss curve


def pattern_hook(layer: int) -> str:
    """The hook holding layer `layer`'s attention pattern [batch, head, query, key]."""
    return f"blocks.{layer}.attn.hook_pattern"


def _round(values: torch.Tensor, digits: int = 4) -> list:
    return np.round(values.float().numpy(), digits).tolist()


def _positions(act: torch.Tensor, last_pos: torch.Tensor, width: int) -> torch.Tensor:
    """The last `width` real positions of each row of act [M, T], aligned at the end."""
    offsets = torch.arange(width) - (width - 1)
    return act[torch.arange(act.shape[0]).unsqueeze(1), last_pos.unsqueeze(1) + offsets]


def add_token_acts(nodes: list[dict[str, Any]], caches: Mapping[str, Mapping[str, torch.Tensor]],
                   batch: TaskBatch, n_examples: int) -> dict[str, Any]:
    """Set each node's `token_acts` (every token of the first `n_examples` pairs' prompts)
    and `class_acts` (the mean over all pairs of each class at each position counted from
    the last token); returns the position labels of `class_acts`."""
    n = len(batch) // 2
    lengths = (batch.last_pos + 1).tolist()
    width = min(lengths)
    runs = {name: cache for name, cache in caches.items() if cache}
    for node in nodes:
        token_acts, class_acts = {}, {}
        for name, cache in runs.items():
            act = cache[node["hook"]].flatten(2)[:, :, node["index"]]
            token_acts[name] = {
                "a": [_round(act[i, : lengths[i]]) for i in range(min(n_examples, n))],
                "b": [_round(act[n + i, : lengths[n + i]]) for i in range(min(n_examples, n))],
            }
            aligned = _positions(act, batch.last_pos, width)
            class_acts[name] = {"a": _round(aligned[:n].mean(0)), "b": _round(aligned[n:].mean(0))}
        node["token_acts"], node["class_acts"] = token_acts, class_acts
    return {"labels": [str(p) for p in range(-(width - 1), 0)] + ["last"], "n_pairs": n}


def circuit_heads(nodes: Sequence[Mapping[str, Any]]) -> dict[tuple[int, int], int]:
    """(layer, head) -> number of the circuit's q/k/v nodes in that head."""
    heads: dict[tuple[int, int], int] = {}
    for node in nodes:
        if node.get("head") is not None:
            key = (node["layer"], node["head"])
            heads[key] = heads.get(key, 0) + 1
    return heads


def attention_view(model: SparseTransformer, nodes: Sequence[Mapping[str, Any]],
                   caches: Mapping[str, Mapping[str, torch.Tensor]], batch: TaskBatch,
                   token: Callable[[int], str]) -> dict[str, Any]:
    """The attention patterns of the first `ATTENTION_PAIRS` pairs' prompts, per head (the
    circuit's heads first), in the full model and in the circuit."""
    n = len(batch) // 2
    rows = [r for i in range(min(ATTENTION_PAIRS, n)) for r in (i, n + i)]
    prompts = [{"label": f"pair {r % n + 1} {'A' if r < n else 'B'}",
                "tokens": [token(t) for t in batch.tokens[r, : int(batch.last_pos[r]) + 1].tolist()]} for r in rows]
    used = circuit_heads(nodes)
    every = [(layer, h) for layer in range(model.cfg.n_layer) for h in range(model.cfg.n_head)]
    order = sorted(every, key=lambda lh: (lh not in used, lh))[:MAX_HEADS]
    heads = []
    for layer, h in order:
        head: dict[str, Any] = {"layer": layer, "head": h, "in_circuit": (layer, h) in used,
                                "n_nodes": used.get((layer, h), 0)}
        for name in ("full", "circuit"):
            cache = caches.get(name)
            if not cache:
                head[name] = None
                continue
            pattern = cache[pattern_hook(layer)][:, h]
            head[name] = [_round(pattern[r, : len(p["tokens"]), : len(p["tokens"])], 3) for r, p in zip(rows, prompts, strict=True)]
        heads.append(head)
    notes = [] if len(every) <= MAX_HEADS else [f"attention: {MAX_HEADS} of {len(every)} heads drawn"]
    return {"prompts": prompts, "heads": heads, "notes": notes}


def whole_curve(model: SparseTransformer, scores: Mapping[str, torch.Tensor], batch: TaskBatch,
                values: Mapping[str, torch.Tensor], freeze_norms: bool, extra: Sequence[int] = ()) -> list[dict[str, float]]:
    """Task loss on `batch` of the top-k nodes by the discovery method's scores, at k
    log-spaced over 1..all scored nodes (and at the `extra` ks)."""
    ranking = rank_nodes(scores)
    widths = {h: t.numel() for h, t in scores.items()}
    ks = {int(round(k)) for k in np.geomspace(1, len(ranking), CURVE_POINTS)} | {k for k in extra if 0 < k <= len(ranking)}
    evaluator = CircuitEvaluator(model, batch, values, freeze_norms)
    return [{"k": k, "loss": evaluator.loss(top_k_keep(ranking, k, widths))} for k in sorted(ks)]
