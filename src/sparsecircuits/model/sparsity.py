"""Sparsity primitives: activation AbsTopK, the weight-sparsity report, and the L0 weight
projection with its anneal schedule (docs/method.md section 2)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sparsecircuits.model import native


class _NativeAbsTopK(torch.autograd.Function):
    """AbsTopK by the native per-row selection (model/native.py); the gradient passes
    through the kept entries only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int, lib: Any) -> torch.Tensor:
        y, keep = native.abs_topk(lib, x, k)
        ctx.save_for_backward(keep)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return g * keep, None, None


def abs_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k entries of largest magnitude along the last dimension; zero the rest.

    Float32 on the CPU selects natively (a partial selection per row, several times faster
    than torch.topk); otherwise torch.topk. The two differ only in which of several entries
    tied at the threshold they keep (the native one keeps the lowest indices)."""
    if k >= x.shape[-1]:
        return x
    lib = native.kernels_for(x)
    if lib is not None:
        return _NativeAbsTopK.apply(x, k, lib)
    idx = torch.topk(x.abs(), k, dim=-1, sorted=False).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


@dataclass(frozen=True)
class MatrixSparsity:
    """Nonzero count of one parameter tensor."""

    name: str
    kind: str
    shape: tuple[int, ...]
    nonzero: int
    numel: int

    @property
    def fraction(self) -> float:
        """Fraction of entries that are nonzero."""
        return self.nonzero / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Nonzeros per parameter tensor, with totals over the weight matrices and over all."""

    rows: tuple[MatrixSparsity, ...]

    def total(self, kinds: tuple[str, ...] = ("matrix",)) -> tuple[int, int]:
        """(nonzero, numel) summed over the rows of the given kinds."""
        sel = [r for r in self.rows if r.kind in kinds]
        return sum(r.nonzero for r in sel), sum(r.numel for r in sel)

    def to_dict(self) -> dict:
        """A JSON-ready view: per tensor, and totals per kind and overall."""
        kinds = sorted({r.kind for r in self.rows})
        totals = {}
        for kind in kinds:
            nz, n = self.total((kind,))
            totals[kind] = {"nonzero": nz, "numel": n, "fraction": nz / n if n else 0.0}
        nz, n = self.total(tuple(kinds))
        totals["all"] = {"nonzero": nz, "numel": n, "fraction": nz / n if n else 0.0}
        return {
            "tensors": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "shape": list(r.shape),
                    "nonzero": r.nonzero,
                    "numel": r.numel,
                    "fraction": r.fraction,
                }
                for r in self.rows
            ],
            "totals": totals,
        }

    def format_table(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'tensor':<34} {'kind':<9} {'shape':<14} {'nonzero':>10} {'fraction':>9}"]
        for r in self.rows:
            shape = "x".join(map(str, r.shape))
            lines.append(f"{r.name:<34} {r.kind:<9} {shape:<14} {r.nonzero:>10} {r.fraction:>9.4f}")
        for kind, t in self.to_dict()["totals"].items():
            lines.append(f"{'total ' + kind:<34} {'':<9} {'':<14} {t['nonzero']:>10} {t['fraction']:>9.4f}")
        return "\n".join(lines)


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Count nonzero weights per parameter tensor of a model with `parameter_kinds()`."""
    kinds: dict[str, str] = model.parameter_kinds()  # type: ignore[operator]
    rows = []
    for name, p in model.named_parameters():
        rows.append(
            MatrixSparsity(
                name=name,
                kind=kinds[name],
                shape=tuple(p.shape),
                nonzero=int(torch.count_nonzero(p.detach()).item()),
                numel=p.numel(),
            )
        )
    return SparsityReport(tuple(rows))


# --- Weight sparsity: projection onto an L0 budget, and the anneal schedule -----------------

# Channel orientation of the projected matrices (nn.Linear weights are [out, in]): input
# projections have one channel per row (q/k/v channels, MLP neurons), output projections
# one channel per column (the attention channels and neurons they read).
CHANNEL_DIMS: dict[str, int] = {
    "attn.c_attn.weight": 0,
    "mlp.c_fc.weight": 0,
    "attn.c_proj.weight": 1,
    "mlp.c_proj.weight": 1,
}
ANNEAL_SHAPES: tuple[str, ...] = ("linear", "power")


def channel_dim_of(name: str) -> int | None:
    """The dimension that indexes channels of a projected matrix, or None (no per-channel floor)."""
    for suffix, dim in CHANNEL_DIMS.items():
        if name.endswith(suffix):
            return dim
    return None


def min_budget(shape: tuple[int, ...], min_per_channel: int, channel_dim: int | None) -> int:
    """The fewest nonzeros a projection can keep: min_per_channel in every channel."""
    if channel_dim is None or min_per_channel <= 0 or len(shape) != 2:
        return 0
    return min(min_per_channel, shape[1 - channel_dim]) * shape[channel_dim]


@torch.no_grad()
def project_to_budget_(
    weight: torch.Tensor,
    k: int,
    min_per_channel: int = 0,
    channel_dim: int | None = None,
) -> torch.Tensor:
    """Zero all but k entries of `weight` in place and return the kept mask.

    First the min_per_channel largest-magnitude entries of every channel are reserved
    (rows when channel_dim=0, columns when 1), then the rest of the budget goes to the
    largest-magnitude remaining entries: one small per-channel top-k and one global top-k.
    Exactly k entries are kept (of entries tied at the threshold, the lowest indices on the
    CPU in float32, torch.topk's choice elsewhere).
    """
    n = weight.numel()
    if k >= n:
        return torch.ones_like(weight, dtype=torch.bool)
    floor = min_budget(tuple(weight.shape), min_per_channel, channel_dim)
    if k < floor:
        raise ValueError(
            f"budget k={k} is below the per-channel floor of {floor} for shape {tuple(weight.shape)}"
        )
    score = weight.abs()
    if floor:
        assert channel_dim is not None
        reduce_dim = 1 - channel_dim
        j = min(min_per_channel, weight.shape[reduce_dim])
        reserved = _top_mask(score, j) if reduce_dim == 1 else _top_mask(score.t(), j).t()
        score.masked_fill_(reserved, float("inf"))
    mask = _top_mask(score.view(1, -1), k).view_as(weight)
    weight.masked_fill_(~mask, 0.0)
    return mask


def _top_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """The bool mask of the k largest entries of each row of a 2-d `score` (>= 0): the native
    selection for float32 on the CPU (ties to the lowest index), else torch.topk."""
    lib = native.kernels_for(score)
    if lib is not None:
        return native.abs_topk(lib, score, k, values=False)[1]
    top = score.topk(k, dim=-1, sorted=False).indices
    return torch.zeros(score.shape, dtype=torch.bool, device=score.device).scatter_(-1, top, True)


def kept_fraction_schedule(
    step: int,
    total_steps: int,
    target: float,
    start_frac: float = 0.01,
    end_frac: float = 0.5,
    shape: str = "linear",
) -> float:
    """Kept fraction of the weight matrices after `step` optimizer steps (1.0 = dense).

    Dense until start_frac × total_steps, `target` from end_frac × total_steps on; in
    between 'linear' interpolates in step, 'power' is a power law in step (a straight line
    on log-log axes from (start, 1) to (end, target)).
    """
    if shape not in ANNEAL_SHAPES:
        raise ValueError(f"anneal shape must be one of {ANNEAL_SHAPES}, got {shape!r}")
    if target >= 1.0:
        return 1.0
    s0, s1 = start_frac * total_steps, end_frac * total_steps
    if step >= s1:
        return target
    if step <= s0:
        return 1.0
    if shape == "linear":
        return 1.0 + (target - 1.0) * (step - s0) / (s1 - s0)
    s0 = max(s0, 1.0)  # log(0) is undefined: a power law starts at step 1 at the earliest
    if step <= s0:
        return 1.0
    return target ** (math.log(step / s0) / math.log(s1 / s0))


@dataclass(frozen=True)
class ProjectedParam:
    """One parameter under the L0 projection: its kind and channel orientation."""

    name: str
    kind: str  # matrix | embedding | bias
    shape: tuple[int, ...]
    channel_dim: int | None
    floor: int  # min nonzeros (min_per_channel in every channel)

    @property
    def numel(self) -> int:
        """Number of entries."""
        return math.prod(self.shape)


class WeightSparsifier:
    """Projects a model's weights onto their L0 budgets after every optimizer step.

    Transformer matrices keep `fraction` of their entries (at least min_per_channel per
    channel); embeddings, the unembedding and biases keep a denser fraction that anneals
    alongside, from dense to min(1, embedding_factor × target). Exempt parameters (norm
    gains, sink logits, the bigram table) are never touched.
    """

    def __init__(
        self,
        model: nn.Module,
        target: float,
        embedding_factor: float = 4.0,
        min_per_channel: int = 4,
    ) -> None:
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target density must be in (0, 1], got {target}")
        self.model = model
        self.target = float(target)
        self.embedding_target = min(1.0, embedding_factor * self.target)
        self.min_per_channel = min_per_channel
        kinds: dict[str, str] = model.parameter_kinds()  # type: ignore[operator]
        self.params: list[ProjectedParam] = []
        self._tensors: dict[str, nn.Parameter] = {}
        for name, p in model.named_parameters():
            if kinds[name] == "exempt":
                continue
            cdim = channel_dim_of(name) if kinds[name] == "matrix" else None
            floor = min_budget(tuple(p.shape), min_per_channel, cdim)
            self.params.append(ProjectedParam(name, kinds[name], tuple(p.shape), cdim, floor))
            self._tensors[name] = p

    def densities(self, fraction: float) -> tuple[float, float]:
        """(matrix, embedding-and-bias) kept fractions when matrices keep `fraction`."""
        if self.target >= 1.0:
            return 1.0, 1.0
        progress = (1.0 - fraction) / (1.0 - self.target)
        return fraction, 1.0 + (self.embedding_target - 1.0) * progress

    def budgets(self, fraction: float) -> dict[str, int]:
        """Nonzeros each projected parameter keeps when matrices keep `fraction`."""
        matrix, embedding = self.densities(fraction)
        out = {}
        for p in self.params:
            density = matrix if p.kind == "matrix" else embedding
            out[p.name] = min(p.numel, max(p.floor, 1, round(density * p.numel)))
        return out

    def supports(self) -> dict[str, torch.Tensor]:
        """The current support (nonzero entries) of every projected parameter, as bool masks."""
        return {name: t.detach() != 0 for name, t in self._tensors.items()}

    @torch.no_grad()
    def keep_support_(self, masks: dict[str, torch.Tensor], grads: bool = False) -> None:
        """Zero every entry outside `masks` (support-mode steps: the weights, or with `grads`
        their gradients), so that the support stays the one the last projection chose."""
        for name, mask in masks.items():
            t = self._tensors[name]
            target = t.grad if grads else t
            if target is not None:
                target.mul_(mask)

    @torch.no_grad()
    def project_(self, fraction: float) -> dict[str, int]:
        """Project every non-exempt parameter in place; returns the budgets applied.

        On CPU this runs on one thread: each matrix is a few memory-bound passes over about
        a megabyte, where a thread pool gains little and, on a machine shared with other
        jobs, every parallel region can wait a scheduler tick for a busy core (measured:
        60 ms on one thread against 800 ms on two for the small preset under load).
        """
        budgets = self.budgets(fraction)
        with _one_cpu_thread():
            for p in self.params:
                if budgets[p.name] < p.numel:
                    project_to_budget_(
                        self._tensors[p.name].data, budgets[p.name], self.min_per_channel, p.channel_dim
                    )
        return budgets


@contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """Run CPU ops in the block on a single intra-op thread, restoring the count after."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
