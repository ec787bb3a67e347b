"""Data integrity: the corpus hash covers the tokenizer, a corpus must fit the model, shard
sizes, damaged JSON artifacts, stored corpus paths, `--force` onto a file, and the temp
folders of killed builds. Tiny corpora of a few stdlib modules, built once per module."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

import sparsecircuits
from sparsecircuits.checkpoint import load_checkpoint, save_checkpoint, stage_inputs
from sparsecircuits.circuits import Circuit
from sparsecircuits.cli import main
from sparsecircuits.data.corpus import build_corpus, read_manifest
from sparsecircuits.data.shards import LEGACY_SHARDS_FORMAT, TokenShards, open_for_model
from sparsecircuits.data.tokenizer import load_tokenizer, train_tokenizer
from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.prune import ablation as ablation_mod
from sparsecircuits.prune import ablation_values
from sparsecircuits.runlock import host_tag
from sparsecircuits.train import train

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CODE = ("json/decoder.py", "json/encoder.py", "textwrap.py", "string.py", "bisect.py", "heapq.py")
OTHER = ("shlex.py", "fnmatch.py", "glob.py", "colorsys.py")  # texts of a second tokenizer
TRAIN = ["model.vocab_size=300", "train.steps=2", "train.log_every=1", "train.eval_every=0"]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"  # a file of another kind: not UTF-8


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """code/ (six stdlib modules) and three corpora of it: c300 and c300b (300-token
    tokenizers trained on different texts) and c600 (a 600-token tokenizer)."""
    root = tmp_path_factory.mktemp("integrity")
    code = root / "code"
    code.mkdir()
    for name in CODE:
        shutil.copy(STDLIB / name, code / name.replace("/", "_"))
    kw = dict(val_fraction=0.3, progress=False)
    build_corpus([f"dir:{code}"], root / "c300", vocab_size=300, **kw)
    other = train_tokenizer([(STDLIB / n).read_text(encoding="utf-8") for n in OTHER], 300)
    build_corpus([f"dir:{code}"], root / "c300b", tokenizer=other, **kw)
    build_corpus([f"dir:{code}"], root / "c600", vocab_size=600, **kw)
    return root


@pytest.fixture(scope="module")
def run(root: Path) -> Path:
    """A 2-step run on c300, trained from `root` with the relative path `--data c300`, and
    a circuit of it in root/circ (mean ablation, so the means of c300 are cached)."""
    task = root / "task.jsonl"
    with task.open("w") as fh:
        for i in range(40):
            a, b = f"v{i}", f"v{(7 * i + 3) % 40}"
            pair = {"prompt": f"x = [{a}, {b}", "target": "]", "alt_prompt": f"x = ({a}, {b}", "alt": ")"}
            fh.write(json.dumps(pair) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        train("tiny-sparse", "c300", "run", overrides=TRAIN, progress=False)
    argv = ["prune", "--model", str(root / "run"), "--task", str(task), "--out", str(root / "circ"),
            "--steps", "2", "--train-pairs", "8", "--pairs", "8", "--no-progress"]
    assert main(argv) == 0
    return root / "run"


def tiny(vocab: int = 300) -> SparseTransformer:
    cfg = ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=16, vocab_size=vocab, n_ctx=16)
    return SparseTransformer(cfg).eval()


def _legacy(corpus: Path, dest: Path) -> Path:
    """A copy of `corpus` as a build before the corpus hash covered the tokenizer wrote it."""
    shutil.copytree(corpus, dest)
    info = json.loads((dest / "shards.json").read_text())
    info["format"], info["manifest_hash"] = LEGACY_SHARDS_FORMAT, info.pop("sources_hash")
    (dest / "shards.json").write_text(json.dumps(info))
    return dest


# 1. the corpus hash covers the tokenizer


def test_the_corpus_hash_covers_the_tokenizer(root: Path) -> None:
    a, b, c = (TokenShards.open(root / name) for name in ("c300", "c300b", "c600"))
    assert a.sources_hash == b.sources_hash == c.sources_hash  # the same files and splits
    assert len({a.manifest_hash, b.manifest_hash, c.manifest_hash}) == 3
    assert a.vocab_size == b.vocab_size == 300 and a.tokenizer_sha256 != b.tokenizer_sha256
    manifest = read_manifest(root / "c300")
    assert manifest["hash"] == a.manifest_hash and manifest["sources_hash"] == a.sources_hash
    assert manifest["tokenizer_sha256"] == a.tokenizer_sha256


def test_an_old_corpus_gets_the_hash_a_rebuild_records(root: Path, tmp_path: Path) -> None:
    old_a, old_b = _legacy(root / "c300", tmp_path / "a"), _legacy(root / "c300b", tmp_path / "b")
    assert TokenShards.open(old_a).manifest_hash == TokenShards.open(root / "c300").manifest_hash
    assert TokenShards.open(old_b).manifest_hash == TokenShards.open(root / "c300b").manifest_hash
    bundled = Path(sparsecircuits.__file__).parent / "bundled" / "small-sparse" / "corpus-val"
    info = json.loads((bundled / "shards.json").read_text())
    shards = TokenShards.open(bundled)  # a folder written before the change
    assert info["format"] == LEGACY_SHARDS_FORMAT and shards.sources_hash == info["manifest_hash"]
    assert shards.manifest_hash != info["manifest_hash"]


def test_a_replaced_tokenizer_is_refused(root: Path, tmp_path: Path) -> None:
    corpus = shutil.copytree(root / "c300", tmp_path / "c")
    shutil.copy(root / "c300b" / "tokenizer.json", corpus / "tokenizer.json")
    with pytest.raises(InputError, match=r"tokenizer\.json is not the tokenizer the shards were encoded"):
        TokenShards.open(corpus)


def test_the_ablation_cache_does_not_serve_one_tokenizers_means_for_another(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    computed = []
    real = ablation_mod._mean_activations
    monkeypatch.setattr(ablation_mod, "_mean_activations", lambda *a, **k: computed.append(1) or real(*a, **k))
    model, cache = tiny(), tmp_path / "cache"
    a = ablation_values(model, "mean", data=root / "c300", cache_dir=cache)
    b = ablation_values(model, "mean", data=root / "c300b", cache_dir=cache)
    assert len(computed) == 2 and len(list(cache.glob("ablation_means-*"))) == 2
    assert any(not torch.equal(a[h], b[h]) for h in a)
    again = ablation_values(model, "mean", data=root / "c300", cache_dir=cache)
    assert len(computed) == 2 and all(torch.equal(a[h], again[h]) for h in a)


def test_resume_refuses_a_corpus_tokenized_otherwise(run: Path, root: Path) -> None:
    tokenizer = (run / "tokenizer.json").read_bytes()
    with pytest.raises(InputError, match="the corpus differs"):
        train("tiny-sparse", root / "c300b", run, resume=True, overrides=TRAIN, progress=False)
    assert (run / "tokenizer.json").read_bytes() == tokenizer


# 2. a corpus whose vocabulary does not fit the model


def test_a_corpus_must_fit_the_models_vocabulary(root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(InputError, match="c600 has a 600-token vocabulary.*vocab_size=300"):
        open_for_model(root / "c600", 300)
    with pytest.raises(InputError, match="600-token"):
        stage_inputs(tiny(), data=root / "c600")
    monkeypatch.setattr(ablation_mod, "_mean_activations", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(InputError, match="600-token"):
        ablation_values(tiny(), "mean", data=TokenShards.open(root / "c600"), cache_dir=tmp_path)
    assert open_for_model(root / "c300", 600).vocab_size == 300  # smaller ids fit


def test_prune_report_validate_refuse_a_corpus_too_big_for_the_model(run: Path, root: Path, capsys) -> None:
    circ = root / "circ"
    commands = {
        "prune": ["prune", "--model", str(run), "--task", str(root / "task.jsonl"), "--out", str(root / "c2"),
                  "--steps", "2", "--train-pairs", "8", "--pairs", "8", "--no-progress"],
        "report": ["report", "--circuit", str(circ), "--out", str(root / "r.html")],
        "validate": ["validate", "--circuit", str(circ), "--no-progress"],
    }
    for name, argv in commands.items():  # the means of c300 are cached: this is not about the cache
        assert main([*argv, "--data", str(root / "c600")]) == 2, name
        err = capsys.readouterr().err
        assert "600-token vocabulary" in err and str(root / "c600") in err, name
    assert not (root / "c2").exists() and not (root / "r.html").exists()
    assert not (circ / "validation.json").exists()


def test_train_refuses_a_corpus_bigger_than_the_model_before_writing(root: Path, capsys) -> None:
    out = root / "too-big"
    assert main(["train", "--config", "tiny-sparse", "--data", str(root / "c600"), "--out", str(out),
                 "--no-progress", *TRAIN]) == 2
    assert "600-token vocabulary" in capsys.readouterr().err and not out.exists()


# 3. shard sizes: bytes against tokens x bytes per token


def test_a_truncated_shard_names_the_file(root: Path, tmp_path: Path) -> None:
    corpus = shutil.copytree(root / "c300", tmp_path / "c")
    data = (corpus / "train.bin").read_bytes()
    (corpus / "train.bin").write_bytes(data[:-1])  # an odd number of bytes of uint16
    with pytest.raises(InputError, match=r"train\.bin has [\d,]+ bytes, not a whole number of uint16"):
        TokenShards.open(corpus)
    (corpus / "train.bin").write_bytes(data[:-20])  # 10 tokens fewer than shards.json says
    with pytest.raises(InputError) as err:
        TokenShards.open(corpus)
    n = len(data) // 2
    assert str(corpus / "train.bin") in str(err.value) and f"{n:,} uint16 tokens" in str(err.value)
    assert f"{len(data) - 20:,} bytes" in str(err.value) and "whole number" not in str(err.value)


# 4. damaged JSON artifacts


def _artifacts(root: Path, run: Path, tmp_path: Path) -> dict[str, tuple[Path, object]]:
    corpus = shutil.copytree(root / "c300", tmp_path / "corpus")
    ckpt = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("state"))
    circ = shutil.copytree(root / "circ", tmp_path / "circ")
    return {
        "manifest.json": (corpus / "manifest.json", lambda: read_manifest(corpus)),
        "shards.json": (corpus / "shards.json", lambda: TokenShards.open(corpus)),
        "tokenizer.json": (corpus / "tokenizer.json", lambda: load_tokenizer(corpus / "tokenizer.json")),
        "config.json": (ckpt / "config.json", lambda: load_checkpoint(ckpt)),
        "training.json": (ckpt / "training.json", lambda: load_checkpoint(ckpt)),
        "circuit.json": (circ / "circuit.json", lambda: Circuit.load(circ)),
    }


@pytest.mark.parametrize("name", ["manifest.json", "shards.json", "tokenizer.json", "config.json",
                                  "training.json", "circuit.json"])
def test_a_damaged_json_artifact_is_an_input_error(name: str, run: Path, root: Path, tmp_path: Path) -> None:
    file, read = _artifacts(root, run, tmp_path)[name]
    file.write_bytes(PNG)
    with pytest.raises(InputError, match="is not UTF-8 text.*may be damaged or of another kind") as err:
        read()
    assert str(file) in str(err.value) and "does not exist" not in str(err.value)
    file.write_text('{"format": 1,\n  oops}')
    with pytest.raises(InputError, match="is not valid JSON: line 2 col 3") as err:
        read()
    assert str(file) in str(err.value)
    if name in ("tokenizer.json", "circuit.json"):
        return  # a folder there is read as the folder holding the file (load_tokenizer, Circuit.load)
    file.unlink()
    file.mkdir()  # a folder where the file goes is not "missing" either
    with pytest.raises(InputError, match="is a folder, not a file") as err:
        read()
    assert "does not exist" not in str(err.value) and str(file) in str(err.value)


def test_the_cli_reports_a_damaged_config_in_one_line(run: Path, tmp_path: Path, capsys) -> None:
    ckpt = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("state"))
    (ckpt / "config.json").write_bytes(PNG)
    assert main(["model", "info", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "config.json is not UTF-8 text" in err and "Traceback" not in err


# 5. stored corpus paths


def test_training_json_stores_the_corpus_path_absolute(run: Path, root: Path, tmp_path: Path, monkeypatch) -> None:
    stored = json.loads((run / "training.json").read_text())["data_dir"]
    assert Path(stored).is_absolute() and Path(stored) == (root / "c300").resolve()
    monkeypatch.chdir(tmp_path)  # another working directory
    ckpt = load_checkpoint(run)
    assert ckpt.corpus == Path(stored) and ckpt.open_corpus().path == Path(stored)


def test_an_old_relative_corpus_path_resolves_against_the_run_then_the_cwd(
    run: Path, root: Path, tmp_path: Path, monkeypatch
) -> None:
    ckpt = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("state"))
    (ckpt / "training.json").write_text(json.dumps({"data_dir": "corpus"}))  # an old record
    shutil.copytree(root / "c300", tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    assert load_checkpoint(ckpt).corpus == tmp_path / "corpus"  # from the current directory
    shutil.copytree(root / "c300b", ckpt / "corpus")
    assert load_checkpoint(ckpt).corpus == ckpt / "corpus"  # the run folder comes first
    assert load_checkpoint(ckpt).open_corpus().manifest_hash == TokenShards.open(root / "c300b").manifest_hash


def test_a_stored_corpus_that_is_gone_names_the_path_and_asks_for_data(
    run: Path, root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    ckpt = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("state", "ablation_means-*"))
    (ckpt / "training.json").write_text(json.dumps({"data_dir": "c300"}))  # relative to `root`
    monkeypatch.chdir(tmp_path)
    argv = ["prune", "--model", str(ckpt), "--task", str(root / "task.jsonl"), "--out", str(tmp_path / "c"),
            "--steps", "2", "--train-pairs", "8", "--pairs", "8", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "names the corpus 'c300', which is not found" in err and "--data DIR" in err
    assert str(ckpt / "c300") in err and not (tmp_path / "c").exists()
    assert main([*argv, "--data", str(root / "c300")]) == 0  # the fix the message names
    shutil.copytree(root / "c300", ckpt / "corpus-val")  # a packed validation split is used instead
    assert load_checkpoint(ckpt).open_corpus().path == ckpt / "corpus-val"


def test_save_keeps_absolute_and_unfound_corpus_paths_as_given(tmp_path: Path) -> None:
    training = {"steps": 3, "data_dir": str(tmp_path / "gone"), "data": {"path": "nowhere"}}
    save_checkpoint(tiny(), tmp_path / "ck", training=training)
    assert json.loads((tmp_path / "ck" / "training.json").read_text()) == training


# 6. corpus build --force onto a regular file


def test_build_force_onto_a_file_refuses_and_leaves_it(root: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    argv = ["corpus", "build", "--no-progress", "--vocab-size", "300", "--source", str(root / "code")]
    assert main([*argv, "--out", str(target), "--force"]) == 2
    assert "is a file but not a corpus folder" in capsys.readouterr().err
    with pytest.raises(InputError, match="is a file but not a corpus folder"):
        build_corpus([f"dir:{root / 'code'}"], target, vocab_size=300, overwrite=True, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("mine\n")
    with pytest.raises(InputError, match="is a folder but not a corpus folder"):
        build_corpus([f"dir:{root / 'code'}"], other, vocab_size=300, overwrite=True, progress=False)
    assert target.read_text() == "keep me\n" and [p.name for p in other.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "other"]  # no hidden .old-PID


# 7. temp folders of killed builds


@pytest.mark.skipif(os.name != "posix", reason="liveness is checked with POSIX signals")
def test_the_next_build_removes_the_temp_folder_of_a_killed_one(root: Path, tmp_path: Path) -> None:
    out, source = tmp_path / "corpus", f"dir:{root / 'code'}"
    script = (
        "import os, signal\n"
        "import sparsecircuits.data.corpus as corpus\n"
        "corpus._write_shards = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"corpus.build_corpus([{source!r}], {str(out)!r}, vocab_size=300, progress=False)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=300).returncode == -signal.SIGKILL
    (killed,) = tmp_path.glob(".corpus.tmp-*")  # named after its writer: a pid no longer running
    live = tmp_path / f".corpus.tmp-{os.getpid()}-{host_tag()}-live"  # this process: alive
    unknown = tmp_path / ".corpus.tmp-unknown"  # no writer in the name (an older version's)
    live.mkdir()
    unknown.mkdir()
    build_corpus([source], out, vocab_size=300, val_fraction=0.3, progress=False)
    assert not killed.exists() and live.is_dir() and unknown.is_dir()
    assert TokenShards.open(out).manifest_hash == TokenShards.open(root / "c300").manifest_hash
