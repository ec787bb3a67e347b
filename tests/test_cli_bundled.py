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
    assert bundled_names() == ["small-bridges", "small-dense", "small-sparse"]
    assert resolve_model_spec("bundled:small-sparse") == PACKAGE / "bundled" / "small-sparse"
    assert resolve_model_spec("runs/x") == Path("runs/x")


def test_unknown_and_bare_names_are_input_errors() -> None:
    with pytest.raises(InputError, match="bundled:small-bridges, bundled:small-dense, bundled:small-sparse"):
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
    assert "bundled models: bundled:small-bridges, bundled:small-dense, bundled:small-sparse" in capsys.readouterr().err


def test_the_bundled_bridges_join_the_bundled_models(capsys) -> None:
    """bundled:small-bridges holds only the bridges: both models come from their bundled
    names, fingerprints checked, and steering through them runs."""
    from sparsecircuits.bridges import open_bridges, steer
    from sparsecircuits.tasks import get_task

    models = open_bridges("bundled:small-bridges")
    assert models.sparse.path == PACKAGE / "bundled" / "small-sparse"
    assert models.dense.path == PACKAGE / "bundled" / "small-dense"
    assert len(models.bridges.sites) == 5
    pairs = get_task("bracket_brace").generate(models.sparse.tokenizer, 4, seed=0, split="test")
    result = steer(models, "blocks.0.hook_attn_out:126", pairs, toward_alt=True, scales=[0, 4], controls=2)
    zero, four = result["scales"]
    assert zero["dense"]["p_alt"] == pytest.approx(result["baseline"]["dense"]["p_alt"])
    assert four["dense"]["p_alt"] != zero["dense"]["p_alt"]
    assert main(["bridges", "quality", "bundled:small-bridges", "--batches", "1", "--batch-size", "2"]) == 0
    assert "blocks.1.hook_resid_post" in capsys.readouterr().out
