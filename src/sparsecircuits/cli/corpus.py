"""`sparsecircuits corpus build`: a corpus folder (manifest, tokenizer, token shards)."""

from __future__ import annotations

import argparse

from sparsecircuits.cli.common import add_command, add_force, add_group
from sparsecircuits.data.sources import DEFAULT_MAX_FILE_BYTES  # torch-free
from sparsecircuits.outputs import CORPUS, check_out

SOURCE_HELP = """\
where text comes from; repeat to combine (default: stdlib). Forms:
  stdlib                    the running Python's standard library, without tests
  site-packages             the running Python's installed packages, without tests
  dir:PATH[:GLOB,...]       a directory, recursive; *.py unless globs are given
  PATH                      an existing directory (or a .jsonl file)
  jsonl:PATH[:FIELD]        a JSONL file, one document per line in FIELD (default text)
  hf:NAME[:FIELD]           a Hugging Face dataset's train split (pip install
                            'sparsecircuits[datasets]'; may download)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `corpus` command and its `build` subcommand."""
    sub = add_group(subparsers, "corpus", "build a training corpus and tokenizer")
    build = add_command(
        sub,
        "build",
        raw=True,
        help="gather Python code, train a BPE tokenizer, write token shards",
        description=(
            "Gather documents, drop duplicates and non-UTF-8 or oversized files, split\n"
            "train/val by file hash, train a byte-level BPE tokenizer and write uint16 token\n"
            "shards. DIR gets manifest.json, tokenizer.json, train.bin, val.bin and\n"
            "shards.json; it is written to a temp folder and renamed, so a failure leaves\n"
            "nothing."
        ),
    )
    build.add_argument("--source", action="append", metavar="SPEC", help=SOURCE_HELP)
    build.add_argument("--out", required=True, metavar="DIR", help="output folder (new, or see --force)")
    build.add_argument(
        "--vocab-size", type=int, default=2048, metavar="N", help="tokens incl. <|endoftext|>"
    )
    build.add_argument(
        "--val-fraction", type=float, default=0.02, metavar="F", help="share of files in validation"
    )
    build.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    build.add_argument(
        "--tokenizer", metavar="FILE",
        help="reuse this tokenizer.json instead of training one (default: train one)",
    )
    build.add_argument(
        "--max-files", type=int, metavar="N", help="keep at most N documents (source order; default: all)"
    )
    build.add_argument(
        "--max-mb", type=float, metavar="MB", help="keep at most this many MB of text (default: all)"
    )
    build.add_argument(
        "--max-file-kb",
        type=int,
        default=DEFAULT_MAX_FILE_BYTES // 1024,
        metavar="KB",
        help="skip (and count) documents larger than this",
    )
    add_force(build, "a corpus")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from sparsecircuits.data.corpus import build_corpus

    out = check_out(args.out, CORPUS, args.force)
    summary = build_corpus(
        sources=args.source or ["stdlib"],
        out_dir=out,
        vocab_size=args.vocab_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        tokenizer=args.tokenizer,
        max_files=args.max_files,
        max_mb=args.max_mb,
        max_file_bytes=args.max_file_kb * 1024,
        overwrite=args.force,
        progress=not args.no_progress,
    )
    print("\n".join(summary.lines()))
    return 0
