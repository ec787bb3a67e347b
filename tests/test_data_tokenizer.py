"""The byte-level BPE tokenizer: exact round trips, EOT handling, determinism, errors."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from sparsecircuits.data.sources import iter_texts
from sparsecircuits.data.tokenizer import (
    EOT,
    BatchEncoder,
    decode,
    encode,
    encode_batch,
    eot_id,
    load_tokenizer,
    save_tokenizer,
    split_at_line_starts,
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


def test_encode_batch_in_pieces_matches_whole_documents(stdlib_tokenizer) -> None:
    rng = random.Random(0)
    alphabet = ["\n", "\r\n", "\r", "\n\n\n", " ", "    ", "\t", "x", " y", "1234", "==", "(", "é", "😀", EOT]
    docs = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400))) for _ in range(40)]
    docs += TRICKY
    expected = [encode(stdlib_tokenizer, d) for d in docs]
    for piece_chars in (1, 7, 64):
        assert encode_batch(stdlib_tokenizer, docs, piece_chars=piece_chars) == expected


def test_ascii_route_gives_the_same_ids(stdlib_tokenizer) -> None:
    rng = random.Random(1)
    alphabet = [chr(i) for i in range(128)] + ["    ", "\n", " x", "def ", "12345", "_a", " _"]
    docs = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300))) for _ in range(300)]
    encoder = BatchEncoder(stdlib_tokenizer)
    assert encoder.ascii_tok is not None
    assert encoder(docs) == [encode(stdlib_tokenizer, d) for d in docs]


def test_ascii_route_is_off_for_other_pre_tokenizers(stdlib_tokenizer) -> None:
    other = Tokenizer.from_str(stdlib_tokenizer.to_str())
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    encoder = BatchEncoder(other)
    assert encoder.ascii_tok is None
    docs = ["def f(x):\n    return x  # café\n", "a  b\tc"]
    assert encoder(docs) == [encode(other, d) for d in docs]
    assert encoder(docs) != encode_batch(stdlib_tokenizer, docs)


def test_documents_are_not_cut_for_other_pre_tokenizers() -> None:
    # GPT-2 style whitespace pre-tokens span newlines, and such a vocabulary merges "\n" with spaces
    texts = list(iter_texts(["stdlib"], max_files=40))
    gpt2 = Tokenizer(models.BPE())
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt2.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    doc = "def f():\n\n        return 1\n" * 20
    encoder = BatchEncoder(gpt2, piece_chars=8)
    assert encoder.piece_chars is None and encoder.ascii_tok is None
    assert encoder([doc]) == [encode(gpt2, doc)]


def test_split_at_line_starts_cuts_only_after_newline_runs() -> None:
    text = "a\nb\r\n\r\nccc\n\n\n" + "d" * 50 + "\ne"
    pieces = split_at_line_starts(text, 1)
    assert "".join(pieces) == text
    assert pieces == ["a\n", "b\r\n\r\n", "ccc\n\n\n", "d" * 50 + "\n", "e"]
    assert split_at_line_starts(text, len(text)) == [text]
    assert split_at_line_starts("no newline " * 10, 5) == ["no newline " * 10]


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
