"""The weight-sparse transformer: config, node-location table, and the model with hook points.

The forward pass follows the paper's reference implementation (openai/circuit_sparsity)
exactly, so its checkpoints import losslessly: pre-norm blocks, fused q/k/v, optional
attention sink, optional bigram table, AbsTopK at any subset of the 8 node locations.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsecircuits.errors import InputError
from sparsecircuits.hooks import HookedModule, HookPoint
from sparsecircuits.sparsity import abs_topk

LOCATIONS: tuple[str, ...] = (
    "attn_in",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_out",
    "mlp_in",
    "mlp_neuron",
    "mlp_out",
)


@dataclass(frozen=True)
class NodeLocation:
    """One of the 8 per-layer node locations: where its hook is, its width, what it means."""

    alias: str
    hook: str  # hook name template with {layer}
    width: str  # width in config terms
    meaning: str

    def hook_name(self, layer: int) -> str:
        """The hook name of this location in a given layer."""
        return self.hook.format(layer=layer)

    def alias_name(self, layer: int) -> str:
        """The alias (paper name) of this location in a given layer."""
        return f"blocks.{layer}.{self.alias}"


# The one table of node locations. Pruning and the viewer find nodes only through it.
NODE_LOCATIONS: tuple[NodeLocation, ...] = (
    NodeLocation("attn_in", "blocks.{layer}.attn.hook_in", "d_model (+ d_pos_emb)",
                 "normalized residual read by attention (after AbsTopK)"),
    NodeLocation("attn_q", "blocks.{layer}.attn.hook_q", "n_head x d_head",
                 "query channels, all heads jointly"),
    NodeLocation("attn_k", "blocks.{layer}.attn.hook_k", "n_head x d_head",
                 "key channels, all heads jointly"),
    NodeLocation("attn_v", "blocks.{layer}.attn.hook_v", "n_head x d_head",
                 "value channels, all heads jointly"),
    NodeLocation("attn_out", "blocks.{layer}.hook_attn_out", "d_model",
                 "residual channels written by attention (before the residual add)"),
    NodeLocation("mlp_in", "blocks.{layer}.mlp.hook_in", "d_model (+ d_pos_emb)",
                 "normalized residual read by the MLP (after AbsTopK)"),
    NodeLocation("mlp_neuron", "blocks.{layer}.mlp.hook_post", "d_mlp",
                 "MLP neurons after the nonlinearity"),
    NodeLocation("mlp_out", "blocks.{layer}.hook_mlp_out", "d_model",
                 "residual channels written by the MLP (before the residual add)"),
)
NODE_LOCATION_BY_ALIAS: dict[str, NodeLocation] = {loc.alias: loc for loc in NODE_LOCATIONS}


def node_table_markdown() -> str:
    """The node-location table as Markdown, for the docs."""
    rows = ["| alias | hook name | width | meaning |", "|---|---|---|---|"]
    for loc in NODE_LOCATIONS:
        rows.append(f"| `{loc.alias}` | `{loc.hook}` | {loc.width} | {loc.meaning} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class ModelConfig:
    """Every field that shapes the forward pass. Invalid combinations fail at construction."""

    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    d_head: int = 16
    d_mlp: int = 256
    vocab_size: int = 2048
    n_ctx: int = 128
    norm: str = "rms"  # rms | layer
    norm_bias: bool = False  # LayerNorm bias (layer norm only)
    bias: bool = True  # biases in the linear layers
    activation: str = "gelu"  # gelu | relu
    residual_activation: str = "identity"  # identity | relu (reference-code option)
    attention_sink: bool = False
    bigram_table: bool = False
    positional: str = "none"  # none | learned | concat
    d_pos_emb: int | None = None  # width of the concatenated positional embedding
    afrac: float | None = None  # AbsTopK kept fraction; None disables activation sparsity
    afrac_locations: tuple[str, ...] = field(default=LOCATIONS)
    tied_embeddings: bool = False
    final_logits_bias: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "afrac_locations", tuple(self.afrac_locations))
        for name in ("n_layer", "d_model", "n_head", "d_head", "d_mlp", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise InputError(f"ModelConfig.vocab_size must be an integer >= 2, got {self.vocab_size!r}")
        choices = {
            "norm": ("rms", "layer"),
            "activation": ("gelu", "relu"),
            "residual_activation": ("identity", "relu"),
            "positional": ("none", "learned", "concat"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"ModelConfig.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.norm_bias and self.norm != "layer":
            raise InputError("ModelConfig.norm_bias is only valid with norm='layer' (RMSNorm has no bias)")
        if self.positional == "concat":
            if not isinstance(self.d_pos_emb, int) or self.d_pos_emb < 1:
                raise InputError(
                    "ModelConfig.d_pos_emb must be a positive integer when positional='concat', "
                    f"got {self.d_pos_emb!r}"
                )
        elif self.d_pos_emb is not None:
            raise InputError(
                f"ModelConfig.d_pos_emb is only used with positional='concat' (positional={self.positional!r})"
            )
        unknown = [loc for loc in self.afrac_locations if loc not in LOCATIONS]
        if unknown:
            raise InputError(
                f"ModelConfig.afrac_locations has unknown location(s) {unknown}; valid: {', '.join(LOCATIONS)}"
            )
        if self.afrac is not None:
            if not (0.0 < float(self.afrac) <= 1.0):
                raise InputError(f"ModelConfig.afrac must be in (0, 1], got {self.afrac!r}")
            for loc in self.afrac_locations:
                if self.topk(loc) < 1:
                    raise InputError(
                        f"ModelConfig.afrac={self.afrac} keeps no entry at {loc} "
                        f"(width {self.location_width(loc)}); raise afrac"
                    )
        if not (self.init_std > 0):
            raise InputError(f"ModelConfig.init_std must be positive, got {self.init_std!r}")

    @property
    def d_attn(self) -> int:
        """Width of q, k and v (all heads)."""
        return self.n_head * self.d_head

    @property
    def d_in(self) -> int:
        """Width of the attention and MLP inputs (d_model, plus d_pos_emb when concatenated)."""
        return self.d_model + (self.d_pos_emb or 0)

    def location_width(self, alias: str) -> int:
        """Number of nodes per token at a node location."""
        widths = {
            "attn_in": self.d_in,
            "attn_q": self.d_attn,
            "attn_k": self.d_attn,
            "attn_v": self.d_attn,
            "attn_out": self.d_model,
            "mlp_in": self.d_in,
            "mlp_neuron": self.d_mlp,
            "mlp_out": self.d_model,
        }
        return widths[alias]

    def topk(self, alias: str) -> int | None:
        """AbsTopK k at a location, or None when activation sparsity is off there."""
        if self.afrac is None or alias not in self.afrac_locations:
            return None
        return int(self.afrac * self.location_width(alias))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = asdict(self)
        d["afrac_locations"] = list(self.afrac_locations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a dict; unknown fields are an error naming them."""
        if not isinstance(d, dict):
            raise InputError(f"model config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        """JSON text (indented, stable key order)."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse JSON text written by `to_json`."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"model config is not valid JSON: {exc}") from exc
        return cls.from_dict(d)


class Norm(nn.Module):
    """RMSNorm (torch's default eps) or LayerNorm (eps 1e-5), with a hook on its output."""

    def __init__(self, d: int, kind: str, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            y = F.rms_norm(x, self.weight.shape, self.weight)
        else:
            y = F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)
        return self.hook_normalized(y)


def _maybe_topk(cfg: ModelConfig, alias: str, x: torch.Tensor) -> torch.Tensor:
    k = cfg.topk(alias)
    return x if k is None else abs_topk(x, k)


class Attention(nn.Module):
    """Causal self-attention with a fused q/k/v projection and an optional sink."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_attn = nn.Linear(cfg.d_in, 3 * cfg.d_attn, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_attn, cfg.d_model, bias=cfg.bias)
        self.sink_logit = nn.Parameter(torch.zeros(cfg.n_head)) if cfg.attention_sink else None
        self.hook_in = HookPoint()
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = x.shape
        x = self.hook_in(_maybe_topk(cfg, "attn_in", x))
        q, k, v = self.c_attn(x).split(cfg.d_attn, dim=-1)
        shape = (B, T, cfg.n_head, cfg.d_head)
        q = self.hook_q(_maybe_topk(cfg, "attn_q", q).view(shape))
        k = self.hook_k(_maybe_topk(cfg, "attn_k", k).view(shape))
        v = self.hook_v(_maybe_topk(cfg, "attn_v", v).view(shape))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(cfg.d_head)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        if self.sink_logit is not None:
            sink = self.sink_logit.view(1, -1, 1, 1).expand(B, -1, T, 1).to(scores.dtype)
            pattern = torch.softmax(torch.cat([sink, scores], dim=-1), dim=-1)[..., 1:]
        else:
            pattern = torch.softmax(scores, dim=-1)
        pattern = self.hook_pattern(pattern)
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return self.c_proj(z.reshape(B, T, cfg.d_attn))


class MLP(nn.Module):
    """Two-layer MLP with GELU or ReLU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_fc = nn.Linear(cfg.d_in, cfg.d_mlp, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)
        self.hook_in = HookPoint()
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = self.hook_in(_maybe_topk(cfg, "mlp_in", x))
        h = self.hook_pre(self.c_fc(x))
        h = F.gelu(h) if cfg.activation == "gelu" else F.relu(h)
        h = self.hook_post(_maybe_topk(cfg, "mlp_neuron", h))
        return self.c_proj(h)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.ln_1 = Norm(cfg.d_model, cfg.norm, cfg.norm_bias)
        self.attn = Attention(cfg)
        self.ln_2 = Norm(cfg.d_model, cfg.norm, cfg.norm_bias)
        self.mlp = MLP(cfg)
        if cfg.positional == "concat":
            assert cfg.d_pos_emb is not None
            self.ln_p1 = Norm(cfg.d_pos_emb, cfg.norm, cfg.norm_bias)
            self.ln_p2 = Norm(cfg.d_pos_emb, cfg.norm, cfg.norm_bias)
        self.hook_resid_pre = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_resid_post = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()

    def residual_add(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The residual stream after adding a sublayer's output `out` to `x`."""
        x = x + out
        return torch.relu(x) if self.cfg.residual_activation == "relu" else x

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor | None, at: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The block on residual `x` [B, T, d]; `pos` are concatenated positions or None.

        With `at` [B] (one position per row), attention still reads every position but
        everything after it runs only at row i's position at[i]: the result is [B, 1, d].
        """
        cfg = self.cfg
        x = self.hook_resid_pre(x)
        a_in = self.ln_1(x)
        if pos is not None:
            a_in = torch.cat([a_in, self.ln_p1(pos).expand(x.shape[0], -1, -1)], dim=-1)
        attn = self.attn(a_in)
        if at is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            attn, x = attn[rows, at].unsqueeze(1), x[rows, at].unsqueeze(1)
            pos = None if pos is None else pos[0, at].unsqueeze(1)
        attn_out = self.hook_attn_out(_maybe_topk(cfg, "attn_out", attn))
        x = self.hook_resid_mid(self.residual_add(x, attn_out))
        m_in = self.ln_2(x)
        if pos is not None:
            m_in = torch.cat([m_in, self.ln_p2(pos).expand(x.shape[0], -1, -1)], dim=-1)
        mlp_out = self.hook_mlp_out(_maybe_topk(cfg, "mlp_out", self.mlp(m_in)))
        return self.hook_resid_post(self.residual_add(x, mlp_out))


class SparseTransformer(HookedModule):
    """GPT-style decoder whose activations all carry named hook points.

    `forward(tokens[B, T]) -> logits[B, T, vocab]`. Hook names follow TransformerLens; the
    paper's location names (`blocks.{l}.attn_in`, ...) are aliases (see NODE_LOCATIONS).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.positional == "learned":
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
        elif cfg.positional == "concat":
            assert cfg.d_pos_emb is not None
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_pos_emb)
        else:
            self.pos_embed = None
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_final = Norm(cfg.d_model, cfg.norm, cfg.norm_bias)
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.unembed.weight = self.embed.weight
        self.bigram_table = (
            nn.Parameter(torch.zeros(cfg.vocab_size, cfg.vocab_size)) if cfg.bigram_table else None
        )
        if cfg.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))
        else:
            self.final_logits_bias = None
        self.reset_parameters()
        self.setup_hooks()

    def reset_parameters(self) -> None:
        """The paper's init: normal(0, init_std), residual output projections scaled by
        1/sqrt(2 n_layer); biases, sink logits and the bigram table zero; norm gains one."""
        std = self.cfg.init_std
        kinds = self.parameter_kinds()
        with torch.no_grad():
            for name, p in self.named_parameters():
                if kinds[name] in ("matrix", "embedding"):
                    scale = math.sqrt(2 * self.cfg.n_layer) if name.endswith("c_proj.weight") else 1.0
                    p.normal_(0.0, std / scale)
                elif kinds[name] == "exempt" and name.endswith(".weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()

    def hook_aliases(self) -> dict[str, str]:
        return {
            loc.alias_name(layer): loc.hook_name(layer)
            for layer in range(self.cfg.n_layer)
            for loc in NODE_LOCATIONS
        }

    def parameter_kinds(self) -> dict[str, str]:
        """Classify parameters for weight sparsity: matrix, embedding, bias or exempt.

        Matrices (q/k/v, attention output, MLP in and out) get the L0 budget; embeddings,
        the unembedding and biases a denser one; norm gains, sink logits and the bigram
        table are exempt.
        """
        kinds = {}
        for name, _ in self.named_parameters():
            leaf = name.split(".")[-2] if "." in name else name
            if name == "bigram_table" or name.endswith("sink_logit") or leaf.startswith("ln_"):
                kinds[name] = "exempt"
            elif name.split(".")[0] in ("embed", "pos_embed", "unembed"):
                kinds[name] = "embedding"
            elif name.endswith(".bias"):
                kinds[name] = "bias"
            else:
                kinds[name] = "matrix"
        return kinds

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape [batch, pos], got {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds the model context n_ctx={self.cfg.n_ctx}")
        x = self.embed(tokens)
        pos = self.positions(T)
        if self.cfg.positional == "learned":
            x, pos = x + pos, None
        x = self.hook_embed(x)
        for block in self.blocks:
            x = block(x, pos)
        return self.logits(x, tokens)

    def positions(self, n: int) -> torch.Tensor | None:
        """Position embeddings of the first `n` positions [1, n, d], or None without any.

        Learned positions are added to the token embedding; concatenated ones are the
        second argument of every block.
        """
        return None if self.pos_embed is None else self.pos_embed.weight[:n].unsqueeze(0)

    def logits(self, x: torch.Tensor, tokens: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, vocab] from the final residual stream `x` [B, T, d] at input `tokens`
        [B, T]; with `at` [B], only at row i's position at[i] (after the final norm): [B, vocab]."""
        x = self.ln_final(x)
        if at is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            x, tokens = x[rows, at], tokens[rows, at]
        logits = self.unembed(x)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        if self.bigram_table is not None:
            logits = logits + F.embedding(tokens, self.bigram_table)
        return logits
