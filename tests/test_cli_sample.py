"""`sparsecircuits sample`: the prompt and the model's own continuation (SparseTransformer.generate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecircuits.checkpoint import load_checkpoint, save_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.model import ModelConfig, SparseTransformer


@pytest.fixture
def runs(tmp_path: Path, stdlib_tokenizer) -> tuple[Path, Path]:
    """A random-init checkpoint with its tokenizer, and the same model saved without one."""
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, d_head=8, d_mlp=32,
                      vocab_size=stdlib_tokenizer.get_vocab_size(), n_ctx=32)
    model = SparseTransformer(cfg)
    return save_checkpoint(model, tmp_path / "run", tokenizer=stdlib_tokenizer), save_checkpoint(model, tmp_path / "bare")


def _sample(capsys, *words: str) -> tuple[int, str, str]:
    code = main(["sample", *words])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_prints_the_prompt_and_generate_s_continuation(runs, capsys) -> None:
    run, _ = runs
    prompt = "def add(a, b):\n    return"
    code, out, _ = _sample(capsys, "--model", str(run), "--prompt", prompt, "--max-new-tokens", "6", "--seed", "3",
                           "--top-k", "20", "--temperature", "0.8")
    assert code == 0
    expected = load_checkpoint(run).model.generate(prompt, max_new_tokens=6, temperature=0.8, top_k=20, seed=3)
    assert out == prompt + expected + "\n"
    assert _sample(capsys, "--model", str(run), "--prompt", prompt, "--max-new-tokens", "6", "--seed", "3",
                   "--top-k", "20", "--temperature", "0.8")[1] == out  # the seed repeats it
    greedy = _sample(capsys, "--model", str(run), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "4")
    assert greedy[1] == prompt + load_checkpoint(run).model.generate(prompt, max_new_tokens=4, temperature=0) + "\n"


def test_sample_on_the_bundled_model(capsys) -> None:
    code, out, _ = _sample(capsys, "--model", "bundled:small-sparse", "--prompt", "import os\n", "--seed", "0",
                           "--max-new-tokens", "8", "--device", "cpu")
    assert code == 0 and out.startswith("import os\n") and len(out) > len("import os\n\n")


def test_sample_bad_input_exits_2(runs, capsys) -> None:
    run, bare = runs
    code, _, err = _sample(capsys, "--model", str(bare), "--prompt", "x = ")
    assert code == 2 and "tokenizer" in err
    code, _, err = _sample(capsys, "--model", str(run), "--prompt", "x = ", "--top-k", "0")
    assert code == 2 and "--top-k" in err
    code, _, err = _sample(capsys, "--model", str(run), "--prompt", "x = ", "--temperature", "-1")
    assert code == 2 and "temperature" in err
    assert _sample(capsys, "--model", "bundled:nope", "--prompt", "x")[0] == 2
