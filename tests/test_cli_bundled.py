"""`bundled:small-sparse` and `bundled:small-dense`: accepted by load_checkpoint and by every
command's --model, found wherever the package is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sparsecircuits
from sparsecircuits.bundled_names import bundled_names, resolve_model_spec
from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.errors import InputError

PACKAGE = Path(sparsecircuits.__file__).parent


def test_names_resolve_to_the_installed_package_data() -> None:
    assert bundled_names() == ["small-dense", "small-sparse"]
    assert resolve_model_spec("bundled:small-sparse") == PACKAGE / "bundled" / "small-sparse"
    assert resolve_model_spec("runs/x") == Path("runs/x")


def test_unknown_and_bare_names_are_input_errors() -> None:
    with pytest.raises(InputError, match="bundled:small-dense, bundled:small-sparse"):
        resolve_model_spec("bundled:tiny")
    with pytest.raises(InputError, match="write bundled:small-sparse"):
        resolve_model_spec("small-sparse")


def test_load_checkpoint_takes_a_bundled_name() -> None:
    ckpt = load_checkpoint("bundled:small-dense")
    assert ckpt.path == PACKAGE / "bundled" / "small-dense"
    assert ckpt.tokenizer is not None and ckpt.config.n_layer == 2


def test_model_info_and_tasks_eval_on_a_bundled_model(capsys) -> None:
    assert main(["model", "info", "bundled:small-sparse", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(PACKAGE / "bundled" / "small-sparse")
    assert main(["tasks", "eval", "--model", "bundled:small-sparse", "--task", "bracket_brace", "--pairs", "8",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["name"] == "bracket_brace" and result["n_pairs"] == 8
    assert main(["tasks", "show", "bracket_brace", "--model", "bundled:small-dense", "--pairs", "1"]) == 0
    assert "pair 1: B" in capsys.readouterr().out
    assert main(["model", "info", "bundled:nope"]) == 2
    assert "bundled models: bundled:small-dense, bundled:small-sparse" in capsys.readouterr().err
