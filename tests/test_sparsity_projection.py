"""The L0 weight projection, its per-channel floor, the anneal schedule and the sparsifier."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.sparsity import (
    WeightSparsifier,
    channel_dim_of,
    kept_fraction_schedule,
    project_to_budget_,
)


def _reference_keep(w: torch.Tensor, k: int, j: int, channel_dim: int) -> set[tuple[int, int]]:
    """Brute force: reserve each channel's j largest |w|, then fill to k by |w| order."""
    mags = w.abs()
    forced = set()
    n_ch = w.shape[channel_dim]
    for c in range(n_ch):
        vec = mags[c] if channel_dim == 0 else mags[:, c]
        for i in sorted(range(len(vec)), key=lambda i: -vec[i].item())[:j]:
            forced.add((c, i) if channel_dim == 0 else (i, c))
    rest = sorted(
        ((r, c) for r in range(w.shape[0]) for c in range(w.shape[1]) if (r, c) not in forced),
        key=lambda rc: -mags[rc].item(),
    )
    return forced | set(rest[: k - len(forced)])


@pytest.mark.parametrize("channel_dim", [0, 1])
def test_projection_matches_brute_force(channel_dim: int) -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(12, 10, generator=g)
    # one channel of tiny weights that the global top-k alone would drop entirely
    if channel_dim == 0:
        w[3] *= 1e-3
    else:
        w[:, 3] *= 1e-3
    k = 60
    expected = _reference_keep(w, k, 4, channel_dim)
    original = w.clone()
    mask = project_to_budget_(w, k, min_per_channel=4, channel_dim=channel_dim)
    kept = {tuple(ix) for ix in mask.nonzero().tolist()}
    assert kept == expected
    assert int(torch.count_nonzero(w)) == k
    assert torch.equal(w[mask], original[mask])  # kept entries are unchanged
    per_channel = (w != 0).sum(dim=1 - channel_dim)
    assert int(per_channel.min()) >= 4
    assert int(per_channel[3]) == 4  # the weak channel holds exactly its floor


def test_projection_without_floor_is_global_topk() -> None:
    w = torch.randn(20, 30, generator=torch.Generator().manual_seed(2))
    k = 50
    threshold = w.abs().flatten().sort(descending=True).values[k - 1]
    project_to_budget_(w, k)
    assert int(torch.count_nonzero(w)) == k
    assert float(w[w != 0].abs().min()) == float(threshold)


def test_projection_edges() -> None:
    w = torch.randn(8, 8)
    before = w.clone()
    assert bool(project_to_budget_(w, 64, 4, 0).all())
    assert torch.equal(w, before)  # a full budget changes nothing
    with pytest.raises(ValueError, match="per-channel floor"):
        project_to_budget_(w, 31, 4, 0)  # 8 channels x 4 = 32 > 31
    narrow = torch.randn(5, 3)  # rows narrower than the floor keep every entry
    project_to_budget_(narrow, 15, 4, 0)
    assert int(torch.count_nonzero(narrow)) == 15


def test_channel_orientation_of_model_matrices() -> None:
    assert channel_dim_of("blocks.0.attn.c_attn.weight") == 0
    assert channel_dim_of("blocks.3.mlp.c_fc.weight") == 0
    assert channel_dim_of("blocks.0.attn.c_proj.weight") == 1
    assert channel_dim_of("blocks.1.mlp.c_proj.weight") == 1
    assert channel_dim_of("embed.weight") is None
    assert channel_dim_of("blocks.0.mlp.c_fc.bias") is None


def test_linear_schedule() -> None:
    kw = {"total_steps": 100, "target": 0.1, "start_frac": 0.1, "end_frac": 0.5}
    assert kept_fraction_schedule(0, **kw) == 1.0
    assert kept_fraction_schedule(10, **kw) == 1.0
    assert kept_fraction_schedule(30, **kw) == pytest.approx(0.55)
    assert kept_fraction_schedule(50, **kw) == 0.1
    assert kept_fraction_schedule(99, **kw) == 0.1
    values = [kept_fraction_schedule(s, **kw) for s in range(101)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))
    assert kept_fraction_schedule(5, 100, 1.0) == 1.0  # dense target: always dense
    # no anneal window: sparse from the first step
    assert kept_fraction_schedule(0, 100, 0.2, 0.0, 0.0) == 0.2


def test_power_schedule_is_linear_on_log_log_axes() -> None:
    kw = {"total_steps": 1000, "target": 0.01, "start_frac": 0.01, "end_frac": 0.5, "shape": "power"}
    # halfway between 10 and 500 in log(step) is sqrt(10 * 500); log(kept) is halfway to log(0.01)
    mid = math.sqrt(10 * 500)
    assert math.log(kept_fraction_schedule(mid, **kw)) == pytest.approx(0.5 * math.log(0.01))
    assert kept_fraction_schedule(10, **kw) == 1.0
    assert kept_fraction_schedule(500, **kw) == 0.01
    lin = kept_fraction_schedule(100, **{**kw, "shape": "linear"})
    assert kept_fraction_schedule(100, **kw) < lin  # front-loaded compared with linear
    with pytest.raises(ValueError, match="anneal shape"):
        kept_fraction_schedule(1, 10, 0.5, shape="cosine")


def _model() -> SparseTransformer:
    cfg = ModelConfig(
        n_layer=1, d_model=32, n_head=2, d_head=16, d_mlp=128, vocab_size=64, n_ctx=16,
        attention_sink=True, bigram_table=True,
    )
    model = SparseTransformer(cfg)
    with torch.no_grad():  # give every parameter (including zero-initialized ones) values
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def test_sparsifier_budgets_and_exemptions() -> None:
    model = _model()
    kinds = model.parameter_kinds()
    sp = WeightSparsifier(model, target=0.25, embedding_factor=2.0, min_per_channel=4)
    assert sp.densities(1.0) == (1.0, 1.0)
    assert sp.densities(0.25) == (0.25, 0.5)
    assert sp.densities(0.625) == pytest.approx((0.625, 0.75))  # both anneal in step
    exempt_before = {n: p.detach().clone() for n, p in model.named_parameters() if kinds[n] == "exempt"}
    assert set(exempt_before) == {
        "bigram_table", "blocks.0.ln_1.weight", "blocks.0.attn.sink_logit",
        "blocks.0.ln_2.weight", "ln_final.weight",
    }
    budgets = sp.project_(0.25)
    params = dict(model.named_parameters())
    for name, p in params.items():
        if kinds[name] == "exempt":
            assert torch.equal(p, exempt_before[name]), name
            continue
        expected = round((0.25 if kinds[name] == "matrix" else 0.5) * p.numel())
        assert budgets[name] == expected, name
        assert int(torch.count_nonzero(p)) == expected, name
    assert int((params["blocks.0.attn.c_attn.weight"] != 0).sum(1).min()) >= 4  # q/k/v channels
    assert int((params["blocks.0.mlp.c_fc.weight"] != 0).sum(1).min()) >= 4  # neurons in
    assert int((params["blocks.0.attn.c_proj.weight"] != 0).sum(0).min()) >= 4  # channels out
    assert int((params["blocks.0.mlp.c_proj.weight"] != 0).sum(0).min()) >= 4  # neurons out


def test_sparsifier_raises_budget_to_the_channel_floor() -> None:
    model = _model()
    sp = WeightSparsifier(model, target=0.01, embedding_factor=4.0, min_per_channel=4)
    budgets = sp.budgets(0.01)
    # c_fc is 128 x 32: 1% would be 41 entries, the floor is 4 per neuron = 512
    assert budgets["blocks.0.mlp.c_fc.weight"] == 512
    assert budgets["embed.weight"] == round(0.04 * 64 * 32)
