"""Support-mode training (`train.support_every=K`) against the exact method (K = 1): loss
against wall-clock time on the wide-sparse preset's shape with CSR execution, for
K in {1, 4, 16, 64}, the same tokens each. Records every logged row, the final validation
loss and the step time after the anneal; writes benchmarks/results/support.json, the
support section of RESULTS.md and docs/screenshots/support.png.

    python benchmarks/bench_support.py [--steps 240] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from common import machine, machine_line, write_results

from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.train import train

KS = (1, 4, 16, 64)


def _run(data: Path, out: Path, steps: int, k: int) -> dict:
    overrides = [f"train.steps={steps}", "train.batch_size=16", "train.log_every=10", f"train.eval_every={steps}",
                 "train.checkpoint_every=0", "train.anneal_end_frac=0.25", "train.eval_batches=4",
                 "train.execution=sparse", "train.autocast=none", f"train.support_every={k}"]
    result = train("wide-sparse", data, out, overrides=overrides, progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    after = [r["step_time"] for r in rows if r["step"] > steps * 0.25 + 10]
    return {"k": k, "rows": [{"step": r["step"], "wall_time": r["wall_time"], "train_loss": r["train_loss"]} for r in rows],
            "final_val_loss": result.final_val_loss, "step_time_after_anneal": statistics.median(after),
            "seconds": result.seconds}


def _smoothed(rows: list[dict], at: float, window: int = 5) -> float:
    """The mean train loss of the last `window` logged rows at or before wall time `at`."""
    seen = [r["train_loss"] for r in rows if r["wall_time"] <= at][-window:]
    return sum(seen) / len(seen) if seen else float("nan")


def _break_even(runs: list[dict]) -> dict:
    """Where support mode pays: each run's smoothed loss at the wall time of the shortest run,
    and the wall time each run needs to reach the exact method's final smoothed loss."""
    equal_time = min(r["rows"][-1]["wall_time"] for r in runs)
    target = _smoothed(runs[0]["rows"], runs[0]["rows"][-1]["wall_time"])
    out = {"equal_time_s": equal_time, "target_loss": target, "runs": {}}
    for r in runs:
        reach = next((x["wall_time"] for x in r["rows"] if _smoothed(r["rows"], x["wall_time"]) <= target), None)
        out["runs"][r["k"]] = {"loss_at_equal_time": _smoothed(r["rows"], equal_time), "time_to_target_s": reach}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "corpus"
        build_corpus(["stdlib"], data, vocab_size=2048, max_files=300, progress=False)
        runs = [_run(data, Path(tmp) / f"k{k}", args.steps, k) for k in KS]
    base = runs[0]["step_time_after_anneal"]
    even = _break_even(runs)
    info = machine()
    lines = [
        "## Support-mode training (`benchmarks/bench_support.py`)",
        "",
        f"{machine_line(info)} {args.threads} torch thread(s). The wide-sparse "
        f"shape (d_model 256, 1/32 of each matrix kept), CSR execution, {args.steps} steps of 16 x 128 tokens, "
        "the anneal over the first quarter; K = 1 is the exact method. Step time: median after the anneal.",
        "",
        "| K | step time after the anneal (s) | vs K = 1 | final val loss (equal tokens) | wall time (s) "
        f"| train loss at {even['equal_time_s']:.0f} s | seconds to K = 1's final train loss ({even['target_loss']:.3f}) |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['k']} | {r['step_time_after_anneal']:.3f} | {r['step_time_after_anneal'] / base:.2f} "
          f"| {r['final_val_loss']:.4f} | {r['seconds']:.0f} | {even['runs'][r['k']]['loss_at_equal_time']:.3f} "
          f"| {_seconds(even['runs'][r['k']]['time_to_target_s'])} |" for r in runs],
        "",
        "Train losses are means of the last 5 logged rows (every 10 steps) at or before the time.",
    ]
    write_results("support", {"machine": info, "steps": args.steps, "threads": args.threads, "runs": runs,
                              "break_even": even}, "\n".join(lines))
    _plot(runs, Path(__file__).parent.parent / "docs" / "screenshots" / "support.png")
    print("\n".join(lines))
    return 0


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in runs:
        ax.plot([x["wall_time"] for x in r["rows"]], [x["train_loss"] for x in r["rows"]], label=f"K = {r['k']}")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("train loss")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
