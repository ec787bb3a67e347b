"""Named hook points: every activation gets a name; caching and interventions build on them.

A `HookPoint` is an identity module that runs the functions attached to it. A hook function
has the signature `fn(tensor, hook) -> tensor | None`: returning a tensor replaces the
activation (gradients flow through it), returning None only reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sparsecircuits.errors import InputError

HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


class HookPoint(nn.Module):
    """An identity module with a name, where hook functions can read or replace a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self._fns: list[HookFn] = []

    def add(self, fn: HookFn) -> None:
        """Attach a hook function; it runs after the ones already attached."""
        self._fns.append(fn)

    def remove(self, fn: HookFn) -> None:
        """Detach one hook function (by identity)."""
        for i, f in enumerate(self._fns):
            if f is fn:
                del self._fns[i]
                return

    def clear(self) -> None:
        """Detach every hook function."""
        self._fns.clear()

    @property
    def active(self) -> bool:
        """Whether any hook function is attached."""
        return bool(self._fns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in list(self._fns):
            out = fn(x, self)
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(
                        f"hook on {self.name} returned shape {tuple(out.shape)}, "
                        f"expected {tuple(x.shape)}"
                    )
                x = out
        return x

    def extra_repr(self) -> str:
        return self.name


class HookedModule(nn.Module):
    """Mixin giving a module named hook points, aliases, caching and hook contexts.

    Call `setup_hooks()` at the end of `__init__`: it names every `HookPoint` by its module
    path. Subclasses may define `hook_aliases() -> dict[str, str]` (alias -> hook name).
    """

    hook_dict: dict[str, HookPoint]
    _aliases: dict[str, str]

    def setup_hooks(self) -> None:
        """Name every HookPoint by its module path and build the alias table."""
        self.hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module
        self._aliases = self.hook_aliases()

    def hook_aliases(self) -> dict[str, str]:
        """Alias -> hook name; empty unless a subclass defines aliases."""
        return {}

    def resolve_hook_name(self, name: str) -> str:
        """Map a hook name or an alias to the hook name; unknown names raise InputError."""
        if name in self.hook_dict:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise InputError(
            f"unknown hook point {name!r}; see model.hook_names() for the valid names "
            "(e.g. 'blocks.0.attn.hook_q' or its alias 'blocks.0.attn_q')"
        )

    def hook_names(self) -> list[str]:
        """Every hook name, in forward order."""
        return list(self.hook_dict)

    def _matching(self, names_filter: NamesFilter) -> list[str]:
        if names_filter is None:
            return self.hook_names()
        if isinstance(names_filter, str):
            return [self.resolve_hook_name(names_filter)]
        if callable(names_filter):
            return [n for n in self.hook_dict if names_filter(n)]
        return [self.resolve_hook_name(n) for n in names_filter]

    def reset_hooks(self) -> None:
        """Detach every hook function from every hook point."""
        for hp in self.hook_dict.values():
            hp.clear()

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = ()) -> Iterator[Any]:
        """Attach hooks for the duration of a `with` block; names may be aliases or filters."""
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for name, fn in fwd_hooks:
                targets = self._matching(name)
                for target in targets:
                    hp = self.hook_dict[target]
                    hp.add(fn)
                    attached.append((hp, fn))
            yield self
        finally:
            for hp, fn in attached:
                hp.remove(fn)

    def run_with_hooks(
        self, tokens: torch.Tensor, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = ()
    ) -> torch.Tensor:
        """Run the forward pass with the given hooks attached; returns logits."""
        with self.hooks(fwd_hooks):
            return self(tokens)

    def run_with_cache(
        self,
        tokens: torch.Tensor,
        names_filter: NamesFilter = None,
        detach: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the forward pass and record activations; returns (logits, cache by hook name)."""
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        with self.hooks([(n, save) for n in self._matching(names_filter)]):
            logits = self(tokens)
        return logits, cache
