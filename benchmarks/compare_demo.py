"""Do two `sparsecircuits demo` output folders hold the same circuits?

For refactors that must not change results: every circuit's circuit.json (nodes, edges,
links, losses, curve, calibration, pruning settings) and validation.json (metrics,
controls, verdict) are compared field by field; paths are expected to differ.

    python benchmarks/compare_demo.py BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CIRCUIT_FIELDS = ("nodes", "edges", "residual_links", "embed_links", "unembed_links", "losses", "curve",
                  "calibration", "pruning", "task", "tokens", "target_met")
VALIDATION_FIELDS = ("metrics", "controls", "verdict", "settings")


def differences(before: Path, after: Path) -> dict[str, list[str]]:
    """Per circuit (task/model), the fields that differ; an empty list means identical."""
    out: dict[str, list[str]] = {}
    for file in sorted(before.glob("circuits/*/*/circuit.json")):
        name = str(file.parent.relative_to(before / "circuits"))
        other = after / file.relative_to(before)
        if not other.is_file():
            out[name] = ["missing in the second folder"]
            continue
        a, b = json.loads(file.read_text()), json.loads(other.read_text())
        diff = [f"circuit.{k}" for k in CIRCUIT_FIELDS if a.get(k) != b.get(k)]
        va, vb = (json.loads((f.parent / "validation.json").read_text()) for f in (file, other))
        diff += [f"validation.{k}" for k in VALIDATION_FIELDS if va.get(k) != vb.get(k)]
        out[name] = diff
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    result = differences(args.before, args.after)
    for name, diff in result.items():
        print(f"{name:<32} {'identical' if not diff else 'DIFFERS: ' + ', '.join(diff)}")
    same = sum(not d for d in result.values())
    print(f"{same} of {len(result)} circuits identical")
    return 0 if result and same == len(result) else 1


if __name__ == "__main__":
    sys.exit(main())
