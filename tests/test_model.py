"""The transformer: shapes, causality, hooks, AbsTopK, sink, bigram table, config validation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from sparsecircuits.errors import InputError
from sparsecircuits.model import (
    LOCATIONS,
    NODE_LOCATIONS,
    ModelConfig,
    SparseTransformer,
    node_table_markdown,
)
from sparsecircuits.model.sparsity import abs_topk, sparsity_report

V, B, T = 37, 3, 11


def make(**overrides) -> SparseTransformer:
    base = dict(n_layer=2, d_model=24, n_head=3, d_head=8, d_mlp=48, vocab_size=V, n_ctx=16)
    base.update(overrides)
    return SparseTransformer(ModelConfig(**base)).eval()


VARIANTS = {
    "plain": {},
    "all_options": dict(
        afrac=0.25, attention_sink=True, bigram_table=True, positional="concat", d_pos_emb=8,
        final_logits_bias=True,
    ),
    "layernorm_relu_tied": dict(
        norm="layer", norm_bias=True, activation="relu", tied_embeddings=True, positional="learned",
        residual_activation="relu", bias=False,
    ),
}


@pytest.fixture(params=list(VARIANTS))
def model(request) -> SparseTransformer:
    m = make(**VARIANTS[request.param])
    with torch.no_grad():  # make the optional parameters nonzero so they matter
        for name, p in m.named_parameters():
            if name == "bigram_table" or name.endswith("sink_logit"):
                p.normal_()
        if m.final_logits_bias is not None:
            m.final_logits_bias.normal_()
    return m


def tokens(batch: int = B, length: int = T) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(1))


def test_forward_shape(model):
    assert model(tokens()).shape == (B, T, V)


def test_causality(model):
    x = tokens()
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % V
    a, b = model(x), model(y)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    shapes = {"hook_embed": (B, T, cfg.d_model), "ln_final.hook_normalized": (B, T, cfg.d_model)}
    for layer in range(cfg.n_layer):
        p = f"blocks.{layer}."
        for name in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
            shapes[p + name] = (B, T, cfg.d_model)
        for name in ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"):
            shapes[p + name] = (B, T, cfg.n_head, cfg.d_head)
        shapes[p + "attn.hook_pattern"] = (B, cfg.n_head, T, T)
        shapes[p + "attn.hook_in"] = (B, T, cfg.d_in)
        shapes[p + "mlp.hook_in"] = (B, T, cfg.d_in)
        shapes[p + "mlp.hook_post"] = (B, T, cfg.d_mlp)
    return shapes


def test_documented_hooks_in_cache_with_shapes(model):
    _, cache = model.run_with_cache(tokens())
    for name, shape in expected_shapes(model.cfg).items():
        assert name in cache, name
        assert tuple(cache[name].shape) == shape, name


def test_node_locations_have_documented_widths(model):
    _, cache = model.run_with_cache(tokens())
    for layer in range(model.cfg.n_layer):
        for loc in NODE_LOCATIONS:
            act = cache[loc.hook_name(layer)]
            width = act.shape[2] * act.shape[3] if act.dim() == 4 else act.shape[-1]
            assert width == model.cfg.location_width(loc.alias)


def test_aliases_resolve_to_hook_names(model):
    _, by_alias = model.run_with_cache(tokens(), names_filter=["blocks.1.attn_q", "blocks.0.mlp_neuron"])
    assert set(by_alias) == {"blocks.1.attn.hook_q", "blocks.0.mlp.hook_post"}
    with pytest.raises(InputError, match="unknown hook point"):
        model.run_with_cache(tokens(), names_filter="blocks.0.nope")


def test_names_filter_callable_and_detach(model):
    _, cache = model.run_with_cache(tokens(), names_filter=lambda n: n.endswith("hook_v"))
    assert sorted(cache) == [f"blocks.{i}.attn.hook_v" for i in range(model.cfg.n_layer)]


def test_identity_hook_is_bit_identical_and_replacement_changes_logits(model):
    x = tokens()
    base = model(x)
    every = [(lambda n: True, lambda t, hook: t)]
    assert torch.equal(model.run_with_hooks(x, fwd_hooks=every), base)
    replaced = model.run_with_hooks(x, fwd_hooks=[("blocks.0.mlp.hook_post", lambda t, hook: t * 0 + 1.0)])
    assert not torch.allclose(replaced, base)
    assert torch.equal(model(x), base), "hooks must be removed after the call"


def test_hook_context_reads_and_removes(model):
    seen = []
    with model.hooks([("blocks.0.attn_v", lambda t, hook: seen.append(hook.name))]):
        model(tokens())
    model(tokens())
    assert seen == ["blocks.0.attn.hook_v"]


def test_gradients_flow_through_hooks(model):
    scale = torch.ones(model.cfg.d_model, requires_grad=True)
    out = model.run_with_hooks(tokens(), fwd_hooks=[("blocks.0.hook_attn_out", lambda t, hook: t * scale)])
    out.sum().backward()
    assert scale.grad is not None and scale.grad.abs().sum() > 0


def test_abs_topk_keeps_exactly_k_per_token():
    m = make(afrac=0.25, positional="concat", d_pos_emb=8)
    _, cache = m.run_with_cache(tokens())
    for layer in range(m.cfg.n_layer):
        for loc in NODE_LOCATIONS:
            act = cache[loc.hook_name(layer)].reshape(B, T, -1)
            nz = (act != 0).sum(-1)
            assert torch.all(nz == m.cfg.topk(loc.alias)), loc.alias


def test_abs_topk_only_at_enabled_locations():
    m = make(afrac=0.25, afrac_locations=("attn_v", "mlp_neuron"), activation="gelu")
    _, cache = m.run_with_cache(tokens())
    v = cache["blocks.0.attn.hook_v"].reshape(B, T, -1)
    assert torch.all((v != 0).sum(-1) == m.cfg.topk("attn_v"))
    q = cache["blocks.0.attn.hook_q"].reshape(B, T, -1)
    assert torch.all((q != 0).sum(-1) == q.shape[-1])


def test_abs_topk_keeps_largest_magnitudes():
    x = torch.tensor([[3.0, -5.0, 1.0, 0.5, -2.0]])
    assert torch.equal(abs_topk(x, 2), torch.tensor([[3.0, -5.0, 0.0, 0.0, 0.0]]))


def test_very_negative_sink_equals_no_sink():
    with_sink, without = make(attention_sink=True), make()
    without.load_state_dict({k: v for k, v in with_sink.state_dict().items() if "sink" not in k})
    with torch.no_grad():
        for blk in with_sink.blocks:
            blk.attn.sink_logit.fill_(-1e4)
    assert torch.allclose(with_sink(tokens()), without(tokens()), atol=1e-6)
    with torch.no_grad():
        for blk in with_sink.blocks:
            blk.attn.sink_logit.fill_(3.0)
    assert not torch.allclose(with_sink(tokens()), without(tokens()), atol=1e-3)


def test_sink_pattern_leaves_mass_on_the_sink():
    m = make(attention_sink=True)
    with torch.no_grad():
        m.blocks[0].attn.sink_logit.fill_(math.log(1e6))
    _, cache = m.run_with_cache(tokens(), names_filter="blocks.0.attn.hook_pattern")
    assert cache["blocks.0.attn.hook_pattern"].sum(-1).max() < 1e-3


@pytest.mark.parametrize("sink", [True, False])
def test_fused_training_attention_equals_the_pattern_path(sink: bool):
    m = make(attention_sink=sink).train()
    if sink:
        with torch.no_grad():
            for blk in m.blocks:
                blk.attn.sink_logit.normal_()
    x, params = tokens(), list(m.parameters())
    fused = m(x)
    fused_grads = torch.autograd.grad(fused.square().mean(), params)
    seen = []
    with m.hooks([("blocks.0.attn.hook_pattern", lambda t, hook: seen.append(t.shape) and None),
                  ("blocks.1.attn.hook_pattern", lambda t, hook: None)]):
        explicit = m(x)  # a hooked pattern is computed as such
        explicit_grads = torch.autograd.grad(explicit.square().mean(), params)
    assert len(seen) == 1
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    for a, b in zip(fused_grads, explicit_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    m.eval()  # evaluation always takes the pattern path: hooks never change its numbers
    assert torch.equal(m(x), m.run_with_hooks(x, fwd_hooks=[(lambda n: True, lambda t, hook: t)]))


def test_bigram_table_adds_exactly_its_row():
    m = make(bigram_table=True)
    x = tokens()
    before = m(x)
    with torch.no_grad():
        m.bigram_table.copy_(torch.randn(V, V))
    after = m(x)
    assert torch.allclose(after - before, m.bigram_table[x], atol=1e-6)


def test_context_length_is_enforced():
    with pytest.raises(ValueError, match="n_ctx"):
        make()(tokens(length=17))


def test_config_json_round_trip():
    cfg = ModelConfig(**{**dict(n_layer=1, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=10, n_ctx=8),
                         **VARIANTS["all_options"]})
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.afrac_locations, tuple)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("norm", "batch", "norm"),
        ("activation", "tanh", "activation"),
        ("positional", "rotary", "positional"),
        ("n_layer", 0, "n_layer"),
        ("afrac", 1.5, "afrac"),
        ("afrac_locations", ("attn_in", "resid"), "afrac_locations"),
        ("d_pos_emb", 4, "d_pos_emb"),
        ("norm_bias", True, "norm_bias"),
        ("vocab_size", 1, "vocab_size"),
    ],
)
def test_invalid_config_names_the_field(field, value, fragment):
    with pytest.raises(InputError, match=fragment):
        ModelConfig(**{field: value})


def test_concat_requires_d_pos_emb_and_afrac_must_keep_something():
    with pytest.raises(InputError, match="d_pos_emb"):
        ModelConfig(positional="concat")
    with pytest.raises(InputError, match="keeps no entry"):
        ModelConfig(d_model=8, n_head=1, d_head=8, d_mlp=8, afrac=0.05)


def test_unknown_config_field_is_named():
    with pytest.raises(InputError, match="n_embd"):
        ModelConfig.from_dict({"n_embd": 3})


def test_parameter_kinds_cover_exempt_and_budgets():
    m = make(attention_sink=True, bigram_table=True, positional="concat", d_pos_emb=8)
    kinds = m.parameter_kinds()
    assert kinds["bigram_table"] == "exempt"
    assert kinds["blocks.0.attn.sink_logit"] == "exempt"
    assert kinds["blocks.1.ln_p2.weight"] == "exempt"
    assert kinds["ln_final.weight"] == "exempt"
    assert kinds["embed.weight"] == kinds["unembed.weight"] == kinds["pos_embed.weight"] == "embedding"
    assert kinds["blocks.0.mlp.c_fc.bias"] == "bias"
    assert {n for n, k in kinds.items() if k == "matrix"} == {
        f"blocks.{i}.{mod}.weight" for i in range(2)
        for mod in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }


def test_sparsity_report_counts_nonzeros():
    m = make()
    with torch.no_grad():
        w = m.blocks[0].mlp.c_fc.weight
        w.zero_()
        w[0, :5] = 1.0
    report = sparsity_report(m)
    row = next(r for r in report.rows if r.name == "blocks.0.mlp.c_fc.weight")
    assert row.nonzero == 5 and row.numel == w.numel()
    nz, n = report.total(("matrix",))
    expected = sum(int((p != 0).sum()) for name, p in m.named_parameters() if m.parameter_kinds()[name] == "matrix")
    assert nz == expected
    assert report.to_dict()["totals"]["matrix"]["nonzero"] == nz


def test_init_follows_the_paper():
    m = make(n_layer=4, d_model=64, d_mlp=256, n_head=4, d_head=16)
    std = m.cfg.init_std
    assert m.blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(std, rel=0.1)
    assert m.blocks[0].mlp.c_proj.weight.std().item() == pytest.approx(std / math.sqrt(8), rel=0.1)
    assert torch.all(m.blocks[0].ln_1.weight == 1)


def test_node_table_is_rendered_in_the_docs():
    docs = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
    assert node_table_markdown() in docs.read_text(encoding="utf-8")
    assert [loc.alias for loc in NODE_LOCATIONS] == list(LOCATIONS)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().n_layer = 3  # type: ignore[misc]
