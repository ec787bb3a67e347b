"""The discovery-method registry, each method on the planted model of test_prune_planted,
and greedy elimination (acdc, the minimality pass)."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.circuits import Circuit
from sparsecircuits.errors import InputError
from sparsecircuits.model.locations import node_width
from sparsecircuits.prune import PruneConfig, prune
from sparsecircuits.prune.greedy import eliminate
from sparsecircuits.prune.methods import METHODS, DiscoveryMethod
from sparsecircuits.prune.scores import NodeScores, ScoreInputs
from test_prune_planted import PLANTED, PlantedTask, _node_set, planted_model

FAST = dict(ablation="zero", n_train_pairs=128, n_eval_pairs=64, batch_pairs=32)


def _prune(**settings) -> Circuit:
    return prune(planted_model(), PlantedTask(name="planted"), None, PruneConfig(**{**FAST, **settings}),
                 progress=False).circuit


def _precision_recall(circuit: Circuit) -> tuple[float, float]:
    got, want = _node_set(circuit.nodes), _node_set(PLANTED)  # every location was pruned
    return len(got & want) / max(1, len(got)), len(got & want) / len(want)


def test_a_method_added_to_the_table_is_used_and_recorded(monkeypatch) -> None:
    """A made-up method that scores the planted nodes highest: the shared discretize step
    bisects to exactly them, and the circuit records the method."""
    calls: list[ScoreInputs] = []

    def oracle(inputs: ScoreInputs) -> NodeScores:
        calls.append(inputs)
        scores = {h: torch.zeros(node_width(inputs.model, h)) for h in inputs.hooks}
        for hook, idx in PLANTED.items():
            scores[hook][idx] = 1.0
        return NodeScores(scores)

    monkeypatch.setitem(METHODS, "oracle", DiscoveryMethod("oracle", "knows the answer", (), oracle))
    circuit = _prune(method="oracle")
    assert len(calls) == 1 and len(calls[0].train) == 2 * FAST["n_train_pairs"]
    assert _node_set(circuit.nodes) == _node_set(PLANTED)
    assert circuit.pruning.get("method") == "oracle" and circuit.to_dict()["pruning"]["method"] == "oracle"
    with pytest.raises(InputError, match="unknown; choose one of masks"):
        PruneConfig(method="nope")


@pytest.mark.parametrize("method", ["attribution", "attribution_ig", "acdc"])
def test_each_method_finds_the_planted_circuit(method: str) -> None:
    circuit = _prune(method=method, minimal=True)
    precision, recall = _precision_recall(circuit)
    assert (precision, recall) == (1.0, 1.0), (method, circuit.nodes)
    assert circuit.target_met and circuit.losses.circuit <= 0.15
    assert circuit.minimality["one_minimal"] is True


def test_attribution_scores_the_planted_nodes_above_the_rest() -> None:
    result = prune(planted_model(), PlantedTask(name="planted"), None, PruneConfig(**FAST, method="attribution"),
                   progress=False)
    scores = result.tau
    planted = [float(scores[h][i]) for h, idx in PLANTED.items() for i in idx]
    others = [float(s) for h, t in scores.items() for i, s in enumerate(t) if i not in PLANTED.get(h, [])]
    assert min(planted) > 0 and sorted(others)[-1] < max(planted)


def test_the_minimality_pass_records_each_nodes_loss_increase() -> None:
    """Ending the masks method with the minimality pass keeps the planted circuit, and each
    kept node's recorded loss increase takes the loss above the target."""
    circuit = _prune(method="masks", steps=150, minimal=True)
    record = circuit.minimality
    assert record is not None and record["one_minimal"] is True
    kept = {f"{h}:{i}" for h, idx in circuit.nodes.items() for i in idx}
    assert set(record["loss_increase"]) == kept
    assert all(circuit.losses.circuit + d > 0.15 for d in record["loss_increase"].values())
    assert Circuit.from_dict(circuit.to_dict()).minimality == record


def test_validation_re_prunes_with_the_circuits_own_method() -> None:
    """The controls that prune again read the circuit's pruning record: its method comes
    back, and a circuit of an earlier version (no method recorded) uses masks."""
    from sparsecircuits.validate import prune_config_of

    circuit = _prune(method="acdc")
    assert prune_config_of(circuit).method == "acdc"
    old = Circuit.from_dict({**circuit.to_dict(), "pruning": {k: v for k, v in circuit.to_dict()["pruning"].items()
                                                             if k != "method"}})
    assert prune_config_of(old).method == "masks"


def test_the_faithfulness_term_changes_the_masks_and_keeps_the_planted_circuit() -> None:
    """With faithful_coef, kept nodes pay their activation drift from the full model; on
    the planted model the circuit is still found, and the loss history differs (the term is
    active)."""
    plain = prune(planted_model(), PlantedTask(name="planted"), None, PruneConfig(**FAST, steps=60), progress=False)
    faithful = prune(planted_model(), PlantedTask(name="planted"), None,
                     PruneConfig(**FAST, steps=60, faithful_coef=0.05), progress=False)
    assert not all(torch.equal(plain.tau[h], faithful.tau[h]) for h in plain.tau)
    assert _node_set(faithful.circuit.nodes) >= _node_set(PLANTED)
    assert faithful.circuit.pruning.get("faithful_coef") == 0.05


def test_a_method_without_a_proposal_keeps_every_node_when_the_target_is_out_of_reach() -> None:
    """When no k meets the target (here: a target below what even the full model reaches),
    a scoring method that proposes no node set keeps every candidate, not none."""
    circuit = _prune(method="attribution", target_loss=1e-9, minimal=False)
    assert not circuit.target_met
    assert circuit.n_nodes == sum(node_width(planted_model(), h) for h in circuit.nodes)


class _SetLoss:
    """An evaluator whose loss is 0 when every needed node is kept and each missing needed
    node adds 1; it counts its evaluations."""

    def __init__(self, needed: set[int]) -> None:
        self.needed, self.calls = needed, 0

    def loss(self, keep: dict[str, torch.Tensor]) -> float:
        self.calls += 1
        return float(sum(not bool(keep["h"][i]) for i in self.needed))


def test_elimination_keeps_exactly_the_needed_nodes() -> None:
    needed = {3, 40, 41, 97}
    evaluator = _SetLoss(needed)
    keep = {"h": torch.ones(100, dtype=torch.bool)}
    order = [("h", i) for i in range(100)]
    kept, dropped = eliminate(evaluator, keep, order, threshold=0.5)  # type: ignore[arg-type]
    assert set(kept["h"].nonzero().flatten().tolist()) == needed
    assert sorted(i for _, i in dropped) == sorted(set(range(100)) - needed)
    assert keep["h"].all()  # the input flags are not modified
    assert evaluator.calls == 100  # one evaluation per visited node
