"""User tasks from a JSONL file: one pair per line, checked with the same rules as built-ins.

Each non-blank line is a JSON object with string fields `prompt`, `target`, `alt_prompt`
and `alt`; `target` and `alt` are the expected next tokens (each must be exactly one
token after its prompt). Other fields are ignored. Structure is checked on load; the
token rules (1: single distinct answer tokens that the model really sees, 2: both
prompts end in the same token) are checked against the tokenizer when pairs are
generated, for every line. Rule 4 (the code parses) is not checked: lines hold
fragments. Errors name the file, the line number and the field.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_text
from sparsecircuits.tasks.base import (
    TEST_FRACTION,
    EncodedPair,
    Pair,
    Task,
    check_n,
    check_pair,
    check_split,
    pair_split,
)

FIELDS = ("prompt", "target", "alt_prompt", "alt")


@dataclass
class JsonlTask(Task):
    """A task whose pairs are the lines of a JSONL file (`source` is the file's path)."""

    lines: list[tuple[int, Pair]] = field(default_factory=list)

    def generate(
        self, tokenizer: Tokenizer, n: int, seed: int = 0, split: str = "train"
    ) -> list[EncodedPair]:
        """Up to `n` pairs of `split` in a seeded order; every line is checked first."""
        check_n(n)
        check_split(split)
        encoded = [
            check_pair(tokenizer, pair, where=f"task file {self.source} line {line}", exact=True)
            for line, pair in self.lines
        ]
        chosen = [e for e in encoded if split == "all" or pair_split(e.pair) == split]
        if not chosen:
            raise InputError(
                f"task file {self.source}: none of its {len(encoded)} pairs is in the {split} "
                f"split (a hash of the prompts puts about {TEST_FRACTION:.0%} of pairs in test); "
                "add more lines or use split 'all'"
            )
        random.Random(f"{self.name}|{seed}|{split}").shuffle(chosen)
        return chosen[:n]


def _parse_line(path: Path, number: int, text: str) -> Pair:
    where = f"task file {path} line {number}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object with fields {', '.join(FIELDS)}")
    for name in FIELDS:
        if name not in obj:
            raise InputError(f"{where}, field {name!r}: missing; every line needs {', '.join(FIELDS)}")
        value = obj[name]
        if not isinstance(value, str):
            raise InputError(f"{where}, field {name!r}: expected a string, got {type(value).__name__}")
        if not value:
            raise InputError(f"{where}, field {name!r}: is empty")
    return Pair(obj["prompt"], obj["target"], obj["alt_prompt"], obj["alt"])


def load_task_file(path: str | Path) -> JsonlTask:
    """Read a JSONL task file; structural errors name the line number and the field."""
    path = Path(path)
    text = read_text(path, "give a JSONL file of pairs (one JSON object per line)")
    lines: list[tuple[int, Pair]] = []
    first_seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        pair = _parse_line(path, number, raw)
        key = (pair.prompt, pair.alt_prompt)
        if key in first_seen:
            raise InputError(
                f"task file {path} line {number}: the same prompts as line {first_seen[key]}; "
                "remove the duplicate"
            )
        first_seen[key] = number
        lines.append((number, pair))
    if not lines:
        raise InputError(f"task file {path} has no pairs; write one JSON object per line")
    return JsonlTask(
        name=path.stem,
        description=f"{len(lines)} pairs from {path}",
        source=str(path),
        params={"file": str(path), "n_lines": len(lines)},
        lines=lines,
    )
