"""Interventions on the hook points: ablation, frozen norms, and the last-position run.

Every intervention is a set of hook functions attached for a `with` block:
- `ablate(model, keep, values)`: nodes whose keep flag is False take their ablation value
  (evaluating circuits: bisection, validation, the viewer);
- `record_norm_scales` / `frozen_norms`: read every norm's `hook_scale` (and LayerNorm's
  `hook_center`) in the full model, then pin them to those values, so that a pruned model
  cannot profit from the norms rescaling a thinned residual stream;
- `run_last_logits`: the task logits at each row's last prompt position under any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch

from sparsecircuits.errors import InputError
from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.locations import node_width
from sparsecircuits.model.transformer import SparseTransformer

NormStats = Mapping[str, torch.Tensor]  # norm hook name (hook_scale / hook_center) -> value


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


def norm_hooks(model: SparseTransformer) -> list[str]:
    """The hook names of every norm's center and scale."""
    return [n for n in model.hook_names() if n.endswith((".hook_scale", ".hook_center"))]


@torch.no_grad()
def capture(model: SparseTransformer, hooks: list[str], run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """Run `run()` and record the (detached) activations at `hooks` by hook name."""
    acts: dict[str, torch.Tensor] = {}

    def save(x: torch.Tensor, hook: HookPoint) -> None:
        acts[hook.name] = x.detach()

    with model.hooks([(h, save) for h in hooks]):
        run()
    return acts


def record_norm_scales(model: SparseTransformer, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """Run `run()` (a forward pass of the unmodified model) and record every norm's center
    and scale by hook name."""
    return capture(model, norm_hooks(model), run)


@contextmanager
def frozen_norms(model: SparseTransformer, stats: NormStats) -> Iterator[SparseTransformer]:
    """Make every norm use the recorded (full-model) center and scale instead of its own."""

    def pin(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        value = stats[hook.name]
        if value.shape != x.shape:
            raise ValueError("frozen norm scales were recorded on a different input shape")
        return value

    with model.hooks([(name, pin) for name in stats]):
        yield model


@contextmanager
def intervened(
    model: SparseTransformer,
    keep: Mapping[str, torch.Tensor] | None,
    values: Mapping[str, torch.Tensor],
    norm_stats: NormStats | None = None,
) -> Iterator[SparseTransformer]:
    """Nodes outside `keep` ablated (nothing when None); norms frozen to `norm_stats` if given."""
    with ExitStack() as stack:
        if keep is not None:
            stack.enter_context(ablate(model, keep, values))
        if norm_stats is not None:
            stack.enter_context(frozen_norms(model, norm_stats))
        yield model


def last_position_activations(
    model: SparseTransformer, hooks: list[str], tokens: torch.Tensor, last_pos: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The activations at `hooks` in the shapes `model.last_logits` sees (the last block's
    later hooks only at each row's last position), under whatever hooks are attached."""
    return capture(model, hooks, lambda: model.last_logits(tokens, last_pos))


def last_norm_stats(model: SparseTransformer, tokens: torch.Tensor, last_pos: torch.Tensor) -> dict[str, torch.Tensor]:
    """The full model's norm stats in the shapes `model.last_logits` sees (to freeze them)."""
    return last_position_activations(model, norm_hooks(model), tokens, last_pos)
