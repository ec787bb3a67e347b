"""Shared test fixtures: tiny models and data built in memory; CPU only, no network."""

from __future__ import annotations

import pytest
import torch

# Several test processes may share 2 cores; tiny models run as fast on one thread.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_corpus_dir(tmp_path_factory: pytest.TempPathFactory):
    """A corpus folder built from the first ~150 stdlib files (vocab 2048, a few seconds)."""
    from sparsecircuits.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("small_corpus") / "corpus"
    build_corpus(["stdlib"], out, vocab_size=2048, max_files=150, progress=False)
    return out


@pytest.fixture(scope="session")
def stdlib_tokenizer(small_corpus_dir):
    """The 2048-token tokenizer trained on `small_corpus_dir` (a tokenizers.Tokenizer)."""
    from sparsecircuits.data.tokenizer import load_tokenizer

    return load_tokenizer(small_corpus_dir / "tokenizer.json")
