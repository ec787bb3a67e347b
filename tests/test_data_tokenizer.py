"""The byte-level BPE tokenizer: exact round trips, EOT handling, determinism, errors."""

from __future__ import annotations

import pytest

from sparsecircuits.data.sources import iter_texts
from sparsecircuits.data.tokenizer import (
    EOT,
    decode,
    encode,
    encode_batch,
    eot_id,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from sparsecircuits.errors import InputError

TRICKY = [
    "",
    "\tdef f(x):\n\t\treturn x\t# tab\n",
    "line one\r\nline two\r\n\r\n",
    "lone \r carriage and \x0c form feed and \x00 nul",
    "naïve café — ünïcödé ☃ 日本語 😀🐍 \u200b zero-width",
    f"text with {EOT} inside, and {EOT}{EOT} twice",
    "<|endoftext",
    'x = [[1, 2], [3, 4]]\nmsg = f"value {name}"\ny = 1234567.89e-10\n',
    "    \n        \n" + " " * 37 + "deep",
    "\ufeffbom at start",
]


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_is_exact(stdlib_tokenizer, text: str) -> None:
    ids = encode(stdlib_tokenizer, text)
    assert decode(stdlib_tokenizer, ids) == text


def test_eot_inside_text_stays_plain_text(stdlib_tokenizer) -> None:
    eot = eot_id(stdlib_tokenizer)
    ids = encode(stdlib_tokenizer, f"a {EOT} b")
    assert eot not in ids
    assert len(ids) > 3  # spelled out with ordinary tokens


def test_eot_is_the_last_id_and_can_be_appended(stdlib_tokenizer) -> None:
    eot = eot_id(stdlib_tokenizer)
    assert eot == stdlib_tokenizer.get_vocab_size() - 1 == 2047
    ids = encode(stdlib_tokenizer, "x = 1\n", append_eot=True)
    assert ids[-1] == eot
    assert ids[:-1] == encode(stdlib_tokenizer, "x = 1\n")
    assert decode(stdlib_tokenizer, ids) == "x = 1\n" + EOT


def test_encode_batch_matches_encode(stdlib_tokenizer) -> None:
    assert encode_batch(stdlib_tokenizer, TRICKY) == [encode(stdlib_tokenizer, t) for t in TRICKY]


def test_pretokenizer_keeps_python_structure(stdlib_tokenizer) -> None:
    code = "class A:\n        if n == 12345:\n            s.add(x)\n"
    pieces = [p for p, _ in stdlib_tokenizer.pre_tokenizer.pre_tokenize_str(code)]
    space, newline = "\u0120", "\u010a"  # byte-level spellings of " " and "\n"
    assert pieces == [
        "class", f"{space}A", ":", newline,
        space * 8, "if", f"{space}n", f"{space}==", f"{space}123", "45", ":", newline,
        space * 12, "s", ".add", "(x", ")", newline,
    ]  # fmt: skip


def test_training_is_deterministic_and_saves_identically(tmp_path) -> None:
    texts = list(iter_texts(["stdlib"], max_files=25))
    a, b = train_tokenizer(texts, 400), train_tokenizer(texts, 400)
    save_tokenizer(a, tmp_path / "a.json")
    save_tokenizer(b, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a.get_vocab_size() == 400 and eot_id(a) == 399
    loaded = load_tokenizer(tmp_path / "a.json")
    assert loaded.to_str() == a.to_str()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp files
    assert encode(loaded, f"x{EOT}") == encode(a, f"x{EOT}")  # flag restored on load
    assert eot_id(loaded) not in encode(loaded, f"x{EOT}")


def test_tiny_corpus_gives_smaller_vocab_with_eot_last() -> None:
    tok = train_tokenizer(["ab ab ab"], 2048)
    assert eot_id(tok) == tok.get_vocab_size() - 1
    assert 257 <= tok.get_vocab_size() < 2048


def test_load_missing_or_corrupt_raises_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="nope.json"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_tokenizer(bad)


def test_too_small_vocab_is_rejected() -> None:
    with pytest.raises(InputError, match="vocab_size 100"):
        train_tokenizer(["x"], 100)
