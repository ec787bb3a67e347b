"""Logit calibration of a pruned circuit: a fitted scale and shift (docs/method.md section 4).

Only the two answer logits matter to the task loss, and a shift added to every logit
cancels there, so the shift is applied to the logit of each pair's A-side answer
(`target`): calibrated logits = scale x logits + shift x onehot(target). On A prompts this
moves the correct-minus-wrong margin by +shift, on B prompts by -shift, correcting a bias
toward one side; the scale corrects over- or under-confidence. Fitted with LBFGS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsecircuits.tasks import TaskBatch
from sparsecircuits.tasks.loss import answer_margins, margin_loss


@dataclass(frozen=True)
class Calibration:
    """Fitted scale and shift, with the task loss before and after."""

    scale: float
    shift: float
    loss_before: float
    loss_after: float

    def to_dict(self) -> dict[str, float]:
        """{"scale", "shift", "loss_before", "loss_after"}."""
        return {
            "scale": self.scale,
            "shift": self.shift,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
        }


def _margins(logits: torch.Tensor, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct-minus-wrong logit per row, and +1 for A rows / -1 for B rows."""
    margin = answer_margins(logits, batch).detach().double()
    n = logits.shape[0] // 2
    side = torch.cat([torch.ones(n), -torch.ones(logits.shape[0] - n)]).double()
    return margin, side


def calibrate(logits: torch.Tensor, batch: TaskBatch, steps: int = 16) -> Calibration:
    """Fit scale and shift of the final logits [M, V] to minimize the task loss on `batch`."""
    margin, side = _margins(logits, batch)
    before = float(margin_loss(margin).mean())
    if steps == 0:
        return Calibration(1.0, 0.0, before, before)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = margin_loss(params[0] * margin + params[1] * side).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        after = float(margin_loss(params[0] * margin + params[1] * side).mean())
    if not after <= before:  # LBFGS diverged or produced NaN: keep the identity
        return Calibration(1.0, 0.0, before, before)
    scale, shift = params.detach().tolist()
    return Calibration(scale, shift, before, after)


def apply_calibration(logits: torch.Tensor, batch: TaskBatch, calibration: Calibration) -> torch.Tensor:
    """The calibrated logits [M, V]: scale x logits + shift on each pair's A-side answer."""
    n = logits.shape[0] // 2
    target = torch.cat([batch.correct[:n], batch.wrong[n:]])
    out = logits * calibration.scale
    rows = torch.arange(logits.shape[0])
    out[rows, target] += calibration.shift
    return out
