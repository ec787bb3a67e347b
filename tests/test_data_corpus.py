"""Corpus sources and build_corpus on small corpora made in temp dirs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import sparsecircuits.data.corpus as corpus_mod
from sparsecircuits.data.corpus import build_corpus, read_manifest
from sparsecircuits.data.shards import TokenShards
from sparsecircuits.data.sources import (
    Source,
    content_hash,
    iter_documents,
    iter_texts,
    list_files,
    parse_source,
)
from sparsecircuits.data.tokenizer import EOT, decode, load_tokenizer
from sparsecircuits.errors import InputError

VOCAB = 320


def _module(i: int) -> str:
    return (
        f"def function_{i}(value, other=None):\n"
        f"    '''Return value scaled by {i}.'''\n"
        f"    if other is None:\n        other = {i * 7}\n"
        f"    return value * other + {i}\n\n\nclass Thing{i}:\n    pass\n"
    )


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """12 distinct modules, one duplicate, one Latin-1 file, one oversized file, ignored dirs."""
    root = tmp_path / "code"
    for i in range(12):
        sub = root / ("pkg" if i % 3 == 0 else "") / f"m{i:02d}.py"
        sub.parent.mkdir(parents=True, exist_ok=True)
        sub.write_text(_module(i), encoding="utf-8")
    (root / "zz_copy.py").write_text(_module(4), encoding="utf-8")
    (root / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (root / "big.py").write_text("x = 1\n" * 2000, encoding="utf-8")
    (root / "notes.txt").write_text("not python\n")
    for ignored in ("__pycache__", ".hidden"):
        (root / ignored).mkdir()
        (root / ignored / "skip.py").write_text("ignored = True\n")
    return root


def _build(code_dir: Path, out: Path, **kw):
    kw.setdefault("vocab_size", VOCAB)
    kw.setdefault("val_fraction", 0.3)
    kw.setdefault("max_file_bytes", 4000)
    return build_corpus([f"dir:{code_dir}"], out, progress=False, **kw)


def test_same_inputs_same_manifest_hash(code_dir: Path, tmp_path: Path) -> None:
    a = _build(code_dir, tmp_path / "a")
    b = _build(code_dir, tmp_path / "b")
    assert a.manifest_hash == b.manifest_hash
    for name in ("manifest.json", "tokenizer.json", "train.bin", "val.bin", "shards.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    (code_dir / "m00.py").write_text(_module(0) + "# changed\n")
    c = _build(code_dir, tmp_path / "c")
    assert c.manifest_hash != a.manifest_hash
    d = _build(code_dir, tmp_path / "d", seed=1)
    assert d.manifest_hash != c.manifest_hash


def test_counts_skips_duplicates_and_disjoint_splits(code_dir: Path, tmp_path: Path) -> None:
    summary = _build(code_dir, tmp_path / "out")
    manifest = read_manifest(tmp_path / "out")
    assert summary.files == 12 and summary.duplicates == 1
    assert summary.skipped == {"not_utf8": 1, "too_large": 1}
    assert manifest["counts"]["skipped"] == summary.skipped
    names = [f["name"] for f in manifest["files"]]
    assert names == sorted(names)  # deterministic order: sorted relative paths
    assert "zz_copy.py" not in names and "latin1.py" not in names and "big.py" not in names
    assert not any("skip.py" in n or n.endswith(".txt") for n in names)
    train = {f["sha256"] for f in manifest["files"] if f["split"] == "train"}
    val = {f["sha256"] for f in manifest["files"] if f["split"] == "val"}
    assert train and val and not train & val
    assert len(train) + len(val) == 12 == summary.train_files + summary.val_files


def test_shards_hold_documents_separated_by_eot(code_dir: Path, tmp_path: Path) -> None:
    summary = _build(code_dir, tmp_path / "out")
    out = tmp_path / "out"
    shards = json.loads((out / "shards.json").read_text())
    manifest = read_manifest(out)
    tok = load_tokenizer(out / "tokenizer.json")
    assert shards["dtype"] == "uint16" and shards["manifest_hash"] == manifest["hash"]
    assert shards["eot_id"] == VOCAB - 1 == shards["vocab_size"] - 1
    texts = {content_hash(t): t for t in iter_texts([f"dir:{code_dir}"], max_file_bytes=4000)}
    for split in ("train", "val"):
        ids = np.fromfile(out / f"{split}.bin", dtype=np.uint16)
        assert len(ids) == shards[split]["tokens"]
        expected = [texts[f["sha256"]] for f in manifest["files"] if f["split"] == split]
        assert decode(tok, ids.tolist()) == "".join(t + EOT for t in expected)
    assert summary.train_tokens + summary.val_tokens > 0


def test_reused_tokenizer_and_caps(code_dir: Path, tmp_path: Path) -> None:
    first = _build(code_dir, tmp_path / "a")
    again = _build(code_dir, tmp_path / "b", tokenizer=tmp_path / "a" / "tokenizer.json")
    assert not again.tokenizer_trained and again.train_tokens == first.train_tokens
    assert _build(code_dir, tmp_path / "c", max_files=5).files == 5
    capped = _build(code_dir, tmp_path / "d", max_mb=0.0005)
    assert 1 <= capped.files < 12 and capped.bytes <= 500


def test_failure_leaves_nothing(code_dir: Path, tmp_path: Path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(corpus_mod, "write_tokens", boom)
    out = tmp_path / "sub" / "out"
    with pytest.raises(RuntimeError):
        _build(code_dir, out)
    assert list(out.parent.iterdir()) == []


def test_existing_out_is_refused_then_replaced(code_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="already exists"):
        _build(code_dir, out)
    _build(code_dir, out, overwrite=True)
    assert (out / "shards.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code", "out"]


def test_stdlib_source_excludes_tests_and_site_packages() -> None:
    files = list_files(Source("stdlib"))
    assert len(files) > 300
    for path in files:
        assert not {"test", "tests", "idle_test", "site-packages"} & set(path.parts)
    assert any(p.name == "json" for f in files for p in [f.parent])


def test_parse_source_forms(code_dir: Path, tmp_path: Path) -> None:
    assert parse_source("stdlib") == Source("stdlib")
    assert parse_source(str(code_dir)) == Source("dir", str(code_dir))
    assert parse_source(f"dir:{code_dir}:*.txt,pkg/*.py").globs == ("*.txt", "pkg/*.py")
    src = parse_source(f"jsonl:{tmp_path}/d.jsonl:content")
    assert (src.kind, src.location, src.field) == ("jsonl", f"{tmp_path}/d.jsonl", "content")
    assert parse_source(src.spec) == src
    assert parse_source("hf:org/name").location == "org/name"
    with pytest.raises(InputError, match="nowhere"):
        parse_source("nowhere/at/all")
    with pytest.raises(InputError, match="notes.txt"):
        parse_source(str(code_dir / "notes.txt"))


def test_dir_globs_and_missing_or_empty_dir(code_dir: Path, tmp_path: Path) -> None:
    docs = list(iter_documents(f"dir:{code_dir}:*.txt"))
    assert [d.name for d in docs] == ["notes.txt"]
    with pytest.raises(InputError, match="missing_dir"):
        list(iter_documents(f"dir:{tmp_path / 'missing_dir'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        list(iter_documents(f"dir:{tmp_path / 'empty'}"))


def test_jsonl_source(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    rows = [{"content": "a = 1\n"}, {"content": "b = 2\n"}, {"content": "a = 1\n"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert list(iter_texts([f"jsonl:{path}:content"])) == ["a = 1\n", "b = 2\n"]
    with pytest.raises(InputError, match=r"docs\.jsonl.*'text'"):
        list(iter_documents(f"jsonl:{path}"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="empty.jsonl"):
        list(iter_documents(str(tmp_path / "empty.jsonl")))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(InputError, match="line 2"):
        list(iter_documents(f"jsonl:{tmp_path / 'bad.jsonl'}"))
    (tmp_path / "surrogate.jsonl").write_text('{"text": "\\ud800"}\n{"text": "fine"}\n')
    docs = list(iter_documents(f"jsonl:{tmp_path / 'surrogate.jsonl'}"))
    assert [d.skipped for d in docs] == ["not_utf8", None]


def test_hf_source_without_datasets_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(InputError, match=r"hf:org/name.*datasets"):
        list(iter_documents("hf:org/name"))


def test_several_sources_combine_in_order_and_dedupe_across(code_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.py").write_text(_module(3))  # same content as code_dir/m03.py
    (other / "b.py").write_text(_module(99))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": _module(100)}) + "\n")
    summary = build_corpus(
        [f"dir:{code_dir}", str(other), f"jsonl:{rows}"],
        tmp_path / "out",
        vocab_size=VOCAB,
        max_file_bytes=4000,
        progress=False,
    )
    manifest = read_manifest(tmp_path / "out")
    assert summary.files == 14 and summary.duplicates == 2
    assert [f["name"] for f in manifest["files"]][-2:] == ["b.py", "rows.jsonl:1"]
    assert [f["source"] for f in manifest["files"]][-2:] == [1, 2]
    assert [s["kind"] for s in manifest["sources"]] == ["dir", "dir", "jsonl"]


def test_val_split_never_empty_unless_fraction_zero(code_dir: Path, tmp_path: Path) -> None:
    assert _build(code_dir, tmp_path / "a", val_fraction=1e-6).val_files == 1
    none = _build(code_dir, tmp_path / "b", val_fraction=0.0)
    assert none.val_files == 0 and none.val_tokens == 0
    shards = TokenShards.open(tmp_path / "b")
    assert len(shards.val) == 0 and len(shards.train) == none.train_tokens
