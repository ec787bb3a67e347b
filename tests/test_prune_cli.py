"""`sparsecircuits prune`: an end-to-end run on a tiny checkpoint, and bad input."""

from __future__ import annotations

import json

import pytest

from sparsecircuits.checkpoint import save_checkpoint
from sparsecircuits.circuits import Circuit
from sparsecircuits.cli import main
from sparsecircuits.model import ModelConfig, SparseTransformer


def tiny_model(vocab: int = 30) -> SparseTransformer:
    cfg = ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=16, vocab_size=vocab, n_ctx=16)
    return SparseTransformer(cfg).eval()


@pytest.mark.slow
def test_cli_prunes_a_checkpoint_with_mean_ablation(tmp_path, small_corpus_dir, stdlib_tokenizer, capsys) -> None:
    model = SparseTransformer(ModelConfig(n_layer=1, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=2048, n_ctx=64))
    run = save_checkpoint(model, tmp_path / "run", tokenizer=stdlib_tokenizer, training={"data_dir": str(small_corpus_dir)})
    out = tmp_path / "circ"
    argv = ["prune", "--model", str(run), "--task", "single_double_quote", "--out", str(out), "--steps", "3",
            "--train-pairs", "16", "--pairs", "8", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "nodes" in printed and "edges" in printed and f"wrote {out / 'circuit.json'}" in printed
    assert main(argv) == 2 and "--force" in capsys.readouterr().err  # an existing circuit needs --force
    assert main([*argv, "--force"]) == 0
    circuit = Circuit.load(out)
    circuit.check_against(model)
    assert circuit.ablation == "mean" and circuit.pruning.get("steps") == 3
    assert circuit.model["path"] == str(run.resolve())
    assert len(list(run.glob("ablation_means-*.safetensors"))) == 1  # cached beside the checkpoint
    data = json.loads((out / "circuit.json").read_text())
    assert data["task"]["name"] == "single_double_quote" and data["n_edges"] == len(data["edges"])


def test_cli_bad_input_exits_2(tmp_path, capsys) -> None:
    model = tiny_model()
    run = save_checkpoint(model, tmp_path / "run")
    assert main(["prune", "--model", str(run), "--task", "single_double_quote", "--out", str(tmp_path / "c")]) == 2
    assert "tokenizer" in capsys.readouterr().err
    assert main(["prune", "--model", str(tmp_path / "nope"), "--task", "x", "--out", str(tmp_path / "c")]) == 2
    assert main(["prune", "--model", str(run), "--task", "x", "--out", str(tmp_path / "c"), "--locations", "attn_x"]) == 2
    assert "--locations" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
