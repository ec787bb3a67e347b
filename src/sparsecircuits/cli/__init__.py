"""The `sparsecircuits` command: one subcommand per pipeline stage.

Each stage module exposes `register(subparsers)`, which adds its subcommand(s) and sets
`func` on the parser to a callable taking the parsed arguments and returning an exit code.
Input errors (`InputError`) print a one-line message and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sparsecircuits import __version__
from sparsecircuits.errors import InputError

# Modules that register subcommands, in the order they appear in `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "sparsecircuits.model_cli",
    "sparsecircuits.data.cli",
    "sparsecircuits.train_cli",
    "sparsecircuits.tasks.cli",
    "sparsecircuits.interop.cli",
    "sparsecircuits.prune.cli",
    "sparsecircuits.report.cli",
    "sparsecircuits.validate.cli",
    "sparsecircuits.demo_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="sparsecircuits",
        description="Interpretability by weight sparsity: train, prune, validate, view.",
    )
    parser.add_argument("--version", action="version", version=f"sparsecircuits {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"sparsecircuits {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
