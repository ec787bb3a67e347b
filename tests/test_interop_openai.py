"""Import/export of the paper's reference checkpoints (openai/circuit_sparsity).

`ref_forward` below is an independent forward pass written from docs/method.md section 7 over the
reference state-dict keys; it is checked against the logits the reference code computed for
the shared fixture, then used as the oracle for checkpoints built here in the reference layout.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.data.tokenizer import decode, encode, eot_id
from sparsecircuits.errors import InputError
from sparsecircuits.interop.openai import (
    convert_reference,
    export_openai,
    import_openai,
    load_reference,
    load_reference_tokenizer,
    tokenizer_from_gpt2_files,
)
from sparsecircuits.model import LOCATIONS, ModelConfig, SparseTransformer

# The in-repo copy of shared/fixtures (CI clones may not sit beside shared/); override with
# SPARSECIRCUITS_FIXTURES to test against another copy.
FIXTURES = Path(os.environ.get("SPARSECIRCUITS_FIXTURES", Path(__file__).parent / "fixtures"))
BASIC = FIXTURES / "openai_ckpt_basic"


# ---------------------------------------------------------------- independent reference forward


def ref_forward(cfg: dict, sd: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """Logits of a reference checkpoint, computed directly from its state-dict keys."""
    B, T = idx.shape
    H, D = cfg["n_head"], cfg["d_head"]
    afrac = cfg.get("afrac")
    locs = set(cfg.get("afrac_loctypes", "").split(","))

    def topk(x: torch.Tensor, loc: str) -> torch.Tensor:
        if afrac is None or loc not in locs:
            return x
        keep = x.abs().topk(int(afrac * x.shape[-1]), dim=-1).indices
        return torch.where(torch.zeros_like(x, dtype=torch.bool).scatter(-1, keep, True), x, 0.0)

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        if cfg["rms_norm"]:
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps)
        else:
            mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
            y = (x - mu) / torch.sqrt(var + 1e-5)
        y = y * sd[name + ".weight"]
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ sd[name + ".weight"].T
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    def act(x: torch.Tensor) -> torch.Tensor:
        if cfg["activation_type"] == "relu":
            return x.clamp_min(0)
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))

    def resid(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0) if cfg["residual_activation_type"] == "relu" else x

    wpe = sd["transformer.wpe.weight"][:T]
    cat = cfg.get("d_pos_emb") is not None
    x = sd["transformer.wte.weight"][idx] + (0 if cat else wpe)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(cfg["n_layer"]):
        h = f"transformer.h.{i}"
        a = norm(x, h + ".ln_1")
        if cat:
            a = torch.cat([a, norm(wpe, h + ".ln_p1").expand(B, T, -1)], -1)
        q, k, v = linear(topk(a, "attn_in"), h + ".attn.c_attn").split(H * D, -1)
        q, k, v = (topk(t, n).view(B, T, H, D).transpose(1, 2) for t, n in ((q, "attn_q"), (k, "attn_k"), (v, "attn_v")))
        s = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(~causal, float("-inf"))
        if cfg.get("sink"):  # an extra key of logit sink_logit[h] and value zero, seen by all queries
            s = torch.cat([sd[h + ".attn.attn_imp.sink_logit"].view(1, H, 1, 1).expand(B, H, T, 1), s], -1)
            v = torch.cat([torch.zeros(B, H, 1, D), v], 2)
        y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * D)
        x = resid(x + topk(linear(y, h + ".attn.c_proj"), "attn_out"))
        m = norm(x, h + ".ln_2")
        if cat:
            m = torch.cat([m, norm(wpe, h + ".ln_p2").expand(B, T, -1)], -1)
        n = topk(act(linear(topk(m, "mlp_in"), h + ".mlp.c_fc")), "mlp_neuron")
        x = resid(x + topk(linear(n, h + ".mlp.c_proj"), "mlp_out"))
    logits = norm(x, "transformer.ln_f") @ sd["lm_head.weight"].T
    logits = logits + sd.get("final_logits_bias", torch.zeros(cfg["vocab_size"]))
    if cfg.get("enable_bigram_table"):
        logits = logits + sd["bigram_table"][idx]
    return logits


# ---------------------------------------------------------------- reference-layout checkpoints

BASE = {
    "block_size": 12, "vocab_size": 40, "n_layer": 2, "n_head": 2, "d_head": 8, "d_model": 16,
    "d_mlp": 48, "dropout": 0.0, "bias": True, "ln_bias": True, "rms_norm": True,
    "residual_activation_type": "identity", "activation_type": "gelu", "afrac": None,
    "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out", "tied_unembed": False,
    "enable_bigram_table": True, "learnable_bigram_table": True, "d_pos_emb": None, "sink": False,
    "tokenizer_name": "tinypython_2k", "pfrac": 0.25, "expansion_factor": 1, "sparse_matmul_impl": "cuda",
}


def build_state(cfg: dict, *, zero_wpe: bool = False, final_bias: bool = True,
                causal_buffers: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors under the reference key names, shaped by the reference config."""
    g = torch.Generator().manual_seed(1)

    def rnd(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def gain(n: int) -> torch.Tensor:
        return 1 + rnd(n, scale=0.2)

    V, C, H, D = cfg["vocab_size"], cfg["d_model"], cfg["n_head"], cfg["d_head"]
    M = cfg.get("d_mlp", cfg.get("n_mlp"))
    P = cfg["d_pos_emb"]
    d_in = C + (P or 0)
    ln_bias = cfg["ln_bias"] and not cfg["rms_norm"]
    sd = {"transformer.wte.weight": rnd(V, C, scale=1.0)}
    sd["transformer.wpe.weight"] = torch.zeros(cfg["block_size"], P or C) if zero_wpe else rnd(cfg["block_size"], P or C)

    def add_norm(name: str, n: int) -> None:
        sd[name + ".weight"] = gain(n)
        if ln_bias:
            sd[name + ".bias"] = rnd(n, scale=0.1)

    def add_linear(name: str, n_out: int, n_in: int) -> None:
        sd[name + ".weight"] = rnd(n_out, n_in)
        if cfg["bias"]:
            sd[name + ".bias"] = rnd(n_out, scale=0.1)

    for i in range(cfg["n_layer"]):
        h = f"transformer.h.{i}"
        add_norm(h + ".ln_1", C)
        add_linear(h + ".attn.c_attn", 3 * H * D, d_in)
        add_linear(h + ".attn.c_proj", C, H * D)
        if cfg["sink"]:
            sd[h + ".attn.attn_imp.sink_logit"] = rnd(H, scale=2.0)
        if causal_buffers:
            n = cfg["block_size"]
            sd[h + ".attn.bias"] = torch.ones(n, n).tril().view(1, 1, n, n)
        add_norm(h + ".ln_2", C)
        add_linear(h + ".mlp.c_fc", M, d_in)
        add_linear(h + ".mlp.c_proj", C, M)
        if P is not None:
            add_norm(h + ".ln_p1", P)
            add_norm(h + ".ln_p2", P)
    add_norm("transformer.ln_f", C)
    sd["lm_head.weight"] = sd["transformer.wte.weight"] if cfg["tied_unembed"] else rnd(V, C, scale=1.0)
    if cfg["enable_bigram_table"]:
        sd["bigram_table"] = rnd(V, V)
    if final_bias:
        sd["final_logits_bias"] = rnd(V)
    return sd


def write_reference(path: Path, cfg: dict, sd: dict[str, torch.Tensor]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "beeg_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    torch.save(sd, path / "final_model.pt")
    return path


def tokens(cfg: dict, batch: int = 3) -> torch.Tensor:
    return torch.randint(0, cfg["vocab_size"], (batch, cfg["block_size"]), generator=torch.Generator().manual_seed(2))


def assert_logits_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Max absolute error within `rel` of the largest expected logit."""
    err = (actual - expected).abs().max().item() / expected.abs().max().item()
    assert err <= rel, f"max relative error {err:.3g} > {rel}"


# ---------------------------------------------------------------- the shared fixture


def test_fixture_logits_match_reference_code(tmp_path):
    expected = np.load(BASIC / "expected.npz")
    idx, want = torch.from_numpy(expected["idx"]), torch.from_numpy(expected["logits"])
    # the oracle of this file agrees with the reference code itself
    ref_cfg = json.loads((BASIC / "beeg_config.json").read_text())
    sd = torch.load(BASIC / "final_model.pt", weights_only=True)
    assert_logits_close(ref_forward(ref_cfg, sd, idx), want)

    assert main(["import-openai", str(BASIC), "--out", str(tmp_path / "run")]) == 0
    ckpt = load_checkpoint(tmp_path / "run")
    with torch.no_grad():
        got = ckpt.model(idx)
    assert_logits_close(got, want)
    cfg = ckpt.config
    assert (cfg.norm, cfg.positional, cfg.bigram_table, cfg.final_logits_bias) == ("rms", "learned", True, True)
    assert set(cfg.afrac_locations) == set(ref_cfg["afrac_loctypes"].split(","))
    assert cfg.n_ctx == ref_cfg["block_size"] and cfg.d_mlp == ref_cfg["d_mlp"]
    assert ckpt.tokenizer is None
    assert ckpt.training["reference_config"] == ref_cfg
    assert "sparse_matmul_impl" in ckpt.training["ignored_fields"]


def test_import_openai_api(tmp_path):
    result = import_openai(BASIC, tmp_path / "run")
    assert result.path == tmp_path / "run" and result.tokenizer_path is None
    assert result.tokenizer_name == "tinypython_2k"
    assert any("sink is not set" in w for w in result.warnings)
    assert load_checkpoint(result.path).training["warnings"] == list(result.warnings)


def test_cli_without_tokenizer_says_tasks_need_one(tmp_path, capsys):
    assert main(["import-openai", str(BASIC), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "tasks need a tokenizer" in out
    assert out.strip().splitlines()[-1].endswith(str(tmp_path / "run"))


# ---------------------------------------------------------------- every field of section 7

VARIANTS = {
    "rms": ({}, {}),
    "sink": ({"sink": True}, {}),
    "concat-pos-topk": ({"d_pos_emb": 6, "afrac": 0.5, "afrac_loctypes": "attn_in,mlp_in"}, {}),
    "layernorm-bias": ({"rms_norm": False, "ln_bias": True}, {}),
    "layernorm-nobias": ({"rms_norm": False, "ln_bias": False}, {}),
    "tied": ({"tied_unembed": True}, {}),
    "no-bigram": ({"enable_bigram_table": False}, {}),
    "no-final-logits-bias": ({}, {"final_bias": False}),
    "no-linear-bias": ({"bias": False}, {}),
    "relu": ({"activation_type": "relu"}, {}),
    "residual-relu": ({"residual_activation_type": "relu"}, {}),
    "zero-wpe": ({}, {"zero_wpe": True}),
    "causal-buffers": ({"flash": False}, {"causal_buffers": True}),
    "everything": ({"sink": True, "d_pos_emb": 4, "rms_norm": False, "tied_unembed": True, "afrac": 0.25,
                    "afrac_loctypes": ",".join(LOCATIONS), "activation_type": "relu",
                    "residual_activation_type": "relu"}, {}),
}
VARIANTS.update({f"afrac-{loc}": ({"afrac": 0.25, "afrac_loctypes": loc}, {}) for loc in LOCATIONS})


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_matches_reference_forward(tmp_path, name):
    overrides, build = VARIANTS[name]
    cfg = {**BASE, **overrides}
    sd = build_state(cfg, **build)
    result = load_reference(write_reference(tmp_path / "ref", cfg, sd))
    idx = tokens(cfg)
    want = ref_forward(cfg, sd, idx)
    with torch.no_grad():
        got = result.model(idx)
    assert_logits_close(got, want)
    if cfg["afrac"] is not None:  # the AbsTopK actually changes the logits, so it was tested
        dense = ref_forward({**cfg, "afrac": None}, sd, idx)
        assert (dense - want).abs().max() > 1e-3


def test_field_mapping():
    def cfg_of(overrides: dict, **build) -> ModelConfig:
        cfg = {**BASE, **overrides}
        return convert_reference(cfg, build_state(cfg, **build)).model.cfg

    assert cfg_of({"d_pos_emb": 6}).positional == "concat"
    assert cfg_of({"d_pos_emb": 6}).d_pos_emb == 6
    assert cfg_of({}, zero_wpe=True).positional == "none"
    assert cfg_of({}).positional == "learned"
    assert (cfg_of({"rms_norm": False}).norm, cfg_of({"rms_norm": False}).norm_bias) == ("layer", True)
    assert cfg_of({"rms_norm": True, "ln_bias": True}).norm_bias is False
    assert cfg_of({"tied_unembed": True}).tied_embeddings is True
    assert cfg_of({}, final_bias=False).final_logits_bias is False
    assert cfg_of({"sink": True}).attention_sink is True
    assert cfg_of({"afrac": 0.5, "afrac_loctypes": "mlp_out, attn_q,"}).afrac_locations == ("attn_q", "mlp_out")


def test_n_mlp_spelling(tmp_path):
    cfg = {k: v for k, v in BASE.items() if k != "d_mlp"} | {"n_mlp": 40}
    sd = build_state(cfg)
    result = load_reference(write_reference(tmp_path / "ref", cfg, sd))
    assert result.model.cfg.d_mlp == 40
    idx = tokens(cfg)
    with torch.no_grad():
        assert_logits_close(result.model(idx), ref_forward({**cfg, "d_mlp": 40}, sd, idx))


def test_reference_defaults_fill_missing_fields(tmp_path):
    cfg = {k: BASE[k] for k in ("block_size", "vocab_size", "n_layer", "n_head", "d_model")}
    full = {**BASE, **cfg, "d_head": 8, "d_mlp": 64, "bias": True, "ln_bias": True, "rms_norm": False,
            "tied_unembed": True, "enable_bigram_table": False, "afrac": None}
    sd = build_state(full)
    result = load_reference(write_reference(tmp_path / "ref", cfg, sd))
    m = result.model.cfg
    assert (m.d_head, m.d_mlp, m.norm, m.tied_embeddings, m.bigram_table) == (8, 64, "layer", True, False)
    assert any("tied_unembed is not set" in w for w in result.warnings)


def test_unknown_fields_and_locations_are_warned(tmp_path):
    cfg = {**BASE, "brand_new_knob": 3, "afrac": 0.5, "afrac_loctypes": "attn_in,attn_zz"}
    result = load_reference(write_reference(tmp_path / "ref", cfg, build_state(cfg)))
    text = " ".join(result.warnings)
    assert "brand_new_knob" in text and "attn_zz" in text
    assert result.model.cfg.afrac_locations == ("attn_in",)


# ---------------------------------------------------------------- errors: exit code 2, named


def _cli_error(args: list[str], capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


BAD_CONFIGS = {
    "missing-required": ({"n_layer": None}, "n_layer"),
    "wrong-type": ({"n_head": "2"}, "n_head must be a positive integer"),
    "bool-type": ({"rms_norm": "yes"}, "rms_norm must be true or false"),
    "activation": ({"activation_type": "swish"}, "activation_type='swish' is not supported"),
    "residual-topk": ({"afrac": 0.5, "afrac_loctypes": "attn_in,resid_post_attn"}, "resid_post_attn"),
    "afrac-range": ({"afrac": 1.5}, "afrac must be"),
    "afrac-keeps-nothing": ({"afrac": 0.01, "afrac_loctypes": "attn_in"}, "keeps no entry"),
    "n_mlp-conflict": ({"n_mlp": 40}, "n_mlp=40 and d_mlp=48"),
    "tied-aux": ({"use_tied_aux_matrix": True}, "use_tied_aux_matrix"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_exits_2(tmp_path, capsys, name):
    overrides, message = BAD_CONFIGS[name]
    sd = build_state(BASE)
    cfg = {k: v for k, v in {**BASE, **overrides}.items() if v is not None}
    src = write_reference(tmp_path / "ref", cfg, sd)
    err = _cli_error(["import-openai", str(src), "--out", str(tmp_path / "run")], capsys)
    assert message in err and "beeg_config.json" in err
    assert not (tmp_path / "run").exists()


def _mutate(sd: dict, how: str) -> dict:
    sd = dict(sd)
    if how == "missing":
        del sd["transformer.h.1.mlp.c_fc.bias"]
    elif how == "unexpected":
        sd["transformer.h.0.attn.rotary"] = torch.zeros(3)
    elif how == "shape":
        sd["transformer.h.0.mlp.c_fc.weight"] = torch.zeros(47, 16)
    elif how == "tied-differs":
        sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    elif how == "not-a-state-dict":
        sd = {"model": sd, "step": 3}
    return sd


STATE_ERRORS = {
    "missing": ({}, "missing tensors: transformer.h.1.mlp.c_fc.bias"),
    "unexpected": ({}, "unexpected tensors: transformer.h.0.attn.rotary"),
    "shape": ({}, "transformer.h.0.mlp.c_fc.weight has shape (47, 16), config expects (48, 16)"),
    "tied-differs": ({"tied_unembed": True}, "lm_head.weight differs from transformer.wte.weight"),
    "not-a-state-dict": ({}, "not a plain state dict"),
}


@pytest.mark.parametrize("how", list(STATE_ERRORS))
def test_state_dict_mismatch_exits_2(tmp_path, capsys, how):
    overrides, message = STATE_ERRORS[how]
    cfg = {**BASE, **overrides}
    src = write_reference(tmp_path / "ref", cfg, _mutate(build_state(cfg), how))
    err = _cli_error(["import-openai", str(src), "--out", str(tmp_path / "run")], capsys)
    assert message in err and "final_model.pt" in err
    assert not (tmp_path / "run").exists()


def test_missing_and_corrupt_files_exit_2(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert "is not a folder" in _cli_error(["import-openai", str(tmp_path / "nope"), "--out", out], capsys)
    src = write_reference(tmp_path / "ref", BASE, build_state(BASE))
    (src / "final_model.pt").write_bytes(b"not a zip file at all")
    assert "cannot be loaded: it is not a file of tensors" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    data = (tmp_path / "good.pt")
    torch.save(build_state(BASE), data)
    (src / "final_model.pt").write_bytes(data.read_bytes()[:200])
    assert "cannot be loaded: it is truncated or damaged" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    (src / "final_model.pt").write_bytes(b"")
    assert "final_model.pt is empty" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    (src / "final_model.pt").unlink()
    (src / "final_model.pt").mkdir()
    assert "final_model.pt is not a file" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    (src / "final_model.pt").rmdir()
    assert "final_model.pt is missing" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    torch.save(build_state(BASE), src / "final_model.pt")
    (src / "beeg_config.json").write_text("{not json", encoding="utf-8")
    assert "beeg_config.json is not valid JSON" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    (src / "beeg_config.json").write_text("[1, 2]", encoding="utf-8")
    assert "must hold a JSON object" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    (src / "beeg_config.json").unlink()
    assert "beeg_config.json is missing" in _cli_error(["import-openai", str(src), "--out", out], capsys)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- export and round trip


def test_export_import_round_trip(tmp_path, capsys):
    cfg = {**VARIANTS["everything"][0], **{k: v for k, v in BASE.items() if k not in VARIANTS["everything"][0]}}
    sd = build_state(cfg)
    src = write_reference(tmp_path / "ref", cfg, sd)
    assert main(["import-openai", str(src), "--out", str(tmp_path / "run")]) == 0
    assert main(["export-openai", str(tmp_path / "run"), "--out", str(tmp_path / "back")]) == 0
    assert str(tmp_path / "back") in capsys.readouterr().out
    back_cfg = json.loads((tmp_path / "back" / "beeg_config.json").read_text())
    back_sd = torch.load(tmp_path / "back" / "final_model.pt", weights_only=True)
    idx = tokens(cfg)
    # the exported files run in the reference forward with the original logits
    assert_logits_close(ref_forward(back_cfg, back_sd, idx), ref_forward(cfg, sd, idx))
    again = load_reference(tmp_path / "back").model
    assert again.cfg == load_checkpoint(tmp_path / "run").config


def test_export_native_model_round_trip(tmp_path):
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=30, n_ctx=10,
                      attention_sink=True, bigram_table=True, afrac=0.5, afrac_locations=("attn_k", "mlp_neuron"))
    model = SparseTransformer(cfg).eval()
    with torch.no_grad():
        model.bigram_table.normal_()
        for block in model.blocks:
            block.attn.sink_logit.normal_()
    export_openai(model, tmp_path / "ref")
    again = load_reference(tmp_path / "ref").model
    assert again.cfg == cfg
    idx = torch.randint(0, 30, (2, 10))
    with torch.no_grad():
        assert torch.equal(again(idx), model(idx))
    ref_cfg = json.loads((tmp_path / "ref" / "beeg_config.json").read_text())
    sd = torch.load(tmp_path / "ref" / "final_model.pt", weights_only=True)
    with torch.no_grad():
        assert_logits_close(ref_forward(ref_cfg, sd, idx), model(idx))


def test_export_refuses_what_the_reference_cannot_hold(tmp_path):
    model = SparseTransformer(ModelConfig(n_layer=1, d_model=20, n_head=3, d_head=8, d_mlp=16, vocab_size=8, n_ctx=4))
    with pytest.raises(InputError, match="divisible by n_head"):
        export_openai(model, tmp_path / "ref")
    assert not (tmp_path / "ref").exists()


# ---------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-ins for the 256 bytes (the data-gym encoding of encoder.json)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


MERGES = [("d", "e"), ("de", "f"), ("f", "o"), ("fo", "o"), ("Ġ", "foo")]


def write_gpt2_files(folder: Path, eot: bool = True, merges: list[tuple[str, str]] = MERGES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    encoder = {ch: b for b, ch in bytes_to_unicode().items()}
    for a, b in merges:
        encoder[a + b] = len(encoder)
    if eot:
        encoder["<|endoftext|>"] = len(encoder)
    (folder / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_gpt2_files_convert_to_bpe_with_reference_ids(tmp_path):
    folder = write_gpt2_files(tmp_path / "tok")
    tok = tokenizer_from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe")
    enc = json.loads((folder / "encoder.json").read_text())
    text = "def foo(): return foo\n"
    # tinypython pre-tokens: "def" " foo" "():" " return" " foo" "\n"; merges apply inside each
    want = [enc["def"], enc["Ġfoo"], enc["("], enc[")"], enc[":"],
            *[enc[c] for c in "Ġreturn"], enc["Ġfoo"], enc["Ċ"]]
    assert encode(tok, text) == want
    assert decode(tok, want) == text
    assert eot_id(tok) == enc["<|endoftext|>"] == 261
    assert decode(tok, encode(tok, "x = 'é'\t\n")) == "x = 'é'\t\n"


def test_import_with_gpt2_tokenizer_files(tmp_path, capsys):
    cfg = {**BASE, "vocab_size": 262}
    src = write_reference(tmp_path / "ref", cfg, build_state(cfg))
    folder = write_gpt2_files(tmp_path / "tok")
    assert main(["import-openai", str(src), "--out", str(tmp_path / "run"), "--tokenizer", str(folder)]) == 0
    assert "tokenizer.json" in capsys.readouterr().out
    ckpt = load_checkpoint(tmp_path / "run")
    direct = load_reference_tokenizer(folder / "encoder.json", "tinypython_2k")
    text = "def foo(): foo <|endoftext|>"
    assert encode(ckpt.tokenizer, text) == encode(direct, text)
    assert eot_id(ckpt.tokenizer) == 261
    # a tokenizer.json is accepted too (here the one just written)
    assert load_reference_tokenizer(tmp_path / "run" / "tokenizer.json").get_vocab_size() == 262


def test_tokenizer_errors(tmp_path, capsys):
    folder = write_gpt2_files(tmp_path / "tok")
    err = _cli_error(["import-openai", str(BASIC), "--out", str(tmp_path / "run"), "--tokenizer", str(folder)], capsys)
    assert "262 tokens but the model's vocab_size is 64" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match="no <\\|endoftext\\|> token"):
        no_eot = write_gpt2_files(tmp_path / "noeot", eot=False)
        tokenizer_from_gpt2_files(no_eot / "encoder.json", no_eot / "vocab.bpe")
    bad = write_gpt2_files(tmp_path / "bad")
    (bad / "vocab.bpe").write_text("#version: 0.2\nd e\nzz q\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3"):
        tokenizer_from_gpt2_files(bad / "encoder.json", bad / "vocab.bpe")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="encoder.json and vocab.bpe"):
        load_reference_tokenizer(tmp_path / "empty")
    with pytest.raises(InputError, match="no known pre-tokenization regex"):
        load_reference_tokenizer(folder, "some_other_tok")
