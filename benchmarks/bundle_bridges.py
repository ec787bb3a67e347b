"""Ship a bridges run between the two bundled models as package data: its bridges weights,
bridges.json with both models named `bundled:NAME` (fingerprints checked), and its training
record and metrics, without the copy of the sparse model the run folder holds.

    python benchmarks/bundle_bridges.py RUN [--name small-bridges]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sparsecircuits.bridges.model import BRIDGES_META, BRIDGES_WEIGHTS, read_bridges_meta
from sparsecircuits.bundled_names import BUNDLED_PREFIX, bundled_root
from sparsecircuits.checkpoint import load_checkpoint, model_fingerprint


def _bundled_name(ref: dict) -> str:
    """The bundled model with this fingerprint, as a `bundled:` name."""
    for name in ("small-dense", "small-sparse"):
        if model_fingerprint(load_checkpoint(bundled_root() / name).model) == ref["fingerprint"]:
            return BUNDLED_PREFIX + name
    raise SystemExit(f"{ref['path']} (fingerprint {ref['fingerprint']}) is not a bundled model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished `bridges train` folder over the bundled models")
    parser.add_argument("--name", default="small-bridges")
    args = parser.parse_args()
    run = Path(args.run)
    meta = read_bridges_meta(run)
    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    meta["sparse"] = meta.get("sparse") or training["bridges"]["sparse"]  # (runs before bridges.json named it)
    meta["dense"]["path"] = _bundled_name(meta["dense"])
    meta["sparse"]["path"] = _bundled_name(meta["sparse"])
    out = bundled_root() / args.name
    out.mkdir(exist_ok=True)
    shutil.copyfile(run / BRIDGES_WEIGHTS, out / BRIDGES_WEIGHTS)
    (out / BRIDGES_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    keep = {k: training[k] for k in ("recipe", "steps", "tokens", "seconds", "device", "torch_version",
                                     "library_version", "corpus_manifest_hash", "bridges")}
    (out / "training.json").write_text(json.dumps(keep, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(run / "metrics.jsonl", out / "metrics.jsonl")
    print(f"bundled {run} as {BUNDLED_PREFIX}{args.name} ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
