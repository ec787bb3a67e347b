"""`sparsecircuits demo`: evaluate, prune, validate and report on the bundled models.

The flags map onto DemoConfig fields; their defaults are spelled here so that `--help`
needs no torch (tests/test_cli_flags.py checks them against DemoConfig's).
"""

from __future__ import annotations

import argparse
from typing import Any

from sparsecircuits.cli.common import add_alias, add_command
from sparsecircuits.errors import InputError

# DemoConfig field -> (flag, default, type, metavar, help). Fields with other options:
# `tasks` (--task), `max_tasks`, `control_steps` (its default follows --steps), `workers`
# (its default depends on the machine), `dense` (--no-dense), `from_scratch`, `minimal`, `progress`
# (--no-progress).
DEMO_FLAGS: dict[str, tuple[str, Any, type, str, str]] = {
    "out": ("--out", "demo-out", str, "DIR", "output folder (a previous demo's output there is replaced)"),
    "steps": ("--steps", 100, int, "N", "pruning steps per circuit"),
    "lr": ("--lr", 0.02, float, "LR", "mask learning rate (above the paper's 3e-3 so that few steps suffice)"),
    "batch_pairs": ("--batch-pairs", 32, int, "N", "pairs per mask-optimization step"),
    "train_pairs": ("--train-pairs", 512, int, "N", "train-split pairs the masks learn on"),
    "pairs": ("--pairs", 64, int, "N", "held-out task pairs for bisection and validation"),
    "eval_pairs": ("--eval-pairs", 100, int, "N", "test pairs per task when evaluating the models"),
    "report_pairs": ("--report-pairs", 16, int, "N", "task pairs for each report's per-node details"),
    "snippet_tokens": ("--snippet-tokens", 131_072, int, "N", "validation tokens sampled for each node's "
                       "snippets at activation quantiles"),
    "target_loss": ("--target-loss", 0.15, float, "LOSS", "a task is solved, and a circuit done, at this loss"),
    "seed": ("--seed", 0, int, "N", "fixes task pairs, pruning and controls"),
    "method": ("--method", "masks", str, "NAME", "discovery method of every circuit: masks, attribution, "
               "attribution_ig or acdc"),
    "faithful_coef": ("--faithful-coef", 0.005, float, "C", "masks: penalty per kept node on its activation "
                      "drift from the full model (0: the paper's objective)"),
    "controls": ("--controls", "core", str, "LIST", "validation controls: core, all, none, or a comma-separated list"),
}


def _tasks(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    names = tuple(t.strip() for text in values for t in text.split(",") if t.strip())
    if not names:
        raise InputError("--task is empty; give built-in task names, e.g. --task bracket_brace")
    return names


def _controls(text: str) -> str:
    from sparsecircuits.validate import parse_controls

    parse_controls(text)  # fails early, before any model is loaded
    return text


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.experiments.demo import DemoConfig, run_demo

    optional = {"workers": args.workers} if args.workers is not None else {}
    cfg = DemoConfig(
        **{name: getattr(args, name) for name in DEMO_FLAGS if name != "controls"},
        controls=_controls(args.controls),
        tasks=_tasks(args.task),
        max_tasks=args.max_tasks,
        control_steps=args.control_steps if args.control_steps is not None else max(1, args.steps // 2),
        dense=not args.no_dense,
        from_scratch=args.from_scratch,
        minimal=not args.no_minimal,
        progress=not args.no_progress,
        **optional,
    )
    run_demo(cfg)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `demo` command."""
    p = add_command(
        sub,
        "demo",
        help="the main job end to end: real circuits of the bundled weight-sparse model",
        description=(
            "Evaluate the bundled weight-sparse model (small-sparse) on all built-in tasks; "
            "for each task it solves, prune a circuit in it and in its dense baseline "
            "(small-dense), validate each circuit with the controls, and write one HTML "
            "report per circuit plus OUT/index.html with the sparse-vs-dense circuit sizes. "
            "With --from-scratch, tiny models are trained first instead (they solve little). "
            "It runs on the CPU."
        ),
    )
    for name, (flag, default, kind, metavar, text) in DEMO_FLAGS.items():
        p.add_argument(flag, dest=name, type=kind, default=default, metavar=metavar, help=text)
    p.add_argument("--task", action="append", metavar="NAME",
                   help="evaluate and prune only these built-in tasks; repeat it or give a comma-separated "
                        "list (default: evaluate all, prune the solved ones)")
    add_alias(p, "--tasks", "task", action="append")
    p.add_argument("--max-tasks", type=int, metavar="N", help="prune at most N tasks, best loss first (default: all)")
    p.add_argument("--control-steps", type=int, metavar="N",
                   help="pruning steps of the controls that prune again (default: half of --steps)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="circuits made at once, each in a one-thread process (default: min(2, CPU count))")
    p.add_argument("--no-dense", action="store_true", help="skip the dense baseline")
    p.add_argument("--no-minimal", action="store_true",
                   help="skip the minimality pass that ends each circuit (default: run it)")
    p.add_argument("--from-scratch", action="store_true",
                   help="build a small corpus and train tiny models instead of using the bundled ones")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)
