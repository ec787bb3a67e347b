"""Pretraining snippets of each node at activation quantiles, from a streamed token sample.

The validation split is read in consecutive windows until `n_tokens` tokens are seen (the
whole split when it is shorter); every node's activation at every position is kept (as
float16, [windows, positions]), so that each node gets its top and bottom snippets and
snippets at a few quantiles of its own activation distribution. Ranking by the signed
value, not by magnitude, keeps a node's "top" snippets where it is most positive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sparsecircuits.data.shards import TokenShards
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer

# (label, quantile) of the snippet groups, top first; "top"/"bottom" are the extremes
SNIPPET_GROUPS: tuple[tuple[str, float], ...] = (
    ("top", 1.0),
    ("99th percentile", 0.99),
    ("90th percentile", 0.9),
    ("median", 0.5),
    ("10th percentile", 0.1),
    ("1st percentile", 0.01),
    ("bottom", 0.0),
)
STAT_QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
BATCH_WINDOWS = 64  # windows per forward pass


def stream_windows(shards: Any, n_tokens: int, window: int) -> torch.Tensor:
    """Consecutive [n, window] windows of the validation split covering about `n_tokens`
    tokens (all of the split when it holds fewer)."""
    if isinstance(shards, (str, Path)):
        shards = TokenShards.open(shards)
    if n_tokens < 1:
        raise InputError(f"snippet sample of {n_tokens} tokens; give at least one window's worth")
    val = np.asarray(shards.val)
    window = min(window, len(val))
    if window < 2:
        raise InputError(f"token shards {shards.path}: the validation split is too short for snippets; rebuild the corpus")
    n = max(1, min(len(val) // window, -(-n_tokens // window)))
    return torch.from_numpy(val[: n * window].astype(np.int64).reshape(n, window))


@torch.inference_mode()
def node_activations(model: SparseTransformer, nodes: Sequence[tuple[str, int]], windows: torch.Tensor,
                     progress: bool = False) -> torch.Tensor:
    """Activations [n_nodes, windows, positions] (float16) of (hook, index) nodes."""
    hooks = sorted({h for h, _ in nodes})
    out = torch.empty((len(nodes), *windows.shape), dtype=torch.float16)
    by_hook = {h: [(j, i) for j, (hh, i) in enumerate(nodes) if hh == h] for h in hooks}
    starts = range(0, len(windows), BATCH_WINDOWS)
    for s in tqdm(starts, desc="snippet sample", unit="batch", disable=not progress, leave=False):
        _, cache = model.run_with_cache(windows[s : s + BATCH_WINDOWS], names_filter=hooks)
        for h, pairs in by_hook.items():
            act = cache[h].flatten(2)
            rows = torch.tensor([j for j, _ in pairs])
            cols = torch.tensor([i for _, i in pairs])
            out[rows, s : s + BATCH_WINDOWS] = act[:, :, cols].permute(2, 0, 1).to(torch.float16)
    return out


def _rank_order(rank: int, n: int, label: str) -> range | list[int]:
    """Ranks to try for a group: downwards from the top, upwards from the bottom, and
    outwards from `rank` for a quantile."""
    if label == "top":
        return range(n - 1, -1, -1)
    if label == "bottom":
        return range(n)
    around = [rank]
    for d in range(1, n):
        around += [r for r in (rank + d, rank - d) if 0 <= r < n]
        if len(around) >= 4096:
            break
    return around


def _snippet(windows: torch.Tensor, act: torch.Tensor, w: int, t: int, radius: int,
             token: Callable[[int], str]) -> dict[str, Any]:
    lo, hi = max(0, t - radius), min(windows.shape[1], t + radius + 1)
    return {
        "tokens": [token(i) for i in windows[w, lo:hi].tolist()],
        "acts": [round(float(a), 4) for a in act[w, lo:hi]],
        "focus": t - lo,
        "value": round(float(act[w, t]), 5),
    }


def node_snippets(act: torch.Tensor, windows: torch.Tensor, token: Callable[[int], str],
                  n_snippets: int, radius: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(snippet groups, activation statistics) of one node's activations [windows, positions]."""
    flat = act.flatten().float()
    values, order = torch.sort(flat, stable=True)
    n, width = len(values), act.shape[1]
    groups = []
    for label, q in SNIPPET_GROUPS:
        rank = round(q * (n - 1))
        snippets, used, texts = [], set(), set()
        for r in _rank_order(rank, n, label):
            w, t = divmod(int(order[r]), width)
            key = tuple(windows[w, max(0, t - 4) : t + 1].tolist())
            if w in used or key in texts:  # one snippet per window, and no repeated text
                continue
            used.add(w)
            texts.add(key)
            snippets.append(_snippet(windows, act, w, t, radius, token))
            if len(snippets) == n_snippets:
                break
        groups.append({"label": label, "quantile": q, "value": round(float(values[rank]), 5), "snippets": snippets})
    stats = {
        "n_tokens": n,
        "fraction_nonzero": float((flat != 0).float().mean()),
        "quantiles": [[q, round(float(values[round(q * (n - 1))]), 5)] for q in STAT_QUANTILES],
    }
    return groups, stats


def add_snippets(model: SparseTransformer, nodes: list[dict[str, Any]], shards: Any, token: Callable[[int], str],
                 *, n_tokens: int, window: int, n_snippets: int, radius: int, progress: bool = False) -> None:
    """Set `snippet_groups` and `act_stats` of every node record from a streamed sample."""
    windows = stream_windows(shards, n_tokens, min(window, model.cfg.n_ctx))
    acts = node_activations(model, [(n["hook"], n["index"]) for n in nodes], windows, progress)
    for node, act in zip(nodes, acts, strict=True):
        node["snippet_groups"], node["act_stats"] = node_snippets(act, windows, token, n_snippets, radius)
