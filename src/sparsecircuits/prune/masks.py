"""Learnable node masks, a hook intervention like those of `model.interventions`.

A *node* is one channel of one node location in one layer (e.g. query channel 17 of layer
0, indexed head x d_head + channel). `NodeMasks` holds one learnable parameter tau per
node; the forward pass multiplies by Heaviside(tau) (exactly 0 or 1), the backward pass
uses the derivative of a sigmoid as a straight-through surrogate. Used to optimize which
nodes a task needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from sparsecircuits.model import SparseTransformer
from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.locations import node_width


class _HeavisideSurrogate(torch.autograd.Function):
    """Heaviside step forward; derivative of sigmoid(tau / temperature) backward."""

    @staticmethod
    def forward(ctx, tau: torch.Tensor, temperature: float) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(tau)
        ctx.temperature = temperature
        return (tau > 0).to(tau.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (tau,) = ctx.saved_tensors
        s = torch.sigmoid(tau / ctx.temperature)
        return grad * s * (1 - s) / ctx.temperature, None


def heaviside(tau: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """1.0 where tau > 0 else 0.0; gradients use the sigmoid derivative at tau / temperature."""
    return _HeavisideSurrogate.apply(tau, temperature)


class NodeMasks(nn.Module):
    """One mask parameter tau per node at the given hooks, initialised near `init`.

    `tau[i]` is the parameter of hook `hooks[i]`; `applied(model, values)` attaches hooks
    computing `x * H(tau) + value * (1 - H(tau))`, which equals x exactly where H = 1.
    """

    def __init__(
        self,
        model: SparseTransformer,
        hooks: Iterable[str],
        init: float = 0.1,
        noise: float = 0.01,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.hooks = list(hooks)
        self.temperature = temperature
        self.tau = nn.ParameterList()
        for hook in self.hooks:
            width = node_width(model, hook)
            t = init + noise * torch.randn(width, generator=generator)
            self.tau.append(nn.Parameter(t.clamp(-1.0, 1.0)))

    def gates(self) -> list[torch.Tensor]:
        """Heaviside(tau) per hook (0/1 floats that carry surrogate gradients)."""
        return [heaviside(t, self.temperature) for t in self.tau]

    def n_nodes(self) -> int:
        """Total number of masked nodes."""
        return sum(t.numel() for t in self.tau)

    def n_kept(self) -> int:
        """Number of nodes with tau > 0."""
        return int(sum(int((t > 0).sum()) for t in self.tau))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp every tau to [-1, 1] (after each optimizer step)."""
        for t in self.tau:
            t.clamp_(-1.0, 1.0)

    def tau_dict(self) -> dict[str, torch.Tensor]:
        """Hook name -> a detached copy of its tau values."""
        return {h: t.detach().clone() for h, t in zip(self.hooks, self.tau, strict=True)}

    @contextmanager
    def applied(
        self, model: SparseTransformer, values: Mapping[str, torch.Tensor]
    ) -> Iterator[list[torch.Tensor]]:
        """Attach the masks for one forward pass; yields the gates (for the size penalty)."""
        gates = self.gates()
        fwd_hooks = []
        for hook, gate in zip(self.hooks, gates, strict=True):
            fwd_hooks.append((hook, _mask_fn(gate, (1 - gate) * values[hook].to(gate.dtype))))
        with model.hooks(fwd_hooks):
            yield gates


def _mask_fn(gate: torch.Tensor, offset: torch.Tensor):
    def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        tail = x.shape[2:]
        return torch.addcmul(offset.view(tail), x, gate.view(tail))  # x * gate + offset, one pass

    return fn
