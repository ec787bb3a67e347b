"""The planted models' tasks: pairs of token-id prompts drawn by a function (no tokenizer).

`TokenTask` generalizes `tests/planted_model.py`'s MarkerTask: `draw(rng)` returns one
candidate (prompt A, answer A, prompt B, answer B); duplicates and candidates whose hash
(`pair_split`) falls in the other split are skipped, so train and test never share a pair.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sparsecircuits.errors import InputError
from sparsecircuits.tasks import EncodedPair, Pair, Task, pair_split

Draw = tuple[tuple[int, ...], int, tuple[int, ...], int]  # prompt A, answer A, prompt B, answer B

MAX_TRIES_PER_PAIR = 200  # a pair space too small for `n` fails instead of looping forever


@dataclass
class TokenTask(Task):
    """A task whose pairs are token ids drawn by `draw(rng)`; ignores the tokenizer."""

    draw: Callable[[random.Random], Draw] | None = None

    def generate(self, tokenizer: object, n: int, seed: int = 0, split: str = "train") -> list[EncodedPair]:
        """`n` distinct pairs of `split`, deterministic for (name, seed, split)."""
        if self.draw is None:
            raise InputError(f"task {self.name} has no draw function")
        rng = random.Random(f"{self.name}|{seed}|{split}")
        out: list[EncodedPair] = []
        seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        for _ in range(MAX_TRIES_PER_PAIR * n):
            a, ans_a, b, ans_b = self.draw(rng)
            pair = Pair(" ".join(map(str, a)), str(ans_a), " ".join(map(str, b)), str(ans_b))
            if (a, b) in seen or (split != "all" and pair_split(pair) != split):
                continue
            seen.add((a, b))
            out.append(EncodedPair(pair, a, ans_a, b, ans_b))
            if len(out) == n:
                return out
        raise InputError(f"task {self.name}: found only {len(out)} distinct {split} pairs, asked for {n}")
