"""Weight-sparse training (docs/method.md section 2): one loop for sparse and dense runs.

Every optimizer step: forward and backward on a batch of random windows, gradients
normalized to global RMS 1, Adam (betas 0.9/0.95, eps 0.1), then the L0 projection of
every weight onto its budget at the scheduled kept fraction, then decoupled weight decay.
The dense baseline is the same loop with the projection off. Under `torchrun` the same
code trains with DistributedDataParallel (gloo on CPU, nccl on GPU); every rank draws its
slice of one global batch, so N processes reproduce one process with the same global
batch, and only rank 0 writes. A run resumes bit for bit (on CPU) from its newest state.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
from sparsecircuits.model.sparsity import WeightSparsifier, kept_fraction_schedule, sparsity_report
from sparsecircuits.train_config import RunConfig, TrainConfig, apply_overrides, load_run_config
from sparsecircuits.train_state import (
    ResumeState,
    append_metrics,
    check_resume_compatible,
    load_latest_state,
    prepare_run_dir,
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


def learning_rate(step: int, cfg: TrainConfig, kept: float = 1.0) -> float:
    """Learning rate of optimizer step `step` (0-based) when matrices keep `kept` of their entries.

    Linear warmup over warmup_frac of the steps, then linear decay towards zero, times
    sqrt(target_density / kept) in sparse runs with `sharkfin` (lower while still dense).
    """
    warm = int(cfg.warmup_frac * cfg.steps)
    mult = (step + 1) / warm if step < warm else (cfg.steps - step) / max(1, cfg.steps - warm)
    if cfg.sharkfin and cfg.sparse:
        assert cfg.target_density is not None
        mult *= math.sqrt(cfg.target_density / kept)
    return cfg.lr * mult


def kept_fraction(step: int, cfg: TrainConfig) -> float:
    """Scheduled kept fraction of the matrices after `step` optimizer steps (1.0 when dense)."""
    if not cfg.sparse:
        return 1.0
    assert cfg.target_density is not None
    return kept_fraction_schedule(
        step, cfg.steps, cfg.target_density, cfg.anneal_start_frac, cfg.anneal_end_frac, cfg.anneal_shape
    )


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def native_bf16(device: torch.device) -> bool:
    """Whether the device has native bfloat16 matmuls, where bf16 autocast is faster than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private but stable in torch.cpu
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _setup(cfg: TrainConfig) -> tuple[_Dist, torch.device]:
    """Join the torchrun process group (if launched so) and pick the device."""
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device='cuda' but no CUDA device is available; use device=cpu or auto")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = _Dist()
    if world > 1:
        d.world_size, d.rank = world, int(os.environ["RANK"])
        d.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if want == "cuda" else "gloo")
            d.owns_group = True
    if want == "cuda":
        torch.cuda.set_device(d.local_rank)
        return d, torch.device("cuda", d.local_rank)
    return d, torch.device("cpu")


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


def _adam(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Adam:
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


def _ranks_identical(model: SparseTransformer, d: _Dist) -> bool | None:
    """Whether every rank holds the same weights (sum, abs-sum and nonzero count per tensor)."""
    if d.world_size == 1:
        return None
    with torch.no_grad():
        mine = torch.stack(
            [
                torch.stack([p.double().sum(), p.double().abs().sum(), (p != 0).sum().double()])
                for p in model.parameters()
            ]
        ).cpu()
    if dist.get_backend() == "nccl":
        mine = mine.cuda()
    gathered = [torch.empty_like(mine) for _ in range(d.world_size)]
    dist.all_gather(gathered, mine)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def train(
    config: RunConfig | str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> TrainResult:
    """Train a model on a corpus folder into a run folder (see train_state for the layout).

    `config` is a RunConfig, a preset name or a config file; `overrides` are `field=value`
    strings. With `resume`, continue from the newest saved state of `out_dir`.
    """
    run = load_run_config(config, overrides) if not isinstance(config, RunConfig) else config
    if isinstance(config, RunConfig) and overrides:
        run = apply_overrides(run, overrides)
    cfg = run.train
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    d, device = _setup(cfg)
    try:
        return _train(run, data_dir, out_dir, resume, progress, d, device)
    finally:
        if d.owns_group:
            dist.destroy_process_group()


def _train(
    run: RunConfig,
    data_dir: Path,
    out_dir: Path,
    resume: bool,
    progress: bool,
    d: _Dist,
    device: torch.device,
) -> TrainResult:
    cfg = run.train
    shards = _open_data(data_dir, run)
    if cfg.batch_size % d.world_size:
        raise InputError(
            f"train.batch_size={cfg.batch_size} (the global batch) must be divisible by the "
            f"number of processes ({d.world_size})"
        )
    n_ctx = run.model.n_ctx
    if len(shards.val) < n_ctx + 2:
        raise InputError(
            f"--data {data_dir}: the validation split has {len(shards.val)} tokens, too few for "
            f"one window of n_ctx={n_ctx}; rebuild the corpus with a larger --val-fraction"
        )
    sampler = BatchSampler(shards.train, cfg.batch_size // d.world_size, n_ctx, cfg.seed, d.rank, d.world_size)
    eval_rng = np.random.default_rng([cfg.seed, 1])
    eval_batches = [
        tuple(t.to(device) for t in sample_batch(shards.val, cfg.batch_size, n_ctx, eval_rng))
        for _ in range(cfg.eval_batches)
    ]
    record = run_record(run, shards.manifest_hash, data_dir, d.world_size)
    prepare_run_dir(out_dir, resume)
    state: ResumeState | None = None
    if resume:
        check_resume_compatible(out_dir, record)
        state = load_latest_state(out_dir)
    if d.world_size > 1:
        dist.barrier()  # every rank has checked the run folder before rank 0 writes to it

    torch.manual_seed(cfg.seed)
    model = SparseTransformer(run.model)
    sparsifier = (
        WeightSparsifier(model, cfg.target_density, cfg.embedding_density_factor, cfg.min_per_channel)
        if cfg.sparse and cfg.target_density is not None
        else None
    )
    model.to(device)
    params = list(model.parameters())
    decay = [p for _, p in weight_decay_params(model)]
    optimizer = _adam(params, cfg)
    step, tokens, elapsed_before, last_loss = 0, 0, 0.0, None
    if state is not None:
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
        sampler.load_state_dict(state.sampler)
        torch.set_rng_state(state.torch_rng)
        step, tokens, elapsed_before = state.step, state.tokens, state.elapsed
        last_loss = state.last_train_loss
    elif sparsifier is not None and kept_fraction(0, cfg) < 1.0:
        sparsifier.project_(kept_fraction(0, cfg))  # no anneal: start from a sparse init
    if d.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if state is not None:
            truncate_metrics(out_dir, step)
        else:
            write_run_config(out_dir, record)
    net: torch.nn.Module = model
    if d.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    tokens_per_step = cfg.batch_size * n_ctx
    bf16 = cfg.autocast == "bf16" or (cfg.autocast == "auto" and native_bf16(device))
    start_step, t_start = step, time.perf_counter()
    window_loss = torch.zeros((), device=device)
    window_steps, t_window, val_loss = 0, time.perf_counter(), None
    bar = tqdm(
        total=cfg.steps, initial=step, desc="train", unit="step", file=sys.stderr,
        disable=not (progress and d.main), dynamic_ncols=True,
    )
    while step < cfg.steps:
        kept = kept_fraction(step, cfg)
        lr = learning_rate(step, cfg, kept)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = (t.to(device, non_blocking=True) for t in sampler.next_batch())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_rms = _grad_rms_(params, cfg.grad_rms_normalize)
        optimizer.step()
        with torch.no_grad():
            if sparsifier is not None:
                sparsifier.project_(kept_fraction(step + 1, cfg))
            if cfg.weight_decay:
                for p in decay:
                    p.mul_(1.0 - lr * cfg.weight_decay)
        window_loss += loss.detach()
        window_steps += 1
        step += 1
        tokens += tokens_per_step
        bar.update(1)
        final = step == cfg.steps
        evaluating = final or (cfg.eval_every > 0 and step % cfg.eval_every == 0)
        if step % cfg.log_every == 0 or evaluating:
            if d.world_size > 1:
                dist.all_reduce(window_loss)
                window_loss /= d.world_size
            last_loss = window_loss.item() / window_steps
            now = time.perf_counter()
            if d.main:
                if evaluating:
                    val_loss = _evaluate(model, eval_batches)
                row = {
                    "step": step,
                    "tokens": tokens,
                    "lr": lr,
                    "train_loss": last_loss,
                    **({"val_loss": val_loss} if evaluating else {}),
                    "grad_rms": grad_rms.item(),
                    "kept_fraction": kept_fraction(step, cfg),
                    "kept": {
                        r.name: r.fraction for r in sparsity_report(model).rows if r.kind != "exempt"
                    },
                    "step_time": (now - t_window) / window_steps,
                    "tokens_per_s": tokens_per_step * window_steps / (now - t_window),
                    "wall_time": elapsed_before + now - t_start,
                }
                append_metrics(out_dir, row)
                bar.set_postfix(
                    loss=f"{last_loss:.3f}",
                    tok_s=f"{row['tokens_per_s']:.0f}",
                    kept=f"{row['kept_fraction']:.4f}",
                )
            window_loss.zero_()
            window_steps, t_window = 0, time.perf_counter()
        if final or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            trainer = {
                "tokens": tokens,
                "elapsed": elapsed_before + time.perf_counter() - t_start,
                "sampler": sampler.state_dict(),
                "last_train_loss": last_loss,
            }
            if d.main:
                save_state(out_dir, step, model, optimizer, trainer, cfg.keep_checkpoints)
    bar.close()
    if val_loss is None and d.main:  # a resume of an already finished run
        val_loss = _evaluate(model, eval_batches)
    identical = _ranks_identical(model, d)
    seconds = elapsed_before + time.perf_counter() - t_start
    session_tokens = (step - start_step) * tokens_per_step
    report = sparsity_report(model)
    training = {
        "recipe": run.to_dict(),
        "sparse": cfg.sparse,
        "steps": step,
        "tokens": tokens,
        "final_train_loss": last_loss,
        "final_val_loss": val_loss,
        "corpus_manifest_hash": shards.manifest_hash,
        "data_dir": str(data_dir),
        "nonzeros": {
            "totals": report.to_dict()["totals"],
            "tensors": {r.name: r.nonzero for r in report.rows},
        },
        "world_size": d.world_size,
        "ranks_identical": identical,
        "device": str(device),
        "autocast": "bf16" if bf16 else "none",
        "seconds": seconds,
        "tokens_per_second": session_tokens / max(time.perf_counter() - t_start, 1e-9),
        "torch_version": torch.__version__,
        "library_version": __version__,
    }
    if d.main:
        write_final(out_dir, model, shards.tokenizer_path, training)
    if d.world_size > 1:
        dist.barrier()
    if identical is False:
        print("warning: ranks ended with different weights (see training.json)", file=sys.stderr)
    return TrainResult(
        out_dir=out_dir,
        steps=step,
        tokens=tokens,
        final_train_loss=last_loss,
        final_val_loss=float(val_loss) if val_loss is not None else float("nan"),
        seconds=seconds,
        tokens_per_second=training["tokens_per_second"],
        training=training,
    )
