"""Compact weights: pack a checkpoint, load it back (exact with a float32 bigram table,
close with float16), smaller files, clear errors on corrupt compact files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sparsecircuits.checkpoint import (
    COMPACT_LAYOUT,
    WEIGHTS_FILE,
    _mask_positions,
    load_checkpoint,
    model_fingerprint,
    pack_checkpoint,
    save_checkpoint,
)
from sparsecircuits.cli import main
from sparsecircuits.errors import CheckpointError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.sparsity import project_to_budget_

CFG = dict(n_layer=2, d_model=32, n_head=2, d_head=16, d_mlp=128, vocab_size=300, n_ctx=16,
           attention_sink=True, bigram_table=True, afrac=0.25, positional="learned")


def sparse_model(density: float = 0.1) -> SparseTransformer:
    """A model whose transformer matrices keep `density` of their entries (random values)."""
    m = SparseTransformer(ModelConfig(**CFG)).eval()
    kinds = m.parameter_kinds()
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
            if kinds[name] == "matrix":
                project_to_budget_(p.data, max(1, int(density * p.numel())))
    return m


@pytest.fixture
def run(tmp_path):
    m = sparse_model()
    path = save_checkpoint(m, tmp_path / "run", training={"steps": 7})
    (path / "metrics.jsonl").write_text('{"step": 7, "train_loss": 1.0}\n', encoding="utf-8")
    return m, path


def test_float32_pack_is_bit_identical_and_smaller(run, tmp_path):
    m, src = run
    out = pack_checkpoint(src, tmp_path / "packed", bigram_dtype="float32")
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        meta, keys = f.metadata(), set(f.keys())
    assert meta["layout"] == COMPACT_LAYOUT
    assert "blocks.0.mlp.c_fc.weight::mask" in keys and "blocks.0.mlp.c_fc.weight" not in keys
    assert "bigram_table" in keys  # dense: fully nonzero
    loaded = load_checkpoint(out)
    x = torch.randint(0, CFG["vocab_size"], (3, 16))
    assert torch.equal(loaded.model(x), m(x))
    assert model_fingerprint(loaded.model) == model_fingerprint(m)
    assert loaded.training == {"steps": 7}
    assert (out / "metrics.jsonl").read_text(encoding="utf-8").startswith('{"step": 7')
    assert (out / WEIGHTS_FILE).stat().st_size < (src / WEIGHTS_FILE).stat().st_size


def test_float16_bigram_is_close_not_equal(run, tmp_path):
    m, src = run
    out = pack_checkpoint(src, tmp_path / "packed16", bigram_dtype="float16")
    stored = load_file(str(out / WEIGHTS_FILE))
    assert stored["bigram_table"].dtype == torch.float16
    loaded = load_checkpoint(out).model
    assert loaded.bigram_table.dtype == torch.float32
    x = torch.randint(0, CFG["vocab_size"], (3, 16))
    diff = (loaded(x) - m(x)).abs().max()
    assert 0 < diff < 1e-3
    for name, t in m.state_dict().items():  # only the bigram table changed
        if name != "bigram_table":
            assert torch.equal(loaded.state_dict()[name], t), name


def test_dense_tensors_stay_dense(tmp_path):
    m = sparse_model(density=0.95)
    out = pack_checkpoint(save_checkpoint(m, tmp_path / "d"), tmp_path / "p", bigram_dtype="float32")
    keys = set(load_file(str(out / WEIGHTS_FILE)))
    assert not any(k.endswith("::mask") for k in keys if k.startswith("blocks."))
    assert torch.equal(load_checkpoint(out).model.blocks[0].mlp.c_fc.weight, m.blocks[0].mlp.c_fc.weight)


C_PROJ = "blocks.0.attn.c_proj.weight"


def _rewrite(path, edit):
    file = str(path / WEIGHTS_FILE)
    with safe_open(file, framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(file)
    edit(tensors, meta)
    save_file(tensors, file, metadata=meta)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t, m: t.pop("blocks.0.attn.c_proj.weight::values"), "lacks its mask or values"),
        (lambda t, m: t.pop("blocks.0.attn.c_proj.weight::mask"), "lacks its mask or values"),
        (lambda t, m: t.__setitem__(C_PROJ + "::mask", t[C_PROJ + "::mask"] | 1), "nonzero positions but values"),
        (lambda t, m: t.__setitem__(C_PROJ + "::mask", t[C_PROJ + "::mask"][1:].contiguous()), "uint8 bytes"),
        (lambda t, m: m.__setitem__("sparse_shapes", json.dumps(
            {**json.loads(m["sparse_shapes"]), "blocks.0.attn.c_proj.weight": [16, 64]})),
         "does not match its config"),
        (lambda t, m: m.__setitem__("sparse_shapes", "{not json"), "not valid JSON"),
        (lambda t, m: m.__setitem__("layout", "sparsecircuits.compact/99"), "cannot read"),
        (lambda t, m: t.__setitem__("bigram_table", t["bigram_table"].float()), "float16"),
    ],
)
def test_corrupt_compact_file_fails_clearly(run, tmp_path, edit, message):
    _, src = run
    out = pack_checkpoint(src, tmp_path / "bad")
    _rewrite(out, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(out)


def test_mask_bits_past_the_tensor_are_corruption():
    with pytest.raises(CheckpointError, match="bits set past its 5 entries"):
        _mask_positions(torch.tensor([0b1000_0001], dtype=torch.uint8), 5, "w", "f")
    assert _mask_positions(torch.tensor([0b0001_0001], dtype=torch.uint8), 5, "w", "f").tolist() == [0, 4]


def test_reads_the_older_index_layout(run, tmp_path):
    """compact/1 files (flat int32 indices instead of a mask) still load, exactly."""
    m, src = run
    out = pack_checkpoint(src, tmp_path / "v1", bigram_dtype="float32")

    def to_v1(tensors, meta):
        for key in [k for k in tensors if k.endswith("::mask")]:
            bits = np.unpackbits(tensors.pop(key).numpy(), bitorder="little")
            tensors[key.replace("::mask", "::indices")] = torch.from_numpy(np.flatnonzero(bits).astype(np.int32))
        meta["layout"] = "sparsecircuits.compact/1"

    _rewrite(out, to_v1)
    x = torch.randint(0, CFG["vocab_size"], (3, 16))
    assert torch.equal(load_checkpoint(out).model(x), m(x))
    _rewrite(out, lambda t, meta: t.__setitem__(C_PROJ + "::indices", t[C_PROJ + "::indices"].flip(0).contiguous()))
    with pytest.raises(CheckpointError, match="strictly increasing"):
        load_checkpoint(out)


def test_truncated_compact_file_fails_clearly(run, tmp_path):
    _, src = run
    out = pack_checkpoint(src, tmp_path / "cut")
    data = (out / WEIGHTS_FILE).read_bytes()
    (out / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(out)


def test_pack_cli(run, tmp_path, capsys):
    _, src = run
    assert main(["model", "pack", str(src), "--out", str(tmp_path / "cli"), "--bigram-dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "max |logit difference| on 4 random windows: 0" in out
    assert f"packed checkpoint: {tmp_path / 'cli'}" in out
    assert main(["model", "pack", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_pack_with_validation_corpus(run, tmp_path, small_corpus_dir):
    import numpy as np

    from sparsecircuits.data.shards import TokenShards

    _, src = run
    out = pack_checkpoint(src, tmp_path / "withval", val_corpus=small_corpus_dir)
    original, copied = TokenShards.open(small_corpus_dir), TokenShards.open(out / "corpus-val")
    assert len(copied.train) == 0
    assert np.array_equal(np.asarray(copied.val), np.asarray(original.val))
    assert copied.manifest_hash == original.manifest_hash
    assert copied.info["subset"].startswith("validation split only")
    assert main(["model", "pack", str(src), "--out", str(tmp_path / "v2"), "--val-corpus", str(tmp_path)]) == 2


def test_pack_caps_the_validation_split_at_whole_documents(run, tmp_path, small_corpus_dir):
    import numpy as np

    from sparsecircuits.data.shards import TokenShards

    _, src = run
    original = np.asarray(TokenShards.open(small_corpus_dir).val)
    eot = TokenShards.open(small_corpus_dir).info["eot_id"]
    cap = len(original) // 3
    out = pack_checkpoint(src, tmp_path / "capped", val_corpus=small_corpus_dir, val_tokens=cap)
    copied = TokenShards.open(out / "corpus-val")
    val = np.asarray(copied.val)
    assert 0 < len(val) <= cap
    assert copied.info["val"]["tokens"] == len(val)
    assert val[-1] == eot
    docs = [tuple(d) for d in np.split(original, np.flatnonzero(original == eot) + 1) if len(d)]
    kept = [tuple(d) for d in np.split(val, np.flatnonzero(val == eot) + 1) if len(d)]
    assert copied.info["val"]["documents"] == len(kept) < len(docs)
    assert copied.info["val"]["sample_of"] == {"tokens": len(original), "documents": len(docs)}
    positions = [docs.index(d) for d in kept]  # every kept document is a whole original one
    assert positions == sorted(positions)  # in corpus order
    assert "at most" in copied.info["subset"]
    again = pack_checkpoint(src, tmp_path / "again", val_corpus=small_corpus_dir, val_tokens=cap)
    assert np.array_equal(np.asarray(TokenShards.open(again / "corpus-val").val), val)
    assert main(["model", "pack", str(src), "--out", str(tmp_path / "bad"), "--val-corpus",
                 str(small_corpus_dir), "--val-tokens", "0"]) == 2
    assert main(["model", "pack", str(src), "--out", str(tmp_path / "bad"), "--val-tokens", "5"]) == 2
    assert not (tmp_path / "bad").exists()
