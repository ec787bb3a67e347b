"""Circuit discovery on planted circuits: does each method find exactly the known nodes?

Usage: python benchmarks/bench_discovery.py [--methods A,B] [--models A,B] [--seeds 0,1,2]
       [--passes plain,minimal] [--steps N] [--n-train N] [--n-eval N] [--threads N]

For every discovery method of `sparsecircuits.prune.methods.METHODS`, every model of the
planted family (tests/planted: hand-built models whose node sets are necessary and
sufficient) and every seed s, the model is built with seed s (its distractor weights) and
pruned by `prune_pairs` on s's train and test pairs with `PruneConfig(method, the model's
ablation, seed=s)`, without the minimality pass (`plain`, `--no-minimal`) and with it (`minimal`,
reported as METHOD+minimal). Reported: node precision and recall against the planted set,
edges found vs planted (exact match), process CPU seconds of the pruning, and the held-out
circuit loss.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import machine, machine_line, write_results

from sparsecircuits.circuits.ids import node_id
from sparsecircuits.prune import PruneConfig, prune_pairs
from sparsecircuits.prune.methods import METHODS

TESTS = Path(__file__).resolve().parents[1] / "tests"
PASSES = {"plain": False, "minimal": True}  # pass name -> PruneConfig.minimal


def planted_family() -> dict[str, Callable[[int], Any]]:
    """The planted family of tests/planted (the tests folder is not an installed package)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from planted import FAMILY

    return FAMILY


def run_once(planted: Any, config: PruneConfig, n_train: int, n_eval: int, cache: str) -> dict:
    """Prune one planted model; node precision/recall, edges vs planted, CPU s, losses."""
    task = planted.task
    train = task.generate(None, n_train, seed=config.seed, split="train")
    held_out = task.generate(None, n_eval, seed=config.seed, split="test")
    c0 = time.process_time()
    result = prune_pairs(planted.model, train, held_out, config, data=planted.data, progress=False,
                         task_info={"name": task.name, "source": task.source, "parameters": {}},
                         cache_dir=cache)
    cpu = time.process_time() - c0
    circuit = result.circuit
    found = {node_id(h, i) for h, idx in circuit.nodes.items() for i in idx}
    want = planted.node_ids()
    edges = {(e.src, e.dst) for e in circuit.edges}
    hit = len(found & want)
    return {
        "n_nodes": len(found),
        "n_planted": len(want),
        "precision": hit / len(found) if found else 0.0,
        "recall": hit / len(want),
        "exact_nodes": found == want,
        "n_edges": len(edges),
        "n_planted_edges": len(planted.edges),
        "planted_edges_found": len(edges & planted.edges),
        "exact_edges": edges == planted.edges,
        "found_alternative": bool(planted.alternative) and found == planted.alternative,
        "cpu_seconds": cpu,
        "target_met": circuit.target_met,
        "losses": circuit.losses.to_dict(),
        "missed": sorted(want - found),
        "extra": sorted(found - want),
    }


def _parse_args() -> argparse.Namespace:
    """The command line: methods, models, seeds, the minimality pass, sizes and threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    parser.add_argument("--models", default="", help="comma-separated planted models (default: all)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--passes", default="plain,minimal", help="plain and/or minimal (the minimality pass)")
    parser.add_argument("--steps", type=int, default=PruneConfig().steps, help="mask steps (masks method)")
    parser.add_argument("--n-train", type=int, default=256, help="train pairs per run")
    parser.add_argument("--n-eval", type=int, default=128, help="held-out pairs per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    return parser.parse_args()


def _runs(args: argparse.Namespace, family: dict[str, Callable[[int], Any]]) -> list[dict]:
    """Every (method, minimality pass, model, seed) run, printed as it finishes."""
    methods, passes = args.methods.split(","), args.passes.split(",")
    models = args.models.split(",") if args.models else list(family)
    unknown = [m for m in models if m not in family] + [m for m in methods if m not in METHODS]
    unknown += [p for p in passes if p not in PASSES]
    if unknown:
        raise SystemExit(f"unknown model, method or pass: {', '.join(unknown)}; models: {', '.join(family)}; "
                         f"methods: {', '.join(METHODS)}; passes: {', '.join(PASSES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        for method, pass_, name, seed in itertools.product(methods, passes, models, seeds):
            planted = family[name](seed)
            config = PruneConfig(method=method, ablation=planted.ablation, seed=seed, steps=args.steps,
                                 minimal=PASSES[pass_], n_train_pairs=args.n_train, n_eval_pairs=args.n_eval)
            run = {"method": method + ("+minimal" if PASSES[pass_] else ""), "model": name, "seed": seed,
                   **run_once(planted, config, args.n_train, args.n_eval, cache)}
            print({k: v for k, v in run.items() if k not in ("missed", "extra", "losses")}, flush=True)
            runs.append(run)
    return runs


def _cell(runs: list[dict], key: str, fmt: str = "{:.2f}") -> str:
    """One table cell: every seed's value of `key`, separated by slashes."""
    return "/".join(("yes" if r[key] else "no") if isinstance(r[key], bool) else fmt.format(r[key]) for r in runs)


def _summary_row(method: str, runs: list[dict]) -> str:
    """A method's summary: exact recoveries, mean precision and recall, total CPU seconds."""
    exact = sum(r["exact_nodes"] and r["exact_edges"] for r in runs)
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("precision", "recall")}
    cpu = sum(r["cpu_seconds"] for r in runs)
    return f"| `{method}` | {exact}/{len(runs)} | {mean['precision']:.2f} | {mean['recall']:.2f} | {cpu:.1f} |"


def _markdown(results: dict) -> str:
    """The discovery section of RESULTS.md, from results/discovery.json's content."""
    runs = results["runs"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["model"]), []).append(r)
    rows = "\n".join(
        f"| `{method}` | `{model}` | {_cell(rs, 'precision')} | {_cell(rs, 'recall')} | "
        f"{_cell(rs, 'n_nodes', '{}')} / {rs[0]['n_planted']} | {_cell(rs, 'exact_edges')} | "
        f"{_cell(rs, 'n_edges', '{}')} / {rs[0]['n_planted_edges']} | "
        f"{_cell([{**r, 'loss': r['losses']['circuit']} for r in rs], 'loss', '{:.3f}')} | "
        f"{_cell(rs, 'target_met')} | {_cell(rs, 'cpu_seconds', '{:.1f}')} |"
        for (method, model), rs in groups.items()
    )
    methods = dict.fromkeys(r["method"] for r in runs)
    summary = "\n".join(_summary_row(m, [r for r in runs if r["method"] == m]) for m in methods)
    models = "\n".join(f"- `{name}`: {desc}" for name, desc in results["models"].items())
    trapped = ", ".join(f"`{r['method']}` seed {r['seed']}" for r in runs if r["found_alternative"]) or "none"
    return f"""## Circuit discovery on planted circuits (`benchmarks/bench_discovery.py`)

{machine_line(results)} torch threads {results['torch_threads']}.

Every method of the discovery registry, without the minimality pass and ending with it
(`+minimal`), on every planted model of `tests/planted` (hand-built; each planted node set
is necessary and sufficient under the model's ablation, `tests/test_planted_family.py`),
seeds {results['seeds']}: the seed draws the model's distractor weights, the train and test
pairs and the pruning's randomness. {results['n_train']} train pairs, {results['n_eval']}
held-out pairs, PruneConfig defaults otherwise ({results['config_defaults']['steps']} mask
steps, target loss {results['config_defaults']['target_loss']}). Each cell lists the seeds'
values in order: node precision and recall against the planted set, nodes found / planted,
whether the edges found equal the planted edges, edges found / planted, held-out circuit
loss, whether it met the target (when no k does, the circuit is the nodes the method kept),
process CPU seconds of the pruning.

{models}

| method | runs with exactly the planted nodes and edges | mean precision | mean recall | CPU s (all runs) |
|---|---|---|---|---|
{summary}

Runs that ended in a larger 1-minimal alternative circuit (the backup head) instead: {trapped}.

| method | model | precision | recall | nodes | edges exact | edges | circuit loss | target met | CPU s |
|---|---|---|---|---|---|---|---|---|---|
{rows}
"""


def main() -> int:
    """Run the benchmark, write results/discovery.json and the discovery section of RESULTS.md."""
    args = _parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    family = planted_family()
    runs = _runs(args, family)
    models = list(dict.fromkeys(r["model"] for r in runs))
    data_out = {
        **machine(),
        "seeds": args.seeds,
        "n_train": args.n_train,
        "n_eval": args.n_eval,
        "config_defaults": PruneConfig(steps=args.steps).to_dict(),
        "models": {m: family[m](0).description for m in models},
        "runs": runs,
    }
    md = _markdown(data_out)
    write_results("discovery", data_out, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
