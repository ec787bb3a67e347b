"""`sparsecircuits train`: train a weight-sparse (or dense baseline) model on a corpus folder.

The run's settings are the fields of ModelConfig and TrainConfig: a preset or a config
file gives them, `table.field=value` overrides change any of them (the override parser
knows every field), and `--print-config` shows them all with their values.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from importlib import resources
from pathlib import Path

from sparsecircuits.atomic import check_writable_parent
from sparsecircuits.cli.common import add_command
from sparsecircuits.errors import InputError

USAGE = (
    "sparsecircuits train --config PRESET|FILE --data DIR --out RUN [--resume] [--no-progress] "
    "[FIELD=VALUE ...]\n       sparsecircuits train --config PRESET|FILE --print-config [FIELD=VALUE ...]"
)


def preset_names() -> list[str]:
    """The bundled presets, read without importing the training code (for `--help`)."""
    folder = resources.files("sparsecircuits") / "configs"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _print_config(args: argparse.Namespace) -> int:
    from sparsecircuits.train.config import load_run_config

    print(load_run_config(args.config, args.overrides).to_json())
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.print_config:
        return _print_config(args)
    missing = [flag for flag, value in (("--data", args.data), ("--out", args.out)) if value is None]
    if missing:
        raise InputError(f"{' and '.join(missing)} required (only --print-config runs without them)")
    check_writable_parent(Path(args.out), "--out")
    from sparsecircuits.train import TrainingInterrupted, train

    try:
        result = train(
            args.config,
            args.data,
            args.out,
            resume=args.resume,
            overrides=args.overrides,
            progress=not args.no_progress,
        )
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"sparsecircuits train: {exc}; {_again(args, exc.checkpoint is not None)}", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(
        f"trained {result.steps} steps, {result.tokens:,} tokens in {result.seconds:.0f} s "
        f"({result.tokens_per_second:,.0f} tokens/s); train loss {result.final_train_loss:.4f}, "
        f"val loss {result.final_val_loss:.4f}"
    )
    print(f"model checkpoint: {result.out_dir} (metrics.jsonl, run_config.json, state/ beside it)")
    return 0


def _again(args: argparse.Namespace, resume: bool) -> str:
    """The command that continues an interrupted run (or starts it over when nothing was saved)."""
    words = ["sparsecircuits", "train", "--config", args.config, "--data", args.data, "--out", args.out]
    words += ["--resume"] if resume else []
    return f"{'continue' if resume else 'start it over'} with: {shlex.join([*words, *args.overrides])}"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` command."""
    p = add_command(
        sub,
        "train",
        usage=USAGE,
        help="train a weight-sparse or dense model (also under torchrun)",
        description=(
            "Train a model on a corpus folder. The run folder gets metrics.jsonl, "
            "run_config.json, resumable states under state/, and at the end the model "
            "checkpoint itself (config.json, model.safetensors, tokenizer.json, training.json). "
            "An existing run is never overwritten: continue it with --resume or choose another "
            "--out. A run that stopped before its first checkpoint saved nothing, so the same "
            "command (without --resume) starts it over in the same --out. One run at a time "
            "writes into RUN (it holds RUN/.lock); --resume continues from the newest saved state "
            "that loads, warning about damaged newer ones. Ctrl-C stops the run, keeping its "
            "last checkpoint, and prints the command that continues it. Launch under "
            "`torchrun --nproc_per_node N` for data-parallel training."
        ),
        epilog=(
            "presets: " + ", ".join(preset_names()) + ". Every ModelConfig and TrainConfig field "
            "is an override (model.FIELD=VALUE, train.FIELD=VALUE, or a bare FIELD=VALUE when "
            "unambiguous); `--config PRESET --print-config` lists them with their values."
        ),
    )
    p.add_argument(
        "--config", required=True, metavar="PRESET|FILE",
        help="a preset name (see below) or a .toml/.json file with [model] and [train] tables",
    )
    p.add_argument("--data", metavar="DIR", help="corpus folder from `corpus build` (required to train)")
    p.add_argument("--out", metavar="RUN", help="run folder, created (required to train)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from its newest saved state that loads, with the run's own "
                        "config (a different recipe, seed or corpus is refused)")
    p.add_argument("--print-config", action="store_true",
                   help="print the run config (preset + overrides, every field) as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "overrides", nargs="*", metavar="FIELD=VALUE",
        help="config overrides such as train.steps=200 model.d_model=128 device=cuda "
             "(TOML values; default: the preset's values)",
    )
    p.set_defaults(func=_train)
