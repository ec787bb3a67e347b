"""Ablation values: zero, task mean, and the pretraining mean with its cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsecircuits.checkpoint import default_data_dir, model_fingerprint
from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.prune import ablation as ablation_mod
from sparsecircuits.prune import ablation_values
from sparsecircuits.tasks import TaskBatch


def tiny_model(vocab: int = 30) -> SparseTransformer:
    cfg = ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=16, vocab_size=vocab, n_ctx=16, afrac=0.5)
    return SparseTransformer(cfg).eval()


def test_zero_values_cover_every_node() -> None:
    model = tiny_model()
    values = ablation_values(model, "zero")
    assert set(values) == set(all_node_hooks(model))
    assert all(v.shape == (node_width(model, h),) and not v.any() for h, v in values.items())


def test_task_mean_averages_real_tokens_only() -> None:
    model = tiny_model()
    tokens = torch.randint(1, 30, (4, 6))
    last = torch.tensor([5, 2, 3, 0])
    batch = TaskBatch(tokens, last, torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long))
    values = ablation_values(model, "task_mean", task_batch=batch)
    hook = "blocks.0.attn.hook_q"
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    acts = cache[hook].flatten(2)
    real = torch.cat([acts[r, : int(last[r]) + 1] for r in range(4)])
    assert torch.allclose(values[hook], real.mean(0), atol=1e-6)
    with pytest.raises(InputError, match="task_batch"):
        ablation_values(model, "task_mean")


def test_mean_is_computed_from_tokens_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = tiny_model()
    tokens = np.random.default_rng(0).integers(0, 30, 5000).astype(np.uint16)
    values = ablation_values(model, "mean", data=tokens, cache_dir=tmp_path / "run")
    files = list((tmp_path / "run").glob("ablation_means-*.safetensors"))
    assert len(files) == 1 and model_fingerprint(model) in files[0].name
    # the mean over the seeded windows, recomputed by hand
    windows = ablation_mod._windows(model, tokens)
    _, cache = model.run_with_cache(windows, names_filter=["blocks.0.mlp.hook_post"])
    assert torch.allclose(values["blocks.0.mlp.hook_post"], cache["blocks.0.mlp.hook_post"].mean((0, 1)), atol=1e-5)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of using the cache")

    monkeypatch.setattr(ablation_mod, "_mean_activations", fail)
    again = ablation_values(model, "mean", data=tokens, cache_dir=tmp_path / "run")
    assert all(torch.equal(values[h], again[h]) for h in values)
    # without data, the one cached corpus of this model is used
    cached = ablation_values(model, "mean", cache_dir=tmp_path / "run")
    assert all(torch.equal(values[h], cached[h]) for h in values)


def test_mean_without_data_says_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(InputError, match="--data DIR.*--ablation zero or task_mean"):
        ablation_values(tiny_model(), "mean", cache_dir=tmp_path)
    with pytest.raises(InputError, match="unknown"):
        ablation_values(tiny_model(), "median")


def test_unwritable_checkpoint_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tokens = np.random.default_rng(1).integers(0, 30, 3000)
    ablation_values(tiny_model(), "mean", data=tokens, cache_dir=blocker / "run")
    assert len(list((tmp_path / "xdg" / "sparsecircuits").glob("ablation_means-*"))) == 1


def test_default_data_dir_reads_training_json(tmp_path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "shards.json").write_text("{}")
    assert default_data_dir({"data_dir": str(corpus)}) == corpus
    assert default_data_dir({"data_dir": "corpus"}, tmp_path) == tmp_path / "corpus"
    assert default_data_dir({"data_dir": str(tmp_path / "gone")}) is None
    assert default_data_dir(None) is None
