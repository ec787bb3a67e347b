"""Circuit reuse: node and edge overlap between hand-made circuits of the planted model, with
the expected Jaccards and shares counted from the chosen node sets."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from planted_model import PLANTED_NODES, MarkerTask, circuit_from_nodes, planted_model
from sparsecircuits.circuits import Circuit, reuse_from_folders, reuse_matrices
from sparsecircuits.errors import InputError
from sparsecircuits.prune import PruneConfig

# every location is pruned, so a circuit holds exactly the nodes listed (none elsewhere)
CONFIG = PruneConfig(ablation="zero")
SMALL = {"attn_in": [0], "attn_v": [0], "attn_out": [4]}  # a subset of the planted circuit
DECOY = {"attn_in": [2, 5], "attn_q": [4], "attn_k": [4], "attn_v": [4], "attn_out": [5],
         "mlp_in": [5], "mlp_neuron": [0], "mlp_out": [6]}  # head 1 and the decoy neuron: disjoint
MIXED = {"attn_in": [0, 1, 2], "attn_v": [0, 4], "attn_out": [4, 5]}  # part planted, part decoy


def _size(nodes: dict[str, list[int]]) -> int:
    return sum(len(v) for v in nodes.values())


def _common(a: dict[str, list[int]], b: dict[str, list[int]]) -> int:
    return sum(len(set(a.get(k, [])) & set(b.get(k, []))) for k in set(a) | set(b))


@pytest.fixture(scope="module")
def circuits() -> dict[str, Circuit]:
    model = planted_model()
    chosen = {"planted": PLANTED_NODES, "small": SMALL, "decoy": DECOY, "mixed": MIXED, "empty": {}}
    return {name: circuit_from_nodes(model, nodes, MarkerTask(name), CONFIG) for name, nodes in chosen.items()}


def test_matrices_match_the_hand_counted_overlaps(circuits):
    r = reuse_matrices(circuits)
    assert r["tasks"] == ["planted", "small", "decoy", "mixed", "empty"]
    assert r["n_nodes"] == [7, 3, 9, 7, 0] == [c.n_nodes for c in circuits.values()]
    # planted: in0->v0, in1->q0, in3->k0, v0->out4; small keeps in0->v0->out4; mixed adds in2 and v4
    # (the decoy's q/k read in2, its v reads in5: none of those edges is in mixed) and out5 <- v4
    assert r["n_edges"] == [4, 2, 6, 3, 0]
    nj, share, ej = r["node_jaccard"], r["node_share"], r["edge_jaccard"]
    assert share[1][0] == 1.0 and share[0][1] == pytest.approx(3 / 7)  # small is inside planted
    assert nj[0][1] == nj[1][0] == pytest.approx(3 / 7)
    assert nj[0][2] == share[0][2] == share[2][0] == ej[0][2] == 0.0  # planted and decoy are disjoint
    common = _common(PLANTED_NODES, MIXED)  # in0, in1, v0, out4
    assert common == 4
    assert nj[0][3] == pytest.approx(common / (7 + 7 - common))
    assert share[3][0] == pytest.approx(common / _size(MIXED)) and share[3][2] == pytest.approx(3 / 7)
    assert share[2][3] == pytest.approx(_common(DECOY, MIXED) / _size(DECOY)) == pytest.approx(3 / 9)
    assert ej[0][1] == pytest.approx(2 / 4)
    assert ej[0][3] == pytest.approx(2 / 5)  # in0->v0, v0->out4 shared; mixed adds out5 <- v4


def test_diagonal_symmetry_and_empty_circuits(circuits):
    r = reuse_matrices(circuits)
    n = len(r["tasks"])
    for key in ("node_jaccard", "edge_jaccard"):
        m = r[key]
        assert all(m[i][j] == m[j][i] for i in range(n) for j in range(n)), key
    for key in ("node_jaccard", "node_share", "edge_jaccard"):
        assert [r[key][i][i] for i in range(n - 1)] == [1.0] * (n - 1), key
    empty = n - 1
    assert r["node_share"][empty] == [None] * n  # the share of no nodes is undefined
    assert r["node_share"][0][empty] == 0.0  # none of planted's nodes is in the empty circuit
    assert r["node_jaccard"][empty][empty] is None and r["node_jaccard"][0][empty] == 0.0
    assert r["edge_jaccard"][empty][empty] is None
    assert json.loads(json.dumps(r, allow_nan=False)) == r


def test_circuits_of_different_models_are_refused(circuits):
    other = replace(circuits["small"], model={**circuits["small"].model, "fingerprint": "another-model"})
    with pytest.raises(InputError, match="different fingerprints.*another-model: small"):
        reuse_matrices({**circuits, "small": other})


def test_reuse_from_folders_reads_saved_circuits(circuits, tmp_path):
    folders = {}
    for name in ("mixed", "planted"):
        folders[name] = circuits[name].save(tmp_path / name)
    r = reuse_from_folders(folders)
    assert r["tasks"] == ["mixed", "planted"]
    assert r["node_share"] == [[1.0, pytest.approx(4 / 7)], [pytest.approx(4 / 7), 1.0]]
    assert r["fingerprint"] == circuits["planted"].model["fingerprint"]
    with pytest.raises(InputError, match="no circuit.json"):
        reuse_from_folders({"missing": tmp_path / "nowhere"})
