"""The Circuit artifact: edges and links against a hand count, save/load, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsecircuits.checkpoint import model_fingerprint
from sparsecircuits.circuits import (
    Circuit,
    Edge,
    compute_edges,
    embed_links,
    parse_node_id,
    residual_links,
    unembed_links,
)
from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.locations import all_node_hooks


def hand_model() -> SparseTransformer:
    """2 layers, d_model 4, 1 head of d_head 4 (q/k/v width 4), d_mlp 4; all weights zero
    except the ones listed, so every edge can be counted by hand."""
    cfg = ModelConfig(n_layer=2, d_model=4, n_head=1, d_head=4, d_mlp=4, vocab_size=6, n_ctx=4, bias=False)
    model = SparseTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.zero_()
        a0, m0 = model.blocks[0].attn, model.blocks[0].mlp
        a0.c_attn.weight[0, 1] = 0.5   # attn_in 1 -> q 0
        a0.c_attn.weight[4 + 2, 1] = -1.0  # attn_in 1 -> k 2
        a0.c_attn.weight[8 + 3, 0] = 2.0  # attn_in 0 -> v 3
        a0.c_attn.weight[8 + 3, 2] = 3.0  # attn_in 2 -> v 3 (attn_in 2 will not be kept)
        a0.c_proj.weight[1, 3] = 1.5   # v 3 -> attn_out 1
        m0.c_fc.weight[2, 1] = 0.25    # mlp_in 1 -> neuron 2
        m0.c_proj.weight[0, 2] = -0.75  # neuron 2 -> mlp_out 0
        m0.c_proj.weight[3, 2] = 0.1   # neuron 2 -> mlp_out 3 (mlp_out 3 not kept)
        model.blocks[1].attn.c_attn.weight[0, 0] = 4.0  # layer 1: attn_in 0 -> q 0
        model.blocks[1].ln_1.weight[1] = 2.0
        model.embed.weight[5, 1] = 0.3
        model.embed.weight[5, 2] = 0.7  # channel 2 is read by no kept node
        model.unembed.weight[4, 1] = -0.2
        model.unembed.weight[4, 0] = 0.9
    return model


NODES = {
    "blocks.0.attn.hook_in": [0, 1],
    "blocks.0.attn.hook_q": [0],
    "blocks.0.attn.hook_k": [2],
    "blocks.0.attn.hook_v": [3],
    "blocks.0.hook_attn_out": [1],
    "blocks.0.mlp.hook_in": [1],
    "blocks.0.mlp.hook_post": [2],
    "blocks.0.hook_mlp_out": [0],
    "blocks.1.attn.hook_in": [0, 1],
    "blocks.1.attn.hook_q": [0],
}


def test_edges_match_a_hand_count() -> None:
    edges = compute_edges(hand_model(), NODES)
    assert sorted((e.src, e.dst, e.weight) for e in edges) == sorted([
        ("blocks.0.attn.hook_in:1", "blocks.0.attn.hook_q:0", 0.5),
        ("blocks.0.attn.hook_in:1", "blocks.0.attn.hook_k:2", -1.0),
        ("blocks.0.attn.hook_in:0", "blocks.0.attn.hook_v:3", 2.0),
        ("blocks.0.attn.hook_v:3", "blocks.0.hook_attn_out:1", 1.5),
        ("blocks.0.mlp.hook_in:1", "blocks.0.mlp.hook_post:2", 0.25),
        ("blocks.0.mlp.hook_post:2", "blocks.0.hook_mlp_out:0", -0.75),
        ("blocks.1.attn.hook_in:0", "blocks.1.attn.hook_q:0", 4.0),
    ])


def test_edges_need_both_ends_kept() -> None:
    model = hand_model()
    nodes = dict(NODES, **{"blocks.0.attn.hook_v": []})
    ids = {(e.src, e.dst) for e in compute_edges(model, nodes)}
    assert not any("hook_v" in s or "hook_v" in d for s, d in ids)
    assert len(ids) == 5
    assert compute_edges(model, {}) == []


def test_residual_embed_and_unembed_links() -> None:
    model = hand_model()
    links = {(e.src, e.dst, e.weight) for e in residual_links(model, NODES)}
    assert links == {
        # attn_out 1 of layer 0 is read by mlp_in 1 of layer 0 (later in the same block)
        ("blocks.0.hook_attn_out:1", "blocks.0.mlp.hook_in:1", 1.0),
        ("blocks.0.hook_attn_out:1", "blocks.1.attn.hook_in:1", 2.0),
        ("blocks.0.hook_mlp_out:0", "blocks.1.attn.hook_in:0", 1.0),
    }
    emb = embed_links(model, NODES, tokens=[5, 3])
    assert [(e.src, e.dst) for e in emb] == [("embed:5", "hook_embed:1")]
    assert emb[0].weight == pytest.approx(0.3)
    unemb = unembed_links(model, NODES, tokens=[4])
    assert {(e.src, e.dst) for e in unemb} == {
        ("ln_final.hook_normalized:0", "unembed:4"),
        ("ln_final.hook_normalized:1", "unembed:4"),
    }


def make_circuit(model: SparseTransformer) -> Circuit:
    nodes = {h: [] for h in all_node_hooks(model)}
    nodes.update(NODES)
    return Circuit(
        model={"path": "RUN", "fingerprint": model_fingerprint(model)},
        task={"name": "t", "source": "builtin", "parameters": {}},
        ablation="mean",
        target_loss=0.15,
        nodes=nodes,
        edges=compute_edges(model, nodes),
        residual_links=residual_links(model, nodes),
        losses={"full": 0.1, "circuit": 0.14, "circuit_calibrated": 0.12, "ablate_all": 0.69, "circuit_ablated": 0.6},
        seed=3,
        pruning={"steps": 10},
        curve=[{"k": 0, "loss": 0.69}, {"k": 12, "loss": 0.14}],
        masks={"blocks.0.attn.hook_q": torch.tensor([0.5, -1.0, -1.0, -1.0])},
    )


def test_save_load_round_trip(tmp_path) -> None:
    model = hand_model()
    circuit = make_circuit(model)
    out = circuit.save(tmp_path / "c")
    data = json.loads((out / "circuit.json").read_text())
    for key in ("format", "model", "task", "ablation", "target_loss", "nodes", "n_nodes", "edges",
                "n_edges", "losses", "seed", "pruning", "version"):
        assert key in data
    assert data["n_edges"] == 7 and data["n_nodes"] == 12
    loaded = Circuit.load(out)
    assert loaded.to_dict() == circuit.to_dict()
    assert torch.equal(loaded.masks["blocks.0.attn.hook_q"], circuit.masks["blocks.0.attn.hook_q"])
    loaded.check_against(model)
    keep = loaded.keep_masks(model)
    assert set(keep) == set(all_node_hooks(model))
    assert keep["blocks.0.attn.hook_in"].tolist() == [True, True, False, False]
    assert not keep["blocks.1.mlp.hook_post"].any()
    assert loaded.nodes_by_location()["attn_in"] == 4


def test_check_against_rejects_another_model_or_missing_nodes() -> None:
    model = hand_model()
    circuit = make_circuit(model)
    other = hand_model()
    with torch.no_grad():
        other.blocks[0].attn.c_proj.weight[0, 0] = 1.0
    with pytest.raises(InputError, match="fingerprint"):
        circuit.check_against(other)
    circuit.nodes["blocks.0.attn.hook_q"] = [0, 9]
    with pytest.raises(InputError, match="do not exist"):
        circuit.check_against(model)
    circuit.nodes = {"blocks.7.attn.hook_q": [0]}
    with pytest.raises(InputError, match="only 2 layer"):
        circuit.check_against(model)


def test_load_reports_bad_files(tmp_path) -> None:
    with pytest.raises(InputError, match="no circuit.json"):
        Circuit.load(tmp_path)
    (tmp_path / "circuit.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Circuit.load(tmp_path)
    (tmp_path / "circuit.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="format"):
        Circuit.load(tmp_path)
    data = make_circuit(hand_model()).to_dict()
    del data["edges"]
    (tmp_path / "circuit.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="missing field"):
        Circuit.load(tmp_path)


def test_node_ids_and_edges_parse() -> None:
    assert parse_node_id("blocks.0.attn.hook_q:17") == ("blocks.0.attn.hook_q", 17)
    with pytest.raises(InputError):
        parse_node_id("blocks.0.attn.hook_q")
    assert Edge.from_dict({"src": "a:1", "dst": "b:2", "weight": 0.5}) == Edge("a:1", "b:2", 0.5)
    with pytest.raises(InputError):
        Edge.from_dict({"src": "a:1"})


def test_a_circuit_written_by_0_1_0_loads_typed_and_writes_the_same_json() -> None:
    """The records are typed (task, losses, calibration, pruning) and serialize to exactly
    the JSON an earlier version wrote (fixture: a trimmed demo circuit of 0.1.0)."""
    from sparsecircuits.circuits import CalibrationRecord, CircuitLosses, PruningRecord, TaskRecord

    text = (Path(__file__).parent / "fixtures" / "circuit_0.1.0.json").read_text()
    old = json.loads(text)
    circuit = Circuit.from_dict(old)
    assert isinstance(circuit.task, TaskRecord) and circuit.task.parameters == {"same_length": False, "parse": True}
    assert isinstance(circuit.losses, CircuitLosses) and circuit.losses.circuit == old["losses"]["circuit"]
    assert isinstance(circuit.calibration, CalibrationRecord) and circuit.calibration.scale == old["calibration"]["scale"]
    assert isinstance(circuit.pruning, PruningRecord) and circuit.pruning.k == 43
    assert circuit.pruning.get("freeze_norms") is False and circuit.pruning.get("steps") == 100
    assert circuit.to_dict() == old
    assert json.dumps(circuit.to_dict(), indent=1) == json.dumps(old, indent=1)


def test_records_accept_plain_dicts_and_older_spellings() -> None:
    from sparsecircuits.circuits import PruningRecord, TaskRecord

    task = TaskRecord.from_dict({"name": "t", "source": "builtin", "params": {"n": 1}, "description": "d"})
    assert task.parameters == {"n": 1} and task.to_dict() == {"name": "t", "source": "builtin", "parameters": {"n": 1}, "description": "d"}
    assert PruningRecord.from_dict({"steps": 1}).to_dict() == {"steps": 1}
    assert PruningRecord.from_dict({"steps": 1, "n_masked_nodes": 9, "k": None}).to_dict() == {"steps": 1, "n_masked_nodes": 9, "k": None}
    with pytest.raises(InputError, match="loss"):
        Circuit.from_dict({**json.loads((Path(__file__).parent / "fixtures" / "circuit_0.1.0.json").read_text()),
                           "losses": {"fulll": 0.1}})
