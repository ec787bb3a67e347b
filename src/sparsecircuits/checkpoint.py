"""Model checkpoint folders: config.json + model.safetensors (+ tokenizer.json, training.json).

Loading executes no code (JSON and safetensors only) and checks every tensor against the
config: a missing, unexpected, mis-shaped or corrupt tensor is an error, never a partial load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparsecircuits.errors import CheckpointError, InputError
from sparsecircuits.model import ModelConfig, SparseTransformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAINING_FILE = "training.json"


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise InputError(f"{path} already exists; choose another output path")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary name and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tensors_to_save(model: SparseTransformer) -> dict[str, torch.Tensor]:
    """Parameters and buffers, with the tied unembedding stored once (as the embedding)."""
    state = model.state_dict()
    if model.cfg.tied_embeddings:
        state.pop("unembed.weight", None)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def model_fingerprint(model: SparseTransformer) -> str:
    """A short hash of the config and every tensor: identifies a model's exact weights."""
    h = hashlib.sha256(model.cfg.to_json().encode())
    for name, t in sorted(_tensors_to_save(model).items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Checkpoint:
    """A loaded checkpoint folder."""

    model: SparseTransformer
    path: Path
    tokenizer: Any | None = None  # tokenizers.Tokenizer when tokenizer.json is present
    training: dict | None = None

    @property
    def config(self) -> ModelConfig:
        """The model's config."""
        return self.model.cfg

    @property
    def tokenizer_path(self) -> Path | None:
        """The tokenizer.json of this checkpoint, if any."""
        p = self.path / TOKENIZER_FILE
        return p if p.exists() else None


def save_checkpoint(
    model: SparseTransformer,
    path: str | Path,
    tokenizer: Any | None = None,
    training: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically; `tokenizer` is a tokenizers.Tokenizer or a path."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_FILE).write_text(model.cfg.to_json() + "\n", encoding="utf-8")
        save_file(_tensors_to_save(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            if isinstance(tokenizer, (str, Path)):
                shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
            else:
                tokenizer.save(str(tmp / TOKENIZER_FILE))
        if training is not None:
            (tmp / TRAINING_FILE).write_text(json.dumps(training, indent=2) + "\n", encoding="utf-8")
    return path


def load_config(path: str | Path) -> ModelConfig:
    """Read and validate a checkpoint folder's config.json."""
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing: {path} is not a sparsecircuits checkpoint")
    try:
        return ModelConfig.from_json(cfg_path.read_text(encoding="utf-8"))
    except InputError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from exc


def check_state_dict(model: SparseTransformer, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError unless `tensors` has exactly the model's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in _tensors_to_save(model).items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    for k in sorted(set(expected) & set(tensors)):
        if tuple(tensors[k].shape) != expected[k]:
            problems.append(f"{k} has shape {tuple(tensors[k].shape)}, config expects {expected[k]}")
    if problems:
        raise CheckpointError(f"{source} does not match its config: " + "; ".join(problems))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder, checking every tensor against the config."""
    path = Path(path)
    cfg = load_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is corrupt or truncated ({exc}); re-save or re-download it") from exc
    model = SparseTransformer(cfg)
    check_state_dict(model, tensors, str(weights))
    if cfg.tied_embeddings:
        tensors["unembed.weight"] = tensors["embed.weight"]
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    tokenizer = None
    if (path / TOKENIZER_FILE).is_file():
        from sparsecircuits.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(path / TOKENIZER_FILE)
    training = None
    if (path / TRAINING_FILE).is_file():
        try:
            training = json.loads((path / TRAINING_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path / TRAINING_FILE} is not valid JSON: {exc}") from exc
    return Checkpoint(model=model, path=path, tokenizer=tokenizer, training=training)
