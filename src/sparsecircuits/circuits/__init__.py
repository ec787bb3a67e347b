"""The Circuit artifact: node ids and edges, the typed records, circuit.json I/O, and the
overlap (reuse) between the task circuits of one model."""

from sparsecircuits.circuits.artifact import (
    CIRCUIT_FILE,
    CIRCUIT_FORMAT,
    MASKS_FILE,
    Circuit,
    circuit_folder,
)
from sparsecircuits.circuits.edges import compute_edges, embed_links, residual_links, unembed_links
from sparsecircuits.circuits.ids import Edge, node_id, parse_node_id
from sparsecircuits.circuits.records import (
    LOSS_KEYS,
    CalibrationRecord,
    CircuitLosses,
    PruningRecord,
    TaskRecord,
)
from sparsecircuits.circuits.reuse import jaccard, reuse_from_folders, reuse_matrices

__all__ = [
    "CIRCUIT_FILE",
    "CIRCUIT_FORMAT",
    "LOSS_KEYS",
    "MASKS_FILE",
    "CalibrationRecord",
    "Circuit",
    "CircuitLosses",
    "circuit_folder",
    "Edge",
    "PruningRecord",
    "TaskRecord",
    "compute_edges",
    "embed_links",
    "jaccard",
    "node_id",
    "parse_node_id",
    "residual_links",
    "reuse_from_folders",
    "reuse_matrices",
    "unembed_links",
]
