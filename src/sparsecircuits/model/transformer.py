"""The weight-sparse transformer with hook points.

The forward pass follows the paper's reference implementation (openai/circuit_sparsity)
exactly, so its checkpoints import losslessly: pre-norm blocks, fused q/k/v, optional
attention sink, optional bigram table, AbsTopK at any subset of the 8 node locations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsecircuits.errors import InputError
from sparsecircuits.model.config import ModelConfig
from sparsecircuits.model.ergonomics import TLErgonomics
from sparsecircuits.model.hooks import HookedModule, HookPoint
from sparsecircuits.model.locations import node_locations
from sparsecircuits.model.sparse_exec import ProjectedLinear, set_execution
from sparsecircuits.model.sparsity import abs_topk

RETURN_TYPES = ("logits", "loss", "both", None)


class Norm(nn.Module):
    """RMSNorm (torch's default eps) or LayerNorm (eps 1e-5), computed through hook points.

    `hook_scale` sees the factor the (centred) input is multiplied by, 1 / sqrt(mean x^2 +
    eps), shape [..., 1] (TransformerLens hooks its reciprocal, the divisor); LayerNorm's
    `hook_center` sees the mean it subtracts. An intervention that pins them (frozen norms)
    is a hook patch.
    """

    def __init__(self, d: int, kind: str, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        self.hook_center = HookPoint() if kind == "layer" else None
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms" and not self.hook_scale.active:
            y = F.rms_norm(x, self.weight.shape, self.weight)  # faster, and equal bit for bit
        else:
            y = self._stepwise(x)
        return self.hook_normalized(y)

    def _stepwise(self, x: torch.Tensor) -> torch.Tensor:
        """The norm step by step through its hook points. For RMS it equals the fused kernel
        bit for bit, so it runs only while a hook is attached; LayerNorm always runs it
        (torch's fused LayerNorm differs from it by float rounding, ~1e-6), so that a hook
        returning its input never changes the output."""
        if self.hook_center is not None:
            x = x - self.hook_center(x.mean(-1, keepdim=True))
            eps = 1e-5
        else:
            eps = torch.finfo(x.dtype).eps
        y = x * self.hook_scale(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * self.weight
        return y + self.bias if self.bias is not None else y


def _maybe_topk(cfg: ModelConfig, alias: str, x: torch.Tensor) -> torch.Tensor:
    k = cfg.topk(alias)
    return x if k is None else abs_topk(x, k)


class Attention(nn.Module):
    """Causal self-attention with a fused q/k/v projection and an optional sink."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_attn = ProjectedLinear(cfg.d_in, 3 * cfg.d_attn, bias=cfg.bias)
        self.c_proj = ProjectedLinear(cfg.d_attn, cfg.d_model, bias=cfg.bias)
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
        if self.hook_pattern.active or not self.training or q.dtype != torch.float32:
            z = torch.einsum("bhqk,bkhd->bqhd", self.hook_pattern(self.pattern(q, k)), v)
        else:
            z = self._fused(q, k, v)
        z = self.hook_z(z)
        return self.c_proj(z.reshape(B, T, cfg.d_attn))

    def pattern(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The attention pattern [batch, head, query, key] of q and k ([batch, pos, head,
        d_head]): causal softmax, with the sink's logit as one more key when there is one."""
        T = q.shape[1]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.cfg.d_head)
        causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        if self.sink_logit is None:
            return torch.softmax(scores, dim=-1)
        sink = self.sink_logit.view(1, -1, 1, 1).expand(q.shape[0], -1, T, 1).to(scores.dtype)
        return torch.softmax(torch.cat([sink, scores], dim=-1), dim=-1)[..., 1:]

    def _fused(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_head)) v as torch's fused attention, which never holds the
        pattern. Used for float32 training steps when nothing hooks the pattern: evaluation
        keeps the explicit pattern, so that hooks never change its numbers, and in bfloat16 the
        explicit path measured faster on the CPU (docs/sparse-execution.md). The sink is one
        more key, first, with a zero value: q gains a constant 1 and that key the sink's logit
        (times sqrt(d_head), to undo the scale) in one extra dimension, so q . key = the logit.
        v gains a zero dimension too: the fused kernel wants one width for q, k and v."""
        B, T, H, D = q.shape
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [batch, head, pos, d_head]
        if self.sink_logit is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        zeros = k.new_zeros(B, H, T, 1)
        logit = (self.sink_logit * math.sqrt(D)).to(k.dtype).view(1, H, 1, 1).expand(B, H, 1, 1)
        keys = torch.cat([torch.cat([k.new_zeros(B, H, 1, D), logit], dim=-1), torch.cat([k, zeros], dim=-1)], dim=2)
        values = torch.cat([v.new_zeros(B, H, 1, D + 1), torch.cat([v, zeros.to(v.dtype)], dim=-1)], dim=2)
        visible = torch.ones(T, T + 1, dtype=torch.bool, device=q.device).tril(diagonal=1)
        z = F.scaled_dot_product_attention(torch.cat([q, torch.ones_like(zeros).to(q.dtype)], dim=-1), keys, values,
                                           attn_mask=visible, scale=1.0 / math.sqrt(D))
        return z[..., :D].transpose(1, 2)


class MLP(nn.Module):
    """Two-layer MLP with GELU or ReLU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_fc = ProjectedLinear(cfg.d_in, cfg.d_mlp, bias=cfg.bias)
        self.c_proj = ProjectedLinear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)
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


class SparseTransformer(HookedModule, TLErgonomics):
    """GPT-style decoder whose activations all carry named hook points.

    `forward(tokens[B, T]) -> logits[B, T, vocab]`. Hook names follow TransformerLens; the
    paper's location names (`blocks.{l}.attn_in`, ...) are aliases (see model/locations.py).
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
        self.unembed = ProjectedLinear(cfg.d_model, cfg.vocab_size, bias=False)
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

    def set_execution(self, execution: str) -> SparseTransformer:
        """How the projected matrices multiply: `dense` (default), `sparse` (CSR kernels) or
        `auto` (CSR where a calibration on this machine measured it faster); see
        model/sparse_exec.py. Returns the model."""
        set_execution(self, execution)
        return self

    def hook_aliases(self) -> dict[str, str]:
        return {
            loc.alias_name(layer): loc.hook_name(layer)
            for layer in range(self.cfg.n_layer)
            for loc in node_locations()
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

    def forward(self, tokens: torch.Tensor, return_type: str | None = "logits") -> Any:
        """Logits [B, T, vocab] of `tokens` [B, T]; `return_type` "loss" gives the mean
        next-token cross-entropy, "both" (logits, loss), None nothing (for hooks only)."""
        if return_type not in RETURN_TYPES:
            raise InputError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
        x, pos = self.embed_tokens(tokens)
        for block in self.blocks:
            x = block(x, pos)
        logits = self.logits(x, tokens)
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())
        return loss if return_type == "loss" else (logits, loss)

    def embed_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The residual stream entering block 0 [B, T, d] and the blocks' concatenated
        positions [1, T, d_pos_emb] (None unless `positional="concat"`)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape [batch, pos], got {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds the model context n_ctx={self.cfg.n_ctx}")
        x = self.embed(tokens)
        pos = self.positions(T)
        if self.cfg.positional == "learned":
            x, pos = x + pos, None
        return self.hook_embed(x), pos

    def last_logits(
        self,
        tokens: torch.Tensor,
        last_pos: torch.Tensor,
        resid: torch.Tensor | None = None,
        start: int = 0,
        added: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Logits [B, vocab] at row i's position last_pos[i]; equals
        `self(tokens)[arange(B), last_pos]` (the one fast path for task losses).

        The last block runs its attention over every position and everything after it only
        at last_pos, so hooks there see [B, 1, ...]. With `resid` (the residual entering
        block `start`) the earlier blocks are skipped; a block in `added` is not run and adds
        its given (attention output, MLP output) to the residual instead.
        """
        if resid is None:
            x, pos = self.embed_tokens(tokens)
        else:
            x, pos = resid, self.positions(resid.shape[1]) if self.cfg.positional == "concat" else None
        added = added or {}
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        at_last = False
        for layer in range(start, self.cfg.n_layer):
            block = self.blocks[layer]
            if layer in added:
                attn_out, mlp_out = added[layer]
                x = block.residual_add(block.residual_add(x, attn_out), mlp_out)
            else:
                at_last = layer == self.cfg.n_layer - 1
                x = block(x, pos, at=last_pos) if at_last else block(x, pos)
        if not at_last:
            x = x[rows, last_pos].unsqueeze(1)
        return self.logits(x, tokens[rows, last_pos].unsqueeze(1))[:, 0]

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
