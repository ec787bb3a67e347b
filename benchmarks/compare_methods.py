"""Discovery methods side by side on the bundled models: one `sparsecircuits demo` folder per
method (`demo --method NAME --out DIR`), each circuit's nodes, edges, held-out circuit loss
(validation's), verdict and pruning seconds, and the node-set Jaccard of every method's
circuit with the first folder's (the reference, normally the demo default).

    python benchmarks/compare_methods.py NAME=DIR [NAME=DIR ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import machine, machine_line, write_results


def _circuits(folder: Path) -> dict[tuple[str, str], dict]:
    """(task, kind) -> the figures of that circuit in a demo folder. A demo still running (no
    summary.json yet) gives its validated circuits so far, without pruning seconds."""
    summary_file = folder / "summary.json"
    if summary_file.is_file():
        listed = json.loads(summary_file.read_text(encoding="utf-8"))["circuits"]
    else:
        listed = [{"task": d.parent.name, "kind": d.name, "circuit": str(d), "seconds": {}}
                  for d in sorted(folder.glob("circuits/*/*")) if (d / "validation.json").is_file()]
    out = {}
    for c in listed:
        circuit_dir = Path(c["circuit"])
        circuit = json.loads((circuit_dir / "circuit.json").read_text(encoding="utf-8"))
        validation = json.loads((circuit_dir / "validation.json").read_text(encoding="utf-8"))
        out[(c["task"], c["kind"])] = {
            "nodes": {f"{h}:{i}" for h, idx in circuit["nodes"].items() for i in idx},
            "n_nodes": circuit["n_nodes"], "n_edges": circuit["n_edges"], "target_met": circuit["target_met"],
            "held_out_loss": validation["metrics"]["circuit"], "verdict": validation["verdict"]["status"],
            "prune_seconds": c["seconds"].get("prune"),
        }
    return out


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _carried(previous: str | None, data: list[dict], reference: str) -> list[dict]:
    """The rows of an earlier methods.json for (task, model, method) these runs do not have
    (measured against the same reference method)."""
    if previous is None:
        return []
    old = json.loads(Path(previous).read_text(encoding="utf-8"))
    if old.get("reference") != reference:
        raise SystemExit(f"{previous} measured Jaccard against {old.get('reference')}, not {reference}")
    have = {(d["task"], d["kind"], d["method"]) for d in data}
    return [{**d, "carried": True} for d in old["circuits"] if (d["task"], d["kind"], d["method"]) not in have]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--previous", metavar="JSON",
                        help="a methods.json whose rows are kept where these runs have no circuit (default: none)")
    args = parser.parse_args()
    runs = {spec.split("=", 1)[0]: _circuits(Path(spec.split("=", 1)[1])) for spec in args.runs}
    reference = next(iter(runs))
    data = []
    for (task, kind), ref in sorted(runs[reference].items()):
        for name, circuits in runs.items():
            c = circuits.get((task, kind))
            if c is not None:
                data.append({"task": task, "kind": kind, "method": name,
                             "jaccard_with_reference": _jaccard(c["nodes"], ref["nodes"]),
                             **{k: v for k, v in c.items() if k != "nodes"}})
    carried = _carried(args.previous, data, reference)
    order = {name: i for i, name in enumerate([*runs, *sorted({d["method"] for d in carried} - set(runs))])}
    data = sorted(data + carried, key=lambda d: (d["task"], d["kind"], order[d["method"]]))
    rows = [f"| {d['task']} | {d['kind']} | {d['method']} | {d['n_nodes']} | {d['n_edges']} | "
            f"{d['held_out_loss']:.3f} | {'yes' if d['target_met'] else 'no'} | {d['verdict']} | "
            f"{_secs(d['prune_seconds'])} | {d['jaccard_with_reference']:.2f} |" for d in data]
    summary_rows = []
    for name in order:
        mine = [d for d in data if d["method"] == name]
        ok = sum(d["verdict"] == "ok" for d in mine)
        jac = sum(d["jaccard_with_reference"] for d in mine) / len(mine) if mine else 0.0
        secs = sum(d["prune_seconds"] or 0.0 for d in mine)
        summary_rows.append(f"| {name} | {len(mine)} | {ok} | {sum(d['target_met'] for d in mine)} | "
                            f"{jac:.2f} | {secs:.0f} |")
    markdown = f"""## Discovery methods on the bundled models (`benchmarks/compare_methods.py`)

{machine_line(machine())} One `sparsecircuits demo --method NAME` run per method (minimality
pass on, core controls, 64 held-out pairs); node-set Jaccard against `{reference}`. Seconds are
the pruning's wall time in a one-thread worker while other jobs shared the 2 cores
(indicative only).{" Rows of methods not rerun here are kept from the earlier measurement (" + args.previous + ")." if carried else ""}

| method | circuits | ok | target met | mean Jaccard with {reference} | pruning seconds (sum) |
|---|---|---|---|---|---|
{chr(10).join(summary_rows)}

| task | model | method | nodes | edges | held-out circuit loss | target met | verdict | pruning s | Jaccard |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_results("methods", {"machine": machine(), "reference": reference, "circuits": data}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
