"""The model: config, the node-location table, the transformer with hook points, sparsity."""

from sparsecircuits.model.config import ModelConfig
from sparsecircuits.model.hooks import HookedModule, HookPoint
from sparsecircuits.model.locations import (
    LOCATIONS,
    NODE_LOCATIONS,
    NodeLocation,
    WeightSlice,
    get_location,
    location_aliases,
    locations_with_role,
    node_locations,
    node_table_markdown,
)
from sparsecircuits.model.transformer import Attention, Block, Norm, SparseTransformer

__all__ = [
    "LOCATIONS",
    "NODE_LOCATIONS",
    "Attention",
    "Block",
    "HookPoint",
    "HookedModule",
    "ModelConfig",
    "NodeLocation",
    "Norm",
    "SparseTransformer",
    "WeightSlice",
    "get_location",
    "location_aliases",
    "locations_with_role",
    "node_locations",
    "node_table_markdown",
]
