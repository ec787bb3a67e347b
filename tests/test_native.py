"""The native sparse kernels: products equal torch's dense ones within float tolerance on
awkward shapes (partial row blocks, chunks and tiles, empty rows and columns, several threads), AbsTopK equals
torch.topk's selection with a fixed tie rule, and without a compiler everything falls back
to torch's kernels with the same results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsecircuits.model import native, sparse_exec
from sparsecircuits.model.sparsity import abs_topk

LIB = native.kernels()
needs_native = pytest.mark.skipif(LIB is None, reason=f"native kernels unavailable: {native.build_error()}")


def _sparse(rows: int, cols: int, density: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen) * (torch.rand(rows, cols, generator=gen) < density)
    w[min(3, rows - 1)] = 0.0  # a row without nonzeros
    return w


def test_the_build_is_there_on_a_machine_with_a_compiler() -> None:
    if native._compiler() is not None:
        assert LIB is not None, native.build_error()


@needs_native
@pytest.mark.parametrize(("n", "out_f", "in_f", "density", "threads"),
                         [(45, 70, 33, 0.3, 1), (64, 128, 64, 0.1, 2), (7, 5, 300, 0.5, 3), (130, 200, 129, 0.02, 2)])
def test_products_equal_the_dense_ones(n: int, out_f: int, in_f: int, density: float, threads: int) -> None:
    w, bias = _sparse(out_f, in_f, density), torch.randn(out_f)
    x, g = torch.randn(n, in_f), torch.randn(n, out_f)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        csr, csr_t = native.csr_pair(LIB, w)
        y, y_nobias = native.spmm(LIB, x, csr, bias), native.spmm(LIB, x, csr)
        gx = native.spmm(LIB, g, csr_t)
        sampled = native.sampled_gt_x(LIB, g, x, csr)
    finally:
        torch.set_num_threads(old)
    assert csr.values.numel() == int((w != 0).sum()) == csr_t.values.numel()
    torch.testing.assert_close(y, x @ w.t() + bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_nobias, x @ w.t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, g @ w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sampled, (g.t() @ x)[w != 0], rtol=1e-4, atol=1e-4)
    dense_grad = sparse_exec.sampled_weight_grad(g, x, csr, (out_f, in_f))
    torch.testing.assert_close(dense_grad, (g.t() @ x) * (w != 0), rtol=1e-4, atol=1e-4)


@needs_native
@pytest.mark.parametrize(("n", "width", "cols", "density", "threads"),
                         [(300, 70, 33, 0.25, 1), (128, 128, 64, 0.1, 2), (7, 5, 9, 0.5, 3), (257, 200, 129, 0.02, 2)])
def test_the_product_over_a_sparse_operand_equals_the_dense_one(n: int, width: int, cols: int, density: float,
                                                               threads: int) -> None:
    s, d = _sparse(n, cols, density, seed=1), torch.randn(n, width)
    s[:, 2] = 0.0  # a column without nonzeros; row 3 has none either (partial chunks and blocks: the shapes)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        csc = native.csc_chunks(LIB, s)
        out, out_t = native.dense_t_sparse(LIB, d, csc), native.dense_t_sparse(LIB, d, csc, transposed=True)
    finally:
        torch.set_num_threads(old)
    assert csc.values.numel() == int((s != 0).sum())
    torch.testing.assert_close(out, d.t() @ s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_t, s.t() @ d, rtol=1e-5, atol=1e-5)


@needs_native
def test_abs_topk_equals_torch_topk_and_breaks_ties_by_index() -> None:
    x = torch.randn(6, 9, 37, requires_grad=True)
    y = abs_topk(x, 5)
    idx = torch.topk(x.abs(), 5, dim=-1).indices
    ref = torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))
    assert torch.equal(y, ref)
    g = torch.randn_like(x)
    (got,) = torch.autograd.grad(y, x, g)
    (want,) = torch.autograd.grad(ref, x, g)
    assert torch.equal(got, want)
    ties = torch.tensor([[2.0, -2.0, 2.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    assert abs_topk(ties, 2).tolist() == [[2.0, -2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]]
    assert abs_topk(torch.tensor([[0.5, float("inf"), -4.0]]), 1).tolist() == [[0.0, float("inf"), 0.0]]
    assert abs_topk(ties, 4) is ties


def test_without_a_compiler_everything_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert native.kernels() is None
    assert "no-such-cc" in (native.build_error() or "")
    w, x = _sparse(20, 12, 0.3), torch.randn(9, 12)
    csr, csr_t = sparse_exec.csr_pair(w)
    assert csr.layout == torch.sparse_csr
    torch.testing.assert_close(sparse_exec.csr_linear(x, csr), x @ w.t(), rtol=1e-5, atol=1e-5)
    x3 = torch.randn(4, 5, 12)
    ref = torch.zeros_like(x3).scatter(-1, torch.topk(x3.abs(), 3, -1).indices, 1.0) * x3
    assert torch.equal(abs_topk(x3, 3), ref)


def test_the_switch_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.kernels() is None
    assert native.NATIVE_ENV in (native.build_error() or "")


@needs_native
@pytest.mark.parametrize("channel_dim", [0, 1])
def test_the_projection_keeps_what_torch_topk_keeps(channel_dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparsecircuits.model.sparsity import project_to_budget_

    w = torch.randn(300, 70)  # 21,000 entries: the histogram pass of long rows runs too
    w[5, :68] = 0.0  # a channel with fewer nonzeros than the per-channel floor
    for k in (1500, 20_999, 300 * 4):
        fast, slow = w.clone(), w.clone()
        fast_mask = project_to_budget_(fast, k, 4, channel_dim)
        with monkeypatch.context() as m:
            m.setattr(native, "kernels", lambda: None)
            slow_mask = project_to_budget_(slow, k, 4, channel_dim)
        assert int(fast_mask.sum()) == k and torch.equal(fast, slow)
        assert torch.equal(fast_mask | (w == 0), slow_mask | (w == 0))  # they may reserve different zeros


@needs_native
def test_a_training_step_with_them_equals_one_without(monkeypatch: pytest.MonkeyPatch) -> None:
    from sparsecircuits.model import SparseTransformer
    from sparsecircuits.model.sparsity import WeightSparsifier
    from sparsecircuits.train import load_run_config

    run = load_run_config("tiny-sparse", ["model.afrac=0.25"])
    tokens = torch.randint(0, run.model.vocab_size, (4, run.model.n_ctx))

    def step(use_native: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = SparseTransformer(run.model).train()
        with monkeypatch.context() as m:
            if not use_native:
                m.setattr(native, "kernels", lambda: None)
            logits = model(tokens)
            logits.square().mean().backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            WeightSparsifier(model, 0.25, 2.0, 2).project_(0.5)
        return logits.detach(), {**grads, **{f"w:{n}": p.detach() for n, p in model.named_parameters()}}

    (fast_logits, fast), (slow_logits, slow) = step(True), step(False)
    assert torch.equal(fast_logits, slow_logits)
    for name in slow:
        assert torch.equal(fast[name], slow[name]), name
