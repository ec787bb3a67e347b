"""Circuit reuse: how many nodes and edges the task circuits of one model share.

Nodes are the ids "HOOK:INDEX" of `Circuit.node_ids()` (so a location a circuit was not
pruned at counts all its nodes, as `n_nodes` does), edges the (src, dst) pairs of
`Circuit.edges`. Node ids name the same unit only within one model, so circuits whose
model fingerprints differ are refused. A cell whose sets are all empty (nothing to
compare) is None, which JSON writes as null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecircuits.circuits.artifact import Circuit
from sparsecircuits.errors import InputError


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _jaccard_or_none(a: set, b: set) -> float | None:
    """Jaccard, or None when both sets are empty (no overlap to measure)."""
    return jaccard(a, b) if a or b else None


def _share(a: set, b: set) -> float | None:
    """The share of a's elements that are also in b (None for an empty a)."""
    return len(a & b) / len(a) if a else None


def _matrix(sets: Sequence[set], cell: Callable[[set, set], float | None]) -> list[list[float | None]]:
    return [[cell(a, b) for b in sets] for a in sets]


def _check_one_model(circuits: Mapping[str, Circuit]) -> str | None:
    """The circuits' common model fingerprint; InputError naming the tasks when they differ."""
    by_fp: dict[Any, list[str]] = {}
    for task, circuit in circuits.items():
        by_fp.setdefault(circuit.model.get("fingerprint"), []).append(task)
    if len(by_fp) > 1:
        groups = "; ".join(f"{fp}: {', '.join(tasks)}" for fp, tasks in by_fp.items())
        raise InputError(
            f"circuit reuse compares the circuits of one model, but these come from models with different "
            f"fingerprints ({groups}); pass the circuits of each model separately"
        )
    return next(iter(by_fp), None)


def reuse_matrices(circuits: Mapping[str, Circuit]) -> dict[str, Any]:
    """Node and edge overlap between the task circuits of one model, keyed by task name.

    Returns JSON-ready {"tasks", "fingerprint", "node_jaccard", "node_share", "edge_jaccard",
    "n_nodes", "n_edges"}; matrices are indexed [row][col] in the order of `tasks`, and
    node_share[i][j] is the share of circuit i's nodes that are also in circuit j."""
    fingerprint = _check_one_model(circuits)
    nodes = [set(c.node_ids()) for c in circuits.values()]
    edges = [{(e.src, e.dst) for e in c.edges} for c in circuits.values()]
    return {
        "tasks": list(circuits),
        "fingerprint": fingerprint,
        "node_jaccard": _matrix(nodes, _jaccard_or_none),
        "node_share": _matrix(nodes, _share),
        "edge_jaccard": _matrix(edges, _jaccard_or_none),
        "n_nodes": [len(s) for s in nodes],
        "n_edges": [len(s) for s in edges],
    }


def reuse_from_folders(folders: Mapping[str, str | Path]) -> dict[str, Any]:
    """`reuse_matrices` of the circuit folders (or circuit.json paths) keyed by task name."""
    return reuse_matrices({task: Circuit.load(path) for task, path in folders.items()})
