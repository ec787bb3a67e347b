"""Tensor files: written from memory by Python's own file writes, so that a full disk is an
OSError naming the file (the CLI's one-line message), as with every other artifact; read
without executing code.

safetensors' `save_file` and `torch.save` report a full disk as their own errors (a
SafetensorError, or a RuntimeError such as "basic_ios::clear"); serializing to bytes first
avoids that.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from sparsecircuits.errors import CheckpointError


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file."""
    Path(path).write_bytes(save(dict(tensors), metadata=metadata))


def save_torch(obj: Any, path: str | Path) -> None:
    """Write a `torch.save` file (tensors and plain containers, loadable with weights_only)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    Path(path).write_bytes(buffer.getvalue())


def load_torch_file(path: Path, fix: str) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never code. Each
    way it can fail is one line that says what is wrong with the file, then `fix`."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a file; {fix}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        reason = (f"it holds an object ({found.group(1)}) that only running code could rebuild, so it was "
                  "not loaded and nothing ran" if found else
                  "it is not a file of tensors that loads without running code")
    except (zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        reason = "it is truncated or damaged"
    raise CheckpointError(f"{path} cannot be loaded: {reason}; {fix}")
