"""Where corpus text comes from: the running interpreter's stdlib, site-packages, a
directory, a JSONL file, or (optional extra) a Hugging Face dataset.

Source specs (the strings `--source` accepts):
  `stdlib`                       the running interpreter's standard library, no tests
  `site-packages`                the interpreter's installed packages, no tests
  `dir:PATH[:GLOB,GLOB...]`      a directory, recursive, `*.py` unless globs are given
  `jsonl:PATH[:FIELD]`           a JSONL file, one document per line in FIELD (`text`)
  `hf:NAME[:FIELD]`              a Hugging Face dataset's train split (needs `datasets`)
  `PATH`                         an existing directory, or a `.jsonl` file
Every source yields documents in a deterministic order (files sorted by relative path).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sparsecircuits.errors import InputError

DEFAULT_MAX_FILE_BYTES = 512 * 1024
# Directory names never read from the stdlib or site-packages (tests, caches, installs).
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages"}
)
KINDS = ("stdlib", "site-packages", "dir", "jsonl", "hf")
SPEC_HELP = (
    "stdlib | site-packages | dir:PATH[:GLOB,...] | jsonl:PATH[:FIELD] | hf:NAME[:FIELD] | "
    "an existing directory or .jsonl file"
)


@dataclass(frozen=True)
class Source:
    """One corpus source: `kind` is one of KINDS; `location` a path or dataset name."""

    kind: str
    location: str = ""
    field: str = "text"
    globs: tuple[str, ...] = ("*.py",)

    @property
    def spec(self) -> str:
        """The source as a `--source` string (parses back to an equal Source)."""
        if self.kind in ("stdlib", "site-packages"):
            return self.kind
        if self.kind == "dir":
            globs = "" if self.globs == ("*.py",) else ":" + ",".join(self.globs)
            return f"dir:{self.location}{globs}"
        field = "" if self.field == "text" else f":{self.field}"
        return f"{self.kind}:{self.location}{field}"


@dataclass(frozen=True)
class Document:
    """One candidate document; `text` is None when it was skipped (`skipped` says why)."""

    source: str
    name: str
    text: str | None
    nbytes: int
    skipped: str | None = None


def content_hash(text: str) -> str:
    """sha256 hex digest of a document's UTF-8 bytes (identifies it for dedup and splits)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_source(spec: str | Source) -> Source:
    """Parse a `--source` string (see the module docstring); InputError on a bad one."""
    if isinstance(spec, Source):
        return spec
    spec = str(spec).strip()
    if spec in ("stdlib", "site-packages"):
        return Source(spec)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "dir" and rest:
        path, globs = rest, ("*.py",)
        head, _, tail = rest.rpartition(":")
        if head and any(c in tail for c in "*?[") and not Path(rest).exists():
            path, globs = head, tuple(g for g in tail.split(",") if g)
        return Source("dir", path, globs=globs)
    if sep and kind in ("jsonl", "hf") and rest:
        location, field = rest, "text"
        head, _, tail = rest.rpartition(":")
        if head and tail and not (kind == "jsonl" and Path(rest).exists()):
            location, field = head, tail
        return Source(kind, location, field=field)
    path = Path(spec)
    if path.is_dir():
        return Source("dir", spec)
    if path.is_file() and path.suffix == ".jsonl":
        return Source("jsonl", spec)
    if path.exists():
        raise InputError(
            f"source {spec!r} is a file that is not .jsonl; give a directory, "
            f"or use jsonl:PATH for a JSONL file ({SPEC_HELP})"
        )
    raise InputError(f"source {spec!r}: no such path and not a known source; use {SPEC_HELP}")


def source_root(source: Source) -> Path | None:
    """The folder a file-based source reads (None for JSONL and datasets)."""
    if source.kind == "stdlib":
        return Path(sysconfig.get_paths()["stdlib"])
    if source.kind == "site-packages":
        return Path(sysconfig.get_paths()["purelib"])
    if source.kind == "dir":
        return Path(source.location)
    return None


def _walk(root: Path, globs: Iterable[str], excluded: frozenset[str]) -> list[Path]:
    """Files under `root` matching any glob (by name or relative path), sorted by path."""
    globs = tuple(globs)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in excluded and not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(rel, g) for g in globs):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def list_files(source: Source) -> list[Path]:
    """The files a file-based source reads, in order; InputError when there are none."""
    root = source_root(source)
    if root is None:
        raise InputError(f"source {source.spec!r} is not a file-based source")
    if source.kind == "dir":
        if not root.exists():
            raise InputError(f"source {source.spec!r}: directory {root} does not exist")
        if not root.is_dir():
            raise InputError(f"source {source.spec!r}: {root} is not a directory")
        files = _walk(root, source.globs, frozenset({"__pycache__"}))
    else:
        files = _walk(root, ("*.py",), EXCLUDED_DIRS)
    if not files:
        raise InputError(
            f"source {source.spec!r}: {root} has no files matching "
            f"{', '.join(source.globs)}; point it at a folder of Python files"
        )
    return files


def _check_text(source: str, name: str, text: str, max_bytes: int) -> Document:
    """A Document for `text`, skipped when it is not encodable UTF-8 or too large."""
    try:
        nbytes = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return Document(source, name, None, len(text), "not_utf8")
    if nbytes > max_bytes:
        return Document(source, name, None, nbytes, "too_large")
    return Document(source, name, text, nbytes)


def _file_documents(source: Source, max_bytes: int) -> Iterator[Document]:
    root = source_root(source)
    for path in list_files(source):
        name = path.relative_to(root).as_posix()
        size = path.stat().st_size
        if size > max_bytes:
            yield Document(source.spec, name, None, size, "too_large")
            continue
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            yield Document(source.spec, name, None, len(data), "not_utf8")
            continue
        yield Document(source.spec, name, text, len(data))


def _jsonl_documents(source: Source, max_bytes: int) -> Iterator[Document]:
    path = Path(source.location)
    if not path.is_file():
        raise InputError(f"source {source.spec!r}: JSONL file {path} does not exist")
    seen = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            seen += 1
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(
                    f"source {source.spec!r}: line {lineno} of {path} is not valid JSON "
                    f"({exc}); write one JSON object per line"
                ) from exc
            if not isinstance(record, dict) or source.field not in record:
                raise InputError(
                    f"source {source.spec!r}: line {lineno} of {path} has no field "
                    f"{source.field!r}; name the text field as jsonl:PATH:FIELD"
                )
            text = record[source.field]
            if not isinstance(text, str):
                raise InputError(
                    f"source {source.spec!r}: field {source.field!r} on line {lineno} of "
                    f"{path} is {type(text).__name__}, not a string"
                )
            yield _check_text(source.spec, f"{path.name}:{lineno}", text, max_bytes)
    if seen == 0:
        raise InputError(f"source {source.spec!r}: JSONL file {path} is empty; add documents")


def _hf_documents(source: Source, max_bytes: int) -> Iterator[Document]:
    try:
        import datasets
    except ImportError as exc:
        raise InputError(
            f"source {source.spec!r} needs the optional `datasets` package: "
            "pip install 'sparsecircuits[datasets]'"
        ) from exc
    dataset = datasets.load_dataset(source.location, split="train")
    if source.field not in dataset.column_names:
        raise InputError(
            f"source {source.spec!r}: dataset has no column {source.field!r} "
            f"(columns: {', '.join(dataset.column_names)}); use hf:NAME:FIELD"
        )
    for i, text in enumerate(dataset[source.field]):
        if isinstance(text, str):
            yield _check_text(source.spec, f"{source.location}#{i}", text, max_bytes)


def iter_documents(
    source: Source | str, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> Iterator[Document]:
    """Every document of one source in deterministic order, skipped ones included."""
    source = parse_source(source)
    if source.kind in ("stdlib", "site-packages", "dir"):
        yield from _file_documents(source, max_file_bytes)
    elif source.kind == "jsonl":
        yield from _jsonl_documents(source, max_file_bytes)
    elif source.kind == "hf":
        yield from _hf_documents(source, max_file_bytes)
    else:
        raise InputError(f"unknown source kind {source.kind!r}; use {SPEC_HELP}")


def iter_texts(
    sources: Iterable[Source | str] = ("stdlib",),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_files: int | None = None,
) -> Iterator[str]:
    """Texts of the usable documents of `sources`, in order (skips and duplicates dropped)."""
    seen: set[str] = set()
    for spec in sources:
        for doc in iter_documents(spec, max_file_bytes):
            if doc.text is None or content_hash(doc.text) in seen:
                continue
            if max_files is not None and len(seen) >= max_files:
                return
            seen.add(content_hash(doc.text))
            yield doc.text
