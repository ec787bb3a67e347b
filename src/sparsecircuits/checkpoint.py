"""Model checkpoint folders: config.json + model.safetensors (+ tokenizer.json, training.json).

Loading executes no code (JSON and safetensors only) and checks every tensor against the
config: a missing, unexpected, mis-shaped or corrupt tensor is an error, never a partial load.

model.safetensors has one of two layouts, told apart by its metadata: the dense layout
(one tensor per parameter, as `save_checkpoint` writes it) and the compact layout
(`save_compact_checkpoint`, metadata `layout = sparsecircuits.compact/2`), where a float
tensor with less than 90% of its entries nonzero is stored as `NAME::mask` (its nonzero
pattern, one bit per entry, `numpy.packbits` little-endian bit order) + `NAME::values` (the
nonzeros in order, float32) with its shape in the metadata, and chosen tensors (the bigram
table) may be stored as float16. A mask costs 1/32 of the dense tensor, so a matrix keeping
1/8 of its entries takes 0.625 bytes per entry. `load_checkpoint` reads the dense layout,
compact/2 and the older compact/1 (`NAME::indices`, flat int32 positions instead of a mask).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from sparsecircuits.atomic import atomic_dir
from sparsecircuits.bundled_names import resolve_model_spec
from sparsecircuits.errors import CheckpointError, InputError
from sparsecircuits.jsonio import read_json
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.tensorio import save_tensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAINING_FILE = "training.json"
METRICS_FILE = "metrics.jsonl"
VAL_CORPUS_DIR = "corpus-val"  # a packed checkpoint's copy of its corpus's validation split
DATA_PATH_KEYS = ("data_dir", "data", "corpus", "corpus_dir")  # where a record names its corpus

COMPACT_LAYOUT = "sparsecircuits.compact/2"
READABLE_COMPACT_LAYOUTS = ("sparsecircuits.compact/1", COMPACT_LAYOUT)
COMPACT_MAX_DENSITY = 0.9  # denser tensors are stored dense
MASK_SUFFIX = "::mask"
INDICES_SUFFIX = "::indices"  # compact/1
VALUES_SUFFIX = "::values"
_SUFFIXES = (MASK_SUFFIX, INDICES_SUFFIX, VALUES_SUFFIX)
HALF_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _tensors_to_save(model: SparseTransformer) -> dict[str, torch.Tensor]:
    """Parameters and buffers, with the tied unembedding stored once (as the embedding)."""
    state = model.state_dict()
    if model.cfg.tied_embeddings:
        state.pop("unembed.weight", None)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def model_fingerprint(model: SparseTransformer) -> str:
    """A short hash of the config and every tensor: identifies a model's exact weights."""
    h = hashlib.sha256(model.cfg.to_json().encode())
    for name, t in sorted(_tensors_to_save(model).items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TrainingRecord:
    """The headline fields of training.json, typed; `raw` is the whole file as read.

    Older or imported records may lack any field (None then); the pre-`final_` spellings
    `val_loss`/`train_loss` (also under "final") are read too.
    """

    steps: int | None = None
    tokens: int | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    sparse: bool | None = None
    corpus_manifest_hash: str | None = None
    data_dir: str | None = None
    raw: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainingRecord:
        """Parse training.json content (None: an empty record)."""
        if not d:
            return cls(raw=d)
        final = d.get("final") if isinstance(d.get("final"), dict) else {}

        def number(*keys: str) -> float | None:
            for key in keys:
                for source in (d, final):
                    value = source.get(key)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        return value
            return None

        steps, tokens = number("steps"), number("tokens")
        return cls(
            steps=int(steps) if steps is not None else None,
            tokens=int(tokens) if tokens is not None else None,
            final_train_loss=number("final_train_loss", "train_loss"),
            final_val_loss=number("final_val_loss", "val_loss"),
            sparse=d.get("sparse") if isinstance(d.get("sparse"), bool) else None,
            corpus_manifest_hash=d.get("corpus_manifest_hash") if isinstance(d.get("corpus_manifest_hash"), str) else None,
            data_dir=d.get("data_dir") if isinstance(d.get("data_dir"), str) else None,
            raw=d,
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint folder: the handle prune, validate and report take.

    Holds the model (which carries its tokenizer), the tokenizer, the folder, the training
    record, and the corpus the model was trained on where it is known (`corpus`).
    """

    model: SparseTransformer
    path: Path
    tokenizer: Any | None = None  # tokenizers.Tokenizer when tokenizer.json is present
    training: dict | None = None

    @property
    def config(self) -> ModelConfig:
        """The model's config."""
        return self.model.cfg

    @property
    def tokenizer_path(self) -> Path | None:
        """The tokenizer.json of this checkpoint, if any."""
        p = self.path / TOKENIZER_FILE
        return p if p.exists() else None

    @property
    def record(self) -> TrainingRecord:
        """training.json, typed."""
        return TrainingRecord.from_dict(self.training)

    @property
    def corpus(self) -> Path | None:
        """The corpus folder for ablation means: the training corpus if it still exists,
        else the validation split packed beside the checkpoint (`corpus-val/`), else None."""
        return default_data_dir(self.training, self.path)

    def open_corpus(self, data: Any = None) -> Any:
        """The corpus to run this model on, checked against its vocabulary before anything
        runs (`shards.open_for_model`): `data` (e.g. `--data`; a folder, TokenShards or a
        token array) if given, else `corpus`. None when no corpus is known; InputError when
        training.json names a corpus that is not found and no `corpus-val/` is packed."""
        if data is None:
            data = self.corpus
            stored = [value for _, _, value in _data_paths(self.training)]
            if data is None and stored:
                tried = ", ".join(str(c) for c in _candidates(stored[0], self.path))
                raise InputError(
                    f"{self.path / TRAINING_FILE} names the corpus {stored[0]!r}, which is not found "
                    f"(no shards.json in {tried}); pass --data DIR, the corpus folder the model was "
                    "trained on"
                )
        return _corpus_for(data, self.config)


@dataclass(frozen=True)
class StageInputs:
    """What a pipeline stage (prune, validate, report) needs of a model."""

    model: SparseTransformer
    tokenizer: Any | None
    data: Any | None  # TokenShards (checked against the model) or token array for mean ablation
    cache_dir: Path | None  # where ablation means are cached
    path: Path | None


def stage_inputs(
    model: SparseTransformer | Checkpoint, tokenizer: Any = None, data: Any = None, cache_dir: Any = None
) -> StageInputs:
    """Unpack a Checkpoint (or a bare model) for a stage; arguments given explicitly win,
    the rest come from the checkpoint (its tokenizer, corpus and folder) or, for a bare
    model, from the model (the tokenizer it carries). A corpus folder is opened and checked
    against the model's vocabulary (`data.shards.open_for_model`). Pruning, validation and
    the report build their batches on the CPU, so a model elsewhere is an input error."""
    net = model.model if isinstance(model, Checkpoint) else model
    where = next(net.parameters()).device
    if where.type != "cpu":
        raise InputError(f"the model is on {where}; pruning, validation and the report run on the CPU "
                         "for now: load it with device='cpu' (--device cpu)")
    if isinstance(model, Checkpoint):
        return StageInputs(
            model.model,
            tokenizer if tokenizer is not None else model.tokenizer,
            model.open_corpus(data),
            Path(cache_dir) if cache_dir is not None else model.path,
            model.path,
        )
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    return StageInputs(
        model, tokenizer, _corpus_for(data, model.cfg), Path(cache_dir) if cache_dir is not None else None, None
    )


def _corpus_for(data: Any, cfg: ModelConfig) -> Any:
    """`data` for a model of config `cfg`: a corpus folder or TokenShards opened and checked
    against its vocabulary (`data.shards.open_for_model`); token arrays and None as given."""
    from sparsecircuits.data.shards import TokenShards
    from sparsecircuits.data.shards import open_for_model as open_shards

    if isinstance(data, (str, Path, TokenShards)):
        return open_shards(data, cfg.vocab_size)
    return data


def _data_paths(training: dict[str, Any] | None) -> list[tuple[str, str | None, str]]:
    """The corpus paths a training record names, in `DATA_PATH_KEYS` order, as (key, the
    key inside a `{"path": ...}` value or None, path)."""
    found = []
    for key in DATA_PATH_KEYS:
        value = (training or {}).get(key)
        inner = next((k for k in ("path", "dir") if value.get(k)), None) if isinstance(value, dict) else None
        if inner is not None:
            value = value[inner]
        if isinstance(value, str) and value:
            found.append((key, inner, value))
    return found


def _candidates(stored: str, checkpoint_dir: str | Path | None) -> list[Path]:
    """Where a stored corpus path may be: an absolute one as is; a relative one (an older
    record's) in the checkpoint folder first, then in the current directory."""
    path = Path(stored)
    if path.is_absolute():
        return [path]
    return [*([Path(checkpoint_dir) / path] if checkpoint_dir is not None else []), path.absolute()]


def _find_corpus(stored: str, checkpoint_dir: str | Path | None) -> Path | None:
    """The first of `_candidates` that is a corpus folder (holds a shards.json), or None."""
    return next((c for c in _candidates(stored, checkpoint_dir) if (c / "shards.json").is_file()), None)


def absolute_data_paths(training: dict[str, Any], base: str | Path | None = None) -> dict[str, Any]:
    """`training` with each relative corpus path it names made absolute (found in `base`,
    then the current directory), so a command run from another directory finds the corpus;
    a path that is not found is kept as given."""
    out = dict(training)
    for key, inner, stored in _data_paths(training):
        found = None if Path(stored).is_absolute() else _find_corpus(stored, base)
        if found is not None:
            absolute = str(found.resolve())
            out[key] = {**out[key], inner: absolute} if inner else absolute
    return out


def default_data_dir(training: dict[str, Any] | None, checkpoint_dir: str | Path | None = None) -> Path | None:
    """The corpus folder of a checkpoint: the first one its training.json names (`data_dir`,
    `data`, `corpus`, `corpus_dir`; see `_candidates` for relative paths) that exists, else
    the checkpoint's own `corpus-val/` copy of the validation split, else None."""
    for _, _, stored in _data_paths(training):
        found = _find_corpus(stored, checkpoint_dir)
        if found is not None:
            return found
    if checkpoint_dir is not None and (Path(checkpoint_dir) / VAL_CORPUS_DIR / "shards.json").is_file():
        return Path(checkpoint_dir) / VAL_CORPUS_DIR
    return None


def save_checkpoint(
    model: SparseTransformer,
    path: str | Path,
    tokenizer: Any | None = None,
    training: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically; `tokenizer` is a tokenizers.Tokenizer or a path.
    Relative corpus paths in `training` are stored absolute (`absolute_data_paths`)."""
    return _write_checkpoint(
        model, path, _tensors_to_save(model), {"format": "pt"}, tokenizer, training
    )


def _write_checkpoint(
    model: SparseTransformer,
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    tokenizer: Any | None,
    training: dict | None,
    extra_files: tuple[Path, ...] = (),
    val_corpus: str | Path | None = None,
    val_tokens: int | None = None,
) -> Path:
    """Write config, weights, tokenizer, training record and extras into one atomic folder."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_FILE).write_text(model.cfg.to_json() + "\n", encoding="utf-8")
        save_tensors(tensors, tmp / WEIGHTS_FILE, metadata=metadata)
        if tokenizer is not None:
            if isinstance(tokenizer, (str, Path)):
                shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
            else:
                tokenizer.save(str(tmp / TOKENIZER_FILE))
        if training is not None:
            record = absolute_data_paths(training)
            (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for extra in extra_files:
            shutil.copyfile(extra, tmp / Path(extra).name)
        if val_corpus is not None:
            copy_validation_split(val_corpus, tmp / VAL_CORPUS_DIR, max_tokens=val_tokens)
    return path


def load_config(path: str | Path) -> ModelConfig:
    """Read and validate a checkpoint folder's config.json."""
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path} is missing: {path} is not a sparsecircuits checkpoint")
    data = read_json(cfg_path, f"{path} is not a sparsecircuits checkpoint, or a damaged one", CheckpointError)
    try:
        return ModelConfig.from_dict(data)
    except InputError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from exc


def check_state_dict(
    model: SparseTransformer,
    tensors: dict[str, torch.Tensor],
    source: str,
    display: Callable[[str], str] = str,
) -> None:
    """Raise CheckpointError unless `tensors` has exactly the model's stored keys and shapes.

    A tied unembedding is expected once, as the embedding. `display` maps our tensor names
    to the names the user's file uses (e.g. an imported checkpoint's own names).
    """
    expected = {k: tuple(v.shape) for k, v in _tensors_to_save(model).items()}
    missing = sorted(display(k) for k in set(expected) - set(tensors))
    unexpected = sorted(display(k) for k in set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    for k in sorted(set(expected) & set(tensors)):
        if tuple(tensors[k].shape) != expected[k]:
            problems.append(f"{display(k)} has shape {tuple(tensors[k].shape)}, config expects {expected[k]}")
    if problems:
        raise CheckpointError(f"{source} does not match its config: " + "; ".join(problems))


def compact_tensors(
    tensors: dict[str, torch.Tensor],
    half: tuple[str, ...] = (),
    max_density: float = COMPACT_MAX_DENSITY,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The compact layout of `tensors`: (tensors to save, safetensors metadata).

    Float tensors with density below `max_density` become a bit mask of their nonzeros +
    float32 values; the tensors named in `half` are stored dense as float16; the rest unchanged.
    """
    out: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, t in tensors.items():
        if any(suffix in name for suffix in _SUFFIXES):
            raise InputError(f"tensor name {name!r} contains a reserved suffix")
        if name in half:
            out[name] = t.to(torch.float16).contiguous()
            continue
        flat = t.reshape(-1)
        nonzero = flat != 0
        if t.is_floating_point() and flat.numel() and int(nonzero.sum()) / flat.numel() < max_density:
            out[name + MASK_SUFFIX] = torch.from_numpy(np.packbits(nonzero.numpy(), bitorder="little"))
            out[name + VALUES_SUFFIX] = flat[nonzero].to(torch.float32).contiguous()
            shapes[name] = list(t.shape)
        else:
            out[name] = t.contiguous()
    metadata = {
        "format": "pt",
        "layout": COMPACT_LAYOUT,
        "sparse_shapes": json.dumps(shapes),
        "float16": json.dumps(sorted(n for n in half if n in tensors)),
    }
    return out, metadata


def _json_meta(metadata: dict[str, str], key: str, source: str, kind: type) -> Any:
    try:
        value = json.loads(metadata.get(key, "null"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: metadata {key!r} is not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise CheckpointError(f"{source}: metadata {key!r} is missing or malformed; re-pack the model")
    return value


def expand_tensors(
    stored: dict[str, torch.Tensor], metadata: dict[str, str], source: str
) -> dict[str, torch.Tensor]:
    """Dense float32 tensors from the compact layout (see `compact_tensors`), checked strictly."""
    shapes = _json_meta(metadata, "sparse_shapes", source, dict)
    half = _json_meta(metadata, "float16", source, list)
    out: dict[str, torch.Tensor] = {}
    for name, t in stored.items():
        if name.endswith(_SUFFIXES):
            base = name.rsplit("::", 1)[0]
            if base not in shapes:
                raise CheckpointError(f"{source}: {name} has no recorded shape; the file is corrupt")
            continue
        if name in half:
            if t.dtype != torch.float16:
                raise CheckpointError(f"{source}: {name} should be stored as float16, found {t.dtype}")
            t = t.to(torch.float32)
        out[name] = t
    for name, shape in shapes.items():
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CheckpointError(f"{source}: sparse tensor {name} has a malformed shape {shape!r}")
        val = stored.get(name + VALUES_SUFFIX)
        if name + MASK_SUFFIX in stored:
            positions = _mask_positions(stored[name + MASK_SUFFIX], math.prod(shape), name, source)
        elif name + INDICES_SUFFIX in stored:
            positions = _index_positions(stored[name + INDICES_SUFFIX], math.prod(shape), name, source)
        else:
            positions = None
        if positions is None or val is None:
            raise CheckpointError(f"{source}: sparse tensor {name} lacks its mask or values")
        if val.dim() != 1 or len(val) != len(positions):
            raise CheckpointError(
                f"{source}: {name} has {len(positions)} nonzero positions but values of shape "
                f"{tuple(val.shape)}; the file is corrupt"
            )
        dense = torch.zeros(math.prod(shape), dtype=torch.float32)
        dense[positions] = val.to(torch.float32)
        out[name] = dense.reshape(shape)
    return out


def _mask_positions(mask: torch.Tensor, numel: int, name: str, source: str) -> torch.Tensor:
    """The flat positions set in a packed bit mask of `numel` entries (compact/2)."""
    if mask.dtype != torch.uint8 or mask.dim() != 1 or len(mask) != (numel + 7) // 8:
        raise CheckpointError(
            f"{source}: the mask of {name} should be {(numel + 7) // 8} uint8 bytes for {numel} "
            f"entries, found {mask.dtype} {tuple(mask.shape)}; the file is corrupt"
        )
    bits = np.unpackbits(mask.numpy(), bitorder="little")
    if bits[numel:].any():
        raise CheckpointError(f"{source}: the mask of {name} has bits set past its {numel} entries")
    return torch.from_numpy(np.flatnonzero(bits[:numel]))


def _index_positions(idx: torch.Tensor, numel: int, name: str, source: str) -> torch.Tensor:
    """The flat positions of a compact/1 tensor: strictly increasing int32 indices."""
    if idx.dtype != torch.int32 or idx.dim() != 1:
        raise CheckpointError(f"{source}: {name} needs 1-D int32 indices, got {idx.dtype} {tuple(idx.shape)}")
    if len(idx) and (int(idx[0]) < 0 or int(idx[-1]) >= numel or bool((idx[1:] <= idx[:-1]).any())):
        raise CheckpointError(
            f"{source}: the indices of {name} are not strictly increasing within [0, {numel}); "
            "the file is corrupt"
        )
    return idx.long()


def read_weights(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of a model.safetensors in either layout (dense after loading)."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is corrupt or truncated ({exc}); re-save or re-download it") from exc
    layout = metadata.get("layout")
    if layout is not None and layout not in READABLE_COMPACT_LAYOUTS:
        raise CheckpointError(
            f"{weights} has weights layout {layout!r}, which this version cannot read "
            f"(it reads the dense layout and {', '.join(READABLE_COMPACT_LAYOUTS)}); upgrade sparsecircuits"
        )
    if layout is not None:
        tensors = expand_tensors(tensors, metadata, str(weights))
    check_finite(tensors, weights)
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], source: Path | str) -> None:
    """Refuse weights holding NaN or Inf: a diverged run or a damaged file, never a model."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{source}: tensor {name} is not finite ({bad} NaN or Inf values): the run diverged "
                "or the file is damaged; load an earlier checkpoint or retrain"
            )


def save_compact_checkpoint(
    model: SparseTransformer,
    path: str | Path,
    tokenizer: Any | None = None,
    training: dict | None = None,
    bigram_dtype: str = "float32",
    extra_files: tuple[Path, ...] = (),
    val_corpus: str | Path | None = None,
    val_tokens: int | None = None,
) -> Path:
    """Write a checkpoint folder in the compact layout (atomically); `extra_files` are copied in.

    `bigram_dtype="float16"` halves the bigram table (lossy: the loaded model differs).
    `val_corpus` (a corpus folder) is copied to `corpus-val/` with its validation split only,
    at most `val_tokens` tokens of it (see `copy_validation_split`).
    """
    if bigram_dtype not in HALF_DTYPES:
        raise InputError(f"bigram dtype {bigram_dtype!r} is unknown; choose float32 or float16")
    half = ("bigram_table",) if bigram_dtype == "float16" else ()
    tensors, metadata = compact_tensors(_tensors_to_save(model), half=half)
    return _write_checkpoint(model, path, tensors, metadata, tokenizer, training, extra_files, val_corpus, val_tokens)


def copy_validation_split(corpus: str | Path, dest: str | Path, max_tokens: int | None = None) -> Path:
    """Copy a corpus folder's validation split, tokenizer and shards.json (train split emptied,
    corpus hash kept, `subset` noted) to `dest`: enough for mean ablation and snippets.

    With `max_tokens`, only whole documents are kept, drawn in a fixed pseudo-random order
    (seed 0) until the next would not fit, then written in their corpus order: a sample of
    every source rather than the first files, small enough to ship with a model.
    """
    from sparsecircuits.data.shards import SHARDS_FORMAT, TokenShards

    corpus, dest = Path(corpus), Path(dest)
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"--val-tokens must be at least 1, not {max_tokens}")
    try:
        shards = TokenShards.open(corpus)
    except InputError as exc:
        raise InputError(f"--val-corpus {corpus}: {exc}") from exc
    # the copy keeps the corpus hash (computed here for a corpus built before it was recorded)
    info = {**shards.info, "format": SHARDS_FORMAT, "manifest_hash": shards.manifest_hash,
            "sources_hash": shards.sources_hash, "tokenizer_sha256": shards.tokenizer_sha256}
    val_file, train_file = info["val"]["file"], info["train"]["file"]
    dest.mkdir(parents=True, exist_ok=True)
    note = f"validation split only, copied from {corpus.name}"
    if max_tokens is None or info["val"]["tokens"] <= max_tokens:
        shutil.copyfile(corpus / val_file, dest / val_file)
    else:
        docs = _documents(np.asarray(shards.val), shards.eot_id)
        kept, total = [], 0
        for i in np.random.default_rng(0).permutation(len(docs)):
            if total + len(docs[i]) <= max_tokens:
                kept.append(int(i))
                total += len(docs[i])
        if not kept:
            raise InputError(f"--val-tokens {max_tokens}: every validation document of {corpus} is longer")
        np.concatenate([docs[i] for i in sorted(kept)]).tofile(dest / val_file)
        whole = {"tokens": info["val"]["tokens"], "documents": info["val"]["documents"]}
        info["val"] = {**info["val"], "tokens": total, "documents": len(kept), "sample_of": whole}
        note += f", {len(kept)} of its documents (at most {max_tokens:,} tokens)"
    shutil.copyfile(shards.tokenizer_path, dest / info.get("tokenizer", TOKENIZER_FILE))
    (dest / train_file).write_bytes(b"")
    info["train"] = {**info["train"], "tokens": 0, "documents": 0}
    info["subset"] = note
    (dest / "shards.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return dest


def _documents(tokens: np.ndarray, eot: int) -> list[np.ndarray]:
    """Split a flat token array into documents, each with its trailing `eot` separator."""
    return [doc for doc in np.split(tokens, np.flatnonzero(tokens == eot) + 1) if len(doc)]


def pack_checkpoint(
    src: str | Path,
    out: str | Path,
    bigram_dtype: str = "float16",
    val_corpus: str | Path | None = None,
    val_tokens: int | None = None,
) -> Path:
    """Re-save checkpoint folder `src` (a run or a checkpoint) in the compact layout at `out`,
    with its tokenizer.json, training.json and metrics.jsonl when present, and optionally the
    validation split of `val_corpus` (see `copy_validation_split`)."""
    src = Path(src)
    ckpt = load_checkpoint(src)
    extras = tuple(p for p in (src / METRICS_FILE,) if p.is_file())
    training = absolute_data_paths(ckpt.training, src) if ckpt.training is not None else None
    return save_compact_checkpoint(
        ckpt.model, out, tokenizer=ckpt.tokenizer_path, training=training,
        bigram_dtype=bigram_dtype, extra_files=extras, val_corpus=val_corpus, val_tokens=val_tokens,
    )


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder (dense or compact layout), checking every tensor against the config.

    `path` may also name a bundled model, `bundled:small-sparse` or `bundled:small-dense`."""
    path = resolve_model_spec(path)
    cfg = load_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is {'not a file' if weights.exists() else 'missing'}")
    tensors = read_weights(weights)
    model = SparseTransformer(cfg)
    check_state_dict(model, tensors, str(weights))
    if cfg.tied_embeddings:
        tensors["unembed.weight"] = tensors["embed.weight"]
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    tokenizer = None
    if (path / TOKENIZER_FILE).is_file():
        from sparsecircuits.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(path / TOKENIZER_FILE)
    training = None
    if (path / TRAINING_FILE).exists():
        training = read_json(path / TRAINING_FILE, "restore or delete the training record", CheckpointError)
        if not isinstance(training, dict):
            raise CheckpointError(f"{path / TRAINING_FILE} is not a JSON object; restore or delete it")
    model.tokenizer = tokenizer
    return Checkpoint(model=model, path=path, tokenizer=tokenizer, training=training)
