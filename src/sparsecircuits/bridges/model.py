"""Bridges between a dense model and a weight-sparse one (docs/bridges.md).

At every residual site (before each attention and MLP sublayer, and after the last block)
an encoder maps the dense residual into the sparse one (linear, then AbsTopK) and a decoder
maps back (linear). A hybrid forward pass runs one model up to a site, maps the residual
across and finishes in the other model; an edit to a sparse channel reaches the dense model
through the decoder (`sparsecircuits.bridges.steer`).

A bridges folder is a training run of the sparse model (`load_checkpoint(DIR)` opens the
sparse model) with `bridges.safetensors` (the encoder and decoder weights) and
`bridges.json` (the sites, widths, the dense model's path and fingerprint, the settings).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsecircuits.atomic import atomic_file, atomic_write_text
from sparsecircuits.checkpoint import read_weights
from sparsecircuits.errors import CheckpointError, InputError
from sparsecircuits.jsonio import read_json
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.sparsity import abs_topk
from sparsecircuits.tensorio import save_tensors

BRIDGES_WEIGHTS = "bridges.safetensors"
BRIDGES_META = "bridges.json"
BRIDGES_FORMAT = 1
INITS = ("lstsq", "random")
RIDGE = 1e-3  # ridge of the least-squares init, relative to the mean input variance


@dataclass(frozen=True)
class BridgeConfig:
    """The bridges' settings: the loss weights, how many sites a step's hybrid passes use,
    and the encoder's AbsTopK fraction (None: the sparse model's `afrac`, or no AbsTopK
    when the sparse model has none)."""

    nmse_coef: float = 1.0  # normalized MSE of the mapped residuals, both directions
    kl_coef: float = 1.0  # KL(dense || hybrid) of the hybrid passes, both directions
    lm_coef: float = 1.0  # the sparse model's own next-token loss (joint training only)
    sites_per_step: int = 1  # sites sampled per step for the hybrid passes
    encoder_afrac: float | None = None
    init: str = "lstsq"  # lstsq: fit every map by ridge regression on a few batches first; random

    def __post_init__(self) -> None:
        for name in ("nmse_coef", "kl_coef", "lm_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise InputError(f"bridges {name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.sites_per_step, bool) or not isinstance(self.sites_per_step, int) or self.sites_per_step < 1:
            raise InputError(f"bridges sites_per_step must be an integer >= 1, got {self.sites_per_step!r}")
        if self.init not in INITS:
            raise InputError(f"bridges init must be one of {', '.join(INITS)}, got {self.init!r}")
        afrac = self.encoder_afrac
        if afrac is not None and not (isinstance(afrac, (int, float)) and 0 < afrac <= 1):
            raise InputError(f"bridges encoder_afrac must be in (0, 1], got {afrac!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BridgeConfig:
        """The config of a bridges.json (unknown keys are refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown bridges settings {unknown}; known: {sorted(known)}")
        return cls(**d)


def bridge_sites(n_layer: int) -> list[str]:
    """The residual sites: before each attention and each MLP sublayer, and after the last
    block (hook names, in forward order)."""
    sites = [f"blocks.{layer}.hook_resid_{where}" for layer in range(n_layer) for where in ("pre", "mid")]
    return sites + [f"blocks.{n_layer - 1}.hook_resid_post"]


class Bridges(nn.Module):
    """One encoder (dense -> sparse: linear + AbsTopK) and one decoder (sparse -> dense:
    linear) per site."""

    def __init__(self, sites: list[str], d_dense: int, d_sparse: int, encoder_k: int | None) -> None:
        super().__init__()
        self.sites, self.d_dense, self.d_sparse, self.encoder_k = list(sites), d_dense, d_sparse, encoder_k
        self.encoders = nn.ModuleList(nn.Linear(d_dense, d_sparse) for _ in sites)
        self.decoders = nn.ModuleList(nn.Linear(d_sparse, d_dense) for _ in sites)
        with torch.no_grad():
            for layer in (*self.encoders, *self.decoders):
                layer.bias.zero_()

    def site_index(self, site: str) -> int:
        """The position of a site (a hook name) in `sites`."""
        if site not in self.sites:
            raise InputError(f"{site!r} is not a bridge site; the sites are {', '.join(self.sites)}")
        return self.sites.index(site)

    def encode(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Dense residual at site i -> sparse residual."""
        out = self.encoders[i](h)
        return out if self.encoder_k is None else abs_topk(out, self.encoder_k)

    def decode(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Sparse residual at site i -> dense residual."""
        return self.decoders[i](h)

    def decoder_direction(self, i: int, channel: int) -> torch.Tensor:
        """What one unit of sparse channel `channel` adds to the dense residual at site i."""
        return self.decoders[i].weight[:, channel]


@torch.no_grad()
def fit_least_squares_(bridges: Bridges, dense_acts: Mapping[str, torch.Tensor],
                       sparse_acts: Mapping[str, torch.Tensor]) -> None:
    """Set every encoder and decoder to the ridge-regression map between the two models'
    residuals at its site (activations [..., d], flattened over batch and position); the
    encoder's AbsTopK then keeps the largest outputs of that linear map."""
    for i, site in enumerate(bridges.sites):
        x_d, x_s = dense_acts[site].flatten(0, -2).double(), sparse_acts[site].flatten(0, -2).double()
        _fit_linear_(bridges.encoders[i], x_d, x_s)
        _fit_linear_(bridges.decoders[i], x_s, x_d)


def _fit_linear_(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> None:
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc / len(x)
    gram += RIDGE * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram, xc.T @ yc / len(x)).T
    layer.weight.copy_(weight.float())
    layer.bias.copy_((my - weight @ mx).float())


def make_bridges(dense: SparseTransformer, sparse: SparseTransformer, config: BridgeConfig) -> Bridges:
    """Fresh bridges between two models of the same depth and vocabulary."""
    check_pair(dense.cfg, sparse.cfg)
    afrac = config.encoder_afrac if config.encoder_afrac is not None else sparse.cfg.afrac
    k = None if afrac is None else max(1, int(afrac * sparse.cfg.d_model))
    return Bridges(bridge_sites(sparse.cfg.n_layer), dense.cfg.d_model, sparse.cfg.d_model, k)


def check_pair(a: ModelConfig, b: ModelConfig) -> None:
    """Refuse two models (dense config `a`, sparse config `b`) that bridges cannot join:
    another depth or vocabulary, or a dense context shorter than the sparse one."""
    for name in ("n_layer", "vocab_size"):
        if getattr(a, name) != getattr(b, name):
            raise InputError(
                f"bridges join models of the same {name}: the dense model has {getattr(a, name)}, "
                f"the sparse one {getattr(b, name)}"
            )
    if a.n_ctx < b.n_ctx:
        raise InputError(f"the dense model's n_ctx ({a.n_ctx}) is shorter than the sparse model's ({b.n_ctx}), "
                         "whose windows bridges train on")


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalized MSE: squared error over the target's variance around its mean (0 is a
    perfect map, 1 is as good as predicting the mean)."""
    err = (pred - target).pow(2).sum(-1).mean()
    var = (target - target.mean(dim=tuple(range(target.dim() - 1)))).pow(2).sum(-1).mean()
    return err / var.clamp_min(1e-12)


def kl_to(reference: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(reference) || softmax(logits)), mean over positions (nats)."""
    ref = F.log_softmax(reference.float().flatten(0, -2), dim=-1)
    out = F.log_softmax(logits.float().flatten(0, -2), dim=-1)
    return F.kl_div(out, ref, log_target=True, reduction="batchmean")


def hybrid_logits(receiver: SparseTransformer, tokens: torch.Tensor, site: str, value: torch.Tensor) -> torch.Tensor:
    """The receiver's logits when its residual at `site` is replaced by `value` (a residual
    mapped from the other model): the second half of a hybrid forward pass."""
    with receiver.hooks([(site, lambda x, hook: value.to(x.dtype))]):
        return receiver(tokens)


def save_bridges(bridges: Bridges, folder: Path, config: BridgeConfig, dense: Mapping[str, Any],
                 sparse: Mapping[str, Any] | None = None) -> None:
    """Write bridges.safetensors and bridges.json into `folder` (each atomically). `dense` and
    `sparse` name the models ({"path", "fingerprint"}); the sparse model of a bridges run is
    the folder's own checkpoint, and `sparse` records where a frozen one came from."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in bridges.state_dict().items()}
    with atomic_file(folder / BRIDGES_WEIGHTS) as tmp:
        save_tensors(tensors, tmp)
    meta = {
        "format": BRIDGES_FORMAT, "sites": bridges.sites, "d_dense": bridges.d_dense, "d_sparse": bridges.d_sparse,
        "encoder_k": bridges.encoder_k, "dense": dict(dense), "sparse": dict(sparse) if sparse else None,
        "config": config.to_dict(),
    }
    atomic_write_text(folder / BRIDGES_META, json.dumps(meta, indent=2) + "\n")


def read_bridges_meta(folder: Path) -> dict[str, Any]:
    """bridges.json of a bridges folder, checked; InputError naming what is wrong."""
    path = Path(folder) / BRIDGES_META
    if not path.is_file():
        raise InputError(f"{folder} is not a bridges folder ({BRIDGES_META} missing); make one with "
                         "`sparsecircuits bridges train`")
    meta = read_json(path, "retrain the bridges")
    keys = ("format", "sites", "d_dense", "d_sparse", "encoder_k", "dense", "config")
    if not isinstance(meta, dict) or any(k not in meta for k in keys):
        raise InputError(f"{path} is not a bridges record (it needs {', '.join(keys)})")
    if meta["format"] != BRIDGES_FORMAT:
        raise InputError(f"{path} has bridges format {meta['format']!r}; this version reads {BRIDGES_FORMAT}")
    return meta


def load_bridges(folder: Path) -> tuple[Bridges, BridgeConfig, dict[str, Any]]:
    """The bridges of a folder, their config and bridges.json (no code runs: safetensors)."""
    meta = read_bridges_meta(folder)
    bridges = Bridges(list(meta["sites"]), int(meta["d_dense"]), int(meta["d_sparse"]), meta["encoder_k"])
    tensors = read_weights(Path(folder) / BRIDGES_WEIGHTS)
    try:
        bridges.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{Path(folder) / BRIDGES_WEIGHTS} does not match {BRIDGES_META}: "
                              f"{str(exc).splitlines()[0]}") from exc
    return bridges.eval(), BridgeConfig.from_dict(meta["config"]), meta
