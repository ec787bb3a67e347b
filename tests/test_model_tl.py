"""TransformerLens-style ergonomics: top-level names, ActivationCache keys, text in and out,
generation, return_type="loss" and per-head weight views."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import sparsecircuits
from sparsecircuits.checkpoint import load_checkpoint, save_checkpoint
from sparsecircuits.data.tokenizer import EOT, decode, encode, eot_id, train_tokenizer, vocab_size
from sparsecircuits.errors import InputError
from sparsecircuits.model import ActivationCache, ModelConfig, SparseTransformer

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "x = [1, 2, 3]\nprint('hello', x)\n",
    "class Foo:\n    def bar(self):\n        pass\n",
] * 5


@pytest.fixture(scope="module")
def tok():
    """A tiny byte-level BPE tokenizer (about 300 ids) trained in memory."""
    return train_tokenizer(TEXTS, vocab_size=300)


def make(tok=None, **overrides) -> SparseTransformer:
    base = dict(n_layer=2, d_model=24, n_head=3, d_head=8, d_mlp=48, n_ctx=16)
    base.update(overrides)
    base.setdefault("vocab_size", vocab_size(tok) if tok is not None else 40)
    model = SparseTransformer(ModelConfig(**base)).eval()
    with torch.no_grad():  # nonzero biases, so the weight-view checks include them
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.1)
    model.tokenizer = tok
    return model


def tokens(batch: int = 2, length: int = 9, vocab: int = 40) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(3))


# Top-level names


def test_import_sparsecircuits_does_not_import_torch():
    code = (
        "import sys, sparsecircuits\n"
        "assert 'torch' not in sys.modules, 'import sparsecircuits imported torch'\n"
        "assert set(sparsecircuits.__all__) <= set(dir(sparsecircuits))\n"
        "print(sparsecircuits.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sparsecircuits.__version__


def test_top_level_names_are_the_library_objects():
    from sparsecircuits import Circuit, ModelConfig, SparseTransformer, get_task, load_checkpoint
    from sparsecircuits.checkpoint import load_checkpoint as load_fn
    from sparsecircuits.circuits import Circuit as circuit_cls
    from sparsecircuits.model import ModelConfig as config_cls
    from sparsecircuits.model import SparseTransformer as model_cls
    from sparsecircuits.tasks import get_task as get_task_fn

    assert (SparseTransformer, ModelConfig, load_checkpoint, Circuit, get_task) == (
        model_cls, config_cls, load_fn, circuit_cls, get_task_fn
    )
    assert sorted(sparsecircuits.__all__) == sorted(
        ["SparseTransformer", "ModelConfig", "load_checkpoint", "Circuit", "get_task", "prune", "validate"]
    )
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sparsecircuits.nope  # noqa: B018


@pytest.mark.parametrize("name", ["prune", "validate"])
def test_prune_and_validate_call_their_function_and_stay_packages(name, monkeypatch):
    package = getattr(sparsecircuits, name)
    function = getattr(package, name)
    assert inspect.isfunction(function)
    assert inspect.signature(package) == inspect.signature(function)
    monkeypatch.setattr(package, name, lambda *args, **kwargs: (args, kwargs))
    assert package(1, two=2) == ((1,), {"two": 2})
    modules = [n for n in sys.modules if n.startswith(f"sparsecircuits.{name}.") and n.count(".") == 2]
    assert any(getattr(package, n.rsplit(".", 1)[1]) is sys.modules[n] for n in modules)


def test_prune_is_callable_whichever_import_comes_first():
    code = (
        "import sys, sparsecircuits.prune, sparsecircuits.validate\n"
        "from sparsecircuits import prune, validate\n"
        "import sparsecircuits.prune as p\n"
        "assert p is prune is sys.modules['sparsecircuits.prune'] and callable(prune) and callable(validate)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


# ActivationCache


def test_cache_is_a_dict_by_hook_name_that_takes_aliases():
    model = make()
    _, cache = model.run_with_cache(tokens(), names_filter=["blocks.0.attn_q", "blocks.1.mlp_neuron"])
    assert isinstance(cache, ActivationCache) and isinstance(cache, dict)
    assert set(cache) == {"blocks.0.attn.hook_q", "blocks.1.mlp.hook_post"}
    assert cache["blocks.0.attn_q"] is cache["blocks.0.attn.hook_q"]
    assert cache["blocks.1.mlp_neuron"] is cache["blocks.1.mlp.hook_post"]
    assert "blocks.0.attn_q" in cache and "blocks.0.attn_k" not in cache and ("q", 0) in cache
    assert cache.get("blocks.0.attn_k") is None and cache.get(("q", 0)) is cache["blocks.0.attn.hook_q"]
    with pytest.raises(KeyError, match="does not hold.*names_filter"):
        cache["blocks.0.attn_k"]


@pytest.mark.parametrize(
    ("key", "hook"),
    [
        (("resid_pre", 0), "blocks.0.hook_resid_pre"),
        (("resid_mid", 1), "blocks.1.hook_resid_mid"),
        (("resid_post", -1), "blocks.1.hook_resid_post"),
        (("q", 0), "blocks.0.attn.hook_q"),
        (("k", 1), "blocks.1.attn.hook_k"),
        (("v", 0), "blocks.0.attn.hook_v"),
        (("pattern", 1), "blocks.1.attn.hook_pattern"),
        (("attn", 1), "blocks.1.attn.hook_pattern"),
        (("z", 0), "blocks.0.attn.hook_z"),
        (("attn_out", 0), "blocks.0.hook_attn_out"),
        (("mlp_out", 1), "blocks.1.hook_mlp_out"),
        (("pre", 0), "blocks.0.mlp.hook_pre"),
        (("post", 1), "blocks.1.mlp.hook_post"),
        (("attn_q", 0), "blocks.0.attn.hook_q"),
        (("attn_in", 1), "blocks.1.attn.hook_in"),
        (("mlp_neuron", 0), "blocks.0.mlp.hook_post"),
        (("ln_1.hook_scale", 0), "blocks.0.ln_1.hook_scale"),
        (("hook_resid_post", 0), "blocks.0.hook_resid_post"),
        ("blocks.1.resid_post", "blocks.1.hook_resid_post"),
        ("embed", "hook_embed"),
        ("normalized", "ln_final.hook_normalized"),
    ],
)
def test_cache_takes_transformer_lens_keys(key, hook):
    _, cache = make().run_with_cache(tokens())
    assert cache[key] is cache[hook]
    assert cache.index.resolve(key) == hook


def test_cache_errors_name_the_valid_keys():
    _, cache = make().run_with_cache(tokens())
    with pytest.raises(KeyError, match="unknown hook point 'nope'.*resid_post"):
        cache["nope"]
    with pytest.raises(KeyError, match="unknown hook point.*attn_q.*resid_post"):
        cache["nope", 0]
    with pytest.raises(KeyError, match="ambiguous.*blocks.0.attn.hook_in.*blocks.0.mlp.hook_in"):
        cache["in", 0]
    with pytest.raises(KeyError, match="out of range.*2 layer"):
        cache["resid_post", 2]
    with pytest.raises(KeyError, match="integer"):
        cache["resid_post", "0"]
    assert ("resid_post", 5) not in cache and 3 not in cache


def test_names_filter_callable_sees_aliases():
    model = make()
    _, cache = model.run_with_cache(tokens(), names_filter=lambda n: n.endswith(("attn_q", "mlp_neuron")))
    assert sorted(cache) == sorted(
        f"blocks.{i}.{h}" for i in range(2) for h in ("attn.hook_q", "mlp.hook_post")
    )
    seen = []
    with model.hooks([(lambda n: n == "blocks.1.attn_v", lambda t, hook: seen.append(hook.name))]):
        model(tokens())
    assert seen == ["blocks.1.attn.hook_v"]


def test_names_filter_takes_layer_keys_and_forward_kwargs():
    model = make()
    x = tokens()
    _, one = model.run_with_cache(x, names_filter=("resid_post", 0))
    _, two = model.run_with_cache(x, names_filter=[("resid_post", -1), "blocks.0.attn_q"])
    assert list(one) == ["blocks.0.hook_resid_post"]
    assert set(two) == {"blocks.1.hook_resid_post", "blocks.0.attn.hook_q"}
    with pytest.raises(InputError, match="unknown hook point"):
        model.run_with_cache(x, names_filter=["nope"])
    loss, cache = model.run_with_cache(x, names_filter="blocks.0.attn_q", return_type="loss")
    assert torch.equal(loss, model(x, return_type="loss")) and list(cache) == ["blocks.0.attn.hook_q"]


# Loss


def test_return_type_loss_is_next_token_cross_entropy():
    model = make()
    x = tokens()
    logits = model(x)
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    torch.testing.assert_close(model(x, return_type="loss"), manual)
    both_logits, both_loss = model(x, return_type="both")
    assert torch.equal(both_logits, logits) and torch.equal(both_loss, model(x, return_type="loss"))


# Text


def test_to_tokens_and_to_string_round_trip(tok):
    model = make(tok)
    text = "def add(a, b):\n    return a + b\n"
    ids = model.to_tokens(text)
    assert ids.dtype == torch.long and ids.shape == (1, len(encode(tok, text)))
    assert ids[0].tolist() == encode(tok, text)
    assert model.to_string(ids[0]) == text and model.to_string(ids) == [text]
    assert model.to_string(ids[0].tolist()) == text
    assert "".join(model.to_str_tokens(text)) == text
    assert model.to_str_tokens(ids) == [decode(tok, [i]) for i in ids[0].tolist()]
    bos = model.to_tokens(text, prepend_bos=True)
    assert bos[0, 0] == eot_id(tok) and torch.equal(bos[:, 1:], ids)
    assert model.to_str_tokens(text, prepend_bos=True)[0] == EOT


def test_to_tokens_pads_a_batch_with_endoftext(tok):
    model = make(tok)
    batch = model.to_tokens(["x = 1", "def add(a, b):\n"])
    short = len(encode(tok, "x = 1"))
    assert batch.shape == (2, len(encode(tok, "def add(a, b):\n")))
    assert (batch[0, short:] == eot_id(tok)).all()
    assert model.to_string([batch[0, :short].tolist(), batch[1].tolist()]) == ["x = 1", "def add(a, b):\n"]


def test_text_methods_need_a_tokenizer():
    model = make()
    for call in (lambda: model.to_tokens("x"), lambda: model.to_string([1]), lambda: model.generate("x")):
        with pytest.raises(InputError, match="needs a tokenizer.*load_checkpoint"):
            call()


def test_load_checkpoint_attaches_the_tokenizer(tok, tmp_path):
    save_checkpoint(make(tok), tmp_path / "ckpt", tokenizer=tok)
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.model.tokenizer is ckpt.tokenizer is not None
    assert ckpt.model.to_string(ckpt.model.to_tokens("x = [1]")) == ["x = [1]"]


# Generation


def test_greedy_generation_is_the_argmax_continuation(tok):
    model = make(tok)
    prompt = model.to_tokens("def add(a, b):\n")[0]
    new = model.generate_tokens(prompt, max_new_tokens=6, temperature=0)
    ctx = prompt.tolist()
    for token in new.tolist():
        assert token == int(model(torch.tensor([ctx]))[0, -1].argmax())
        ctx.append(token)
    assert torch.equal(model.generate_tokens(prompt, 6, temperature=1.0, top_k=1, seed=5), new)
    assert model.generate("def add(a, b):\n", 6, temperature=0, stop_at_eot=False) == decode(tok, new.tolist())


def test_sampling_is_reproducible_with_a_seed(tok):
    model = make(tok)
    with torch.no_grad():
        model.unembed.weight.normal_(0, 0.02)  # near-uniform next-token distributions
    runs = [model.generate("x = ", 20, temperature=2.0, seed=s, stop_at_eot=False) for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    top = model.generate_tokens(model.to_tokens("x = ")[0], 20, temperature=2.0, top_k=3, seed=0)
    ranked = model(model.to_tokens("x = "))[0, -1].topk(3).indices.tolist()
    assert int(top[0]) in ranked


def test_generation_reads_the_last_n_ctx_tokens(tok):
    model = make(tok, n_ctx=8)
    prompt = torch.randint(0, 200, (8,), generator=torch.Generator().manual_seed(0))
    new = model.generate_tokens(prompt, max_new_tokens=4, temperature=0)
    window = torch.cat([prompt, new[:3]])[-8:]
    assert len(new) == 4 and int(new[3]) == int(model(window[None])[0, -1].argmax())


def test_generation_stops_at_endoftext(tok):
    model = make(tok, final_logits_bias=True)
    model.final_logits_bias[eot_id(tok)] = 100.0
    assert model.generate("x = ", 5, temperature=0) == ""
    assert model.generate("x = ", 3, temperature=0, stop_at_eot=False) == EOT * 3
    assert model.generate("", 2, temperature=0, stop_at_eot=False) == EOT * 2  # starts a new document


def test_generation_checks_its_arguments(tok):
    model = make(tok)
    for kwargs, match in [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ]:
        with pytest.raises(InputError, match=match):
            model.generate("x", **kwargs)
    with pytest.raises(InputError, match="one non-empty prompt"):
        model.generate(torch.zeros(2, 3, dtype=torch.long))


# Weight views


def test_weight_views_have_transformer_lens_shapes():
    model = make(positional="concat", d_pos_emb=4)
    c = model.cfg
    assert model.W_Q.shape == model.W_K.shape == model.W_V.shape == (c.n_layer, c.n_head, c.d_in, c.d_head)
    assert model.W_O.shape == (c.n_layer, c.n_head, c.d_head, c.d_model)
    assert model.W_in.shape == (c.n_layer, c.d_in, c.d_mlp)
    assert model.W_out.shape == (c.n_layer, c.d_mlp, c.d_model)
    assert model.W_E.shape == (c.vocab_size, c.d_model) and model.W_U.shape == (c.d_model, c.vocab_size)
    assert model.W_pos.shape == (c.n_ctx, c.d_pos_emb)
    assert model.b_Q.shape == (c.n_layer, c.n_head, c.d_head) and model.b_O.shape == (c.n_layer, c.d_model)
    assert model.b_in.shape == (c.n_layer, c.d_mlp) and model.b_out.shape == (c.n_layer, c.d_model)
    assert model.W_Q[1, 2].shape == (c.d_in, c.d_head) and len(model.W_Q) == c.n_layer
    assert torch.equal(model.W_Q.stack()[1], model.W_Q[1])
    assert model.b_U is None and make(bias=False).b_Q is None
    with pytest.raises(IndexError):
        model.W_Q[2]
    with pytest.raises(TypeError, match="stack"):
        model.W_Q[0:1]


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_weight_views_share_storage_and_show_zeros():
    model = make()
    attn, mlp = model.blocks[1].attn, model.blocks[1].mlp
    for views, param in [
        (model.W_Q, attn.c_attn.weight), (model.W_K, attn.c_attn.weight), (model.W_V, attn.c_attn.weight),
        (model.W_O, attn.c_proj.weight), (model.W_in, mlp.c_fc.weight), (model.W_out, mlp.c_proj.weight),
    ]:
        assert _storage(views[1]) == _storage(param)
    w, cfg = attn.c_attn.weight, model.cfg
    assert model.W_Q[1].data_ptr() == w.data_ptr()
    assert model.W_K[1].data_ptr() == w.data_ptr() + cfg.d_attn * cfg.d_in * w.element_size()
    assert model.W_U.data_ptr() == model.unembed.weight.data_ptr() and model.W_E is model.embed.weight
    assert _storage(model.W_Q.stack()) != _storage(attn.c_attn.weight)
    d_head = model.cfg.d_head
    with torch.no_grad():
        attn.c_attn.weight[d_head : 2 * d_head] = 0  # query head 1 of layer 1
        model.W_out[1][:, 5] = 0  # residual channel 5 written by layer 1's MLP, edited via the view
    assert (model.W_Q[1][1] == 0).all() and (model.W_Q[1][0] != 0).any()
    assert (mlp.c_proj.weight[5] == 0).all()


def test_weight_views_reproduce_the_forward_pass():
    model = make(positional="concat", d_pos_emb=4)
    x = tokens()
    logits, cache = model.run_with_cache(x)
    close = torch.testing.assert_close
    for layer in range(model.cfg.n_layer):
        a_in, m_in = cache["attn_in", layer], cache["mlp_in", layer]
        for h in range(model.cfg.n_head):
            close(a_in @ model.W_Q[layer][h] + model.b_Q[layer][h], cache["q", layer][:, :, h])
            close(a_in @ model.W_K[layer][h] + model.b_K[layer][h], cache["k", layer][:, :, h])
            close(a_in @ model.W_V[layer][h] + model.b_V[layer][h], cache["v", layer][:, :, h])
        attn_out = torch.einsum("bphd,hdm->bpm", cache["z", layer], model.W_O[layer]) + model.b_O[layer]
        close(attn_out, cache["attn_out", layer])
        close(m_in @ model.W_in[layer] + model.b_in[layer], cache["pre", layer])
        close(cache["post", layer] @ model.W_out[layer] + model.b_out[layer], cache["mlp_out", layer])
    close(model.W_E[x], cache["embed"])
    close(cache["normalized"] @ model.W_U, logits)
