"""TransformerLens-style conveniences, mixed into `SparseTransformer`: text in and out,
sampling, and per-head weight views.

Text needs `model.tokenizer` (a `tokenizers.Tokenizer`; `load_checkpoint` attaches the
checkpoint's). It is the byte-level BPE of `data/tokenizer.py`, which has no BOS token:
documents are separated by `<|endoftext|>` (EOT). So `prepend_bos=True` prepends EOT, the
token every document follows in training (TransformerLens's GPT-2 BOS is also its EOT), and
the default is False (TransformerLens's is True) because task prompts start without it.

The weight views are views of the parameters, not copies: they show the weight sparsity,
and an in-place edit of one (under `torch.no_grad()`) edits the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from sparsecircuits.data.tokenizer import decode, encode, eot_id
from sparsecircuits.errors import InputError
from sparsecircuits.model.config import ModelConfig

TokensLike = torch.Tensor | Sequence[int] | Sequence[Sequence[int]]


class LayerViews(Sequence[torch.Tensor]):
    """One weight over the layers: `W[l]` is layer l's view of the parameter (sharing its
    storage), `W[l, h]` indexes into it; `W.stack()` is the [n_layer, ...] tensor, a copy."""

    def __init__(
        self, name: str, blocks: Sequence[nn.Module], view: Callable[[nn.Module], torch.Tensor]
    ) -> None:
        self.name = name
        self._blocks = blocks
        self._view = view

    def __len__(self) -> int:
        return len(self._blocks)

    def __getitem__(self, key: int | tuple[Any, ...]) -> torch.Tensor:  # type: ignore[override]
        if isinstance(key, tuple):
            return self[key[0]][key[1:]]
        if isinstance(key, slice):
            raise TypeError(
                f"{self.name} takes one layer, {self.name}[l] or {self.name}[l, ...]; "
                f"{self.name}.stack() gives all of them (a copy)"
            )
        n = len(self)
        if not -n <= key < n:
            raise IndexError(f"{self.name}: layer {key} out of range for a {n}-layer model")
        return self._view(self._blocks[key % n])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[layer] for layer in range(len(self)))

    @property
    def shape(self) -> torch.Size:
        """[n_layer, *the shape of one layer's view], as `stack()` would have."""
        return torch.Size((len(self), *self[0].shape))

    def stack(self) -> torch.Tensor:
        """All layers stacked into one [n_layer, ...] tensor (a copy, unlike `W[l]`)."""
        return torch.stack(list(self))

    def __repr__(self) -> str:
        return f"LayerViews({self.name}, shape={tuple(self.shape)})"


def _qkv_weight(cfg: ModelConfig, part: int) -> Callable[[nn.Module], torch.Tensor]:
    """Layer view [n_head, d_in, d_head] of q (0), k (1) or v (2) in the fused `c_attn`."""

    def view(block: nn.Module) -> torch.Tensor:
        w = block.attn.c_attn.weight[part * cfg.d_attn : (part + 1) * cfg.d_attn]  # [d_attn, d_in]
        return w.view(cfg.n_head, cfg.d_head, cfg.d_in).transpose(1, 2)

    return view


def _qkv_bias(cfg: ModelConfig, part: int) -> Callable[[nn.Module], torch.Tensor]:
    """Layer view [n_head, d_head] of the q (0), k (1) or v (2) bias."""

    def view(block: nn.Module) -> torch.Tensor:
        b = block.attn.c_attn.bias[part * cfg.d_attn : (part + 1) * cfg.d_attn]
        return b.view(cfg.n_head, cfg.d_head)

    return view


def _check_sampling(max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not 0 <= temperature < math.inf:
        raise InputError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be a positive integer or None (no limit), got {top_k}")


def _next_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The next token id (0-dim) from last-position logits [vocab]: argmax at temperature 0,
    else a sample of softmax(logits / temperature) over the top_k most likely tokens."""
    if temperature == 0:
        return logits.argmax()
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.numel():
        logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[0]


class TLErgonomics:
    """TransformerLens-style text methods and weight views for `SparseTransformer`."""

    tokenizer: Any = None  # tokenizers.Tokenizer; load_checkpoint attaches the checkpoint's
    cfg: ModelConfig
    blocks: nn.ModuleList
    embed: nn.Embedding
    unembed: nn.Linear
    pos_embed: nn.Embedding | None
    final_logits_bias: torch.Tensor | None

    def _tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise InputError(
                f"model.{what} needs a tokenizer, and none is attached to this model: load it with "
                "load_checkpoint (which attaches the checkpoint's tokenizer.json) or set "
                "model.tokenizer = sparsecircuits.data.tokenizer.load_tokenizer(PATH)"
            )
        return self.tokenizer

    def _device(self) -> torch.device:
        return self.embed.weight.device

    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool = False) -> torch.Tensor:
        """Token ids [batch, pos] (long, on the model's device) of a text or a list of texts.

        `prepend_bos` prepends `<|endoftext|>` (the tokenizer has no BOS; module docstring).
        Texts of different lengths are right-padded with `<|endoftext|>`.
        """
        tok = self._tokenizer("to_tokens")
        eot = eot_id(tok)
        texts = [text] if isinstance(text, str) else text
        rows = [([eot] if prepend_bos else []) + encode(tok, t) for t in texts]
        out = torch.full((len(rows), max(map(len, rows), default=0)), eot, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out.to(self._device())

    def to_string(self, tokens: TokensLike) -> str | list[str]:
        """Text of token ids: one string for [pos] ids, a list of strings for [batch, pos]."""
        tok = self._tokenizer("to_string")
        try:
            ids = torch.as_tensor(tokens)
        except (TypeError, ValueError):  # rows of different lengths, or a list of tensors
            return [decode(tok, torch.as_tensor(row).flatten().tolist()) for row in tokens]
        if ids.dim() > 2:
            raise InputError(f"to_string takes [pos] or [batch, pos] token ids, got shape {tuple(ids.shape)}")
        if ids.dim() == 2:
            return [decode(tok, row) for row in ids.tolist()]
        return decode(tok, ids.flatten().tolist())

    def to_str_tokens(self, text_or_tokens: str | TokensLike, prepend_bos: bool = False) -> list[str]:
        """Each token of a text (or of one sequence of ids, [pos] or [1, pos]) as its own string."""
        tok = self._tokenizer("to_str_tokens")
        if isinstance(text_or_tokens, str):
            ids = self.to_tokens(text_or_tokens, prepend_bos=prepend_bos)[0].tolist()
        else:
            t = torch.as_tensor(text_or_tokens)
            if t.dim() > 2 or (t.dim() == 2 and t.shape[0] != 1):
                raise InputError(
                    f"to_str_tokens takes one sequence, [pos] or [1, pos]; got shape {tuple(t.shape)}"
                )
            ids = t.flatten().tolist()
        return [decode(tok, [i]) for i in ids]

    @torch.no_grad()
    def generate_tokens(
        self,
        tokens: TokensLike,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        stop_token: int | None = None,
    ) -> torch.Tensor:
        """The new token ids [n] after a prompt of ids ([pos] or [1, pos]); no tokenizer needed.

        Temperature 0 is greedy; otherwise tokens are sampled from softmax(logits /
        temperature) over the `top_k` most likely (None: all), with a torch.Generator seeded
        by `seed` (None: torch's global one). The model reads the last n_ctx tokens. Stops
        after `max_new_tokens`, or after emitting `stop_token` (included).
        """
        _check_sampling(max_new_tokens, temperature, top_k)
        ctx = torch.as_tensor(tokens, dtype=torch.long, device=self._device())
        if ctx.dim() > 2 or (ctx.dim() == 2 and ctx.shape[0] != 1) or ctx.numel() == 0:
            raise InputError(
                f"generate takes one non-empty prompt, [pos] or [1, pos]; got shape {tuple(ctx.shape)}"
            )
        ctx = ctx.reshape(1, -1)
        generator = None if seed is None else torch.Generator(device=ctx.device).manual_seed(seed)
        new: list[int] = []
        for _ in range(max_new_tokens):
            logits = self(ctx[:, -self.cfg.n_ctx :])[0, -1]  # type: ignore[operator]
            token = _next_token(logits, temperature, top_k, generator)
            new.append(int(token))
            ctx = torch.cat([ctx, token.view(1, 1)], dim=1)
            if new[-1] == stop_token:
                break
        return torch.tensor(new, dtype=torch.long)

    def generate(
        self,
        prompt: str | torch.Tensor,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        stop_at_eot: bool = True,
    ) -> str:
        """The text the model continues `prompt` with (a string, or token ids [pos] / [1, pos]).

        Sampling as in `generate_tokens`; the same seed gives the same text. An empty prompt
        starts a new document (after `<|endoftext|>`). With `stop_at_eot`, generation ends at
        `<|endoftext|>`, which is not part of the text returned.
        """
        tok = self._tokenizer("generate")
        eot = eot_id(tok)
        ids = self.to_tokens(prompt)[0] if isinstance(prompt, str) else prompt
        if isinstance(prompt, str) and not len(ids):
            ids = torch.tensor([eot])
        stop = eot if stop_at_eot else None
        new = self.generate_tokens(ids, max_new_tokens, temperature, top_k, seed, stop_token=stop)
        if stop_at_eot and len(new) and new[-1] == eot:
            new = new[:-1]
        return decode(tok, new.tolist())

    # Weight views (TransformerLens names and shapes; biases are None without `cfg.bias`).
    def _layers(self, name: str, view: Callable[[nn.Module], torch.Tensor]) -> LayerViews:
        return LayerViews(name, self.blocks, view)

    @property
    def W_Q(self) -> LayerViews:
        """Queries: `W_Q[l]` [n_head, d_in, d_head]; q = x @ W_Q[l][h] (+ b_Q[l][h])."""
        return self._layers("W_Q", _qkv_weight(self.cfg, 0))

    @property
    def W_K(self) -> LayerViews:
        """Keys: `W_K[l]` [n_head, d_in, d_head]."""
        return self._layers("W_K", _qkv_weight(self.cfg, 1))

    @property
    def W_V(self) -> LayerViews:
        """Values: `W_V[l]` [n_head, d_in, d_head]."""
        return self._layers("W_V", _qkv_weight(self.cfg, 2))

    @property
    def W_O(self) -> LayerViews:
        """Attention output: `W_O[l]` [n_head, d_head, d_model]; out = sum_h z[h] @ W_O[l][h] + b_O[l]."""
        shape = (self.cfg.d_model, self.cfg.n_head, self.cfg.d_head)
        return self._layers("W_O", lambda b: b.attn.c_proj.weight.view(shape).permute(1, 2, 0))

    @property
    def W_in(self) -> LayerViews:
        """MLP input: `W_in[l]` [d_in, d_mlp]; pre = x @ W_in[l] + b_in[l]."""
        return self._layers("W_in", lambda b: b.mlp.c_fc.weight.T)

    @property
    def W_out(self) -> LayerViews:
        """MLP output: `W_out[l]` [d_mlp, d_model]; out = post @ W_out[l] + b_out[l]."""
        return self._layers("W_out", lambda b: b.mlp.c_proj.weight.T)

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding [vocab, d_model] (the parameter itself)."""
        return self.embed.weight

    @property
    def W_pos(self) -> torch.Tensor | None:
        """Position embedding [n_ctx, d_model or d_pos_emb], None without positions."""
        return None if self.pos_embed is None else self.pos_embed.weight

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding [d_model, vocab]; logits = ln_final output @ W_U (+ bigram, final bias)."""
        return self.unembed.weight.T

    @property
    def b_U(self) -> torch.Tensor | None:
        """Final logits bias [vocab] (a buffer), None without `cfg.final_logits_bias`."""
        return self.final_logits_bias

    @property
    def b_Q(self) -> LayerViews | None:
        """Query bias: `b_Q[l]` [n_head, d_head]."""
        return self._layers("b_Q", _qkv_bias(self.cfg, 0)) if self.cfg.bias else None

    @property
    def b_K(self) -> LayerViews | None:
        """Key bias: `b_K[l]` [n_head, d_head]."""
        return self._layers("b_K", _qkv_bias(self.cfg, 1)) if self.cfg.bias else None

    @property
    def b_V(self) -> LayerViews | None:
        """Value bias: `b_V[l]` [n_head, d_head]."""
        return self._layers("b_V", _qkv_bias(self.cfg, 2)) if self.cfg.bias else None

    @property
    def b_O(self) -> LayerViews | None:
        """Attention output bias: `b_O[l]` [d_model]."""
        return self._layers("b_O", lambda b: b.attn.c_proj.bias) if self.cfg.bias else None

    @property
    def b_in(self) -> LayerViews | None:
        """MLP input bias: `b_in[l]` [d_mlp]."""
        return self._layers("b_in", lambda b: b.mlp.c_fc.bias) if self.cfg.bias else None

    @property
    def b_out(self) -> LayerViews | None:
        """MLP output bias: `b_out[l]` [d_model]."""
        return self._layers("b_out", lambda b: b.mlp.c_proj.bias) if self.cfg.bias else None
