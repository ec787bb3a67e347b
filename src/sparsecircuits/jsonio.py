"""Reading text and JSON artifacts: a file that is missing, a folder, unreadable, not UTF-8
or not valid JSON is an InputError naming the file, what is wrong with it and how to make
the artifact again (never a traceback, and never "does not exist" for a file of another kind)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsecircuits.errors import InputError

DAMAGED = "it may be damaged or of another kind"


def read_text(path: Path, remedy: str, error: type[InputError] = InputError) -> str:
    """The UTF-8 text of file `path`; `remedy` says how to regenerate it (e.g. "re-run
    `sparsecircuits prune`"); failures raise `error` (an InputError subclass)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{path} does not exist; {remedy}") from exc
    except IsADirectoryError as exc:
        raise error(f"{path} is a folder, not a file; {remedy}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); {DAMAGED}; {remedy}") from exc
    except OSError as exc:
        raise error(f"cannot read {path} ({exc.strerror or exc}); {remedy}") from exc


def parse_json(text: str, path: Path, remedy: str, error: type[InputError] = InputError) -> Any:
    """`text` (the content of file `path`) parsed; `error` with the line and column if invalid."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{path} is not valid JSON: line {exc.lineno} col {exc.colno}: {exc.msg}; {DAMAGED}; {remedy}"
        ) from exc


def read_json(path: Path, remedy: str, error: type[InputError] = InputError) -> Any:
    """The parsed content of JSON file `path`; `remedy` says how to regenerate it."""
    return parse_json(read_text(path, remedy, error), path, remedy, error)
