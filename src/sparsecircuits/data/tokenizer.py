"""Byte-level BPE tokenizer for Python code (Hugging Face `tokenizers`).

The pre-tokenizer keeps Python's structure visible to the model, as in the paper's
2048-token Python tokenizer: identifiers with at most one leading space or punctuation
character (`" return"`, `".add"`), digits in groups of up to three (the first may follow
one space), runs of punctuation (optionally after one space: `" =="`), runs of newlines,
and runs of horizontal whitespace (so indentation is a token of its own). Everything is byte-level, so any UTF-8 text
round-trips exactly. `<|endoftext|>` is a special token with the last id; document text is
always encoded as plain text, even when it contains the string `<|endoftext|>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.errors import InputError

EOT = "<|endoftext|>"

# Alternatives are tried left to right at each position (see the module docstring).
PRETOKENIZE_PATTERN = (
    r"(?: |[^\s\p{L}\p{N}_])?[\p{L}_][\p{L}\p{N}_]*"  # identifier, one leading space/punct
    r"| ?\p{N}{1,3}"  # digits, up to three at a time, the first group after one space
    r"| ?[^\s\p{L}\p{N}_]+"  # run of punctuation, optionally after one space
    r"|[\r\n]+"  # run of newlines
    r"|[^\S\r\n]+"  # run of spaces, tabs and other horizontal whitespace
)


def _empty_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE tokenizer with the Python-aware pre-tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _finish(tok: Tokenizer) -> Tokenizer:
    """Make document text encode `<|endoftext|>` as plain text (a runtime-only flag)."""
    tok.encode_special_tokens = True
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Tokenizer:
    """Train a byte-level BPE tokenizer on `texts`; `<|endoftext|>` gets the last id.

    The vocabulary is the 256 byte tokens plus merges plus EOT. A corpus too small to
    supply enough merges yields a smaller vocabulary; EOT is still the last id.
    Training is deterministic: the same texts give an identical tokenizer.json.
    """
    if vocab_size < 257 + 1:
        raise InputError(
            f"vocab_size {vocab_size} is too small: a byte-level tokenizer needs 256 byte "
            "tokens plus <|endoftext|>; use at least 258"
        )
    tok = _empty_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([EOT])
    return _finish(tok)


def eot_id(tok: Tokenizer) -> int:
    """The id of the `<|endoftext|>` separator token."""
    idx = tok.token_to_id(EOT)
    if idx is None:
        raise InputError(f"the tokenizer has no {EOT} token; train it with train_tokenizer")
    return idx


def vocab_size(tok: Tokenizer) -> int:
    """Number of token ids, special tokens included."""
    return tok.get_vocab_size(with_added_tokens=True)


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    """Write `tok` as tokenizer.json atomically (temp file in the same folder, then rename)."""
    atomic_write_text(path, tok.to_str(pretty=True))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer.json written by `save_tokenizer` (a folder holding one also works)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise InputError(f"tokenizer file {path} does not exist; give a path to a tokenizer.json")
    try:
        tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except Exception as exc:  # the Rust parser raises a bare Exception
        raise InputError(
            f"tokenizer file {path} is not a valid tokenizer.json ({exc}); "
            "rebuild it with `sparsecircuits corpus build`"
        ) from exc
    if tok.token_to_id(EOT) is None:
        raise InputError(f"tokenizer file {path} has no {EOT} token; rebuild it")
    return _finish(tok)


def encode(tok: Tokenizer, text: str, *, append_eot: bool = False) -> list[int]:
    """Token ids of document `text` (EOT-like substrings stay plain text); optionally + EOT."""
    tok.encode_special_tokens = True
    ids = tok.encode(text, add_special_tokens=False).ids
    if append_eot:
        ids.append(eot_id(tok))
    return ids


def encode_batch(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of many documents at once (multi-threaded in Rust), no separators."""
    tok.encode_special_tokens = True
    # encode_batch_fast (tokenizers >= 0.21) skips computing character offsets.
    batch = getattr(tok, "encode_batch_fast", tok.encode_batch)
    return [e.ids for e in batch(list(texts), add_special_tokens=False)]


def decode(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Text of `ids`; the EOT id decodes to `<|endoftext|>`. Exact inverse of `encode`."""
    return tok.decode(list(ids), skip_special_tokens=False)
