"""`sparsecircuits prune --model RUN --task NAME --out DIR`: prune a model to a task circuit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.circuit import CIRCUIT_FILE
from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS
from sparsecircuits.prune.ablation import ABLATIONS, default_data_dir
from sparsecircuits.prune.optimize import PruneConfig
from sparsecircuits.prune.pipeline import prune
from sparsecircuits.tasks import get_task, load_task_file

DEFAULTS = PruneConfig()


def _locations(text: str) -> tuple[str, ...]:
    if text == "all":
        return LOCATIONS
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in LOCATIONS]
    if unknown or not names:
        raise InputError(
            f"--locations {text!r}: unknown location(s) {unknown}; use 'all' or a comma-separated "
            f"list of {', '.join(LOCATIONS)}"
        )
    return names


def config_from_args(args: argparse.Namespace) -> PruneConfig:
    """The PruneConfig the command-line options describe."""
    return PruneConfig(
        locations=_locations(args.locations),
        steps=args.steps,
        batch_pairs=args.batch_pairs,
        lr=args.lr,
        k_coef=args.k_coef,
        target_loss=args.target_loss,
        ablation=args.ablation,
        freeze_norms=args.freeze_norms,
        seed=args.seed,
        n_train_pairs=args.train_pairs,
        n_eval_pairs=args.eval_pairs,
    )


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    ckpt = load_checkpoint(args.model)
    task = load_task_file(args.task_file) if args.task_file else get_task(args.task)
    if ckpt.tokenizer is None:
        raise InputError(
            f"--model {args.model} has no tokenizer.json, which tasks need to encode their prompts; "
            "use a checkpoint saved with its tokenizer"
        )
    data = args.data or default_data_dir(ckpt.training, ckpt.path)
    result = prune(
        ckpt.model,
        task,
        ckpt.tokenizer,
        config,
        data=data,
        progress=not args.no_progress,
        cache_dir=ckpt.path,
        model_path=Path(args.model).resolve(),
    )
    circuit = result.circuit
    out = circuit.save(args.out)
    if args.json:
        summary = {k: v for k, v in circuit.to_dict().items() if k in ("n_nodes", "n_edges", "losses", "target_met")}
        print(json.dumps({**summary, "circuit": str(out / CIRCUIT_FILE)}, indent=1))
        return 0
    losses = circuit.losses
    print(f"task        {task.name}  (ablation {config.ablation}, target loss {config.target_loss})")
    print(f"nodes       {circuit.n_nodes}  " + " ".join(f"{a}={n}" for a, n in circuit.nodes_by_location().items()))
    print(f"edges       {circuit.n_edges}  (+ {len(circuit.residual_links)} residual links)")
    print(
        f"losses      full {losses['full']:.4f}  circuit {losses['circuit']:.4f}  "
        f"calibrated {losses['circuit_calibrated']:.4f}  ablate-all {losses['ablate_all']:.4f}  "
        f"circuit-ablated {losses['circuit_ablated']:.4f}"
    )
    if not circuit.target_met:
        print(
            f"warning: even the whole model misses the target loss {config.target_loss} on this task; "
            "the circuit keeps the nodes the masks kept"
        )
    print(f"wrote {out / CIRCUIT_FILE}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `prune` command."""
    p = subparsers.add_parser(
        "prune",
        help="prune a model to the smallest circuit that does a task",
        description="Learn a mask over the model's nodes, bisect for the smallest node set whose "
        "task loss is at most the target, calibrate, count edges; writes DIR/circuit.json and "
        "DIR/masks.safetensors.",
    )
    p.add_argument("--model", required=True, metavar="RUN", help="checkpoint or training-run folder")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", metavar="NAME", help="a built-in or registered task name")
    which.add_argument("--task-file", metavar="F", help="a JSONL file of pairs")
    p.add_argument("--out", required=True, metavar="DIR", help="circuit folder to write (replaced if it exists)")
    p.add_argument("--target-loss", type=float, default=DEFAULTS.target_loss, help="task loss the circuit must reach (default %(default)s)")
    p.add_argument("--ablation", choices=ABLATIONS, default=DEFAULTS.ablation, help="value of pruned nodes (default %(default)s)")
    p.add_argument("--data", metavar="DIR", help="corpus folder for mean ablation (default: the one in the model's training.json)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="fixes task pairs, mask init and batches (default %(default)s)")
    p.add_argument("--steps", type=int, default=DEFAULTS.steps, metavar="N", help="mask optimization steps (default %(default)s)")
    p.add_argument("--locations", default="all", help="node locations to prune: 'all' or e.g. attn_v,mlp_neuron")
    p.add_argument("--freeze-norms", action="store_true", help="pin norm scales to the full model's so pruning cannot profit from rescaling")
    p.add_argument("--k-coef", type=float, default=DEFAULTS.k_coef, help="penalty per kept node (default %(default)s)")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="AdamW learning rate of the masks (default %(default)s)")
    p.add_argument("--batch-pairs", type=int, default=DEFAULTS.batch_pairs, help="pairs per step (default %(default)s)")
    p.add_argument("--train-pairs", type=int, default=DEFAULTS.n_train_pairs, help="train-split pairs (default %(default)s)")
    p.add_argument("--eval-pairs", type=int, default=DEFAULTS.n_eval_pairs, help="held-out pairs for bisection and losses (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)
