"""Time to prune one task on a model of the `small-sparse` preset shape (target: <= 60 s).

Usage: python benchmarks/bench_prune.py [--model RUN] [--steps N] [--task NAME]

Without --model, the model is the preset's shape with random weights (timing does not
depend on the weights: the matmuls are dense) and the tokenizer comes from a small stdlib
corpus built in a temporary folder (not timed). The run uses the default PruneConfig
except `--steps` (default: the PruneConfig default); it reports the seconds of each phase,
the seconds per optimization step, and the total extrapolated to the default step count
and to the paper's 2000 steps when fewer steps were run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import machine, machine_line, write_results

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.data.tokenizer import load_tokenizer
from sparsecircuits.model import SparseTransformer
from sparsecircuits.prune import PruneConfig, prune
from sparsecircuits.tasks import get_task
from sparsecircuits.train_config import load_run_config

PRESET = "small-sparse"
TARGET_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained checkpoint (default: random weights, preset shape)")
    parser.add_argument("--data", help="corpus folder for mean ablation / the tokenizer")
    parser.add_argument("--task", default="single_double_quote")
    parser.add_argument("--steps", type=int, default=PruneConfig().steps)
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "corpus"
        if not args.data:
            build_corpus(["stdlib"], data, vocab_size=2048, max_files=150, progress=False)
        if args.model:
            ckpt = load_checkpoint(args.model)
            model, tokenizer, label = ckpt.model, ckpt.tokenizer, str(args.model)
        else:
            cfg = load_run_config(PRESET).model
            model, tokenizer, label = SparseTransformer(cfg).eval(), load_tokenizer(data / "tokenizer.json"), "random init"
        config = replace(PruneConfig(), steps=args.steps)
        t0 = time.perf_counter()
        result = prune(model, get_task(args.task), tokenizer, config, data=data, cache_dir=tmp, progress=True)
        total = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    phases = result.seconds
    per_step = phases["optimize"] / args.steps
    fixed = total - phases["optimize"]
    default_steps = PruneConfig().steps
    at_default = fixed + per_step * default_steps
    at_paper = fixed + per_step * 2000
    c = result.circuit
    info = machine()
    data_out = {
        **info,
        "model": label,
        "shape": model.cfg.to_dict(),
        "task": args.task,
        "steps_run": args.steps,
        "batch_pairs": config.batch_pairs,
        "seconds_total": total,
        "seconds_by_phase": phases,
        "seconds_per_step": per_step,
        "seconds_at_default_steps": at_default,
        "default_steps": default_steps,
        "seconds_at_2000_steps": at_paper,
        "target_seconds": TARGET_SECONDS,
        "load_average_before_after": [load_before, load_after],
        "n_nodes": c.n_nodes,
        "n_edges": c.n_edges,
        "losses": c.losses,
    }
    extrapolated = args.steps != default_steps
    md = f"""## Pruning one task (`small-sparse` shape: d_model {model.cfg.d_model}, {model.cfg.n_layer} layers, d_mlp {model.cfg.d_mlp})

{machine_line(info)} torch threads {info['torch_threads']}; 1-minute load average
{load_before:.1f} before, {load_after:.1f} after (the machine was shared).

Model: {label}; task `{args.task}`; default PruneConfig ({config.batch_pairs} pairs per step,
ablation {config.ablation}), {args.steps} optimization steps run.

| measure | seconds |
|---|---|
| ablation means (64 windows, then cached) | {phases['ablation_values']:.1f} |
| mask optimization, per step | {per_step:.3f} |
| mask optimization, {args.steps} steps | {phases['optimize']:.1f} |
| bisection + calibration + reference losses | {phases['bisect_and_calibrate']:.1f} |
| total measured | {total:.1f} |
| total at the default {default_steps} steps{' (extrapolated)' if extrapolated else ''} | {at_default:.0f} |
| total at the paper's 2000 steps (extrapolated) | {at_paper:.0f} |

Target: at most {TARGET_SECONDS:.0f} s at the default settings —
**{'met' if at_default <= TARGET_SECONDS else 'missed'}**. Profile: the AbsTopK of the model
forward (topk, gather, scatter at all 8 locations) takes about half of each step; the
matmuls are dense.
"""
    write_results("prune", data_out, md)
    print(md)
    print(f"results: {Path(__file__).resolve().parent / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
