"""Atomic writes leave plain permissions: models and masks get the mode of every other artifact."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from planted_model import PLANTED_NODES, circuit_from_nodes, planted_model
from sparsecircuits.atomic import atomic_dir, atomic_file, atomic_write_text
from sparsecircuits.checkpoint import save_checkpoint
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.prune import PruneConfig
from sparsecircuits.tasks import get_task


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_checkpoint_files_are_0644_under_umask_022(tmp_path: Path, umask_022) -> None:
    model = SparseTransformer(ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=16, vocab_size=30, n_ctx=8))
    ck = save_checkpoint(model, tmp_path / "ck", training={"steps": 0})
    assert _mode(ck) == 0o755
    assert {p.name: _mode(p) for p in ck.iterdir()} == {
        "config.json": 0o644, "model.safetensors": 0o644, "training.json": 0o644,
    }


def test_circuit_masks_are_0644_under_umask_022(tmp_path: Path, umask_022) -> None:
    model = planted_model()
    circuit = circuit_from_nodes(model, PLANTED_NODES, get_task("for_while"), PruneConfig())
    circuit.masks = {"blocks.0.attn.hook_q": torch.zeros(model.cfg.location_width("attn_q"))}
    out = circuit.save(tmp_path / "circ")
    assert {p.name: _mode(p) for p in out.iterdir()} == {"circuit.json": 0o644, "masks.safetensors": 0o644}


def test_safetensors_through_atomic_file_and_dir(tmp_path: Path, umask_022) -> None:
    from safetensors.torch import save_file

    with atomic_file(tmp_path / "masks.safetensors") as tmp:
        save_file({"m": torch.ones(3)}, str(tmp))  # safetensors writes its own 0600 file
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "sub").mkdir(mode=0o700)
        save_file({"m": torch.ones(3)}, str(tmp / "sub" / "w.safetensors"))
        script = tmp / "run.sh"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o700)
    atomic_write_text(tmp_path / "note.txt", "x")
    assert _mode(tmp_path / "masks.safetensors") == 0o644
    assert _mode(tmp_path / "folder" / "sub") == 0o755
    assert _mode(tmp_path / "folder" / "sub" / "w.safetensors") == 0o644
    assert _mode(tmp_path / "folder" / "run.sh") == 0o755  # executables stay executable
    assert _mode(tmp_path / "note.txt") == 0o644


def test_the_umask_is_respected(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with atomic_dir(tmp_path / "private") as tmp:
            (tmp / "a.txt").write_text("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private") == 0o700 and _mode(tmp_path / "private" / "a.txt") == 0o600

