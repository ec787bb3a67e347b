"""Weight-sparse training (docs/method.md section 2): one `Trainer` for sparse and dense runs.

Every optimizer step: forward and backward on a batch of random windows, gradients
normalized to global RMS 1, Adam (betas 0.9/0.95, eps 0.1), then the L0 projection of
every weight onto its budget at the scheduled kept fraction, then decoupled weight decay.
The dense baseline is the same loop with the projection off. Under `torchrun` the same
code trains with DistributedDataParallel (gloo on CPU, nccl on GPU); every rank draws its
slice of one global batch, so N processes reproduce one process with the same global
batch, and only rank 0 writes. A run resumes bit for bit (on CPU), metrics included, from
its newest state that loads (docs/training.md).

`Trainer` splits the run into set-up, `step`, `evaluate`, `log`, `checkpoint` and
`finish`, with `state_dict`/`load_state_dict` for resuming, so other training jobs (bridges,
sweeps) reuse it; `train` is the one-call entry point.

Safety: rank 0 holds the run folder's lock (sparsecircuits.runlock) from set-up until `fit`
ends, and removes what killed saves left there; a non-finite loss or weight stops the run
before it is saved (`InputError`); Ctrl-C raises `TrainingInterrupted`, which says which
checkpoint is kept.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from sparsecircuits import __version__
from sparsecircuits.data.shards import BatchSampler, TokenShards, sample_batch
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.sparse_exec import set_grad_support
from sparsecircuits.model.sparsity import WeightSparsifier, sparsity_report
from sparsecircuits.runlock import acquire_lock
from sparsecircuits.train.config import RunConfig, TrainConfig, apply_overrides, load_run_config
from sparsecircuits.train.devices import Dist, native_bf16, ranks_identical, setup_device
from sparsecircuits.train.schedule import kept_fraction, learning_rate
from sparsecircuits.train.state import (
    ResumeState,
    append_metrics,
    check_resume_compatible,
    clean_run_dir,
    prepare_run_dir,
    resume_newest,
    run_record,
    save_state,
    truncate_metrics,
    write_final,
    write_run_config,
)

GRAD_RMS_EPS = 1e-5  # added to the gradient RMS before dividing (as the reference code does)


@dataclass
class TrainResult:
    """What a finished run produced: its folder and headline numbers (training.json in full)."""

    out_dir: Path
    steps: int
    tokens: int
    final_train_loss: float | None
    final_val_loss: float
    seconds: float
    tokens_per_second: float
    training: dict[str, Any]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `Trainer.fit`: the step reached and the newest checkpoint kept (None
    when the run has none yet); its message says so."""

    def __init__(self, step: int, checkpoint: int | None, out_dir: Path) -> None:
        self.step, self.checkpoint, self.out_dir = step, checkpoint, out_dir
        kept = (
            f"the last checkpoint (step {checkpoint}) is kept in {out_dir}"
            if checkpoint is not None
            else f"this was before the first checkpoint, so {out_dir} holds no saved state"
        )
        super().__init__(f"interrupted at step {step}; {kept}")


def _open_data(data_dir: Path, run: RunConfig) -> TokenShards:
    shards = TokenShards.open(data_dir)
    if shards.vocab_size != run.model.vocab_size:
        raise InputError(
            f"--data {data_dir} has a {shards.vocab_size}-token vocabulary but the model has "
            f"vocab_size={run.model.vocab_size}; pass model.vocab_size={shards.vocab_size} "
            "or use a corpus built with --vocab-size "
            f"{run.model.vocab_size}"
        )
    return shards


def _grad_rms_(params: Sequence[torch.nn.Parameter], normalize: bool) -> torch.Tensor:
    """Global RMS of all gradients; with `normalize`, divide every gradient by it."""
    grads = [p.grad for p in params if p.grad is not None]
    numel = sum(g.numel() for g in grads)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    rms = norm / math.sqrt(numel)
    if normalize:
        scale = 1.0 / (rms + GRAD_RMS_EPS)
        for g in grads:
            g.mul_(scale)
    return rms


def weight_decay_params(model: SparseTransformer) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters that get decoupled weight decay: the weight matrices, embeddings and
    unembedding. Biases and the bigram table are skipped (docs/method.md section 2), and so are
    norm gains and sink logits, as in the reference code (it decays only 2-D weights)."""
    kinds = model.parameter_kinds()
    return [(n, p) for n, p in model.named_parameters() if kinds[n] in ("matrix", "embedding")]


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Adam:
    """Adam without weight decay (decay is applied by hand after the projection); the fused
    kernel when this torch and device have one (several times faster on CPU)."""
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": cfg.betas, "eps": cfg.eps, "weight_decay": 0.0}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, foreach=True, **kwargs)


@torch.no_grad()
def _evaluate(model: SparseTransformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    total = 0.0
    for x, y in batches:
        logits = model(x)
        total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1)).item()
    model.train()
    return total / len(batches)


def train(
    config: RunConfig | str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> TrainResult:
    """Train a model on a corpus folder into a run folder (see train.state for the layout).

    `config` is a RunConfig, a preset name or a config file; `overrides` are `field=value`
    strings. With `resume`, continue from the newest saved state of `out_dir`.
    """
    run = load_run_config(config, overrides) if not isinstance(config, RunConfig) else config
    if isinstance(config, RunConfig) and overrides:
        run = apply_overrides(run, overrides)
    d, device = setup_device(run.train)
    try:
        return Trainer(run, data_dir, out_dir, resume, progress, d, device).fit()
    finally:
        if d.owns_group:
            dist.destroy_process_group()


class Trainer:
    """One training run: set up on construction, then `fit()` (or `step()` by hand).

    Construction opens the corpus, checks and prepares the run folder, builds the model
    (seeded), the sparsifier and the optimizer, and loads the newest state when resuming.
    """

    def __init__(
        self,
        run: RunConfig,
        data_dir: str | Path,
        out_dir: str | Path,
        resume: bool = False,
        progress: bool = True,
        d: Dist | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.run, self.cfg = run, run.train
        self.data_dir, self.out_dir, self.progress = Path(data_dir), Path(out_dir), progress
        if d is None or device is None:
            d, device = setup_device(self.cfg)  # joins the torchrun process group when launched so
        self.d, self.device = d, device
        self._start_step, self._t_start = 0, time.perf_counter()
        self.val_loss: float | None = None
        self._setup_data()
        self.record = self.make_record()
        self._lock = acquire_lock(self.out_dir) if self.d.main else None  # before RUN is written
        if self._lock is not None:
            weakref.finalize(self, self._lock.release)  # a Trainer driven by hand and dropped
        try:
            self._setup_run(resume)
        except BaseException:
            self.close()
            raise
        self.net: torch.nn.Module = self.trained_module()
        if self.d.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
        self.tokens_per_step = self.cfg.batch_size * self.run.model.n_ctx
        self.bf16 = self.cfg.autocast == "bf16" or (self.cfg.autocast == "auto" and native_bf16(self.device))

    def _setup_run(self, resume: bool) -> None:
        """Check and clean the run folder, build the model, load the newest state that loads
        when resuming, and (rank 0) write run_config.json or drop metrics past the state."""
        prepare_run_dir(self.out_dir, resume)
        if self.d.main:
            clean_run_dir(self.out_dir)  # ours under the lock: a temp name there is an orphan
        if resume:
            check_resume_compatible(self.out_dir, self.record)
        if self.d.world_size > 1:
            dist.barrier()  # every rank has checked the run folder before rank 0 writes to it
        self._setup_model()
        self.step_count, self.tokens, self.elapsed_before, self.last_loss = 0, 0, 0.0, None
        self.saved_step: int | None = None  # the newest checkpoint of this run
        self.window = _Window(torch.zeros((), device=self.device))
        if resume:
            state, skipped = resume_newest(self.out_dir, self.load_state_dict)
            for path, why in skipped if self.d.main else ():
                print(f"warning: --resume: skipped state {path} ({why}); resuming from step {state.step}",
                      file=sys.stderr)
        elif self.sparsifier is not None and kept_fraction(0, self.cfg) < 1.0:
            self.sparsifier.project_(kept_fraction(0, self.cfg))  # no anneal: start from a sparse init
        if self.d.main:
            truncate_metrics(self.out_dir, self.step_count)  # a fresh start drops a failed run's rows
            if not resume:
                write_run_config(self.out_dir, self.record)

    def make_record(self) -> dict[str, Any]:
        """The content of run_config.json; a resume must match it (subclasses add to it)."""
        return run_record(self.run, self.shards, self.data_dir, self.d.world_size)

    def trained_module(self) -> torch.nn.Module:
        """The module whose forward `loss` calls (wrapped for DistributedDataParallel)."""
        return self.model

    def extra_metrics(self, evaluating: bool) -> dict[str, Any]:
        """Fields a subclass adds to each metrics row (none here)."""
        return {}

    def extra_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """Tensor files a subclass saves in each state folder, by name (none here); they come
        back as `ResumeState.extra`."""
        return {}

    def close(self) -> None:
        """Release the run folder's lock; `fit` does when it ends (call it after driving `step`
        by hand). Closing twice is harmless."""
        if self._lock is not None:
            self._lock.release()

    def _setup_data(self) -> None:
        """Open the corpus; the batch sampler of this rank and the fixed validation batches."""
        cfg, d, n_ctx = self.cfg, self.d, self.run.model.n_ctx
        self.shards = _open_data(self.data_dir, self.run)
        if cfg.batch_size % d.world_size:
            raise InputError(
                f"train.batch_size={cfg.batch_size} (the global batch) must be divisible by the "
                f"number of processes ({d.world_size})"
            )
        if len(self.shards.val) < n_ctx + 2:
            raise InputError(
                f"--data {self.data_dir}: the validation split has {len(self.shards.val)} tokens, too "
                f"few for one window of n_ctx={n_ctx}; rebuild the corpus with a larger --val-fraction"
            )
        self.sampler = BatchSampler(
            self.shards.train, cfg.batch_size // d.world_size, n_ctx, cfg.seed, d.rank, d.world_size
        )
        eval_rng = np.random.default_rng([cfg.seed, 1])
        self.eval_batches = [
            tuple(t.to(self.device) for t in sample_batch(self.shards.val, cfg.batch_size, n_ctx, eval_rng))
            for _ in range(cfg.eval_batches)
        ]

    def _setup_model(self) -> None:
        """The seeded model, its sparsifier (sparse runs), the decayed parameters and Adam."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = SparseTransformer(self.run.model)
        self.sparsifier = (
            WeightSparsifier(self.model, cfg.target_density, cfg.embedding_density_factor, cfg.min_per_channel)
            if cfg.sparse and cfg.target_density is not None
            else None
        )
        self.model.to(self.device).set_execution(cfg.execution)
        self.named_params = list(self.model.named_parameters())
        self.params = [p for _, p in self.named_params]
        self.decay = [p for _, p in weight_decay_params(self.model)]
        self.optimizer = make_optimizer(self.params, cfg)

    def state_dict(self) -> dict[str, Any]:
        """The trainer's own resumable state (the model and optimizer are saved beside it),
        including the train loss summed since the last metrics row, so that a resumed run logs
        the same rows. Under torchrun every rank calls it (that sum is over ranks)."""
        window_loss = self.window.loss.clone()
        if self.d.world_size > 1:
            dist.all_reduce(window_loss)
        return {
            "tokens": self.tokens,
            "elapsed": self.elapsed_before + time.perf_counter() - self._t_start,
            "sampler": self.sampler.state_dict(),
            "last_train_loss": self.last_loss,
            "window_loss": window_loss.item(),
            "window_steps": self.window.steps,
        }

    def load_state_dict(self, state: ResumeState) -> None:
        """Continue from a saved state: weights, optimizer, data position, RNG and counters."""
        self.model.load_state_dict(state.model_state)
        self.optimizer.load_state_dict(state.optimizer_state)
        self.sampler.load_state_dict(state.sampler)
        torch.set_rng_state(state.torch_rng)
        self.step_count, self.tokens, self.elapsed_before = state.step, state.tokens, state.elapsed
        self.last_loss, self.saved_step = state.last_train_loss, state.step
        self.window.loss.fill_(state.window_loss if self.d.main else 0.0)  # rank 0 holds the ranks' sum
        self.window.steps = state.window_steps

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch: next-token cross-entropy (bf16 forward if asked)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.net(x)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))

    def step(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer step: forward, backward, gradient RMS normalization, Adam, the L0
        projection at the next kept fraction, decoupled weight decay. Returns the loss, the
        gradient RMS and the learning rate."""
        cfg, step = self.cfg, self.step_count
        lr = learning_rate(step, cfg, kept_fraction(step, cfg))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = (t.to(self.device, non_blocking=True) for t in self.sampler.next_batch())
        support = self.support_masks(step)
        set_grad_support(self.model, support is not None)
        loss = self.loss(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if support is not None:
            self.sparsifier.keep_support_(support, grads=True)
        grad_rms = _grad_rms_(self.params, cfg.grad_rms_normalize)
        self.optimizer.step()
        with torch.no_grad():
            if support is not None:
                self.sparsifier.keep_support_(support)
            elif self.sparsifier is not None:
                self.sparsifier.project_(kept_fraction(step + 1, cfg))
            if cfg.weight_decay:
                for p in self.decay:
                    p.mul_(1.0 - lr * cfg.weight_decay)
        self.step_count += 1
        self.tokens += self.tokens_per_step
        if not torch.isfinite(loss):
            raise self._diverged(f"loss {loss.item()}")
        return loss, grad_rms, lr

    def support_masks(self, step: int) -> dict[str, torch.Tensor] | None:
        """The support to keep at a support-mode step (train.support_every > 1), else None:
        once the kept fraction stops annealing, every step but each K-th keeps the support
        of the last projection and gets gradients only there."""
        cfg = self.cfg
        if self.sparsifier is None or cfg.support_every <= 1 or step % cfg.support_every == 0:
            return None
        if kept_fraction(step + 1, cfg) != kept_fraction(step, cfg):
            return None  # still annealing: every step re-selects
        return self.sparsifier.supports()

    def _diverged(self, what: str) -> InputError:
        """The error that stops a run whose loss or weights are no longer finite."""
        if self.saved_step is None:
            then = f"{self.out_dir} has no saved state, so the same --out starts over"
        else:
            then = (
                f"{self.out_dir} keeps its checkpoints up to step {self.saved_step}, which --resume "
                "continues only with the same recipe, so choose another --out"
            )
        return InputError(
            f"training diverged at step {self.step_count} ({what}); lower train.lr (now "
            f"{self.cfg.lr:g}) or raise train.warmup_frac and train again: {then}"
        )

    def _check_weights(self) -> None:
        """Raise the divergence error if a weight is NaN or infinite (before saving them)."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.params]).tolist()
        bad = [name for (name, _), ok in zip(self.named_params, finite, strict=True) if not ok]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise self._diverged(f"non-finite weights in {bad[0]}{more}")

    def evaluate(self) -> float:
        """Mean loss over the fixed validation batches."""
        return _evaluate(self.model, self.eval_batches)

    def log(self, window: _Window, lr: float, grad_rms: torch.Tensor, evaluating: bool) -> None:
        """Average the window's train loss over ranks; rank 0 evaluates (when due) and
        appends one metrics row."""
        if self.d.world_size > 1:
            dist.all_reduce(window.loss)
            window.loss /= self.d.world_size
        self.last_loss = window.loss.item() / window.steps
        now = time.perf_counter()
        if self.d.main:
            if evaluating:
                self.val_loss = self.evaluate()
            row = {
                "step": self.step_count,
                "tokens": self.tokens,
                "lr": lr,
                "train_loss": self.last_loss,
                **({"val_loss": self.val_loss} if evaluating else {}),
                "grad_rms": grad_rms.item(),
                "kept_fraction": kept_fraction(self.step_count, self.cfg),
                "kept": {r.name: r.fraction for r in sparsity_report(self.model).rows if r.kind != "exempt"},
                "step_time": (now - window.t0) / window.steps,
                "tokens_per_s": self.tokens_per_step * window.steps / (now - window.t0),
                "wall_time": self.elapsed_before + now - self._t_start,
                **self.extra_metrics(evaluating),
            }
            append_metrics(self.out_dir, row)
            self.bar.set_postfix(
                loss=f"{self.last_loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}", kept=f"{row['kept_fraction']:.4f}"
            )
        window.reset()

    def checkpoint(self) -> None:
        """Rank 0 saves a resumable state folder (model, optimizer, RNG, trainer state), once
        the weights are checked to be finite."""
        self._check_weights()
        trainer = self.state_dict()
        if self.d.main:
            save_state(self.out_dir, self.step_count, self.model, self.optimizer, trainer, self.cfg.keep_checkpoints,
                       extra=self.extra_tensors())
        self.saved_step = self.step_count

    def fit(self) -> TrainResult:
        """Run the remaining steps with logging, evaluation and checkpoints; then `finish`.
        The run folder's lock is released however it ends; Ctrl-C raises TrainingInterrupted."""
        cfg = self.cfg
        self._start_step, self._t_start = self.step_count, time.perf_counter()
        self.window.t0 = self._t_start
        self.bar = tqdm(
            total=cfg.steps, initial=self.step_count, desc="train", unit="step", file=sys.stderr,
            disable=not (self.progress and self.d.main), dynamic_ncols=True,
        )
        try:
            while self.step_count < cfg.steps:
                loss, grad_rms, lr = self.step()
                self.window.add(loss)
                self.bar.update(1)
                final = self.step_count == cfg.steps
                evaluating = final or (cfg.eval_every > 0 and self.step_count % cfg.eval_every == 0)
                if self.step_count % cfg.log_every == 0 or evaluating:
                    self.log(self.window, lr, grad_rms, evaluating)
                if final or (cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0):
                    self.checkpoint()
            self.bar.close()
            return self.finish()
        except KeyboardInterrupt as exc:
            raise TrainingInterrupted(self.step_count, self.saved_step, self.out_dir) from exc
        finally:
            self.bar.close()
            self.close()

    def training_record(self, identical: bool | None) -> dict[str, Any]:
        """The training.json content of the finished run."""
        t_now = time.perf_counter()
        report = sparsity_report(self.model)
        session_tokens = (self.step_count - self._start_step) * self.tokens_per_step
        return {
            "recipe": self.run.to_dict(),
            "sparse": self.cfg.sparse,
            "steps": self.step_count,
            "tokens": self.tokens,
            "final_train_loss": self.last_loss,
            "final_val_loss": self.val_loss,
            "corpus_manifest_hash": self.shards.manifest_hash,
            "data_dir": str(self.data_dir.resolve()),
            "nonzeros": {
                "totals": report.to_dict()["totals"],
                "tensors": {r.name: r.nonzero for r in report.rows},
            },
            "world_size": self.d.world_size,
            "ranks_identical": identical,
            "device": str(self.device),
            "autocast": "bf16" if self.bf16 else "none",
            "seconds": self.elapsed_before + t_now - self._t_start,
            "tokens_per_second": session_tokens / max(t_now - self._t_start, 1e-9),
            "torch_version": torch.__version__,
            "library_version": __version__,
        }

    def finish(self) -> TrainResult:
        """Write the final model and training.json (rank 0) and return the result."""
        if self.val_loss is None and self.d.main:  # a resume of an already finished run
            self.val_loss = self.evaluate()
        self._check_weights()
        identical = ranks_identical(self.trained_module(), self.d)  # the model, and what else trains with it
        training = self.training_record(identical)
        if self.d.main:
            write_final(self.out_dir, self.model, self.shards.tokenizer_path, training)
        if self.d.world_size > 1:
            dist.barrier()
        if identical is False:
            print("warning: ranks ended with different weights (see training.json)", file=sys.stderr)
        val = self.val_loss
        return TrainResult(
            out_dir=self.out_dir,
            steps=self.step_count,
            tokens=self.tokens,
            final_train_loss=self.last_loss,
            final_val_loss=float(val) if val is not None else float("nan"),
            seconds=training["seconds"],
            tokens_per_second=training["tokens_per_second"],
            training=training,
        )


@dataclass
class _Window:
    """The summed train loss of the steps since the last metrics row."""

    loss: torch.Tensor
    steps: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss.detach()
        self.steps += 1

    def reset(self) -> None:
        self.loss.zero_()
        self.steps, self.t0 = 0, time.perf_counter()
