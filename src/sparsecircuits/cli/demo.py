"""`sparsecircuits demo`: evaluate, prune, validate and report on the bundled models."""

from __future__ import annotations

import argparse

from sparsecircuits.errors import InputError


def _tasks(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise InputError(f"--tasks {text!r}: give a comma-separated list of task names")
    return names


def _controls(text: str) -> str:
    from sparsecircuits.validate import parse_controls

    parse_controls(text)  # fails early, before any model is loaded
    return text


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=args.out,
        tasks=_tasks(args.tasks),
        max_tasks=args.max_tasks,
        steps=args.steps,
        control_steps=args.control_steps if args.control_steps is not None else max(1, args.steps // 2),
        lr=args.lr,
        pairs=args.pairs,
        eval_pairs=args.eval_pairs,
        report_pairs=args.report_pairs,
        controls=_controls(args.controls),
        dense=not args.no_dense,
        workers=args.workers,
        from_scratch=args.from_scratch,
        progress=not args.no_progress,
    )
    run_demo(cfg)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `demo` command."""
    from sparsecircuits.demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser(
        "demo",
        help="the main job end to end: real circuits of the bundled weight-sparse model",
        description=(
            "Evaluate the bundled weight-sparse model (small-sparse) on all built-in tasks; "
            "for each task it solves, prune a circuit in it and in its dense baseline "
            "(small-dense), validate each circuit with the controls, and write one HTML "
            "report per circuit plus OUT/index.html with the sparse-vs-dense circuit sizes. "
            "With --from-scratch, tiny models are trained first instead (they solve little)."
        ),
    )
    p.add_argument("--out", default=str(d.out), metavar="DIR", help=f"output folder (default {d.out})")
    p.add_argument("--tasks", metavar="A,B",
                   help="evaluate and prune only these tasks (default: evaluate all, prune the solved ones)")
    p.add_argument("--max-tasks", type=int, metavar="N", help="prune at most N tasks (best loss first)")
    p.add_argument("--steps", type=int, default=d.steps, metavar="N",
                   help=f"pruning steps per circuit (default {d.steps})")
    p.add_argument("--control-steps", type=int, metavar="N",
                   help="pruning steps of the controls that prune again (default: half of --steps)")
    p.add_argument("--lr", type=float, default=d.lr, metavar="LR",
                   help=f"mask learning rate (default {d.lr}, above the paper's 3e-3 so that few steps suffice)")
    p.add_argument("--pairs", type=int, default=d.pairs, metavar="N",
                   help=f"held-out task pairs for bisection and validation (default {d.pairs})")
    p.add_argument("--eval-pairs", type=int, default=d.eval_pairs, metavar="N",
                   help=f"test pairs per task when evaluating the models (default {d.eval_pairs})")
    p.add_argument("--report-pairs", type=int, default=d.report_pairs, metavar="N",
                   help=f"task pairs for each report's per-node details (default {d.report_pairs})")
    p.add_argument("--controls", default=d.controls, metavar="LIST",
                   help="validation controls: core (default), all, none, or a comma-separated list")
    p.add_argument("--workers", type=int, default=d.workers, metavar="N",
                   help=f"circuits made at once, each in a one-thread process (default {d.workers}: "
                        "min(2, CPU count))")
    p.add_argument("--no-dense", action="store_true", help="skip the dense baseline")
    p.add_argument("--from-scratch", action="store_true",
                   help="build a small corpus and train tiny models instead of using the bundled ones")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)
