"""`sparsecircuits prune --model RUN --task NAME|FILE --out DIR`: prune a model to a task circuit.

Every PruneConfig field has a flag, declared in `PRUNE_FLAGS` with its default spelled
here so that `--help` needs no torch; tests/test_cli_flags.py checks that the flags and
the dataclass have the same fields and the same defaults.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsecircuits.cli.common import (
    add_command,
    add_device,
    add_force,
    add_model,
    add_task,
    model_path,
    resolve_device,
    resolve_task,
)
from sparsecircuits.errors import InputError
from sparsecircuits.outputs import CIRCUIT, check_out

ABLATIONS = ("mean", "zero", "task_mean")  # prune.ablation.ABLATIONS, spelled torch-free
METHODS = ("masks", "attribution", "attribution_ig", "acdc")  # prune.methods.METHODS, torch-free
TIE_BREAKS = ("index", "attribution")  # prune.config.TIE_BREAKS


def parse_locations(text: str) -> tuple[str, ...]:
    """`--locations`: 'all' or a comma-separated list of node locations."""
    from sparsecircuits.model import LOCATIONS

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


@dataclass(frozen=True)
class Flag:
    """One PruneConfig field on the command line; `parse` turns the parsed value into the field's."""

    field: str
    flag: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None
    parse: Callable[[Any], Any] = lambda value: value
    extra: tuple[tuple[str, Any], ...] = ()  # more add_argument keywords (nargs, choices, action)


PRUNE_FLAGS: tuple[Flag, ...] = (
    Flag("target_loss", "--target-loss", 0.15, "task loss the circuit must reach", float),
    Flag("ablation", "--ablation", "mean", "value of pruned nodes", extra=(("choices", ABLATIONS),)),
    Flag("seed", "--seed", 0, "fixes task pairs, mask init and batches", int),
    Flag("method", "--method", "masks", "discovery method (masks: the paper's learned node masks; "
         "attribution(_ig): attribution patching, with integrated gradients; acdc: greedy elimination)",
         extra=(("choices", METHODS),)),
    Flag("minimal", "--minimal", True, "end with the minimality pass (default: on; --no-minimal skips it): drop every node the circuit "
         "does not need and record each node's loss increase", extra=(("action", argparse.BooleanOptionalAction),)),
    Flag("tie_break", "--tie-break", "index", "masks: order nodes with equal taus by index or by "
         "attribution", extra=(("choices", TIE_BREAKS),)),
    Flag("ig_steps", "--ig-steps", 8, "attribution_ig: points on the integration path", int),
    Flag("faithful_coef", "--faithful-coef", 0.0, "masks: penalty per kept node on its activation drift "
         "from the full model (in units of its variance), for circuits whose nodes keep their meaning", float),
    Flag("steps", "--steps", 150, "mask optimization steps", int),
    Flag("locations", "--locations", "all", "node locations to prune: 'all' or a comma-separated list "
         "such as attn_v,mlp_neuron (`sparsecircuits model nodes` lists them)", parse=parse_locations),
    Flag("freeze_norms", "--freeze-norms", False, "pin norm scales to the full model's so pruning "
         "cannot profit from rescaling", extra=(("action", "store_true"),)),
    Flag("k_coef", "--k-coef", 1e-4, "penalty per kept node", float),
    Flag("lr", "--lr", 1e-2, "AdamW learning rate of the masks", float),
    Flag("weight_decay", "--weight-decay", 1e-3, "AdamW weight decay of the masks", float),
    Flag("betas", "--betas", (0.9, 0.95), "AdamW betas of the masks", float, tuple,
         extra=(("nargs", 2), ("metavar", ("B1", "B2")))),
    Flag("init_tau", "--init-tau", 0.1, "initial mask logit of every node", float),
    Flag("init_noise", "--init-noise", 0.01, "std of the noise added to the initial mask logits", float),
    Flag("temperature", "--temperature", 1.0, "sigmoid temperature of the surrogate gradient", float),
    Flag("calibrate_steps", "--calibrate-steps", 16, "steps calibrating the kept nodes' scale after "
         "bisection (0: none)", int),
    Flag("batch_pairs", "--batch-pairs", 32, "pairs per step", int),
    Flag("n_train_pairs", "--train-pairs", 1024, "train-split pairs the masks learn on", int),
    Flag("n_eval_pairs", "--pairs", 128, "held-out (test-split) pairs for bisection and the losses", int),
)


def add_prune_flags(p: argparse.ArgumentParser) -> None:
    """Add one option a PruneConfig field."""
    for f in PRUNE_FLAGS:
        kwargs: dict[str, Any] = {"dest": f.field, "default": f.default, "help": f.help, **dict(f.extra)}
        if f.type is not None:
            kwargs["type"] = f.type
        if "action" not in kwargs:
            kwargs.setdefault("metavar", f.flag[2:].upper().replace("-", "_"))
        p.add_argument(f.flag, **kwargs)


def config_from_args(args: argparse.Namespace) -> Any:
    """The PruneConfig the command-line options describe."""
    from sparsecircuits.prune.config import PruneConfig

    return PruneConfig(**{f.field: f.parse(getattr(args, f.field)) for f in PRUNE_FLAGS})


def _print_summary(circuit: Any, config: Any, task_name: str, circuit_file: Any) -> None:
    losses = circuit.losses.to_dict()
    print(f"task        {task_name}  (ablation {config.ablation}, target loss {config.target_loss})")
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
    print(f"wrote {circuit_file}")


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.circuits import CIRCUIT_FILE
    from sparsecircuits.prune.pipeline import prune

    config = config_from_args(args)
    out = check_out(args.out, CIRCUIT, args.force)
    run = model_path(args.model)
    ckpt = load_checkpoint(run, device=resolve_device(args.device))
    task = resolve_task(args.task)
    if ckpt.tokenizer is None:
        raise InputError(
            f"--model {args.model} has no tokenizer.json, which tasks need to encode their prompts; "
            "use a checkpoint saved with its tokenizer"
        )
    data = ckpt.open_corpus(args.data)
    result = prune(
        ckpt.model, task, ckpt.tokenizer, config, data=data, progress=not args.no_progress,
        cache_dir=ckpt.path, model_path=run.resolve(),
    )
    circuit = result.circuit
    saved = circuit.save(out)
    if args.json:
        summary = {k: v for k, v in circuit.to_dict().items() if k in ("n_nodes", "n_edges", "losses", "target_met")}
        print(json.dumps({**summary, "circuit": str(saved / CIRCUIT_FILE)}, indent=1))
        return 0
    _print_summary(circuit, config, task.name, saved / CIRCUIT_FILE)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `prune` command."""
    p = add_command(
        subparsers,
        "prune",
        help="prune a model to the smallest circuit that does a task",
        description="Learn a mask over the model's nodes, bisect for the smallest node set whose "
        "task loss is at most the target, calibrate, count edges; writes DIR/circuit.json and "
        "DIR/masks.safetensors. The defaults are PruneConfig's (docs/method.md).",
    )
    add_model(p)
    add_task(p, required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="circuit folder to write")
    add_force(p, "a circuit")
    p.add_argument("--data", metavar="DIR",
                   help="corpus folder for mean ablation (default: the one in the model's training.json)")
    add_device(p)
    add_prune_flags(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)
