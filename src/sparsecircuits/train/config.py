"""Training configuration: the TrainConfig dataclass, TOML presets and `field=value` overrides.

A run config is a TOML file with a `[model]` table (ModelConfig fields) and a `[train]`
table (TrainConfig fields). `--config NAME` picks a bundled preset (src/sparsecircuits/
configs/NAME.toml), `--config PATH` reads a file; overrides such as `train.steps=200`,
`model.d_model=128` or a bare `steps=200` (when the name is unambiguous) are parsed as
TOML literals, falling back to a plain string (`device=cuda`).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_text
from sparsecircuits.model import ModelConfig
from sparsecircuits.model.sparse_exec import EXECUTIONS
from sparsecircuits.model.sparsity import ANNEAL_SHAPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEVICES = ("cpu", "cuda", "auto")
AUTOCASTS = ("none", "bf16", "auto")


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting, with the paper's values as defaults (docs/method.md section 2).

    batch_size is the global batch (sequences per optimizer step over all processes);
    the context length is the model's n_ctx. target_density is the kept fraction of every
    transformer matrix; None or 1.0 trains the dense baseline (no projection at all).
    Embeddings, the unembedding and biases keep min(1, embedding_density_factor ×
    target_density): the reference code makes them denser by its expansion factor, 4 in
    its example run, which is our default. autocast="bf16" runs the training forward
    under torch.autocast in bfloat16 (mixed precision): weights, Adam state, the
    projection and the validation loss stay float32. "auto" means bf16 where the device
    has native bfloat16 matmuls (bf16 GPUs; CPUs with AVX512-BF16 or AMX), since elsewhere
    bf16 is slower than float32, and none otherwise; training.json records the choice.
    """

    steps: int = 50
    batch_size: int = 8
    lr: float = 1.28e-2
    warmup_frac: float = 0.01
    target_density: float | None = None
    embedding_density_factor: float = 4.0
    min_per_channel: int = 4
    anneal_start_frac: float = 0.01
    anneal_end_frac: float = 0.5
    anneal_shape: str = "linear"  # linear | power (a power law in step)
    sharkfin: bool = True  # lr × sqrt(target L0 / current L0) while annealing
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 0.1
    grad_rms_normalize: bool = True
    weight_decay: float = 0.1
    eval_every: int = 100
    eval_batches: int = 4
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # resumable states kept under RUN/state (0 keeps all)
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto (cuda when available)
    autocast: str = "none"  # none | bf16 | auto (bf16 where the device has native bfloat16)
    execution: str = "dense"  # dense | auto | sparse: how projected matrices multiply (model/sparse_exec.py)
    support_every: int = 1  # K: after the anneal, a full gradient and top-k re-selection every K steps, and
    #                         between them gradients only at the kept entries (1: every step, the exact method)

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("steps", "batch_size", "eval_batches", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("eval_every", "checkpoint_every", "keep_checkpoints", "min_per_channel"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"train.{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"train.seed must be an integer >= 0, got {self.seed!r}")
        if not self.lr > 0:  # (finite: checked with the types)
            raise InputError(f"train.lr must be positive, got {self.lr!r}")
        for name in ("warmup_frac", "anneal_start_frac", "anneal_end_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"train.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.anneal_end_frac < self.anneal_start_frac:
            raise InputError(
                f"train.anneal_end_frac ({self.anneal_end_frac}) must not be before "
                f"train.anneal_start_frac ({self.anneal_start_frac})"
            )
        if self.target_density is not None and not 0.0 < self.target_density <= 1.0:
            raise InputError(
                f"train.target_density must be in (0, 1] (or omitted for dense), got {self.target_density!r}"
            )
        if not self.embedding_density_factor >= 1.0:
            raise InputError(
                f"train.embedding_density_factor must be >= 1, got {self.embedding_density_factor!r}"
            )
        if self.anneal_shape not in ANNEAL_SHAPES:
            raise InputError(
                f"train.anneal_shape must be one of {', '.join(ANNEAL_SHAPES)}, got {self.anneal_shape!r}"
            )
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"train.betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        if not self.eps > 0:
            raise InputError(f"train.eps must be positive, got {self.eps!r}")
        if not self.weight_decay >= 0:
            raise InputError(f"train.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.device not in DEVICES:
            raise InputError(f"train.device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.support_every < 1:
            raise InputError(f"train.support_every must be >= 1 (1: re-select every step), got {self.support_every}")
        if self.execution not in EXECUTIONS:
            raise InputError(f"train.execution must be one of {', '.join(EXECUTIONS)}, got {self.execution!r}")
        if self.autocast not in AUTOCASTS:
            raise InputError(f"train.autocast must be one of {', '.join(AUTOCASTS)}, got {self.autocast!r}")

    @property
    def sparse(self) -> bool:
        """Whether the L0 projection is on (False: the dense baseline)."""
        return self.target_density is not None and self.target_density < 1.0


def _check_types(cfg: TrainConfig) -> None:
    """Reject values of the wrong type (e.g. a string where a number belongs) by field name."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default if f.name != "target_density" else 0.0
        if f.name == "target_density" and value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            )
        else:
            ok = isinstance(value, str)
        if not ok:
            raise InputError(
                f"train.{f.name} has the wrong type: got {value!r}, expected a value like {default!r}"
            )
        numbers = value if isinstance(default, tuple) else [value]
        if isinstance(default, (float, tuple)) and not all(math.isfinite(v) for v in numbers):
            raise InputError(f"train.{f.name} must be finite, got {value!r}")


# Train fields that may change between a run and its resume without changing the weights.
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"eval_every", "eval_batches", "log_every", "checkpoint_every", "keep_checkpoints", "device", "execution"}
)


@dataclass(frozen=True)
class RunConfig:
    """A model config and a train config: everything a training run needs besides data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with `model` and `train` tables."""
        train = asdict(self.train)
        train["betas"] = list(self.train.betas)
        return {"model": self.model.to_dict(), "train": train}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> RunConfig:
        """Build from `{"model": {...}, "train": {...}}`; unknown tables or fields name themselves."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: expected a table with [model] and [train]")
        unknown = sorted(set(d) - {"model", "train"})
        if unknown:
            raise InputError(
                f"{source}: unknown table(s) {', '.join(unknown)}; a run config has [model] and [train]"
            )
        for table in ("model", "train"):
            if not isinstance(d.get(table, {}), dict):
                raise InputError(f"{source}: `{table}` must be a table")
        train_known = {f.name for f in fields(TrainConfig)}
        bad = sorted(set(d.get("train", {})) - train_known)
        if bad:
            raise InputError(
                f"{source}: unknown train field(s) {', '.join(bad)}; valid: {', '.join(sorted(train_known))}"
            )
        try:
            model = ModelConfig.from_dict(dict(d.get("model", {})))
            train = TrainConfig(**d.get("train", {}))
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from exc
        except TypeError as exc:
            raise InputError(f"{source}: {exc}") from exc
        return cls(model=model, train=train)

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)


def list_presets() -> list[str]:
    """Names of the bundled presets (`tiny-sparse`, `small-dense`, ...)."""
    folder = resources.files("sparsecircuits") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_config_file(path: Path) -> dict[str, Any]:
    text = read_text(path, "give a TOML or JSON run config (`--config PRESET --print-config` shows one)")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"config {path} is malformed: {exc}") from exc


def load_run_config(config: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a preset name or a .toml/.json file, then apply `field=value` overrides."""
    path = Path(config)
    if path.is_file():
        data, source = _read_config_file(path), str(path)
    elif str(config) in list_presets():
        res = resources.files("sparsecircuits") / "configs" / f"{config}.toml"
        data, source = tomllib.loads(res.read_text(encoding="utf-8")), f"preset {config}"
    else:
        raise InputError(
            f"config {config}: no such file and no such preset; give a .toml file or one of "
            f"{', '.join(list_presets())}"
        )
    return apply_overrides(RunConfig.from_dict(data, source), overrides)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Apply `table.field=value` or unambiguous `field=value` overrides (TOML literals)."""
    data = config.to_dict()
    model_fields = {f.name for f in fields(ModelConfig)}
    train_fields = {f.name for f in fields(TrainConfig)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"override {item!r} must look like field=value, e.g. train.steps=200")
        if "." in key:
            table, _, name = key.partition(".")
            known = {"model": model_fields, "train": train_fields}.get(table)
            if known is None:
                raise InputError(f"override {item!r}: unknown table {table!r}; use model.* or train.*")
        else:
            name = key
            tables = [t for t, k in (("model", model_fields), ("train", train_fields)) if name in k]
            if len(tables) != 1:
                raise InputError(
                    f"override {item!r}: unknown field {name!r}; use model.FIELD or train.FIELD "
                    f"(train fields: {', '.join(sorted(train_fields))})"
                )
            table, known = tables[0], model_fields if tables[0] == "model" else train_fields
        if name not in known:
            raise InputError(
                f"override {item!r}: unknown field {table}.{name}; valid: {', '.join(sorted(known))}"
            )
        data[table][name] = _parse_value(raw.strip())
    return RunConfig.from_dict(data, "overrides") if overrides else config

