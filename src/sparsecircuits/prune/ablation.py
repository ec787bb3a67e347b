"""Ablation values: what a pruned-away node is replaced by.

- `mean`: the node's mean activation over the pretraining distribution, from a fixed,
  seeded set of windows of the corpus's validation tokens. Computed once per (model,
  corpus) and cached as safetensors beside the checkpoint, in
  `ablation_means-<model fingerprint>-<corpus key>.safetensors` (or in the user cache
  folder when the checkpoint folder is not writable). The corpus key covers the corpus
  hash (documents, tokenizer, shards) and the validation split's record, so a corpus
  tokenized otherwise, or a sample of its validation split (`corpus-val/`), has its own.
- `task_mean`: the mean over the task prompts (every real token, padding excluded).
- `zero`: zero.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm.auto import tqdm

from sparsecircuits.atomic import atomic_file
from sparsecircuits.checkpoint import model_fingerprint
from sparsecircuits.data.shards import TokenShards, canonical_hash, open_for_model, sample_batch
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.tensorio import save_tensors

ABLATIONS = ("mean", "zero", "task_mean")
MEAN_WINDOWS = 64  # validation windows of n_ctx tokens averaged for `mean`
MEAN_SEED = 0
MEAN_BATCH = 16  # windows per forward pass while averaging

Data = TokenShards | str | Path | np.ndarray | torch.Tensor | None


def user_cache_dir() -> Path:
    """The per-user cache folder ($XDG_CACHE_HOME/sparsecircuits or ~/.cache/sparsecircuits)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sparsecircuits"


def _tokens_and_hash(data: Data, model: SparseTransformer) -> tuple[np.ndarray | torch.Tensor, str]:
    """The validation tokens to average over, and a key naming them (see the module docstring)."""
    if isinstance(data, (str, Path, TokenShards)):
        data = open_for_model(data, model.cfg.vocab_size)
        if len(data.val) == 0:
            raise InputError(f"token shards {data.path}: the validation split is empty; rebuild the corpus")
        return data.val, canonical_hash({"corpus": data.manifest_hash, "val": data.info["val"]})[:16]
    if isinstance(data, (np.ndarray, torch.Tensor)):
        arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        digest = hashlib.sha256(str(arr.shape).encode() + np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        return data, "tokens" + digest.hexdigest()[:10]
    raise InputError(f"data must be a token-shard folder, TokenShards or a token array, got {type(data).__name__}")


def _windows(model: SparseTransformer, tokens: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A fixed, seeded [N, n_ctx] batch of windows (or the given 2-D token batch)."""
    if isinstance(tokens, torch.Tensor) and tokens.dim() == 2:
        return tokens.long()
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        return torch.from_numpy(tokens.astype(np.int64))
    flat = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens
    n_ctx = min(model.cfg.n_ctx, max(1, len(flat) - 2))
    x, _ = sample_batch(flat, MEAN_WINDOWS, n_ctx, np.random.default_rng(MEAN_SEED))
    return x


@torch.no_grad()
def _mean_activations(
    model: SparseTransformer,
    tokens: torch.Tensor,
    weights: torch.Tensor | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Mean of every node activation over batch and position, weighted by a [N, T] 0/1 mask."""
    if int(tokens.max()) >= model.cfg.vocab_size:
        raise InputError(
            f"token id {int(tokens.max())} is outside the model's vocabulary "
            f"({model.cfg.vocab_size}); the data was tokenized with another tokenizer"
        )
    hooks = all_node_hooks(model)
    sums: dict[str, torch.Tensor] = {h: torch.zeros(node_width(model, h), dtype=torch.float64) for h in hooks}
    if weights is None:
        weights = torch.ones(tokens.shape, dtype=torch.float64)
    count = float(weights.sum())
    starts = range(0, tokens.shape[0], MEAN_BATCH)
    for s in tqdm(starts, desc="ablation means", disable=not progress, leave=False):
        w = weights[s : s + MEAN_BATCH].to(torch.float64)
        _, cache = model.run_with_cache(tokens[s : s + MEAN_BATCH], names_filter=hooks)
        for h in hooks:
            act = cache[h].flatten(2).to(torch.float64)
            sums[h] += torch.einsum("bt,btw->w", w, act)
    return {h: (s / count).to(torch.float32) for h, s in sums.items()}


def _cache_dirs(cache_dir: str | Path | None) -> list[Path]:
    dirs = [Path(cache_dir)] if cache_dir is not None else []
    return dirs + [user_cache_dir()]


def _load_cached(path: Path, model: SparseTransformer) -> dict[str, torch.Tensor] | None:
    try:
        values = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None
    hooks = all_node_hooks(model)
    if sorted(values) != sorted(hooks) or any(values[h].shape != (node_width(model, h),) for h in hooks):
        return None
    return values


def _save_cached(values: Mapping[str, torch.Tensor], dirs: list[Path], name: str) -> Path | None:
    """Write the cache file atomically to the first writable folder; None if none is."""
    for d in dirs:
        try:
            with atomic_file(d / name) as tmp:
                save_tensors({k: v.contiguous() for k, v in values.items()}, tmp)
            return d / name
        except OSError:
            continue
    return None


def mean_cache_path(
    model: SparseTransformer, corpus_hash: str, cache_dir: str | Path | None
) -> Path:
    """Where the mean ablation values of (model, corpus) are cached (first candidate folder)."""
    return _cache_dirs(cache_dir)[0] / f"ablation_means-{model_fingerprint(model)}-{corpus_hash}.safetensors"


def ablation_values(
    model: SparseTransformer,
    kind: str,
    data: Data = None,
    task_batch: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Ablation value of every node: hook name -> float tensor of the location's width.

    `kind` is `mean` (needs `data`: a token-shard folder, `TokenShards`, or a token array;
    cached per model fingerprint and corpus in `cache_dir`, falling back to the user cache
    folder), `task_mean` (needs `task_batch`, a `tasks.TaskBatch`) or `zero`. Without
    `data`, `mean` uses a cached file of this model if exactly one exists.
    """
    if kind not in ABLATIONS:
        raise InputError(f"ablation {kind!r} is unknown; choose one of {', '.join(ABLATIONS)}")
    hooks = all_node_hooks(model)
    if kind == "zero":
        return {h: torch.zeros(node_width(model, h)) for h in hooks}
    if kind == "task_mean":
        if task_batch is None:
            raise InputError("ablation 'task_mean' needs the task's prompts (task_batch)")
        tokens = task_batch.tokens
        positions = torch.arange(tokens.shape[1]).unsqueeze(0)
        real = (positions <= task_batch.last_pos.unsqueeze(1)).to(torch.float64)
        return _mean_activations(model, tokens, real)
    if data is None:
        return _only_cached_means(model, cache_dir)
    tokens, corpus_hash = _tokens_and_hash(data, model)
    name = f"ablation_means-{model_fingerprint(model)}-{corpus_hash}.safetensors"
    dirs = _cache_dirs(cache_dir)
    for d in dirs:
        if (d / name).is_file():
            cached = _load_cached(d / name, model)
            if cached is not None:
                return cached
    values = _mean_activations(model, _windows(model, tokens), progress=progress)
    _save_cached(values, dirs, name)
    return values


def _only_cached_means(model: SparseTransformer, cache_dir: str | Path | None) -> dict[str, torch.Tensor]:
    """The cached means of this model when exactly one corpus's means are cached."""
    fp = model_fingerprint(model)
    found = []
    for d in _cache_dirs(cache_dir):
        if d.is_dir():
            found += sorted(d.glob(f"ablation_means-{fp}-*.safetensors"))
    corpora = {p.name for p in found}
    if len(corpora) == 1:
        cached = _load_cached(found[0], model)
        if cached is not None:
            return cached
    why = "no token shards were given" if not corpora else f"{len(corpora)} corpora are cached"
    raise InputError(
        f"ablation 'mean' needs the pretraining corpus ({why}): pass --data DIR (a corpus "
        "folder from `sparsecircuits corpus build`), or choose --ablation zero or task_mean"
    )
