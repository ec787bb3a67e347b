"""The locations table is the one description of node locations: a made-up row (plus a
hook point the forward pass already has) is followed by widths, edges, ablation, masks and
the report payload without touching any other code."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.checkpoint import model_fingerprint
from sparsecircuits.circuits import Circuit, compute_edges, residual_links
from sparsecircuits.model import ModelConfig, SparseTransformer, locations
from sparsecircuits.model.interventions import ablate
from sparsecircuits.model.locations import NodeLocation, WeightSlice, all_node_hooks, node_width
from sparsecircuits.prune import NodeMasks
from sparsecircuits.report import build_report_data

# MLP pre-activations: a real hook point (`mlp.hook_pre`) that is not a node location.
MLP_PRE = NodeLocation(
    "mlp_pre", "blocks.{layer}.mlp.hook_pre", "neuron", lambda cfg: cfg.d_mlp, "d_mlp",
    "MLP pre-activations", (WeightSlice("mlp_in", "mlp.c_fc.weight"),),
)


@pytest.fixture
def with_mlp_pre(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = list(locations.NODE_LOCATIONS)
    rows.insert(rows.index(locations.get_location("mlp_neuron")), MLP_PRE)
    monkeypatch.setattr(locations, "NODE_LOCATIONS", tuple(rows))


def tiny() -> SparseTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=40, n_ctx=12)
    model = SparseTransformer(cfg).eval()
    with torch.no_grad():  # sparse weights, so that edges are a strict subset of all pairs
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(torch.rand_like(p) < 0.3)
    return model


def test_the_table_drives_the_paper_edges() -> None:
    model = tiny()
    nodes = {h: list(range(node_width(model, h))) for h in all_node_hooks(model)}
    edges = compute_edges(model, nodes)
    w = model.blocks[1].attn.c_attn.weight
    d = model.cfg.d_attn
    k_edges = {(e.src, e.dst) for e in edges if e.dst.startswith("blocks.1.attn.hook_k:")}
    rows, cols = w[d : 2 * d].nonzero(as_tuple=True)
    assert k_edges == {(f"blocks.1.attn.hook_in:{c}", f"blocks.1.attn.hook_k:{r}") for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}
    total = sum(int((model.blocks[i].get_parameter(p) != 0).sum()) for i in range(2)
                for p in ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"))
    assert len(edges) == total


def test_a_new_location_is_followed_everywhere(with_mlp_pre: None) -> None:
    model = tiny()
    assert "blocks.0.mlp.hook_pre" in all_node_hooks(model)
    assert node_width(model, "blocks.1.mlp.hook_pre") == 32
    assert model.resolve_hook_name("blocks.1.mlp_pre") == "blocks.1.mlp.hook_pre"
    nodes = {"blocks.1.mlp.hook_in": list(range(16)), "blocks.1.mlp.hook_pre": [3, 5, 7]}
    edges = compute_edges(model, nodes)
    w = model.blocks[1].mlp.c_fc.weight
    expected = {(f"blocks.1.mlp.hook_in:{c}", f"blocks.1.mlp.hook_pre:{r}")
                for r in (3, 5, 7) for c in range(16) if w[r, c] != 0}
    assert {(e.src, e.dst) for e in edges} == expected and expected
    assert residual_links(model, nodes) == []  # neither a read nor a write location

    keep = {"blocks.1.mlp.hook_pre": torch.zeros(32, dtype=torch.bool)}
    values = {"blocks.1.mlp.hook_pre": torch.full((32,), 0.5)}
    tokens = torch.randint(0, 40, (2, 6))
    with ablate(model, keep, values):
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.mlp.hook_pre")
    assert torch.all(cache["blocks.1.mlp.hook_pre"] == 0.5)
    masks = NodeMasks(model, ["blocks.1.mlp.hook_pre"])
    assert masks.n_nodes() == 32

    full = {h: list(range(node_width(model, h))) for h in all_node_hooks(model)}
    full["blocks.1.mlp.hook_pre"] = [3, 5, 7]
    circuit = Circuit(
        model={"path": None, "fingerprint": model_fingerprint(model)},
        task={"name": "single_double_quote", "source": "builtin", "parameters": {}},
        ablation="zero", target_loss=0.15, nodes=full, edges=compute_edges(model, full),
        losses={"full": 0.1, "circuit": 0.1}, seed=0, pruning={"steps": 1},
    )
    assert circuit.nodes_by_location()["mlp_pre"] == 3 + 32
    data = build_report_data(circuit, model)
    assert "mlp_pre" in data["locations"] and data["roles"]["mlp_pre"] == "neuron"
    shown = [n for n in data["nodes"] if n["alias"] == "mlp_pre" and n["layer"] == 1]
    assert sorted(n["index"] for n in shown) == [3, 5, 7]
    assert any(e["dst"] == "blocks.1.mlp.hook_pre:5" for e in data["edges"])
