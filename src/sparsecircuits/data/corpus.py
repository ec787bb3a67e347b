"""Build a corpus folder: gather documents, deduplicate, split, train the tokenizer,
encode token shards, and write a manifest whose hash identifies the corpus (its documents,
their splits, the tokenizer and the shards: `shards.corpus_identity`).

Output (written into a temp folder next to `out_dir`, renamed into place at the end, so a
failure leaves nothing): manifest.json, tokenizer.json, train.bin, val.bin, shards.json. A
build that is killed leaves its temp folder; the next build to the same `out_dir` removes it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tqdm.auto import tqdm

from sparsecircuits.atomic import atomic_dir, remove_orphans
from sparsecircuits.data.shards import (
    SHARDS_FORMAT,
    canonical_hash,
    corpus_identity,
    file_sha256,
    token_dtype,
    write_tokens,
)
from sparsecircuits.data.sources import (
    DEFAULT_MAX_FILE_BYTES,
    Document,
    Source,
    content_hash,
    iter_documents,
    list_files,
    parse_source,
    source_root,
)
from sparsecircuits.data.tokenizer import (
    eot_id,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from sparsecircuits.data.tokenizer import vocab_size as tokenizer_vocab_size
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json
from sparsecircuits.outputs import CORPUS, check_out

# The format of the sources identity (format, settings, sources, files), which the sources
# hash covers; unchanged since the corpus hash also covers the tokenizer and the shards.
MANIFEST_FORMAT = "sparsecircuits.corpus/1"
SKIP_REASONS = ("not_utf8", "too_large")


@dataclass
class CorpusSummary:
    """What `build_corpus` made: counts, sizes, timings and where the folder is."""

    out_dir: Path
    manifest_hash: str
    sources: list[str]
    files: int
    train_files: int
    val_files: int
    duplicates: int
    skipped: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    train_tokens: int = 0
    val_tokens: int = 0
    vocab_size: int = 0
    tokenizer_trained: bool = True
    tokenizer_seconds: float = 0.0
    encode_seconds: float = 0.0

    @property
    def mb(self) -> float:
        """Corpus size in MB (10^6 bytes) of UTF-8 text after dedup."""
        return self.bytes / 1e6

    @property
    def tokens_per_second(self) -> float:
        """Encoding throughput over both splits."""
        return (self.train_tokens + self.val_tokens) / max(self.encode_seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["mb"] = round(self.mb, 3)
        out["tokens_per_second"] = round(self.tokens_per_second)
        return out

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items())
        tok = f"trained in {self.tokenizer_seconds:.1f} s" if self.tokenizer_trained else "reused"
        return [
            f"sources:    {', '.join(self.sources)}",
            f"files:      {self.files} ({self.train_files} train, {self.val_files} val), "
            f"{self.mb:.2f} MB; skipped {sum(self.skipped.values())} ({skipped}); "
            f"duplicates {self.duplicates}",
            f"tokenizer:  {self.vocab_size} tokens, {tok}",
            f"tokens:     train {self.train_tokens:,}, val {self.val_tokens:,} "
            f"(encoded in {self.encode_seconds:.1f} s, {self.tokens_per_second:,.0f} tokens/s)",
            f"manifest:   {self.manifest_hash}",
            f"written to: {self.out_dir}",
        ]


def split_score(content_sha: str, seed: int) -> float:
    """A document's position in [0, 1) for the split, from its content hash and the seed."""
    digest = hashlib.sha256(f"{seed}:{content_sha}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _validate_args(
    vocab: int,
    val_fraction: float,
    max_files: int | None,
    max_mb: float | None,
    max_file_bytes: int,
) -> None:
    if not 258 <= vocab <= 2**32:
        raise InputError(f"--vocab-size {vocab} must be between 258 and 2**32")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"--val-fraction {val_fraction} must be in [0, 1), e.g. 0.02")
    if max_files is not None and max_files < 1:
        raise InputError(f"--max-files {max_files} must be at least 1")
    if max_mb is not None and max_mb <= 0:
        raise InputError(f"--max-mb {max_mb} must be positive")
    if max_file_bytes < 1:
        raise InputError(f"max_file_bytes (--max-file-kb) {max_file_bytes} must be positive")


def _gather(
    sources: Sequence[Source],
    max_file_bytes: int,
    max_files: int | None,
    max_mb: float | None,
    progress: bool,
) -> tuple[list[tuple[int, Document, str]], dict[str, int], int]:
    """Accepted (source index, document, sha256) in order, skip counts, duplicate count."""
    kept: list[tuple[int, Document, str]] = []
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    seen: set[str] = set()
    duplicates, total_bytes = 0, 0
    max_bytes = None if max_mb is None else max_mb * 1e6
    for index, source in enumerate(sources):
        total = len(list_files(source)) if source_root(source) is not None else None
        with tqdm(
            total=total,
            desc=f"reading {source.spec}",
            unit="file",
            disable=not progress,
            leave=False,
            file=sys.stderr,
        ) as bar:
            for doc in iter_documents(source, max_file_bytes):
                bar.update(1)
                if doc.text is None:
                    skipped[doc.skipped] = skipped.get(doc.skipped, 0) + 1
                    continue
                sha = content_hash(doc.text)
                if sha in seen:
                    duplicates += 1
                    continue
                if (max_files is not None and len(kept) >= max_files) or (
                    max_bytes is not None and total_bytes + doc.nbytes > max_bytes and kept
                ):
                    return kept, skipped, duplicates
                seen.add(sha)
                kept.append((index, doc, sha))
                total_bytes += doc.nbytes
    return kept, skipped, duplicates


def _assign_splits(shas: Sequence[str], seed: int, val_fraction: float) -> list[str]:
    """Split by content hash; with val_fraction > 0 and ≥ 2 documents neither split is empty."""
    scores = [split_score(sha, seed) for sha in shas]
    splits = ["val" if score < val_fraction else "train" for score in scores]
    if val_fraction > 0 and len(splits) >= 2:
        order = sorted(range(len(shas)), key=lambda i: scores[i])
        if "val" not in splits:
            splits[order[0]] = "val"
        if "train" not in splits:
            splits[order[-1]] = "train"
    return splits


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _reused_tokenizer(tokenizer: str | Path | Tokenizer | None) -> Tokenizer | None:
    """The tokenizer to reuse (an object as is, a path loaded), or None to train one.

    Loaded before reading any source, so a bad tokenizer path fails fast.
    """
    if tokenizer is None or isinstance(tokenizer, Tokenizer):
        return tokenizer
    return load_tokenizer(tokenizer)


def _manifest(
    parsed: Sequence[Source],
    kept: Sequence[tuple[int, Document, str]],
    splits: Sequence[str],
    settings: dict[str, Any],
    skipped: dict[str, int],
    duplicates: int,
) -> dict[str, Any]:
    """manifest.json, but for the corpus hash (`hash`, added once the shards are written):
    the sources identity (format, settings, sources, files) and its hash, plus counts and
    source details, which describe the build but do not enter any hash."""
    files = [
        {"source": i, "name": doc.name, "sha256": sha, "bytes": doc.nbytes, "split": split}
        for (i, doc, sha), split in zip(kept, splits, strict=True)
    ]
    identity = {
        "format": MANIFEST_FORMAT,
        "settings": settings,
        "sources": [{"kind": s.kind, "field": s.field, "globs": list(s.globs)} for s in parsed],
        "files": files,
    }
    counts = {
        "files": len(files),
        "train_files": splits.count("train"),
        "val_files": splits.count("val"),
        "duplicates": duplicates,
        "skipped": skipped,
        "bytes": sum(f["bytes"] for f in files),
    }
    return {
        **identity,
        "sources_hash": canonical_hash(identity),
        "counts": counts,
        "source_details": [
            {
                "spec": s.spec,
                "root": str(source_root(s) or s.location),
                "python": sys.version.split()[0],
            }
            for s in parsed
        ],
    }


def _split_texts(
    kept: Sequence[tuple[int, Document, str]], splits: Sequence[str]
) -> dict[str, list[str]]:
    """The documents' texts by split ("train", "val"), in corpus order."""
    return {
        name: [doc.text for (_, doc, _), split in zip(kept, splits, strict=True) if split == name]
        for name in ("train", "val")
    }


def _tokenizer_for(
    train_texts: Sequence[str], reused: Tokenizer | None, vocab_size: int, progress: bool
) -> tuple[Tokenizer, float]:
    """The reused tokenizer, or one trained on the train split; and the seconds it took."""
    t0 = time.perf_counter()
    if reused is None:
        if progress:
            print(f"training a {vocab_size}-token tokenizer ...", file=sys.stderr)
        tok = train_tokenizer(train_texts, vocab_size, progress=progress)
    else:
        tok = reused
    return tok, time.perf_counter() - t0


def _write_shards(
    tmp: Path,
    tok: Tokenizer,
    texts: Mapping[str, Sequence[str]],
    sources_hash: str,
    progress: bool,
) -> tuple[dict[str, Any], float]:
    """Write tokenizer.json and the train/val token shards into `tmp`; return the
    shards.json content (which pins the tokenizer by sha256 and records the corpus hash)
    and the encoding seconds."""
    save_tokenizer(tok, tmp / "tokenizer.json")
    dtype = token_dtype(tokenizer_vocab_size(tok))
    shard_meta: dict[str, Any] = {
        "format": SHARDS_FORMAT,
        "dtype": dtype.name,
        "vocab_size": tokenizer_vocab_size(tok),
        "eot_id": eot_id(tok),
        "separator": "<|endoftext|> after every document",
        "sources_hash": sources_hash,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": file_sha256(tmp / "tokenizer.json"),
    }
    encode_seconds = 0.0
    with tqdm(
        total=sum(len(t) for t in texts.values()),
        desc="encoding",
        unit="file",
        disable=not progress,
        leave=False,
        file=sys.stderr,
    ) as bar:
        for name in ("train", "val"):
            n, secs = write_tokens(tok, texts[name], tmp / f"{name}.bin", dtype, bar.update)
            encode_seconds += secs
            shard_meta[name] = {
                "file": f"{name}.bin",
                "tokens": n,
                "documents": len(texts[name]),
            }
    shard_meta["manifest_hash"] = corpus_identity(sources_hash, shard_meta["tokenizer_sha256"], shard_meta)
    return shard_meta, encode_seconds


def build_corpus(
    sources: Iterable[Source | str] = ("stdlib",),
    out_dir: str | Path = "corpus",
    vocab_size: int = 2048,
    val_fraction: float = 0.02,
    seed: int = 0,
    tokenizer: str | Path | Tokenizer | None = None,
    max_files: int | None = None,
    max_mb: float | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    overwrite: bool = False,
    progress: bool = True,
) -> CorpusSummary:
    """Build a corpus folder at `out_dir` from `sources` (see sources.py for the specs).

    `tokenizer` reuses an existing tokenizer (a path or object) instead of training one on
    the train split. `max_files` / `max_mb` cap the corpus (in source order). The same
    inputs, settings and tokenizer give the same corpus hash. Nothing is left at `out_dir`
    on error; an existing `out_dir` is replaced only with `overwrite` and only when it is a
    corpus folder (or empty)."""
    _validate_args(vocab_size, val_fraction, max_files, max_mb, max_file_bytes)
    out_dir = Path(out_dir)
    check_out(out_dir, CORPUS, overwrite)
    for stale in remove_orphans(out_dir.parent):
        if progress:
            print(f"removed {stale}, the temp folder of a build that was killed", file=sys.stderr)
    parsed = [parse_source(s) for s in sources]
    if not parsed:
        raise InputError("no --source given; use e.g. --source stdlib")
    reused = _reused_tokenizer(tokenizer)

    kept, skipped, duplicates = _gather(parsed, max_file_bytes, max_files, max_mb, progress)
    if not kept:
        raise InputError(
            f"sources {', '.join(s.spec for s in parsed)} gave no usable documents "
            f"(skipped: {skipped}); check the paths and the size limit"
        )
    splits = _assign_splits([sha for _, _, sha in kept], seed, val_fraction)
    settings = {
        "val_fraction": val_fraction,
        "seed": seed,
        "max_file_bytes": max_file_bytes,
        "max_files": max_files,
        "max_mb": max_mb,
    }
    manifest = _manifest(parsed, kept, splits, settings, skipped, duplicates)
    texts = _split_texts(kept, splits)

    with atomic_dir(out_dir) as tmp:
        tok, tokenizer_seconds = _tokenizer_for(texts["train"], reused, vocab_size, progress)
        shard_meta, encode_seconds = _write_shards(tmp, tok, texts, manifest["sources_hash"], progress)
        manifest["hash"] = shard_meta["manifest_hash"]
        manifest["tokenizer_sha256"] = shard_meta["tokenizer_sha256"]
        _write_json(tmp / "manifest.json", manifest)
        _write_json(tmp / "shards.json", shard_meta)
    counts = manifest["counts"]
    return CorpusSummary(
        out_dir=out_dir,
        manifest_hash=manifest["hash"],
        sources=[s.spec for s in parsed],
        files=counts["files"],
        train_files=counts["train_files"],
        val_files=counts["val_files"],
        duplicates=duplicates,
        skipped=skipped,
        bytes=counts["bytes"],
        train_tokens=shard_meta["train"]["tokens"],
        val_tokens=shard_meta["val"]["tokens"],
        vocab_size=shard_meta["vocab_size"],
        tokenizer_trained=reused is None,
        tokenizer_seconds=tokenizer_seconds,
        encode_seconds=encode_seconds,
    )


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest.json of a corpus folder; InputError if missing or invalid.

    In a corpus built before the corpus hash covered the tokenizer, `hash` is the sources
    hash; `TokenShards.open` computes such a corpus's hash.
    """
    file = Path(path) / "manifest.json"
    manifest = read_json(file, "rebuild the corpus with `sparsecircuits corpus build`")
    if not isinstance(manifest, dict) or "hash" not in manifest:
        raise InputError(f"corpus manifest {file} has no hash; rebuild the corpus")
    return manifest

