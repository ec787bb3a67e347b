"""Validation metrics, evaluation-only controls, the nonsense task and the verdict."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from planted_model import PLANTED_NODES, MarkerTask, circuit_from_nodes, planted_model
from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.prune import PruneConfig, ablation_values
from sparsecircuits.tasks import make_batch
from sparsecircuits.validate import (
    CHANCE_LOSS,
    CONTROLS,
    CORE_CONTROLS,
    Metrics,
    Thresholds,
    compute_metrics,
    control_activation_agreement,
    control_random_circuits,
    jaccard,
    nonsense_pair,
    nonsense_task,
    parse_controls,
    verdict,
)
from sparsecircuits.validate.nonsense import swaps

ZERO = PruneConfig(ablation="zero", locations=("attn_in", "attn_q", "attn_k", "attn_v", "attn_out"))


@pytest.fixture(scope="module")
def planted():
    model = planted_model()
    task = MarkerTask()
    batch = make_batch(task.generate(None, 64, split="test"))
    return model, task, batch, ablation_values(model, "zero")


# --- metrics against a hand computation ---------------------------------------------------


def _hand_final(model, batch, keep, values):
    """Last-position logits with an ablation written independently of `prune.ablate`."""

    def make(hook):
        def fn(x, hp):
            flat = x.flatten(2)
            flat = torch.where(keep[hook], flat, values[hook])
            return flat.view_as(x)

        return fn

    logits = model.run_with_hooks(batch.tokens, [(h, make(h)) for h in keep])
    return logits[torch.arange(len(batch)), batch.last_pos]


def _hand_loss(final, batch):
    rows = torch.arange(len(batch))
    margin = final[rows, batch.correct] - final[rows, batch.wrong]
    return float(F.softplus(-margin).mean()), float((margin > 0).float().mean())


def test_metrics_match_hand_computation():
    torch.manual_seed(3)
    cfg = ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=16, vocab_size=12, n_ctx=8)
    model = SparseTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.7)
    pairs = MarkerTask().generate(None, 5, split="train")
    pairs = [p.__class__(p.pair, p.prompt_ids[:6], 10, p.alt_prompt_ids[:6], 11) for p in pairs]
    batch = make_batch(pairs)
    with torch.no_grad():  # label each prompt by the model's preference, one row against it
        last = model(batch.tokens)[torch.arange(10), batch.last_pos]
    prefer_10 = last[:, 10] > last[:, 11]
    prefer_10[0] = ~prefer_10[0]
    batch.correct = torch.where(prefer_10, 10, 11)
    batch.wrong = torch.where(prefer_10, 11, 10)
    hooks = all_node_hooks(model)[:5]  # attn_in, q, k, v, attn_out of layer 0
    keep = {h: torch.rand(node_width(model, h)) < 0.5 for h in hooks}
    values = {h: torch.randn(node_width(model, h)) for h in hooks}

    with torch.no_grad():
        full = model(batch.tokens)[torch.arange(len(batch)), batch.last_pos]
        circ = _hand_final(model, batch, keep, values)
        necc = _hand_final(model, batch, {h: ~m for h, m in keep.items()}, values)
        none = _hand_final(model, batch, {h: torch.zeros_like(m) for h, m in keep.items()}, values)
        m = compute_metrics(model, keep, batch, values)
    (l_full, a_full), (l_circ, a_circ) = _hand_loss(full, batch), _hand_loss(circ, batch)
    l_necc, l_none = _hand_loss(necc, batch)[0], _hand_loss(none, batch)[0]
    p, q = full.double().softmax(-1), circ.double().softmax(-1)
    kl = float((p * (p.log() - q.log())).sum(-1).mean())

    assert m.full == pytest.approx(l_full, rel=1e-5)
    assert m.circuit == pytest.approx(l_circ, rel=1e-5)
    assert m.circuit_ablated == pytest.approx(l_necc, rel=1e-5)
    assert m.ablate_all == pytest.approx(l_none, rel=1e-5)
    assert m.faithfulness == pytest.approx((l_none - l_circ) / (l_none - l_full), rel=1e-4)
    assert m.necessity == pytest.approx((l_necc - l_full) / (math.log(2) - l_full), rel=1e-4)
    assert (m.accuracy_full, m.accuracy_circuit) == (a_full, a_circ)
    assert m.kl == pytest.approx(kl, rel=1e-5)
    assert m.n_nodes == sum(int(k.sum()) for k in keep.values())
    assert m.n_prompts == 10
    # the ablations really changed something, so the comparisons above are not vacuous
    assert l_full < math.log(2) and 0 < m.accuracy_full < 1
    assert len({round(x, 6) for x in (l_full, l_circ, l_necc, l_none)}) == 4


def test_planted_circuit_is_sufficient_and_necessary(planted):
    model, task, batch, values = planted
    circuit = circuit_from_nodes(model, PLANTED_NODES, task, ZERO)
    m = compute_metrics(model, circuit, batch, values)
    assert m.full < 1e-3 and m.circuit < 1e-3
    assert m.accuracy_full == m.accuracy_circuit == 1.0
    # without the circuit the answer logits tie exactly: loss ln 2, necessity 1
    assert m.circuit_ablated == pytest.approx(CHANCE_LOSS, abs=1e-6)
    assert m.ablate_all == pytest.approx(CHANCE_LOSS, abs=1e-6)
    assert m.necessity == pytest.approx(1.0, abs=1e-3)
    assert m.faithfulness == pytest.approx(1.0, abs=1e-3)
    assert m.kl < 1e-2
    assert m.n_nodes == 7  # only the pruned locations count


def test_circuit_ignores_unpruned_locations(planted):
    """mlp locations were not pruned: the circuit keeps them, necessity must not ablate them."""
    model, task, batch, values = planted
    circuit = circuit_from_nodes(model, PLANTED_NODES, task, ZERO)
    from sparsecircuits.validate import keep_masks_of

    keep = keep_masks_of(model, circuit)
    assert set(keep) == {h for h in all_node_hooks(model) if "mlp" not in h}


def test_bad_keep_mask_is_an_input_error(planted):
    model, _, batch, values = planted
    with pytest.raises(InputError, match="keep mask for blocks.0.attn.hook_q has shape"):
        compute_metrics(model, {"blocks.0.attn.hook_q": torch.ones(3, dtype=torch.bool)}, batch, values)
    with pytest.raises(InputError, match="give a Circuit or a dict"):
        compute_metrics(model, [1, 2], batch, values)


# --- evaluation-only controls -------------------------------------------------------------


def test_random_circuits_fail_where_planted_succeeds(planted):
    model, task, batch, values = planted
    circuit = circuit_from_nodes(model, PLANTED_NODES, task, ZERO)
    r = control_random_circuits(model, circuit, batch, values, target_loss=0.15, n_draws=10, seed=1)
    assert r["n_nodes"] == 7 and len(r["losses"]) == 10
    assert r["circuit_loss"] < 1e-3
    assert r["fraction_reaching_target"] == 0.0
    assert r["loss"]["min"] > 0.5
    assert r["fraction_at_or_below_circuit"] == 0.0


def test_random_circuits_keep_the_size_per_location(planted):
    model, task, batch, values = planted
    from sparsecircuits.validate import random_keep
    from sparsecircuits.validate.metrics import keep_masks_of

    keep = keep_masks_of(model, circuit_from_nodes(model, PLANTED_NODES, task, ZERO))
    gen = torch.Generator().manual_seed(0)
    draws = [random_keep(keep, gen) for _ in range(5)]
    for d in draws:
        assert {h: int(m.sum()) for h, m in d.items()} == {h: int(m.sum()) for h, m in keep.items()}
    assert any(not torch.equal(d["blocks.0.attn.hook_in"], draws[0]["blocks.0.attn.hook_in"]) for d in draws)


def test_activation_agreement_planted_is_perfect(planted):
    model, task, batch, values = planted
    circuit = circuit_from_nodes(model, PLANTED_NODES, task, ZERO)
    a = control_activation_agreement(model, circuit, batch, values)
    assert a["n_nodes"] == 7
    assert a["mean"] == pytest.approx(1.0, abs=1e-6)
    assert a["fraction_below"] == 0.0


def test_activation_agreement_detects_nodes_that_change(planted):
    """Without the marker-sign input, the value and output nodes go silent in the circuit."""
    model, task, batch, values = planted
    nodes = dict(PLANTED_NODES, attn_in=[1, 3])
    circuit = circuit_from_nodes(model, nodes, task, ZERO)
    a = control_activation_agreement(model, circuit, batch, values)
    corr = {p["node"]: p["corr"] for p in a["per_node"]}
    assert corr["blocks.0.attn.hook_v:0"] == 0.0
    assert corr["blocks.0.hook_attn_out:4"] == 0.0
    assert corr["blocks.0.attn.hook_q:0"] == pytest.approx(1.0)
    assert a["mean"] == pytest.approx(4 / 6)
    assert a["fraction_below"] == pytest.approx(2 / 6)


# --- nonsense task ------------------------------------------------------------------------


def test_nonsense_task_relabels_by_a_fixed_hash():
    base = MarkerTask()
    task = nonsense_task(base)
    real = base.generate(None, 200, seed=4, split="train")
    fake = task.generate(None, 200, seed=4, split="train")
    assert fake == task.generate(None, 200, seed=4, split="train")  # deterministic
    n_swapped = 0
    for r, f in zip(real, fake, strict=True):
        assert (f.prompt_ids, f.alt_prompt_ids) == (r.prompt_ids, r.alt_prompt_ids)
        if swaps(r):
            n_swapped += 1
            assert (f.target_id, f.alt_id) == (r.alt_id, r.target_id)
            assert (f.pair.target, f.pair.alt) == (r.pair.alt, r.pair.target)
        else:
            assert f == r
    assert 60 < n_swapped < 140
    other = [nonsense_pair(r, salt="other") for r in real]
    assert other != fake  # the salt changes the labelling
    assert task.source == "nonsense" and task.params["base"]["name"] == base.name


def test_nonsense_task_is_not_solved_by_the_real_mechanism(planted):
    model, task, _, values = planted
    batch = make_batch(nonsense_task(task).generate(None, 64, split="test"))
    m = compute_metrics(model, circuit_from_nodes(model, PLANTED_NODES, task, ZERO), batch, values)
    assert 0.3 < m.accuracy_full < 0.7
    assert m.full > 1.0  # confident and half wrong


# --- verdict and control selection --------------------------------------------------------


def _metrics(circuit=0.05, necessity=0.9):
    return Metrics(
        full=0.01, circuit=circuit, circuit_ablated=0.6, ablate_all=0.69, faithfulness=0.9,
        necessity=necessity, accuracy_full=1.0, accuracy_circuit=0.98, kl=0.01, n_nodes=10, n_prompts=64,
    )


def _pruned(reached, ratio):
    return {"reached_target": reached, "n_nodes": int(10 * ratio), "n_edges": 5, "size_ratio": ratio, "losses": {}}


def test_verdict_status_and_reasons():
    assert verdict(_metrics(), {}, 0.15).status == "ok"
    v = verdict(_metrics(circuit=0.4), {}, 0.15)
    assert v.status == "insufficient" and "above the target" in v.reasons[0]
    v = verdict(_metrics(), {"nonsense_task": _pruned(True, 1.5)}, 0.15)
    assert v.status == "suspect" and "nonsense task" in v.reasons[0]
    assert verdict(_metrics(), {"nonsense_task": _pruned(True, 3.0)}, 0.15).status == "ok"
    assert verdict(_metrics(), {"random_init": _pruned(False, 0.5)}, 0.15).status == "ok"
    v = verdict(_metrics(), {"random_init": _pruned(True, 2.0)}, 0.15)
    assert v.status == "suspect" and "randomly initialized" in v.reasons[0]
    seeds = {"mean_jaccard": 0.4}
    assert verdict(_metrics(), {"seeds": seeds}, 0.15).status == "suspect"
    agree = {"mean": 0.6, "fraction_below": 0.3, "node_min": 0.5}
    assert verdict(_metrics(), {"activation_agreement": agree}, 0.15).status == "suspect"
    assert verdict(_metrics(necessity=0.2), {}, 0.15).status == "suspect"
    rand = {"fraction_reaching_target": 0.1}
    assert verdict(_metrics(), {"random_circuits": rand}, 0.15).status == "suspect"
    # a circuit far better than its own model is suspect; a little better is not
    v = verdict(replace(_metrics(), full=0.3), {}, 0.15)
    assert v.status == "suspect" and "below the full model's 0.300" in v.reasons[0]
    assert verdict(_metrics(circuit=0.05), {}, 0.15).status == "ok"
    assert verdict(replace(_metrics(), full=0.09), {}, 0.15).status == "ok"
    # thresholds are parameters
    assert verdict(_metrics(), {"random_circuits": rand}, 0.15, Thresholds(random_circuits_max_fraction=0.2)).status == "ok"
    v = verdict(_metrics(), {}, 0.15)
    assert set(v.controls_not_run) == set(CONTROLS)
    assert v.thresholds["control_size_ratio"] == 2.0


def test_check_reasons_read_as_their_outcome():
    controls = {
        "random_init": _pruned(True, 3.0),
        "nonsense_task": _pruned(False, 0.5),
        "seeds": {"mean_jaccard": 0.8},
        "random_circuits": {"fraction_reaching_target": 0.0},
        "activation_agreement": {"mean": 0.9, "fraction_below": 0.0, "node_min": 0.5},
    }
    passed = {c.name: c.reason for c in verdict(_metrics(), controls, 0.15).checks}
    assert set(passed) == {"sufficiency", "necessity", "not_better_than_full", *controls}
    assert "does not undercut the full model's 0.010" in passed["not_better_than_full"]
    assert "within the target" in passed["sufficiency"]
    assert "only at more than 2x" in passed["random_init"]
    assert passed["nonsense_task"] == "pruning a nonsense task does not reach the target loss (5 nodes, 0.50x the circuit)"
    assert "similar nodes" in passed["seeds"] and "as in the full model" in passed["activation_agreement"]
    assert not any("also reaches" in r or "above the target" in r for r in passed.values())
    failed = verdict(_metrics(circuit=0.4), {"random_init": _pruned(True, 1.0)}, 0.15).checks
    assert "above the target" in failed[0].reason and "also reaches" in failed[-1].reason


def test_parse_controls():
    assert parse_controls("all") == list(CONTROLS)
    assert parse_controls("core") == list(CORE_CONTROLS)
    assert parse_controls("none") == []
    assert parse_controls("seeds, random_circuits,seeds") == ["seeds", "random_circuits"]
    with pytest.raises(InputError, match="unknown control 'bogus'"):
        parse_controls("random_circuits,bogus")


def test_jaccard():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0


def test_validation_json_round_trips_through_the_typed_report(tmp_path):
    """validation.json reads back into the typed report (Verdict of Checks) and writes the
    same JSON again."""
    from sparsecircuits.validate.pipeline import VALIDATION_FILE, ValidationReport
    from sparsecircuits.validate.records import Verdict

    v = verdict(_metrics(circuit=0.4), {"random_init": _pruned(True, 1.0)}, 0.15)
    assert isinstance(v, Verdict) and v.check("sufficiency").passed is False
    report = ValidationReport(circuit={"path": None, "task": "t", "n_nodes": 3, "n_edges": 2}, settings={"seed": 0},
                              metrics=_metrics(), controls={"random_init": _pruned(True, 1.0)}, verdict=v)
    report.save(tmp_path)
    text = (tmp_path / VALIDATION_FILE).read_text()
    loaded = ValidationReport.load(tmp_path)
    assert loaded.verdict == v and loaded.metrics == report.metrics
    assert json.dumps(loaded.to_dict(), indent=1) + "\n" == text
    with pytest.raises(InputError, match="missing"):
        ValidationReport.load(tmp_path / "nowhere")


def test_a_run_with_fewer_controls_never_replaces_a_richer_validation(tmp_path):
    """validation.json stays when the new run lacks one of its controls; the new report goes
    beside it (validation-CONTROLS.json); a run with at least its controls replaces it."""
    from sparsecircuits.validate.pipeline import VALIDATION_FILE, ValidationReport

    def report(controls: dict) -> ValidationReport:  # (the verdict does not matter here)
        v = verdict(_metrics(), {}, 0.15)
        return ValidationReport(circuit={"path": None, "task": "t", "n_nodes": 3, "n_edges": 2},
                                settings={"seed": 0}, metrics=_metrics(), controls=controls, verdict=v)

    rich = report({"random_init": _pruned(True, 1.0), "nonsense_task": _pruned(True, 1.0)})
    assert rich.save(tmp_path) == tmp_path / VALIDATION_FILE
    assert report({}).save(tmp_path) == tmp_path / "validation-none.json"
    assert report({"random_init": _pruned(True, 1.0)}).save(tmp_path) == tmp_path / "validation-random_init.json"
    assert set(ValidationReport.load(tmp_path).controls) == {"random_init", "nonsense_task"}  # kept
    richer = report({**rich.controls, "frozen_norms": _pruned(True, 1.0)})
    assert richer.save(tmp_path) == tmp_path / VALIDATION_FILE
    assert set(ValidationReport.load(tmp_path).controls) == {"random_init", "nonsense_task", "frozen_norms"}
