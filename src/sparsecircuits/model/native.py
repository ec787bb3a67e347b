"""The native sparse kernels (`spmm.c`): built on first use with the system C compiler into
the per-machine cache folder and called through ctypes, which releases the GIL.

`kernels()` returns None when there is no compiler or the build fails (the reason is in
`build_error()`); callers then use torch's CSR kernels. Set SPARSECIRCUITS_NATIVE=0 to
never build or load them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

NATIVE_ENV = "SPARSECIRCUITS_NATIVE"
CACHE_ENV = "SPARSECIRCUITS_CACHE"  # the folder of per-machine caches (default ~/.cache/sparsecircuits)
_FLAG_SETS = (["-O3", "-march=native", "-ffp-contract=fast"], ["-O3", "-ffp-contract=fast"], ["-O2"])

_lib: ctypes.CDLL | None = None
_error: str | None = None
_tried = False


def cache_dir() -> Path:
    """The folder of this library's per-machine caches (calibration, native builds)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sparsecircuits")


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(source: str, cc: str) -> Path:
    """Compile `source` into the cache (named by its hash, the compiler and the machine) once."""
    key = hashlib.sha256(f"{source}|{cc}|{platform.machine()}|{platform.processor()}".encode()).hexdigest()[:16]
    target = cache_dir() / "native" / f"spmm-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "spmm.c"
        src.write_text(source, encoding="utf-8")
        for flags in _FLAG_SETS:
            out = Path(tmp) / "spmm.so"
            cmd = [cc, *flags, "-shared", "-fPIC", "-pthread", str(src), "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode == 0:
                staged = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                shutil.copyfile(out, staged)
                os.replace(staged, target)  # another process may have built it meanwhile: same bytes
                return target
            errors.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    raise OSError(f"{cc} failed: {'; '.join(errors)}")


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32p, fp, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int
    lib.csr_count.argtypes = [fp, i64, i64, i32p, i32p]
    lib.csr_count.restype = i64
    lib.csr_fill.argtypes = [fp, i64, i64, i32p, i32p, fp, i32p, i32p, fp]
    lib.csr_fill.restype = c_int
    lib.spmm.argtypes = [i64, i64, i64, fp, i32p, i32p, fp, fp, fp, c_int]
    lib.spmm.restype = c_int
    lib.sampled_gt_x.argtypes = [i64, i64, i64, fp, fp, i32p, i32p, fp, c_int]
    lib.sampled_gt_x.restype = c_int
    lib.csc_count.argtypes = [fp, i64, i64, i32p]
    lib.csc_count.restype = i64
    lib.csc_fill.argtypes = [fp, i64, i64, i32p, fp, fp]
    lib.csc_fill.restype = c_int
    lib.dense_t_sparse.argtypes = [i64, i64, i64, fp, i32p, fp, fp, fp, c_int, c_int]
    lib.dense_t_sparse.restype = c_int
    lib.abs_topk.argtypes = [i64, i64, i64, fp, fp, fp, c_int]
    lib.abs_topk.restype = c_int


def kernels() -> ctypes.CDLL | None:
    """The loaded native kernels, building them on the first call; None if unavailable."""
    global _lib, _error, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get(NATIVE_ENV, "1") == "0":
        _error = f"{NATIVE_ENV}=0"
        return None
    cc = _compiler()
    if cc is None:
        _error = "no C compiler (cc, gcc or clang) on PATH"
        return None
    try:
        source = (resources.files("sparsecircuits") / "model" / "spmm.c").read_text(encoding="utf-8")
        lib = ctypes.CDLL(str(_build(source, cc)))
        _declare(lib)
    except (OSError, subprocess.SubprocessError) as exc:
        _error = str(exc)
        return None
    _lib = lib
    return _lib


def kernels_for(t: torch.Tensor) -> ctypes.CDLL | None:
    """The kernels if they can take `t` (a float32 CPU tensor), else None."""
    return kernels() if t.device.type == "cpu" and t.dtype == torch.float32 else None


def build_error() -> str | None:
    """Why `kernels()` returned None (None while they load or before the first call)."""
    return _error


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


@dataclass(frozen=True)
class Csr:
    """A matrix (rows x cols) as compressed sparse rows in int32 / float32 tensors."""

    rows: int
    cols: int
    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor


def csr_pair(lib: ctypes.CDLL, w: torch.Tensor) -> tuple[Csr, Csr]:
    """The CSR of a dense float32 matrix `w` and of its transpose, in two passes over it."""
    w = w.contiguous()
    rows, cols = w.shape
    indptr = torch.empty(rows + 1, dtype=torch.int32)
    tindptr = torch.empty(cols + 1, dtype=torch.int32)
    nnz = lib.csr_count(_ptr(w), rows, cols, _ptr(indptr), _ptr(tindptr))
    indices, tindices = torch.empty(nnz, dtype=torch.int32), torch.empty(nnz, dtype=torch.int32)
    values, tvalues = torch.empty(nnz), torch.empty(nnz)
    if lib.csr_fill(_ptr(w), rows, cols, _ptr(indptr), _ptr(indices), _ptr(values), _ptr(tindptr),
                    _ptr(tindices), _ptr(tvalues)) != 0:
        raise MemoryError("csr_fill: out of memory")
    return Csr(rows, cols, indptr, indices, values), Csr(cols, rows, tindptr, tindices, tvalues)


def spmm(lib: ctypes.CDLL, x: torch.Tensor, csr: Csr, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (n x csr.cols, row-major float32) times the CSR matrix transposed, plus `bias`."""
    x = x.contiguous()
    n = x.shape[0]
    y = torch.empty(n, csr.rows)
    b = bias.detach().contiguous() if bias is not None else None
    if lib.spmm(n, csr.cols, csr.rows, _ptr(x), _ptr(csr.indptr), _ptr(csr.indices), _ptr(csr.values),
                _ptr(b) if b is not None else None, _ptr(y), torch.get_num_threads()) != 0:
        raise MemoryError("spmm: out of memory")
    return y


def sampled_gt_x(lib: ctypes.CDLL, g: torch.Tensor, x: torch.Tensor, csr: Csr) -> torch.Tensor:
    """(g^T x) at the nonzeros of `csr`, in its order (g: n x rows, x: n x cols)."""
    g, x = g.contiguous(), x.contiguous()
    out = torch.zeros(csr.values.numel())
    if lib.sampled_gt_x(x.shape[0], csr.cols, csr.rows, _ptr(g), _ptr(x), _ptr(csr.indptr), _ptr(csr.indices),
                        _ptr(out), torch.get_num_threads()) != 0:
        raise MemoryError("sampled_gt_x: out of memory")
    return out


CSC_CHUNK = 128  # rows per chunk of `Csc` (CHUNK in spmm.c)


@dataclass(frozen=True)
class Csc:
    """A matrix (rows x cols) by columns, CSC_CHUNK rows at a time: segment (c, j) of `ptr`
    holds the nonzeros of column j in chunk c, as uint8 offsets into the chunk and values."""

    rows: int
    cols: int
    ptr: torch.Tensor
    offsets: torch.Tensor
    values: torch.Tensor


def csc_chunks(lib: ctypes.CDLL, s: torch.Tensor) -> Csc:
    """The chunked columns of a float32 matrix `s` (n x J): the sparse operand of `dense_t_sparse`."""
    s = s.contiguous()
    n, cols = s.shape
    ptr = torch.empty(-(-n // CSC_CHUNK) * cols + 1, dtype=torch.int32)
    nnz = lib.csc_count(_ptr(s), n, cols, _ptr(ptr))
    offsets, values = torch.empty(nnz, dtype=torch.uint8), torch.empty(nnz)
    if lib.csc_fill(_ptr(s), n, cols, _ptr(ptr), _ptr(offsets), _ptr(values)) != 0:
        raise MemoryError("csc_fill: out of memory")
    return Csc(n, cols, ptr, offsets, values)


def dense_t_sparse(lib: ctypes.CDLL, d: torch.Tensor, s: Csc, transposed: bool = False) -> torch.Tensor:
    """d^T s (d.shape[1] x s.cols), or its transpose s^T d with `transposed`, for a dense
    float32 `d` (n x R) and a sparse `s` (n x J): a weight gradient at a cost that follows the
    nonzeros of s."""
    d = d.contiguous()
    r = d.shape[1]
    out = torch.empty((s.cols, r) if transposed else (r, s.cols))
    if lib.dense_t_sparse(d.shape[0], r, s.cols, _ptr(d), _ptr(s.ptr), _ptr(s.offsets), _ptr(s.values),
                          _ptr(out), int(transposed), torch.get_num_threads()) != 0:
        raise MemoryError("dense_t_sparse: out of memory")
    return out


def abs_topk(lib: ctypes.CDLL, x: torch.Tensor, k: int, values: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """x (float32, any shape) with all but the k largest-magnitude entries of each row (last
    dimension) zeroed (None without `values`), and the bool mask of the kept entries (ties go
    to the lower index)."""
    x = x.contiguous()
    d = x.shape[-1]
    y, keep = torch.empty_like(x) if values else None, torch.empty(x.shape, dtype=torch.bool)
    if lib.abs_topk(x.numel() // d if d else 0, d, k, _ptr(x), _ptr(y) if y is not None else None, _ptr(keep),
                    torch.get_num_threads()) != 0:
        raise MemoryError("abs_topk: out of memory")
    return y, keep
