"""Token shards: opening, validation, and reproducible (resumable, multi-rank) batches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecircuits.data.corpus import read_manifest
from sparsecircuits.data.shards import BatchSampler, TokenShards, sample_batch, token_dtype
from sparsecircuits.errors import InputError

TOKENS = np.arange(1000, dtype=np.uint16) * 3 % 2048


def test_open_small_corpus(small_corpus_dir: Path) -> None:
    shards = TokenShards.open(small_corpus_dir)
    info = json.loads((small_corpus_dir / "shards.json").read_text())
    assert shards.train.dtype == np.uint16 and shards.train.ndim == 1
    assert len(shards.train) == info["train"]["tokens"] > 100_000
    assert len(shards.val) == info["val"]["tokens"] > 0
    assert shards.vocab_size == 2048 and shards.eot_id == 2047
    assert shards.manifest_hash == read_manifest(small_corpus_dir)["hash"]
    assert shards.tokenizer_path == small_corpus_dir / "tokenizer.json"
    assert int((shards.train == shards.eot_id).sum()) == info["train"]["documents"]
    assert shards.train[-1] == shards.eot_id and shards.val[-1] == shards.eot_id
    assert int(shards.train.max()) < shards.vocab_size


def test_open_missing_or_broken(small_corpus_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing_here"):
        TokenShards.open(tmp_path / "nothing_here")
    broken = tmp_path / "broken"
    shutil.copytree(small_corpus_dir, broken)
    with (broken / "val.bin").open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(InputError, match="val.bin"):
        TokenShards.open(broken)
    (broken / "shards.json").write_text("{}")
    with pytest.raises(InputError, match="shards.json is invalid"):
        TokenShards.open(broken)


def test_token_dtype() -> None:
    assert token_dtype(2048) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_sample_batch_windows_and_seed() -> None:
    x, y = sample_batch(TOKENS, 6, 16, np.random.default_rng(3))
    x2, y2 = sample_batch(TOKENS, 6, 16, np.random.default_rng(3))
    assert x.dtype == torch.int64 and x.shape == y.shape == (6, 16)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x.numpy(), y.numpy(), strict=True):
        start = int(np.flatnonzero(TOKENS == row_x[0])[0])  # TOKENS has no repeats
        np.testing.assert_array_equal(row_x, TOKENS[start : start + 16])
        np.testing.assert_array_equal(row_y, TOKENS[start + 1 : start + 17])
    x3, _ = sample_batch(TOKENS, 6, 16, np.random.default_rng(4))
    assert not torch.equal(x, x3)


def test_sampler_resumes_exactly() -> None:
    run = BatchSampler(TOKENS, 4, 8, seed=7)
    for _ in range(3):
        run.next_batch()
    state = json.loads(json.dumps(run.state_dict()))
    expected = [run.next_batch() for _ in range(2)]
    resumed = BatchSampler(TOKENS, 4, 8, seed=123)
    resumed.load_state_dict(state)
    assert resumed.step == 3
    for (x, y), (rx, ry) in zip(expected, [next(resumed) for _ in range(2)], strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert resumed.step == 5


def test_ranks_split_the_global_batch() -> None:
    single = BatchSampler(TOKENS, 3 * 4, 8, seed=11)
    ranks = [BatchSampler(TOKENS, 3, 8, seed=11, rank=r, world_size=4) for r in range(4)]
    for _ in range(3):
        x, y = single.next_batch()
        parts = [r.next_batch() for r in ranks]
        assert torch.equal(x, torch.cat([p[0] for p in parts]))
        assert torch.equal(y, torch.cat([p[1] for p in parts]))
    first, _ = sample_batch(TOKENS, 12, 8, np.random.default_rng(11))
    assert torch.equal(first, BatchSampler(TOKENS, 12, 8, seed=11).next_batch()[0])


def test_bad_sampler_inputs() -> None:
    with pytest.raises(InputError, match="n_ctx=2000"):
        sample_batch(TOKENS, 2, 2000, np.random.default_rng(0))
    with pytest.raises(InputError, match="rank 4"):
        BatchSampler(TOKENS, 2, 8, seed=0, rank=4, world_size=4)
    with pytest.raises(InputError, match="state"):
        BatchSampler(TOKENS, 2, 8, seed=0).load_state_dict({"step": 1})
