"""Pairs, the four task rules checked against a tokenizer, the Task class and the registry.

A task is a generator of **pairs**: prompt A whose correct next token is `target` and
prompt B whose correct next token is `alt` (see docs/tasks.md). Generators return a `Pair`
whose `target`/`alt` may be the whole completion of the code; `check_pair` derives the
token the model would really see (the first token after the prompt's tokens) and checks:

1. the prompt's tokens are a prefix of the tokens of prompt + completion, the next token
   is a single token on its own, and target != alt;
2. both prompts end in the same token id (and have the same length when the task says so);
3. pairs are deduplicated and split into train/test by a hash of the two prompts, so the
   splits never share a pair; generation is deterministic for a seed;
4. when the task asks for it, prompt + completion parses with `ast.parse`.
"""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import decode, encode
from sparsecircuits.errors import InputError

SPLITS = ("train", "test", "all")
# Fraction of the pair space (by hash of the two prompts) that belongs to the test split.
TEST_FRACTION = 0.2
DEFAULT_TARGET_LOSS = 0.15


@dataclass(frozen=True)
class Pair:
    """Prompt A expects `target`, prompt B (`alt_prompt`) expects `alt`.

    From a generator, `target`/`alt` may be longer completions whose first token is the
    answer; in an `EncodedPair` they are exactly the answer tokens' text, and
    `target_rest`/`alt_rest` hold the rest of the completion ("" when not known).
    """

    prompt: str
    target: str
    alt_prompt: str
    alt: str
    target_rest: str = ""
    alt_rest: str = ""


@dataclass(frozen=True)
class EncodedPair:
    """A pair checked against a tokenizer, with its token ids."""

    pair: Pair
    prompt_ids: tuple[int, ...]
    target_id: int
    alt_prompt_ids: tuple[int, ...]
    alt_id: int


def _show(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Human-readable token list, e.g. ['x', ' =', ' "']."""
    return "[" + ", ".join(repr(decode(tok, [i])) for i in ids) + "]"


def _answer_token(
    tok: Tokenizer, prompt: str, completion: str, where: str, exact: bool
) -> tuple[tuple[int, ...], int, str]:
    """Prompt ids, answer id and answer text of one side of a pair (rule 1)."""
    if not prompt:
        raise InputError(f"{where}: the prompt is empty; give the code before the answer token")
    if not completion:
        raise InputError(f"{where}: the answer is empty; give the expected next token")
    p_ids = encode(tok, prompt)
    full = encode(tok, prompt + completion)
    if full[: len(p_ids)] != p_ids or len(full) == len(p_ids):
        boundary = _show(tok, full[max(0, len(p_ids) - 2) : len(p_ids) + 2])
        raise InputError(
            f"{where}: the prompt's last token {decode(tok, p_ids[-1:])!r} merges with the "
            f"answer {completion[:12]!r}: prompt + answer tokenizes as ...{boundary}, so the "
            "model never sees the prompt's tokens followed by the answer token; end the "
            "prompt at a token boundary"
        )
    t = full[len(p_ids)]
    text = decode(tok, [t])
    if not completion.startswith(text) or encode(tok, text) != [t]:
        raise InputError(
            f"{where}: the answer token {text!r} is not a token of its own under this tokenizer"
        )
    if exact and len(full) != len(p_ids) + 1:
        raise InputError(
            f"{where}: the answer {completion!r} is not a single token under this tokenizer "
            f"(after the prompt it tokenizes as {_show(tok, full[len(p_ids):])}); "
            "give only the first of those tokens"
        )
    return tuple(p_ids), t, text


def check_pair(
    tokenizer: Tokenizer,
    pair: Pair,
    *,
    where: str = "pair",
    exact: bool = False,
    same_length: bool = False,
    parse: bool = False,
) -> EncodedPair:
    """Check rules 1, 2 and (if `parse`) 4 for one pair; return it encoded and normalized.

    With `exact`, `target`/`alt` must each be exactly one token after their prompt (JSONL
    files); otherwise they are completions and the answer is their first token. `where`
    prefixes every error message (a task name, a file and line).
    """
    p_ids, t, t_text = _answer_token(tokenizer, pair.prompt, pair.target, f"{where}, field 'target'", exact)
    q_ids, a, a_text = _answer_token(tokenizer, pair.alt_prompt, pair.alt, f"{where}, field 'alt'", exact)
    if t == a:
        raise InputError(
            f"{where}: target and alt are the same token {t_text!r} under this tokenizer, so "
            "the pair cannot tell the prompts apart; choose answers whose first tokens differ"
        )
    if p_ids[-1] != q_ids[-1]:
        raise InputError(
            f"{where}, field 'alt_prompt': the prompts end in different tokens "
            f"({decode(tokenizer, p_ids[-1:])!r} and {decode(tokenizer, q_ids[-1:])!r}); "
            "rule 2 needs the same last token so that the answer depends on earlier context"
        )
    if same_length and len(p_ids) != len(q_ids):
        raise InputError(
            f"{where}, field 'alt_prompt': the prompts have {len(p_ids)} and {len(q_ids)} "
            "tokens; this task's template requires equal lengths"
        )
    if parse:
        for name, code in (("target", pair.prompt + pair.target), ("alt", pair.alt_prompt + pair.alt)):
            try:
                ast.parse(code)
            except SyntaxError as exc:
                raise InputError(
                    f"{where}, field {name!r}: prompt + completion is not valid Python "
                    f"({exc.msg} at line {exc.lineno}); fix the template"
                ) from exc
    normal = Pair(
        prompt=pair.prompt,
        target=t_text,
        alt_prompt=pair.alt_prompt,
        alt=a_text,
        target_rest=pair.target[len(t_text) :] + pair.target_rest,
        alt_rest=pair.alt[len(a_text) :] + pair.alt_rest,
    )
    return EncodedPair(normal, p_ids, t, q_ids, a)


def pair_split(pair: Pair) -> str:
    """The split ("train" or "test") a pair belongs to, by a hash of its two prompts."""
    h = hashlib.sha256(f"{pair.prompt}\0{pair.alt_prompt}".encode()).digest()
    return "test" if int.from_bytes(h[:8], "big") / 2**64 < TEST_FRACTION else "train"


def check_split(split: str) -> str:
    """Validate a split name."""
    if split not in SPLITS:
        raise InputError(f"split {split!r} is unknown; use one of {', '.join(SPLITS)}")
    return split


def check_n(n: int) -> None:
    """Validate a requested number of pairs."""
    if not isinstance(n, int) or n < 1:
        raise InputError(f"n={n!r} pairs requested; give a positive integer")


@dataclass
class Task:
    """A named source of pairs; subclasses implement `generate`."""

    name: str
    description: str = ""
    source: str = "builtin"
    params: dict[str, Any] = field(default_factory=dict)

    def generate(
        self, tokenizer: Tokenizer, n: int, seed: int = 0, split: str = "train"
    ) -> list[EncodedPair]:
        """`n` distinct pairs of `split`, checked against `tokenizer`; deterministic for `seed`."""
        raise NotImplementedError


@dataclass
class GeneratorTask(Task):
    """A task defined by a function drawing one random pair from a `random.Random`.

    `draw(rng, context)` returns a `Pair` whose `target`/`alt` are completions; `context`
    is `prepare(tokenizer)` (e.g. names that are single tokens), or None without `prepare`.
    Candidates are drawn from an RNG seeded by (name, seed, split); duplicates and
    candidates whose hash falls in the other split are skipped. Any rule failure raises
    `InputError`.
    """

    draw: Callable[[random.Random, Any], Pair] | None = None
    prepare: Callable[[Tokenizer], Any] | None = None
    same_length: bool = False
    parse: bool = False

    def generate(
        self, tokenizer: Tokenizer, n: int, seed: int = 0, split: str = "train"
    ) -> list[EncodedPair]:
        """`n` distinct pairs of `split`, checked against `tokenizer`; deterministic for `seed`."""
        check_n(n)
        check_split(split)
        if self.draw is None:
            raise InputError(f"task {self.name} has no generator function")
        try:
            context = self.prepare(tokenizer) if self.prepare is not None else None
        except InputError as exc:
            raise InputError(f"task {self.name}: {exc}") from exc
        rng = random.Random(f"{self.name}|{seed}|{split}")
        seen: set[tuple[str, str]] = set()
        out: list[EncodedPair] = []
        max_draws = 50 * n + 1000
        for _ in range(max_draws):
            raw = self.draw(rng, context)
            key = (raw.prompt, raw.alt_prompt)
            if key in seen or (split != "all" and pair_split(raw) != split):
                continue
            seen.add(key)
            out.append(
                check_pair(
                    tokenizer,
                    raw,
                    where=f"task {self.name}",
                    same_length=self.same_length,
                    parse=self.parse,
                )
            )
            if len(out) == n:
                return out
        raise InputError(
            f"task {self.name}: only {len(out)} distinct pairs in {max_draws} draws (split {split}), "
            f"{n} requested; ask for fewer pairs or widen the generator's randomness"
        )


_REGISTRY: dict[str, Task] = {}
_BUILTIN: list[str] = []


def add_task(task: Task, builtin: bool = False) -> Task:
    """Register a Task object under its name (names are unique)."""
    if not task.name or not task.name.replace("_", "").replace("-", "").isalnum():
        raise InputError(
            f"task name {task.name!r} is not valid; use letters, digits, '_' and '-'"
        )
    if task.name in _REGISTRY:
        raise InputError(f"a task named {task.name!r} already exists; choose another name")
    _REGISTRY[task.name] = task
    if builtin:
        _BUILTIN.append(task.name)
    return task


def register_task(
    name: str,
    generator_fn: Callable[[random.Random], Pair],
    description: str = "",
    *,
    same_length: bool = False,
    parse: bool = False,
) -> Task:
    """Register a user task from `generator_fn(rng) -> Pair`.

    `target`/`alt` of the returned Pair are the expected next tokens, or longer
    completions whose first token is the answer. `parse=True` also requires
    prompt + completion to be valid Python (rule 4).
    """
    if not callable(generator_fn):
        raise InputError(f"task {name}: generator_fn must be a function rng -> Pair")

    def draw(rng: random.Random, context: Any) -> Pair:
        pair = generator_fn(rng)
        if not isinstance(pair, Pair):
            raise InputError(f"task {name}: the generator returned {type(pair).__name__}, not a Pair")
        return pair

    task = GeneratorTask(
        name=name,
        description=description,
        source="python",
        params={"same_length": same_length, "parse": parse},
        draw=draw,
        same_length=same_length,
        parse=parse,
    )
    return add_task(task)


def get_task(name: str) -> Task:
    """The registered task called `name`."""
    task = _REGISTRY.get(name)
    if task is None:
        raise InputError(
            f"no task named {name!r}; `sparsecircuits tasks list` shows the names, "
            "or give a JSONL task file"
        )
    return task


def list_tasks() -> list[str]:
    """Names of the 20 built-in tasks, in docs/tasks.md order."""
    return list(_BUILTIN)


def registered_tasks() -> list[str]:
    """Names of every registered task: the built-ins, then user tasks."""
    return list(_REGISTRY)

