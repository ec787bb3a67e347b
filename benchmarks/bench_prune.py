"""Time and quality of pruning one task on the `small-sparse` preset (target: <= 60 s, 2 cores).

Usage: python benchmarks/bench_prune.py [--model DIR] [--data DIR] [--tasks A,B] [--steps N]
       [--long-factor F] [--threads N]

Without --model, the model is the preset's shape with random weights (timing does not
depend on the weights: the matmuls are dense) and the tokenizer comes from a small stdlib
corpus built in a temporary folder (not timed); only timing is reported. With --model (a
trained checkpoint; tokenizer from the checkpoint or from --data), every task is pruned
with the default PruneConfig (mean ablation over --data) and again with `--long-factor`
times the steps, to show what the short default gives up: circuit size (nodes, edges) and
held-out task losses. Wall seconds and process CPU seconds are both recorded: CPU seconds
are less affected by other jobs on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from common import machine, machine_line, write_results

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.data.tokenizer import load_tokenizer
from sparsecircuits.model import SparseTransformer
from sparsecircuits.prune import PruneConfig, prune
from sparsecircuits.tasks import get_task
from sparsecircuits.train.config import load_run_config

PRESET = "small-sparse"
TARGET_SECONDS = 60.0


def run_once(model: SparseTransformer, task: str, tokenizer: Any, config: PruneConfig, data: Path, cache: str) -> dict:
    """Prune one task; seconds (wall and CPU), phases, circuit size and losses."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = prune(model, get_task(task), tokenizer, config, data=data, cache_dir=cache, progress=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    c = result.circuit
    return {
        "task": task,
        "steps": config.steps,
        "seconds": wall,
        "cpu_seconds": cpu,
        "seconds_by_phase": result.seconds,
        "seconds_per_step": result.seconds["optimize"] / config.steps,
        "k": c.pruning["k"],
        "target_met": c.target_met,
        "n_nodes": c.n_nodes,
        "n_edges": c.n_edges,
        "losses": c.losses,
    }


def _parse_args() -> argparse.Namespace:
    """The command line: model, corpus, tasks, steps, the long-run factor and torch threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained checkpoint (default: random weights, preset shape)")
    parser.add_argument("--data", help="corpus folder for mean ablation and the tokenizer")
    parser.add_argument("--tasks", default="single_double_quote", help="comma-separated task names")
    parser.add_argument("--steps", type=int, default=PruneConfig().steps)
    parser.add_argument("--long-factor", type=int, default=4, help="compare with this many times the steps (0: skip)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    return parser.parse_args()


def _load_model(model_path: str | None, data: Path) -> tuple[SparseTransformer, Any, str]:
    """The model to prune, its tokenizer and its label: the checkpoint at `model_path`
    (tokenizer from it, else from `data`), or the preset's shape with random weights."""
    if model_path:
        ckpt = load_checkpoint(model_path)
        tokenizer = ckpt.tokenizer or load_tokenizer(data / "tokenizer.json")
        return ckpt.model, tokenizer, str(model_path)
    model = SparseTransformer(load_run_config(PRESET).model).eval()
    return model, load_tokenizer(data / "tokenizer.json"), "random init"


def _prune_tasks(
    tasks: list[str], model_path: str | None, data_path: str | None, config: PruneConfig, long_factor: int
) -> tuple[SparseTransformer, str, list[dict]]:
    """Prune every task at `config` and, for a trained model, at `long_factor` times the
    steps, printing each run; returns the model, its label and the runs.

    Without `data_path` a small stdlib corpus is built (not timed) in a temporary folder,
    which also holds the ablation cache.
    """
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(data_path) if data_path else Path(tmp) / "corpus"
        if not data_path:
            build_corpus(["stdlib"], data, vocab_size=2048, max_files=150, progress=False)
        model, tokenizer, label = _load_model(model_path, data)
        for task in tasks:
            runs.append({"run": "default", **run_once(model, task, tokenizer, config, data, tmp)})
            print(runs[-1])
            if model_path and long_factor > 1:
                long = replace(config, steps=config.steps * long_factor)
                runs.append({"run": f"{long_factor}x steps", **run_once(model, task, tokenizer, long, data, tmp)})
                print(runs[-1])
    return model, label, runs


def _markdown(results: dict, config: PruneConfig, worst: float) -> str:
    """The prune section of RESULTS.md, from results/prune.json's content."""
    rows = "\n".join(
        f"| `{r['task']}` | {r['run']} | {r['steps']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
        f"{r['seconds_per_step']:.3f} | {r['k']} | {r['n_edges']} | {r['losses']['full']:.3f} | "
        f"{r['losses']['circuit']:.3f} | {r['losses']['circuit_calibrated']:.3f} | {r['losses']['circuit_ablated']:.3f} |"
        for r in results["runs"]
    )
    shape = results["shape"]
    load_before, load_after = results["load_average_before_after"]
    return f"""## Pruning one task (`{PRESET}` shape: d_model {shape['d_model']}, {shape['n_layer']} layers, d_mlp {shape['d_mlp']}, {results['n_masked_nodes']} nodes)

{machine_line(results)} torch threads {results['torch_threads']}; 1-minute load average
{load_before:.1f} before, {load_after:.1f} after (other jobs share the machine when it exceeds the thread count).

Model: {results['model']}. Default PruneConfig: {config.steps} steps of {config.batch_pairs} pairs, lr {config.lr},
k_coef {config.k_coef}, ablation {config.ablation}, target loss {config.target_loss}, {config.n_eval_pairs}
held-out pairs for the bisection and the losses (test split). Nodes = k, the kept nodes of the masked
locations; losses are held-out task losses (nats; chance 0.693): full model, circuit, circuit after
calibration, and the full model with the circuit's nodes ablated.

| task | run | steps | wall s | CPU s | s/step | nodes | edges | full | circuit | calibrated | circuit ablated |
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}

Target: at most {TARGET_SECONDS:.0f} s per task at the default settings —
**{'met' if results['target_met'] else 'missed'}** (most CPU seconds of a default run: {worst:.1f}). The
verdict uses process CPU seconds: with one thread they match the wall time of an idle machine, with
more threads they exceed it, and other jobs do not inflate them; wall seconds above the CPU seconds
mean the run waited for a core. Where the time goes: every step runs the masked model forward and
backward on the step's pairs (the last block only at the prompts' last positions, from attn_out on;
pairs in up to 4 groups of similar length); AbsTopK's topk is about a fifth of it. The bisection
starts from the number of nodes the masks kept and takes about 12 evaluations of the held-out pairs.
"""


def main() -> int:
    """Prune the tasks, write results/prune.json and the prune section of RESULTS.md."""
    args = _parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tasks = args.tasks.split(",")
    config = replace(PruneConfig(), steps=args.steps)
    load_before = os.getloadavg()[0]
    model, label, runs = _prune_tasks(tasks, args.model, args.data, config, args.long_factor)
    load_after = os.getloadavg()[0]
    info = machine()
    worst = max(r["cpu_seconds"] for r in runs if r["run"] == "default")
    data_out = {
        **info,
        "model": label,
        "shape": model.cfg.to_dict(),
        "n_masked_nodes": sum(model.cfg.location_width(a) for a in config.locations) * model.cfg.n_layer,
        "config": config.to_dict(),
        "runs": runs,
        "target_seconds": TARGET_SECONDS,
        "target_met": worst <= TARGET_SECONDS,
        "load_average_before_after": [load_before, load_after],
    }
    md = _markdown(data_out, config, worst)
    write_results("prune", data_out, md)
    print(md)
    print(f"results: {Path(__file__).resolve().parent / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
