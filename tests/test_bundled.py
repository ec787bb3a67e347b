"""The bundled demo models: present, compact, under the size cap, and loadable."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from sparsecircuits.bundled_names import bundled_root
from sparsecircuits.checkpoint import COMPACT_LAYOUT, WEIGHTS_FILE, load_checkpoint
from sparsecircuits.data.shards import TokenShards
from sparsecircuits.model.sparsity import sparsity_report

SIZE_CAP = 25 * 1024 * 1024


def test_bundle_is_under_the_size_cap():
    files = [p for p in bundled_root().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= SIZE_CAP


@pytest.mark.parametrize("kind", ["small-sparse", "small-dense"])
def test_bundled_model_loads_and_is_what_it_claims(kind):
    folder = bundled_root() / kind
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as f:
        assert f.metadata()["layout"] == COMPACT_LAYOUT
    ckpt = load_checkpoint(folder)
    assert ckpt.tokenizer is not None
    assert ckpt.config.vocab_size == ckpt.tokenizer.get_vocab_size()
    training = json.loads((folder / "training.json").read_text())
    assert (folder / "metrics.jsonl").read_text().count("\n") > 10
    nonzero, numel = sparsity_report(ckpt.model).total(("matrix",))
    if kind == "small-sparse":
        assert training["recipe"]["train"]["target_density"] < 1
        assert nonzero / numel == pytest.approx(training["recipe"]["train"]["target_density"], rel=0.05)
    else:
        assert nonzero == numel
    shards = TokenShards.open(folder / "corpus-val")
    assert len(shards.val) > 10_000 and shards.vocab_size == ckpt.config.vocab_size
