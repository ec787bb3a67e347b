"""How long each discovery method takes on the paper's smallest sweep shape.

d_model 256, 8 layers, 16 heads of 16, d_mlp 1024: 22,528 candidate nodes. The model is
randomly initialized and projected to 1/16 of its matrix entries (the speed of a method
does not depend on what the weights have learned), the task is `bracket_brace` with the
bundled tokenizer, zero ablation, the default pruning settings otherwise (1024 train pairs,
128 held-out pairs). A random model does not reach the target, so the bisection runs its
full log2(n) evaluations: an upper bound of what a trained model costs.

    python benchmarks/bench_discovery_speed.py [--methods attribution,masks] [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, machine_line, write_results

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.sparsity import WeightSparsifier
from sparsecircuits.prune import PruneConfig, prune
from sparsecircuits.tasks import get_task

SHAPE = dict(n_layer=8, d_model=256, n_head=16, d_head=16, d_mlp=1024, vocab_size=2048, n_ctx=128,
             attention_sink=True, bigram_table=True, afrac=0.25, positional="learned")
TASK = "bracket_brace"


def _model() -> SparseTransformer:
    torch.manual_seed(0)
    model = SparseTransformer(ModelConfig(**SHAPE)).eval()
    WeightSparsifier(model, 1 / 16, 4.0, 4).project_(1 / 16)
    return model


def _time(method: str, steps: int) -> dict:
    """Wall and CPU seconds of one prune with `method`, per phase."""
    tokenizer = load_checkpoint("bundled:small-sparse").tokenizer
    model = _model()
    config = PruneConfig(method=method, ablation="zero", steps=steps)
    wall, cpu = time.perf_counter(), time.process_time()
    result = prune(model, get_task(TASK), tokenizer, config, progress=False)
    return {"method": method, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "phases_s": result.seconds, "n_candidates": int(result.circuit.pruning.n_masked_nodes or 0),
            "steps": steps if method == "masks" else None}


def _markdown(info: dict, rows: list[dict]) -> str:
    lines = ["## Discovery speed on the paper's smallest sweep shape (22,528 nodes)", "", machine_line(info), "",
             "| method | wall s | CPU s | scoring s | bisect + calibrate s |", "|---|---|---|---|---|"]
    for r in rows:
        name = r["method"] + (f" ({r['steps']} steps)" if r["steps"] else "")
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['phases_s']['score']:.1f} | "
                     f"{r['phases_s']['bisect_and_calibrate']:.1f} |")
    lines += ["", "A randomly initialized model of the shape, 1024 train and 128 held-out pairs of "
              f"`{TASK}`, zero ablation; the bisection runs its full length (the target is not met). "
              "Target for `attribution`: at most 2 minutes per task on 2 cores."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="attribution,attribution_ig,masks")
    parser.add_argument("--steps", type=int, default=20, help="mask steps for the masks method")
    args = parser.parse_args()
    rows = [_time(m, args.steps) for m in args.methods.split(",")]
    info = machine()
    write_results("discovery_speed", {"machine": info, "shape": SHAPE, "task": TASK, "rows": rows},
                  _markdown(info, rows))
    for r in rows:
        print(r["method"], f"{r['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
