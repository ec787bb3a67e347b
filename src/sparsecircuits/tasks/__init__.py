"""Tasks: the 20 built-in Python tasks, user tasks, batching, the task loss and evaluation.

A task yields pairs of prompts whose correct next tokens are swapped (docs/method.md section 3,
docs/tasks.md). `get_task(name).generate(tokenizer, n, seed, split)` gives checked, encoded
pairs; `make_batch` turns them into a right-padded batch; `task_loss` and
`task_accuracy` score a model's logits; `evaluate_tasks` runs a model on many tasks.
"""

from sparsecircuits.tasks.base import (
    DEFAULT_TARGET_LOSS,
    SPLITS,
    EncodedPair,
    GeneratorTask,
    Pair,
    Task,
    check_pair,
    get_task,
    list_tasks,
    pair_split,
    register_task,
    registered_tasks,
)
from sparsecircuits.tasks.jsonl import JsonlTask, load_task_file
from sparsecircuits.tasks.loss import (
    PromptScore,
    TaskBatch,
    TaskResult,
    answer_margins,
    evaluate_tasks,
    final_logits,
    make_batch,
    margin_loss,
    p_correct,
    prompt_scores,
    score_pairs,
    task_accuracy,
    task_loss,
)
from sparsecircuits.tasks.suite import register_builtins

register_builtins()

__all__ = [
    "DEFAULT_TARGET_LOSS",
    "SPLITS",
    "EncodedPair",
    "GeneratorTask",
    "JsonlTask",
    "Pair",
    "PromptScore",
    "Task",
    "TaskBatch",
    "TaskResult",
    "check_pair",
    "evaluate_tasks",
    "final_logits",
    "get_task",
    "list_tasks",
    "load_task_file",
    "make_batch",
    "pair_split",
    "prompt_scores",
    "register_task",
    "registered_tasks",
    "score_pairs",
    "task_accuracy",
    "answer_margins",
    "margin_loss",
    "p_correct",
    "task_loss",
]
