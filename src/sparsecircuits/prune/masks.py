"""Node masks and ablation contexts over the node locations of `model.NODE_LOCATIONS`.

A *node* is one channel of one node location in one layer (e.g. query channel 17 of layer
0, indexed head x d_head + channel). Two mechanisms, both built on `model.hooks`:

- `ablate(model, keep, values)`: a hard intervention; nodes whose keep flag is False take
  their ablation value. Used to evaluate circuits (bisection, validation, the viewer).
- `NodeMasks`: one learnable parameter tau per node; the forward pass multiplies by
  Heaviside(tau) (exactly 0 or 1), the backward pass uses the derivative of a sigmoid as a
  straight-through surrogate. Used to optimize which nodes a task needs.

`frozen_norms` and `record_norm_scales` pin every Norm's denominator to the full model's on
the same input, so that pruning cannot profit from the norms rescaling a thinned residual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from sparsecircuits.circuit import node_width
from sparsecircuits.errors import InputError
from sparsecircuits.model import Norm, SparseTransformer
from sparsecircuits.model.hooks import HookPoint


@contextmanager
def ablate(
    model: SparseTransformer,
    keep: Mapping[str, torch.Tensor],
    values: Mapping[str, torch.Tensor],
) -> Iterator[SparseTransformer]:
    """Replace the activation of every node whose keep flag is False by its ablation value.

    `keep[hook]` is a bool tensor of the location's width; `values[hook]` a tensor of the
    same width, broadcast over batch and position (q/k/v nodes are flattened head x d_head).
    Hooks absent from `keep`, and hooks whose flags are all True, are not touched at all, so
    keeping everything reproduces the base model bit for bit.
    """
    fwd_hooks = []
    for hook, flags in keep.items():
        width = node_width(model, hook)
        flags = torch.as_tensor(flags, dtype=torch.bool)
        if flags.shape != (width,):
            raise InputError(f"keep[{hook!r}] has shape {tuple(flags.shape)}, expected ({width},)")
        if bool(flags.all()):
            continue
        if hook not in values:
            raise InputError(f"no ablation value for {hook!r}; pass values from ablation_values()")
        value = torch.as_tensor(values[hook])
        if value.shape != (width,):
            raise InputError(f"values[{hook!r}] has shape {tuple(value.shape)}, expected ({width},)")
        fwd_hooks.append((hook, _replace_fn(flags, value)))
    with model.hooks(fwd_hooks):
        yield model


def _replace_fn(flags: torch.Tensor, value: torch.Tensor):
    def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        tail = x.shape[2:]
        return torch.where(
            flags.to(x.device).view(tail), x, value.to(device=x.device, dtype=x.dtype).view(tail)
        )

    return fn


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
        return x * gate.view(tail) + offset.view(tail)

    return fn


def _norms(model: SparseTransformer) -> list[Norm]:
    return [m for m in model.modules() if isinstance(m, Norm)]


def _norm_stats(norm: Norm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(center, inverse scale) of a Norm's input, as the Norm computes them."""
    if norm.kind == "rms":
        eps = torch.finfo(x.dtype).eps
        return torch.zeros_like(x[..., :1]), torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    mean = x.mean(-1, keepdim=True)
    return mean, torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)


@torch.no_grad()
def record_norm_scales(
    model: SparseTransformer, run: Callable[[], object]
) -> dict[Norm, tuple[torch.Tensor, torch.Tensor]]:
    """Run `run()` (a forward pass of the unmodified model) and record every Norm's stats."""
    stats: dict[Norm, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for norm in _norms(model):

        def grab(mod: Norm, args: tuple, out: torch.Tensor) -> None:
            stats[mod] = _norm_stats(mod, args[0])

        handles.append(norm.register_forward_hook(grab))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return stats


@contextmanager
def frozen_norms(
    model: SparseTransformer, stats: Mapping[Norm, tuple[torch.Tensor, torch.Tensor]]
) -> Iterator[SparseTransformer]:
    """Make every Norm use the recorded (full-model) center and scale instead of its own."""
    handles = []

    def frozen(mod: Norm, args: tuple, out: torch.Tensor) -> torch.Tensor:
        center, inv = stats[mod]
        x = args[0]
        if center.shape[:-1] != x.shape[:-1]:
            raise ValueError("frozen norm scales were recorded on a different input shape")
        y = (x - center) * inv * mod.weight
        return y + mod.bias if mod.bias is not None else y

    for norm in _norms(model):
        handles.append(norm.register_forward_hook(frozen))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()

