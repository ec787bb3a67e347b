"""Data-parallel training under torchrun (gloo, 2 CPU processes) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecircuits.train import train

# A global batch of 8 sequences: 8 in one process, 4 per rank in two.
OVERRIDES = ["train.steps=12", "train.log_every=4", "train.eval_every=0", "train.checkpoint_every=6"]


@pytest.mark.slow
def test_two_processes_match_one(small_corpus_dir: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    train("tiny-sparse", small_corpus_dir, single, overrides=OVERRIDES, progress=False)
    multi = tmp_path / "multi"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sparsecircuits.cli", "train", "--config", "tiny-sparse", "--data",
        str(small_corpus_dir), "--out", str(multi), "--no-progress", *OVERRIDES,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("model checkpoint:") == 1  # only rank 0 reports
    training = json.loads((multi / "training.json").read_text())
    assert training["world_size"] == 2
    assert training["ranks_identical"] is True  # every rank kept the same weights and masks
    a = load_file(str(single / "model.safetensors"))
    b = load_file(str(multi / "model.safetensors"))
    for name in a:
        assert torch.equal(a[name] != 0, b[name] != 0), f"{name}: sparsity pattern differs"
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    rows = [json.loads(x) for x in (multi / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert sorted(p.name for p in (multi / "state").iterdir()) == ["step-00000006", "step-00000012"]


@pytest.mark.slow
def test_bridges_train_under_two_processes(small_corpus_dir: Path, tmp_path: Path) -> None:
    """`bridges train` under torchrun: rank 0 alone writes and reports, every rank ends with
    the same bridges, and the loss terms track a one-process run (each rank normalizes its
    NMSE and KL over its own half of the batch, so they are close, not equal)."""
    for name, preset in (("dense", "tiny-dense"), ("sparse", "tiny-sparse")):
        train(preset, small_corpus_dir, tmp_path / name, overrides=["train.steps=20", "train.eval_every=0"],
              progress=False)
    args = ["bridges", "train", "--dense", str(tmp_path / "dense"), "--sparse", str(tmp_path / "sparse"),
            "--data", str(small_corpus_dir), "--no-progress", "train.steps=8", "train.batch_size=8",
            "train.log_every=4", "train.eval_every=0", "train.checkpoint_every=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "sparsecircuits.cli", *args, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "sparsecircuits.cli", *args, "--out", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("bridges folder:") == 1
    training = json.loads((tmp_path / "two" / "training.json").read_text())
    assert training["world_size"] == 2 and training["ranks_identical"] is True
    assert sorted(p.name for p in (tmp_path / "two" / "state").iterdir()) == ["step-00000004", "step-00000008"]
    one_rows, two_rows = ([json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
                          for run in ("one", "two"))
    assert [r["step"] for r in two_rows] == [4, 8]
    for a, b in zip(one_rows, two_rows, strict=True):
        for part in ("nmse_enc", "nmse_dec"):
            assert b[part] == pytest.approx(a[part], rel=0.2), part
    a = load_file(str(tmp_path / "one" / "bridges.safetensors"))
    b = load_file(str(tmp_path / "two" / "bridges.safetensors"))
    assert a.keys() == b.keys()
