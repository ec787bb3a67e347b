"""The model: config, the node-location table, the transformer with hook points, sparsity."""

from sparsecircuits.model.config import ModelConfig
from sparsecircuits.model.ergonomics import LayerViews, TLErgonomics
from sparsecircuits.model.hooks import ActivationCache, HookedModule, HookIndex, HookPoint
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
    "ActivationCache",
    "Attention",
    "Block",
    "HookPoint",
    "HookIndex",
    "HookedModule",
    "LayerViews",
    "ModelConfig",
    "NodeLocation",
    "Norm",
    "SparseTransformer",
    "TLErgonomics",
    "WeightSlice",
    "get_location",
    "location_aliases",
    "locations_with_role",
    "node_locations",
    "node_table_markdown",
]
