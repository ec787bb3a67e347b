"""The Circuit artifact: kept nodes, the edges between them, losses and every setting.

A circuit folder holds `circuit.json` (below) and `masks.safetensors` (the pruning mask
parameters tau per node-location hook). Node ids are "HOOK:INDEX", e.g.
"blocks.0.attn.hook_q:17" (q/k/v nodes are indexed head x d_head + channel).

circuit.json fields:
- `format`, `version`, `seed`
- `model`: {"path", "fingerprint"}; `task`: {"name", "source", "parameters"}
- `ablation` (mean | zero | task_mean), `target_loss`, `target_met`
- `nodes`: hook name -> sorted kept indices, for **every** node location of the model
  (locations that were not pruned list all their indices); `n_nodes`
- `edges`: [{"src", "dst", "weight"}], the nonzero weights of the four block matrices
  (attn_in -> q/k/v, v -> attn_out, mlp_in -> neuron, neuron -> mlp_out) whose two ends
  are kept nodes; `n_edges` (the circuit size)
- `residual_links`: a channel written by a kept attn_out/mlp_out node and read by a kept
  attn_in/mlp_in node later in the forward pass; weight = the reading norm's gain there
- `embed_links`: "embed:TOKEN" -> "hook_embed:CHANNEL", the embedding weights of the
  task's prompt tokens on channels read by kept attn_in/mlp_in nodes
- `unembed_links`: "ln_final.hook_normalized:CHANNEL" -> "unembed:TOKEN", the
  unembedding weights of the task's answer tokens on channels written by kept
  attn_out/mlp_out nodes
- `losses`: {"full", "circuit", "circuit_calibrated", "ablate_all", "circuit_ablated"}
- `curve`: [{"k", "loss"}] evaluated during bisection; `calibration`: {"scale", "shift"}
- `pruning`: every pruning setting; `tokens`: {"prompt", "answer"} token ids of the task

The bigram table, biases and norms are not nodes: they stay as in the full model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparsecircuits import __version__
from sparsecircuits.atomic import atomic_dir
from sparsecircuits.checkpoint import model_fingerprint
from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS, NODE_LOCATIONS, SparseTransformer, get_location

CIRCUIT_FORMAT = "sparsecircuits.circuit/1"
CIRCUIT_FILE = "circuit.json"
MASKS_FILE = "masks.safetensors"
LOSS_KEYS = ("full", "circuit", "circuit_calibrated", "ablate_all", "circuit_ablated")

Nodes = Mapping[str, Iterable[int] | torch.Tensor]


def node_hooks(model: SparseTransformer, locations: Iterable[str] = LOCATIONS) -> list[str]:
    """Hook names of the given location aliases in every layer, in forward order."""
    wanted = list(locations)
    unknown = [a for a in wanted if a not in LOCATIONS]
    if unknown:
        raise InputError(
            f"unknown node location(s) {unknown}; valid locations: {', '.join(LOCATIONS)}"
        )
    if not wanted:
        raise InputError("no node locations given; choose at least one of " + ", ".join(LOCATIONS))
    return [
        loc.hook_name(layer)
        for layer in range(model.cfg.n_layer)
        for loc in NODE_LOCATIONS
        if loc.alias in wanted
    ]


def hook_location(hook: str) -> tuple[int, str]:
    """(layer, alias) of a node-location hook name such as 'blocks.0.attn.hook_q'."""
    parts = hook.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        layer = int(parts[1])
        for loc in NODE_LOCATIONS:
            if loc.hook_name(layer) == hook:
                return layer, loc.alias
    raise InputError(
        f"{hook!r} is not a node-location hook; node locations are "
        + ", ".join(loc.hook for loc in NODE_LOCATIONS)
    )


def node_width(model: SparseTransformer, hook: str) -> int:
    """Number of nodes (per token) at a node-location hook, checked against the model."""
    layer, alias = hook_location(hook)
    if layer >= model.cfg.n_layer:
        raise InputError(f"{hook!r}: the model has only {model.cfg.n_layer} layer(s)")
    return model.cfg.location_width(alias)


def all_node_hooks(model: SparseTransformer) -> list[str]:
    """Every node-location hook of the model, in forward order."""
    return node_hooks(model, LOCATIONS)


@dataclass(frozen=True)
class Edge:
    """A weight between two node ids ("HOOK:INDEX")."""

    src: str
    dst: str
    weight: float

    def to_dict(self) -> dict[str, Any]:
        """{"src", "dst", "weight"}."""
        return {"src": self.src, "dst": self.dst, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Edge:
        """Parse {"src", "dst", "weight"}."""
        try:
            return cls(str(d["src"]), str(d["dst"]), float(d["weight"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"edge {d!r} needs 'src', 'dst' and a numeric 'weight'") from exc


def node_id(hook: str, index: int) -> str:
    """The id "HOOK:INDEX" of one node."""
    return f"{hook}:{int(index)}"


def parse_node_id(nid: str) -> tuple[str, int]:
    """(hook, index) of a node id "HOOK:INDEX"."""
    hook, sep, index = nid.rpartition(":")
    if not sep or not index.isdigit():
        raise InputError(f"node id {nid!r} is not of the form HOOK:INDEX")
    return hook, int(index)


def _indices(nodes: Nodes, hook: str) -> torch.Tensor:
    """Sorted kept indices at a hook (none when the hook is absent)."""
    got = nodes.get(hook)
    if got is None:
        return torch.zeros(0, dtype=torch.long)
    t = torch.as_tensor(got)
    if t.dtype == torch.bool:
        t = t.nonzero().flatten()
    return torch.unique(t.long().flatten())


def _matrix_edges(
    weight: torch.Tensor, src_hook: str, src_idx: torch.Tensor, dst_hook: str, dst_idx: torch.Tensor
) -> list[Edge]:
    """Edges of a weight [dst, src]: nonzero entries between kept sources and destinations."""
    if len(src_idx) == 0 or len(dst_idx) == 0:
        return []
    sub = weight.detach()[dst_idx][:, src_idx]
    rows, cols = sub.nonzero(as_tuple=True)
    return [
        Edge(f"{src_hook}:{s}", f"{dst_hook}:{d}", w)
        for s, d, w in zip(src_idx[cols].tolist(), dst_idx[rows].tolist(), sub[rows, cols].tolist(), strict=True)
    ]


def _hook(alias: str, layer: int) -> str:
    return get_location(alias).hook_name(layer)


def compute_edges(model: SparseTransformer, nodes: Nodes) -> list[Edge]:
    """The circuit's edges: nonzero weights of the four block matrices between kept nodes.

    attn_in -> q/k/v (the fused input projection), v -> attn_out (the output projection),
    mlp_in -> neuron, neuron -> mlp_out. `nodes` maps hook names to kept indices (or bool
    masks); a hook that is absent has no kept nodes. The circuit size is `len(edges)`.
    """
    d_attn = model.cfg.d_attn
    edges: list[Edge] = []
    for layer, block in enumerate(model.blocks):
        attn_in = _indices(nodes, _hook("attn_in", layer))
        w_qkv = block.attn.c_attn.weight
        for part, alias in enumerate(("attn_q", "attn_k", "attn_v")):
            rows = w_qkv[part * d_attn : (part + 1) * d_attn]
            edges += _matrix_edges(
                rows, _hook("attn_in", layer), attn_in, _hook(alias, layer), _indices(nodes, _hook(alias, layer))
            )
        edges += _matrix_edges(
            block.attn.c_proj.weight,
            _hook("attn_v", layer), _indices(nodes, _hook("attn_v", layer)),
            _hook("attn_out", layer), _indices(nodes, _hook("attn_out", layer)),
        )
        edges += _matrix_edges(
            block.mlp.c_fc.weight,
            _hook("mlp_in", layer), _indices(nodes, _hook("mlp_in", layer)),
            _hook("mlp_neuron", layer), _indices(nodes, _hook("mlp_neuron", layer)),
        )
        edges += _matrix_edges(
            block.mlp.c_proj.weight,
            _hook("mlp_neuron", layer), _indices(nodes, _hook("mlp_neuron", layer)),
            _hook("mlp_out", layer), _indices(nodes, _hook("mlp_out", layer)),
        )
    return edges


def _channels(nodes: Nodes, hook: str, d_model: int) -> set[int]:
    """Kept residual channels at a read/write hook (positional channels excluded)."""
    return {int(i) for i in _indices(nodes, hook) if i < d_model}


def residual_links(model: SparseTransformer, nodes: Nodes) -> list[Edge]:
    """Residual channels written by a kept attn_out/mlp_out node and read later by a kept
    attn_in/mlp_in node; weight is the reading norm's gain on that channel."""
    d_model, n_layer = model.cfg.d_model, model.cfg.n_layer
    # Readers in forward order: (position in the forward pass, hook, norm gain).
    readers = []
    for layer, block in enumerate(model.blocks):
        readers.append((2 * layer, _hook("attn_in", layer), block.ln_1.weight.detach()))
        readers.append((2 * layer + 1, _hook("mlp_in", layer), block.ln_2.weight.detach()))
    links: list[Edge] = []
    for layer in range(n_layer):
        for offset, alias in ((0, "attn_out"), (1, "mlp_out")):
            writer = _hook(alias, layer)
            written = _channels(nodes, writer, d_model)
            for pos, reader, gain in readers:
                if pos <= 2 * layer + offset:
                    continue
                for c in sorted(written & _channels(nodes, reader, d_model)):
                    links.append(Edge(node_id(writer, c), node_id(reader, c), float(gain[c])))
    return links


def embed_links(model: SparseTransformer, nodes: Nodes, tokens: Iterable[int]) -> list[Edge]:
    """Nonzero embedding weights of `tokens` on channels read by kept attn_in/mlp_in nodes."""
    d_model = model.cfg.d_model
    read: set[int] = set()
    for layer in range(model.cfg.n_layer):
        read |= _channels(nodes, _hook("attn_in", layer), d_model)
        read |= _channels(nodes, _hook("mlp_in", layer), d_model)
    return _table_links(model.embed.weight, tokens, sorted(read), "embed:{t}", "hook_embed:{c}")


def unembed_links(model: SparseTransformer, nodes: Nodes, tokens: Iterable[int]) -> list[Edge]:
    """Nonzero unembedding weights of `tokens` on channels written by kept attn_out/mlp_out nodes."""
    d_model = model.cfg.d_model
    written: set[int] = set()
    for layer in range(model.cfg.n_layer):
        written |= _channels(nodes, _hook("attn_out", layer), d_model)
        written |= _channels(nodes, _hook("mlp_out", layer), d_model)
    return _table_links(
        model.unembed.weight, tokens, sorted(written), "ln_final.hook_normalized:{c}", "unembed:{t}"
    )


def _table_links(
    table: torch.Tensor, tokens: Iterable[int], channels: list[int], src: str, dst: str
) -> list[Edge]:
    """Nonzero entries table[token, channel] as edges named by the `src`/`dst` templates."""
    toks = sorted({int(t) for t in tokens})
    if not toks or not channels:
        return []
    sub = table.detach()[toks][:, channels]
    rows, cols = sub.nonzero(as_tuple=True)
    return [
        Edge(src.format(t=toks[r], c=channels[c]), dst.format(t=toks[r], c=channels[c]), w)
        for r, c, w in zip(rows.tolist(), cols.tolist(), sub[rows, cols].tolist(), strict=True)
    ]


@dataclass
class Circuit:
    """A pruned task circuit (see the module docstring for the circuit.json fields)."""

    model: dict[str, Any]
    task: dict[str, Any]
    ablation: str
    target_loss: float
    nodes: dict[str, list[int]]
    edges: list[Edge]
    losses: dict[str, float]
    seed: int
    pruning: dict[str, Any]
    target_met: bool = True
    residual_links: list[Edge] = field(default_factory=list)
    embed_links: list[Edge] = field(default_factory=list)
    unembed_links: list[Edge] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    calibration: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    version: str = __version__
    format: str = CIRCUIT_FORMAT
    masks: dict[str, torch.Tensor] | None = None  # tau per hook; saved to masks.safetensors

    @property
    def n_nodes(self) -> int:
        """Number of kept nodes."""
        return sum(len(v) for v in self.nodes.values())

    @property
    def n_edges(self) -> int:
        """Number of edges (the circuit size)."""
        return len(self.edges)

    def nodes_by_location(self) -> dict[str, int]:
        """Kept-node count per location alias (summed over layers), in table order."""
        counts = {loc.alias: 0 for loc in NODE_LOCATIONS}
        for hook, idx in self.nodes.items():
            counts[hook_location(hook)[1]] += len(idx)
        return counts

    def node_ids(self) -> list[str]:
        """Every kept node as "HOOK:INDEX"."""
        return [node_id(h, i) for h, idx in self.nodes.items() for i in idx]

    def to_dict(self) -> dict[str, Any]:
        """The circuit.json content."""
        return {
            "format": self.format,
            "version": self.version,
            "model": self.model,
            "task": self.task,
            "ablation": self.ablation,
            "target_loss": self.target_loss,
            "target_met": self.target_met,
            "seed": self.seed,
            "n_nodes": self.n_nodes,
            "n_edges": self.n_edges,
            "nodes_by_location": self.nodes_by_location(),
            "losses": self.losses,
            "calibration": self.calibration,
            "pruning": self.pruning,
            "tokens": self.tokens,
            "curve": self.curve,
            "nodes": self.nodes,
            "edges": [e.to_dict() for e in self.edges],
            "residual_links": [e.to_dict() for e in self.residual_links],
            "embed_links": [e.to_dict() for e in self.embed_links],
            "unembed_links": [e.to_dict() for e in self.unembed_links],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "circuit") -> Circuit:
        """Parse circuit.json content; InputError names the missing or bad field."""
        if not isinstance(d, Mapping):
            raise InputError(f"{source}: a circuit must be a JSON object")
        if d.get("format") != CIRCUIT_FORMAT:
            raise InputError(
                f"{source}: format is {d.get('format')!r}, expected {CIRCUIT_FORMAT!r}; "
                "it was not written by this version of sparsecircuits"
            )
        required = ("model", "task", "ablation", "target_loss", "nodes", "edges", "losses", "seed", "pruning")
        missing = [k for k in required if k not in d]
        if missing:
            raise InputError(f"{source}: missing field(s) {', '.join(missing)}")
        try:
            nodes = {str(h): sorted(int(i) for i in idx) for h, idx in d["nodes"].items()}
            links = {k: [Edge.from_dict(e) for e in d.get(k, [])] for k in ("residual_links", "embed_links", "unembed_links")}
            return cls(
                model=dict(d["model"]),
                task=dict(d["task"]),
                ablation=str(d["ablation"]),
                target_loss=float(d["target_loss"]),
                nodes=nodes,
                edges=[Edge.from_dict(e) for e in d["edges"]],
                losses={k: float(v) for k, v in d["losses"].items()},
                seed=int(d["seed"]),
                pruning=dict(d["pruning"]),
                target_met=bool(d.get("target_met", True)),
                curve=[{"k": int(p["k"]), "loss": float(p["loss"])} for p in d.get("curve", [])],
                calibration={k: float(v) for k, v in d.get("calibration", {}).items()},
                tokens={k: [int(t) for t in v] for k, v in d.get("tokens", {}).items()},
                version=str(d.get("version", "")),
                **links,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise InputError(f"{source}: {exc}") from exc
            raise InputError(f"{source}: malformed field ({exc!r}); re-run `sparsecircuits prune`") from exc

    def save(self, path: str | Path) -> Path:
        """Write the circuit folder atomically: circuit.json and masks.safetensors."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            (tmp / CIRCUIT_FILE).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
            if self.masks:
                save_file({h: t.detach().float().contiguous() for h, t in self.masks.items()}, str(tmp / MASKS_FILE))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        """Load a circuit folder (or a circuit.json path) written by `save`."""
        path = Path(path)
        file = path if path.is_file() else path / CIRCUIT_FILE
        if not file.is_file():
            raise InputError(f"{path}: no {CIRCUIT_FILE} there; give the folder written by `sparsecircuits prune`")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{file} is not valid JSON ({exc}); re-run `sparsecircuits prune`") from exc
        circuit = cls.from_dict(data, source=str(file))
        masks_file = file.parent / MASKS_FILE
        if masks_file.is_file():
            try:
                circuit.masks = load_file(str(masks_file))
            except (SafetensorError, OSError, ValueError) as exc:
                raise InputError(f"{masks_file} is corrupt ({exc}); re-run `sparsecircuits prune`") from exc
        return circuit

    def check_against(self, model: SparseTransformer) -> None:
        """InputError unless the model's fingerprint matches and every node exists in it."""
        fp = model_fingerprint(model)
        if self.model.get("fingerprint") != fp:
            raise InputError(
                f"the circuit was pruned from model {self.model.get('fingerprint')} "
                f"({self.model.get('path')}), but this model's fingerprint is {fp}; "
                "load the checkpoint the circuit was made from"
            )
        for hook, idx in self.nodes.items():
            width = node_width(model, hook)
            bad = [i for i in idx if not 0 <= i < width]
            if bad:
                raise InputError(f"circuit node(s) {hook}:{bad[0]} do not exist (width {width})")

    def keep_masks(self, model: SparseTransformer) -> dict[str, torch.Tensor]:
        """Bool keep flags for every node-location hook of the model (for `prune.ablate`)."""
        keep = {}
        for hook in all_node_hooks(model):
            flags = torch.zeros(node_width(model, hook), dtype=torch.bool)
            flags[list(self.nodes.get(hook, []))] = True
            keep[hook] = flags
        return keep
