"""`sparsecircuits frontier run|report`: the sparse-vs-dense frontier sweep (docs/frontier.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsecircuits.cli.common import add_command, add_group

RUN_HELP = """\
Train every point of a sweep (a sweep file, or a bundled sweep: tiny, cpu), evaluate each
on the tasks and prune and validate its circuits. Each point is an ordinary training run
under OUT/points/NAME/run. Run it again at any time: complete runs are skipped,
interrupted ones resume from their newest checkpoint, finished circuits are kept.
--shard K/N does every N-th point from the K-th, so N machines (or a SLURM array:
--shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT) split one sweep into the same
OUT; circuits wait until every point is evaluated, so run each shard once more at the end.
"""


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.experiments.frontier import parse_shard, run_sweep

    shard = parse_shard(args.shard)
    done = run_sweep(args.sweep, Path(args.out), shard=shard, data=args.data, progress=not args.no_progress,
                     log=lambda m: print(m, file=sys.stderr))
    state = "waiting for other shards' points" if done["waiting_for"] else "every step done"
    print(f"sweep {args.sweep} shard {shard[0]}/{shard[1]}: {len(done['points'])} point(s), {state}; "
          f"results under {args.out}/points (next: sparsecircuits frontier report {args.out})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from sparsecircuits.experiments.frontier_report import write_frontier_report

    for path in write_frontier_report(Path(args.dir)).values():
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `frontier` command group."""
    fsub = add_group(sub, "frontier", "the sparse-vs-dense circuit-size frontier: a sweep of trained models")
    run = add_command(fsub, "run", raw=True, help="train, evaluate and prune every point of a sweep",
                      description=RUN_HELP)
    run.add_argument("--sweep", required=True, metavar="FILE|NAME", help="sweep file (TOML) or bundled sweep name")
    run.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder (the same for every shard)")
    run.add_argument("--data", metavar="CORPUS_DIR", help="corpus folder (default: the sweep file's `data`)")
    run.add_argument("--shard", metavar="K/N", help="run every N-th point from the K-th (default 1/1)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(func=_run)
    report = add_command(fsub, "report", help="tables, plots and an HTML page of a sweep's results")
    report.add_argument("dir", metavar="DIR", help="a sweep folder written by `frontier run`")
    report.set_defaults(func=_report)
