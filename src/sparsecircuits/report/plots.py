"""Static plots (PNG and SVG, matplotlib's Agg backend) of training runs and circuits.

Matplotlib is the optional extra `plots` (`pip install 'sparsecircuits[plots]'`); it is
imported only when a plot is drawn. The series are the same ones the HTML report shows
(`data.training_charts` for runs, the circuit's `curve` for loss versus k).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecircuits.circuits import Circuit
from sparsecircuits.errors import InputError
from sparsecircuits.report.data import read_metrics, training_charts

FORMATS = ("png", "svg")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise InputError(
            "plots need matplotlib, which is not installed; install the extra: pip install 'sparsecircuits[plots]'"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        final = out_dir / f"{stem}.{fmt}"
        tmp = out_dir / f".{stem}.tmp.{fmt}"
        fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        tmp.replace(final)
        paths.append(final)
    return paths


def _line_plot(chart: Mapping[str, Any], out_dir: Path, stem: str, refs: Sequence[tuple[float, str]] = (),
               logx: bool = False) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    try:
        for line in chart["lines"]:
            if line["points"]:
                xs, ys = zip(*line["points"], strict=True)
                ax.plot(xs, ys, marker="o" if len(xs) < 60 else None, markersize=3, label=line["label"])
        for y, label in refs:
            if isinstance(y, (int, float)) and math.isfinite(y):
                ax.axhline(y, linestyle="--", linewidth=0.8, color="gray")
                ax.annotate(label, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8)
        if logx:
            ax.set_xscale("log")
        ax.set_title(chart["title"])
        ax.set_xlabel(chart["x_label"])
        ax.set_ylabel(chart["y_label"])
        ax.grid(alpha=0.3)
        if sum(1 for line in chart["lines"] if line["points"]) > 1:
            ax.legend()
        out_dir.mkdir(parents=True, exist_ok=True)
        return _save(fig, out_dir, stem)
    finally:
        plt.close(fig)


def plot_training(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Loss vs tokens and kept fraction vs step of a run's metrics.jsonl, as PNG and SVG."""
    rows = read_metrics(run_dir)
    if not rows:
        raise InputError(f"--run {run_dir}: no metrics.jsonl records to plot; give a training run folder")
    paths = []
    for chart in training_charts(rows):
        stem = "loss" if chart["title"].startswith("loss") else "kept_fraction"
        paths += _line_plot(chart, Path(out_dir), stem)
    return paths


def plot_curve(circuit: str | Path | Circuit, out_dir: str | Path) -> list[Path]:
    """The circuit's task loss versus k (kept nodes) from pruning, as PNG and SVG."""
    if not isinstance(circuit, Circuit):
        circuit = Circuit.load(circuit)
    if not circuit.curve:
        raise InputError("this circuit has no loss-versus-k curve to plot (no 'curve' in circuit.json)")
    chart = {
        "title": f"task loss vs k: {circuit.task.name}",
        "x_label": "k (kept nodes)",
        "y_label": "task loss (nats)",
        "lines": [{"label": "circuit", "points": sorted((p["k"], p["loss"]) for p in circuit.curve)}],
    }
    refs = [(circuit.target_loss, "target"), (circuit.losses.full if circuit.losses.full is not None else math.nan, "full model"), (math.log(2), "chance")]
    ks = [p["k"] for p in circuit.curve]
    return _line_plot(chart, Path(out_dir), "loss_vs_k", refs, logx=min(ks) > 0 and max(ks) / min(ks) > 50)
