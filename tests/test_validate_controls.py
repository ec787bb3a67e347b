"""End-to-end validation: controls that prune again, `validate`, validation.json and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from planted_model import PLANTED_NODES, MarkerTask, circuit_from_nodes, planted_model
from sparsecircuits.checkpoint import save_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.model import SparseTransformer
from sparsecircuits.prune import PruneConfig, ablation_values, prune
from sparsecircuits.tasks import get_task, registered_tasks
from sparsecircuits.tasks.base import add_task
from sparsecircuits.validate import (
    CONTROLS,
    VALIDATION_FILE,
    nonsense_task,
    random_init_model,
    validate,
)

FAST = PruneConfig(
    ablation="zero", steps=60, batch_pairs=16, lr=0.05, k_coef=1e-3, n_train_pairs=128,
    n_eval_pairs=64, calibrate_steps=0, seed=0,
)


def _marker_task() -> MarkerTask:
    """The planted task, registered once (the CLI finds tasks by name)."""
    if "planted_marker" not in registered_tasks():
        add_task(MarkerTask())
    return get_task("planted_marker")


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    """A checkpoint of the planted model and a folder with its planted circuit."""
    root = tmp_path_factory.mktemp("planted")
    model = planted_model()
    save_checkpoint(model, root / "model")
    circuit = circuit_from_nodes(model, PLANTED_NODES, _marker_task(), FAST, path=str(root / "model"))
    circuit.save(root / "circuit")
    return root


@pytest.mark.slow
def test_planted_circuit_passes_core_controls(planted_dir):
    model = planted_model()
    report = validate(planted_dir / "circuit", model, None, "core", progress=False)
    v = report.verdict
    assert v.status == "ok", v.reasons
    assert {c.name for c in v.checks} == {
        "sufficiency", "necessity", "not_better_than_full", "random_circuits", "random_init", "nonsense_task",
        "activation_agreement",
    }
    assert report.controls["nonsense_task"]["reached_target"] is False
    assert report.controls["random_init"]["reached_target"] is False
    assert report.controls["random_circuits"]["fraction_reaching_target"] == 0.0
    saved = json.loads((planted_dir / "circuit" / VALIDATION_FILE).read_text())
    assert list(saved) == ["format", "version", "circuit", "settings", "metrics", "controls", "verdict"]
    assert saved["verdict"]["status"] == "ok"
    assert saved["metrics"]["n_nodes"] == 7


def test_random_nodes_fail_sufficiency():
    model = planted_model()
    gen = np.random.default_rng(0)
    nodes = {alias: sorted(gen.choice(8, len(idx), replace=False).tolist()) for alias, idx in PLANTED_NODES.items()}
    nodes["attn_v"] = [3]  # never the planted value channel 0
    circuit = circuit_from_nodes(model, nodes, _marker_task(), FAST)
    report = validate(circuit, model, None, "random_circuits", progress=False)
    assert report.verdict.status == "insufficient"
    assert report.metrics.circuit > 0.5
    first = report.verdict.checks[0]
    assert (first.name, first.passed) == ("sufficiency", False)


@pytest.mark.slow
def test_random_init_model_on_nonsense_task_is_flagged():
    model = random_init_model(planted_model(), seed=3, match_sparsity=False)
    task = nonsense_task(_marker_task())
    circuit = prune(model, task, None, FAST, progress=False).circuit
    report = validate(circuit, model, None, "random_circuits,activation_agreement", task=task, progress=False)
    # no circuit of a random model can compute a hash of the prompt: flagged as insufficient
    assert report.verdict.status == "insufficient"
    assert "above the target" in report.verdict.reasons[0]
    assert report.metrics.circuit > 0.5


@pytest.mark.slow
def test_all_controls_on_planted(planted_dir, tmp_path):
    model = planted_model()
    data = np.random.default_rng(0).integers(0, 10, 4000)
    report = validate(
        planted_dir / "circuit", model, None, "all", data=data, cache_dir=tmp_path, n_seeds=2,
        n_random=4, write=False, progress=False,
    )
    assert list(report.controls) == list(CONTROLS)
    seeds = report.controls["seeds"]
    assert seeds["seeds"] == [0, 1]
    assert seeds["jaccard"][0][0] == seeds["jaccard"][1][1] == 1.0
    assert seeds["jaccard"][0][1] == seeds["jaccard"][1][0]
    assert report.controls["zero_ablation"]["ablation"] == "mean"
    assert report.controls["frozen_norms"]["freeze_norms"] is True
    # the planted circuit does not depend on norm rescaling
    assert report.controls["frozen_norms"]["circuit_loss_other_mode"] < 0.15
    assert len(report.verdict.notes) == 2
    assert report.verdict.controls_not_run == []


def test_random_init_model_matches_sparsity():
    model = planted_model()
    fresh = random_init_model(model, seed=0)
    assert isinstance(fresh, SparseTransformer)
    trained = dict(model.named_parameters())
    for name, p in fresh.named_parameters():
        if model.parameter_kinds()[name] != "exempt":
            assert int(torch.count_nonzero(p)) == int(torch.count_nonzero(trained[name])), name
    assert not torch.equal(fresh.embed.weight, model.embed.weight)
    assert torch.equal(random_init_model(model, seed=0).embed.weight, fresh.embed.weight)


def test_cli_validate_writes_json_and_table(planted_dir, tmp_path, capsys):
    circuit = shutil.copytree(planted_dir / "circuit", tmp_path / "circuit")  # without other tests' validation
    (circuit / VALIDATION_FILE).unlink(missing_ok=True)
    code = main(["validate", "--circuit", str(circuit), "--controls",
                 "random_circuits,activation_agreement", "--random-draws", "3", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "verdict: OK" in out and str(circuit / VALIDATION_FILE) in out
    saved = json.loads((circuit / VALIDATION_FILE).read_text())
    assert saved["settings"]["controls"] == ["random_circuits", "activation_agreement"]
    assert len(saved["controls"]["random_circuits"]["losses"]) == 3

    code = main(["validate", "--circuit", str(circuit), "--controls", "none", "--json",
                 "--no-progress"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["verdict"]["status"] == "ok"
    assert json.loads((circuit / VALIDATION_FILE).read_text()) == saved  # the richer run is kept
    assert (circuit / "validation-none.json").is_file()


def test_cli_validate_bad_input(planted_dir, tmp_path, capsys):
    assert main(["validate", "--circuit", str(planted_dir / "circuit"), "--controls", "bogus"]) == 2
    assert "unknown control 'bogus'" in capsys.readouterr().err
    assert main(["validate", "--circuit", str(tmp_path / "nothing")]) == 2
    assert "circuit.json" in capsys.readouterr().err
    assert main(["validate", "--circuit", str(planted_dir / "circuit"), "--model", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_activation_agreement_reports_the_last_position_and_a_random_baseline():
    """Beside today's figure: agreement at the last prompt position, and the agreement of
    random circuits of the same size per location (the drift any node set that small shows);
    keeping every node agrees perfectly everywhere."""
    from sparsecircuits.tasks import make_batch
    from sparsecircuits.validate.controls import control_activation_agreement

    model, task = planted_model(), _marker_task()
    batch = make_batch(task.generate(None, 32, split="test"))
    circuit = circuit_from_nodes(model, PLANTED_NODES, task, FAST)
    values = ablation_values(model, "zero")
    result = control_activation_agreement(model, circuit, batch, values, n_random=4)
    assert {"last_position_mean", "random_mean", "excess_over_random"} <= set(result)
    assert result["excess_over_random"] == pytest.approx(result["mean"] - result["random_mean"])
    assert -1.0 <= result["last_position_mean"] <= 1.0 and result["random_mean"] < result["mean"]
    everything = {h: torch.ones_like(m) for h, m in circuit.keep_masks(model).items()}
    full = control_activation_agreement(model, everything, batch, values, n_random=2)
    assert (full["mean"], full["last_position_mean"], full["random_mean"]) == pytest.approx((1.0, 1.0, 1.0))
