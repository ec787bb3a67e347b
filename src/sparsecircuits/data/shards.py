"""Token shards: flat uint16 (or uint32) memmaps of token ids, one per split, documents
separated by `<|endoftext|>`, described by shards.json; and seeded batch samplers.

Folder layout (written by `build_corpus`): train.bin, val.bin, shards.json, tokenizer.json,
manifest.json. shards.json holds dtype, token and document counts per split, vocab_size,
eot_id, the tokenizer's sha256, the sources hash (the documents, their splits and the build
settings) and the corpus hash (`manifest_hash`, see `corpus_identity`), which identifies the
token content: the same documents tokenized with another tokenizer have another hash.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import BatchEncoder, eot_id
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json

SHARDS_FORMAT = "sparsecircuits.shards/2"
# Before the corpus hash covered the tokenizer, `manifest_hash` was the sources hash; such a
# folder gets its corpus hash computed on open (`TokenShards.open`).
LEGACY_SHARDS_FORMAT = "sparsecircuits.shards/1"
SPLITS = ("train", "val")
# Texts per encode_batch call are grouped up to this many characters (keeps memory bounded
# while giving the Rust thread pool enough documents to balance).
ENCODE_CHUNK_CHARS = 2_000_000
REBUILD = "rebuild the corpus with `sparsecircuits corpus build`"


def canonical_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes (for small files: the tokenizer, not the shards)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def corpus_identity(sources_hash: str, tokenizer_sha256: str, info: Mapping[str, Any]) -> str:
    """The corpus hash: the sources hash, the tokenizer file's sha256 and the shards index
    (dtype, vocabulary, EOT id, tokens and documents per split, hence every file's size).

    Cheap on purpose: the token files enter through their recorded sizes (which `open`
    checks against the files), not their bytes, since they follow from the documents and
    the tokenizer. A corpus built before this hash existed gets the same value on open as a
    rebuild of it records.
    """
    index = {key: info[key] for key in ("dtype", "vocab_size", "eot_id")}
    for split in SPLITS:
        index[split] = {key: info[split][key] for key in ("tokens", "documents")}
    return canonical_hash({"sources": sources_hash, "tokenizer_sha256": tokenizer_sha256, "shards": index})


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_tokens(
    tok: Tokenizer,
    texts: Sequence[str],
    path: Path,
    dtype: np.dtype,
    progress: Callable[[int], Any] | None = None,
) -> tuple[int, float]:
    """Encode `texts` to `path` as one flat array, each document followed by EOT.

    Returns (token count, seconds spent encoding). `progress(n)` is called after each
    chunk of n documents.
    """
    eot = np.array([eot_id(tok)], dtype=dtype)
    encode = BatchEncoder(tok)
    total, seconds = 0, 0.0
    with open(path, "wb") as fh:
        start = 0
        while start < len(texts):
            stop, chars = start, 0
            while stop < len(texts) and (stop == start or chars < ENCODE_CHUNK_CHARS):
                chars += len(texts[stop])
                stop += 1
            t0 = time.perf_counter()
            encoded = encode(texts[start:stop])
            parts = []
            for ids in encoded:
                parts.append(np.array(ids, dtype=dtype))
                parts.append(eot)
            block = np.concatenate(parts)
            seconds += time.perf_counter() - t0
            fh.write(block.tobytes())
            total += len(block)
            if progress is not None:
                progress(stop - start)
            start = stop
    return total, seconds


@dataclass
class TokenShards:
    """An opened shard folder: `.train` / `.val` are read-only 1-D token arrays.

    `manifest_hash` is the corpus hash (`corpus_identity`: documents, tokenizer, shards);
    `sources_hash` identifies the documents and their splits alone.
    """

    path: Path
    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    eot_id: int
    manifest_hash: str
    tokenizer_path: Path
    info: dict[str, Any]
    sources_hash: str = ""
    tokenizer_sha256: str = ""

    @classmethod
    def open(cls, path: str | Path) -> TokenShards:
        """Open a corpus folder written by `build_corpus`; InputError if missing or invalid.

        Checks each token file's size against shards.json and the tokenizer file against
        the sha256 the shards were encoded with (cheap: no token file is read)."""
        path = Path(path)
        _check_folder(path)
        info = read_json(path / "shards.json", REBUILD)
        try:
            if not isinstance(info, dict):
                raise TypeError(f"a JSON {type(info).__name__}, not an object")
            legacy = _is_legacy(path, info)
            dtype = np.dtype(info["dtype"])
            arrays = {s: _open_split(path, info[s], dtype) for s in SPLITS}
            tokenizer_path = path / info.get("tokenizer", "tokenizer.json")
            tokenizer_sha = _tokenizer_sha256(path, tokenizer_path, info.get("tokenizer_sha256"))
            sources = str(info["manifest_hash"] if legacy else info["sources_hash"])
            corpus_hash = corpus_identity(sources, tokenizer_sha, info) if legacy else str(info["manifest_hash"])
            return cls(
                path=path,
                train=arrays["train"],
                val=arrays["val"],
                vocab_size=int(info["vocab_size"]),
                eot_id=int(info["eot_id"]),
                manifest_hash=corpus_hash,
                tokenizer_path=tokenizer_path,
                info=info,
                sources_hash=sources,
                tokenizer_sha256=tokenizer_sha,
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"token shards {path}: shards.json is invalid ({exc!r}); rebuild the corpus"
            ) from exc


def _check_folder(path: Path) -> None:
    """InputError unless `path` is a folder with a shards.json (saying which it is not)."""
    if not path.exists():
        raise InputError(
            f"corpus folder {path} does not exist; give a folder written by "
            "`sparsecircuits corpus build --out DIR`"
        )
    if not path.is_dir():
        raise InputError(
            f"{path} is a file, not a corpus folder; give the folder `sparsecircuits corpus build` wrote"
        )
    if not (path / "shards.json").exists():
        raise InputError(
            f"token shards {path}: no shards.json there; build the corpus with "
            "`sparsecircuits corpus build --out DIR`"
        )


def _is_legacy(folder: Path, info: dict[str, Any]) -> bool:
    """Whether shards.json predates the corpus hash (format /1); InputError for a newer format."""
    fmt = info.get("format", LEGACY_SHARDS_FORMAT)
    if fmt not in (LEGACY_SHARDS_FORMAT, SHARDS_FORMAT):
        raise InputError(
            f"token shards {folder}: shards.json has format {fmt!r}, which this version cannot "
            f"read (it reads {LEGACY_SHARDS_FORMAT} and {SHARDS_FORMAT}); upgrade sparsecircuits"
        )
    return fmt == LEGACY_SHARDS_FORMAT


def _tokenizer_sha256(folder: Path, file: Path, recorded: str | None) -> str:
    """The sha256 of the corpus's tokenizer file, which must be the one the shards were
    encoded with (`recorded`, when shards.json records it)."""
    _check_file(folder, file)
    sha = file_sha256(file)
    if recorded is not None and sha != recorded:
        raise InputError(
            f"token shards {folder}: {file} is not the tokenizer the shards were encoded with "
            f"(its sha256 is {sha[:12]}..., shards.json records {recorded[:12]}...); "
            f"put the corpus's own tokenizer back, or {REBUILD}"
        )
    return sha


def _check_file(folder: Path, file: Path) -> None:
    """InputError unless `file`, one of the corpus's files, is there and is a file."""
    if not file.exists():
        raise InputError(f"token shards {folder}: {file.name} is missing; {REBUILD}")
    if not file.is_file():
        raise InputError(f"token shards {folder}: {file} is not a file; {REBUILD}")


def _open_split(folder: Path, meta: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    """Memory-map one split, checking the file's size in bytes against the recorded token
    count times the token size."""
    file = folder / meta["file"]
    n = int(meta["tokens"])
    _check_file(folder, file)
    size, expected = file.stat().st_size, n * dtype.itemsize
    if size != expected:
        whole = "" if size % dtype.itemsize == 0 else f", not a whole number of {dtype.name} tokens"
        raise InputError(
            f"token shards {folder}: {file} has {size:,} bytes{whole}; shards.json records "
            f"{n:,} {dtype.name} tokens of {dtype.itemsize} bytes = {expected:,} bytes. The file "
            f"is truncated or stale: {REBUILD}"
        )
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=(n,))


def open_for_model(data: str | Path | TokenShards, vocab_size: int) -> TokenShards:
    """A corpus (a folder, or shards already open) for a model with `vocab_size` token ids:
    the one check, made before anything runs, that the corpus's ids fit the model."""
    shards = data if isinstance(data, TokenShards) else TokenShards.open(data)
    if shards.vocab_size > vocab_size:
        raise InputError(
            f"corpus {shards.path} has a {shards.vocab_size}-token vocabulary but the model has "
            f"vocab_size={vocab_size}, so its token ids do not fit the model; pass --data the "
            "corpus the model was trained on (or one built with the model's tokenizer: "
            "`sparsecircuits corpus build --tokenizer RUN/tokenizer.json`)"
        )
    return shards


def _check_window(tokens: np.ndarray, batch_size: int, n_ctx: int) -> None:
    if batch_size < 1 or n_ctx < 1:
        raise InputError(f"batch_size {batch_size} and n_ctx {n_ctx} must both be at least 1")
    if len(tokens) < n_ctx + 2:
        raise InputError(
            f"token array has {len(tokens)} tokens, too few for windows of n_ctx={n_ctx}; "
            "use a smaller n_ctx or a larger corpus"
        )


def _windows(
    tokens: np.ndarray, starts: np.ndarray, n_ctx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) LongTensors of shape (len(starts), n_ctx); y is x shifted one token ahead."""
    index = starts[:, None] + np.arange(n_ctx + 1)[None, :]
    window = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))
    return window[:, :-1].contiguous(), window[:, 1:].contiguous()


def sample_batch(
    tokens: np.ndarray, batch_size: int, n_ctx: int, generator: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of n_ctx tokens (uniform start positions) and their next tokens."""
    _check_window(tokens, batch_size, n_ctx)
    starts = generator.integers(0, len(tokens) - n_ctx, size=batch_size)
    return _windows(tokens, starts, n_ctx)


class BatchSampler:
    """A seeded, resumable stream of random-window batches, split across ranks.

    Every rank draws the same global batch of batch_size × world_size start positions
    from one RNG and keeps its own slice, so one process with batch B×N sees exactly the
    batches that N processes with batch B see together. `state_dict()` / `load_state_dict()`
    save and restore the step count and the RNG state.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        n_ctx: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_window(tokens, batch_size, n_ctx)
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"rank {rank} must be in [0, world_size={world_size})")
        self.tokens = tokens
        self.batch_size = batch_size
        self.n_ctx = n_ctx
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.step = 0
        self.rng = np.random.default_rng(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (x, y) of the next global batch."""
        starts = self.rng.integers(
            0, len(self.tokens) - self.n_ctx, size=self.batch_size * self.world_size
        )
        self.step += 1
        lo = self.rank * self.batch_size
        return _windows(self.tokens, starts[lo : lo + self.batch_size], self.n_ctx)

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable position in the stream: step count, seed and RNG state."""
        return {"step": self.step, "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict()`; the following batches repeat the original run's."""
        try:
            self.rng.bit_generator.state = state["rng"]
            self.step = int(state["step"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"batch sampler state is invalid ({exc!r}); give a state_dict()"
            ) from exc
