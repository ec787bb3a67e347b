"""A circuit's edges and links, derived from the locations table and the model's weights.

- edges: for every weight slice of the table (attn_in -> q/k/v, v -> attn_out, mlp_in ->
  neuron, neuron -> mlp_out in the paper's model), the nonzero weights whose two ends are
  kept nodes; their number is the circuit size;
- residual links: a channel written by a kept write-location node and read by a kept
  read-location node later in the forward pass (weight: the reading norm's gain there);
- embed / unembed links: embedding weights of the task's prompt tokens on channels read by
  kept nodes, unembedding weights of its answer tokens on channels written by kept nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from sparsecircuits.circuits.ids import Edge, node_id
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.locations import (
    NodeLocation,
    get_location,
    hook_location,
    locations_with_role,
    node_locations,
)

Nodes = Mapping[str, Iterable[int] | torch.Tensor]


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
