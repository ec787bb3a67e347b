"""Token shards: flat uint16 (or uint32) memmaps of token ids, one per split, documents
separated by `<|endoftext|>`, described by shards.json; and seeded batch samplers.

Folder layout (written by `build_corpus`): train.bin, val.bin, shards.json, tokenizer.json,
manifest.json. shards.json holds dtype, token and document counts per split, vocab_size,
eot_id and the corpus manifest hash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import BatchEncoder, eot_id
from sparsecircuits.errors import InputError

SHARDS_FORMAT = "sparsecircuits.shards/1"
SPLITS = ("train", "val")
# Texts per encode_batch call are grouped up to this many characters (keeps memory bounded
# while giving the Rust thread pool enough documents to balance).
ENCODE_CHUNK_CHARS = 2_000_000


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
    """An opened shard folder: `.train` / `.val` are read-only 1-D token arrays."""

    path: Path
    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    eot_id: int
    manifest_hash: str
    tokenizer_path: Path
    info: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> TokenShards:
        """Open a corpus folder written by `build_corpus`; InputError if missing or invalid."""
        path = Path(path)
        meta_path = path / "shards.json"
        if not meta_path.is_file():
            raise InputError(
                f"token shards {path}: no shards.json there; build the corpus with "
                "`sparsecircuits corpus build --out DIR`"
            )
        try:
            info = json.loads(meta_path.read_text(encoding="utf-8"))
            dtype = np.dtype(info["dtype"])
            arrays = {s: _open_split(path, s, info[s], dtype) for s in SPLITS}
            shards = cls(
                path=path,
                train=arrays["train"],
                val=arrays["val"],
                vocab_size=int(info["vocab_size"]),
                eot_id=int(info["eot_id"]),
                manifest_hash=str(info["manifest_hash"]),
                tokenizer_path=path / info.get("tokenizer", "tokenizer.json"),
                info=info,
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"token shards {path}: shards.json is invalid ({exc!r}); rebuild the corpus"
            ) from exc
        if not shards.tokenizer_path.is_file():
            raise InputError(f"token shards {path}: {shards.tokenizer_path.name} is missing")
        return shards


def _open_split(folder: Path, split: str, meta: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    """Memory-map one split, checking the file size against the recorded token count."""
    file = folder / meta["file"]
    n = int(meta["tokens"])
    if not file.is_file():
        raise InputError(f"token shards {folder}: {file.name} is missing; rebuild the corpus")
    if file.stat().st_size != n * dtype.itemsize:
        raise InputError(
            f"token shards {folder}: {file.name} has {file.stat().st_size} bytes, expected "
            f"{n} {dtype.name} tokens; the file is truncated or stale, rebuild the corpus"
        )
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=(n,))


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
