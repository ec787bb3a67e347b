"""`sparsecircuits tasks list|show|eval`: browse the task suite and score a model on it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer

from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.checkpoint import TOKENIZER_FILE, load_checkpoint
from sparsecircuits.data.tokenizer import load_tokenizer
from sparsecircuits.errors import InputError
from sparsecircuits.tasks.base import (
    DEFAULT_TARGET_LOSS,
    SPLITS,
    Task,
    get_task,
    list_tasks,
    registered_tasks,
)
from sparsecircuits.tasks.jsonl import load_task_file
from sparsecircuits.tasks.loss import evaluate_tasks

PROMPT_TAIL = 70  # characters of a prompt's end shown by `tasks eval --worst`


def resolve_task(spec: str) -> Task:
    """A registered task by name, or a JSONL task file by path."""
    if spec in registered_tasks():
        return get_task(spec)
    if spec.endswith(".jsonl") or Path(spec).is_file():
        return load_task_file(spec)
    return get_task(spec)


def _model_tokenizer(run: str) -> Tokenizer:
    """The tokenizer.json saved in checkpoint folder `run`."""
    path = Path(run)
    if not path.is_dir():
        raise InputError(f"--model {run} is not a checkpoint folder; give the folder of a saved model")
    if not (path / TOKENIZER_FILE).is_file():
        raise InputError(
            f"--model {run} has no {TOKENIZER_FILE}; tasks need the model's tokenizer: save the "
            "checkpoint with its tokenizer, or pass --tokenizer FILE"
        )
    return load_tokenizer(path / TOKENIZER_FILE)


def _list(args: argparse.Namespace) -> int:
    names = list_tasks()
    if args.json:
        print(json.dumps([{"name": n, "description": get_task(n).description} for n in names], indent=2))
        return 0
    width = max(len(n) for n in names)
    for n in names:
        print(f"{n:<{width}}  {get_task(n).description}")
    print(f"\n{len(names)} built-in tasks; `sparsecircuits tasks show NAME --tokenizer FILE` prints pairs")
    return 0


def _show(args: argparse.Namespace) -> int:
    task = resolve_task(args.name)
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else _model_tokenizer(args.model)
    pairs = task.generate(tok, args.n, seed=args.seed, split=args.split)
    if args.json:
        out = {
            "task": task.name,
            "pairs": [
                {
                    "prompt": e.pair.prompt,
                    "target": e.pair.target,
                    "alt_prompt": e.pair.alt_prompt,
                    "alt": e.pair.alt,
                    "prompt_ids": list(e.prompt_ids),
                    "target_id": e.target_id,
                    "alt_prompt_ids": list(e.alt_prompt_ids),
                    "alt_id": e.alt_id,
                }
                for e in pairs
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"task {task.name} ({task.source}): {task.description}")
    print(f"split {args.split}, seed {args.seed}, {len(pairs)} pairs\n")
    for i, e in enumerate(pairs, start=1):
        print(f"--- pair {i}: A -> {e.pair.target!r} (id {e.target_id}), {len(e.prompt_ids)} tokens")
        print(e.pair.prompt)
        print(f"--- pair {i}: B -> {e.pair.alt!r} (id {e.alt_id}), {len(e.alt_prompt_ids)} tokens")
        print(e.pair.alt_prompt)
        print()
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.task_file:
        tasks = [load_task_file(args.task_file)]
    elif args.tasks:
        tasks = [resolve_task(s.strip()) for s in args.tasks.split(",") if s.strip()]
        if not tasks:
            raise InputError("--tasks is empty; give comma-separated task names")
    else:
        tasks = [get_task(n) for n in list_tasks()]
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else _model_tokenizer(args.model)
    ckpt = load_checkpoint(args.model)
    results = evaluate_tasks(
        ckpt.model, tok, tasks, n=args.n, seed=args.seed, split=args.split,
        batch_size=args.batch_size, target_loss=args.target_loss, worst=args.worst,
    )
    report = {
        "model": str(ckpt.path),
        "split": args.split,
        "n": args.n,
        "seed": args.seed,
        "target_loss": args.target_loss,
        "results": [r.to_dict() for r in results],
    }
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(len(r.name) for r in results)
        print(
            f"{'task':<{width}}  {'loss':>7}  {'± se':>6}  {'loss A':>6}  {'loss B':>6}  {'acc':>6}  pairs  "
            f"solved (loss <= {args.target_loss})"
        )
        for r in results:
            print(
                f"{r.name:<{width}}  {r.loss:7.4f}  {r.loss_se:6.4f}  {r.loss_a:6.3f}  {r.loss_b:6.3f}  "
                f"{r.accuracy:6.3f}  {r.n_pairs:5d}  {'yes' if r.solved else 'no'}"
            )
        print(f"\nsolved {sum(r.solved for r in results)}/{len(results)} tasks ({args.split} split)")
        for r in results:
            if r.worst:
                print(f"\n{r.name}: the {len(r.worst)} highest-loss prompts (A expects the target, B the alt)")
                for w in r.worst:
                    cut = "..." if len(w.prompt) > PROMPT_TAIL else ""
                    print(f"  {w.loss:6.3f}  {w.side} -> {w.answer!r}  {cut}{w.prompt[-PROMPT_TAIL:]!r}")
    if args.out:
        print(f"results written to {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `tasks list`, `tasks show` and `tasks eval`."""
    p = sub.add_parser("tasks", help="list, show and evaluate the binary next-token tasks")
    tsub = p.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND")

    def _usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_usage)

    ls = tsub.add_parser("list", help="the 20 built-in tasks and their templates")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_list)

    show = tsub.add_parser("show", help="generate and print a task's pairs with their token ids")
    show.add_argument("name", help="a task name (see `tasks list`) or a JSONL task file")
    src = show.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint folder whose tokenizer.json to use")
    src.add_argument("--tokenizer", help="a tokenizer.json file")
    show.add_argument("--n", type=int, default=5, help="number of pairs (default 5)")
    show.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    show.add_argument("--split", choices=SPLITS, default="train", help="pair split (default train)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    ev = tsub.add_parser("eval", help="task loss and accuracy of a model on a set of tasks")
    ev.add_argument("--model", required=True, help="checkpoint folder (with tokenizer.json)")
    which = ev.add_mutually_exclusive_group()
    which.add_argument("--tasks", help="comma-separated task names (default: all 20 built-ins)")
    which.add_argument("--task-file", help="a JSONL file of pairs")
    ev.add_argument("--tokenizer", help="tokenizer.json to use instead of the checkpoint's")
    ev.add_argument("--n", type=int, default=200, help="pairs per task (default 200)")
    ev.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    ev.add_argument("--split", choices=SPLITS, default="test", help="pair split (default test)")
    ev.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass (default 64)")
    ev.add_argument("--target-loss", type=float, default=DEFAULT_TARGET_LOSS,
                    help=f"a task is solved when its loss is at most this (default {DEFAULT_TARGET_LOSS})")
    ev.add_argument("--out", help="also write the results as JSON to this file")
    ev.add_argument("--worst", type=int, default=0, metavar="K",
                    help="also list each task's K highest-loss prompts (default 0: none)")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(func=_eval)
