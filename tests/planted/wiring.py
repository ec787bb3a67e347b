"""Setting a hand-built model's weights by name, and recording which of them are planted.

`Wiring` starts from a model whose matrices are all zero. Every weight between two node
locations is set through a method naming its two ends (`q(layer, index, channel, w)`,
`proj(...)`, ...); with `planted=True` the weight is part of the circuit and both of its
end nodes and the edge between them are recorded. The planted node set and edge set are
thus exactly the ends of the planted weights, and a test checking them against
`compute_edges` proves that no distractor weight joins two planted nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from sparsecircuits.circuits.ids import node_id
from sparsecircuits.model import ModelConfig, SparseTransformer, get_location

Node = tuple[str, int]  # (hook, index)


def config(n_layer: int, n_head: int = 2, d_mlp: int = 8) -> ModelConfig:
    """The family's shape: d_model 16, heads of 4 channels, vocabulary 16, context 12, no biases."""
    return ModelConfig(
        n_layer=n_layer, d_model=16, n_head=n_head, d_head=4, d_mlp=d_mlp, vocab_size=16,
        n_ctx=12, bias=False, activation="relu",
    )


def hook(layer: int, alias: str) -> str:
    """The hook name of a node location in a layer."""
    return get_location(alias).hook_name(layer)


class Wiring:
    """A zeroed model plus the planted nodes and edges recorded while setting weights."""

    def __init__(self, cfg: ModelConfig, seed: int) -> None:
        self.model = SparseTransformer(cfg)
        with torch.no_grad():
            for p in self.model.parameters():
                if p.dim() > 1:
                    p.zero_()
        self.nodes: dict[str, set[int]] = {}
        self.edges: set[tuple[str, str]] = set()
        self.rng = torch.Generator().manual_seed(seed)

    def random(self, lo: float = 0.5, hi: float = 2.0) -> float:
        """A distractor weight magnitude in [lo, hi), from the seeded generator."""
        return lo + (hi - lo) * float(torch.rand((), generator=self.rng))

    def constant(self, channel: int) -> None:
        """Every token's embedding is 1 on `channel` (no residual is ever all zero)."""
        for token in range(self.model.cfg.vocab_size):
            self.embed(token, {channel: 1.0})

    @torch.no_grad()
    def embed(self, token: int, channels: Mapping[int, float]) -> None:
        """Embedding of `token`: residual channel -> value."""
        for c, v in channels.items():
            self.model.embed.weight[token, c] = v

    @torch.no_grad()
    def unembed(self, token: int, channel: int, w: float) -> None:
        """Unembedding weight of `token` on final residual `channel`."""
        self.model.unembed.weight[token, channel] = w

    def _set(self, weight: torch.Tensor, row: int, col: int, w: float, src: Node, dst: Node, planted: bool) -> None:
        """weight[row, col] = w; a planted weight records its end nodes and its edge."""
        with torch.no_grad():
            weight[row, col] = w
        if planted:
            for h, i in (src, dst):
                self.nodes.setdefault(h, set()).add(i)
            self.edges.add((node_id(*src), node_id(*dst)))

    def _qkv(self, part: int, alias: str, layer: int, index: int, channel: int, w: float, planted: bool) -> None:
        row = part * self.model.cfg.d_attn + index
        src, dst = (hook(layer, "attn_in"), channel), (hook(layer, alias), index)
        self._set(self.model.blocks[layer].attn.c_attn.weight, row, channel, w, src, dst, planted)

    def q(self, layer: int, index: int, channel: int, w: float, planted: bool = False) -> None:
        """Query channel `index` (head * d_head + channel) reads attn_in `channel`."""
        self._qkv(0, "attn_q", layer, index, channel, w, planted)

    def k(self, layer: int, index: int, channel: int, w: float, planted: bool = False) -> None:
        """Key channel `index` reads attn_in `channel`."""
        self._qkv(1, "attn_k", layer, index, channel, w, planted)

    def v(self, layer: int, index: int, channel: int, w: float, planted: bool = False) -> None:
        """Value channel `index` reads attn_in `channel`."""
        self._qkv(2, "attn_v", layer, index, channel, w, planted)

    def proj(self, layer: int, out: int, index: int, w: float, planted: bool = False) -> None:
        """Attention output channel `out` reads value channel `index`."""
        src, dst = (hook(layer, "attn_v"), index), (hook(layer, "attn_out"), out)
        self._set(self.model.blocks[layer].attn.c_proj.weight, out, index, w, src, dst, planted)

    def fc(self, layer: int, neuron: int, channel: int, w: float, planted: bool = False) -> None:
        """MLP `neuron` reads mlp_in `channel`."""
        src, dst = (hook(layer, "mlp_in"), channel), (hook(layer, "mlp_neuron"), neuron)
        self._set(self.model.blocks[layer].mlp.c_fc.weight, neuron, channel, w, src, dst, planted)

    def mlp_proj(self, layer: int, out: int, neuron: int, w: float, planted: bool = False) -> None:
        """MLP output channel `out` reads `neuron`."""
        src, dst = (hook(layer, "mlp_neuron"), neuron), (hook(layer, "mlp_out"), out)
        self._set(self.model.blocks[layer].mlp.c_proj.weight, out, neuron, w, src, dst, planted)

    def planted_nodes(self) -> dict[str, list[int]]:
        """Hook -> sorted planted indices."""
        return {h: sorted(i) for h, i in self.nodes.items()}


def mean_data(tokens: Sequence[int], n_ctx: int, seed: int, n: int = 64) -> torch.Tensor:
    """[n, n_ctx] "pretraining" windows of tokens drawn uniformly from `tokens` (mean ablation)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(list(tokens), dtype=torch.long)
    return pool[torch.randint(len(pool), (n, n_ctx), generator=g)]
