"""Named hook points: every activation gets a name; caching and interventions build on them.

A `HookPoint` is an identity module that runs the functions attached to it. A hook function
has the signature `fn(tensor, hook) -> tensor | None`: returning a tensor replaces the
activation (gradients flow through it), returning None only reads it.

`run_with_cache` returns an `ActivationCache`: a dict by hook name that also takes the
aliases and TransformerLens-style `(short name, layer)` keys (`HookIndex` resolves them).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sparsecircuits.errors import InputError

HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]
CacheKey = str | tuple[str, int]
NamesFilter = str | Sequence[CacheKey] | Callable[[str], bool] | None

# TransformerLens short names (`utils.get_act_name`) that differ from a hook's own name.
TL_SHORT_NAMES: dict[str, str] = {
    "attn": "pattern", "query": "q", "key": "k", "value": "v", "mlp_pre": "pre", "mlp_post": "post",
}


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


def _split_layer(name: str) -> tuple[str, int | None]:
    """("attn.hook_q", 0) for "blocks.0.attn.hook_q"; (name, None) outside the blocks."""
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        return parts[2], int(parts[1])
    return name, None


class HookIndex:
    """Resolves a key to a hook name: the hook name itself, an alias (`blocks.0.attn_q`), or
    a TransformerLens-style short name with its layer: `("resid_post", 0)`, `("q", -1)`.

    A hook's short names, within its layer, are its path in the block (`attn.hook_q`), its
    last part (`hook_q`) and that without `hook_` (`q`); an alias's is its location (`attn_q`).
    Outside the blocks a plain string works the same way (`"embed"`, `"normalized"`). A
    short name shared by two hooks of a layer (`"in"`, `"scale"`) is ambiguous: use the path.
    """

    def __init__(self, hook_names: Iterable[str], aliases: Mapping[str, str]) -> None:
        self.hook_names = list(hook_names)
        self.aliases = dict(aliases)
        self.aliases_of: dict[str, list[str]] = {}
        for alias, hook in self.aliases.items():
            self.aliases_of.setdefault(hook, []).append(alias)
        layers = [layer for _, layer in map(_split_layer, self.hook_names) if layer is not None]
        self.n_layer = max(layers, default=-1) + 1
        self._known = set(self.hook_names)
        self._short: dict[tuple[str, int | None], list[str]] = {}
        for name in [*self.hook_names, *self.aliases]:
            rest, layer = _split_layer(name)
            hook = self.aliases.get(name, name)
            leaf = rest.rsplit(".", 1)[-1]
            for short in (rest, leaf, leaf.removeprefix("hook_")):
                hooks = self._short.setdefault((short, layer), [])
                if hook not in hooks:
                    hooks.append(hook)

    def resolve(self, key: CacheKey) -> str:
        """The hook name of `key`; KeyError naming the valid keys when there is none or several."""
        if isinstance(key, tuple):
            name, layer = self._layer_key(key)
        elif isinstance(key, str):
            if key in self._known:
                return key
            if key in self.aliases:
                return self.aliases[key]
            name, layer = _split_layer(key)
        else:
            raise KeyError(f"a hook key is a name or (name, layer), got {type(key).__name__} {key!r}")
        hooks = self._short.get((name, layer)) or self._short.get((TL_SHORT_NAMES.get(name), layer), [])
        if len(hooks) == 1:
            return hooks[0]
        if hooks:
            raise KeyError(
                f"hook key {key!r} is ambiguous: it names {', '.join(hooks)}; use one of those names"
            )
        raise KeyError(f"unknown hook point {key!r}; {self.valid_keys()}")

    def _layer_key(self, key: tuple) -> tuple[str, int]:
        """(short name, layer in range) of a `(name, layer)` key; negative layers count from the end."""
        if len(key) != 2 or not isinstance(key[0], str):
            raise KeyError(f"a tuple hook key is (name, layer), e.g. ('resid_post', 0); got {key!r}")
        try:
            layer = operator.index(key[1])
        except TypeError:
            raise KeyError(f"the layer of hook key {key!r} must be an integer") from None
        if not -self.n_layer <= layer < self.n_layer:
            raise KeyError(
                f"layer {layer} of hook key {key!r} is out of range: the model has {self.n_layer} layer(s)"
            )
        return key[0], layer % self.n_layer

    def valid_keys(self) -> str:
        """A sentence listing the short names (the unambiguous shortest ones)."""

        def shortest(where: int | None) -> str:
            names = (s for (s, lay), hooks in self._short.items() if lay == where and len(hooks) == 1)
            return ", ".join(sorted(s for s in names if "." not in s and not s.startswith("hook_")))

        return (
            "give a hook name (model.hook_names()), an alias (e.g. 'blocks.0.attn_q'), a name "
            f"outside the blocks ({shortest(None)}) or (name, layer) with name one of: {shortest(0)}"
        )


class ActivationCache(dict[str, torch.Tensor]):
    """Activations by hook name, as `run_with_cache` records them.

    A dict keyed by hook name (iteration, `.items()` and `==` see hook names), whose lookups
    (`[]`, `in`, `.get`) also take aliases and `(short name, layer)` keys: `cache["blocks.0.attn_q"]`,
    `cache["resid_post", 0]`, `cache["q", -1]` (see `HookIndex`).
    """

    def __init__(self, index: HookIndex, activations: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__(activations or {})
        self.index = index

    def __getitem__(self, key: CacheKey) -> torch.Tensor:
        if isinstance(key, str) and dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        hook = self.index.resolve(key)
        if not dict.__contains__(self, hook):
            cached = ", ".join(self) or "nothing"
            raise KeyError(
                f"{key!r} is hook point {hook}, which this cache does not hold (cached: {cached}); "
                "widen run_with_cache's names_filter"
            )
        return dict.__getitem__(self, hook)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def get(self, key: CacheKey, default: Any = None) -> Any:  # type: ignore[override]
        """`self[key]`, or `default` when the cache does not hold it."""
        try:
            return self[key]
        except KeyError:
            return default


class HookedModule(nn.Module):
    """Mixin giving a module named hook points, aliases, caching and hook contexts.

    Call `setup_hooks()` at the end of `__init__`: it names every `HookPoint` by its module
    path. Subclasses may define `hook_aliases() -> dict[str, str]` (alias -> hook name).
    """

    hook_dict: dict[str, HookPoint]
    hook_index: HookIndex

    def setup_hooks(self) -> None:
        """Name every HookPoint by its module path and index the names and aliases."""
        self.hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module
        self.hook_index = HookIndex(self.hook_dict, self.hook_aliases())

    def hook_aliases(self) -> dict[str, str]:
        """Alias -> hook name; empty unless a subclass defines aliases."""
        return {}

    def resolve_hook_name(self, name: CacheKey) -> str:
        """Map a hook name, an alias or a `(short name, layer)` key (see `HookIndex`) to the
        hook name; unknown names raise InputError."""
        try:
            return self.hook_index.resolve(name)
        except KeyError as exc:
            raise InputError(exc.args[0]) from None

    def hook_names(self) -> list[str]:
        """Every hook name, in forward order."""
        return list(self.hook_dict)

    def _matching(self, names_filter: NamesFilter) -> list[str]:
        """Hook names selected by a filter; a callable sees each hook name and its aliases."""
        if names_filter is None:
            return self.hook_names()
        if isinstance(names_filter, str) or (
            isinstance(names_filter, tuple) and len(names_filter) == 2 and not isinstance(names_filter[1], str)
        ):
            return [self.resolve_hook_name(names_filter)]  # one name, or one (name, layer) key
        if callable(names_filter):
            aliases = self.hook_index.aliases_of
            return [n for n in self.hook_dict if any(map(names_filter, [n, *aliases.get(n, ())]))]
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
        self,
        tokens: torch.Tensor,
        fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
        **forward_kwargs: Any,
    ) -> Any:
        """Run the forward pass with the given hooks attached; returns what the forward pass
        returns (logits, or as `forward_kwargs` such as `return_type="loss"` ask)."""
        with self.hooks(fwd_hooks):
            return self(tokens, **forward_kwargs)

    def run_with_cache(
        self,
        tokens: torch.Tensor,
        names_filter: NamesFilter = None,
        detach: bool = True,
        **forward_kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Run the forward pass and record activations: (logits, or what `forward_kwargs` ask
        for, and the `ActivationCache` of the hooks `names_filter` selects; None: all)."""
        cache = ActivationCache(self.hook_index)

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        with self.hooks([(n, save) for n in self._matching(names_filter)]):
            out = self(tokens, **forward_kwargs)
        return out, cache
