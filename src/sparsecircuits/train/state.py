"""The training-run folder: resolved config, metrics, resumable states and the final model.

RUN/
  run_config.json      the resolved config, the corpus it trained on, the world size
  metrics.jsonl        one JSON line per logged step
  state/step-NNNNNNNN/ resumable state: model/ (a checkpoint folder), optimizer.pt (optimizer
                       state and torch RNG, loaded with weights_only=True), trainer.json (step,
                       tokens, wall time, data-sampler position)
  config.json, model.safetensors, tokenizer.json, training.json
                       the final model: `load_checkpoint(RUN)` opens it

Every state folder is written to a temp name and renamed, so a crash leaves the previous
complete state; `--resume` picks the newest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsecircuits.atomic import atomic_dir, atomic_write_text
from sparsecircuits.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    TRAINING_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    save_checkpoint,
)
from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.train.config import RESUMABLE_CHANGES, RunConfig

RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.jsonl"
STATE_DIR = "state"
STATE_PREFIX = "step-"


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


def run_record(config: RunConfig, manifest_hash: str, data_dir: Path, world_size: int) -> dict:
    """The content of run_config.json."""
    return {
        **config.to_dict(),
        "data": {"path": str(data_dir), "manifest_hash": manifest_hash},
        "world_size": world_size,
    }


def prepare_run_dir(out_dir: Path, resume: bool) -> None:
    """Check that `out_dir` can take a new run (or holds one to resume)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the run")
    has_run = (out_dir / RUN_CONFIG_FILE).exists() or (out_dir / STATE_DIR).exists()
    if resume and not has_run:
        raise InputError(
            f"--resume: {out_dir} holds no training run ({RUN_CONFIG_FILE} missing); "
            "start it without --resume"
        )
    if not resume and has_run:
        raise InputError(
            f"--out {out_dir} already holds a training run; pass --resume to continue it "
            "or choose another --out"
        )


def check_resume_compatible(out_dir: Path, record: dict) -> None:
    """Raise InputError unless the saved run has the same model, recipe and corpus."""
    path = out_dir / RUN_CONFIG_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"--resume: cannot read {path} ({exc}); the run folder is damaged") from exc
    problems = []
    if saved.get("model") != record["model"]:
        diff = _diff(saved.get("model", {}), record["model"])
        problems.append(f"the model differs ({diff})")
    saved_train = {k: v for k, v in saved.get("train", {}).items() if k not in RESUMABLE_CHANGES}
    new_train = {k: v for k, v in record["train"].items() if k not in RESUMABLE_CHANGES}
    if saved_train != new_train:
        problems.append(f"the training recipe differs ({_diff(saved_train, new_train)})")
    saved_hash = saved.get("data", {}).get("manifest_hash")
    if saved_hash != record["data"]["manifest_hash"]:
        problems.append(
            f"the corpus differs (manifest {saved_hash} was trained on, --data has "
            f"{record['data']['manifest_hash']})"
        )
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
) -> Path:
    """Write state/step-N atomically, then drop all but the newest `keep` (0 keeps all)."""
    path = out_dir / STATE_DIR / f"{STATE_PREFIX}{step:08d}"
    with atomic_dir(path) as tmp:
        save_checkpoint(model, tmp / "model")
        torch.save(
            {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
            tmp / "optimizer.pt",
        )
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **trainer}) + "\n", encoding="utf-8")
    if keep:
        for _, old in state_dirs(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def load_latest_state(out_dir: Path) -> ResumeState:
    """Load the newest complete state folder of a run."""
    found = state_dirs(out_dir)
    if not found:
        raise InputError(
            f"--resume: {out_dir / STATE_DIR} has no saved state (the run stopped before its "
            "first checkpoint); start it again without --resume into a new --out"
        )
    step, path = found[-1]
    try:
        trainer = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
        blob = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError, RuntimeError) as exc:
        raise InputError(f"--resume: state {path} is unreadable ({exc}); delete it to use an older one") from exc
    model_state = load_checkpoint(path / "model").model.state_dict()
    return ResumeState(
        path=path,
        step=step,
        tokens=int(trainer["tokens"]),
        elapsed=float(trainer["elapsed"]),
        sampler=trainer["sampler"],
        model_state=model_state,
        optimizer_state=blob["optimizer"],
        torch_rng=blob["torch_rng"],
        last_train_loss=trainer.get("last_train_loss"),
    )


def truncate_metrics(out_dir: Path, step: int) -> None:
    """Drop metric lines logged after `step` (they are re-logged by the resumed run)."""
    path = out_dir / METRICS_FILE
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
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
    staging = save_checkpoint(model, out_dir / ".final-staging", tokenizer=tokenizer, training=training)
    for name in (WEIGHTS_FILE, TOKENIZER_FILE, TRAINING_FILE, CONFIG_FILE):
        os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
