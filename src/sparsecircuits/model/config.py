"""The model config: every field that shapes the forward pass, validated at construction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sparsecircuits.errors import InputError
from sparsecircuits.model.locations import LOCATIONS, get_location, location_aliases


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
        unknown = [loc for loc in self.afrac_locations if loc not in location_aliases()]
        if unknown:
            raise InputError(
                f"ModelConfig.afrac_locations has unknown location(s) {unknown}; "
                f"valid: {', '.join(location_aliases())}"
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
        return get_location(alias).size(self)

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
