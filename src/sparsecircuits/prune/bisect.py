"""Discretizing the masks: rank nodes by tau, bisect over k for the smallest top-k node set
whose task loss is at most the target (docs/method.md section 4)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from sparsecircuits.errors import InputError


def rank_nodes(tau: Mapping[str, torch.Tensor]) -> list[tuple[str, int]]:
    """Every (hook, index), highest tau first; ties keep hook order then index order."""
    hooks = list(tau)
    flat = torch.cat([tau[h].detach().flatten().double() for h in hooks])
    owner = [(h, i) for h in hooks for i in range(tau[h].numel())]
    order = torch.sort(-flat, stable=True).indices.tolist()
    return [owner[j] for j in order]


def top_k_keep(
    ranking: list[tuple[str, int]], k: int, widths: Mapping[str, int]
) -> dict[str, torch.Tensor]:
    """Keep flags (hook -> bool tensor) selecting the first `k` nodes of `ranking`."""
    if not 0 <= k <= len(ranking):
        raise InputError(f"k={k} must be between 0 and the number of ranked nodes ({len(ranking)})")
    keep = {h: torch.zeros(w, dtype=torch.bool) for h, w in widths.items()}
    for hook, index in ranking[:k]:
        keep[hook][index] = True
    return keep


def bisect_k(
    loss_at: Callable[[int], float], n: int, target: float, hint: int | None = None
) -> tuple[int | None, list[dict[str, float]]]:
    """Smallest k in [0, n] with loss_at(k) <= target, assuming the loss falls as k grows.

    Returns (k, curve) where curve lists every evaluated {"k", "loss"} sorted by k; k is None
    when no evaluated k meets the target. `hint`, a k expected to meet the target (such as
    the number of nodes the masks kept), is tried first and narrows the bracket to [0, hint]
    when it does, or to [hint, n] when it does not. Evaluates loss_at about log2(n) + 2
    times, or log2(hint) + 3 with a hint that meets the target.

    The loss need not fall all the way: when all n nodes miss the target (a full model at
    or above it, whose noise some subsets leave out), k = 1, 2, 4, ... below n are tried in
    turn and the bisection runs between the last that misses and the first that meets
    (about 2 log2(n) evaluations in all).
    """
    if n < 0:
        raise InputError(f"n={n} nodes; must be >= 0")
    seen: dict[int, float] = {}

    def ok(k: int) -> bool:
        if k not in seen:
            seen[k] = float(loss_at(k))
        return seen[k] <= target

    def curve() -> list[dict[str, float]]:
        return [{"k": k, "loss": seen[k]} for k in sorted(seen)]

    lo, hi = 0, n  # loss(lo) > target >= loss(hi), once checked
    if hint is not None and 0 < hint < n:
        if ok(hint):
            hi = hint
        else:
            lo = hint
    if hi == n and not ok(n):
        hi = next((k for k in _doubling(n) if ok(k)), None)
        if hi is None:
            return None, curve()
        lo = max((k for k in seen if k < hi and seen[k] > target), default=0)
    if lo == 0 and ok(0):
        return 0, curve()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi, curve()


def _doubling(n: int) -> list[int]:
    """1, 2, 4, ... below n."""
    return [1 << i for i in range(max(n - 1, 0).bit_length())]
