"""sparsecircuits: interpretability by weight sparsity.

Train weight-sparse transformers on Python code, prune them to the smallest circuit that
still does a task, validate the circuit against controls, and view it offline.

The public names import lazily, so `import sparsecircuits` (and the CLI's `--help`) does
not import torch:

    from sparsecircuits import SparseTransformer, ModelConfig, load_checkpoint, Circuit
    from sparsecircuits import get_task, prune, validate

`prune` and `validate` are subpackages named after their main function. Python binds a
subpackage to its name here whenever it is imported, so each is bound as its own callable
module: `prune(...)` calls `prune.prune(...)`, and `sparsecircuits.prune.masks` still works.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Each public name and the module that defines it (imported on first use).
_PUBLIC: dict[str, str] = {
    "SparseTransformer": "sparsecircuits.model",
    "ModelConfig": "sparsecircuits.model",
    "load_checkpoint": "sparsecircuits.checkpoint",
    "Circuit": "sparsecircuits.circuits",
    "get_task": "sparsecircuits.tasks",
    "prune": "sparsecircuits.prune",
    "validate": "sparsecircuits.validate",
}
# Public names that are also the name of the subpackage defining them.
_CALLABLE_SUBPACKAGES = frozenset(name for name, module in _PUBLIC.items() if module.endswith(f".{name}"))

__all__ = sorted(_PUBLIC)


class _CallablePackage(types.ModuleType):
    """A subpackage that is also its main function: calling it calls the function of its name."""

    @property
    def _main(self) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._main(*args, **kwargs)

    @property
    def __signature__(self) -> Any:
        import inspect

        return inspect.signature(self._main)


class _Package(types.ModuleType):
    """This module: makes `prune` and `validate` callable when Python binds them here."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_SUBPACKAGES and isinstance(value, types.ModuleType):
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(_PUBLIC[name])
    if name in _CALLABLE_SUBPACKAGES:
        return module  # importing it bound it here, as a callable module
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (before their first import too), `__version__` and the imported submodules."""
    prefix = f"{__name__}."
    submodules = (n for n, v in globals().items() if isinstance(v, types.ModuleType) and v.__name__.startswith(prefix))
    return sorted({*_PUBLIC, "__version__", *submodules})
