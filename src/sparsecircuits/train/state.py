"""The training-run folder: resolved config, metrics, resumable states and the final model.

RUN/
  .lock                held while a process trains into RUN (sparsecircuits.runlock)
  run_config.json      the resolved config, the corpus it trained on, the world size
  metrics.jsonl        one JSON line per logged step
  state/step-NNNNNNNN/ resumable state: model/ (a checkpoint folder), optimizer.pt (optimizer
                       state and torch RNG, loaded with weights_only=True), trainer.json (step,
                       tokens, wall time, data-sampler position, the loss summed since the
                       last metrics row)
  config.json, model.safetensors, tokenizer.json, training.json
                       the final model: `load_checkpoint(RUN)` opens it

Every state folder is written to a temp name and renamed, so a crash leaves the previous
complete state; `--resume` picks the newest that loads (warning about damaged newer ones),
and the temp names a killed save left are removed by the next run under the lock.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsecircuits.atomic import atomic_dir, atomic_write_text, remove_orphans
from sparsecircuits.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    TRAINING_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    read_weights,
    save_checkpoint,
)
from sparsecircuits.data.shards import TokenShards
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json, read_text
from sparsecircuits.model import SparseTransformer
from sparsecircuits.runlock import LOCK_FILE
from sparsecircuits.tensorio import load_torch_file, save_tensors, save_torch
from sparsecircuits.train.config import RESUMABLE_CHANGES, RunConfig

RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.jsonl"
STATE_DIR = "state"
STATE_PREFIX = "step-"
FINAL_STAGING = ".final-staging"


@dataclass
class ResumeState:
    """What a resumable state folder holds, loaded (tensors on CPU)."""

    path: Path
    step: int
    tokens: int
    elapsed: float
    sampler: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    torch_rng: torch.Tensor
    last_train_loss: float | None
    window_loss: float = 0.0  # train loss summed over the steps since the last metrics row
    window_steps: int = 0
    extra: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # NAME.safetensors files


def run_record(config: RunConfig, shards: TokenShards, data_dir: Path, world_size: int) -> dict:
    """The content of run_config.json (the corpus path absolute, with both of its hashes)."""
    data = {"path": str(data_dir.resolve()), "manifest_hash": shards.manifest_hash,
            "sources_hash": shards.sources_hash}
    return {**config.to_dict(), "data": data, "world_size": world_size}


def has_saved_run(out_dir: Path) -> bool:
    """Does `out_dir` hold a run that `--resume` can continue (a saved state or a final model)?"""
    return out_dir.is_dir() and (bool(state_dirs(out_dir)) or (out_dir / CONFIG_FILE).exists())


def prepare_run_dir(out_dir: Path, resume: bool) -> None:
    """Check that `out_dir` can take a new run (or holds one to resume).

    A run that stopped before its first checkpoint left nothing to lose: a new run (the
    same command without --resume) starts it over in the same folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the run")
    started = (out_dir / RUN_CONFIG_FILE).exists() or (out_dir / STATE_DIR).exists()
    saved = has_saved_run(out_dir)
    others = [p.name for p in out_dir.iterdir() if p.name != LOCK_FILE] if out_dir.is_dir() else []
    if others and not started:
        raise InputError(
            f"--out {out_dir} is a folder of other things ({', '.join(sorted(others)[:3])}), not a training "
            "run; it is left untouched, choose another --out"
        )
    if resume and not started:
        raise InputError(
            f"--resume: {out_dir} holds no training run ({RUN_CONFIG_FILE} missing); "
            "start it without --resume"
        )
    if resume and not saved:
        raise InputError(
            f"--resume: {out_dir} has no saved state (the run stopped before its first "
            "checkpoint); run the same command without --resume to start it over"
        )
    if not resume and saved:
        raise InputError(
            f"--out {out_dir} already holds a training run; pass --resume to continue it "
            "or choose another --out"
        )


def clean_run_dir(out_dir: Path) -> None:
    """Remove what killed writers left in the run folder: temp names of atomic writes
    (in RUN and RUN/state) and the final model's staging folder. Call under the run lock."""
    remove_orphans(out_dir, locked=True)
    remove_orphans(out_dir / STATE_DIR, locked=True)
    shutil.rmtree(out_dir / FINAL_STAGING, ignore_errors=True)


def check_resume_compatible(out_dir: Path, record: dict) -> None:
    """Raise InputError unless the saved run has the same model, recipe and corpus."""
    saved = read_json(out_dir / RUN_CONFIG_FILE, "the run folder is damaged: start a new --out")
    if not isinstance(saved, dict):
        raise InputError(f"--resume: {out_dir / RUN_CONFIG_FILE} is not a JSON object; the run folder is damaged")
    problems = []
    if saved.get("model") != record["model"]:
        diff = _diff(saved.get("model", {}), record["model"])
        problems.append(f"the model differs ({diff})")
    saved_train = {k: v for k, v in saved.get("train", {}).items() if k not in RESUMABLE_CHANGES}
    new_train = {k: v for k, v in record["train"].items() if k not in RESUMABLE_CHANGES}
    if saved_train != new_train:
        problems.append(f"the training recipe differs ({_diff(saved_train, new_train)})")
    saved_data = saved.get("data", {})
    saved_hash = saved_data.get("manifest_hash")
    # A run started before the corpus hash covered the tokenizer recorded the sources hash.
    same_old = "sources_hash" not in saved_data and saved_hash == record["data"]["sources_hash"]
    if saved_hash != record["data"]["manifest_hash"] and not same_old:
        problems.append(
            f"the corpus differs (manifest {saved_hash} was trained on, --data has "
            f"{record['data']['manifest_hash']})"
        )
    for table in sorted((set(saved) | set(record)) - {"model", "train", "data", "world_size"}):
        if saved.get(table) != record.get(table):  # a subclass's own settings (e.g. bridges)
            problems.append(f"the {table} settings differ ({_diff(saved.get(table) or {}, record.get(table) or {})})")
    if problems:
        raise InputError(
            f"--resume: {out_dir} is incompatible with this command: {'; '.join(problems)}. "
            "Resume with the run's own config (its run_config.json works as --config) or "
            "start a new --out"
        )


def _diff(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def write_run_config(out_dir: Path, record: dict) -> None:
    """Write run_config.json (atomically)."""
    atomic_write_text(out_dir / RUN_CONFIG_FILE, json.dumps(record, indent=2) + "\n")


def state_dirs(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete state folders as (step, path), oldest first."""
    root = out_dir / STATE_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(STATE_PREFIX) and p.name[len(STATE_PREFIX):].isdigit():
            found.append((int(p.name[len(STATE_PREFIX):]), p))
    return sorted(found)


def save_state(
    out_dir: Path,
    step: int,
    model: SparseTransformer,
    optimizer: torch.optim.Optimizer,
    trainer: dict[str, Any],
    keep: int,
    extra: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write state/step-N atomically, then drop all but the newest `keep` (0 keeps all).
    `extra` tensor files (a trainer subclass's own modules) are saved as NAME.safetensors.

    States after `step` are dropped too: they are damaged ones that the resume this run
    continues from skipped."""
    path = out_dir / STATE_DIR / f"{STATE_PREFIX}{step:08d}"
    with atomic_dir(path) as tmp:
        save_checkpoint(model, tmp / "model")
        save_torch({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **trainer}) + "\n", encoding="utf-8")
        for name, tensors in (extra or {}).items():
            save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / f"{name}.safetensors")
    found = state_dirs(out_dir)
    older = [p for s, p in found if s <= step]
    for old in [p for s, p in found if s > step] + (older[:-keep] if keep else []):
        shutil.rmtree(old, ignore_errors=True)
    return path


def _why(exc: BaseException) -> str:
    """A one-line reason for a load failure."""
    if isinstance(exc, KeyError):
        return f"missing key {exc}"
    if isinstance(exc, InputError):  # already says which file and what is wrong
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def load_state(path: Path, step: int) -> ResumeState:
    """Load one state folder, executing no code (JSON, weights_only torch.load, safetensors);
    InputError naming the damaged file."""
    try:
        trainer = read_json(path / "trainer.json", "the state is damaged")
        if trainer["step"] != step:
            raise ValueError(f"records step {trainer['step']}, not {step}")
        counters = int(trainer["tokens"]), float(trainer["elapsed"]), dict(trainer["sampler"])
        window = float(trainer.get("window_loss", 0.0)), int(trainer.get("window_steps", 0))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"trainer.json: {_why(exc)}") from exc
    try:
        blob = load_torch_file(path / "optimizer.pt", "the state is damaged")
        if not isinstance(blob, dict):
            raise TypeError(f"holds a {type(blob).__name__}, not a dict")
        optimizer_state, torch_rng = dict(blob["optimizer"]), blob["torch_rng"]
    except (OSError, KeyError, TypeError, InputError) as exc:
        raise InputError(f"optimizer.pt: {_why(exc)}") from exc
    extra = {p.name[: -len(".safetensors")]: read_weights(p) for p in sorted(path.glob("*.safetensors"))}
    return ResumeState(
        path=path,
        step=step,
        tokens=counters[0],
        elapsed=counters[1],
        sampler=counters[2],
        model_state=load_checkpoint(path / "model").model.state_dict(),
        optimizer_state=optimizer_state,
        torch_rng=torch_rng,
        last_train_loss=trainer.get("last_train_loss"),
        window_loss=window[0],
        window_steps=window[1],
        extra=extra,
    )


def resume_newest(
    out_dir: Path, apply: Callable[[ResumeState], None]
) -> tuple[ResumeState, list[tuple[Path, str]]]:
    """Load the newest state of `out_dir` that loads and `apply`s cleanly (the trainer's
    `load_state_dict`), falling back to older ones; returns it and the skipped (path, reason)
    pairs. InputError naming the folder when none does."""
    skipped: list[tuple[Path, str]] = []
    for step, path in reversed(state_dirs(out_dir)):
        try:
            state = load_state(path, step)
            apply(state)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:  # InputError is a ValueError
            skipped.append((path, str(exc) if isinstance(exc, InputError) else _why(exc)))
            continue
        return state, skipped
    reasons = "; ".join(f"{path.name}: {why}" for path, why in skipped) or "none saved"
    raise InputError(
        f"--resume: no saved state under {out_dir / STATE_DIR} loads ({reasons}); delete "
        f"{out_dir / STATE_DIR} and run without --resume to start over, or choose another --out"
    )


def truncate_metrics(out_dir: Path, step: int) -> None:
    """Drop metric lines logged after `step` (they are re-logged by the resumed run)."""
    path = out_dir / METRICS_FILE
    if not path.exists():
        return
    kept = []
    for line in read_text(path, "fix or delete it").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a crash
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def append_metrics(out_dir: Path, row: dict[str, Any]) -> None:
    """Append one JSON line to metrics.jsonl."""
    with open(out_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def write_final(
    out_dir: Path, model: SparseTransformer, tokenizer: Path, training: dict[str, Any]
) -> None:
    """Make RUN a model checkpoint folder: each file is staged and renamed, config.json last."""
    staging = save_checkpoint(model, out_dir / FINAL_STAGING, tokenizer=tokenizer, training=training)
    for name in (WEIGHTS_FILE, TOKENIZER_FILE, TRAINING_FILE, CONFIG_FILE):
        os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
