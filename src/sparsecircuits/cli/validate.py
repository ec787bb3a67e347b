"""`sparsecircuits validate --circuit DIR`: metrics, controls and a verdict -> DIR/validation.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparsecircuits.cli.common import (
    MODEL_HELP,
    add_command,
    add_device,
    add_task,
    model_path,
    positive_int,
    resolve_device,
    resolve_task,
)
from sparsecircuits.errors import InputError

# validate.controls' names and defaults, spelled torch-free for --help (tests check them).
CONTROL_NAMES = (
    "random_circuits", "random_init", "nonsense_task", "seeds", "frozen_norms", "zero_ablation",
    "activation_agreement",
)
CORE_CONTROLS = ("random_circuits", "nonsense_task", "random_init", "activation_agreement")
DEFAULT_RANDOM_DRAWS = 20
DEFAULT_SEEDS = 3
VALIDATION_FILE = "validation.json"

CONTROLS_HELP = (
    "controls to run: all, core (= " + ",".join(CORE_CONTROLS) + "), none, or a "
    "comma-separated list of " + ", ".join(CONTROL_NAMES)
)


def _circuit_model(circuit: Any, circuit_dir: Path, override: str | None) -> Path:
    """The checkpoint folder to validate against: --model, else the circuit's recorded model."""
    if override:
        return model_path(override)
    recorded = circuit.model.get("path")
    if not recorded:
        raise InputError(f"{circuit_dir}: the circuit does not record its model's path; pass --model RUN")
    path = Path(recorded)
    if not path.exists() and not path.is_absolute() and (circuit_dir / path).exists():
        path = circuit_dir / path
    if not path.exists():
        raise InputError(
            f"the circuit's model {recorded} does not exist (from {circuit_dir}); pass --model RUN"
        )
    return path


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.circuits import Circuit, circuit_folder
    from sparsecircuits.validate.pipeline import task_from_info, validate

    circuit_dir = circuit_folder(args.circuit)
    circuit = Circuit.load(circuit_dir)
    ckpt = load_checkpoint(_circuit_model(circuit, circuit_dir, args.model), device=resolve_device(args.device))
    task = resolve_task(args.task) if args.task else task_from_info(circuit.task)
    if ckpt.tokenizer is None and task.source != "python":
        raise InputError(
            f"checkpoint {ckpt.path} has no tokenizer.json, which task {task.name} needs; "
            "use a checkpoint saved with its tokenizer"
        )
    data = ckpt.open_corpus(args.data)
    report = validate(
        circuit_dir, ckpt.model, ckpt.tokenizer, args.controls, task=task, data=data,
        cache_dir=ckpt.path, n_pairs=args.pairs, steps=args.steps, n_random=args.random_draws,
        n_seeds=args.seeds, seed=args.seed, progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.format_table())
        print(f"\nwrote {report.written}")
        if report.written is not None and report.written.name != VALIDATION_FILE:
            print(f"(the {VALIDATION_FILE} there ran controls this run did not, so it was kept; "
                  "run with at least its controls to replace it)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` command."""
    p = add_command(
        subparsers,
        "validate",
        help="how far a circuit can be trusted: metrics, controls, verdict",
        description=(
            "Compute a circuit's sufficiency, necessity, faithfulness, accuracy and KL on "
            "held-out task pairs, run controls (random circuits, a random-init model, a "
            "nonsense task, seeds, frozen norms, zero ablation, activation agreement) and "
            "write a verdict (ok | suspect | insufficient) to DIR/validation.json. Controls "
            "that prune again use the circuit's own pruning settings. See docs/validation.md."
        ),
    )
    p.add_argument("--circuit", required=True, metavar="DIR", help="circuit folder (circuit.json)")
    p.add_argument("--controls", default="core", metavar="LIST", help=CONTROLS_HELP)
    p.add_argument("--model", metavar="RUN", help=MODEL_HELP + " (default: the circuit's model.path)")
    add_task(p, required=False, help="a task name or a JSONL file of pairs (default: the circuit's task)")
    p.add_argument("--data", metavar="DIR", help="corpus folder for mean ablation (default: the model's)")
    add_device(p)
    p.add_argument("--pairs", type=positive_int, metavar="N", help="held-out pairs (default: pruning's n_eval_pairs)")
    p.add_argument("--steps", type=positive_int, metavar="N",
                   help="pruning steps of the controls that prune (default: the circuit's own)")
    p.add_argument("--random-draws", type=positive_int, default=DEFAULT_RANDOM_DRAWS, metavar="N",
                   help="random circuits drawn (random_circuits)")
    p.add_argument("--seeds", type=positive_int, default=DEFAULT_SEEDS, metavar="S",
                   help="seeds compared, the circuit's included (seeds)")
    p.add_argument("--seed", type=int, default=0, help="seed of random draws and of the random-init model")
    p.add_argument("--json", action="store_true", help="print validation.json instead of a table")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)
