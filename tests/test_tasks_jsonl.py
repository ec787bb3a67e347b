"""User tasks from JSONL files: loading, rule checks and errors naming line and field."""

from __future__ import annotations

import json

import pytest

from sparsecircuits.errors import InputError
from sparsecircuits.tasks import JsonlTask, Pair, load_task_file, pair_split

NAMES = ["alpha", "beta", "gamma", "delta", "value", "result", "count", "items", "total", "name"]


def good_lines(n: int = 40) -> list[dict]:
    """Bracket-vs-brace pairs: `x = [a, b` -> `]`, `x = {a, b` -> `}`."""
    out = []
    for i in range(n):
        a, b = NAMES[i % len(NAMES)], NAMES[(i * 3 + 1) % len(NAMES)]
        out.append({"prompt": f"v{i} = [{a}, {b}", "target": "]", "alt_prompt": f"v{i} = {{{a}, {b}", "alt": "}"})
    return out


def write(path, rows) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def test_good_file_generates_checked_pairs(tmp_path, stdlib_tokenizer):
    path = tmp_path / "brackets.jsonl"
    write(path, good_lines())
    task = load_task_file(path)
    assert isinstance(task, JsonlTask)
    assert task.name == "brackets" and task.source == str(path) and len(task.lines) == 40
    every = task.generate(stdlib_tokenizer, 100, split="all")
    assert len(every) == 40
    for e in every:
        assert e.target_id == stdlib_tokenizer.token_to_id("]")
        assert e.alt_id == stdlib_tokenizer.token_to_id("}")
        assert e.prompt_ids[-1] == e.alt_prompt_ids[-1]
    train = task.generate(stdlib_tokenizer, 100, split="train")
    test = task.generate(stdlib_tokenizer, 100, split="test")
    assert len(train) + len(test) == 40 and test
    assert {pair_split(e.pair) for e in train} == {"train"}
    assert not {e.pair.prompt for e in train} & {e.pair.prompt for e in test}
    # Seeded order; n caps the count.
    assert task.generate(stdlib_tokenizer, 5, seed=2) == task.generate(stdlib_tokenizer, 5, seed=2)
    assert len(task.generate(stdlib_tokenizer, 5, seed=2)) == 5


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", r"line 3: not valid JSON"),
        ('["a", "b"]', r"line 3: expected a JSON object"),
        ({"prompt": "x = [a", "target": "]", "alt": "}"}, r"line 3, field 'alt_prompt': missing"),
        ({"prompt": "x = [a", "target": 5, "alt_prompt": "x = {a", "alt": "}"}, r"line 3, field 'target': expected a string"),
        ({"prompt": "", "target": "]", "alt_prompt": "x = {a", "alt": "}"}, r"line 3, field 'prompt': is empty"),
    ],
)
def test_structural_errors_name_the_line_and_field(tmp_path, bad, message):
    path = tmp_path / "bad.jsonl"
    rows = good_lines(4)
    write(path, [rows[0], rows[1], bad, rows[3]])
    with pytest.raises(InputError, match=message):
        load_task_file(path)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # Rule 1: the answer must be one token after its prompt.
        ({"prompt": "x = [a, b", "target": "] + [c]", "alt_prompt": "x = {a, b", "alt": "}"},
         r"line 4, field 'target': the answer '\] \+ \[c\]' is not a single token"),
        # Rule 1: the prompt's last token must not merge with the answer ("(" + "self").
        ({"prompt": "def run(", "target": "self", "alt_prompt": "def go(", "alt": ")"},
         r"line 4, field 'target': the prompt's last token '\(' merges"),
        # Rule 1: target and alt must differ.
        ({"prompt": "x = [a, b", "target": "]", "alt_prompt": "y = [a, b", "alt": "]"},
         r"line 4: target and alt are the same token"),
        # Rule 2: both prompts end in the same token.
        ({"prompt": "x = [a, b", "target": "]", "alt_prompt": "x = {a, c", "alt": "}"},
         r"line 4, field 'alt_prompt': the prompts end in different tokens"),
    ],
)
def test_rule_errors_name_the_line_and_field(tmp_path, stdlib_tokenizer, bad, message):
    path = tmp_path / "rules.jsonl"
    rows = good_lines(5)
    write(path, [rows[0], rows[1], "", bad, rows[4]])  # a blank line still counts as line 3
    task = load_task_file(path)
    with pytest.raises(InputError, match=message):
        task.generate(stdlib_tokenizer, 10, split="all")


def test_file_level_errors(tmp_path, stdlib_tokenizer):
    with pytest.raises(InputError, match="does not exist"):
        load_task_file(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="has no pairs"):
        load_task_file(empty)
    dup = tmp_path / "dup.jsonl"
    rows = good_lines(3)
    write(dup, [rows[0], rows[1], rows[0]])
    with pytest.raises(InputError, match="line 3: the same prompts as line 1"):
        load_task_file(dup)
    one = tmp_path / "one.jsonl"
    # Find a line whose hash puts it in train, so the test split is empty.
    row = next(r for r in good_lines() if pair_split(Pair(**r)) == "train")
    write(one, [row])
    with pytest.raises(InputError, match="none of its 1 pairs is in the test split"):
        load_task_file(one).generate(stdlib_tokenizer, 5, split="test")

