"""A planted circuit: a hand-built model where a known set of 7 nodes solves a synthetic task
while other nodes carry distracting signal; pruning must recover exactly that set.

Tokens: A or B, then six fillers (F+ or F-, at random), then Q; the answer after Q is YA
for A and YB for B. Residual channels: c0 = sign of A/B, c1 = "is A/B", c2 = "is Q",
c3 = the answer channel, c4 = "is filler", c5 = filler sign, c6/c7 = MLP scratch and a
constant. Planted mechanism (head 0): q reads c2, k reads c1, so Q attends to the first
token; v reads c0, the output projection writes it to c3, the unembedding reads c3.
Distractors: head 1 attends to the fillers and writes their random sign to c5, which the
unembedding also reads (noise that hurts the task); the MLP reacts to fillers and the
constant channel and writes to c6/c7 (activity irrelevant to the answer).
"""

from __future__ import annotations

import random

import pytest
import torch

from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.prune import CircuitEvaluator, PruneConfig, ablation_values, prune
from sparsecircuits.tasks import EncodedPair, Pair, Task, make_batch

A, B, FP, FM, Q, YA, YB, OTHER = range(8)
PLANTED = {
    "blocks.0.attn.hook_in": [0, 1, 2],
    "blocks.0.attn.hook_q": [0],
    "blocks.0.attn.hook_k": [0],
    "blocks.0.attn.hook_v": [0],
    "blocks.0.hook_attn_out": [3],
}


def planted_model() -> SparseTransformer:
    cfg = ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=8, vocab_size=8, n_ctx=8, bias=False)
    model = SparseTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.zero_()
        emb = model.embed.weight
        emb[A] = torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 1])
        emb[B] = torch.tensor([-1.0, 1, 0, 0, 0, 0, 0, 1])
        emb[FP] = torch.tensor([0.0, 0, 0, 0, 1, 1, 0, 1])
        emb[FM] = torch.tensor([0.0, 0, 0, 0, 1, -1, 0, 1])
        emb[Q] = torch.tensor([0.0, 0, 1, 0, 0, 0, 0, 1])
        qkv = model.blocks[0].attn.c_attn.weight  # rows: q (8), k (8), v (8); head h = rows 4h..4h+3
        qkv[0, 2], qkv[8, 1], qkv[16, 0] = 1.0, 1.0, 1.0  # head 0: q<-c2, k<-c1, v<-c0
        qkv[4, 2], qkv[12, 4], qkv[20, 5] = 3.0, 3.0, 0.5  # head 1: q<-c2, k<-c4, v<-c5
        proj = model.blocks[0].attn.c_proj.weight
        proj[3, 0], proj[5, 4] = 2.0, 2.0
        fc, out = model.blocks[0].mlp.c_fc.weight, model.blocks[0].mlp.c_proj.weight
        fc[0, 7], fc[1, 4], fc[2, 5] = 1.0, 1.0, 1.0
        out[6, 0], out[6, 1], out[7, 2] = 1.0, 1.0, 0.5
        unembed = model.unembed.weight
        unembed[YA, 3], unembed[YB, 3], unembed[YA, 5], unembed[YB, 5] = 0.8, -0.8, 0.8, -0.8
        unembed[OTHER, 6] = 1.0
    return model.eval()


class PlantedTask(Task):
    """Pairs of token ids built directly (no tokenizer)."""

    def generate(self, tokenizer, n: int, seed: int = 0, split: str = "train") -> list[EncodedPair]:
        rng = random.Random(f"{seed}-{split}")
        pairs = []
        for _ in range(n):
            fill = tuple(rng.choice([FP, FM]) for _ in range(6))
            pairs.append(EncodedPair(Pair("A...Q", "YA", "B...Q", "YB"), (A, *fill, Q), YA, (B, *fill, Q), YB))
        return pairs


def _node_set(nodes: dict[str, list[int]]) -> set[tuple[str, int]]:
    return {(h, i) for h, idx in nodes.items() for i in idx}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_pruning_recovers_the_planted_circuit(seed: int) -> None:
    model = planted_model()
    config = PruneConfig(steps=150, ablation="zero", seed=seed, n_train_pairs=512, n_eval_pairs=128)
    result = prune(model, PlantedTask(name="planted"), None, config, progress=False)
    circuit = result.circuit
    got, want = _node_set(circuit.nodes), _node_set(PLANTED)
    precision, recall = len(got & want) / len(got), len(got & want) / len(want)
    print(f"planted circuit, seed {seed}: precision {precision:.2f}, recall {recall:.2f}, losses {circuit.losses}")
    assert (precision, recall) == (1.0, 1.0), (sorted(got - want), sorted(want - got))
    assert circuit.target_met and circuit.pruning.k == 7
    losses = circuit.losses
    assert losses.circuit <= 0.15 < losses.ablate_all
    assert losses.circuit < losses.full  # cutting the noisy head helps
    assert losses.circuit_ablated > 0.6  # the planted nodes are necessary
    assert losses.circuit_calibrated <= losses.circuit
    # every planted weight is an edge: c2->q0, c1->k0, c0->v0, v0->attn_out 3
    assert sorted((e.src, e.dst) for e in circuit.edges) == sorted([
        ("blocks.0.attn.hook_in:2", "blocks.0.attn.hook_q:0"),
        ("blocks.0.attn.hook_in:1", "blocks.0.attn.hook_k:0"),
        ("blocks.0.attn.hook_in:0", "blocks.0.attn.hook_v:0"),
        ("blocks.0.attn.hook_v:0", "blocks.0.hook_attn_out:3"),
    ])
    assert {(e.src, e.dst) for e in circuit.unembed_links} == {
        ("ln_final.hook_normalized:3", "unembed:5"), ("ln_final.hook_normalized:3", "unembed:6"),
    }
    # the bisection curve brackets the answer: k=7 meets the target, k=6 does not
    curve = {p["k"]: p["loss"] for p in circuit.curve}
    assert curve[7] <= 0.15 < curve[6]


def test_pruning_is_deterministic_for_a_seed() -> None:
    model = planted_model()
    config = PruneConfig(steps=20, ablation="zero", seed=4, n_train_pairs=64, n_eval_pairs=16)
    first = prune(model, PlantedTask(name="planted"), None, config, progress=False)
    second = prune(model, PlantedTask(name="planted"), None, config, progress=False)
    for hook in first.tau:
        assert torch.equal(first.tau[hook], second.tau[hook])
    assert first.circuit.to_dict() == second.circuit.to_dict()


def test_pruning_a_subset_of_locations_keeps_the_others_whole() -> None:
    model = planted_model()
    config = PruneConfig(steps=40, ablation="zero", locations=("attn_v", "attn_out"), n_train_pairs=128, n_eval_pairs=32)
    circuit = prune(model, PlantedTask(name="planted"), None, config, progress=False).circuit
    assert set(circuit.masks) == {"blocks.0.attn.hook_v", "blocks.0.hook_attn_out"}
    assert circuit.nodes["blocks.0.attn.hook_q"] == list(range(8))
    assert circuit.nodes["blocks.0.mlp.hook_post"] == list(range(8))
    assert 0 in circuit.nodes["blocks.0.attn.hook_v"] and 3 in circuit.nodes["blocks.0.hook_attn_out"]
    assert circuit.pruning.n_masked_nodes == 16


@pytest.mark.slow
def test_frozen_norms_recover_the_planted_circuit_without_rescaling() -> None:
    model = planted_model()
    config = PruneConfig(steps=30, ablation="zero", freeze_norms=True, n_train_pairs=256, n_eval_pairs=64)
    circuit = prune(model, PlantedTask(name="planted"), None, config, progress=False).circuit
    assert circuit.pruning.get("freeze_norms") is True
    assert _node_set(circuit.nodes) == _node_set(PLANTED)
    # the same circuit evaluated both ways: with frozen scales the final norm cannot
    # enlarge the answer channel after the other channels were cut, so the loss is higher
    batch = make_batch(PlantedTask(name="planted").generate(None, 64, seed=0, split="test"))
    values = ablation_values(model, "zero")
    keep = circuit.keep_masks(model)
    frozen = CircuitEvaluator(model, batch, values, freeze_norms=True).loss(keep)
    free = CircuitEvaluator(model, batch, values, freeze_norms=False).loss(keep)
    assert frozen == pytest.approx(circuit.losses.circuit, rel=1e-5)
    assert free < frozen
