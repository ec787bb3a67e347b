"""The Circuit artifact: node ids and edges, the typed records, and circuit.json I/O."""

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
    "node_id",
    "parse_node_id",
    "residual_links",
    "unembed_links",
]
