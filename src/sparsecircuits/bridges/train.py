"""Training bridges: the objective and a `Trainer` subclass (resume, torchrun, metrics,
checkpoints like any run; docs/bridges.md).

The dense model is frozen. The sparse model is either a finished run, frozen (bridges only),
or trained jointly from scratch with its L0 projection. The loss of a step is

    nmse_coef x (NMSE enc + NMSE dec, mean over sites)
  + kl_coef x (KL(dense || dense->sparse hybrid) + KL(dense || sparse->dense hybrid), at
               `sites_per_step` sites drawn per step)
  + lm_coef x the sparse model's next-token loss (joint training only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from sparsecircuits.bridges.model import (
    BridgeConfig,
    Bridges,
    check_pair,
    fit_least_squares_,
    hybrid_logits,
    kl_to,
    make_bridges,
    nmse,
    save_bridges,
)
from sparsecircuits.bridges.quality import bridge_quality, next_token_loss, site_activations
from sparsecircuits.checkpoint import Checkpoint, model_fingerprint
from sparsecircuits.data.shards import sample_batch
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.sparsity import WeightSparsifier
from sparsecircuits.train.config import RunConfig
from sparsecircuits.train.devices import setup_device
from sparsecircuits.train.state import ResumeState
from sparsecircuits.train.trainer import Trainer, TrainResult, make_optimizer, weight_decay_params

INIT_WINDOWS = 32  # train windows the least-squares start is fitted on
PARTS = ("nmse_enc", "nmse_dec", "kl_dense_to_sparse", "kl_sparse_to_dense", "sparse_lm")


def model_ref(checkpoint: Checkpoint) -> dict[str, str]:
    """How a bridges folder names a model: its absolute path and weight fingerprint."""
    return {"path": str(Path(checkpoint.path).resolve()), "fingerprint": model_fingerprint(checkpoint.model)}


class BridgeObjective(nn.Module):
    """The bridges' training loss on one batch (see the module docstring). The dense model
    is held but not registered: it is frozen, not saved and not synchronized."""

    def __init__(self, sparse: SparseTransformer, bridges: Bridges, dense: SparseTransformer,
                 config: BridgeConfig, joint: bool) -> None:
        super().__init__()
        self.sparse, self.bridges, self.config, self.joint = sparse, bridges, config, joint
        self.__dict__["dense"] = dense

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dense, sparse, bridges, c = self.__dict__["dense"], self.sparse, self.bridges, self.config
        sites = bridges.sites
        dense_logits, dense_acts = site_activations(dense, x, sites)
        sparse_logits, sparse_acts = site_activations(sparse, x, sites, grad=self.joint)
        enc = torch.stack([nmse(bridges.encode(i, dense_acts[s]), sparse_acts[s]) for i, s in enumerate(sites)]).mean()
        dec = torch.stack([nmse(bridges.decode(i, sparse_acts[s]), dense_acts[s]) for i, s in enumerate(sites)]).mean()
        chosen = torch.randperm(len(sites))[: c.sites_per_step].tolist()
        kl_ds = torch.stack([
            kl_to(dense_logits, hybrid_logits(sparse, x, sites[i], bridges.encode(i, dense_acts[sites[i]])))
            for i in chosen
        ]).mean()
        kl_sd = torch.stack([
            kl_to(dense_logits, hybrid_logits(dense, x, sites[i], bridges.decode(i, sparse_acts[sites[i]])))
            for i in chosen
        ]).mean()
        lm = next_token_loss(sparse_logits, y)
        total = c.nmse_coef * (enc + dec) + c.kl_coef * (kl_ds + kl_sd)
        if self.joint:
            total = total + c.lm_coef * lm
        parts = dict(zip(PARTS, (enc, dec, kl_ds, kl_sd, lm), strict=True))
        return total, {k: v.detach() for k, v in parts.items()}


@dataclass
class BridgeSpec:
    """What a bridges run joins: the dense checkpoint, the sparse checkpoint (None: train a
    sparse model of the run config jointly from scratch) and the settings."""

    dense: Checkpoint
    sparse: Checkpoint | None
    config: BridgeConfig


class BridgeTrainer(Trainer):
    """A training run of bridges (and, jointly, of the sparse model); the run folder ends as
    the sparse model's checkpoint with bridges.safetensors and bridges.json beside it. The
    given models are used in place: frozen (no gradients) and moved to the run's device."""

    def __init__(self, run: RunConfig, spec: BridgeSpec, data_dir: str | Path, out_dir: str | Path,
                 resume: bool = False, progress: bool = True, d: Any = None, device: Any = None) -> None:
        self.spec, self.joint = spec, spec.sparse is None
        self.parts: dict[str, torch.Tensor] = {}
        self.val_quality: dict[str, Any] | None = None
        super().__init__(run, data_dir, out_dir, resume, progress, d, device)

    def make_record(self) -> dict[str, Any]:
        sparse = None if self.spec.sparse is None else model_ref(self.spec.sparse)
        return {**super().make_record(),
                "bridges": {"config": self.spec.config.to_dict(), "dense": model_ref(self.spec.dense), "sparse": sparse}}

    def _setup_model(self) -> None:
        cfg, spec = self.cfg, self.spec
        torch.manual_seed(cfg.seed)
        if self.joint:
            self.model = SparseTransformer(self.run.model)
        else:
            self.model = spec.sparse.model.requires_grad_(False).eval()
        self.sparsifier = (
            WeightSparsifier(self.model, cfg.target_density, cfg.embedding_density_factor, cfg.min_per_channel)
            if self.joint and cfg.sparse else None
        )
        self.dense = spec.dense.model.requires_grad_(False).eval().to(self.device)
        self.bridges = make_bridges(self.dense, self.model, spec.config)
        self.model.to(self.device).set_execution(cfg.execution)
        self.bridges.to(self.device)
        if spec.config.init == "lstsq":
            self._fit_bridges()
        self.objective = BridgeObjective(self.model, self.bridges, self.dense, spec.config, self.joint)
        named = [(f"bridges.{n}", p) for n, p in self.bridges.named_parameters()]
        self.named_params = named + (list(self.model.named_parameters()) if self.joint else [])
        self.params = [p for _, p in self.named_params]
        decayed = [p for n, p in named if n.endswith(".weight")]
        self.decay = decayed + ([p for _, p in weight_decay_params(self.model)] if self.joint else [])
        self.optimizer = make_optimizer(self.params, cfg)

    def _fit_bridges(self) -> None:
        """The least-squares start: windows of the train split drawn with their own seed, so
        the training batches are those of a random start (a resume then loads the state)."""
        rng = np.random.default_rng([self.cfg.seed, 2])
        x, _ = sample_batch(self.shards.train, INIT_WINDOWS, self.run.model.n_ctx, rng)
        x = x.to(self.device)
        _, dense_acts = site_activations(self.dense, x, self.bridges.sites)
        _, sparse_acts = site_activations(self.model, x, self.bridges.sites)
        fit_least_squares_(self.bridges, dense_acts, sparse_acts)

    def trained_module(self) -> nn.Module:
        return self.objective

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            total, self.parts = self.net(x, y)
        return total

    def log(self, window: Any, lr: float, grad_rms: torch.Tensor, evaluating: bool) -> None:
        if self.d.world_size > 1:  # every rank joins the mean of the loss terms; rank 0 writes them
            for value in self.parts.values():
                dist.all_reduce(value)
                value /= self.d.world_size
        super().log(window, lr, grad_rms, evaluating)

    def extra_metrics(self, evaluating: bool) -> dict[str, Any]:
        row: dict[str, Any] = {k: float(v) for k, v in self.parts.items()}
        if evaluating and self.val_quality is not None:
            row["val_bridges"] = {**self.val_quality["mean"], "dense_loss": self.val_quality["dense_loss"]}
        return row

    def evaluate(self) -> float:
        """The sparse model's validation loss; the bridges' quality on the same batches is
        kept for the metrics row and training.json."""
        self.bridges.eval()
        self.val_quality = bridge_quality(self.dense, self.model, self.bridges, self.eval_batches)
        self.bridges.train()
        if self.joint:
            self.model.train()
        return self.val_quality["sparse_loss"]

    def extra_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"bridges": self.bridges.state_dict()}

    def load_state_dict(self, state: ResumeState) -> None:
        if "bridges" not in state.extra:
            raise InputError(f"{state.path} holds no bridges.safetensors")
        self.bridges.load_state_dict(state.extra["bridges"])
        super().load_state_dict(state)

    def training_record(self, identical: bool | None) -> dict[str, Any]:
        record = super().training_record(identical)
        record["sparse"] = True  # the run's model is the sparse side, trained or not
        record["bridges"] = {**self.record["bridges"], "joint": self.joint, "quality": self.val_quality}
        return record

    def finish(self) -> TrainResult:
        if self.d.main:
            sparse = None if self.spec.sparse is None else model_ref(self.spec.sparse)
            save_bridges(self.bridges, self.out_dir, self.spec.config, model_ref(self.spec.dense), sparse)
        return super().finish()


def train_bridges(run: RunConfig, spec: BridgeSpec, data_dir: str | Path, out_dir: str | Path,
                  resume: bool = False, progress: bool = True) -> TrainResult:
    """Train bridges into a run folder (see `BridgeTrainer`); the one-call entry point. Two
    models bridges cannot join are refused before anything is written."""
    check_pair(spec.dense.model.cfg, run.model if spec.sparse is None else spec.sparse.model.cfg)
    if spec.sparse is not None and run.model != spec.sparse.model.cfg:
        raise InputError("the run config's model is not the frozen sparse model's; build it from "
                         "`spec.sparse.model.cfg` (only train.* settings change a bridges run over it)")
    d, device = setup_device(run.train)
    try:
        return BridgeTrainer(run, spec, data_dir, out_dir, resume, progress, d, device).fit()
    finally:
        if d.owns_group:
            dist.destroy_process_group()
