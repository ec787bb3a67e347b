"""`bundled:NAME` model names: the checkpoints shipped as package data, by name.

`resolve_model_spec("bundled:small-sparse")` is the installed folder of that model, wherever
pip put the package; any other spec is taken as a path. Torch-free, so the CLI can resolve
names before it imports the model code.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sparsecircuits.errors import InputError

BUNDLED_PREFIX = "bundled:"
BUNDLED_CONFIG = "config.json"  # a bundled model is a subfolder holding a checkpoint config
BUNDLED_BRIDGES = "bridges.json"  # ... or bridges between two bundled models


def bundled_root() -> Path:
    """The package-data folder that holds the bundled checkpoints."""
    return Path(str(resources.files("sparsecircuits") / "bundled"))


def bundled_names() -> list[str]:
    """The names of the installed bundled models (`small-dense`, `small-sparse`) and bridges
    (`small-bridges`)."""
    root = bundled_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / BUNDLED_CONFIG).is_file() or (p / BUNDLED_BRIDGES).is_file())


def _choices() -> str:
    names = bundled_names()
    return ", ".join(BUNDLED_PREFIX + n for n in names) if names else "none are installed"


def resolve_model_spec(spec: str | Path) -> Path:
    """The checkpoint folder `spec` names: `bundled:NAME` or a path (returned as given).

    A bare bundled name that is not an existing path (`small-sparse`) is an error that
    suggests the `bundled:` form, rather than a confusing "config.json is missing".
    """
    text = str(spec)
    if text.startswith(BUNDLED_PREFIX):
        name = text[len(BUNDLED_PREFIX):]
        if name not in bundled_names():
            raise InputError(f"model {text!r}: no bundled model named {name!r}; bundled models: {_choices()}")
        return bundled_root() / name
    path = Path(spec)
    if not path.exists() and text in bundled_names():
        raise InputError(
            f"model {text!r}: no such folder; for the bundled model write {BUNDLED_PREFIX}{text}"
        )
    return path
