"""Shared test fixtures: tiny models and data built in memory; CPU only, no network."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

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


@pytest.fixture(scope="session")
def fuzz_world(small_corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained run, its corpus, a JSONL task, a circuit, a reference-format export and
    bridges from the run to itself, each made by the CLI (the bad-input and fault tests read them and must not change them)."""
    from sparsecircuits.cli import main

    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    overrides = ["train.steps=3", "train.log_every=1", "train.checkpoint_every=2", "model.n_ctx=64"]
    assert main(["train", "--config", "tiny-sparse", "--data", str(small_corpus_dir), "--out", str(run),
                 "--no-progress", *overrides]) == 0
    names = ["a", "b", "c", "d", "x", "y", "i", "n", "s", "t", "k", "v", "self", "key", "value", "item"]
    task = root / "task.jsonl"
    task.write_text("".join(
        json.dumps({"prompt": f"{b} = ({a}", "target": ")", "alt_prompt": f"{b} = [{a}", "alt": "]"}) + "\n"
        for a, b in itertools.permutations(names, 2)
    ))
    circuit = root / "circuit"
    assert main(["prune", "--model", str(run), "--task", str(task), "--out", str(circuit), "--method",
                 "attribution", "--no-minimal", "--pairs", "8", "--train-pairs", "16", "--no-progress"]) == 0
    export = root / "export"
    assert main(["export-openai", str(run), "--out", str(export)]) == 0
    bridges = root / "bridges"
    assert main(["bridges", "train", "--dense", str(run), "--sparse", str(run), "--data", str(small_corpus_dir),
                 "--out", str(bridges), "--no-progress", "train.steps=2", "train.eval_batches=1",
                 "train.checkpoint_every=0"]) == 0
    return {"run": run, "corpus": small_corpus_dir, "task": task, "circuit": circuit, "export": export,
            "bridges": bridges}
