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
