"""Sparsity primitives: activation AbsTopK and the weight-sparsity report."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def abs_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k entries of largest magnitude along the last dimension; zero the rest."""
    if k >= x.shape[-1]:
        return x
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
