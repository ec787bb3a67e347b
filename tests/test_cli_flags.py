"""Flags and config dataclasses cannot drift: every field has a flag (or an override), with
the dataclass's default; and the names the CLI spells torch-free equal the library's."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from sparsecircuits import outputs
from sparsecircuits.cli import (
    build_parser,
    demo,
    main,
    model,
    prune,
    tasks,
    train,
    validate,
)
from sparsecircuits.experiments.demo import DemoConfig
from sparsecircuits.model import ModelConfig
from sparsecircuits.prune.config import PruneConfig
from sparsecircuits.train import TrainConfig

PRUNE_ARGS = ["prune", "--model", "m", "--task", "t", "--out", "o"]


def _prune_config(*extra: str) -> PruneConfig:
    return prune.config_from_args(build_parser().parse_args([*PRUNE_ARGS, *extra]))


def test_every_prune_config_field_has_a_flag_with_its_default() -> None:
    assert sorted(f.field for f in prune.PRUNE_FLAGS) == sorted(f.name for f in fields(PruneConfig))
    assert _prune_config() == PruneConfig()


def _changed_value(flag: prune.Flag) -> tuple[list[str], object]:
    """Command-line words that set `flag` to something other than its default, and the field value."""
    if flag.field == "locations":
        return [flag.flag, "attn_v,mlp_neuron"], ("attn_v", "mlp_neuron")
    if flag.field == "betas":
        return [flag.flag, "0.8", "0.9"], (0.8, 0.9)
    choices = dict(flag.extra).get("choices")
    if choices:
        other = next(c for c in choices if c != flag.default)
        return [flag.flag, other], other
    if flag.default is False:
        return [flag.flag], True
    if flag.default is True:
        return ["--no-" + flag.flag[2:]], False
    value = flag.default + 1 if flag.type is int else (flag.default * 2 or 1.0)
    return [flag.flag, str(value)], value


@pytest.mark.parametrize("flag", prune.PRUNE_FLAGS, ids=lambda f: f.flag)
def test_each_prune_flag_sets_its_own_field(flag: prune.Flag) -> None:
    words, value = _changed_value(flag)
    config = _prune_config(*words)
    assert getattr(config, flag.field) == (pytest.approx(value) if isinstance(value, float) else value)
    others = {f.name for f in fields(PruneConfig)} - {flag.field}
    assert all(getattr(config, n) == getattr(PruneConfig(), n) for n in others)


def test_task_file_is_still_accepted_by_prune() -> None:
    args = build_parser().parse_args(["prune", "--model", "m", "--task-file", "f.jsonl", "--out", "o"])
    assert args.task == "f.jsonl"


def test_demo_flags_have_demo_config_defaults(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr("sparsecircuits.experiments.demo.run_demo", seen.append)
    assert main(["demo"]) == 0
    assert seen == [DemoConfig()]
    covered = set(demo.DEMO_FLAGS) | {"tasks", "max_tasks", "control_steps", "workers", "dense", "from_scratch", "minimal",
                                      "progress"}
    assert covered == {f.name for f in fields(DemoConfig)}
    assert main(["demo", "--tasks", "for_while", "--task", "if_equals,lambda_func", "--seed", "3"]) == 0
    assert seen[-1].tasks == ("for_while", "if_equals", "lambda_func") and seen[-1].seed == 3


def _print_config(capsys, *words: str) -> dict:
    assert main(["train", "--config", "tiny-sparse", "--print-config", *words]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_train_and_model_field_is_an_override(capsys) -> None:
    """--print-config shows every field; each one, given back as an override, is accepted."""
    config = _print_config(capsys)
    assert set(config["model"]) == {f.name for f in fields(ModelConfig)}
    assert set(config["train"]) == {f.name for f in fields(TrainConfig)}
    overrides = [f"{table}.{name}={json.dumps(value)}" for table in ("model", "train")
                 for name, value in config[table].items() if value is not None]
    assert len(overrides) > 40
    assert _print_config(capsys, *overrides) == config
    changed = _print_config(capsys, "train.steps=7", "model.d_model=48", "device=auto")
    assert (changed["train"]["steps"], changed["model"]["d_model"], changed["train"]["device"]) == (7, 48, "auto")
    assert main(["train", "--config", "tiny-sparse", "--print-config", "train.nope=1"]) == 2
    assert main(["train", "--config", "tiny-sparse", "--data", "d"]) == 2
    assert "--out required" in capsys.readouterr().err


def test_names_spelled_torch_free_equal_the_library_constants() -> None:
    from sparsecircuits.checkpoint import CONFIG_FILE, HALF_DTYPES, TOKENIZER_FILE, WEIGHTS_FILE
    from sparsecircuits.circuits import CIRCUIT_FILE
    from sparsecircuits.interop.openai import REF_CONFIG_FILE, REF_WEIGHTS_FILE
    from sparsecircuits.prune.ablation import ABLATIONS
    from sparsecircuits.prune.config import TIE_BREAKS
    from sparsecircuits.prune.methods import METHODS
    from sparsecircuits.tasks import DEFAULT_TARGET_LOSS, SPLITS
    from sparsecircuits.train import list_presets
    from sparsecircuits.train.state import RUN_CONFIG_FILE, STATE_DIR
    from sparsecircuits.validate import controls
    from sparsecircuits.validate.pipeline import VALIDATION_FILE

    assert outputs.CHECKPOINT.markers == (CONFIG_FILE, WEIGHTS_FILE)
    assert outputs.TRAINING_RUN_FILES == (RUN_CONFIG_FILE, STATE_DIR)
    assert outputs.CIRCUIT.markers == (CIRCUIT_FILE,)
    assert outputs.REFERENCE.markers == (REF_CONFIG_FILE, REF_WEIGHTS_FILE)
    assert sorted(model.BIGRAM_DTYPES) == sorted(HALF_DTYPES)
    assert prune.ABLATIONS == ABLATIONS
    assert prune.METHODS == tuple(METHODS) and prune.TIE_BREAKS == TIE_BREAKS
    assert (tasks.SPLITS, tasks.DEFAULT_TARGET_LOSS, tasks.TOKENIZER_FILE) == (SPLITS, DEFAULT_TARGET_LOSS, TOKENIZER_FILE)
    assert train.preset_names() == list_presets()
    assert validate.CONTROL_NAMES == tuple(controls.CONTROLS)
    assert validate.CORE_CONTROLS == controls.CORE_CONTROLS
    assert (validate.DEFAULT_RANDOM_DRAWS, validate.DEFAULT_SEEDS) == (controls.DEFAULT_RANDOM_DRAWS, controls.DEFAULT_SEEDS)
    assert validate.VALIDATION_FILE == VALIDATION_FILE
