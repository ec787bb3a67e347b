"""The 20 built-in tasks obey the four rules of docs/tasks.md under real tokenizers."""

from __future__ import annotations

import ast
import random

import pytest

from sparsecircuits.data.tokenizer import decode, encode
from sparsecircuits.errors import InputError
from sparsecircuits.tasks import (
    EncodedPair,
    Pair,
    get_task,
    list_tasks,
    pair_split,
    register_task,
)

TASK_NAMES = [
    "single_double_quote", "bracket_counting", "set_or_string", "set_or_string_fixedvarname",
    "while_return_true", "if_ternary", "if_equals", "bracket_brace", "fstring_brace", "var_swap",
    "var_if", "indent_for", "enumerate_range", "lambda_func", "final_kwarg", "class_init",
    "with_as", "with_open", "for_while", "else_elif",
]


@pytest.fixture
def fresh_registry(monkeypatch):
    """Register test tasks in a copy of the registry, dropped after the test."""
    from sparsecircuits.tasks import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def assert_rules(tok, task, pairs: list[EncodedPair]) -> None:
    """Check rules 1, 2 and 4 from scratch (independently of check_pair)."""
    for e in pairs:
        p = e.pair
        for prompt, ids, answer, answer_id, rest in (
            (p.prompt, e.prompt_ids, p.target, e.target_id, p.target_rest),
            (p.alt_prompt, e.alt_prompt_ids, p.alt, e.alt_id, p.alt_rest),
        ):
            # Rule 1: the answer is one token, and the token the model sees after the prompt.
            assert list(ids) == encode(tok, prompt)
            assert encode(tok, answer) == [answer_id]
            assert decode(tok, [answer_id]) == answer
            full = encode(tok, prompt + answer + rest)
            assert full[: len(ids)] == list(ids), (task.name, prompt + answer)
            assert full[len(ids)] == answer_id
            # Rule 4: the completed program parses.
            ast.parse(prompt + answer + rest)
        assert e.target_id != e.alt_id
        # Rule 2: both prompts end in the same token (and length, where the template says so).
        assert e.prompt_ids[-1] == e.alt_prompt_ids[-1]
        if task.params["same_length"]:
            assert len(e.prompt_ids) == len(e.alt_prompt_ids)
        assert len(e.prompt_ids) < 100 and len(e.alt_prompt_ids) < 100


def test_registry_has_the_twenty_tasks_of_tasks_md():
    assert list_tasks() == TASK_NAMES
    for name in TASK_NAMES:
        task = get_task(name)
        assert task.name == name and task.source == "builtin" and task.description
    with pytest.raises(InputError, match="no task named 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_rules_splits_and_determinism(stdlib_tokenizer, name):
    task = get_task(name)
    train = task.generate(stdlib_tokenizer, 200, seed=0, split="train")
    test = task.generate(stdlib_tokenizer, 200, seed=0, split="test")
    assert len(train) == len(test) == 200
    assert_rules(stdlib_tokenizer, task, train + test)
    keys_train = {(e.pair.prompt, e.pair.alt_prompt) for e in train}
    keys_test = {(e.pair.prompt, e.pair.alt_prompt) for e in test}
    assert len(keys_train) == len(keys_test) == 200  # distinct within a split
    assert not keys_train & keys_test  # splits are disjoint
    assert {pair_split(e.pair) for e in train} == {"train"}
    assert {pair_split(e.pair) for e in test} == {"test"}
    # Deterministic for a seed; another seed gives other pairs.
    assert task.generate(stdlib_tokenizer, 200, seed=0, split="train") == train
    other = task.generate(stdlib_tokenizer, 200, seed=1, split="train")
    assert len({(e.pair.prompt, e.pair.alt_prompt) for e in other} - keys_train) > 100


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_has_at_least_1000_distinct_pairs(stdlib_tokenizer, name):
    """Rule 3: count distinct raw pairs in 3000 draws (tokenizer checks run on the sample above)."""
    task = get_task(name)
    context = task.prepare(stdlib_tokenizer)
    rng = random.Random(0)
    distinct = {(p.prompt, p.alt_prompt) for p in (task.draw(rng, context) for _ in range(3000))}
    assert len(distinct) >= 1000


def test_rule1_failure_names_the_task_and_the_token(stdlib_tokenizer, fresh_registry):
    # Prompt ends in "(" but the completion starts with "self": "(self" is one pre-token.
    register_task(
        "test_merging_boundary",
        lambda rng: Pair("class A:\n    def run(", "self):\n", "def run(", "):\n"),
    )
    with pytest.raises(InputError, match=r"task test_merging_boundary.*last token '\('.*merges"):
        get_task("test_merging_boundary").generate(stdlib_tokenizer, 1, split="all")
    register_task("test_same_answer", lambda rng: Pair("x = [1", "]\n", "y = [1", "]\n"))
    with pytest.raises(InputError, match=r"task test_same_answer.*same token '\]'"):
        get_task("test_same_answer").generate(stdlib_tokenizer, 1, split="all")
    register_task("test_last_token", lambda rng: Pair("x = a", " +", "x = b", " -"))
    with pytest.raises(InputError, match="end in different tokens"):
        get_task("test_last_token").generate(stdlib_tokenizer, 1, split="all")


def test_user_generator_task(stdlib_tokenizer, fresh_registry):
    names = ["alpha", "beta", "gamma", "delta", "omega"]

    def gen(rng: random.Random) -> Pair:
        a, b = rng.sample(names, 2)
        n = rng.randint(0, 999)
        return Pair(f"{a} = {n}\n{b} = [{a}", "]\n", f"{a} = {n}\n{b} = ({a}", ")\n")

    task = register_task("test_user_brackets", gen, description="brackets", parse=True)
    assert task.source == "python" and "test_user_brackets" not in list_tasks()
    pairs = task.generate(stdlib_tokenizer, 30, seed=3, split="train")
    assert_rules(stdlib_tokenizer, task, pairs)
    with pytest.raises(InputError, match="already exists"):
        register_task("test_user_brackets", gen)

    def tiny(rng: random.Random) -> Pair:
        k = rng.randint(1, 3)
        return Pair(f"x = [{k}", "]\n", f"x = ({k}", ")\n")

    with pytest.raises(InputError, match="only 3 distinct"):
        register_task("test_tiny", tiny).generate(stdlib_tokenizer, 5, split="all")


def test_bad_arguments(stdlib_tokenizer):
    task = get_task("var_swap")
    with pytest.raises(InputError, match="split 'dev' is unknown"):
        task.generate(stdlib_tokenizer, 2, split="dev")
    with pytest.raises(InputError, match="positive integer"):
        task.generate(stdlib_tokenizer, 0)


def test_tokenizer_without_python_names_is_refused():
    from sparsecircuits.data.tokenizer import train_tokenizer

    tok = train_tokenizer(["x = 1\ny = 2\n"] * 20, vocab_size=300)
    with pytest.raises(InputError, match=r"task var_if: only \d+ of \d+ common identifiers"):
        get_task("var_if").generate(tok, 5)


def _double_bracket_tokenizer():
    """A 2048-token tokenizer from 150 stdlib files plus code full of nested lists, so that
    `]]` is one token (as under a tokenizer trained with the installed packages)."""
    from sparsecircuits.data.sources import iter_texts
    from sparsecircuits.data.tokenizer import train_tokenizer

    texts = list(iter_texts(["stdlib"], max_files=150))
    texts += ["grid = [[1, 2], [3, 4]]\nrows = [[a], [b, c]]\n" * 20] * 50
    return train_tokenizer(texts, vocab_size=2048)


@pytest.mark.parametrize("double", [False, True], ids=["stdlib", "double-bracket-token"])
def test_bracket_counting_follows_the_tokenizer(stdlib_tokenizer, double):
    """`]]` as one token makes the answer `]]` vs `]` (docs/tasks.md's form); as two tokens, `]`
    vs newline. Either way the pairs obey the rules (before, a `]]` token broke rule 1)."""
    tok = _double_bracket_tokenizer() if double else stdlib_tokenizer
    has_double = "]]" in tok.get_vocab()
    assert has_double == double
    task = get_task("bracket_counting")
    pairs = task.generate(tok, 100, seed=0, split="train")
    assert_rules(tok, task, pairs)
    answers = {(decode(tok, [e.target_id]), decode(tok, [e.alt_id])) for e in pairs}
    assert answers == ({("]]", "]")} if double else {("]", "\n")})


@pytest.mark.slow
def test_all_tasks_under_the_full_stdlib_tokenizer(tmp_path):
    """The default tokenizer: 2048 BPE tokens trained on the whole standard library."""
    from sparsecircuits.data.corpus import build_corpus
    from sparsecircuits.data.tokenizer import load_tokenizer

    build_corpus(["stdlib"], tmp_path / "corpus", vocab_size=2048, progress=False)
    tok = load_tokenizer(tmp_path / "corpus" / "tokenizer.json")
    for name in TASK_NAMES:
        task = get_task(name)
        train = task.generate(tok, 200, seed=0, split="train")
        test = task.generate(tok, 200, seed=0, split="test")
        assert_rules(tok, task, train + test)
        assert not {e.pair.prompt for e in train} & {e.pair.prompt for e in test}
