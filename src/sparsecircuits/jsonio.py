"""Reading JSON artifacts: a file that is not valid JSON is an InputError naming the file,
the parse error and how to make the artifact again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsecircuits.errors import InputError


def read_json(path: Path, remedy: str) -> Any:
    """The parsed content of `path`; `remedy` says how to regenerate it (e.g. "re-run
    `sparsecircuits prune`")."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); {remedy}") from exc
