"""The discovery methods: one table (`METHODS`), each entry scoring every candidate node of
the same node graph with the same ablation values.

A method returns `NodeScores`: a score per node (higher = more important, so kept first)
and optionally a hint (a k expected to meet the target). The shared discretize step in
`prune.pipeline` then ranks the nodes by score, bisects k to the target loss on held-out
pairs, calibrates and builds the circuit, which records the method and its settings
(`pruning.method`). Adding a method is one `DiscoveryMethod` row here.

- `masks`: the paper's learned node masks (scores = tau); ties (taus clamped at the same
  value) are broken by attribution when `tie_break="attribution"`.
- `attribution`: attribution patching at node level, |grad . (activation - ablation
  value)| of the answer margin, one forward and backward pass over the train pairs.
- `attribution_ig`: the same with the gradient averaged over `ig_steps` points on the
  straight line from every node ablated to none ablated (integrated gradients).
- `acdc`: greedy elimination from the output backwards: a node is dropped when the task
  loss on the train pairs stays at most the target without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sparsecircuits.prune.attribution import attribution_scores, tie_broken
from sparsecircuits.prune.greedy import acdc_scores
from sparsecircuits.prune.optimize import optimize_masks
from sparsecircuits.prune.scores import NodeScores, ScoreInputs


@dataclass(frozen=True)
class DiscoveryMethod:
    """One discovery method: its name, what it does, the PruneConfig fields it reads (besides
    the shared ones) and the function that scores the nodes."""

    name: str
    description: str
    settings: tuple[str, ...]
    score: Callable[[ScoreInputs], NodeScores]


def _masks(inputs: ScoreInputs) -> NodeScores:
    masks, history = optimize_masks(inputs.model, inputs.train, inputs.values, inputs.config, progress=inputs.progress)
    tau = masks.tau_dict()
    hint = sum(int((t > 0).sum()) for t in tau.values())
    if inputs.config.tie_break == "attribution":
        tau = tie_broken(tau, inputs)
    return NodeScores(tau, hint, history)


def _attribution(inputs: ScoreInputs) -> NodeScores:
    return NodeScores(attribution_scores(inputs, steps=1))


def _attribution_ig(inputs: ScoreInputs) -> NodeScores:
    return NodeScores(attribution_scores(inputs, steps=inputs.config.ig_steps))


def _acdc(inputs: ScoreInputs) -> NodeScores:
    scores, kept = acdc_scores(inputs)
    return NodeScores(scores, kept)


METHODS: dict[str, DiscoveryMethod] = {
    m.name: m
    for m in (
        DiscoveryMethod("masks", "the paper's learned node masks (AdamW on task loss + k_coef x kept nodes)",
                        ("steps", "batch_pairs", "lr", "weight_decay", "betas", "k_coef", "init_tau",
                         "init_noise", "temperature", "tie_break", "faithful_coef"), _masks),
        DiscoveryMethod("attribution", "attribution patching: |grad . (activation - ablation value)| of the "
                        "answer margin, one forward and backward pass", (), _attribution),
        DiscoveryMethod("attribution_ig", "attribution with integrated gradients from all-ablated to the "
                        "full model", ("ig_steps",), _attribution_ig),
        DiscoveryMethod("acdc", "greedy elimination from the output backwards while the loss stays at the "
                        "target", (), _acdc),
    )
}


def get_method(name: str) -> DiscoveryMethod:
    """The method of that name; KeyError lists the methods."""
    if name not in METHODS:
        raise KeyError(f"unknown discovery method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
