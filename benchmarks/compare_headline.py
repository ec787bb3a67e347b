"""The demo's sparse-vs-dense headline under the rule of `experiments.demo.compare`,
recomputed from a demo folder (its summary.json and each circuit's validation.json), beside
the figure over every circuit that reached the target.

    python benchmarks/compare_headline.py DEMO_DIR [--label TEXT]

Works on folders written before the summary recorded each circuit's sufficiency check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import machine, machine_line, write_results

from sparsecircuits.experiments import demo
from sparsecircuits.validate.pipeline import ValidationReport


def recompute(folder: Path) -> tuple[dict, dict]:
    """(the summary, its comparison by today's rule)."""
    summary = json.loads((folder / demo.SUMMARY_FILE).read_text(encoding="utf-8"))
    for c in summary["circuits"]:
        c.update(demo.verdict_fields(ValidationReport.load(c["circuit"]).verdict))
    solved = {kind: {t: r["solved"] for t, r in ev.items()} for kind, ev in summary["evaluation"].items()}
    return summary, demo.compare(summary["circuits"], summary["pruned_tasks"], solved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--label", default="the demo default", help="what the folder's run was")
    args = parser.parse_args()
    summary, comparison = recompute(args.folder)
    summary["comparison"] = comparison
    lines = demo.format_summary(summary)
    print(lines)
    t, a = comparison["trusted"], comparison["all"]
    left = "; ".join(f"{task}: {why}" for task, why in t["left_out"].items()) or "none"
    markdown = f"""## The demo's headline, by the rule of Step 13 (`benchmarks/compare_headline.py`)

{machine_line(machine())} Recomputed from the demo folder of {args.label}
(`demo --method {summary['settings']['method']}`, faithful_coef {summary['settings'].get('faithful_coef')}).

| rule | tasks | geomean edges sparse | geomean edges dense | dense/sparse |
|---|---|---|---|---|
| every pair of circuits that reached the target on the pruning pairs (the figure before) | {a['n_tasks']} | {a['geomean_edges_sparse']:.1f} | {a['geomean_edges_dense']:.1f} | {a['geomean_ratio']:.2f}x |
| both full models solve the task and both circuits pass sufficiency on held-out pairs (the headline now) | {t['n_tasks']} | {t['geomean_edges_sparse'] or 0:.1f} | {t['geomean_edges_dense'] or 0:.1f} | {t['geomean_ratio'] or 0:.2f}x |

Left out of the headline: {left}.
"""
    write_results("headline", {"folder": str(args.folder), "comparison": comparison}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
