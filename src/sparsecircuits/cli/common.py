"""What every command shares: the help format, and one spelling and one behaviour for
`--model`, `--task`, `--device` and `--out`.

Torch-free: parsers are built, and `--help` answers, without importing the model code;
anything heavy is imported inside the function that needs it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from sparsecircuits.bundled_names import resolve_model_spec
from sparsecircuits.errors import InputError

MODEL_HELP = "checkpoint folder, or a bundled model: bundled:small-sparse, bundled:small-dense"
TASK_HELP = "a task name (see `tasks list`) or a JSONL file of pairs"
DEVICE_HELP = "where the model runs: cpu, cuda, cuda:N, mps, or auto (cuda when available, else cpu)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every option that takes a value and does not state its default.

    Flags (store_true) are off unless given; an option whose default is None must say in
    its help what that means (a test checks that every option's help names its default).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default is None:
            return text
        return super()._get_help_string(action)


class RawHelpFormatter(HelpFormatter, argparse.RawTextHelpFormatter):
    """`HelpFormatter` that keeps the line breaks of descriptions and option help."""


def add_command(
    sub: argparse._SubParsersAction, name: str, *, raw: bool = False, **kwargs: Any
) -> argparse.ArgumentParser:
    """Add subcommand `name` with the shared help format (`raw` keeps line breaks)."""
    return sub.add_parser(name, formatter_class=RawHelpFormatter if raw else HelpFormatter, **kwargs)


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """Add command group `name` (e.g. `model info`, `model pack`); the group alone prints its
    help and exits 2. Returns the group's subparsers."""
    group = add_command(sub, name, help=help)
    group.set_defaults(func=lambda _args: (group.print_help(), 2)[1])
    return group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def add_alias(parser: argparse.ArgumentParser | Any, flag: str, dest: str, **kwargs: Any) -> None:
    """An old spelling of an option, accepted but not shown in `--help`."""
    parser.add_argument(flag, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


def add_model(parser: argparse.ArgumentParser, *, required: bool = True, help: str = MODEL_HELP) -> None:
    """`--model RUN`: a checkpoint folder or a `bundled:` name."""
    parser.add_argument("--model", required=required, metavar="RUN", help=help)


def add_device(parser: argparse.ArgumentParser) -> None:
    """`--device`, on every command that runs a model."""
    parser.add_argument("--device", default="cpu", metavar="DEVICE", help=DEVICE_HELP)


def add_force(parser: argparse.ArgumentParser, what: str) -> None:
    """`--force`: replace an existing output of this command (never anything else)."""
    parser.add_argument("--force", action="store_true", help=f"replace --out if it already holds {what}")


def add_task(parser: argparse.ArgumentParser, *, required: bool, help: str = TASK_HELP) -> None:
    """`--task NAME|FILE`, with `--task-file` as a hidden alias."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--task", metavar="NAME|FILE", help=help)
    add_alias(group, "--task-file", "task")


def model_path(spec: str) -> Path:
    """The folder `--model SPEC` names (`bundled:NAME` or a path)."""
    return resolve_model_spec(spec)


def resolve_task(spec: str) -> Any:
    """A registered task by name, or a JSONL task file by path."""
    from sparsecircuits.tasks import get_task, load_task_file, registered_tasks

    if spec in registered_tasks():
        return get_task(spec)
    if spec.endswith(".jsonl") or Path(spec).is_file():
        return load_task_file(spec)
    return get_task(spec)


def resolve_device(spec: str) -> str:
    """`--device` as a torch device string; an unavailable device is an input error."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise InputError(f"--device {spec!r} is not a device; {DEVICE_HELP}") from exc
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count()),
        "mps": torch.backends.mps.is_available(),
    }.get(device.type, False)
    if not available:
        raise InputError(f"--device {spec}: no such device on this machine; use --device cpu or auto")
    return spec


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, lambda v: 0 < v < math.inf, "a finite number > 0")


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return _number(text, float, math.isfinite, "a finite number")


def _number(text: str, kind: type, ok: Any, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value
