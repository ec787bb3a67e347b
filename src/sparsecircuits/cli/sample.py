"""`sparsecircuits sample --model RUN --prompt TEXT`: what a model writes after a prompt.

Sampling is `SparseTransformer.generate` (which checks the numbers); this prints the prompt
followed by the continuation."""

from __future__ import annotations

import argparse

from sparsecircuits.cli.common import (
    add_command,
    add_device,
    add_model,
    count,
    model_path,
    positive_int,
    resolve_device,
)
from sparsecircuits.errors import InputError


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model_path(args.model), device=resolve_device(args.device))
    if ckpt.tokenizer is None:
        raise InputError(
            f"--model {args.model} has no tokenizer.json, which sampling needs to read the prompt; "
            "use a checkpoint saved with its tokenizer"
        )
    continuation = ckpt.model.generate(
        args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, seed=args.seed,
    )
    print(args.prompt + continuation)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `sample` command."""
    p = add_command(
        sub,
        "sample",
        help="continue a prompt with a model (sampling, with temperature and top-k)",
        description="Load a checkpoint, sample a continuation of --prompt token by token, and print "
        "the prompt followed by the continuation.",
    )
    add_model(p)
    p.add_argument("--prompt", required=True, metavar="TEXT",
                   help="the text to continue (an empty one starts a new document)")
    p.add_argument("--max-new-tokens", type=count, default=32, metavar="N",
                   help="tokens to generate at most (it stops early at <|endoftext|>)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="softmax temperature (0: greedy, always the most likely token)")
    p.add_argument("--top-k", type=positive_int, metavar="K",
                   help="sample only among the K most likely tokens (default: all tokens)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="seed of the sampling, for a repeatable continuation (default: unseeded)")
    add_device(p)
    p.set_defaults(func=_run)
