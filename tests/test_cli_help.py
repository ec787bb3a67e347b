"""`--help` of every command: answered without importing torch, and every option shows its default."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator

from sparsecircuits.cli import build_parser
from sparsecircuits.cli.common import HelpFormatter


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command words, parser) of the CLI, the top level included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def test_the_cli_has_every_command() -> None:
    names = {" ".join(path) for path, _ in commands(build_parser())}
    for expected in ("model info", "model nodes", "model pack", "corpus build", "train", "tasks list",
                     "tasks show", "tasks eval", "import-openai", "export-openai", "prune", "report",
                     "validate", "demo", "sample"):
        assert expected in names


HELP_SCRIPT = """
import argparse, json, sys
from sparsecircuits.cli import build_parser, main

def paths(parser, path=()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from paths(sub, (*path, name))

codes = {}
for path in paths(build_parser()):
    codes[" ".join(path)] = main([*path, "--help"])
heavy = sorted(m for m in ("torch", "numpy", "tokenizers") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_answers_without_importing_torch() -> None:
    """Every command's --help, in a fresh interpreter: none imports torch (nor numpy, tokenizers)."""
    proc = subprocess.run([sys.executable, "-c", HELP_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert len(result["codes"]) >= 15 and set(result["codes"].values()) == {0}


def _in_required_group(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    return any(action in g._group_actions and g.required for g in parser._mutually_exclusive_groups)


def test_every_option_shows_its_default() -> None:
    """Each option that takes a value names its default in --help: the formatter appends it,
    or, where the default is None, the help text says what happens without the option."""
    missing = []
    for path, parser in commands(build_parser()):
        formatter = HelpFormatter(prog="x")
        for action in parser._actions:
            if (not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS
                    or action.required or _in_required_group(parser, action)):
                continue
            text = formatter._get_help_string(action) or ""
            if "default" not in text and "required" not in text:
                missing.append(f"{' '.join(path)} {action.option_strings[0]}")
    assert missing == []


def test_defaults_are_rendered_in_help(capsys) -> None:
    parser = build_parser()
    sub = dict(commands(parser))
    text = sub[("prune",)].format_help()
    assert "(default: 150)" in text and "(default: mean)" in text and "(default: cpu)" in text
    assert "--task-file" not in text  # the old spelling of --task is accepted, not shown
    assert "bundled:small" in text
    assert "(default: 200)" in sub[("tasks", "eval")].format_help()
