"""The `sparsecircuits` command: one module a command, one subcommand per pipeline stage.

Each module here exposes `register(subparsers)`, which adds its subcommand(s) and sets
`func` on the parser to a callable taking the parsed arguments and returning an exit code.
Parsers are built without importing torch (the modules import the pipeline inside their
command functions), so `--help` answers at once. Input errors (`InputError`) and OS errors (a full
disk,
a read-only folder) print a one-line message and exit with code 2. `python -m sparsecircuits.cli` runs the same
command (which is how `torchrun ... -m sparsecircuits.cli train` launches it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sparsecircuits import __version__
from sparsecircuits.allocator import retain_freed_memory
from sparsecircuits.cli.common import HelpFormatter
from sparsecircuits.errors import InputError

# Modules that register subcommands, in the order they appear in `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "sparsecircuits.cli.model",
    "sparsecircuits.cli.corpus",
    "sparsecircuits.cli.train",
    "sparsecircuits.cli.tasks",
    "sparsecircuits.cli.interop",
    "sparsecircuits.cli.prune",
    "sparsecircuits.cli.report",
    "sparsecircuits.cli.validate",
    "sparsecircuits.cli.demo",
    "sparsecircuits.cli.frontier",
    "sparsecircuits.cli.bridges",
    "sparsecircuits.cli.sample",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="sparsecircuits",
        description="Interpretability by weight sparsity: train, prune, validate, view.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sparsecircuits {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    retain_freed_memory()  # freed activations stay with malloc for reuse (sparsecircuits/allocator.py)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"sparsecircuits {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except OSError as exc:  # a full disk, a read-only folder, a path the OS refuses
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sparsecircuits {args.command}: error: {where}{exc.strerror or exc}; nothing was replaced "
              "(outputs are written under a temporary name and renamed)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sparsecircuits {args.command}: interrupted; what it was writing was not renamed into place, "
              "so earlier outputs are as they were", file=sys.stderr)
        return 130
