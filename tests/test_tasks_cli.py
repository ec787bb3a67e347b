"""`sparsecircuits tasks list|show|eval` on a tiny random model."""

from __future__ import annotations

import json
import math

import pytest

from sparsecircuits.checkpoint import save_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.data.tokenizer import encode, save_tokenizer
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.tasks import list_tasks


@pytest.fixture
def tiny_run(tmp_path, stdlib_tokenizer):
    """A random-init 1-layer checkpoint saved with its tokenizer, and one saved without."""
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_head=16, d_mlp=64,
                      vocab_size=stdlib_tokenizer.get_vocab_size(), n_ctx=128)
    model = SparseTransformer(cfg)
    with_tok = save_checkpoint(model, tmp_path / "run", tokenizer=stdlib_tokenizer)
    without = save_checkpoint(model, tmp_path / "no_tok")
    return with_tok, without


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list(capsys):
    code, out, _ = run(capsys, "tasks", "list")
    assert code == 0
    for name in list_tasks():
        assert name in out
    code, out, _ = run(capsys, "tasks", "list", "--json")
    assert code == 0 and [t["name"] for t in json.loads(out)] == list_tasks()


def test_show_json_with_tokenizer_and_model(capsys, tmp_path, stdlib_tokenizer, tiny_run):
    tok_file = tmp_path / "tokenizer.json"
    save_tokenizer(stdlib_tokenizer, tok_file)
    # `--n`, `--tasks` and `--task-file` are the old spellings of `--pairs` and `--task`, still accepted
    code, out, _ = run(capsys, "tasks", "show", "var_if", "--tokenizer", str(tok_file),
                       "--n", "3", "--seed", "4", "--split", "test", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["task"] == "var_if" and len(data["pairs"]) == 3
    for p in data["pairs"]:
        assert set(p) == {"prompt", "target", "alt_prompt", "alt", "prompt_ids", "target_id",
                          "alt_prompt_ids", "alt_id"}
        assert p["prompt_ids"] == encode(stdlib_tokenizer, p["prompt"])
        assert [p["target_id"]] == encode(stdlib_tokenizer, p["target"])
        assert p["prompt_ids"][-1] == p["alt_prompt_ids"][-1]
    # The checkpoint's tokenizer gives the same pairs.
    code, out2, _ = run(capsys, "tasks", "show", "var_if", "--model", str(tiny_run[0]),
                        "--pairs", "3", "--seed", "4", "--split", "test", "--json")
    assert code == 0 and json.loads(out2) == data
    code, text, _ = run(capsys, "tasks", "show", "var_if", "--model", str(tiny_run[0]), "--pairs", "2",
                        "--seed", "4", "--split", "test")
    assert code == 0 and "pair 2: B" in text and data["pairs"][0]["prompt"] in text


def test_show_errors_exit_2(capsys, tiny_run):
    code, _, err = run(capsys, "tasks", "show", "nope", "--model", str(tiny_run[0]))
    assert code == 2 and "no task named 'nope'" in err
    code, _, err = run(capsys, "tasks", "show", "var_if", "--model", str(tiny_run[1]))
    assert code == 2 and "tokenizer" in err


def test_eval_on_a_tiny_model(capsys, tmp_path, tiny_run):
    out_file = tmp_path / "results.json"
    code, out, err = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]),
                         "--tasks", "single_double_quote,for_while", "--n", "16", "--json",
                         "--out", str(out_file))
    assert code == 0
    report = json.loads(out)
    assert f"results written to {out_file}" in err
    assert json.loads(out_file.read_text()) == report
    assert report["split"] == "test" and report["target_loss"] == 0.15
    assert [r["name"] for r in report["results"]] == ["single_double_quote", "for_while"]
    for r in report["results"]:
        assert r["n_pairs"] == 16
        assert abs(r["loss"] - math.log(2)) < 0.2  # random init: near chance
        assert r["solved"] == (r["loss"] <= 0.15)
        assert 0 < r["loss_se"] < 0.2
    code, table, _ = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]),
                         "--task", "for_while", "--pairs", "8", "--target-loss", "5")
    assert code == 0 and "for_while" in table and "yes" in table and "solved 1/1" in table
    assert "± se" in table.splitlines()[0] and "loss A" in table.splitlines()[0]
    code, listing, _ = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]),
                           "--task", "for_while", "--pairs", "8", "--worst", "2")
    assert code == 0 and "for_while: the 2 highest-loss prompts" in listing
    assert len([line for line in listing.splitlines() if " -> " in line]) == 2
    code, out, _ = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]),
                       "--task", "for_while", "--pairs", "8", "--worst", "2", "--json")
    worst = json.loads(out)["results"][0]["worst"]
    assert [w["side"] in "AB" for w in worst] == [True, True] and worst[0]["loss"] >= worst[1]["loss"]
    code, _, err = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]), "--task", "for_while", "--worst", "-1")
    assert code == 2 and "worst" in err


def test_eval_task_file_and_errors(capsys, tmp_path, tiny_run):
    task_file = tmp_path / "mine.jsonl"
    rows = [{"prompt": f"v{i} = [a, b", "target": "]", "alt_prompt": f"v{i} = {{a, b", "alt": "}"}
            for i in range(30)]
    task_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, out, _ = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]),
                       "--task-file", str(task_file), "--split", "all", "--json")
    assert code == 0
    result = json.loads(out)["results"][0]
    assert result["name"] == "mine" and result["n_pairs"] == 30
    code, _, err = run(capsys, "tasks", "eval", "--model", str(tiny_run[1]), "--task", "var_if")
    assert code == 2 and "has no tokenizer.json" in err
    code, _, err = run(capsys, "tasks", "eval", "--model", str(tiny_run[0]), "--task", "var_if,nope")
    assert code == 2 and "nope" in err
    code, _, _ = run(capsys, "tasks")
    assert code == 2
