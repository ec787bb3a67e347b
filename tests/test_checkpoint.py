"""Checkpoint folders: bit-identical round trip, clear errors on corruption or mismatch."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsecircuits.checkpoint import (
    WEIGHTS_FILE,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
)
from sparsecircuits.cli import main
from sparsecircuits.errors import CheckpointError
from sparsecircuits.model import ModelConfig, SparseTransformer

CFG = dict(n_layer=2, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=29, n_ctx=12)


def tiny(**kw) -> SparseTransformer:
    return SparseTransformer(ModelConfig(**{**CFG, **kw})).eval()


@pytest.mark.parametrize(
    "kw",
    [{}, dict(tied_embeddings=True), dict(attention_sink=True, bigram_table=True, afrac=0.5,
                                           positional="concat", d_pos_emb=4, final_logits_bias=True)],
)
def test_save_load_is_bit_identical(tmp_path, kw):
    m = tiny(**kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randint(0, 29, (2, 12))
    save_checkpoint(m, tmp_path / "ck", training={"steps": 3})
    loaded = load_checkpoint(tmp_path / "ck")
    assert torch.equal(loaded.model(x), m(x))
    assert loaded.training == {"steps": 3}
    assert model_fingerprint(loaded.model) == model_fingerprint(m)
    assert not list(tmp_path.glob(".ck.tmp-*")), "no temporary folder is left behind"


def test_tied_checkpoint_stays_tied(tmp_path):
    save_checkpoint(tiny(tied_embeddings=True), tmp_path / "ck")
    m = load_checkpoint(tmp_path / "ck").model
    assert m.unembed.weight.data_ptr() == m.embed.weight.data_ptr()


def test_fingerprint_changes_with_one_weight():
    m = tiny()
    before = model_fingerprint(m)
    with torch.no_grad():
        m.blocks[1].mlp.c_fc.weight[0, 0] += 1e-3
    assert model_fingerprint(m) != before


def test_truncated_weights_raise_clear_error(tmp_path):
    save_checkpoint(tiny(), tmp_path / "ck")
    w = tmp_path / "ck" / WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "ck")


def test_config_tensor_mismatch_names_the_tensor(tmp_path):
    save_checkpoint(tiny(), tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["d_mlp"] = 64
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.c_fc\.weight has shape"):
        load_checkpoint(tmp_path / "ck")


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    save_checkpoint(tiny(), tmp_path / "ck")
    w = tmp_path / "ck" / WEIGHTS_FILE
    tensors = load_file(str(w))
    tensors.pop("ln_final.weight")
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(w))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "ck")
    assert "missing tensors: ln_final.weight" in str(err.value)
    assert "unexpected tensors: extra.weight" in str(err.value)


def test_missing_folder_and_bad_config(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "bad")


def test_cli_model_info(tmp_path, capsys):
    save_checkpoint(tiny(), tmp_path / "ck")
    assert main(["model", "info", str(tmp_path / "ck"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["d_mlp"] == 32
    assert info["sparsity"]["totals"]["matrix"]["fraction"] == 1.0
    assert main(["model", "info", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_handle_types_the_training_record_and_finds_the_corpus(tmp_path):
    """training.json as the Trainer writes it (final_val_loss, ...) is read by the typed
    record, and the model card of a report shows those losses (it read `val_loss` before)."""
    from sparsecircuits.checkpoint import TrainingRecord
    from sparsecircuits.report.data import model_card

    training = {"steps": 12, "tokens": 3072, "final_train_loss": 3.5, "final_val_loss": 3.25, "sparse": True,
                "data_dir": str(tmp_path / "gone")}
    ckpt = load_checkpoint(save_checkpoint(tiny(), tmp_path / "ck", training=training))
    record = ckpt.record
    assert (record.steps, record.tokens, record.final_train_loss, record.final_val_loss, record.sparse) == (
        12, 3072, 3.5, 3.25, True)
    assert ckpt.corpus is None  # the training corpus is gone and no corpus-val/ is packed
    card = model_card(ckpt.model, ckpt.path, ckpt.training)
    assert (card["val_loss"], card["train_loss"], card["steps"]) == (3.25, 3.5, 12)
    assert TrainingRecord.from_dict({"val_loss": 1.0}).final_val_loss == 1.0  # older spelling
    assert TrainingRecord.from_dict(None).steps is None


def test_bundled_checkpoints_bring_their_validation_corpus():
    ckpt = load_checkpoint("bundled:small-sparse")
    assert ckpt.corpus is not None and ckpt.corpus.name == "corpus-val"
    assert ckpt.model.tokenizer is ckpt.tokenizer
    assert ckpt.record.final_val_loss is not None


def test_stages_refuse_a_model_off_the_cpu_with_a_clear_error():
    """prune, validate and the report build their batches on the CPU: a model elsewhere
    (here the meta device, as a stand-in for a GPU) is an InputError naming the fix."""
    from sparsecircuits.checkpoint import stage_inputs
    from sparsecircuits.errors import InputError

    with pytest.raises(InputError, match="--device cpu"):
        stage_inputs(tiny().to("meta"))
    assert stage_inputs(tiny()).model is not None
