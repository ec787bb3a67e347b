"""`sparsecircuits import-openai` and `export-openai`: the paper's reference checkpoint format."""

from __future__ import annotations

import argparse
import sys

from sparsecircuits.cli.common import MODEL_HELP, add_command, add_force, model_path
from sparsecircuits.outputs import CHECKPOINT, REFERENCE, check_out


def _import(args: argparse.Namespace) -> int:
    from sparsecircuits.interop.openai import import_openai

    out = check_out(args.out, CHECKPOINT, args.force)
    result = import_openai(args.src, out, tokenizer=args.tokenizer)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    cfg = result.model.cfg
    print(
        f"imported {cfg.n_layer} layers, d_model {cfg.d_model}, vocab {cfg.vocab_size}, "
        f"positional {cfg.positional}, AbsTopK {cfg.afrac} at {','.join(cfg.afrac_locations) or '-'}"
    )
    if result.tokenizer_path is None:
        print(
            "no tokenizer: the model imported alone; tasks need a tokenizer, rerun with "
            "--tokenizer (tokenizer.json, or the folder with encoder.json and vocab.bpe)"
        )
    else:
        print(f"tokenizer  {result.tokenizer_path}")
    print(f"checkpoint {result.path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.interop.openai import export_openai

    ckpt = load_checkpoint(model_path(args.model))
    out = export_openai(ckpt.model, check_out(args.out, REFERENCE, args.force), tokenizer_name=args.tokenizer_name)
    print(f"reference checkpoint {out} (beeg_config.json + final_model.pt)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `import-openai` and `export-openai`."""
    p = add_command(
        sub,
        "import-openai",
        help="import a checkpoint of the paper's reference code (beeg_config.json + final_model.pt)",
    )
    p.add_argument("src", metavar="SRC_DIR", help="folder holding beeg_config.json and final_model.pt")
    p.add_argument("--out", required=True, metavar="RUN", help="checkpoint folder to write")
    add_force(p, "a checkpoint (never a training run)")
    p.add_argument(
        "--tokenizer",
        metavar="FILE",
        help="tokenizer.json, or encoder.json + vocab.bpe (a folder holding them, or either file); "
             "default: none, the model is imported alone",
    )
    p.set_defaults(func=_import)
    e = add_command(
        sub, "export-openai", help="write a checkpoint in the reference format (beeg_config.json + final_model.pt)"
    )
    e.add_argument("model", metavar="RUN", help=MODEL_HELP)
    e.add_argument("--out", required=True, metavar="DIR", help="reference checkpoint folder to write")
    add_force(e, "a reference checkpoint")
    e.add_argument("--tokenizer-name", default="tinypython_2k", help="tokenizer_name to record in beeg_config.json")
    e.set_defaults(func=_export)
