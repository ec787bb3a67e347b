"""One `--out` rule for every command: a new path is written; this command's own artifact is
replaced only with --force; anything else is refused (exit 2) and left as it was. Also
`--device` and the `--task` spellings, which every command shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsecircuits.checkpoint import load_checkpoint, save_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.cli.common import resolve_device
from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.outputs import CHECKPOINT, CIRCUIT, CORPUS, FILE, check_out

FIXTURE = Path(__file__).parent / "fixtures" / "openai_ckpt_basic"


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` and its bytes: to show a refused --out was not touched."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def training_run(tmp_path: Path) -> Path:
    """A folder that looks like a finished training run: a checkpoint plus run_config.json and state/."""
    model = SparseTransformer(ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=16, vocab_size=30, n_ctx=16))
    run = save_checkpoint(model, tmp_path / "run")
    (run / "run_config.json").write_text("{}\n")
    (run / "state").mkdir()
    (run / "state" / "step-10.pt").write_bytes(b"weights of hours of training")
    return run


def test_check_out_rule(tmp_path: Path, training_run: Path) -> None:
    assert check_out(tmp_path / "new", CIRCUIT, force=False) == tmp_path / "new"
    circuit = tmp_path / "circ"
    circuit.mkdir()
    (circuit / "circuit.json").write_text("{}")
    with pytest.raises(InputError, match="--force"):
        check_out(circuit, CIRCUIT, force=False)
    assert check_out(circuit, CIRCUIT, force=True) == circuit
    (tmp_path / "empty").mkdir()
    assert check_out(tmp_path / "empty", CORPUS, force=True) == tmp_path / "empty"
    for path, artifact in ((training_run, CHECKPOINT), (training_run, CIRCUIT), (circuit / "circuit.json", CIRCUIT),
                           (tmp_path, FILE)):
        with pytest.raises(InputError, match="left untouched"):
            check_out(path, artifact, force=True)


def test_import_openai_never_replaces_a_training_run(training_run: Path, tmp_path: Path, capsys) -> None:
    before = _tree(training_run)
    for extra in ([], ["--force"]):
        assert main(["import-openai", str(FIXTURE), "--out", str(training_run), *extra]) == 2
        assert "not a checkpoint folder" in capsys.readouterr().err
    assert _tree(training_run) == before
    imported = tmp_path / "imported"
    assert main(["import-openai", str(FIXTURE), "--out", str(imported)]) == 0
    assert main(["import-openai", str(FIXTURE), "--out", str(imported)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["import-openai", str(FIXTURE), "--out", str(imported), "--force"]) == 0
    assert load_checkpoint(imported).config.n_layer >= 1


def test_model_pack_and_export_refuse_foreign_outputs(training_run: Path, tmp_path: Path, capsys) -> None:
    src = save_checkpoint(load_checkpoint(training_run).model, tmp_path / "ck")
    before = _tree(training_run)
    assert main(["model", "pack", str(src), "--out", str(training_run), "--force"]) == 2
    assert main(["export-openai", str(src), "--out", str(training_run), "--force"]) == 2
    assert _tree(training_run) == before
    assert main(["export-openai", str(src), "--out", str(tmp_path / "ref")]) == 0
    assert main(["export-openai", str(src), "--out", str(tmp_path / "ref")]) == 2
    assert main(["export-openai", str(src), "--out", str(tmp_path / "ref"), "--force"]) == 0


def test_prune_out_onto_a_file_is_refused(training_run: Path, tmp_path: Path, capsys) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    for extra in ([], ["--force"]):
        code = main(["prune", "--model", str(training_run), "--task", "for_while", "--out", str(precious), *extra])
        assert code == 2 and "left untouched" in capsys.readouterr().err
    assert precious.read_text() == "keep me"


def test_corpus_force_never_replaces_other_folders(tmp_path: Path, capsys) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("\\begin{document}")
    code = main(["corpus", "build", "--source", str(tmp_path), "--out", str(other), "--force", "--no-progress"])
    assert code == 2 and "not a corpus folder" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "\\begin{document}"


@pytest.fixture
def tiny_run(tmp_path: Path, stdlib_tokenizer) -> Path:
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, d_head=8, d_mlp=32,
                      vocab_size=stdlib_tokenizer.get_vocab_size(), n_ctx=64)
    return save_checkpoint(SparseTransformer(cfg), tmp_path / "tiny", tokenizer=stdlib_tokenizer)


def test_tasks_eval_out_needs_force_and_task_takes_names_and_files(tiny_run: Path, tmp_path: Path, capsys) -> None:
    task_file = tmp_path / "brackets.jsonl"
    task_file.write_text("\n".join(json.dumps({"prompt": f"v{i} = [a, b", "target": "]",
                                                "alt_prompt": f"v{i} = {{a, b", "alt": "}"}) for i in range(10)))
    out = tmp_path / "results.json"
    args = ["tasks", "eval", "--model", str(tiny_run), "--task", f"for_while,{task_file}", "--task", "if_equals",
            "--pairs", "4", "--split", "all", "--json", "--out", str(out)]
    assert main(args) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert names == ["for_while", "brackets", "if_equals"]
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_device_errors_are_input_errors(tiny_run: Path, capsys) -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert main(["tasks", "eval", "--model", str(tiny_run), "--task", "for_while", "--device", "cuda"]) == 2
        assert "no such device" in capsys.readouterr().err
    assert main(["tasks", "eval", "--model", str(tiny_run), "--task", "for_while", "--pairs", "2",
                 "--device", "cpu"]) == 0
