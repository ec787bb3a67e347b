"""Run configs: presets, TOML files, overrides, schedules of the lr, and the bad-input paths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sparsecircuits.cli import main
from sparsecircuits.errors import InputError
from sparsecircuits.train import kept_fraction, learning_rate
from sparsecircuits.train.config import RunConfig, TrainConfig, list_presets, load_run_config

PRESETS = ["paper-1x", "small-dense", "small-sparse", "tiny-dense", "tiny-sparse", "wide-sparse"]


def test_presets_load_and_pair_up() -> None:
    assert list_presets() == PRESETS
    for name in PRESETS:
        run = load_run_config(name)
        assert run.train.sparse == name.endswith("sparse") or name == "paper-1x"
    for size in ("tiny", "small"):
        sparse, dense = load_run_config(f"{size}-sparse"), load_run_config(f"{size}-dense")
        assert sparse.model == dense.model  # the dense baseline differs only in the projection
        for field in ("lr", "batch_size", "seed", "betas", "eps", "weight_decay"):
            assert getattr(sparse.train, field) == getattr(dense.train, field), field
        assert dense.train.steps <= sparse.train.steps  # dense models learn faster
    from sparsecircuits.model import SparseTransformer
    from sparsecircuits.model.sparsity import WeightSparsifier

    def matrix_nonzeros(name: str) -> int:
        run = load_run_config(name)
        model = SparseTransformer(run.model)
        kinds = model.parameter_kinds()
        budgets = WeightSparsifier(model, run.train.target_density, run.train.embedding_density_factor,
                                   run.train.min_per_channel).budgets(run.train.target_density)
        return sum(v for k, v in budgets.items() if kinds[k] == "matrix")

    wide, small = load_run_config("wide-sparse").model, load_run_config("small-sparse").model
    assert wide.d_model == 2 * small.d_model and matrix_nonzeros("wide-sparse") == matrix_nonzeros("small-sparse")
    paper = load_run_config("paper-1x").model
    assert (paper.d_model, paper.n_layer, paper.d_head, paper.n_ctx, paper.vocab_size) == (
        256, 8, 16, 256, 2048,
    )


def test_overrides() -> None:
    run = load_run_config(
        "tiny-sparse",
        ["train.steps=7", "model.d_model=48", "lr=0.001", "device=auto", "betas=[0.8, 0.9]"],
    )
    assert run.train.steps == 7
    assert run.model.d_model == 48
    assert run.train.lr == 0.001
    assert run.train.device == "auto"  # a bare word is taken as a string
    assert run.train.betas == (0.8, 0.9)
    with pytest.raises(InputError, match="unknown field train.stepz"):
        load_run_config("tiny-sparse", ["train.stepz=3"])
    with pytest.raises(InputError, match="unknown field 'colour'"):
        load_run_config("tiny-sparse", ["colour=3"])
    with pytest.raises(InputError, match="train.steps has the wrong type"):
        load_run_config("tiny-sparse", ["steps=many"])
    with pytest.raises(InputError, match="field=value"):
        load_run_config("tiny-sparse", ["steps"])
    assert load_run_config("tiny-sparse", ["autocast=bf16"]).train.autocast == "bf16"
    with pytest.raises(InputError, match="train.autocast must be one of none, bf16, auto"):
        load_run_config("tiny-sparse", ["autocast=fp16"])


def test_config_files(tmp_path: Path) -> None:
    good = tmp_path / "run.toml"
    good.write_text('[model]\nd_model = 40\n[train]\nsteps = 3\ntarget_density = 0.5\n')
    run = load_run_config(good)
    assert run.model.d_model == 40 and run.train.steps == 3 and run.train.sparse
    # the resolved run config a run writes can be fed back as --config
    as_json = tmp_path / "run_config.json"
    as_json.write_text(run.to_json())
    assert load_run_config(as_json) == run
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    with pytest.raises(InputError, match="malformed"):
        load_run_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nlearning_rate = 3\n")
    with pytest.raises(InputError, match="unknown train field.*learning_rate"):
        load_run_config(unknown)
    with pytest.raises(InputError, match="no such preset"):
        load_run_config(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="anneal_end_frac"):
        RunConfig(train=TrainConfig(anneal_start_frac=0.5, anneal_end_frac=0.1))


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(steps=1000, lr=1.0, warmup_frac=0.01, target_density=0.04)
    assert learning_rate(0, cfg, 1.0) == pytest.approx(0.1 * math.sqrt(0.04))  # warmup 1/10
    assert learning_rate(9, cfg, 1.0) == pytest.approx(math.sqrt(0.04))
    # after warmup: linear decay, times sqrt(target / current) while annealing
    assert learning_rate(505, cfg, 0.04) == pytest.approx(495 / 990)
    assert learning_rate(100, cfg, 0.16) == pytest.approx((900 / 990) * 0.5)
    assert learning_rate(999, cfg, 0.04) == pytest.approx(1 / 990)
    dense = TrainConfig(steps=1000, lr=1.0)
    assert learning_rate(100, dense, 1.0) == pytest.approx(900 / 990)  # no sharkfin when dense
    nofin = TrainConfig(steps=1000, lr=1.0, target_density=0.04, sharkfin=False)
    assert learning_rate(100, nofin, 0.16) == pytest.approx(900 / 990)
    assert kept_fraction(500, cfg) == 0.04 and kept_fraction(500, dense) == 1.0


def _cli(*args: str) -> int:
    return main(["train", *args])


def test_cli_bad_input_exits_2(tmp_path: Path, small_corpus_dir: Path, capsys) -> None:
    out = str(tmp_path / "run")
    assert _cli("--config", str(tmp_path / "nope.toml"), "--data", str(small_corpus_dir), "--out", out) == 2
    assert "no such file" in capsys.readouterr().err
    assert _cli("--config", "tiny-sparse", "--data", str(small_corpus_dir), "--out", out, "train.foo=1") == 2
    assert "unknown field train.foo" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli("--config", "tiny-sparse", "--data", str(empty), "--out", out) == 2
    assert "no shards.json" in capsys.readouterr().err
    assert _cli(
        "--config", "tiny-sparse", "--data", str(small_corpus_dir), "--out", out, "model.vocab_size=1000"
    ) == 2
    assert "model.vocab_size=2048" in capsys.readouterr().err
    assert _cli("--config", "tiny-sparse", "--data", str(small_corpus_dir), "--out", out, "--resume") == 2
    assert "holds no training run" in capsys.readouterr().err
    assert not Path(out).exists()  # no input error leaves a half-made run folder


def test_cli_resume_incompatible(tmp_path: Path, small_corpus_dir: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--config", "tiny-sparse", "--data", str(small_corpus_dir), "--out", str(out)]
    assert _cli(*args, "train.steps=4", "train.checkpoint_every=2") == 0
    capsys.readouterr()
    assert _cli(*args, "train.steps=4", "train.checkpoint_every=2") == 2
    assert "already holds a training run" in capsys.readouterr().err
    record = json.loads((out / "run_config.json").read_text())
    record["data"]["manifest_hash"] = "0" * 16  # as if trained on another corpus
    (out / "run_config.json").write_text(json.dumps(record))
    assert _cli(*args, "--resume", "train.steps=99", "train.checkpoint_every=2") == 2
    err = capsys.readouterr().err
    assert "incompatible" in err and "steps: 4 -> 99" in err and "the corpus differs" in err
