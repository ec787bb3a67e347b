"""Node masks, the ablate context, frozen norms (hook patches on every norm's
`hook_scale`/`hook_center`) and the last-position forward."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.interventions import ablate, frozen_norms, record_norm_scales
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.prune import NodeMasks, heaviside
from sparsecircuits.tasks import TaskBatch, final_logits, task_loss


def tiny_model(**overrides) -> SparseTransformer:
    cfg = dict(
        n_layer=2, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=40, n_ctx=12,
        afrac=0.5, attention_sink=True, bigram_table=True, final_logits_bias=True,
    )
    cfg.update(overrides)
    model = SparseTransformer(ModelConfig(**cfg)).eval()
    with torch.no_grad():
        model.bigram_table.normal_(0, 0.1)
        model.final_logits_bias.normal_(0, 0.1)
        for block in model.blocks:
            block.attn.sink_logit.normal_()
    return model


def random_values(model: SparseTransformer) -> dict[str, torch.Tensor]:
    return {h: torch.randn(node_width(model, h)) for h in all_node_hooks(model)}


def test_ablate_keeping_everything_is_bit_identical() -> None:
    model = tiny_model()
    tokens = torch.randint(0, 40, (3, 10))
    base = model(tokens)
    keep = {h: torch.ones(node_width(model, h), dtype=torch.bool) for h in all_node_hooks(model)}
    with ablate(model, keep, random_values(model)):
        assert torch.equal(model(tokens), base)
    with ablate(model, {}, {}):
        assert torch.equal(model(tokens), base)


def test_masks_all_on_equal_the_base_model_bit_for_bit() -> None:
    model = tiny_model()
    tokens = torch.randint(0, 40, (3, 10))
    base = model(tokens)
    masks = NodeMasks(model, all_node_hooks(model), init=0.5, noise=0.05)
    assert all(bool((t > 0).all()) for t in masks.tau)
    with masks.applied(model, random_values(model)):
        assert torch.equal(model(tokens), base)


@pytest.mark.parametrize("hook,index", [("blocks.1.attn.hook_q", 11), ("blocks.0.hook_attn_out", 5),
                                        ("blocks.1.mlp.hook_post", 30), ("blocks.0.attn.hook_in", 0)])
def test_an_ablated_node_takes_its_ablation_value(hook: str, index: int) -> None:
    model = tiny_model()
    tokens = torch.randint(0, 40, (2, 9))
    values = random_values(model)
    _, base = model.run_with_cache(tokens, names_filter=[hook])
    keep = {hook: torch.ones(node_width(model, hook), dtype=torch.bool)}
    keep[hook][index] = False
    with ablate(model, keep, values):
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    act, ref = cache[hook].flatten(2), base[hook].flatten(2)
    assert torch.all(act[..., index] == values[hook][index])
    others = torch.arange(act.shape[-1]) != index
    assert torch.equal(act[..., others], ref[..., others])  # same hook, upstream of the change


def test_a_mask_below_zero_gives_the_ablation_value() -> None:
    model = tiny_model()
    tokens = torch.randint(0, 40, (2, 7))
    hook = "blocks.0.attn.hook_v"
    values = random_values(model)
    masks = NodeMasks(model, [hook], init=0.5, noise=0.0)
    with torch.no_grad():
        masks.tau[0][3] = -0.2
    with masks.applied(model, values):
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    v = cache[hook].flatten(2)
    assert torch.all(v[..., 3] == values[hook][3])
    assert not torch.all(v[..., 4] == values[hook][4])


def test_gradients_reach_every_mask_parameter() -> None:
    model = tiny_model(afrac=None)
    tokens = torch.randint(0, 40, (4, 8))
    masks = NodeMasks(model, all_node_hooks(model), init=0.1, noise=0.01)
    with masks.applied(model, random_values(model)):
        model(tokens)[:, -1].logsumexp(-1).sum().backward()
    for hook, tau in zip(masks.hooks, masks.tau, strict=True):
        assert tau.grad is not None, hook
        assert (tau.grad != 0).float().mean() > 0.5, hook


def test_heaviside_forward_is_a_step_and_backward_the_sigmoid_derivative() -> None:
    tau = torch.tensor([-0.5, -0.0, 0.0, 0.3, 1.0], requires_grad=True)
    out = heaviside(tau, temperature=0.5)
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    s = torch.sigmoid(tau.detach() / 0.5)
    assert torch.allclose(tau.grad, s * (1 - s) / 0.5)


def test_masks_are_clamped_to_plus_minus_one() -> None:
    model = tiny_model()
    masks = NodeMasks(model, ["blocks.0.attn.hook_k"], init=0.1)
    with torch.no_grad():
        masks.tau[0][0], masks.tau[0][1] = 3.0, -2.0
    masks.clamp_()
    assert masks.tau[0][0] == 1.0 and masks.tau[0][1] == -1.0


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"positional": "learned", "norm": "layer", "residual_activation": "relu"},
        {"positional": "concat", "d_pos_emb": 8, "n_layer": 1},
    ],
)
def test_last_logits_match_the_full_forward(overrides: dict) -> None:
    model = tiny_model(**overrides)
    tokens = torch.randint(0, 40, (5, 9))
    last = torch.tensor([8, 3, 0, 5, 7])
    batch = TaskBatch(tokens, last, torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long))
    full = final_logits(model(tokens), batch)
    assert torch.allclose(model.last_logits(tokens, last), full, atol=1e-5)
    assert torch.allclose(task_loss(model.last_logits(tokens, last), batch), task_loss(model(tokens), batch))
    masks = NodeMasks(model, all_node_hooks(model), init=0.0, noise=0.5, generator=torch.Generator().manual_seed(1))
    values = random_values(model)
    with masks.applied(model, values):
        masked = model.last_logits(tokens, last)
        assert torch.allclose(masked, final_logits(model(tokens), batch), atol=1e-5)
    assert not torch.allclose(masked, full, atol=1e-3)


@pytest.mark.parametrize("norm", ["rms", "layer"])
def test_frozen_norms_use_the_full_models_scale(norm: str) -> None:
    model = tiny_model(norm=norm, afrac=None)
    tokens = torch.randint(0, 40, (3, 8))
    base = model(tokens)
    stats = record_norm_scales(model, lambda: model(tokens))
    with frozen_norms(model, stats):
        assert torch.allclose(model(tokens), base, atol=1e-5)
    hook = "blocks.1.hook_mlp_out"
    keep = {hook: torch.zeros(16, dtype=torch.bool)}
    values = {hook: torch.zeros(16)}
    resid: dict[str, torch.Tensor] = {}

    def grab(x: torch.Tensor, hp) -> None:
        resid["x"] = x.detach()

    with frozen_norms(model, stats), ablate(model, keep, values), model.hooks([("blocks.1.hook_resid_post", grab)]):
        frozen = model(tokens)
    center = stats.get("ln_final.hook_center", 0.0)
    inv = stats["ln_final.hook_scale"]
    expected = (resid["x"] - center) * inv * model.ln_final.weight
    logits = model.unembed(expected) + model.final_logits_bias + model.bigram_table[tokens]
    assert torch.allclose(frozen, logits, atol=1e-5)
    with ablate(model, keep, values):
        assert not torch.allclose(model(tokens), frozen, atol=1e-4)


def test_ablate_rejects_bad_shapes_and_hooks() -> None:
    model = tiny_model()
    with pytest.raises(InputError, match="expected"), ablate(model, {"blocks.0.attn.hook_q": torch.zeros(3, dtype=torch.bool)}, {}):
        pass
    with pytest.raises(InputError, match="not a node-location hook"), ablate(model, {"blocks.0.hook_resid_pre": torch.zeros(16, dtype=torch.bool)}, {}):
        pass
    with pytest.raises(InputError, match="no ablation value"), ablate(model, {"blocks.0.attn.hook_q": torch.zeros(16, dtype=torch.bool)}, {}):
        pass
    with pytest.raises(InputError, match="only 2 layer"), ablate(model, {"blocks.5.attn.hook_q": torch.zeros(16, dtype=torch.bool)}, {}):
        pass
