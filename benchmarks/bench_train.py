"""Benchmark weight-sparse against dense training on the small preset's shape, in one run.

Both arms run the library's own training loop (`sparsecircuits.train.train`) on the same
corpus, model shape and batch; the sparse arm is at its target density from the first step
(no anneal window), so every step pays the full projection. Arms alternate (sparse, dense,
sparse, ...) so that load from other jobs on a shared machine hits both alike; the step
time of each arm is the median over logged windows after the first (warm-up) window. The
projection alone is also timed on the trained sparse model. A third arm, sparse with
`train.autocast=bf16`, measures what mixed precision buys. One torch thread by default:
on a 2-core machine shared with other jobs, two-thread windows of the same arm varied from
1.3 to 4.9 s/step, which hides any comparison; pass --threads 0 on a quiet machine. Writes
benchmarks/results/train.json and the train section of benchmarks/RESULTS.md.
Target: a sparse step at most 1.15x a dense step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine, machine_line, write_results

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.model.sparsity import WeightSparsifier
from sparsecircuits.train import train
from sparsecircuits.train.config import RunConfig, load_run_config

TARGET_RATIO = 1.15
SPARSE_PRESET, DENSE_PRESET = "small-sparse", "small-dense"
# (arm, preset, overrides), run in this order in every round
ARMS = (
    ("sparse", SPARSE_PRESET, []),
    ("dense", DENSE_PRESET, []),
    ("sparse bf16", SPARSE_PRESET, ["train.autocast=bf16"]),
)


def _arm(preset: str, data: Path, out: Path, steps: int, log_every: int, extra: list[str]) -> list[float]:
    """Step times (s) of the logged windows after the first, for one short run."""
    overrides = [*extra,
        f"train.steps={steps}", f"train.log_every={log_every}", "train.eval_every=0",
        "train.checkpoint_every=0", "train.anneal_start_frac=0.0", "train.anneal_end_frac=0.0",
        "train.eval_batches=1",
    ]
    train(preset, data, out, overrides=overrides, progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time"] for r in rows[1:]]


def _projection_ms(run: Path, preset: str, repeats: int = 5) -> float:
    """Median time of one projection of every weight of a trained sparse model."""
    cfg = load_run_config(preset).train
    model = load_checkpoint(run).model
    sp = WeightSparsifier(model, cfg.target_density, cfg.embedding_density_factor, cfg.min_per_channel)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sp.project_(cfg.target_density)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _parse_args() -> argparse.Namespace:
    """The command line: rounds, steps per run, logging window and torch threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three arms to run")
    parser.add_argument("--steps", type=int, default=30, help="steps per arm run")
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads; 0 leaves torch's choice (the core count)",
    )
    return parser.parse_args()


def _time_arms(rounds: int, steps: int, log_every: int, vocab_size: int) -> tuple[dict[str, list[float]], float]:
    """Step times of every arm over `rounds` alternating rounds, and the projection time (ms).

    The corpus and the runs live in a temporary folder; the projection is timed on the
    first round's sparse run.
    """
    times: dict[str, list[float]] = {arm: [] for arm, _, _ in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "corpus"
        build_corpus(["stdlib"], data, vocab_size=vocab_size, max_files=200, progress=False)
        for i in range(rounds):
            for arm, preset, extra in ARMS:
                out = Path(tmp) / f"{arm.replace(' ', '-')}-{i}"
                times[arm] += _arm(preset, data, out, steps, log_every, extra)
                print(f"round {i + 1}/{rounds} {arm}: {statistics.median(times[arm]):.3f} s/step")
        projection_ms = _projection_ms(Path(tmp) / "sparse-0", SPARSE_PRESET)
    return times, projection_ms


def _results(info: dict, run: RunConfig, times: dict[str, list[float]], projection_ms: float, load_before: float) -> dict:
    """results/train.json: the machine, the shape, median step times and what follows from them."""
    step = {arm: statistics.median(t) for arm, t in times.items()}
    ratio = step["sparse"] / step["dense"]
    tokens_per_step = run.train.batch_size * run.model.n_ctx
    m = run.model
    shape = (
        f"d_model {m.d_model}, {m.n_layer} layers, d_mlp {m.d_mlp}, n_ctx {m.n_ctx}, vocab "
        f"{m.vocab_size}, AbsTopK {m.afrac}, batch {run.train.batch_size}"
    )
    return {
        **info,
        "shape": shape,
        "target_density": run.train.target_density,
        "step_seconds": step,
        "step_seconds_all": times,
        "ratio_sparse_over_dense": ratio,
        "speedup_bf16_autocast": step["sparse"] / step["sparse bf16"],
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "tokens_per_second": {arm: tokens_per_step / s for arm, s in step.items()},
        "projection_ms": projection_ms,
        "preset_steps": run.train.steps,
        "steps_per_hour_sparse": int(3600 / step["sparse"]),
        "load_average_1min": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
    }


def _markdown(r: dict, run: RunConfig, log_every: int) -> str:
    """The train section of RESULTS.md, from the results of `_results`."""
    step, tps, ratio = r["step_seconds"], r["tokens_per_second"], r["ratio_sparse_over_dense"]
    verdict = "meets" if r["meets_target"] else "misses"
    return f"""
## Training step: weight-sparse vs dense (`small-sparse` / `small-dense` shape)

{machine_line(r)} torch threads {r["torch_threads"]}.

Shape: {r["shape"]}; sparse arm at density {run.train.target_density} for matrices
(embeddings and biases {min(1.0, run.train.embedding_density_factor * run.train.target_density)}),
projected after every step.

| measure | sparse | dense | sparse, `autocast=bf16` |
|---|---|---|---|
| step time (median of {len(r["step_seconds_all"]["sparse"])} windows of {log_every} steps) | {step["sparse"]:.3f} s | {step["dense"]:.3f} s | {step["sparse bf16"]:.3f} s |
| tokens/s | {tps["sparse"]:,.0f} | {tps["dense"]:,.0f} | {tps["sparse bf16"]:,.0f} |

Ratio sparse / dense: **{ratio:.3f}** ({verdict} the target of at most {TARGET_RATIO}). One
projection of every weight of the sparse model takes {r["projection_ms"]:.1f} ms. Mixed precision
(`train.autocast=bf16`; {r["cpu_bf16"]}) makes a sparse step **{r["speedup_bf16_autocast"]:.2f}x** faster. At this speed an
hour is about {r["steps_per_hour_sparse"]:,} sparse steps; the `small-sparse` preset runs {r["preset_steps"]:,}.
The 1-minute load average was {r["load_average_1min"]}; the arms alternate so that any load from other
jobs affects both. With {r["torch_threads"]} torch thread(s); on this shared machine
two-thread windows varied from 1.3 to 4.9 s/step within one arm, so the comparison is made
single-threaded (`python benchmarks/bench_train.py --threads 0` uses every core).
"""


def main() -> int:
    """Run alternating sparse and dense arms, write the results."""
    args = _parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    load_before = os.getloadavg()[0]
    run = load_run_config(SPARSE_PRESET)
    times, projection_ms = _time_arms(args.rounds, args.steps, args.log_every, run.model.vocab_size)
    results = _results(info, run, times, projection_ms, load_before)
    write_results("train", results, _markdown(results, run, args.log_every))
    step = results["step_seconds"]
    print(f"sparse {step['sparse']:.3f} s/step, dense {step['dense']:.3f} s/step, "
          f"ratio {results['ratio_sparse_over_dense']:.3f}, "
          f"bf16 autocast {results['speedup_bf16_autocast']:.2f}x")
    print(f"results: {Path(__file__).resolve().parent / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
