"""Sparse execution of the projected weight matrices on the CPU (docs/sparse-execution.md).

A weight-sparse model's matrices are mostly zeros, but a dense matmul multiplies the zeros
too. Here a matrix can run as compressed sparse rows instead (the native kernels of
model/native.py, or torch's CSR kernels where those cannot be built): the
forward product and the input gradient cost about its nonzeros. The weight gradient g^T x is
needed at every entry, as the L0 projection re-selects the top-k over all of them each step
(this is the `exact` method: same math as the dense path, float rounding aside), but most of
its terms are zero too: AbsTopK keeps a fraction of the activations x, and the output gradient
g of a matrix whose output is AbsTopK'd is zero off the kept entries. So it runs over the
nonzeros of the sparser of the two (`weight_grad`) where that is faster.

Whether CSR pays depends on the shape, the density, the rows of activations and the machine,
so `auto` measures both ways once per (shape, density, rows) on this machine, keeps the
verdict in a small calibration table (cached in a JSON file per machine), and runs CSR only
where it was faster. `sparse` always runs CSR, `dense` never (the default: results then do
not depend on timings). Off the CPU, under autocast or for dtypes other than float32,
matrices run dense; float64 runs CSR under `sparse` only, through torch's kernels (the
check that the exact method's results equal the dense path's beyond float32 rounding).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsecircuits.errors import InputError
from sparsecircuits.model import native

EXECUTIONS = ("dense", "auto", "sparse")
CALIBRATION_REPS = 3
SPARSE_OPERAND_MAX = 0.5  # `sparse`: the weight gradient runs over an operand at most this dense

_table: dict[str, dict[str, float]] | None = None


def _cache_file() -> Path:
    return native.cache_dir() / "sparse-exec.json"


def machine_key() -> str:
    """What a calibration is valid for: the processor, the thread count and torch."""
    return f"{platform.machine()}|{platform.processor() or 'cpu'}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}"


def _load_table() -> dict[str, dict[str, float]]:
    global _table
    if _table is None:
        try:
            data = json.loads(_cache_file().read_text(encoding="utf-8"))
            _table = data.get(machine_key(), {}) if isinstance(data, dict) else {}
        except (OSError, ValueError):
            _table = {}
    return _table


def _save_table() -> None:
    path = _cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[machine_key()] = _load_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the verdicts stay in memory for this process


def _log2(value: float) -> int:
    """The nearest power of two's exponent: calibration buckets densities and rows by it."""
    return round(math.log2(max(value, 1e-9)))


def _bucket(shape: tuple[int, int], density: float, rows: int, grad: bool) -> str:
    """The calibration key: the shape, density and rows rounded to powers of two."""
    return f"{shape[0]}x{shape[1]}|d2^{_log2(density)}|r2^{_log2(rows)}|{'train' if grad else 'infer'}"


def to_csr(w: torch.Tensor) -> torch.Tensor:
    """`w` as a torch CSR tensor (without torch's "beta" warning: the kernels used here work)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return w.to_sparse_csr()


def csr_pair(w: torch.Tensor) -> tuple[Any, Any]:
    """The compressed sparse rows of `w` and of its transpose: the native kernels' format
    when they are built (model/native.py), else torch's CSR tensors."""
    lib = native.kernels_for(w)
    if lib is not None:
        return native.csr_pair(lib, w)
    return to_csr(w), to_csr(w.t().contiguous())


def csr_linear(x: torch.Tensor, csr: Any, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T (+ bias) for a matrix W given by `csr` (one half of `csr_pair`); x is rows x in."""
    if isinstance(csr, native.Csr):
        return native.spmm(native.kernels(), x, csr, bias)
    y = torch.sparse.mm(csr, x.t()).t()
    return y + bias if bias is not None else y.contiguous()


def sampled_weight_grad(g: torch.Tensor, x: torch.Tensor, csr: Any, shape: tuple[int, int]) -> torch.Tensor:
    """The weight gradient g^T x at the nonzeros of `csr` only, as a dense matrix (zero
    elsewhere): what a support-mode step needs, at a cost that follows the nonzeros."""
    if isinstance(csr, native.Csr):
        values = native.sampled_gt_x(native.kernels(), g, x, csr)
        rows = torch.repeat_interleave(torch.arange(csr.rows), torch.diff(csr.indptr.long()))
        out = torch.zeros(shape)
        out.view(-1)[rows * csr.cols + csr.indices.long()] = values
        return out
    return torch.sparse.sampled_addmm(csr, g.t().contiguous(), x, beta=0.0).to_dense()


def _timed(fn: Any) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(CALIBRATION_REPS):
        fn()
    return (time.perf_counter() - t0) / CALIBRATION_REPS


def _random_sparse(rows: int, cols: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """Random normal entries, each kept with probability `density`: calibration data."""
    return torch.randn(rows, cols, generator=gen) * (torch.rand(rows, cols, generator=gen) < density)


def _verdict(key: str, measure: Any) -> bool:
    """Whether the sparse way was faster for calibration `key`, timing it with `measure()`
    (which returns dense_s and sparse_s) the first time the key is met on this machine."""
    table = _load_table()
    if key not in table:
        table[key] = measure()
        _save_table()
    return table[key]["sparse_s"] < table[key]["dense_s"]


def calibrate(shape: tuple[int, int], density: float, rows: int, grad: bool) -> dict[str, float]:
    """Time the dense and the CSR path of one matrix shape on random data (forward, plus the
    input gradient and the CSR rebuild when training) and return both times in seconds."""
    out_f, in_f = shape
    gen = torch.Generator().manual_seed(0)
    w = _random_sparse(out_f, in_f, density, gen)
    x, g = torch.randn(rows, in_f, generator=gen), torch.randn(rows, out_f, generator=gen)
    csr, csr_t = csr_pair(w)
    dense = _timed(lambda: x @ w.t())
    sparse = _timed(lambda: csr_linear(x, csr))
    if grad:
        dense += _timed(lambda: g @ w)
        sparse += _timed(lambda: csr_linear(g, csr_t))
        sparse += _timed(lambda: csr_pair(w))
    return {"dense_s": dense, "sparse_s": sparse}


def csr_is_faster(shape: tuple[int, int], density: float, rows: int, grad: bool) -> bool:
    """The calibration table's verdict for this matrix (measured on first use)."""
    return _verdict(_bucket(shape, density, rows, grad),
                    lambda: calibrate(shape, 2.0 ** _log2(density), 2 ** _log2(rows), grad))


def _calibrate_weight_grad(rows: int, width: int, cols: int, density: float) -> dict[str, float]:
    """Time d^T s for a dense d (rows x width) and a random s (rows x cols) at `density`, as a
    dense matmul and over the nonzeros of s."""
    gen = torch.Generator().manual_seed(0)
    d, s = torch.randn(rows, width, generator=gen), _random_sparse(rows, cols, density, gen)
    lib = native.kernels()
    return {"dense_s": _timed(lambda: d.t() @ s),
            "sparse_s": _timed(lambda: native.dense_t_sparse(lib, d, native.csc_chunks(lib, s)))}


def _sparse_operand_pays(rows: int, width: int, cols: int, density: float, execution: str) -> bool:
    if execution == "sparse":
        return density <= SPARSE_OPERAND_MAX
    return _verdict(f"grad {width}x{cols}|d2^{_log2(density)}|r2^{_log2(rows)}",
                    lambda: _calibrate_weight_grad(2 ** _log2(rows), width, cols, min(1.0, 2.0 ** _log2(density))))


def _density(t: torch.Tensor) -> float:
    """The fraction of nonzeros of `t` (rows x cols), estimated on at most 256 evenly spaced rows."""
    sample = t[:: max(1, t.shape[0] // 256)]
    return int(torch.count_nonzero(sample)) / max(1, sample.numel())


def weight_grad(g: torch.Tensor, x: torch.Tensor, execution: str = "sparse") -> torch.Tensor:
    """g^T x, the weight gradient of x W^T (g: rows x out, x: rows x in), over the nonzeros of
    whichever of x and g is sparser (at equal density, the narrower) when the native kernels
    are built and that pays (`sparse`: the operand is at most half nonzero; `auto`: measured
    once per shape and density); else as a dense matmul. The same sum either way, float
    rounding aside."""
    lib = native.kernels_for(x)
    if lib is None or g.dtype != torch.float32 or execution == "dense":
        return g.t() @ x
    rows = x.shape[0]
    density_x, density_g = _density(x), _density(g)
    on_x = (_log2(density_x), x.shape[1]) <= (_log2(density_g), g.shape[1])
    dense_op, sparse_op, density = (g, x, density_x) if on_x else (x, g, density_g)
    if not _sparse_operand_pays(rows, dense_op.shape[1], sparse_op.shape[1], density, execution):
        return g.t() @ x
    return native.dense_t_sparse(lib, dense_op, native.csc_chunks(lib, sparse_op), transposed=not on_x)


class _CsrLinear(torch.autograd.Function):
    """y = x W^T + b with W as CSR; the input gradient through W^T as CSR, the weight
    gradient at every entry (the projection re-selects over all of them) by `weight_grad`, or
    in a support-mode step only at the kept entries."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, csr: Any,
                csr_t: Any, execution: str, support: bool = False) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.csr, ctx.csr_t, ctx.has_bias, ctx.support = csr, csr_t, bias is not None, support
        ctx.execution = execution
        ctx.shape = tuple(weight.shape)
        return csr_linear(x, csr, bias)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        g = g.contiguous()
        gx = csr_linear(g, ctx.csr_t) if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:
            gw = sampled_weight_grad(g, x, ctx.csr, ctx.shape) if ctx.support else weight_grad(g, x, ctx.execution)
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None


class ProjectedLinear(nn.Linear):
    """An `nn.Linear` whose weight the L0 projection keeps sparse; `execution` (dense, auto,
    sparse) says how it multiplies (see the module docstring)."""

    execution: str = "dense"
    grad_support: bool = False  # support-mode step: the weight gradient only at the kept entries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.execution == "dense" or not self._csr_possible(x):
            return F.linear(x, self.weight, self.bias)
        grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        rows = x.numel() // x.shape[-1]
        if self.execution == "auto":
            nnz = int(torch.count_nonzero(self.weight.detach()))
            if x.dtype != torch.float32 or not csr_is_faster(tuple(self.weight.shape), nnz / self.weight.numel(), rows, grad):
                return F.linear(x, self.weight, self.bias)
        csr, csr_t = self._csr()
        x2 = x.reshape(rows, x.shape[-1])
        y = _CsrLinear.apply(x2, self.weight, self.bias, csr, csr_t, self.execution, self.grad_support)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _csr_possible(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.dtype == self.weight.dtype in (torch.float32, torch.float64)
                and not torch.is_autocast_enabled("cpu"))

    def _csr(self) -> tuple[Any, Any]:
        """The CSR of the weight and of its transpose. A training step rebuilds them every
        call (the optimizer and the projection change weights without telling autograd);
        otherwise (evaluation, pruning) they are kept while the weight's storage and version
        stay the same."""
        w = self.weight.detach()
        if self.training and self.weight.requires_grad:
            return csr_pair(w)
        key = (w.data_ptr(), self.weight._version)
        cached = self.__dict__.get("_csr_cache")
        if cached is None or cached[0] != key:
            cached = (key, csr_pair(w))
            self.__dict__["_csr_cache"] = cached
        return cached[1]


def set_grad_support(model: nn.Module, support: bool) -> None:
    """Mark the next backward pass of every projected matrix as a support-mode one (its
    weight gradient then needs only the kept entries; the trainer masks the rest)."""
    for module in model.modules():
        if isinstance(module, ProjectedLinear):
            module.grad_support = support


def set_execution(model: nn.Module, execution: str) -> None:
    """Set how every projected matrix of `model` multiplies: dense, auto or sparse."""
    if execution not in EXECUTIONS:
        raise InputError(f"execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}")
    for module in model.modules():
        if isinstance(module, ProjectedLinear):
            module.execution = execution
            module.__dict__.pop("_csr_cache", None)
