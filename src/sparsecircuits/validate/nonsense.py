"""The nonsense task: a real task's prompts with answers assigned by a hash, not by the rule.

For every pair, a fixed hash of the two prompts' token ids decides whether target and alt
are swapped. The prompts, the answer tokens and their frequencies stay those of the real
task, but which prompt expects which answer is an arbitrary function of the prompt's
content: a circuit that really computes the task's rule is at chance on it. If pruning
still finds a small circuit reaching the target loss on it, small low-loss circuits are not
evidence of a mechanism (the critique, docs/method.md section 5).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tokenizers import Tokenizer

from sparsecircuits.errors import InputError
from sparsecircuits.tasks import EncodedPair, Pair, Task

NONSENSE_SOURCE = "nonsense"
DEFAULT_SALT = "sparsecircuits-nonsense"


def swaps(pair: EncodedPair, salt: str = DEFAULT_SALT) -> bool:
    """Whether the nonsense task swaps this pair's answers (a fixed hash of its prompts' ids)."""
    text = f"{salt}|{','.join(map(str, pair.prompt_ids))}|{','.join(map(str, pair.alt_prompt_ids))}"
    return hashlib.sha256(text.encode()).digest()[0] & 1 == 1


def nonsense_pair(pair: EncodedPair, salt: str = DEFAULT_SALT) -> EncodedPair:
    """The pair with target and alt swapped when the hash says so, otherwise unchanged."""
    if not swaps(pair, salt):
        return pair
    p = pair.pair
    swapped = Pair(
        prompt=p.prompt,
        target=p.alt,
        alt_prompt=p.alt_prompt,
        alt=p.target,
        target_rest="",
        alt_rest="",
    )
    return EncodedPair(swapped, pair.prompt_ids, pair.alt_id, pair.alt_prompt_ids, pair.target_id)


@dataclass
class NonsenseTask(Task):
    """A wrapper task: the base task's pairs with answers relabelled by `nonsense_pair`."""

    base: Task | None = None
    salt: str = DEFAULT_SALT

    def generate(
        self, tokenizer: Tokenizer, n: int, seed: int = 0, split: str = "train"
    ) -> list[EncodedPair]:
        """The base task's pairs for (n, seed, split), relabelled by the hash."""
        if self.base is None:
            raise InputError(f"nonsense task {self.name} has no base task")
        return [nonsense_pair(p, self.salt) for p in self.base.generate(tokenizer, n, seed, split)]


def nonsense_task(base: Task, salt: str = DEFAULT_SALT) -> NonsenseTask:
    """The nonsense version of `base` (not registered; its `params` name the base task)."""
    return NonsenseTask(
        name=f"{base.name}-nonsense",
        description=f"{base.name} with answers assigned by a hash of the prompts",
        source=NONSENSE_SOURCE,
        params={"base": {"name": base.name, "source": base.source, "params": dict(base.params)}, "salt": salt},
        base=base,
        salt=salt,
    )
