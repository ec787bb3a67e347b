"""Per-node details of a report that need the model: ablation values, single-node removal,
activations on task pairs, top-activating snippets and tokenized task examples.

Everything goes through the prune package (`ablation_values`, `ablate`, `frozen_norms` for
circuits pruned with frozen norm scales) and the tasks package, so the numbers are the
ones pruning and validation see.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from sparsecircuits.circuit import Circuit
from sparsecircuits.data.tokenizer import decode
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.prune.ablation import ablation_values
from sparsecircuits.prune.masks import ablate, frozen_norms, record_norm_scales
from sparsecircuits.tasks import Task, get_task, load_task_file, make_batch, task_loss
from sparsecircuits.tasks.loss import check_fits


def resolve_task(task: Mapping[str, Any]) -> Task:
    """The Task a circuit was pruned on: its JSONL file when `source` is one, else by name."""
    source, name = task.get("source"), task.get("name")
    if isinstance(source, str) and source.endswith(".jsonl"):
        if not Path(source).is_file():
            raise InputError(f"the circuit's task file {source} is missing; restore it to compute node details")
        return load_task_file(source)
    return get_task(str(name))


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


@contextmanager
def _intervened(model: SparseTransformer, keep: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor],
                stats: Any | None) -> Iterator[None]:
    with ablate(model, keep, values), (frozen_norms(model, stats) if stats is not None else nullcontext()):
        yield


def _last(cache: Mapping[str, torch.Tensor], hook: str, last_pos: torch.Tensor) -> torch.Tensor:
    act = cache[hook].flatten(2)
    return act[torch.arange(act.shape[0]), last_pos]


def _p_correct(logits: torch.Tensor, batch: Any) -> torch.Tensor:
    rows = torch.arange(logits.shape[0])
    final = logits[rows, batch.last_pos]
    return torch.sigmoid(final[rows, batch.correct] - final[rows, batch.wrong])


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


@torch.no_grad()
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

    Single-node removal costs one forward pass per node; it is skipped (with a note) for
    circuits of more than `max_removal_nodes` nodes."""
    from sparsecircuits.report.data import window_tokens

    model.eval()
    nodes = data["nodes"]
    token = _Tokens(tokenizer)
    task = resolve_task(data["task"])
    if not data["task"].get("description") and task.description:
        data["task"]["description"] = task.description
    pairs = task.generate(tokenizer, n_pairs, seed=seed, split="test")
    check_fits(model, pairs, task.name)
    n = len(pairs)
    batch = make_batch(pairs)
    hooks = sorted({node["hook"] for node in nodes})
    full_logits, full_cache = model.run_with_cache(batch.tokens, names_filter=hooks)
    p_full = _p_correct(full_logits, batch)
    try:
        values = ablation_values(model, circuit.ablation, data=shards, task_batch=batch)
    except InputError as exc:
        values = None
        data["notes"].append(f"ablation values, node removal and circuit activations not computed: {exc}")
    p_circ = None
    circ_cache: dict[str, torch.Tensor] = {}
    if values is not None:
        keep = circuit.keep_masks(model)
        # as in pruning and validation: norm scales frozen to the full model's when pruned so
        stats = record_norm_scales(model, lambda: model(batch.tokens)) if circuit.pruning.get("freeze_norms") else None
        with _intervened(model, keep, values, stats):
            circ_logits, circ_cache = model.run_with_cache(batch.tokens, names_filter=hooks)
        base = float(task_loss(circ_logits, batch))
        p_circ = _p_correct(circ_logits, batch)
        data["circuit"]["losses"].setdefault("circuit_report_pairs", base)
        if len(nodes) > max_removal_nodes:
            data["notes"].append(f"single-node removal not computed: {len(nodes)} nodes > {max_removal_nodes}")
        for node in nodes if len(nodes) <= max_removal_nodes else []:
            flags = keep[node["hook"]]
            flags[node["index"]] = False
            with _intervened(model, keep, values, stats):
                loss = float(task_loss(model(batch.tokens), batch))
            flags[node["index"]] = True
            node["delta_loss"] = loss - base
        for node in nodes:
            node["ablation_value"] = float(values[node["hook"]][node["index"]])
    full_last = {h: _last(full_cache, h, batch.last_pos) for h in hooks}
    circ_last = {h: _last(circ_cache, h, batch.last_pos) for h in hooks} if circ_cache else {}
    for node in nodes:
        acts = {}
        for name, last in (("full", full_last), ("circuit", circ_last)):
            if last:
                col = last[node["hook"]][:, node["index"]]
                acts[name] = {"a": [round(float(v), 5) for v in col[:n]], "b": [round(float(v), 5) for v in col[n:]]}
        node["acts"] = acts
    for i, pair in enumerate(pairs[:n_examples]):
        probs_a = {"full": float(p_full[i])}
        probs_b = {"full": float(p_full[n + i])}
        if p_circ is not None:
            probs_a["circuit"], probs_b["circuit"] = float(p_circ[i]), float(p_circ[n + i])
        data["examples"].append({
            "a_tokens": [token(t) for t in pair.prompt_ids], "target": token(pair.target_id), "a_probs": probs_a,
            "b_tokens": [token(t) for t in pair.alt_prompt_ids], "alt": token(pair.alt_id), "b_probs": probs_b,
        })
    if shards is not None:
        windows = window_tokens(shards, n_windows, min(window, model.cfg.n_ctx), seed)
        _snippets(model, nodes, windows, token, n_snippets, radius)
