"""`sparsecircuits model ...`: inspect a checkpoint (config, fingerprint, sparsity) and the node table."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from sparsecircuits.cli.common import MODEL_HELP, add_command, add_force, add_group, model_path
from sparsecircuits.errors import InputError
from sparsecircuits.outputs import CHECKPOINT, check_out

if TYPE_CHECKING:
    from sparsecircuits.checkpoint import Checkpoint

BIGRAM_DTYPES = ("float16", "float32")  # checkpoint.HALF_DTYPES, spelled torch-free for --help


def _info(args: argparse.Namespace) -> int:
    from sparsecircuits.checkpoint import load_checkpoint, model_fingerprint
    from sparsecircuits.model.sparsity import sparsity_report

    ckpt = load_checkpoint(model_path(args.model))
    report = sparsity_report(ckpt.model)
    if args.json:
        out = {
            "path": str(ckpt.path),
            "fingerprint": model_fingerprint(ckpt.model),
            "config": ckpt.config.to_dict(),
            "sparsity": report.to_dict(),
            "tokenizer": str(ckpt.tokenizer_path) if ckpt.tokenizer_path else None,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"checkpoint  {ckpt.path}")
    print(f"fingerprint {model_fingerprint(ckpt.model)}")
    print(f"tokenizer   {ckpt.tokenizer_path or 'none (tasks need one)'}")
    print("config      " + json.dumps(ckpt.config.to_dict()))
    print()
    print(report.format_table())
    return 0


def _nodes(args: argparse.Namespace) -> int:
    from sparsecircuits.model import node_table_markdown

    print(node_table_markdown())
    return 0


def _max_logit_difference(a: Checkpoint, b: Checkpoint) -> float:
    """max |logits(a) - logits(b)| of two checkpoints on 4 seeded random windows."""
    import torch

    cfg = a.config
    tokens = torch.randint(0, cfg.vocab_size, (4, cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((a.model(tokens) - b.model(tokens)).abs().max())


def _pack(args: argparse.Namespace) -> int:
    from sparsecircuits.checkpoint import (
        WEIGHTS_FILE,
        load_checkpoint,
        model_fingerprint,
        pack_checkpoint,
    )

    if args.val_tokens is not None and args.val_corpus is None:
        raise InputError("--val-tokens needs --val-corpus")
    run = model_path(args.run)
    source = load_checkpoint(run)
    target = check_out(args.out, CHECKPOINT, args.force)
    out = pack_checkpoint(run, target, bigram_dtype=args.bigram_dtype, val_corpus=args.val_corpus,
                          val_tokens=args.val_tokens)
    packed = load_checkpoint(out)
    diff = _max_logit_difference(source, packed)
    before = (run / WEIGHTS_FILE).stat().st_size
    after = (out / WEIGHTS_FILE).stat().st_size
    print(f"weights {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB (bigram table {args.bigram_dtype})")
    print(f"fingerprint {model_fingerprint(source.model)} -> {model_fingerprint(packed.model)}; "
          f"max |logit difference| on 4 random windows: {diff:.3g}")
    print(f"packed checkpoint: {out} ({', '.join(sorted(p.name for p in out.iterdir()))})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `model info`, `model nodes` and `model pack`."""
    msub = add_group(sub, "model", "inspect a model checkpoint and the node-location table")
    info = add_command(msub, "info", help="config, fingerprint and per-matrix sparsity of a checkpoint")
    info.add_argument("model", metavar="RUN", help=MODEL_HELP)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=_info)
    nodes = add_command(msub, "nodes", help="print the table of the 8 node locations per layer")
    nodes.set_defaults(func=_nodes)
    pack = add_command(
        msub,
        "pack",
        help="re-save a checkpoint compactly (sparse tensors as a bit mask + values)",
        description=(
            "Write RUN (a run or checkpoint folder) to --out in the compact weights layout: "
            "tensors less than 90% nonzero as a bit mask + float32 nonzeros, the bigram "
            "table as float16 by default (lossy; float32 is exact). config.json, "
            "tokenizer.json, training.json and metrics.jsonl are copied; with --val-corpus, "
            "the corpus's validation split too (OUT/corpus-val, a corpus folder)."
        ),
    )
    pack.add_argument("run", metavar="RUN", help=MODEL_HELP)
    pack.add_argument("--out", required=True, metavar="DIR", help="the packed checkpoint folder to write")
    add_force(pack, "a checkpoint (never a training run)")
    pack.add_argument("--bigram-dtype", choices=BIGRAM_DTYPES, default="float16",
                      help="storage dtype of the bigram table")
    pack.add_argument("--val-corpus", metavar="CORPUS",
                      help="also copy this corpus's validation split to OUT/corpus-val, for mean "
                           "ablation (default: no copy)")
    pack.add_argument("--val-tokens", type=int, metavar="N",
                      help="with --val-corpus, keep whole validation documents, a seeded sample "
                           "of at most N tokens (default: the whole split)")
    pack.set_defaults(func=_pack)
