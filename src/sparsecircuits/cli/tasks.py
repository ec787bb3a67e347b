"""`sparsecircuits tasks list|show|eval`: browse the task suite and score a model on it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sparsecircuits.cli.common import (
    MODEL_HELP,
    TASK_HELP,
    add_alias,
    add_command,
    add_device,
    add_force,
    add_group,
    add_model,
    count,
    model_path,
    positive_float,
    positive_int,
    resolve_device,
    resolve_task,
)
from sparsecircuits.errors import InputError
from sparsecircuits.outputs import FILE, check_out

PROMPT_TAIL = 70  # characters of a prompt's end shown by `tasks eval --worst`
SPLITS = ("train", "test", "all")  # tasks.base.SPLITS, spelled torch-free for --help
DEFAULT_TARGET_LOSS = 0.15  # tasks.base.DEFAULT_TARGET_LOSS
TOKENIZER_FILE = "tokenizer.json"  # checkpoint.TOKENIZER_FILE


def _model_tokenizer(run: str) -> Any:
    """The tokenizer.json saved in checkpoint folder `run` (a path or a bundled name)."""
    from sparsecircuits.data.tokenizer import load_tokenizer

    path = model_path(run)
    if not path.is_dir():
        raise InputError(f"--model {run} is not a checkpoint folder; give the folder of a saved model")
    if not (path / TOKENIZER_FILE).is_file():
        raise InputError(
            f"--model {run} has no {TOKENIZER_FILE}; tasks need the model's tokenizer: save the "
            "checkpoint with its tokenizer, or pass --tokenizer FILE"
        )
    return load_tokenizer(path / TOKENIZER_FILE)


def _tokenizer(args: argparse.Namespace) -> Any:
    """--tokenizer, or the model's own; a --tokenizer that differs from the tokenizer saved
    with --model is refused (its ids would silently mean other strings)."""
    from sparsecircuits.data.tokenizer import load_tokenizer

    if not args.tokenizer:
        return _model_tokenizer(args.model)
    given = load_tokenizer(args.tokenizer)
    own = model_path(args.model) / TOKENIZER_FILE if getattr(args, "model", None) else None
    if own is not None and own.is_file() and load_tokenizer(own).to_str() != given.to_str():
        raise InputError(f"--tokenizer {args.tokenizer} is not the tokenizer of --model {args.model} ({own}); "
                         "drop --tokenizer to use the model's own")
    return given


def _list(args: argparse.Namespace) -> int:
    from sparsecircuits.tasks import get_task, list_tasks

    names = list_tasks()
    if args.json:
        print(json.dumps([{"name": n, "description": get_task(n).description} for n in names], indent=2))
        return 0
    width = max(len(n) for n in names)
    for n in names:
        print(f"{n:<{width}}  {get_task(n).description}")
    print(f"\n{len(names)} built-in tasks; `sparsecircuits tasks show NAME --tokenizer FILE` prints pairs")
    return 0


def _pair_json(e: Any) -> dict[str, Any]:
    return {
        "prompt": e.pair.prompt,
        "target": e.pair.target,
        "alt_prompt": e.pair.alt_prompt,
        "alt": e.pair.alt,
        "prompt_ids": list(e.prompt_ids),
        "target_id": e.target_id,
        "alt_prompt_ids": list(e.alt_prompt_ids),
        "alt_id": e.alt_id,
    }


def _show(args: argparse.Namespace) -> int:
    task = resolve_task(args.name)
    pairs = task.generate(_tokenizer(args), args.pairs, seed=args.seed, split=args.split)
    if args.json:
        print(json.dumps({"task": task.name, "pairs": [_pair_json(e) for e in pairs]}, indent=2))
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


def _task_specs(values: list[str]) -> list[str]:
    """`--task` values, each one task file or a comma-separated list of names and files."""
    specs: list[str] = []
    for value in values:
        if Path(value).is_file():
            specs.append(value)
        else:
            specs.extend(s.strip() for s in value.split(",") if s.strip())
    if not specs:
        raise InputError("--task is empty; give task names or JSONL files, e.g. --task for_while")
    return specs


def _print_table(results: list[Any], args: argparse.Namespace) -> None:
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


def _eval(args: argparse.Namespace) -> int:
    from sparsecircuits.atomic import atomic_write_text
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.tasks import evaluate_tasks, get_task, list_tasks

    out = check_out(args.out, FILE, args.force) if args.out else None
    tasks = [resolve_task(s) for s in _task_specs(args.task)] if args.task else [get_task(n) for n in list_tasks()]
    tok = _tokenizer(args)
    ckpt = load_checkpoint(model_path(args.model), device=resolve_device(args.device))
    results = evaluate_tasks(
        ckpt.model, tok, tasks, n=args.pairs, seed=args.seed, split=args.split,
        batch_size=args.batch_size, target_loss=args.target_loss, worst=args.worst,
    )
    report = {
        "model": str(ckpt.path),
        "split": args.split,
        "n": args.pairs,
        "seed": args.seed,
        "target_loss": args.target_loss,
        "results": [r.to_dict() for r in results],
    }
    if out:
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(results, args)
    if out:
        print(f"results written to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _add_pair_options(p: argparse.ArgumentParser, pairs: int, split: str) -> None:
    """`--pairs` (old spelling `--n`), `--seed` and `--split`."""
    p.add_argument("--pairs", type=positive_int, default=pairs, metavar="N", help="pairs per task")
    add_alias(p, "--n", "pairs", type=positive_int)
    p.add_argument("--seed", type=int, default=0, help="generation seed")
    p.add_argument("--split", choices=SPLITS, default=split, help="pair split")


def _register_eval(tsub: argparse._SubParsersAction) -> None:
    ev = add_command(tsub, "eval", help="task loss and accuracy of a model on a set of tasks")
    add_model(ev, help=MODEL_HELP + " (with tokenizer.json)")
    ev.add_argument("--task", action="append", metavar="NAME|FILE",
                    help=f"{TASK_HELP}; repeat it or give a comma-separated list "
                         "(default: all 20 built-in tasks)")
    add_alias(ev, "--tasks", "task", action="append")
    add_alias(ev, "--task-file", "task", action="append")
    ev.add_argument("--tokenizer", help="tokenizer.json to use (default: the checkpoint's)")
    _add_pair_options(ev, pairs=200, split="test")
    ev.add_argument("--batch-size", type=positive_int, default=64, help="pairs per forward pass")
    ev.add_argument("--target-loss", type=positive_float, default=DEFAULT_TARGET_LOSS,
                    help="a task is solved when its loss is at most this")
    add_device(ev)
    ev.add_argument("--out", metavar="FILE", help="also write the results as JSON to this file (default: none)")
    add_force(ev, "a results file")
    ev.add_argument("--worst", type=count, default=0, metavar="K",
                    help="also list each task's K highest-loss prompts (0: none)")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(func=_eval)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `tasks list`, `tasks show` and `tasks eval`."""
    tsub = add_group(sub, "tasks", "list, show and evaluate the binary next-token tasks")

    ls = add_command(tsub, "list", help="the 20 built-in tasks and their templates")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_list)

    show = add_command(tsub, "show", help="generate and print a task's pairs with their token ids")
    show.add_argument("name", metavar="NAME|FILE", help=TASK_HELP)
    src = show.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="RUN", help=MODEL_HELP + " whose tokenizer.json to use")
    src.add_argument("--tokenizer", help="a tokenizer.json file")
    _add_pair_options(show, pairs=5, split="train")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)
    _register_eval(tsub)
