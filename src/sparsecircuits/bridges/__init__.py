"""Bridges between a dense model and a weight-sparse one, and steering the dense model
through a sparse channel (docs/bridges.md)."""

from sparsecircuits.bridges.model import (
    BridgeConfig,
    Bridges,
    bridge_sites,
    hybrid_logits,
    load_bridges,
    make_bridges,
    save_bridges,
)
from sparsecircuits.bridges.quality import bridge_quality, quality_markdown
from sparsecircuits.bridges.steer import (
    BridgedModels,
    open_bridges,
    residual_channel,
    steer,
    steering_markdown,
)
from sparsecircuits.bridges.train import BridgeObjective, BridgeSpec, BridgeTrainer, train_bridges

__all__ = [
    "BridgeConfig", "BridgeObjective", "BridgeSpec", "BridgeTrainer", "BridgedModels", "Bridges", "bridge_quality",
    "bridge_sites", "hybrid_logits", "load_bridges", "make_bridges", "open_bridges", "quality_markdown",
    "residual_channel", "save_bridges", "steer", "steering_markdown", "train_bridges",
]
