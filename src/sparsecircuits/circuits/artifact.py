"""The Circuit artifact: kept nodes, the edges between them, losses and every setting.

A circuit folder holds `circuit.json` (below) and `masks.safetensors` (the discovery
method's score of every candidate node per hook: the mask parameters tau for `masks`). Node ids are "HOOK:INDEX", e.g.
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
- `pruning`: every discovery setting, the method among them (`method`, "masks" when
  absent), `k` and `n_masked_nodes`; `tokens`: {"prompt", "answer"} token ids of the task
- `minimality` (only after the minimality pass): {"one_minimal", "dropped",
  "loss_increase": node id -> the held-out loss increase when that node alone is removed}

The bigram table, biases and norms are not nodes: they stay as in the full model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from sparsecircuits import __version__
from sparsecircuits.atomic import atomic_dir
from sparsecircuits.checkpoint import model_fingerprint
from sparsecircuits.circuits.ids import Edge, node_id
from sparsecircuits.circuits.records import (
    CalibrationRecord,
    CircuitLosses,
    PruningRecord,
    TaskRecord,
)
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.locations import all_node_hooks, hook_location, node_locations, node_width
from sparsecircuits.tensorio import save_tensors

CIRCUIT_FORMAT = "sparsecircuits.circuit/1"
CIRCUIT_FILE = "circuit.json"
MASKS_FILE = "masks.safetensors"


def circuit_folder(path: str | Path) -> Path:
    """The folder of a circuit given as its folder or as its circuit.json (where
    masks.safetensors and validation.json sit beside it)."""
    path = Path(path)
    return path.parent if path.is_file() else path


@dataclass
class Circuit:
    """A pruned task circuit (see the module docstring for the circuit.json fields)."""

    model: dict[str, Any]
    task: TaskRecord
    ablation: str
    target_loss: float
    nodes: dict[str, list[int]]
    edges: list[Edge]
    losses: CircuitLosses
    seed: int
    pruning: PruningRecord
    target_met: bool = True
    residual_links: list[Edge] = field(default_factory=list)
    embed_links: list[Edge] = field(default_factory=list)
    unembed_links: list[Edge] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    calibration: CalibrationRecord | None = None
    tokens: dict[str, list[int]] = field(default_factory=dict)
    version: str = __version__
    format: str = CIRCUIT_FORMAT
    minimality: dict[str, Any] | None = None  # the minimality pass: one_minimal, dropped, loss_increase
    masks: dict[str, torch.Tensor] | None = None  # the method's node scores (tau for masks); masks.safetensors

    def __post_init__(self) -> None:
        """Accept the records as plain dicts too (as circuit.json holds them)."""
        if isinstance(self.task, Mapping):
            self.task = TaskRecord.from_dict(self.task)
        if isinstance(self.losses, Mapping):
            self.losses = CircuitLosses.from_dict(self.losses)
        if isinstance(self.pruning, Mapping):
            self.pruning = PruningRecord.from_dict(self.pruning)
        if isinstance(self.calibration, Mapping):
            self.calibration = CalibrationRecord.from_dict(self.calibration)

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
            "task": self.task.to_dict(),
            "ablation": self.ablation,
            "target_loss": self.target_loss,
            "target_met": self.target_met,
            "seed": self.seed,
            "n_nodes": self.n_nodes,
            "n_edges": self.n_edges,
            "nodes_by_location": self.nodes_by_location(),
            "losses": self.losses.to_dict(),
            "calibration": self.calibration.to_dict() if self.calibration is not None else {},
            "pruning": self.pruning.to_dict(),
            "tokens": self.tokens,
            "curve": self.curve,
            "nodes": self.nodes,
            "edges": [e.to_dict() for e in self.edges],
            "residual_links": [e.to_dict() for e in self.residual_links],
            "embed_links": [e.to_dict() for e in self.embed_links],
            "unembed_links": [e.to_dict() for e in self.unembed_links],
            **({"minimality": self.minimality} if self.minimality is not None else {}),
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
            circuit = cls._parse(d)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise InputError(f"{source}: {exc}") from exc
            raise InputError(f"{source}: malformed field ({exc!r}); re-run `sparsecircuits prune`") from exc
        circuit.check_edges(source)
        return circuit

    @classmethod
    def _parse(cls, d: Mapping[str, Any]) -> Circuit:
        """The fields of circuit.json as a Circuit (KeyError/ValueError on a bad field)."""
        nodes = {str(h): sorted(int(i) for i in idx) for h, idx in d["nodes"].items()}
        links = {k: [Edge.from_dict(e) for e in d.get(k, [])] for k in ("residual_links", "embed_links", "unembed_links")}
        return cls(
            model=dict(d["model"]),
            task=TaskRecord.from_dict(d["task"]),
            ablation=str(d["ablation"]),
            target_loss=float(d["target_loss"]),
            nodes=nodes,
            edges=[Edge.from_dict(e) for e in d["edges"]],
            losses=CircuitLosses.from_dict(d["losses"]),
            seed=int(d["seed"]),
            pruning=PruningRecord.from_dict(d["pruning"]),
            target_met=bool(d.get("target_met", True)),
            curve=[{"k": int(p["k"]), "loss": float(p["loss"])} for p in d.get("curve", [])],
            calibration=CalibrationRecord.from_dict(d.get("calibration")),
            tokens={k: [int(t) for t in v] for k, v in d.get("tokens", {}).items()},
            version=str(d.get("version", "")),
            minimality=dict(d["minimality"]) if d.get("minimality") is not None else None,
            **links,
        )

    def check_edges(self, source: str = "circuit") -> None:
        """InputError unless every edge joins two nodes of the circuit, once, with a finite
        weight, and every link weight is finite: what the circuit's size counts is real."""
        kept = {node_id(h, i) for h, idx in self.nodes.items() for i in idx}
        seen: set[tuple[str, str]] = set()
        for edge in self.edges:
            absent = next((n for n in (edge.src, edge.dst) if n not in kept), None)
            if absent is not None:
                raise InputError(f"{source}: edge {edge.src} -> {edge.dst}: {absent} is not a node of the circuit; "
                                 "re-run `sparsecircuits prune`")
            if (edge.src, edge.dst) in seen:
                raise InputError(f"{source}: edge {edge.src} -> {edge.dst} is listed twice; re-run `sparsecircuits prune`")
            seen.add((edge.src, edge.dst))
        for edge in (*self.edges, *self.residual_links, *self.embed_links, *self.unembed_links):
            if not math.isfinite(edge.weight):
                raise InputError(f"{source}: edge {edge.src} -> {edge.dst} has weight {edge.weight}, not a finite "
                                 "number; re-run `sparsecircuits prune`")

    def save(self, path: str | Path) -> Path:
        """Write the circuit folder atomically: circuit.json and masks.safetensors."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            (tmp / CIRCUIT_FILE).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
            if self.masks:
                save_tensors({h: t.detach().float().contiguous() for h, t in self.masks.items()}, tmp / MASKS_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        """Load a circuit folder (or a circuit.json path) written by `save`."""
        file = circuit_folder(path) / CIRCUIT_FILE
        if not file.is_file():
            raise InputError(f"{path}: no {CIRCUIT_FILE} there; give the folder written by `sparsecircuits prune`")
        data = read_json(file, "re-run `sparsecircuits prune`")
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
        """Bool keep flags for every node-location hook of the model (for `model.interventions.ablate`)."""
        keep = {}
        for hook in all_node_hooks(model):
            flags = torch.zeros(node_width(model, hook), dtype=torch.bool)
            flags[list(self.nodes.get(hook, []))] = True
            keep[hook] = flags
        return keep
