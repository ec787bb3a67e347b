"""The native sparse kernels: products equal torch's dense ones within float tolerance on
awkward shapes (partial row blocks and tiles, empty rows, several threads), AbsTopK equals
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
