"""Steering the dense model through a sparse channel (docs/bridges.md).

A residual channel of the sparse model (a circuit node at a read or write location, or a
bridge site and channel) is moved by `delta` at some positions; the decoder carries the
difference into the dense residual at the same site (`delta x` the decoder's column for that
channel, times a scale) and the dense model runs on. For each scale: the dense model's
probabilities of the task's answer and of its alternative, with and without the edit; a
control edit of the same norm along random sparse channels of the same site; and the same
edit applied inside the sparse model itself, as a reference.

Edit values: `to` (the channel set to a number), `from_prompts` (to its mean on other
prompts), or `toward_alt` (to its value on each pair's alternative prompt, position by
position: for a task pair, the channel the alternative prompt would have).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.bridges.model import Bridges, load_bridges
from sparsecircuits.bridges.quality import site_activations
from sparsecircuits.bundled_names import resolve_model_spec
from sparsecircuits.checkpoint import CONFIG_FILE, Checkpoint, load_checkpoint, model_fingerprint
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.locations import get_location, hook_location
from sparsecircuits.tasks import EncodedPair, make_batch
from sparsecircuits.tasks.loss import check_fits

POSITIONS = ("all", "last")
DEFAULT_SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass
class BridgedModels:
    """A bridges folder opened: the dense and sparse checkpoints and the bridges."""

    dense: Checkpoint
    sparse: Checkpoint
    bridges: Bridges
    meta: dict[str, Any]


def open_bridges(folder: str | Path, dense: str | Path | None = None) -> BridgedModels:
    """Open a bridges folder (or `bundled:NAME`): the sparse model is the folder's own
    checkpoint (a bridges run), else the one bridges.json names; the dense model is the one
    bridges.json names (or `dense`). Each must have its recorded fingerprint."""
    folder = resolve_model_spec(folder)
    bridges, _, meta = load_bridges(folder)
    own = (folder / CONFIG_FILE).is_file()
    sparse = load_checkpoint(folder) if own else _recorded_model(folder, meta, "sparse", None)
    dense_ck = _recorded_model(folder, meta, "dense", dense)
    if bridges.d_sparse != sparse.model.cfg.d_model or bridges.d_dense != dense_ck.model.cfg.d_model:
        raise InputError(f"{folder}: the bridges' widths do not match the two models")
    return BridgedModels(dense_ck, sparse, bridges, meta)


def _recorded_model(folder: Path, meta: Mapping[str, Any], side: str, given: str | Path | None) -> Checkpoint:
    """The dense or sparse checkpoint bridges.json names (or `given`), fingerprint checked."""
    ref = meta.get(side) if isinstance(meta.get(side), Mapping) else {}
    path = resolve_model_spec(given if given is not None else str(ref.get("path", "")))
    if not (path / CONFIG_FILE).is_file():
        raise InputError(f"the {side} model of {folder} is not at {path}; pass its folder with --{side}"
                         if side == "dense" else f"the {side} model of {folder} is not at {path}")
    ck = load_checkpoint(path)
    recorded = ref.get("fingerprint")
    if recorded and model_fingerprint(ck.model) != recorded:
        raise InputError(f"{path} is not the {side} model these bridges were trained with "
                         f"(fingerprint {model_fingerprint(ck.model)}, bridges.json has {recorded})")
    return ck


def residual_channel(node: str, model: SparseTransformer) -> tuple[str, int]:
    """The (bridge site, channel) of a node `HOOK:INDEX`: a site itself
    (`blocks.L.hook_resid_pre:5`) or a residual-channel node location (read: the channel the
    sublayer reads; write: the channel the sublayer writes, at the site after its add)."""
    hook, sep, index = node.rpartition(":")
    if not sep or not index.isdigit():
        raise InputError(f"--node {node!r} must look like HOOK:INDEX, e.g. blocks.1.attn_out:17")
    channel = int(index)
    if ".hook_resid_" in hook:
        return hook, channel
    try:
        layer, alias = hook_location(model.resolve_hook_name(hook))
    except (KeyError, ValueError) as exc:
        raise InputError(f"--node {node}: {hook!r} is neither a node location nor a bridge site") from exc
    loc, n_layer = get_location(alias), model.cfg.n_layer
    if loc.role == "read":
        return (f"blocks.{layer}.hook_resid_pre" if alias == "attn_in" else f"blocks.{layer}.hook_resid_mid"), channel
    if loc.role == "write":
        if alias == "attn_out":
            return f"blocks.{layer}.hook_resid_mid", channel
        last = layer == n_layer - 1
        return (f"blocks.{layer}.hook_resid_post" if last else f"blocks.{layer + 1}.hook_resid_pre"), channel
    raise InputError(f"--node {node}: a {loc.role} node is not a residual channel; steer a node at "
                     "attn_in, attn_out, mlp_in or mlp_out, or a site such as blocks.0.hook_resid_mid:3")


def node_key(node: str, model: SparseTransformer) -> str | None:
    """The circuit node id (`HOOK:INDEX` with the hook's own name) of a steering node, or None
    for a bridge site."""
    hook, _, index = node.rpartition(":")
    if ".hook_resid_" in hook:
        return None
    return f"{model.resolve_hook_name(hook)}:{int(index)}"


@torch.no_grad()
def rank_channels(sparse: SparseTransformer, nodes: Mapping[str, Sequence[int]], pairs: Sequence[EncodedPair]
                  ) -> list[tuple[str, float]]:
    """The circuit's residual-channel nodes, best first, by how far each pair's two prompts
    move the channel: mean |A - B| over real positions, over the channel's spread on them.
    Nodes at query/key/value and neuron locations are skipped (no residual channel)."""
    candidates = []
    for hook, indices in nodes.items():
        role = get_location(hook_location(sparse.resolve_hook_name(hook))[1]).role
        if role in ("read", "write"):
            candidates += [f"{hook}:{i}" for i in indices]
    if not candidates:
        return []
    check_fits(sparse, list(pairs), "the ranking prompts")
    located = {node: residual_channel(node, sparse) for node in candidates}
    batch = make_batch(pairs)
    n = len(pairs)
    _, acts = site_activations(sparse, batch.tokens, sorted({site for site, _ in located.values()}))
    real = torch.arange(batch.tokens.shape[1])[None, :] <= torch.minimum(batch.last_pos[:n], batch.last_pos[n:])[:, None]
    scores = []
    for node, (site, channel) in located.items():
        h = acts[site][..., channel]
        a, b = h[:n][real], h[n:][real]
        spread = torch.cat([a, b]).std().clamp_min(1e-6)
        scores.append((node, float((a - b).abs().mean() / spread)))
    return sorted(scores, key=lambda item: -item[1])


def _edit_hook(edit: torch.Tensor):
    return lambda x, hook: x + edit.to(x.dtype)


def _answer_probs(model: SparseTransformer, tokens: torch.Tensor, last: torch.Tensor, target: torch.Tensor,
                  alt: torch.Tensor, site: str | None = None, edit: torch.Tensor | None = None) -> torch.Tensor:
    """p(target) and p(alt) at each row's last position [B, 2], with `edit` added at `site`."""
    hooks = [] if edit is None else [(site, _edit_hook(edit))]
    with model.hooks(hooks):
        logits = model(tokens)[torch.arange(len(tokens)), last].float().softmax(-1)
    return torch.stack([logits.gather(1, target[:, None])[:, 0], logits.gather(1, alt[:, None])[:, 0]], dim=1)


def _edited(batch: Any, n: int, positions: str) -> torch.Tensor:
    """[n, T] True at the A prompts' positions an edit touches: every real one, or the last."""
    column = torch.arange(batch.tokens.shape[1])[None, :]
    last = batch.last_pos[:n, None]
    return column <= last if positions == "all" else column == last


def _deltas(sparse: SparseTransformer, site: str, channels: Sequence[int], pairs: Sequence[EncodedPair],
            value: str, to: float | None, positions: str) -> tuple[torch.Tensor, Any]:
    """The change of the sparse channels [B, T, n] on the A prompts (zero where not edited)."""
    batch = make_batch(pairs)
    n = len(pairs)
    _, acts = site_activations(sparse, batch.tokens, [site])
    h = acts[site][..., list(channels)]
    current, alt = h[:n], h[n:]
    where = _edited(batch, n, positions)
    if value == "toward_alt":
        if not torch.equal(batch.last_pos[:n], batch.last_pos[n:]):
            raise InputError("toward-alt steering needs pairs whose two prompts have the same length "
                             "(position by position); use --to or --from-prompts")
        target = alt
    else:
        target = torch.full_like(current, float(to))
    return torch.where(where[..., None], target - current, 0.0), batch


def channel_value(sparse: SparseTransformer, site: str, channel: int, prompts: Sequence[EncodedPair],
                  positions: str = "all") -> float:
    """The channel's mean on the A prompts of `prompts` (every real position, or the last)."""
    batch = make_batch(prompts)
    n = len(prompts)
    _, acts = site_activations(sparse, batch.tokens[:n], [site])
    h = acts[site][..., channel]
    return float(h[_edited(batch, n, positions)].mean())


def _summary(probs: torch.Tensor) -> dict[str, float]:
    return {"p_target": float(probs[:, 0].mean()), "p_alt": float(probs[:, 1].mean())}


def _located(models: BridgedModels, nodes: Sequence[str]) -> tuple[str, list[int]]:
    """The one site of `nodes` and their channels; InputError for nodes elsewhere."""
    if not nodes:
        raise InputError("name at least one node to steer")
    located = [residual_channel(node, models.sparse.model) for node in nodes]
    sites = sorted({site for site, _ in located})
    if len(sites) > 1:
        raise InputError(f"--node: the channels steered together must share one site; these are at {', '.join(sites)}")
    for node, (_, channel) in zip(nodes, located, strict=True):
        if not 0 <= channel < models.bridges.d_sparse:
            raise InputError(f"--node {node}: channel {channel} is outside the sparse residual "
                             f"(width {models.bridges.d_sparse})")
    return sites[0], [c for _, c in located]


def _matched(edit: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """`other` rescaled, position by position, to the norm of `edit`."""
    return other * (edit.norm(dim=-1, keepdim=True) / other.norm(dim=-1, keepdim=True).clamp_min(1e-12))


@torch.no_grad()
def steer(models: BridgedModels, node: str | Sequence[str], pairs: Sequence[EncodedPair], *, to: float | None = None,
          toward_alt: bool = False, scales: Sequence[float] = DEFAULT_SCALES, positions: str = "all",
          controls: int = 8, seed: int = 0, task_name: str = "steering") -> dict[str, Any]:
    """Steer the dense model through one sparse channel, or several of one site together, on
    the A prompts of `pairs` (see the module docstring). Give `to`, or `toward_alt`. The
    control moves as many random channels of that site, at the same dense norm at every
    position. Returns a JSON-ready record."""
    if (to is None) == (not toward_alt):
        raise InputError("give exactly one edit value: --to VALUE, --from-prompts FILE or --toward-alt")
    if positions not in POSITIONS:
        raise InputError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if not pairs:
        raise InputError("steering needs at least one prompt")
    nodes = [node] if isinstance(node, str) else list(node)
    dense, sparse, bridges = models.dense.model, models.sparse.model, models.bridges
    site, channels = _located(models, nodes)
    i = bridges.site_index(site)
    for model in (dense, sparse):
        check_fits(model, list(pairs), task_name)
    delta, batch = _deltas(sparse, site, channels, pairs, "toward_alt" if toward_alt else "to", to, positions)
    n = len(pairs)
    tokens, last, target, alt = batch.tokens[:n], batch.last_pos[:n], batch.correct[:n], batch.wrong[:n]
    decoder = bridges.decoders[i].weight  # [d_dense, d_sparse]: column c is what sparse channel c adds
    others = [c for c in range(bridges.d_sparse) if c not in channels]
    gen = torch.Generator().manual_seed(seed)
    order = [others[int(j)] for j in torch.randperm(len(others), generator=gen)]
    k = len(channels)
    picks = [order[s * k:(s + 1) * k] for s in range(min(controls, len(others) // k))]  # disjoint sets
    unit = torch.zeros(len(channels), bridges.d_sparse)
    unit[range(len(channels)), channels] = 1.0
    base_dense = _answer_probs(dense, tokens, last, target, alt)
    base_sparse = _answer_probs(sparse, tokens, last, target, alt)
    rows = []
    for scale in scales:
        d = scale * delta
        edit = d @ decoder[:, channels].T
        dense_p = _answer_probs(dense, tokens, last, target, alt, site, edit)
        sparse_p = _answer_probs(sparse, tokens, last, target, alt, site, d @ unit)
        ctrl = torch.stack([
            _answer_probs(dense, tokens, last, target, alt, site, _matched(edit, d @ decoder[:, pick].T))[:, 1].mean()
            for pick in picks]) if picks else torch.zeros(0)
        rows.append({
            "scale": float(scale), "dense": _summary(dense_p), "sparse": _summary(sparse_p),
            "control": {"p_alt": float(ctrl.mean()) if len(ctrl) else None,
                        "p_alt_sd": float(ctrl.std()) if len(ctrl) > 1 else None,
                        "channels": picks if len(channels) > 1 else [p[0] for p in picks]},
            "per_prompt_dense_p_alt": dense_p[:, 1].tolist(),
        })
    moved = delta[delta != 0]
    return {
        "node": ",".join(nodes), "nodes": nodes, "node_id": node_key(nodes[0], sparse) if len(nodes) == 1 else None,
        "node_ids": [k for k in (node_key(x, sparse) for x in nodes) if k is not None],
        "site": site, "channel": channels[0] if len(channels) == 1 else None, "channels": channels,
        "value": "toward_alt" if toward_alt else float(to), "positions": positions, "n_prompts": n,
        "mean_delta": float(moved.mean()) if len(moved) else 0.0,
        "decoder_norm": float(decoder[:, channels].norm()),
        "baseline": {"dense": _summary(base_dense), "sparse": _summary(base_sparse)},
        "scales": rows,
    }


STEERING_FILE = "steering.json"  # a circuit folder's steering records, one per node


def record_steering(circuit_dir: str | Path, result: Mapping[str, Any]) -> Path:
    """Add (or replace) this node's record in CIRCUIT/steering.json, which the circuit's
    report shows beside the node."""
    path = Path(circuit_dir) / STEERING_FILE
    records = load_steering(circuit_dir)
    records = [r for r in records if r.get("node_ids") != result.get("node_ids") or r.get("task") != result.get("task")]
    atomic_write_text(path, json.dumps({"records": [*records, dict(result)]}, indent=2) + "\n")
    return path


def load_steering(circuit_dir: str | Path) -> list[dict[str, Any]]:
    """The steering records of a circuit folder ([] when none was measured)."""
    path = Path(circuit_dir) / STEERING_FILE
    if not path.is_file():
        return []
    data = read_json(path, f"delete {STEERING_FILE} and steer again")
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path} is not a steering record (it needs a list of records)")
    return records


def steering_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """One steering record in short: the dense model's p(alt) without the edit, with it at
    scale 1 (or the smallest scale above 0) and at the largest scale, with the random-channel
    control and the sparse model's own p(alt) at both."""
    rows = [r for r in result["scales"] if r["scale"] > 0] or result["scales"]
    one = next((r for r in rows if r["scale"] == 1.0), min(rows, key=lambda r: r["scale"]))
    top = max(rows, key=lambda r: r["scale"])
    return {"task": result.get("task"), "value": result["value"],
            "channels": len(result["nodes"]),
            "baseline_p_alt": result["baseline"]["dense"]["p_alt"],
            "at": [{"scale": r["scale"], "p_alt": r["dense"]["p_alt"], "control_p_alt": r["control"]["p_alt"],
                    "sparse_p_alt": r["sparse"]["p_alt"]} for r in ([one, top] if top is not one else [one])]}


def steering_markdown(result: dict[str, Any]) -> str:
    """A steering record as a Markdown table, one row per scale."""
    b = result["baseline"]
    lines = [
        f"steer {result['node']} (site {result['site']}, channels {result['channels']}) to "
        f"{result['value']} at {result['positions']} positions, {result['n_prompts']} prompts; "
        f"without the edit the dense model has p(target) {b['dense']['p_target']:.3f}, p(alt) {b['dense']['p_alt']:.3f}",
        "",
        "| scale | dense p(target) | dense p(alt) | control p(alt) (random channels) | sparse p(target) | sparse p(alt) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["scales"]:
        c = row["control"]
        ctrl = "-" if c["p_alt"] is None else f"{c['p_alt']:.3f}" + (f" ± {c['p_alt_sd']:.3f}" if c["p_alt_sd"] is not None else "")
        lines.append(f"| {row['scale']:g} | {row['dense']['p_target']:.3f} | {row['dense']['p_alt']:.3f} | {ctrl} "
                     f"| {row['sparse']['p_target']:.3f} | {row['sparse']['p_alt']:.3f} |")
    return "\n".join(lines) + "\n"
