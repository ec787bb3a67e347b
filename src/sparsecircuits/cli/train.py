"""`sparsecircuits train`: train a weight-sparse (or dense baseline) model on a corpus folder."""

from __future__ import annotations

import argparse
import os

from sparsecircuits.train_config import list_presets


def _train(args: argparse.Namespace) -> int:
    from sparsecircuits.train import train

    result = train(
        args.config,
        args.data,
        args.out,
        resume=args.resume,
        overrides=args.overrides,
        progress=not args.no_progress,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(
        f"trained {result.steps} steps, {result.tokens:,} tokens in {result.seconds:.0f} s "
        f"({result.tokens_per_second:,.0f} tokens/s); train loss {result.final_train_loss:.4f}, "
        f"val loss {result.final_val_loss:.4f}"
    )
    print(f"model checkpoint: {result.out_dir} (metrics.jsonl, run_config.json, state/ beside it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` command."""
    p = sub.add_parser(
        "train",
        help="train a weight-sparse or dense model (also under torchrun)",
        description=(
            "Train a model on a corpus folder. The run folder gets metrics.jsonl, "
            "run_config.json, resumable states under state/, and at the end the model "
            "checkpoint itself (config.json, model.safetensors, tokenizer.json, training.json). "
            "Launch under `torchrun --nproc_per_node N` for data-parallel training."
        ),
        epilog="presets: " + ", ".join(list_presets()),
    )
    p.add_argument(
        "--config", required=True, metavar="PRESET|FILE",
        help="a preset name (see below) or a .toml file with [model] and [train] tables",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="corpus folder from `corpus build`")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder (created)")
    p.add_argument("--resume", action="store_true", help="continue RUN from its newest saved state")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "overrides", nargs="*", metavar="FIELD=VALUE",
        help="config overrides such as train.steps=200 model.d_model=128 (TOML values)",
    )
    p.set_defaults(func=_train)
