"""The steering experiment of docs/bridges.md on the bundled models: for each task, the
sparse circuit's residual channels that best separate the task's two prompts (ranked on
train pairs), each steered toward its value on the alternative prompt and carried through
the bridges into the dense model (test pairs), against random channels of the same site and
norm; with the bridges' per-site quality. Writes results/bridges.json, the "bridges" section
of RESULTS.md and a plot.

    python benchmarks/bridges_steering.py --bridges DIR --circuits DEMO/circuits \
        --task single_double_quote --task while_return_true
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from common import machine, machine_line, write_results

from sparsecircuits.bridges import open_bridges, quality_markdown, steer
from sparsecircuits.bridges.steer import rank_channels, record_steering, residual_channel
from sparsecircuits.circuits import Circuit
from sparsecircuits.tasks import get_task

SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)


def _task_rows(models, circuits: Path, task_name: str, args: argparse.Namespace) -> dict:
    circuit_dir = circuits / task_name / "sparse"
    circuit = Circuit.load(circuit_dir)
    circuit.check_against(models.sparse.model)
    task = get_task(task_name)
    tokenizer = models.sparse.tokenizer
    ranked = rank_channels(models.sparse.model, circuit.nodes,
                           task.generate(tokenizer, args.pairs, seed=args.seed, split="train"))
    test = task.generate(tokenizer, args.pairs, seed=args.seed, split="test")
    by_site: dict[str, list[str]] = {}
    for node, _ in ranked:
        by_site.setdefault(residual_channel(node, models.sparse.model)[0], []).append(node)
    score = dict(ranked)
    groups = [[node] for node, _ in ranked[: args.top]] + [nodes for nodes in by_site.values() if len(nodes) > 1]
    steered = []
    for nodes in groups:
        result = steer(models, nodes, test, toward_alt=True, scales=SCALES, controls=args.controls, seed=args.seed,
                       task_name=task_name)
        result["task"], result["separation"] = task_name, max(score[n] for n in nodes)
        record_steering(circuit_dir, {**result, "bridges": str(Path(args.bridges).resolve())})
        steered.append(result)
    return {"task": task_name, "circuit": str(circuit_dir), "candidates": len(ranked), "ranked": ranked[:10],
            "steered": steered}


def _label(result: dict) -> str:
    """One channel by name; a site's group by its site and size."""
    nodes = result["nodes"]
    return nodes[0] if len(nodes) == 1 else f"all {len(nodes)} at {result['site']}"


def _markdown(data: dict) -> str:
    q = data["quality"]
    lines = [
        "## Bridges and steering (`benchmarks/bridges_steering.py`)",
        "",
        f"{machine_line(data['machine'])} Bridges: `{data['bridges']}` "
        f"({data['training']['steps']} steps, {data['training']['seconds'] / 60:.0f} min on the CPU).",
        "",
        "Quality on the run's validation batches (NMSE 0 is a perfect map, 1 is the mean; KL in nats):",
        "",
        quality_markdown(q).strip(),
        "",
        "Steering: for each task, the sparse circuit's residual channels that best separate its two "
        "prompts (one at a time), and all of the circuit's channels at each site together, set toward "
        "their value on the alternative prompt at every position and carried into the dense model by "
        "the decoder; the dense model's p(alternative answer) on the test prompts, against "
        f"{data['controls']} random sets of as many channels of the same site at the same norm, and the "
        "same edit inside the sparse model.",
        "",
        "| task | channels | separation (best) | dense p(alt), no edit | dense p(alt), scale 1 | scale 4 "
        "| control, scale 1 | control, scale 4 | sparse p(alt), scale 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in data["tasks"]:
        for r in t["steered"]:
            at = {row["scale"]: row for row in r["scales"]}
            lines.append(
                f"| {t['task']} | {_label(r)} | {r['separation']:.2f} | {r['baseline']['dense']['p_alt']:.3f} "
                f"| {at[1.0]['dense']['p_alt']:.3f} | {at[4.0]['dense']['p_alt']:.3f} "
                f"| {at[1.0]['control']['p_alt']:.3f} ± {at[1.0]['control']['p_alt_sd']:.3f} "
                f"| {at[4.0]['control']['p_alt']:.3f} ± {at[4.0]['control']['p_alt_sd']:.3f} "
                f"| {at[1.0]['sparse']['p_alt']:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = data["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=True):
        best = max(t["steered"], key=lambda r: r["scales"][-1]["sparse"]["p_alt"])  # by the sparse reference
        scales = [r["scale"] for r in best["scales"]]
        ax.plot(scales, [r["dense"]["p_alt"] for r in best["scales"]], "o-", label=f"dense, via {_label(best)}")
        ax.plot(scales, [r["control"]["p_alt"] for r in best["scales"]], "s--", label="dense, random channels")
        ax.plot(scales, [r["sparse"]["p_alt"] for r in best["scales"]], "^:", label="sparse model itself")
        ax.set_title(t["task"])
        ax.set_xlabel("scale of the edit (1 = the alternative prompt's value)")
        ax.set_ylabel("p(alternative answer)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridges", required=True, help="a bridges folder of the bundled models")
    parser.add_argument("--circuits", required=True, help="a demo's circuits/ folder (TASK/sparse/circuit.json)")
    parser.add_argument("--task", action="append", required=True, help="a task the sparse model solves; repeat")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--top", type=int, default=3, help="channels steered per task (best first)")
    parser.add_argument("--controls", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=str(Path(__file__).parent.parent / "docs" / "screenshots" / "steering.png"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    models = open_bridges(args.bridges)
    training = json.loads((Path(args.bridges) / "training.json").read_text(encoding="utf-8"))
    info = machine()
    data = {
        "date": info["date"], "machine": info, "bridges": args.bridges, "controls": args.controls,
        "training": {"steps": training.get("steps"), "seconds": training.get("seconds") or 0.0},
        "quality": (training.get("bridges") or {}).get("quality"),
        "tasks": [_task_rows(models, Path(args.circuits), t, args) for t in args.task],
    }
    write_results("bridges", data, _markdown(data))
    _plot(data, Path(args.plot))
    print(_markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
