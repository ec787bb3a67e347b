"""Sparse execution of the projected matrices: the CSR path equals the dense path within float
tolerance (forward, every gradient, every node location, AbsTopK, sink, bigram table), in
training too (50 steps in float64 end at the same weights), the weight gradient runs over
the sparser operand, and `auto` follows the machine's calibration table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer, native, sparse_exec
from sparsecircuits.model.locations import node_hooks
from sparsecircuits.model.sparse_exec import ProjectedLinear
from sparsecircuits.model.sparsity import WeightSparsifier, abs_topk
from sparsecircuits.train import train

ALL_LOCATIONS = ("attn_in", "attn_q", "attn_k", "attn_v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")


def _sparse_model(**kw) -> SparseTransformer:
    cfg = ModelConfig(n_layer=2, d_model=32, n_head=2, d_head=16, d_mlp=128, vocab_size=64, n_ctx=16,
                      attention_sink=True, bigram_table=True, afrac=0.25, afrac_locations=ALL_LOCATIONS, **kw)
    model = SparseTransformer(cfg)
    WeightSparsifier(model, 0.125, 4.0, 4).project_(0.125)
    return model


def _run(model: SparseTransformer, tokens: torch.Tensor, execution: str) -> tuple[torch.Tensor, dict, dict]:
    model.set_execution(execution).zero_grad()
    hooks = node_hooks(model)
    logits, cache = model.run_with_cache(tokens, names_filter=hooks)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).backward()
    return logits.detach(), {h: cache[h] for h in hooks}, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("positional", ["learned", "concat"])
def test_the_csr_path_equals_the_dense_path(positional: str) -> None:
    model = _sparse_model(positional=positional, d_pos_emb=8 if positional == "concat" else None)
    tokens = torch.randint(0, 64, (3, 16))
    dense_logits, dense_acts, dense_grads = _run(model, tokens, "dense")
    sparse_logits, sparse_acts, sparse_grads = _run(model, tokens, "sparse")
    torch.testing.assert_close(sparse_logits, dense_logits, rtol=1e-5, atol=1e-5)
    assert dense_acts.keys() == sparse_acts.keys() and len(dense_acts) == 2 * len(ALL_LOCATIONS)
    for hook in dense_acts:  # every node location sees the same activations (AbsTopK picks the same entries)
        torch.testing.assert_close(sparse_acts[hook], dense_acts[hook], rtol=1e-5, atol=1e-5, msg=hook)
    for name in dense_grads:  # weight gradients stay dense: every entry, kept or not
        torch.testing.assert_close(sparse_grads[name], dense_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    kept = model.blocks[0].mlp.c_fc.weight != 0
    assert bool((sparse_grads["blocks.0.mlp.c_fc.weight"][~kept] != 0).any())


def test_eval_keeps_csr_copies_until_the_weight_changes() -> None:
    model = _sparse_model().eval().set_execution("sparse")
    tokens = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        before = model(tokens)
        again = model(tokens)
        model.blocks[1].mlp.c_proj.weight.mul_(0.0)  # an in-place change moves the version counter
        after = model(tokens)
        model.set_execution("dense")
        dense_after = model(tokens)
    assert torch.equal(before, again)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, dense_after, rtol=1e-5, atol=1e-5)


def test_training_with_sparse_execution_matches_dense(small_corpus_dir: Path, tmp_path: Path) -> None:
    base = ["train.steps=20", "train.eval_every=0", "train.log_every=5", "train.checkpoint_every=0"]
    runs = {}
    for execution in ("dense", "sparse"):
        result = train("tiny-sparse", small_corpus_dir, tmp_path / execution, overrides=[*base, f"train.execution={execution}"],
                       progress=False)
        runs[execution] = result
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "dense" / "model.safetensors"))
    b = load_file(str(tmp_path / "sparse" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-5, msg=name)
    assert runs["sparse"].final_val_loss == pytest.approx(runs["dense"].final_val_loss, abs=1e-4)


def test_fifty_exact_steps_in_float64_end_at_the_dense_weights(small_corpus_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """In float32 the two paths round differently and the top-k re-selection amplifies that
    (docs/sparse-execution.md); in float64 the same math must give the same weights."""
    from sparsecircuits.train import Trainer, load_run_config

    calls = []
    real = sparse_exec._CsrLinear.apply
    monkeypatch.setattr(sparse_exec._CsrLinear, "apply", lambda *a: (calls.append(a[0].dtype), real(*a))[1])
    weights = {}
    for execution in ("dense", "sparse"):
        run = load_run_config("tiny-sparse", ["train.steps=50", "train.eval_every=0", "train.checkpoint_every=0",
                                              "train.anneal_start_frac=0.0", "train.anneal_end_frac=0.0",
                                              f"train.execution={execution}"])
        trainer = Trainer(run, small_corpus_dir, tmp_path / execution, progress=False)
        trainer.model.double()
        for _ in range(50):
            trainer.step()
        trainer.close()
        weights[execution] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert len(calls) >= 50 and set(calls) == {torch.float64}  # the sparse run went through CSR, in float64
    for name, dense in weights["dense"].items():
        assert dense.dtype == torch.float64 or not dense.is_floating_point()
        torch.testing.assert_close(weights["sparse"][name], dense, rtol=0, atol=1e-10, msg=name)


def test_auto_follows_the_calibration_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(sparse_exec, "_table", None)
    calls = []
    real = sparse_exec._CsrLinear.apply
    monkeypatch.setattr(sparse_exec._CsrLinear, "apply", lambda *a: (calls.append(1), real(*a))[1])
    layer = ProjectedLinear(64, 256)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) < 0.125)
    layer.execution = "auto"
    x = torch.randn(8, 64)
    layer(x)  # measures this shape once and writes the table
    saved = json.loads((tmp_path / "sparse-exec.json").read_text())[sparse_exec.machine_key()]
    (key, times), = saved.items()
    assert key.startswith("256x64|d2^-3|r2^3|") and times["dense_s"] > 0 and times["sparse_s"] > 0
    for faster, expected in ((True, 1), (False, 0)):  # a verdict either way, read from the table
        sparse_exec._load_table()[key] = {"dense_s": 1.0, "sparse_s": 0.5 if faster else 2.0}
        calls.clear()
        layer(x)
        assert len(calls) == expected


def test_off_the_csr_path_and_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = sparse_exec._CsrLinear.apply
    monkeypatch.setattr(sparse_exec._CsrLinear, "apply", lambda *a: (calls.append(1), real(*a))[1])
    model = _sparse_model().set_execution("sparse")
    tokens = torch.randint(0, 64, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(tokens)  # autocast runs the dense kernels
    assert calls == []
    model(tokens)
    assert len(calls) == 2 * 4 + 1  # two layers of four projected matrices, and the unembedding
    with pytest.raises(InputError, match="execution must be one of"):
        model.set_execution("csr")
    from sparsecircuits.train.config import TrainConfig

    with pytest.raises(InputError, match="train.execution"):
        TrainConfig(execution="fast")


@pytest.mark.skipif(native.kernels() is None, reason=f"native kernels unavailable: {native.build_error()}")
def test_the_weight_gradient_runs_over_the_sparser_operand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(sparse_exec, "_table", None)
    calls = []
    real = native.dense_t_sparse
    monkeypatch.setattr(native, "dense_t_sparse", lambda lib, d, s, transposed=False: (
        calls.append((s.cols, transposed)), real(lib, d, s, transposed))[1])
    gen = torch.Generator().manual_seed(0)
    dense_x, dense_g = torch.randn(300, 40, generator=gen), torch.randn(300, 48, generator=gen)
    sparse_x, sparse_g = (abs_topk(t, t.shape[1] // 4) for t in (dense_x, dense_g))
    cases = [(dense_g, sparse_x, [(40, False)]),  # over x: g^T x directly
             (sparse_g, dense_x, [(48, True)]),  # over g: x^T g, written transposed
             (sparse_g, sparse_x, [(40, False)]),  # equally sparse: the narrower, x
             (dense_g, dense_x, [])]  # nothing to skip: a dense matmul
    for g, x, expected in cases:
        calls.clear()
        torch.testing.assert_close(sparse_exec.weight_grad(g, x, "sparse"), g.t() @ x, rtol=1e-5, atol=1e-5)
        assert calls == expected
    calls.clear()
    sparse_exec.weight_grad(dense_g, sparse_x, "auto")  # auto measures the shape once, then follows the table
    (key, times), = json.loads((tmp_path / "sparse-exec.json").read_text())[sparse_exec.machine_key()].items()
    assert key == "grad 48x40|d2^-2|r2^8" and times["dense_s"] > 0 and times["sparse_s"] > 0
    for faster, expected in ((True, 1), (False, 0)):
        sparse_exec._load_table()[key] = {"dense_s": 1.0, "sparse_s": 0.5 if faster else 2.0}
        calls.clear()
        sparse_exec.weight_grad(dense_g, sparse_x, "auto")
        assert len(calls) == expected


def test_support_mode_gradients_are_the_dense_ones_at_the_kept_entries() -> None:
    layer = ProjectedLinear(32, 64)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) < 0.125)
    kept = layer.weight.detach() != 0
    x = torch.randn(10, 32)
    layer.zero_grad()
    layer(x).pow(2).sum().backward()
    dense = layer.weight.grad.clone()
    layer.execution, layer.grad_support = "sparse", True
    layer.zero_grad()
    layer(x).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, dense * kept, rtol=1e-5, atol=1e-6)
    assert bool((dense[~kept] != 0).any())


@pytest.mark.parametrize("execution", ["dense", "sparse"])
def test_support_mode_keeps_the_support_between_reselections(small_corpus_dir: Path, tmp_path: Path,
                                                              execution: str) -> None:
    """train.support_every=4: once the anneal ends, the nonzero pattern changes only at the
    steps that re-select (multiples of 4), and the budget holds at every step."""
    from sparsecircuits.train import Trainer, load_run_config

    run = load_run_config("tiny-sparse", ["train.steps=24", "train.anneal_start_frac=0.0",
                                          "train.anneal_end_frac=0.25", "train.support_every=4",
                                          f"train.execution={execution}", "train.eval_every=0",
                                          "train.checkpoint_every=0"])
    trainer = Trainer(run, small_corpus_dir, tmp_path / "run", progress=False)
    try:
        patterns, budgets = [], trainer.sparsifier.budgets(run.train.target_density)
        for _ in range(run.train.steps):
            trainer.step()
            patterns.append({n: p.detach() != 0 for n, p in trainer.model.named_parameters()
                             if n in budgets})
    finally:
        trainer.close()
    anneal_end = 6  # 0.25 x 24 steps
    changed = [s + 1 for s in range(anneal_end, run.train.steps - 1)
               if any(not torch.equal(patterns[s][n], patterns[s + 1][n]) for n in budgets)]
    assert changed and all(step % 4 == 0 for step in changed), changed
    for pattern in patterns[anneal_end:]:
        assert all(int(pattern[n].sum()) <= budgets[n] for n in budgets)
