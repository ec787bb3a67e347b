"""`sparsecircuits model ...`: inspect a checkpoint (config, fingerprint, sparsity) and the node table."""

from __future__ import annotations

import argparse
import json

from sparsecircuits.checkpoint import load_checkpoint, model_fingerprint
from sparsecircuits.model import node_table_markdown
from sparsecircuits.sparsity import sparsity_report


def _info(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.model)
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
    print(node_table_markdown())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `model info` and `model nodes`."""
    p = sub.add_parser("model", help="inspect a model checkpoint and the node-location table")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    info = msub.add_parser("info", help="config, fingerprint and per-matrix sparsity of a checkpoint")
    info.add_argument("model", help="checkpoint folder (config.json + model.safetensors)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=_info)
    nodes = msub.add_parser("nodes", help="print the table of the 8 node locations per layer")
    nodes.set_defaults(func=_nodes)
