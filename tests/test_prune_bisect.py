"""Bisection over k, node ranking, logit calibration and PruneConfig validation."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecircuits.errors import InputError
from sparsecircuits.prune import (
    PruneConfig,
    apply_calibration,
    bisect_k,
    calibrate,
    rank_nodes,
    top_k_keep,
)
from sparsecircuits.tasks import TaskBatch, task_loss


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1000])
def test_bisection_returns_the_smallest_k_meeting_the_target(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    # a random non-increasing loss curve from 0.7 down to 0.05
    steps = torch.rand(n, generator=gen)
    losses = [0.7] + (0.7 - 0.65 * torch.cumsum(steps, 0) / steps.sum()).tolist()
    for target in (0.04, 0.05, 0.1, 0.3, 0.69, 0.7, 0.8):
        calls: list[int] = []

        def loss_at(k: int, calls: list[int] = calls) -> float:
            calls.append(k)
            return losses[k]

        k, curve = bisect_k(loss_at, n, target)
        meeting = [i for i, v in enumerate(losses) if v <= target]
        assert k == (meeting[0] if meeting else None)
        # a target nothing meets also tries k = 1, 2, 4, ... below n
        bound = math.ceil(math.log2(n + 1)) + (2 if meeting else 2 + max(n - 1, 0).bit_length())
        assert len(calls) == len(set(calls)) <= bound
        assert [p["k"] for p in curve] == sorted(set(calls))
        assert all(p["loss"] == losses[p["k"]] for p in curve)


def test_rank_and_top_k() -> None:
    tau = {"a": torch.tensor([0.3, -1.0, 1.0]), "b": torch.tensor([1.0, 0.2])}
    ranking = rank_nodes(tau)
    assert ranking == [("a", 2), ("b", 0), ("a", 0), ("b", 1), ("a", 1)]
    keep = top_k_keep(ranking, 3, {"a": 3, "b": 2})
    assert keep["a"].tolist() == [True, False, True] and keep["b"].tolist() == [True, False]
    with pytest.raises(InputError):
        top_k_keep(ranking, 6, {"a": 3, "b": 2})


def _batch(n: int) -> TaskBatch:
    correct = torch.tensor([0] * n + [1] * n)
    return TaskBatch(torch.zeros(2 * n, 1, dtype=torch.long), torch.zeros(2 * n, dtype=torch.long), correct, 1 - correct)


def test_calibration_recovers_a_known_scale_and_shift() -> None:
    n = 200
    batch = _batch(n)
    gen = torch.Generator().manual_seed(0)
    true_margin = torch.randn(2 * n, generator=gen) * 2 + 1  # margin of correct over wrong
    labels = torch.rand(2 * n, generator=gen) < torch.sigmoid(true_margin)
    margin = torch.where(labels, true_margin, -true_margin)
    # distort: halve the margins and bias every row toward token 0 (the A-side answer)
    side = torch.cat([torch.ones(n), -torch.ones(n)])
    logits = torch.zeros(2 * n, 3)
    logits[torch.arange(2 * n), batch.correct] = margin / 2 + 0.8 * side
    cal = calibrate(logits, batch, steps=16)
    assert cal.loss_before == pytest.approx(float(task_loss(logits, batch)), rel=1e-5)
    assert cal.loss_after < cal.loss_before - 0.01
    assert cal.loss_after == pytest.approx(float(task_loss(apply_calibration(logits, batch, cal), batch)), rel=1e-4)
    assert cal.shift < 0 and cal.scale > 1  # undoes the bias and the shrinking


def test_calibration_with_zero_steps_is_the_identity() -> None:
    batch = _batch(4)
    logits = torch.randn(8, 3)
    cal = calibrate(logits, batch, steps=0)
    assert (cal.scale, cal.shift) == (1.0, 0.0) and cal.loss_before == cal.loss_after


@pytest.mark.parametrize("bad", [
    {"locations": ("attn_x",)}, {"locations": ()}, {"ablation": "median"}, {"steps": 0},
    {"lr": 0.0}, {"k_coef": -1.0}, {"init_tau": 2.0}, {"calibrate_steps": -1}, {"batch_pairs": 1.5},
])
def test_prune_config_rejects_bad_settings(bad: dict) -> None:
    with pytest.raises(InputError):
        PruneConfig(**bad)


def test_prune_config_round_trips() -> None:
    cfg = PruneConfig(locations=("attn_v", "mlp_neuron"), steps=7, freeze_norms=True)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown"):
        PruneConfig.from_dict({"stepz": 3})


@pytest.mark.parametrize("hint", [0, 1, 30, 59, 60, 61, 99, 100, 250])
def test_bisection_with_a_hint_finds_the_same_k(hint: int) -> None:
    n = 100
    losses = [0.7 - 0.6 * min(k, 60) / 60 for k in range(n + 1)]  # meets 0.15 from k=55 on
    calls: list[int] = []

    def loss_at(k: int) -> float:
        calls.append(k)
        return losses[k]

    k, curve = bisect_k(loss_at, n, 0.15, hint=hint)
    assert k == 55
    assert len(calls) == len(set(calls)) <= math.ceil(math.log2(n + 1)) + 3
    if 55 <= hint < n:
        assert calls[0] == hint and max(calls) == hint  # the bracket never went above the hint
    assert [p["k"] for p in curve] == sorted(calls)


@pytest.mark.parametrize("hint", [None, 10, 90])
def test_bisection_finds_a_subset_when_the_full_model_misses_the_target(hint: int | None) -> None:
    # the loss falls to 0.1 at k=37, then rises again to 0.3 with every node (a full model
    # whose noisy nodes push it above the target)
    n = 200
    losses = [max(0.1, 0.8 - 0.02 * k) if k <= 60 else 0.1 + 0.2 * (k - 60) / 140 for k in range(n + 1)]
    k, curve = bisect_k(lambda k: losses[k], n, 0.15, hint=hint)
    assert k == 33  # 0.8 - 0.02 * 33 = 0.14 is the first loss at most 0.15
    if hint != 90:  # a hint that meets the target brackets the search without the scan
        assert {p["k"] for p in curve} >= {n, 32, 64}
    assert bisect_k(lambda k: losses[k], n, 0.05, hint=hint)[0] is None
