"""Training runs on the tiny presets: budgets, exemptions, schedule, loss, outputs, resume."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.model.sparsity import WeightSparsifier
from sparsecircuits.train import kept_fraction, native_bf16, train, weight_decay_params
from sparsecircuits.train.config import load_run_config

STEPS = 30
SPARSE = [f"train.steps={STEPS}", "train.log_every=1", "train.checkpoint_every=10",
          "train.keep_checkpoints=0", "train.eval_every=10"]


@pytest.fixture(scope="module")
def sparse_run(small_corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("train") / "sparse"
    result = train("tiny-sparse", small_corpus_dir, out, overrides=SPARSE, progress=False)
    return result


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sparse_run_meets_budgets(sparse_run) -> None:
    ckpt = load_checkpoint(sparse_run.out_dir)
    cfg = load_run_config("tiny-sparse", SPARSE).train
    model = ckpt.model
    kinds = model.parameter_kinds()
    sp = WeightSparsifier(model, cfg.target_density, cfg.embedding_density_factor, cfg.min_per_channel)
    budgets = sp.budgets(cfg.target_density)
    params = dict(model.named_parameters())
    for name, k in budgets.items():
        assert int(torch.count_nonzero(params[name])) == k, name
    matrices = [n for n in params if kinds[n] == "matrix"]
    assert len(matrices) == 4
    for name in matrices:
        dim = 1 if name.endswith("c_proj.weight") else 0  # count per row (in) or per column (out)
        per_channel = (params[name] != 0).sum(dim=1 - dim)
        assert int(per_channel.min()) >= 4, name
        assert budgets[name] == round(0.25 * params[name].numel())
    # exempt parameters are never projected: norm gains and sink logits stay fully dense
    for name, p in params.items():
        if kinds[name] == "exempt" and name != "bigram_table":
            assert int(torch.count_nonzero(p)) == p.numel(), name
    assert float(params["blocks.0.attn.sink_logit"].detach().abs().min()) > 0  # trained
    # the bigram table is trained densely: many more nonzeros than any projected budget
    assert int(torch.count_nonzero(params["bigram_table"])) > 0.5 * params["bigram_table"].numel()


def test_kept_fraction_follows_schedule(sparse_run) -> None:
    cfg = load_run_config("tiny-sparse", SPARSE).train
    rows = _metrics(sparse_run.out_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    numel = {"blocks.0.mlp.c_fc.weight": 128 * 32, "blocks.0.attn.c_attn.weight": 96 * 32}
    for r in rows:
        assert r["kept_fraction"] == kept_fraction(r["step"], cfg)
        for name, n in numel.items():
            assert r["kept"][name] == pytest.approx(round(r["kept_fraction"] * n) / n, abs=1e-9)
    fractions = [r["kept_fraction"] for r in rows]
    assert fractions[0] == pytest.approx(1 - 0.75 * (1 - 0.3) / 14.7)  # annealing from step 0.3
    assert fractions[STEPS // 2 - 1] == 0.25 and fractions[-1] == 0.25  # done at 50%
    assert all(a >= b for a, b in zip(fractions[:-1], fractions[1:], strict=True))


def test_loss_falls_and_outputs(sparse_run) -> None:
    rows = _metrics(sparse_run.out_dir)
    first, last = rows[0]["train_loss"], sparse_run.final_train_loss
    assert first > math.log(2048) - 0.3  # starts near chance
    assert last < first - 0.8
    assert sparse_run.final_val_loss < math.log(2048) - 0.8
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20, 30]
    for key in ("tokens", "lr", "grad_rms", "tokens_per_s", "wall_time", "step_time"):
        assert key in rows[-1]
    assert rows[-1]["tokens"] == STEPS * 8 * 32
    run = sparse_run.out_dir
    training = json.loads((run / "training.json").read_text())
    assert training["steps"] == STEPS and training["tokens"] == STEPS * 8 * 32
    assert training["final_val_loss"] == pytest.approx(sparse_run.final_val_loss)
    assert len(training["corpus_manifest_hash"]) >= 8
    assert training["nonzeros"]["totals"]["matrix"]["fraction"] == pytest.approx(0.25)
    assert training["recipe"]["train"]["target_density"] == 0.25
    assert (run / "tokenizer.json").is_file() and (run / "run_config.json").is_file()
    assert sorted(p.name for p in (run / "state").iterdir()) == [
        "step-00000010", "step-00000020", "step-00000030"
    ]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_dense_run_projects_nothing(small_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dense"
    result = train("tiny-dense", small_corpus_dir, out, overrides=["train.steps=12"], progress=False)
    model = load_checkpoint(out).model
    kinds = model.parameter_kinds()
    for name, p in model.named_parameters():
        if kinds[name] != "exempt":
            assert int(torch.count_nonzero(p)) == p.numel(), name
    assert not result.training["sparse"]
    assert all(r["kept_fraction"] == 1.0 for r in _metrics(out))
    assert result.final_train_loss < math.log(2048) - 0.3


def test_bf16_autocast_trains_float32_weights(small_corpus_dir: Path, tmp_path: Path) -> None:
    """autocast=bf16 runs the forward in bfloat16 (so the weights differ from a float32 run of
    the same seed) but keeps float32 weights within their budgets, and the loss still falls."""
    steps = ["train.steps=12", "train.eval_every=0", "train.checkpoint_every=0"]
    runs = {
        name: train("tiny-sparse", small_corpus_dir, tmp_path / name, overrides=steps + extra, progress=False)
        for name, extra in (("fp32", []), ("bf16", ["train.autocast=bf16"]))
    }
    assert runs["bf16"].training["recipe"]["train"]["autocast"] == "bf16"
    assert [runs[n].training["autocast"] for n in ("fp32", "bf16")] == ["none", "bf16"]
    assert runs["bf16"].final_train_loss < _metrics(tmp_path / "bf16")[0]["train_loss"] - 0.3
    a = load_file(str(tmp_path / "fp32" / "model.safetensors"))
    b = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in b.values())
    assert any(not torch.equal(a[name], b[name]) for name in a)
    cfg = load_run_config("tiny-sparse", steps).train
    model = load_checkpoint(tmp_path / "bf16").model
    sp = WeightSparsifier(model, cfg.target_density, cfg.embedding_density_factor, cfg.min_per_channel)
    for name, k in sp.budgets(cfg.target_density).items():
        assert int(torch.count_nonzero(b[name])) == k, name


@pytest.mark.parametrize("native", [False, True])
def test_auto_autocast_follows_native_bf16(
    native: bool, small_corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """autocast=auto trains exactly as bf16 on a device with native bfloat16 and exactly as
    float32 without it, and records which it used."""
    monkeypatch.setattr("sparsecircuits.train.trainer.native_bf16", lambda device: native)
    steps = ["train.steps=4", "train.eval_every=0", "train.checkpoint_every=0"]
    same = "bf16" if native else "none"
    auto = train("tiny-sparse", small_corpus_dir, tmp_path / "auto", overrides=[*steps, "train.autocast=auto"],
                 progress=False)
    ref = train("tiny-sparse", small_corpus_dir, tmp_path / same, overrides=[*steps, f"train.autocast={same}"],
                progress=False)
    assert auto.training["autocast"] == ref.training["autocast"] == same
    a = load_file(str(tmp_path / "auto" / "model.safetensors"))
    b = load_file(str(tmp_path / same / "model.safetensors"))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_native_bf16_probe_matches_the_cpu_flags() -> None:
    """On Linux the CPU probe agrees with /proc/cpuinfo's avx512_bf16 / amx_bf16 flags."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this OS")
    flags = {f for line in cpuinfo.read_text().splitlines() if line.startswith("flags") for f in line.split()}
    assert native_bf16(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_resume_is_bit_identical(sparse_run, tmp_path: Path, small_corpus_dir: Path) -> None:
    """A run interrupted after its step-10 checkpoint and resumed ends on the same weights."""
    straight = sparse_run.out_dir
    interrupted = tmp_path / "interrupted"
    (interrupted / "state").mkdir(parents=True)
    shutil.copytree(straight / "state" / "step-00000010", interrupted / "state" / "step-00000010")
    shutil.copy(straight / "run_config.json", interrupted)
    shutil.copy(straight / "metrics.jsonl", interrupted)  # holds rows past step 10: dropped
    code = main([
        "train", "--config", "tiny-sparse", "--data", str(small_corpus_dir), "--out",
        str(interrupted), "--resume", "--no-progress", *SPARSE, "train.log_every=5",
    ])
    assert code == 0
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(interrupted / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [r["step"] for r in _metrics(interrupted)]
    assert steps == list(range(1, 11)) + [15, 20, 25, 30]


def test_weight_decay_skips_biases_bigram_and_gains() -> None:
    from sparsecircuits.model import SparseTransformer

    model = SparseTransformer(load_run_config("tiny-sparse").model)
    names = {n for n, _ in weight_decay_params(model)}
    assert names == {
        "embed.weight", "unembed.weight", "blocks.0.attn.c_attn.weight",
        "blocks.0.attn.c_proj.weight", "blocks.0.mlp.c_fc.weight", "blocks.0.mlp.c_proj.weight",
    }
