"""The verdict on a circuit: the checks of the metrics and control results against the
thresholds, aggregated into a status (aggregation only: nothing here runs a model).

Thresholds are documented in docs/validation.md. Status:
- `insufficient`: the circuit alone does not reach the target loss on held-out pairs;
- `suspect`: it does, but a check failed (necessity, a circuit doing the task clearly
  better than the full model, a control reaching the target at a comparable size, seed
  disagreement, low activation agreement);
- `ok`: every check that ran passed. Controls that did not run are listed as not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sparsecircuits.validate.controls import CONTROLS
from sparsecircuits.validate.metrics import Metrics
from sparsecircuits.validate.records import Check, Verdict


@dataclass(frozen=True)
class Thresholds:
    """The verdict's thresholds (docs/validation.md explains each)."""

    sufficiency_margin: float = 0.05  # circuit loss <= target_loss + margin on held-out pairs
    necessity_min: float = 0.5  # ablating the circuit moves the loss >= half way to chance
    below_full_max: float = 0.05  # circuit loss may undercut the full model's by at most this
    random_circuits_max_fraction: float = 0.05  # share of random same-size circuits reaching target
    control_size_ratio: float = 2.0  # a control circuit at most this many times larger is "comparable"
    seed_jaccard_min: float = 0.5  # mean node-set Jaccard between seeds
    activation_agreement_min: float = 0.7  # mean per-node correlation with the full model

    def to_dict(self) -> dict[str, float]:
        """JSON-ready thresholds."""
        return asdict(self)


def _check(name: str, passed: bool, value: Any, threshold: Any, if_passed: str, if_failed: str) -> Check:
    """One check; its reason states the finding in the wording of its outcome."""
    return Check(name, bool(passed), value, threshold, if_passed if passed else if_failed)


def _comparable_control(name: str, result: Mapping[str, Any], t: Thresholds) -> Check:
    ratio = result.get("size_ratio")
    hit = bool(result["reached_target"]) and ratio is not None and ratio <= t.control_size_ratio
    what = {"random_init": "a randomly initialized model", "nonsense_task": "a nonsense task"}[name]
    size = f"{result['n_nodes']} nodes, {ratio:.2f}x the circuit" if ratio is not None else "n/a"
    if result["reached_target"]:
        outcome = f"reaches the target loss only at more than {t.control_size_ratio:g}x the circuit's size"
    else:
        outcome = "does not reach the target loss"
    return _check(
        name,
        not hit,
        ratio,
        t.control_size_ratio,
        f"pruning {what} {outcome} ({size})",
        f"pruning {what} also reaches the target loss at a comparable size ({size})",
    )


def _sufficiency_check(metrics: Metrics, target_loss: float, t: Thresholds) -> Check:
    """Does the circuit alone reach the target loss (plus margin) on held-out pairs?"""
    return _check(
        "sufficiency",
        metrics.circuit <= target_loss + t.sufficiency_margin,
        metrics.circuit,
        target_loss + t.sufficiency_margin,
        f"the circuit alone has loss {metrics.circuit:.3f} on held-out pairs, within the "
        f"target {target_loss} + margin {t.sufficiency_margin}",
        f"the circuit alone has loss {metrics.circuit:.3f} on held-out pairs, above the "
        f"target {target_loss} + margin {t.sufficiency_margin}",
    )


def _necessity_check(necessity: float, t: Thresholds) -> Check:
    """Does ablating only the circuit move the loss far enough towards chance?"""
    return _check(
        "necessity",
        necessity >= t.necessity_min,
        necessity,
        t.necessity_min,
        f"ablating only the circuit moves the loss {necessity:.0%} of the way to "
        f"chance (at least {t.necessity_min:.0%} required)",
        f"ablating only the circuit moves the loss {necessity:.0%} of the way to "
        "chance: other nodes can also do the task",
    )


def _not_better_than_full_check(metrics: Metrics, t: Thresholds) -> Check:
    """Is the circuit's loss not clearly below the full model's? (If it is, the ablation
    values are likely supplying the answer.)"""
    below_full = metrics.full - metrics.circuit
    return _check(
        "not_better_than_full",
        below_full <= t.below_full_max,
        below_full,
        t.below_full_max,
        f"the circuit's loss {metrics.circuit:.3f} does not undercut the full model's "
        f"{metrics.full:.3f} by more than {t.below_full_max}",
        f"the circuit's loss {metrics.circuit:.3f} is {below_full:.3f} below the full model's "
        f"{metrics.full:.3f}: the ablation values may be supplying the answer (compare zero "
        "ablation and frozen norms)",
    )


def _random_circuits_check(result: Mapping[str, Any], t: Thresholds) -> Check:
    """Do few enough random circuits of the same size reach the target loss?"""
    fraction = result["fraction_reaching_target"]
    return _check(
        "random_circuits",
        fraction <= t.random_circuits_max_fraction,
        fraction,
        t.random_circuits_max_fraction,
        f"{fraction:.0%} of random circuits of the same size reach "
        f"the target loss (at most {t.random_circuits_max_fraction:.0%} allowed)",
        f"{fraction:.0%} of random circuits of the same size reach the target loss",
    )


def _seeds_check(result: Mapping[str, Any], t: Thresholds) -> Check:
    """Does pruning with other seeds find similar nodes?"""
    jaccard = result["mean_jaccard"]
    return _check(
        "seeds",
        jaccard >= t.seed_jaccard_min,
        jaccard,
        t.seed_jaccard_min,
        f"pruning with other seeds finds similar nodes (mean Jaccard {jaccard:.2f})",
        f"pruning with other seeds finds different nodes (mean Jaccard {jaccard:.2f})",
    )


def _activation_agreement_check(result: Mapping[str, Any], t: Thresholds) -> Check:
    """Do the circuit's nodes behave as they do in the full model?"""
    mean = result["mean"]
    below = f"{result['fraction_below']:.0%} of nodes below {result['node_min']}"
    return _check(
        "activation_agreement",
        mean >= t.activation_agreement_min,
        mean,
        t.activation_agreement_min,
        f"circuit nodes behave as in the full model (mean correlation {mean:.2f}; {below})",
        f"circuit nodes behave differently than in the full model (mean correlation "
        f"{mean:.2f}; {below})",
    )


def _checks(
    metrics: Metrics,
    controls: Mapping[str, Mapping[str, Any]],
    target_loss: float,
    t: Thresholds,
) -> list[Check]:
    """Every check that can be assessed, sufficiency first (the status depends on it)."""
    checks = [_sufficiency_check(metrics, target_loss, t)]
    if metrics.necessity is not None:
        checks.append(_necessity_check(metrics.necessity, t))
    checks.append(_not_better_than_full_check(metrics, t))
    if "random_circuits" in controls:
        checks.append(_random_circuits_check(controls["random_circuits"], t))
    for name in ("random_init", "nonsense_task"):
        if name in controls:
            checks.append(_comparable_control(name, controls[name], t))
    if "seeds" in controls:
        checks.append(_seeds_check(controls["seeds"], t))
    if "activation_agreement" in controls and controls["activation_agreement"]["mean"] is not None:
        checks.append(_activation_agreement_check(controls["activation_agreement"], t))
    return checks


def _notes(metrics: Metrics, controls: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Findings that are not pass/fail: checks that could not be assessed, and what the
    frozen_norms / zero_ablation controls found under the other setting."""
    notes: list[str] = []
    if metrics.necessity is None:
        notes.append("necessity not assessed: the full model itself is at chance on the task")
    if "activation_agreement" in controls and controls["activation_agreement"]["mean"] is None:
        notes.append("activation agreement not assessed: the circuit has no nodes")
    for name, key in (("frozen_norms", "circuit_loss_other_mode"), ("zero_ablation", "circuit_loss_other_ablation")):
        if name in controls:
            c = controls[name]
            mode = f"freeze_norms={c['freeze_norms']}" if name == "frozen_norms" else f"{c['ablation']} ablation"
            ratio = f"{c['size_ratio']:.2f}x" if c["size_ratio"] is not None else "n/a"
            notes.append(
                f"with {mode}: this circuit's loss is {c[key]:.3f}; pruning again gives "
                f"{c['n_nodes']} nodes ({ratio} the circuit's), "
                + ("reaching" if c["reached_target"] else "not reaching")
                + " the target"
            )
    return notes


def verdict(
    metrics: Metrics,
    controls: Mapping[str, Mapping[str, Any]],
    target_loss: float,
    thresholds: Thresholds | None = None,
) -> Verdict:
    """Status ok | suspect | insufficient, the failed checks' reasons, notes and every check."""
    t = thresholds or Thresholds()
    checks = _checks(metrics, controls, target_loss, t)
    failed = [c for c in checks if not c.passed]
    if not checks[0].passed:
        status = "insufficient"
    elif failed:
        status = "suspect"
    else:
        status = "ok"
    not_run = [n for n in CONTROLS if n not in controls]
    return Verdict(status, [c.reason for c in failed], _notes(metrics, controls), checks, not_run, t.to_dict())
