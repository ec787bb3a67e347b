"""`sparsecircuits corpus build` through the CLI entry point: success and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecircuits.cli import main
from sparsecircuits.data.shards import TokenShards


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    for i in range(8):
        (root / f"mod{i}.py").write_text(
            f"def f{i}(x):\n    return x + {i}\n\n\nVALUE_{i} = f{i}({i * 11})\n"
        )
    return root


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["corpus", "build", "--no-progress", "--vocab-size", "300", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_succeeds_and_prints_summary(code_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "corpus"
    code, stdout, _ = _run(
        capsys, "--source", str(code_dir), "--out", str(out), "--val-fraction", "0.25"
    )
    assert code == 0
    assert f"written to: {out}" in stdout
    assert "files:      8 (" in stdout and "tokens:" in stdout
    shards = TokenShards.open(out)
    assert len(shards.train) > 0 and len(shards.val) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hash"] in stdout and manifest["settings"]["val_fraction"] == 0.25


def _assert_clean_failure(code: int, err: str, needle: str, out: Path) -> None:
    assert code == 2
    assert needle in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_path(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = _run(capsys, "--source", f"dir:{tmp_path / 'no_such_dir'}", "--out", str(out))
    _assert_clean_failure(code, err, "no_such_dir", out)
    code, _, err = _run(capsys, "--source", str(tmp_path / "plain_missing"), "--out", str(out))
    _assert_clean_failure(code, err, "plain_missing", out)


def test_dir_without_python_files(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "docs_only"
    empty.mkdir()
    (empty / "README.md").write_text("# hi\n")
    out = tmp_path / "out"
    code, _, err = _run(capsys, "--source", str(empty), "--out", str(out))
    _assert_clean_failure(code, err, "docs_only", out)


def test_empty_jsonl_and_missing_field(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = _run(capsys, "--source", f"jsonl:{tmp_path / 'empty.jsonl'}", "--out", str(out))
    _assert_clean_failure(code, err, "empty.jsonl", out)
    (tmp_path / "rows.jsonl").write_text('{"code": "x = 1"}\n')
    code, _, err = _run(capsys, "--source", f"jsonl:{tmp_path / 'rows.jsonl'}", "--out", str(out))
    _assert_clean_failure(code, err, "rows.jsonl", out)
    assert "'text'" in err


def test_bad_options(code_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = _run(
        capsys, "--source", str(code_dir), "--out", str(out), "--val-fraction", "1.5"
    )
    _assert_clean_failure(code, err, "--val-fraction", out)
    code, _, err = _run(
        capsys,
        "--source",
        str(code_dir),
        "--out",
        str(out),
        "--tokenizer",
        str(tmp_path / "t.json"),
    )
    _assert_clean_failure(code, err, "t.json", out)
    out.mkdir()
    code, _, err = _run(capsys, "--source", str(code_dir), "--out", str(out))
    assert code == 2 and str(out) in err and list(out.iterdir()) == []
