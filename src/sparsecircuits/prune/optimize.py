"""Optimizing the node masks: task loss + k_coef x (number of kept nodes), with AdamW.

docs/method.md section 4. The forward pass runs the whole prompt, but only each prompt's last
position is unembedded (`SparseTransformer.last_logits`), which is all the task loss reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from tqdm.auto import tqdm

from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS, SparseTransformer
from sparsecircuits.model.hooks import HookPoint
from sparsecircuits.model.interventions import frozen_norms, last_norm_stats
from sparsecircuits.model.locations import node_hooks
from sparsecircuits.prune.ablation import ABLATIONS
from sparsecircuits.prune.masks import NodeMasks
from sparsecircuits.tasks import TaskBatch, task_loss

TIE_BREAKS = ("index", "attribution")


@dataclass
class PruneConfig:
    """Every pruning setting (docs/method.md section 4 defaults unless noted).

    CPU defaults, chosen to prune one task of the `small-sparse` preset within a minute on 2
    cores (benchmarks/RESULTS.md, prune section): `steps` 150 (paper: ~2000), `batch_pairs`
    32 (paper: 64) and `lr` 1e-2 (paper: 3e-3). Adam moves each tau by at most about lr per
    step, so at 1e-2 a node can go from its initial 0.1 to either clamp within ~110 steps;
    the masks only have to rank the nodes, and the bisection then picks the smallest top-k
    set that meets the target on held-out pairs. Measured on the small preset (a sparse
    model at 500 training steps): 4x the steps gave larger circuits, not smaller (94 -> 134
    and 126 -> 173 nodes on two tasks, same held-out loss); on a dense model, 400 steps x 64
    pairs at lr 3e-3 gave 17% fewer nodes than the defaults (133 vs 160) for 3x the time.
    For the paper's setting pass steps=2000, batch_pairs=64, lr=3e-3.
    `k_coef` multiplies the raw number of kept nodes (not a fraction), as in the paper: with
    Adam, a node is pruned when its task-loss gradient is smaller than k_coef, a per-node
    threshold that does not depend on how many nodes the model has; keeping all 2,816 nodes
    of the small preset costs 0.28 nats. `temperature` is the sigmoid temperature of the
    surrogate gradient. Bisection and the reported losses use `n_eval_pairs` held-out (test
    split) pairs; the masks are trained on `n_train_pairs` train-split pairs.
    `method` picks the discovery method (`prune.methods.METHODS`; the mask settings above
    are the `masks` method's), `minimal` ends any method with the minimality pass.
    """

    locations: tuple[str, ...] = LOCATIONS
    steps: int = 150
    batch_pairs: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    k_coef: float = 1e-4
    init_tau: float = 0.1
    init_noise: float = 0.01
    temperature: float = 1.0
    target_loss: float = 0.15
    ablation: str = "mean"
    calibrate_steps: int = 16
    freeze_norms: bool = False
    seed: int = 0
    n_train_pairs: int = 1024
    n_eval_pairs: int = 128
    method: str = "masks"  # a discovery method of prune.methods.METHODS
    tie_break: str = "index"  # masks: order equal taus by node index or by attribution
    ig_steps: int = 8  # attribution_ig: points on the integration path
    minimal: bool = True  # end with the minimality pass (drop nodes the circuit does not need)
    faithful_coef: float = 0.0  # masks: penalty per kept node on its activation drift from the full model

    def __post_init__(self) -> None:
        self.locations = tuple(self.locations)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        unknown = [a for a in self.locations if a not in LOCATIONS]
        if unknown or not self.locations:
            raise InputError(
                f"PruneConfig.locations {list(self.locations)} must be a non-empty subset of "
                + ", ".join(LOCATIONS)
            )
        from sparsecircuits.prune.methods import METHODS  # the registry imports this module

        if self.method not in METHODS:
            raise InputError(f"PruneConfig.method {self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        if self.tie_break not in TIE_BREAKS:
            raise InputError(f"PruneConfig.tie_break {self.tie_break!r} is unknown; choose one of {', '.join(TIE_BREAKS)}")
        if self.ablation not in ABLATIONS:
            raise InputError(
                f"PruneConfig.ablation {self.ablation!r} is unknown; choose one of {', '.join(ABLATIONS)}"
            )
        for name in ("steps", "batch_pairs", "n_train_pairs", "n_eval_pairs", "ig_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"PruneConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.calibrate_steps, int) or self.calibrate_steps < 0:
            raise InputError(f"PruneConfig.calibrate_steps must be >= 0, got {self.calibrate_steps!r}")
        for name in ("lr", "temperature", "target_loss"):
            if not getattr(self, name) > 0:
                raise InputError(f"PruneConfig.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("k_coef", "weight_decay", "init_noise", "faithful_coef"):
            if getattr(self, name) < 0:
                raise InputError(f"PruneConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not -1.0 <= self.init_tau <= 1.0:
            raise InputError(f"PruneConfig.init_tau must be in [-1, 1], got {self.init_tau!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["locations"] = list(self.locations)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneConfig:
        """Build from a dict (unknown keys are an error naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown PruneConfig field(s): {', '.join(unknown)}")
        return cls(**d)


MAX_CHUNKS = 4  # length groups per batch at most (see length_chunks)
CHUNK_COST = 128  # fixed cost of one forward + backward pass, in padded token positions


def select_pairs(batch: TaskBatch, idx: torch.Tensor) -> TaskBatch:
    """The sub-batch of pairs `idx` (A rows and B rows), trimmed to its longest prompt."""
    n = len(batch) // 2
    rows = torch.cat([idx, idx + n])
    last = batch.last_pos[rows]
    width = int(last.max()) + 1
    return TaskBatch(batch.tokens[rows, :width], last, batch.correct[rows], batch.wrong[rows])


def length_chunks(batch: TaskBatch, idx: torch.Tensor, max_chunks: int = MAX_CHUNKS) -> list[torch.Tensor]:
    """Split pairs `idx` into at most `max_chunks` groups of similar prompt length.

    Pairs are sorted by length and cut into equal-count groups; the number of groups is the
    one with the fewest padded positions plus `CHUNK_COST` positions per group (one forward
    pass's fixed cost). The task loss is a mean over rows, so the size-weighted sum of the
    groups' losses, and its gradient, equal the whole batch's.
    """
    n = len(batch) // 2
    length = torch.maximum(batch.last_pos[idx], batch.last_pos[idx + n]) + 1
    order = torch.sort(length, stable=True).indices
    best: list[torch.Tensor] = [order]
    best_cost = float("inf")
    for c in range(1, min(max_chunks, len(idx)) + 1):
        groups = torch.tensor_split(order, c)
        cost = sum(len(g) * int(length[g].max()) for g in groups) + c * CHUNK_COST
        if cost < best_cost:
            best, best_cost = list(groups), cost
    return [idx[g] for g in best]


@contextmanager
def frozen_weights(model: SparseTransformer) -> Iterator[SparseTransformer]:
    """Turn off gradients of the model's own parameters (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def full_model_norms(
    model: SparseTransformer, batch: TaskBatch, enabled: bool = True
) -> Iterator[SparseTransformer]:
    """With `enabled`, pin every norm's scale to the full model's on `batch` (recorded on
    entry, so enter this before attaching masks or ablations); otherwise do nothing."""
    if not enabled:
        yield model
        return
    stats = last_norm_stats(model, batch.tokens, batch.last_pos)
    with frozen_norms(model, stats):
        yield model


@torch.no_grad()
def _activations(model: SparseTransformer, hooks: list[str], batch: TaskBatch) -> dict[str, torch.Tensor]:
    """The unmasked model's activations at `hooks`, in the shapes the last-position pass sees."""
    acts: dict[str, torch.Tensor] = {}

    def save(x: torch.Tensor, hook: HookPoint) -> None:
        acts[hook.name] = x.detach()

    with model.hooks([(h, save) for h in hooks]):
        model.last_logits(batch.tokens, batch.last_pos)
    return acts


@contextmanager
def _drift(
    model: SparseTransformer, hooks: list[str], reference: Mapping[str, torch.Tensor] | None,
    gates: list[torch.Tensor], batch: TaskBatch,
) -> Iterator[list[torch.Tensor]]:
    """Collects, per hook, sum over kept nodes (gate) of the node's mean squared drift from
    `reference` over real positions, in units of its variance there (nothing without a
    reference). Attached after the masks, so it reads the masked activations."""
    terms: list[torch.Tensor] = []
    if reference is None:
        yield terms
        return
    gate_of = dict(zip(hooks, gates, strict=True))

    def read(x: torch.Tensor, hook: HookPoint) -> None:
        ref = reference[hook.name].flatten(2)
        # every position up to the prompt's last (the last block's later hooks see only that one)
        real = torch.arange(x.shape[1]).unsqueeze(0) <= batch.last_pos.unsqueeze(1)
        diff = (x.flatten(2) - ref)[real]
        scale = ref[real].var(dim=0, unbiased=False) + 1e-6
        terms.append((gate_of[hook.name] * diff.pow(2).mean(dim=0) / scale).sum())

    with model.hooks([(h, read) for h in hooks]):
        yield terms


def optimize_masks(
    model: SparseTransformer,
    train: TaskBatch,
    values: Mapping[str, torch.Tensor],
    config: PruneConfig,
    progress: bool = True,
) -> tuple[NodeMasks, list[dict[str, float]]]:
    """Train the node masks on `train`; returns the masks and a loss history.

    Each step draws `batch_pairs` pairs (seeded), runs the masked model and minimizes
    task loss + k_coef x (kept nodes) with AdamW; tau is clamped to [-1, 1] after each step.
    With `faithful_coef`, each kept node also pays its activation drift from the full model
    (mean squared difference over real positions, in units of its variance), so that the
    circuit's nodes keep carrying the signals they carry in the full model.
    """
    gen = torch.Generator().manual_seed(config.seed)
    masks = NodeMasks(
        model,
        node_hooks(model, config.locations),
        init=config.init_tau,
        noise=config.init_noise,
        temperature=config.temperature,
        generator=gen,
    )
    opt = torch.optim.AdamW(
        masks.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    n_pairs = len(train) // 2
    history: list[dict[str, float]] = []
    log_every = max(1, config.steps // 50)
    bar = tqdm(range(config.steps), desc="pruning", unit="step", disable=not progress, leave=False)
    with frozen_weights(model):
        for step in bar:
            idx = torch.randint(n_pairs, (min(config.batch_pairs, n_pairs),), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss_task = torch.zeros(())
            for part in length_chunks(train, idx):
                batch = select_pairs(train, part)
                reference = _activations(model, masks.hooks, batch) if config.faithful_coef else None
                with (
                    full_model_norms(model, batch, config.freeze_norms),
                    masks.applied(model, values) as gates,
                    _drift(model, masks.hooks, reference, gates, batch) as drift,
                ):
                    logits = model.last_logits(batch.tokens, batch.last_pos)
                part_loss = task_loss(logits, batch) + config.faithful_coef * sum(drift)
                part_loss = part_loss * (len(part) / len(idx))
                part_loss.backward()
                loss_task = loss_task + part_loss.detach()
            kept = torch.stack([g.sum() for g in masks.gates()]).sum()
            (config.k_coef * kept).backward()
            opt.step()
            masks.clamp_()
            if step % log_every == 0 or step == config.steps - 1:
                record = {"step": step, "task_loss": float(loss_task.detach()), "kept": int(kept.detach())}
                history.append(record)
                bar.set_postfix(loss=f"{record['task_loss']:.3f}", kept=record["kept"])
    return masks, history
