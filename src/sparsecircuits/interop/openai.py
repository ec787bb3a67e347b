"""Import and export checkpoints of the paper's reference code (openai/circuit_sparsity).

A reference checkpoint is a folder holding `beeg_config.json` and `final_model.pt` (a torch
state dict). Import maps every field that shapes the reference forward pass onto a
`ModelConfig`, renames the tensors, checks each one against the config and loads them into
a `SparseTransformer` whose logits equal the reference implementation's. Training-only
fields are ignored, unknown fields are reported, and a value the library cannot reproduce
is refused with the reason. The reference tokenizer ships as GPT-2 style `encoder.json` +
`vocab.bpe`; `tokenizer_from_gpt2_files` converts it to a Hugging Face tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from sparsecircuits.atomic import atomic_dir
from sparsecircuits.checkpoint import (
    check_finite,
    check_state_dict,
    save_checkpoint,
)
from sparsecircuits.data.tokenizer import EOT, load_tokenizer
from sparsecircuits.errors import CheckpointError, InputError
from sparsecircuits.jsonio import read_json, read_text
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.locations import location_aliases
from sparsecircuits.tensorio import load_torch_file, save_torch

REF_CONFIG_FILE = "beeg_config.json"
REF_WEIGHTS_FILE = "final_model.pt"

# Fields of the reference config that change the forward pass, with the reference
# GPTConfig defaults used when a field is absent (None: no default, the field is required).
FORWARD_FIELDS: dict[str, Any] = {
    "block_size": None,
    "vocab_size": None,
    "n_layer": None,
    "n_head": None,
    "d_model": None,
    "d_head": "d_model // n_head",
    "d_mlp": "4 * d_model",
    "bias": True,
    "ln_bias": True,
    "rms_norm": False,
    "residual_activation_type": "identity",
    "activation_type": "gelu",
    "afrac": None,
    "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out",
    "tied_unembed": True,
    "enable_bigram_table": False,
    "d_pos_emb": None,
    "sink": False,
}
_REQUIRED = ("block_size", "vocab_size", "n_layer", "n_head", "d_model")

# Fields that never change the reference inference forward pass (training switches,
# kernels, provenance). docs/openai-import.md says why each one is safe to drop.
IGNORED_FIELDS: frozenset[str] = frozenset(
    {
        "dropout", "dropout_cat_pos_emb", "debug_nans", "grad_checkpointing", "flash",
        "tokenizer_name", "learnable_bigram_table", "sinusoidal_cat_pos_emb",
        "enable_sparse_kernels", "sparse_matmul_impl", "bigram_table_rank", "pfrac",
        "afrac_approx", "rtopk", "ignore_dw_grad", "expansion_factor",
        "expansion_factor_mlp", "debug_exact_topk", "n_embd", "use_tied_aux_matrix",
    }
)
# Reference activation-sparsity locations on the residual stream: no node location here.
_RESIDUAL_LOCTYPES = ("resid_post_attn", "resid_post_mlp")

# Reference tensor-name prefixes and their sparsecircuits counterparts.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("transformer.wte.", "embed."),
    ("transformer.wpe.", "pos_embed."),
    ("transformer.ln_f.", "ln_final."),
    ("transformer.h.", "blocks."),
    ("lm_head.", "unembed."),
)
_SINK_REF, _SINK_OURS = ".attn.attn_imp.sink_logit", ".attn.sink_logit"
_CAUSAL_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.bias")

# Pre-tokenization regexes of the reference tokenizers (tiktoken `pat_str`).
TINYPYTHON_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT2_PATTERN = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PRETOKENIZE_PATTERNS: dict[str, str] = {"tinypython_2k": TINYPYTHON_PATTERN, "gpt2": GPT2_PATTERN}
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]+\|>")


@dataclass(frozen=True)
class ImportResult:
    """An imported reference model and what the import noticed along the way."""

    model: SparseTransformer
    reference_config: dict[str, Any]
    warnings: tuple[str, ...] = ()
    ignored_fields: tuple[str, ...] = ()
    path: Path | None = None  # the written checkpoint folder, once written
    tokenizer_path: Path | None = None

    @property
    def tokenizer_name(self) -> str | None:
        """The reference config's tokenizer_name, if any."""
        name = self.reference_config.get("tokenizer_name")
        return name if isinstance(name, str) else None


def reference_to_ours(name: str) -> str:
    """The sparsecircuits tensor name of a reference state-dict key (unknown keys unchanged)."""
    return _rename(name, _PREFIXES, _SINK_REF, _SINK_OURS)


def ours_to_reference(name: str) -> str:
    """The reference state-dict key of a sparsecircuits tensor name."""
    return _rename(name, tuple((b, a) for a, b in _PREFIXES), _SINK_OURS, _SINK_REF)


def _rename(name: str, prefixes: tuple[tuple[str, str], ...], old: str, new: str) -> str:
    for a, b in prefixes:
        if name.startswith(a):
            name = b + name[len(a):]
            break
    if name.endswith(old):
        name = name[: -len(old)] + new
    return name


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_config(ref: Any, source: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """Validate the forward fields of a reference config and fill the reference defaults.

    Returns (fields, warnings, ignored field names present).
    """
    if not isinstance(ref, dict):
        raise CheckpointError(f"{source} must hold a JSON object, got {type(ref).__name__}")
    warnings: list[str] = []
    ref = dict(ref)
    if "n_mlp" in ref:  # older spelling of d_mlp
        n_mlp = ref.pop("n_mlp")
        if ref.get("d_mlp") is not None and ref["d_mlp"] != n_mlp:
            raise CheckpointError(
                f"{source} sets both n_mlp={n_mlp!r} and d_mlp={ref['d_mlp']!r}; they are two "
                "spellings of the MLP width, keep one"
            )
        ref["d_mlp"] = n_mlp
    if ref.get("use_tied_aux_matrix"):
        raise CheckpointError(
            f"{source} sets use_tied_aux_matrix=true, which the reference loader itself refuses; "
            "this checkpoint cannot be imported"
        )
    missing = [k for k in _REQUIRED if ref.get(k) is None]
    if missing:
        raise CheckpointError(f"{source} is missing required field(s) {', '.join(missing)}")
    ignored = sorted(k for k in ref if k in IGNORED_FIELDS)
    unknown = sorted(k for k in ref if k not in FORWARD_FIELDS and k not in IGNORED_FIELDS)
    if unknown:
        warnings.append(
            f"{source}: unknown field(s) {', '.join(unknown)} ignored; they are not part of the "
            "reference forward pass this library knows"
        )
    f: dict[str, Any] = {}
    for name, default in FORWARD_FIELDS.items():
        if name in ref:
            f[name] = ref[name]
        elif name in ("d_head", "d_mlp"):
            f[name] = None  # derived below, as the reference does
        else:
            warnings.append(f"{source}: {name} is not set; using the reference default {default!r}")
            f[name] = default

    def bad(name: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{source}: {name} must be {expected}, got {f[name]!r}; fix the field")

    for name in ("block_size", "vocab_size", "n_layer", "n_head", "d_model", "d_head", "d_mlp", "d_pos_emb"):
        if f[name] is not None and not (_is_int(f[name]) and f[name] >= 1):
            raise bad(name, "a positive integer" + (" or null" if name in ("d_head", "d_mlp", "d_pos_emb") else ""))
    for name in ("bias", "ln_bias", "rms_norm", "tied_unembed", "enable_bigram_table", "sink"):
        if not isinstance(f[name], bool):
            raise bad(name, "true or false")
    afrac = f["afrac"]
    if afrac is not None and (isinstance(afrac, bool) or not isinstance(afrac, (int, float)) or not 0 < afrac <= 1):
        raise bad("afrac", "a number in (0, 1] or null")
    if not isinstance(f["afrac_loctypes"], str):
        raise bad("afrac_loctypes", "a comma-separated string of locations")
    for name, allowed in (("activation_type", ("gelu", "relu")),
                          ("residual_activation_type", ("identity", "relu"))):
        if f[name] not in allowed:
            raise CheckpointError(
                f"{source}: {name}={f[name]!r} is not supported; the reference forward pass "
                f"defines only {' and '.join(allowed)}"
            )
    if f["d_head"] is None:
        f["d_head"] = f["d_model"] // f["n_head"]
    if f["d_mlp"] is None:
        f["d_mlp"] = 4 * f["d_model"]
    f["afrac_loctypes"], loc_warnings = _parse_loctypes(f["afrac_loctypes"], f["afrac"], source)
    return f, warnings + loc_warnings, ignored


def _parse_loctypes(text: str, afrac: float | None, source: str) -> tuple[tuple[str, ...], list[str]]:
    """The AbsTopK locations of a reference afrac_loctypes string, in library order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    residual = [n for n in names if n in _RESIDUAL_LOCTYPES]
    if residual and afrac is not None:
        raise CheckpointError(
            f"{source}: afrac_loctypes contains {', '.join(residual)}: AbsTopK on the residual "
            "stream is not supported by sparsecircuits (its node locations are "
            f"{', '.join(location_aliases())}); this checkpoint cannot be imported exactly"
        )
    unknown = [n for n in names if n not in location_aliases() and n not in _RESIDUAL_LOCTYPES]
    warnings = []
    if unknown:
        warnings.append(
            f"{source}: afrac_loctypes entries {', '.join(unknown)} are not locations of the "
            "reference model (it never applies them); ignored"
        )
    return tuple(loc for loc in location_aliases() if loc in names), warnings


def _check_tensors(state: Any, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} must hold a state dict (name -> tensor), got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{source} is not a plain state dict: entries {', '.join(bad[:5])} are not tensors; "
            "save model.state_dict() itself"
        )
    nonfloat = [k for k, v in state.items() if not v.is_floating_point() and not _CAUSAL_BUFFER.fullmatch(k)]
    if nonfloat:
        raise CheckpointError(f"{source}: tensors {', '.join(nonfloat[:5])} are not floating point")
    return dict(state)


def convert_reference(
    reference_config: Any, state: Any, source: str = "reference checkpoint"
) -> ImportResult:
    """Build the `SparseTransformer` equal to a reference config + state dict (in memory).

    Raises CheckpointError (an InputError) naming the field or tensor at fault.
    """
    cfg_source = f"{source}/{REF_CONFIG_FILE}"
    sd_source = f"{source}/{REF_WEIGHTS_FILE}"
    f, warnings, ignored = _parse_config(reference_config, cfg_source)
    state = _check_tensors(state, sd_source)

    for key in [k for k in state if _CAUSAL_BUFFER.fullmatch(k)]:  # saved with flash=False
        buf = state.pop(key)
        n = f["block_size"]
        if tuple(buf.shape) != (1, 1, n, n) or not torch.equal(buf.bool(), torch.ones(1, 1, n, n).tril().bool()):
            raise CheckpointError(f"{sd_source}: {key} is not the causal mask of block_size {n}")

    if f["tied_unembed"]:
        lm_head = state.pop("lm_head.weight", None)
        wte = state.get("transformer.wte.weight")
        if lm_head is not None and wte is not None and not torch.equal(lm_head, wte):
            raise CheckpointError(
                f"{sd_source}: tied_unembed is true but lm_head.weight differs from "
                "transformer.wte.weight; set tied_unembed to false if they are separate"
            )
        if wte is None and lm_head is not None:
            state["transformer.wte.weight"] = lm_head

    final_bias = state.pop("final_logits_bias", None)
    has_final_bias = final_bias is not None and bool(final_bias.ne(0).any())
    if f["d_pos_emb"] is not None:
        positional = "concat"
    else:
        wpe = state.get("transformer.wpe.weight")
        positional = "none" if wpe is not None and not bool(wpe.ne(0).any()) else "learned"
        if positional == "none":
            n_rows = wpe.shape[0]
            if n_rows != f["block_size"]:
                raise CheckpointError(
                    f"{sd_source}: transformer.wpe.weight has {n_rows} rows, block_size is {f['block_size']}"
                )
            del state["transformer.wpe.weight"]

    try:
        cfg = ModelConfig(
            n_layer=f["n_layer"], d_model=f["d_model"], n_head=f["n_head"], d_head=f["d_head"],
            d_mlp=f["d_mlp"], vocab_size=f["vocab_size"], n_ctx=f["block_size"],
            norm="rms" if f["rms_norm"] else "layer",
            norm_bias=f["ln_bias"] and not f["rms_norm"], bias=f["bias"],
            activation=f["activation_type"], residual_activation=f["residual_activation_type"],
            attention_sink=f["sink"], bigram_table=f["enable_bigram_table"], positional=positional,
            d_pos_emb=f["d_pos_emb"], afrac=f["afrac"], afrac_locations=f["afrac_loctypes"],
            tied_embeddings=f["tied_unembed"], final_logits_bias=has_final_bias,
        )
    except InputError as exc:
        raise CheckpointError(f"{cfg_source}: unsupported configuration: {exc}") from exc

    model = SparseTransformer(cfg)
    tensors = {reference_to_ours(k): v.to(torch.float32) for k, v in state.items()}
    names = {reference_to_ours(k): k for k in state}
    if has_final_bias:
        tensors["final_logits_bias"] = final_bias.to(torch.float32)
        names["final_logits_bias"] = "final_logits_bias"
    if cfg.tied_embeddings:
        tensors.pop("unembed.weight", None)  # a tied head is the embedding, whatever the file holds
    check_state_dict(model, tensors, sd_source, display=lambda k: names.get(k) or ours_to_reference(k))
    check_finite(tensors, sd_source)
    if cfg.tied_embeddings:
        tensors["unembed.weight"] = tensors["embed.weight"]
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return ImportResult(model=model, reference_config=dict(reference_config),
                        warnings=tuple(warnings), ignored_fields=tuple(ignored))


def load_reference(src_dir: str | Path) -> ImportResult:
    """Read a reference checkpoint folder (beeg_config.json + final_model.pt) into a model.

    The state dict is loaded with `torch.load(weights_only=True)`: no code is executed.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise CheckpointError(
            f"{src} is not a folder; give the folder holding {REF_CONFIG_FILE} and {REF_WEIGHTS_FILE}"
        )
    cfg_path, weights_path = src / REF_CONFIG_FILE, src / REF_WEIGHTS_FILE
    for p in (cfg_path, weights_path):
        if not p.is_file():
            what = "not a file" if p.exists() else "missing"
            raise CheckpointError(f"{p} is {what}: {src} is not a reference (openai/circuit_sparsity) checkpoint")
    ref = read_json(cfg_path, "fix or re-download it", CheckpointError)
    state = load_torch_file(weights_path, "re-download it")
    return convert_reference(ref, state, source=str(src))


def import_openai(
    src_dir: str | Path, out: str | Path, tokenizer: str | Path | None = None
) -> ImportResult:
    """Import a reference checkpoint folder and write it as a sparsecircuits checkpoint at `out`.

    `tokenizer` is a tokenizer.json, or encoder.json + vocab.bpe (a folder holding them or
    either file); without one the model is imported alone and tasks need a tokenizer later.
    """
    result = load_reference(src_dir)
    warnings = list(result.warnings)
    tok = None
    if tokenizer is not None:
        tok = load_reference_tokenizer(tokenizer, result.tokenizer_name)
        n_tok, n_model = tok.get_vocab_size(with_added_tokens=True), result.model.cfg.vocab_size
        if n_tok > n_model:
            raise InputError(
                f"tokenizer {tokenizer} has {n_tok} tokens but the model's vocab_size is {n_model}; "
                "give the tokenizer this model was trained with"
            )
        if n_tok < n_model:
            warnings.append(f"tokenizer has {n_tok} tokens, fewer than the model's vocab_size {n_model}")
    training = {
        "source": "openai/circuit_sparsity reference checkpoint",
        "imported_from": str(Path(src_dir).resolve()),
        "reference_config": result.reference_config,
        "ignored_fields": list(result.ignored_fields),
        "warnings": warnings,
    }
    path = save_checkpoint(result.model, out, tokenizer=tok, training=training)
    return replace(result, warnings=tuple(warnings), path=path,
                   tokenizer_path=path / "tokenizer.json" if tok is not None else None)


def reference_config_from(cfg: ModelConfig, tokenizer_name: str = "tinypython_2k") -> dict[str, Any]:
    """The beeg_config.json fields that reproduce `cfg` in the reference code."""
    if cfg.d_model % cfg.n_head:
        raise InputError(
            f"the reference code requires d_model divisible by n_head (d_model={cfg.d_model}, "
            f"n_head={cfg.n_head}); this model cannot be exported"
        )
    return {
        "block_size": cfg.n_ctx, "vocab_size": cfg.vocab_size, "n_layer": cfg.n_layer,
        "n_head": cfg.n_head, "d_head": cfg.d_head, "d_model": cfg.d_model, "d_mlp": cfg.d_mlp,
        "dropout": 0.0, "bias": cfg.bias, "ln_bias": cfg.norm_bias, "rms_norm": cfg.norm == "rms",
        "residual_activation_type": cfg.residual_activation, "activation_type": cfg.activation,
        "afrac": cfg.afrac, "afrac_loctypes": ",".join(cfg.afrac_locations),
        "tied_unembed": cfg.tied_embeddings, "enable_bigram_table": cfg.bigram_table,
        "learnable_bigram_table": cfg.bigram_table, "d_pos_emb": cfg.d_pos_emb, "sink": cfg.attention_sink,
        "tokenizer_name": tokenizer_name,
    }


def export_openai(model: SparseTransformer, out: str | Path, tokenizer_name: str = "tinypython_2k") -> Path:
    """Write `model` as a reference checkpoint folder (beeg_config.json + final_model.pt)."""
    cfg = model.cfg
    ref = reference_config_from(cfg, tokenizer_name)
    state = {ours_to_reference(k): v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if cfg.positional == "none":  # the reference always has wpe; zeros add nothing
        state["transformer.wpe.weight"] = torch.zeros(cfg.n_ctx, cfg.d_model)
    state.setdefault("final_logits_bias", torch.zeros(cfg.vocab_size))
    if cfg.tied_embeddings:  # one tensor under both names, as the reference saves it
        state["lm_head.weight"] = state["transformer.wte.weight"]
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / REF_CONFIG_FILE).write_text(json.dumps(ref, indent=2) + "\n", encoding="utf-8")
        save_torch(state, tmp / REF_WEIGHTS_FILE)
    return out


def tokenizer_from_gpt2_files(
    encoder_json: str | Path, vocab_bpe: str | Path, pattern: str = TINYPYTHON_PATTERN
) -> Tokenizer:
    """Convert GPT-2 style BPE files (encoder.json + vocab.bpe) to a byte-level BPE Tokenizer.

    Token ids are those of encoder.json; `<|...|>` entries become special tokens; `pattern`
    is the pre-tokenization regex of the original tokenizer (tinypython_2k's by default).
    """
    encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
    encoder = read_json(encoder_json, "give the encoder.json of the tokenizer")
    if not isinstance(encoder, dict) or not all(isinstance(k, str) and _is_int(v) for k, v in encoder.items()):
        raise InputError(f"{encoder_json} must map token strings to integer ids")
    specials = {t: i for t, i in encoder.items() if _SPECIAL_TOKEN.fullmatch(t)}
    vocab = {t: i for t, i in encoder.items() if t not in specials}
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise InputError(f"{encoder_json}: the non-special token ids must be 0..{len(vocab) - 1} without gaps or repeats")
    missing_bytes = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
    if missing_bytes:
        raise InputError(f"{encoder_json} lacks {len(missing_bytes)} of the 256 byte tokens; it is not a byte-level BPE vocabulary")
    if EOT not in specials:
        raise InputError(f"{encoder_json} has no {EOT} token; sparsecircuits tasks need it as the separator")
    lines = read_text(vocab_bpe, "give the vocab.bpe of the tokenizer").splitlines()
    merges = []
    for lineno, line in enumerate(lines, start=1):
        if (lineno == 1 and line.startswith("#version")) or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2 or any(p not in vocab for p in parts) or parts[0] + parts[1] not in vocab:
            raise InputError(f"{vocab_bpe} line {lineno} ({line!r}) is not a merge of two tokens of {encoder_json.name}")
        merges.append((parts[0], parts[1]))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    for token, idx in sorted(specials.items(), key=lambda kv: kv[1]):
        tok.add_special_tokens([token])
        if tok.token_to_id(token) != idx:
            raise InputError(
                f"{encoder_json}: special token {token} has id {idx}; special tokens must follow "
                "the other ids without gaps"
            )
    return tok


def load_reference_tokenizer(path: str | Path, tokenizer_name: str | None = None) -> Tokenizer:
    """Load the tokenizer of a reference model: a tokenizer.json, or encoder.json + vocab.bpe.

    `path` is a tokenizer.json, a folder holding tokenizer.json or encoder.json + vocab.bpe,
    or one of encoder.json / vocab.bpe (the other beside it). `tokenizer_name` (from the
    reference config) picks the pre-tokenization regex for the GPT-2 style files.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"tokenizer {path} does not exist; give a tokenizer.json or the folder with encoder.json and vocab.bpe")
    folder = path if path.is_dir() else path.parent
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    if path.is_file() and path.name not in ("encoder.json", "vocab.bpe"):
        return load_tokenizer(path)
    encoder_json, vocab_bpe = folder / "encoder.json", folder / "vocab.bpe"
    if not (encoder_json.is_file() and vocab_bpe.is_file()):
        raise InputError(
            f"tokenizer {path}: expected a tokenizer.json, or encoder.json and vocab.bpe together in {folder}"
        )
    name = tokenizer_name or "tinypython_2k"
    if name not in PRETOKENIZE_PATTERNS:
        raise InputError(
            f"tokenizer_name {name!r} has no known pre-tokenization regex (known: "
            f"{', '.join(PRETOKENIZE_PATTERNS)}); convert the tokenizer to a tokenizer.json and pass that"
        )
    tok = tokenizer_from_gpt2_files(encoder_json, vocab_bpe, PRETOKENIZE_PATTERNS[name])
    tok.encode_special_tokens = True  # the library's convention: document text is plain text
    return tok
