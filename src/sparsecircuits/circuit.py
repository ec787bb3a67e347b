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
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.locations import (
    NodeLocation,
    all_node_hooks,
    get_location,
    hook_location,
    locations_with_role,
    node_locations,
    node_width,
)

CIRCUIT_FORMAT = "sparsecircuits.circuit/1"
CIRCUIT_FILE = "circuit.json"
MASKS_FILE = "masks.safetensors"
LOSS_KEYS = ("full", "circuit", "circuit_calibrated", "ablate_all", "circuit_ablated")

Nodes = Mapping[str, Iterable[int] | torch.Tensor]


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


def compute_edges(model: SparseTransformer, nodes: Nodes) -> list[Edge]:
    """The circuit's edges: nonzero weights between kept nodes, for every weight slice of
    the locations table (attn_in -> q/k/v, v -> attn_out, mlp_in -> neuron, neuron ->
    mlp_out in the paper's model). `nodes` maps hook names to kept indices (or bool masks);
    a hook that is absent has no kept nodes. The circuit size is `len(edges)`.
    """
    edges: list[Edge] = []
    for layer, block in enumerate(model.blocks):
        for loc in node_locations():
            dst = loc.hook_name(layer)
            for piece in loc.inputs:
                src = get_location(piece.src).hook_name(layer)
                edges += _matrix_edges(
                    piece.weight(block), src, _indices(nodes, src), dst, _indices(nodes, dst)
                )
    return edges


def _channels(nodes: Nodes, hook: str, d_model: int) -> set[int]:
    """Kept residual channels at a read/write hook (positional channels excluded)."""
    return {int(i) for i in _indices(nodes, hook) if i < d_model}


def _residual_hooks(model: SparseTransformer, role: str) -> list[tuple[int, str, NodeLocation]]:
    """(forward position, hook, row) of every location of a role, in forward order."""
    order = {loc.alias: i for i, loc in enumerate(node_locations())}
    return [
        (layer * len(order) + order[loc.alias], loc.hook_name(layer), loc)
        for layer in range(model.cfg.n_layer)
        for loc in locations_with_role(role)
    ]


def residual_links(model: SparseTransformer, nodes: Nodes) -> list[Edge]:
    """Residual channels written by a kept write-location node and read later in the forward
    pass by a kept read-location node; weight is the reading norm's gain on that channel."""
    d_model = model.cfg.d_model
    readers = [
        (pos, hook, model.blocks[hook_location(hook)[0]].get_parameter(loc.norm).detach())
        for pos, hook, loc in _residual_hooks(model, "read")
    ]
    links: list[Edge] = []
    for w_pos, writer, _ in _residual_hooks(model, "write"):
        written = _channels(nodes, writer, d_model)
        for r_pos, reader, gain in readers:
            if r_pos <= w_pos:
                continue
            for c in sorted(written & _channels(nodes, reader, d_model)):
                links.append(Edge(node_id(writer, c), node_id(reader, c), float(gain[c])))
    return links


def _role_channels(model: SparseTransformer, nodes: Nodes, role: str) -> list[int]:
    """Kept residual channels over every location of a role (read or write)."""
    found: set[int] = set()
    for _, hook, _ in _residual_hooks(model, role):
        found |= _channels(nodes, hook, model.cfg.d_model)
    return sorted(found)


def embed_links(model: SparseTransformer, nodes: Nodes, tokens: Iterable[int]) -> list[Edge]:
    """Nonzero embedding weights of `tokens` on channels read by kept read-location nodes."""
    channels = _role_channels(model, nodes, "read")
    return _table_links(model.embed.weight, tokens, channels, "embed:{t}", "hook_embed:{c}")


def unembed_links(model: SparseTransformer, nodes: Nodes, tokens: Iterable[int]) -> list[Edge]:
    """Nonzero unembedding weights of `tokens` on channels written by kept write-location nodes."""
    channels = _role_channels(model, nodes, "write")
    return _table_links(
        model.unembed.weight, tokens, channels, "ln_final.hook_normalized:{c}", "unembed:{t}"
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
        counts = {loc.alias: 0 for loc in node_locations()}
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
