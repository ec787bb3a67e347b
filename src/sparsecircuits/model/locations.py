"""The one table of node locations: where each is hooked, how wide it is, what it means,
its role, and which weights connect it to the other locations.

Everything that enumerates nodes (pruning, edges, residual links, the viewer payload, the
reference-format mapping) iterates over `node_locations()`. Adding a location is one row
here plus its `HookPoint` in the forward pass (`model/transformer.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sparsecircuits.errors import InputError

# What a location is to the residual stream and to the edge rules.
#   read:   normalized residual read by a sublayer (its channels are residual channels)
#   qkv:    attention query/key/value channels (flattened head * d_head + channel)
#   neuron: hidden units of a sublayer
#   write:  residual channels written by a sublayer, before the residual add
ROLES: tuple[str, ...] = ("read", "qkv", "neuron", "write")


@dataclass(frozen=True)
class WeightSlice:
    """The weights [dst width, src width] from location `src` into the row's location:
    part `part` of `parts` equal row blocks of the block parameter `param` (fused q/k/v)."""

    src: str
    param: str
    part: int = 0
    parts: int = 1

    def weight(self, block: nn.Module) -> torch.Tensor:
        """This slice of the block's parameter."""
        w = block.get_parameter(self.param)
        n = w.shape[0] // self.parts
        return w[self.part * n : (self.part + 1) * n]


@dataclass(frozen=True)
class NodeLocation:
    """One per-layer node location (see the module docstring)."""

    alias: str
    hook: str  # hook name template with {layer}
    role: str
    size: Callable[[Any], int]  # nodes per token, from a ModelConfig
    width: str  # the width in config terms, for the docs
    meaning: str
    inputs: tuple[WeightSlice, ...] = ()  # weights that end at this location
    norm: str | None = None  # read locations: the block norm whose gain scales the read

    def hook_name(self, layer: int) -> str:
        """The hook name of this location in a given layer."""
        return self.hook.format(layer=layer)

    def alias_name(self, layer: int) -> str:
        """The alias (paper name) of this location in a given layer."""
        return f"blocks.{layer}.{self.alias}"


def _d_in(cfg: Any) -> int:
    return cfg.d_in


def _d_attn(cfg: Any) -> int:
    return cfg.d_attn


def _d_model(cfg: Any) -> int:
    return cfg.d_model


def _d_mlp(cfg: Any) -> int:
    return cfg.d_mlp


# The table, in forward-pass order within a layer (residual links rely on this order).
NODE_LOCATIONS: tuple[NodeLocation, ...] = (
    NodeLocation("attn_in", "blocks.{layer}.attn.hook_in", "read", _d_in, "d_model (+ d_pos_emb)",
                 "normalized residual read by attention (after AbsTopK)", norm="ln_1.weight"),
    NodeLocation("attn_q", "blocks.{layer}.attn.hook_q", "qkv", _d_attn, "n_head x d_head",
                 "query channels, all heads jointly", (WeightSlice("attn_in", "attn.c_attn.weight", 0, 3),)),
    NodeLocation("attn_k", "blocks.{layer}.attn.hook_k", "qkv", _d_attn, "n_head x d_head",
                 "key channels, all heads jointly", (WeightSlice("attn_in", "attn.c_attn.weight", 1, 3),)),
    NodeLocation("attn_v", "blocks.{layer}.attn.hook_v", "qkv", _d_attn, "n_head x d_head",
                 "value channels, all heads jointly", (WeightSlice("attn_in", "attn.c_attn.weight", 2, 3),)),
    NodeLocation("attn_out", "blocks.{layer}.hook_attn_out", "write", _d_model, "d_model",
                 "residual channels written by attention (before the residual add)",
                 (WeightSlice("attn_v", "attn.c_proj.weight"),)),
    NodeLocation("mlp_in", "blocks.{layer}.mlp.hook_in", "read", _d_in, "d_model (+ d_pos_emb)",
                 "normalized residual read by the MLP (after AbsTopK)", norm="ln_2.weight"),
    NodeLocation("mlp_neuron", "blocks.{layer}.mlp.hook_post", "neuron", _d_mlp, "d_mlp",
                 "MLP neurons after the nonlinearity", (WeightSlice("mlp_in", "mlp.c_fc.weight"),)),
    NodeLocation("mlp_out", "blocks.{layer}.hook_mlp_out", "write", _d_model, "d_model",
                 "residual channels written by the MLP (before the residual add)",
                 (WeightSlice("mlp_neuron", "mlp.c_proj.weight"),)),
)

# The paper's 8 locations: the default set for AbsTopK and pruning.
LOCATIONS: tuple[str, ...] = tuple(loc.alias for loc in NODE_LOCATIONS)


def node_locations() -> tuple[NodeLocation, ...]:
    """The current table (read at call time, so a row added to it is seen everywhere)."""
    return NODE_LOCATIONS


def location_aliases() -> tuple[str, ...]:
    """Aliases of every location in the table, in forward order."""
    return tuple(loc.alias for loc in node_locations())


def get_location(alias: str) -> NodeLocation:
    """The table row of an alias; KeyError names the valid ones."""
    for loc in node_locations():
        if loc.alias == alias:
            return loc
    raise KeyError(f"unknown node location {alias!r}; valid: {', '.join(location_aliases())}")


def locations_with_role(role: str) -> tuple[NodeLocation, ...]:
    """The rows of one role, in forward order."""
    return tuple(loc for loc in node_locations() if loc.role == role)


def node_table_markdown() -> str:
    """The node-location table as Markdown, for the docs."""
    rows = ["| alias | hook name | role | width | meaning |", "|---|---|---|---|---|"]
    for loc in node_locations():
        rows.append(f"| `{loc.alias}` | `{loc.hook}` | {loc.role} | {loc.width} | {loc.meaning} |")
    return "\n".join(rows)


def node_hooks(model: nn.Module, locations: Iterable[str] = LOCATIONS) -> list[str]:
    """Hook names of the given location aliases in every layer, in forward order."""
    wanted = list(locations)
    valid = location_aliases()
    unknown = [a for a in wanted if a not in valid]
    if unknown:
        raise InputError(f"unknown node location(s) {unknown}; valid locations: {', '.join(valid)}")
    if not wanted:
        raise InputError("no node locations given; choose at least one of " + ", ".join(valid))
    return [
        loc.hook_name(layer)
        for layer in range(model.cfg.n_layer)
        for loc in node_locations()
        if loc.alias in wanted
    ]


def hook_location(hook: str) -> tuple[int, str]:
    """(layer, alias) of a node-location hook name such as 'blocks.0.attn.hook_q'."""
    parts = hook.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        layer = int(parts[1])
        for loc in node_locations():
            if loc.hook_name(layer) == hook:
                return layer, loc.alias
    raise InputError(
        f"{hook!r} is not a node-location hook; node locations are "
        + ", ".join(loc.hook for loc in node_locations())
    )


def node_width(model: nn.Module, hook: str) -> int:
    """Number of nodes (per token) at a node-location hook, checked against the model."""
    layer, alias = hook_location(hook)
    if layer >= model.cfg.n_layer:
        raise InputError(f"{hook!r}: the model has only {model.cfg.n_layer} layer(s)")
    return model.cfg.location_width(alias)


def all_node_hooks(model: nn.Module) -> list[str]:
    """Every node-location hook of the model, in forward order."""
    return node_hooks(model, location_aliases())
