"""Pairs to batches, the two-sided binary task loss and accuracy, and task evaluation.

docs/method.md section 3: restrict the last position's logits to {target, alt};
loss = -1/2 [log p_A(target) + log p_B(alt)], averaged over pairs; chance is ln 2.
A batch holds the A prompts in rows 0..n-1 and the B prompts in rows n..2n-1, so the
mean over rows is exactly that loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from sparsecircuits.errors import InputError
from sparsecircuits.tasks.base import DEFAULT_TARGET_LOSS, EncodedPair, Task


@dataclass
class TaskBatch:
    """Right-padded prompts with, per row, the last prompt position and the two answers.

    Right padding is exact for a causal model: pad tokens come after every real token, so
    they never change the logits at `last_pos`.
    """

    tokens: torch.Tensor  # [M, T] long
    last_pos: torch.Tensor  # [M] long, index of each prompt's last token
    correct: torch.Tensor  # [M] long
    wrong: torch.Tensor  # [M] long

    def to(self, device: str | torch.device) -> TaskBatch:
        """This batch on `device`."""
        return TaskBatch(*(t.to(device) for t in (self.tokens, self.last_pos, self.correct, self.wrong)))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def make_batch(pairs: Sequence[EncodedPair], pad_id: int = 0) -> TaskBatch:
    """Batch `pairs`: rows 0..n-1 are the A prompts, rows n..2n-1 the B prompts."""
    if not pairs:
        raise InputError("no pairs to batch; generate at least one pair")
    prompts = [p.prompt_ids for p in pairs] + [p.alt_prompt_ids for p in pairs]
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, ids in enumerate(prompts):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    targets = [p.target_id for p in pairs]
    alts = [p.alt_id for p in pairs]
    return TaskBatch(
        tokens=tokens,
        last_pos=torch.tensor([len(p) - 1 for p in prompts], dtype=torch.long),
        correct=torch.tensor(targets + alts, dtype=torch.long),
        wrong=torch.tensor(alts + targets, dtype=torch.long),
    )


def final_logits(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Logits [M, V] at each prompt's last position, from logits [M, T, V]."""
    if logits.dim() != 3 or logits.shape[0] != len(batch):
        raise InputError(
            f"logits of shape {tuple(logits.shape)} do not match a batch of {len(batch)} rows; "
            "expected [M, T, V]"
        )
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, batch.last_pos.to(logits.device)]


def _answer_logits(logits: torch.Tensor, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The correct and wrong answers' logits per row, from [M, T, V] or [M, V] logits."""
    last = final_logits(logits, batch) if logits.dim() == 3 else logits
    if last.dim() != 2 or last.shape[0] != len(batch):
        raise InputError(
            f"logits of shape {tuple(logits.shape)} do not match a batch of {len(batch)} rows; "
            "expected [M, T, V] or [M, V]"
        )
    correct = last.gather(1, batch.correct.to(last.device)[:, None])[:, 0]
    wrong = last.gather(1, batch.wrong.to(last.device)[:, None])[:, 0]
    return correct, wrong


def task_loss(logits: torch.Tensor, batch: TaskBatch, reduction: str = "mean") -> torch.Tensor:
    """Two-sided binary cross-entropy: per row -log softmax([l_correct, l_wrong])[0].

    `reduction="mean"` averages over rows (= -1/2 [log p_A(target) + log p_B(alt)] over
    pairs; chance ln 2); `"none"` returns the per-row losses.
    """
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction {reduction!r} is unknown; use 'mean' or 'none'")
    correct, wrong = _answer_logits(logits, batch)
    per_row = -torch.log_softmax(torch.stack([correct, wrong], dim=-1).float(), dim=-1)[:, 0]
    return per_row.mean() if reduction == "mean" else per_row


def answer_margins(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Per row [M]: the correct answer's logit minus the wrong one's."""
    correct, wrong = _answer_logits(logits, batch)
    return correct - wrong


def margin_loss(margins: torch.Tensor) -> torch.Tensor:
    """The per-row task loss as a function of the answer margin: softplus(-margin), equal
    to `task_loss(..., reduction="none")` (calibration fits scale and shift on it)."""
    return torch.nn.functional.softplus(-margins)


def p_correct(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Per row [M]: the probability of the correct answer among the two."""
    return torch.sigmoid(answer_margins(logits, batch))


def task_accuracy(logits: torch.Tensor, batch: TaskBatch) -> float:
    """Fraction of rows whose correct answer's logit beats the wrong one's."""
    return float(_is_right(logits, batch).float().mean().item())


def _is_right(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Per row [M] (bool): the correct answer's logit beats the wrong one's."""
    correct, wrong = _answer_logits(logits, batch)
    return correct > wrong


@dataclass(frozen=True)
class PromptScore:
    """One prompt's task loss, with its side of the pair ("A" expects the task's target,
    "B" its alt), the answer it expects and the prompt text."""

    loss: float
    side: str
    answer: str
    prompt: str


@dataclass(frozen=True)
class TaskResult:
    """A model's score on one task: mean task loss, accuracy, and loss <= target loss.

    `loss_a` and `loss_b` are the mean losses of the A and the B prompts: a near-miss task
    usually fails on one side only, the one whose answer is rarer in code. `worst` holds
    the highest-loss prompts when `evaluate_tasks` is asked for them.

    `loss_se` is the standard error of the mean loss over the prompts (the two of a pair
    counted separately, so it is a slight underestimate): with 100 pairs a task loss near
    the target is often within two standard errors of it, so one solved task more or less
    is not a difference between models."""

    name: str
    loss: float
    accuracy: float
    n_pairs: int
    solved: bool
    loss_a: float
    loss_b: float
    target_loss: float = DEFAULT_TARGET_LOSS
    loss_se: float = 0.0
    worst: tuple[PromptScore, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def model_context(model: Callable) -> int | None:
    """The model's context length (`model.cfg.n_ctx`), if it declares one."""
    cfg = getattr(model, "cfg", None)
    n_ctx = getattr(cfg, "n_ctx", None)
    return int(n_ctx) if n_ctx is not None else None


def check_fits(model: Callable, pairs: Sequence[EncodedPair], task_name: str) -> None:
    """Raise InputError if a prompt is longer than the model's context or vocabulary."""
    n_ctx = model_context(model)
    longest = max(max(len(p.prompt_ids), len(p.alt_prompt_ids)) for p in pairs)
    if n_ctx is not None and longest > n_ctx:
        raise InputError(
            f"task {task_name}: a prompt has {longest} tokens but the model's context is "
            f"{n_ctx}; use a model with a longer context or shorter prompts"
        )
    vocab = getattr(getattr(model, "cfg", None), "vocab_size", None)
    if vocab is not None:
        top = max(max(*p.prompt_ids, p.target_id, p.alt_id) for p in pairs)
        if top >= vocab:
            raise InputError(
                f"task {task_name}: token id {top} is outside the model's vocabulary of {vocab}; "
                "use the tokenizer the model was trained with"
            )


def _device(model: Callable) -> torch.device:
    params = getattr(model, "parameters", None)
    if params is not None:
        for p in params():
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def prompt_scores(
    model: Callable[[torch.Tensor], torch.Tensor],
    pairs: Sequence[EncodedPair],
    batch_size: int = 64,
    pad_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt task loss [2n] (float64) and whether the correct answer's logit beats the
    wrong one's [2n] (bool), in `make_batch`'s order: the n A prompts, then the n B prompts.
    `model` runs on batches of `batch_size` pairs."""
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size}; give a positive number of pairs per batch")
    device = _device(model)
    losses, right = [], []
    for i in range(0, len(pairs), batch_size):
        batch = make_batch(pairs[i : i + batch_size], pad_id=pad_id).to(device)
        logits = model(batch.tokens)
        # each batch is its A rows then its B rows: keep them as [2, pairs] to concatenate
        losses.append(task_loss(logits, batch, reduction="none").double().cpu().view(2, -1))
        right.append(_is_right(logits, batch).cpu().view(2, -1))
    return torch.cat(losses, dim=1).flatten(), torch.cat(right, dim=1).flatten()


def score_pairs(
    model: Callable[[torch.Tensor], torch.Tensor],
    pairs: Sequence[EncodedPair],
    batch_size: int = 64,
    pad_id: int = 0,
) -> tuple[float, float, float]:
    """Mean task loss, accuracy and the loss's standard error (over prompts) of `model` on
    `pairs`, in batches of `batch_size` pairs."""
    return _summary(*prompt_scores(model, pairs, batch_size=batch_size, pad_id=pad_id))


def _summary(losses: torch.Tensor, right: torch.Tensor) -> tuple[float, float, float]:
    """Mean loss, accuracy and the loss's standard error from `prompt_scores`' outputs."""
    se = float(losses.std() / len(losses) ** 0.5) if len(losses) > 1 else 0.0
    return float(losses.mean()), float(right.double().mean()), se


def worst_prompts(losses: torch.Tensor, pairs: Sequence[EncodedPair], k: int) -> tuple[PromptScore, ...]:
    """The `k` prompts of highest loss, from `prompt_scores`' per-prompt `losses` of `pairs`."""
    n = len(pairs)
    out = []
    for i in losses.argsort(descending=True)[:k].tolist():
        pair = pairs[i % n].pair
        side_a = i < n
        out.append(
            PromptScore(
                loss=float(losses[i]),
                side="A" if side_a else "B",
                answer=pair.target if side_a else pair.alt,
                prompt=pair.prompt if side_a else pair.alt_prompt,
            )
        )
    return tuple(out)


def evaluate_tasks(
    model: Callable[[torch.Tensor], torch.Tensor],
    tokenizer: Tokenizer,
    tasks: Sequence[Task],
    n: int = 200,
    seed: int = 0,
    split: str = "test",
    batch_size: int = 64,
    target_loss: float = DEFAULT_TARGET_LOSS,
    progress: bool = True,
    worst: int = 0,
) -> list[TaskResult]:
    """Score `model` (tokens [B, T] -> logits [B, T, V]) on each task's `n` pairs of `split`,
    keeping each task's `worst` highest-loss prompts.

    Runs in eval mode under no_grad and restores the model's training flag afterwards.
    """
    if worst < 0:
        raise InputError(f"worst={worst}; give the number of highest-loss prompts to keep (0 for none)")
    was_training = getattr(model, "training", None)
    if hasattr(model, "eval"):
        model.eval()
    results = []
    try:
        for task in tqdm(tasks, desc="tasks", unit="task", disable=not progress, leave=False):
            pairs = task.generate(tokenizer, n, seed=seed, split=split)
            check_fits(model, pairs, task.name)
            losses, right = prompt_scores(model, pairs, batch_size=batch_size)
            loss, acc, se = _summary(losses, right)
            results.append(
                TaskResult(
                    name=task.name,
                    loss=loss,
                    accuracy=acc,
                    n_pairs=len(pairs),
                    solved=loss <= target_loss,
                    loss_a=float(losses[: len(pairs)].mean()),
                    loss_b=float(losses[len(pairs) :].mean()),
                    target_loss=target_loss,
                    loss_se=se,
                    worst=worst_prompts(losses, pairs, worst),
                )
            )
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return results
