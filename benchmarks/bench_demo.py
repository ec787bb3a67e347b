"""Time `sparsecircuits demo` on the bundled models and record their figures (target: <= 600 s).

Usage: python benchmarks/bench_demo.py [--out DIR] [--summary FILE]

Runs the demo with its default settings (as `make demo` does) and records in the demo
section of RESULTS.md: the wall-clock time and its phases, the bundled models' size,
validation loss and nonzeros, both models' test loss on every task, and the sparse and
dense circuit sizes with their geometric means. `--summary` re-renders the section from
an existing demo summary.json instead of running the demo again, keeping the machine, date
and load recorded in results/demo.json by the run that measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from common import RESULTS_DIR, machine, machine_line, write_results

from sparsecircuits.bundled_names import bundled_root
from sparsecircuits.experiments.demo import DemoConfig, run_demo

TARGET_SECONDS = 600.0
STRETCH_SECONDS = 300.0


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _bundle_sizes() -> dict[str, float]:
    sizes = {}
    for folder in sorted(p for p in bundled_root().iterdir() if p.is_dir()):
        sizes[folder.name] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
    return sizes


def _timing_lines(summary: dict, info: dict, loads: tuple[float, ...]) -> list[str]:
    """Title, machine, demo settings, the time of each phase and the verdict on the target."""
    sec = summary["seconds"]
    total = sec["total"]
    verdict = "met" if total <= TARGET_SECONDS else "**missed**"
    stretch = "met" if total <= STRETCH_SECONDS else "missed"
    s = summary["settings"]
    return [
        "## `make demo`: the bundled models, their circuits, and the demo's time",
        "",
        machine_line(info) + f" torch threads {summary['torch_threads']}; 1-minute load average "
        + (f"{loads[0]:.1f} before, {loads[1]:.1f} after." if loads else "not recorded (a demo run by hand)."),
        "",
        f"`sparsecircuits demo` with its defaults (method `{s.get('method', 'masks')}`, minimality pass "
        f"{'on' if s.get('minimal') else 'off'}, faithfulness coefficient {s.get('faithful_coef', 0.0)}, "
        f"{s['steps']} pruning steps at mask lr {s['lr']}, "
        f"{s['batch_pairs']} pairs per step, {s['train_pairs']} train pairs, {s['pairs']} held-out pairs, "
        f"controls `{s['controls']}` with {s['control_steps']} pruning steps, {s['eval_pairs']} test pairs "
        "per task for the evaluation).",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| load models | {sec['models']:.1f} |",
        f"| evaluate both models on {len(summary['evaluation']['sparse'])} tasks | {sec['evaluate']:.1f} |",
        f"| {len(summary['circuits'])} circuits: prune, validate, report | {sec['circuits']:.1f} |",
        f"| **total** | **{total:.0f}** |",
        "",
        f"Target: at most {TARGET_SECONDS:.0f} s on 2 cores — {verdict} (stretch {STRETCH_SECONDS:.0f} s: {stretch}).",
    ]


def _model_lines(models: dict, sizes: dict[str, float]) -> list[str]:
    """The bundled models' table (steps, validation loss, nonzeros, folder size) and their total size."""
    lines = [
        "### Bundled models (float16 bigram table; every figure measured on the model as loaded)",
        "",
        "| model | steps | val loss (loaded, on corpus-val) | val loss (training run) | nonzero matrix weights "
        "| nonzero parameters (all) | folder MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for card in models.values():
        nz = card["nonzeros"]
        m = nz.get("matrix", {})
        lines.append(
            f"| {card['name']} | {card['steps']} | {_f(card['val_loss'])} | {_f(card['val_loss_at_training'])} | "
            f"{m.get('nonzero', 0):,} of {m.get('numel', 0):,} ({m.get('fraction', 0):.3f}) | "
            f"{nz['all']['nonzero']:,} of {nz['all']['numel']:,} | {sizes.get(card['name'], 0):.1f} |"
        )
    return [
        *lines,
        "",
        f"Both folders together: {sum(sizes.values()):.1f} MB (limit 25). The loaded models' validation loss is "
        "measured on each folder's `corpus-val/`; where that is a sample of the validation split "
        "(`model pack --val-tokens`), it differs from the training run's figure by the sample, not the model.",
    ]


def _task_lines(ev: dict, settings: dict) -> list[str]:
    """Both models' test loss on every task (solved ones marked) and how many the sparse one solves."""
    lines = [
        f"### Task losses (test split, {settings['eval_pairs']} pairs; solved = loss <= {settings['target_loss']})",
        "",
        "| task | sparse | dense |",
        "|---|---|---|",
    ]
    for task in ev["sparse"]:
        cells = []
        for kind in ("sparse", "dense"):
            e = ev.get(kind, {}).get(task)
            cells.append("-" if e is None or e["loss"] is None else _f(e["loss"]) + (" **solved**" if e["solved"] else ""))
        lines.append(f"| {task} | {cells[0]} | {cells[1]} |")
    solved = [t for t, r in ev["sparse"].items() if r["solved"]]
    return [*lines, "", f"The sparse model solves {len(solved)} of {len(ev['sparse'])} tasks."]


def _circuit_lines(circuits: list[dict]) -> list[str]:
    """One table row per circuit (size, losses, verdict, seconds); nothing without circuits."""
    if not circuits:
        return []
    lines = [
        "",
        "### Circuits (sparse vs dense)",
        "",
        "| task | model | nodes | edges | loss full | loss circuit | at target | verdict | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in circuits:
        secs = sum(c["seconds"].values())
        lines.append(
            f"| {c['task']} | {c['kind']} | {c['n_nodes']} | {c['n_edges']} | {_f(c['losses'].get('full'))} | "
            f"{_f(c['losses'].get('circuit'))} | {'yes' if c['target_met'] else 'no'} | {c['verdict']} | {secs:.0f} |"
        )
    return lines


def _comparison_lines(comp: dict | None) -> list[str]:
    """Dense/sparse edge ratio and verdicts per task, the headline geometric means (pairs both
    full models solve and whose circuits both pass sufficiency) and the all-circuits figure."""
    if not comp or not comp["rows"]:
        return []
    left_out = comp["trusted"]["left_out"]
    lines = ["", "| task | dense/sparse edges | sparse verdict | dense verdict | in the headline |", "|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {_f(r['edge_ratio'], 2)} | {r['sparse_verdict']} | {r['dense_verdict']} | "
              f"{left_out.get(r['task'], 'yes')} |" for r in comp["rows"]]
    for key, what in (("trusted", "both full models solve and both circuits pass sufficiency on held-out pairs"),
                      ("all", "both circuits reach the target on the pruning pairs")):
        g = comp[key]
        if g["n_tasks"]:
            lines += ["", f"Geometric mean of edges over the {g['n_tasks']} task(s) where {what}: sparse "
                          f"{g['geomean_edges_sparse']:.1f}, dense {g['geomean_edges_dense']:.1f}, "
                          f"**dense/sparse {g['geomean_ratio']:.2f}x**."]
    lines += ["", "(The paper reports about 16x at matched pretraining loss, on larger models pruned for ~2000 "
                  "steps.)"]
    return lines


def markdown(summary: dict, info: dict, loads: tuple[float, ...], sizes: dict[str, float]) -> str:
    """The demo section of RESULTS.md."""
    lines = [
        *_timing_lines(summary, info, loads),
        "",
        *_model_lines(summary["models"], sizes),
        "",
        *_task_lines(summary["evaluation"], summary["settings"]),
        *_circuit_lines(summary["circuits"]),
        *_comparison_lines(summary.get("comparison")),
    ]
    for note in summary["notes"]:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="demo output folder (default: a temporary folder)")
    parser.add_argument("--summary", help="an existing demo summary.json to record instead of running")
    args = parser.parse_args()
    if args.summary:
        # re-rendering the recorded summary keeps its machine, date and load; a new summary
        # (a demo run by hand) is recorded with this machine, now, and the load now
        summary = json.loads(Path(args.summary).read_text(encoding="utf-8"))
        recorded = json.loads((RESULTS_DIR / "demo.json").read_text(encoding="utf-8"))
        if recorded.get("summary") == summary:
            info, loads = recorded["machine"], tuple(recorded["load_average"])
        else:
            info, loads = machine(), ()
    else:
        info = machine()
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out) if args.out else Path(tmp) / "demo-out"
            summary = run_demo(DemoConfig(out=out, progress=False)).summary
        loads = (load_before, os.getloadavg()[0])
    write_results("demo", {"machine": info, "load_average": loads, "bundle_mb": _bundle_sizes(), "summary": summary},
                  markdown(summary, info, loads, _bundle_sizes()))
    print(f"demo took {summary['seconds']['total']:.0f} s; results: benchmarks/RESULTS.md (demo section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
