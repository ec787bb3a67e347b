"""`sparsecircuits demo`: the main job end to end, on the bundled weight-sparse model.

1. Load the bundled `small-sparse` model and its dense baseline `small-dense` (package data,
   compact weights, float16 bigram table; see bundled/README.md), or with `from_scratch`
   build a small stdlib corpus and train tiny sparse and dense models first.
2. Evaluate both models on every built-in task (test split), or on the tasks asked for.
3. For every task the sparse model solves (task loss <= the target), prune a circuit in
   the sparse and in the dense model, validate it with the core controls, and write its
   HTML report.
4. Write OUT/index.html (evaluation, sparse-vs-dense circuit sizes, links to the reports,
   the node and edge overlap between each model's task circuits) and OUT/summary.json, and
   print a summary table.

Every stage is the library's own (`tasks.evaluate_tasks`, `prune.prune`, `validate.validate`,
`report.build_report_data`); this module only chooses settings and wires them together.
"""

from __future__ import annotations

import html
import json
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sparsecircuits import __version__
from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.bundled_names import bundled_root
from sparsecircuits.checkpoint import VAL_CORPUS_DIR, Checkpoint, load_checkpoint
from sparsecircuits.circuits import reuse_from_folders
from sparsecircuits.errors import InputError
from sparsecircuits.model.sparsity import sparsity_report
from sparsecircuits.prune import PruneConfig, prune
from sparsecircuits.report import (
    build_report_data,
    compare_page,
    index_entry,
    render_index,
    write_report,
)
from sparsecircuits.tasks import DEFAULT_TARGET_LOSS, Task, evaluate_tasks, get_task, list_tasks
from sparsecircuits.validate import validate

SPARSE_MODEL, DENSE_MODEL = "small-sparse", "small-dense"
KINDS = ("sparse", "dense")
SUMMARY_FILE = "summary.json"
INDEX_FILE = "index.html"
DEMO_FORMAT = "sparsecircuits.demo/1"
# --from-scratch: corpus files, tiny presets, context long enough for every task's prompts
SCRATCH_FILES = 200
SCRATCH_PRESETS = {"sparse": "tiny-sparse", "dense": "tiny-dense"}
SCRATCH_OVERRIDES = ("model.n_ctx=128",)
SCRATCH_PRUNED = 2  # tasks pruned anyway when a scratch model solves none


@dataclass
class DemoConfig:
    """The demo's settings (CLI flags map onto these fields)."""

    out: Path = Path("demo-out")
    tasks: tuple[str, ...] | None = None  # evaluate and prune only these (default: all, prune the solved)
    max_tasks: int | None = None  # at most this many tasks pruned (best loss first)
    steps: int = 100  # mask-optimization steps per circuit
    control_steps: int = 50  # pruning steps of the controls that prune again
    lr: float = 0.02  # mask learning rate: 100 steps carry tau across its [-1, 1] range
    batch_pairs: int = 32  # pairs per mask-optimization step
    pairs: int = 64  # held-out pairs for bisection and validation
    train_pairs: int = 512  # train pairs the masks are optimized on
    eval_pairs: int = 100  # test pairs per task for the model evaluation
    report_pairs: int = 16  # task pairs for the per-node details of each report
    snippet_tokens: int = 131_072  # validation tokens sampled for each report's snippets at quantiles
    controls: str = "core"
    dense: bool = True
    from_scratch: bool = False
    target_loss: float = DEFAULT_TARGET_LOSS
    seed: int = 0
    method: str = "masks"  # the discovery method of every circuit (prune.methods.METHODS)
    minimal: bool = True  # end each circuit with the minimality pass
    # masks: penalty on kept nodes' activation drift (PruneConfig.faithful_coef); with it 9 of the
    # 12 demo circuits pass every core check instead of 3 (benchmarks/RESULTS.md)
    faithful_coef: float = 0.005
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))  # circuits made at once
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("steps", "control_steps", "batch_pairs", "pairs", "train_pairs", "eval_pairs", "report_pairs",
                     "snippet_tokens", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"--{name.replace('_', '-')} {value!r}: give a positive integer")
        if not 0 < self.lr < math.inf:
            raise InputError(f"--lr {self.lr!r}: give a positive learning rate")
        if not 0 < self.target_loss < math.inf:
            raise InputError(f"--target-loss {self.target_loss!r}: give a positive task loss such as 0.15")
        if not 0 <= self.faithful_coef < math.inf:
            raise InputError(f"--faithful-coef {self.faithful_coef!r}: give a finite number >= 0")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise InputError(f"--max-tasks {self.max_tasks}: give a positive number of tasks")
        if self.tasks is not None:
            known = set(list_tasks())
            unknown = [t for t in self.tasks if t not in known]
            if unknown or not self.tasks:
                raise InputError(
                    f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; "
                    f"choose from {', '.join(sorted(known))}"
                )


@dataclass
class DemoModel:
    """A model the demo runs on: its checkpoint and the corpus folder for mean ablation."""

    kind: str  # sparse | dense
    name: str
    ckpt: Checkpoint
    data: Path

    @property
    def path(self) -> Path:
        """The checkpoint folder."""
        return self.ckpt.path


@dataclass
class DemoResult:
    """What the demo wrote: the output folder, the summary dict and the seconds it took."""

    out: Path
    summary: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)


def bundled_available() -> bool:
    """Whether both bundled checkpoints are installed."""
    return all((bundled_root() / name / "model.safetensors").is_file() for name in (SPARSE_MODEL, DENSE_MODEL))


def _load(kind: str, path: Path, data: Path) -> DemoModel:
    ckpt = load_checkpoint(path)
    if ckpt.tokenizer is None:
        raise InputError(f"model {path} has no tokenizer.json; the tasks need it")
    return DemoModel(kind, path.name, ckpt, data)


def bundled_models(dense: bool = True) -> list[DemoModel]:
    """The bundled sparse model (and its dense baseline), each with its validation corpus."""
    if not bundled_available():
        raise InputError(
            f"the bundled models are not installed ({bundled_root()} lacks them); reinstall "
            "sparsecircuits from a full checkout, or run `sparsecircuits demo --from-scratch`"
        )
    names = [("sparse", SPARSE_MODEL)] + ([("dense", DENSE_MODEL)] if dense else [])
    return [_load(kind, bundled_root() / name, bundled_root() / name / VAL_CORPUS_DIR) for kind, name in names]


def scratch_models(root: Path, dense: bool = True, progress: bool = True) -> list[DemoModel]:
    """Build a small stdlib corpus and train tiny sparse (and dense) models under `root`."""
    from sparsecircuits.data.corpus import build_corpus
    from sparsecircuits.train import train

    corpus = root / "corpus"
    if not (corpus / "shards.json").is_file():
        build_corpus(["stdlib"], corpus, max_files=SCRATCH_FILES, overwrite=True, progress=progress)
    models = []
    for kind in KINDS[: 2 if dense else 1]:
        run = root / SCRATCH_PRESETS[kind]
        shutil.rmtree(run, ignore_errors=True)  # a run of an earlier demo in this folder
        train(SCRATCH_PRESETS[kind], corpus, run, overrides=SCRATCH_OVERRIDES, progress=progress)
        models.append(_load(kind, run, corpus))
    return models


def evaluate(model: DemoModel, tasks: Sequence[Task], cfg: DemoConfig) -> dict[str, dict[str, Any]]:
    """Test-split loss, accuracy and solved flag per task; an `error` for a task that cannot run."""
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm(tasks, desc=f"evaluating {model.kind} model", unit="task", disable=not cfg.progress)
    for task in bar:
        try:
            (r,) = evaluate_tasks(model.ckpt.model, model.ckpt.tokenizer, [task], n=cfg.eval_pairs,
                                  seed=cfg.seed, target_loss=cfg.target_loss, progress=False)
        except InputError as exc:
            results[task.name] = {"loss": None, "accuracy": None, "solved": False, "error": str(exc)}
            continue
        results[task.name] = {"loss": r.loss, "accuracy": r.accuracy, "solved": r.solved}
    return results


def choose_tasks(evaluation: dict[str, dict[str, Any]], cfg: DemoConfig) -> tuple[list[str], list[str]]:
    """The tasks to prune (and notes): the given ones, else the solved ones, best first;
    a scratch model that solves none gets its best `SCRATCH_PRUNED` tasks anyway."""
    notes = []
    ranked = sorted((t for t, r in evaluation.items() if r["loss"] is not None), key=lambda t: evaluation[t]["loss"])
    if cfg.tasks is not None:
        chosen = list(cfg.tasks)
        unsolved = [t for t in chosen if not evaluation.get(t, {}).get("solved")]
        if unsolved:
            notes.append(f"pruned as asked although the sparse model does not solve: {', '.join(unsolved)}")
    else:
        chosen = [t for t in ranked if evaluation[t]["solved"]]
        if not chosen and cfg.from_scratch:
            chosen = ranked[:SCRATCH_PRUNED]
            notes.append(
                f"the tiny scratch model solves no task; pruned its best {len(chosen)} anyway to "
                "exercise the pipeline (their circuits cannot reach the target loss)"
            )
        elif not chosen:
            notes.append(
                f"the sparse model solves no task (no test loss <= {cfg.target_loss}); nothing was pruned"
            )
    if cfg.max_tasks is not None and len(chosen) > cfg.max_tasks:
        notes.append(f"pruned {cfg.max_tasks} of {len(chosen)} tasks (--max-tasks)")
        chosen = chosen[: cfg.max_tasks]
    return chosen, notes


def circuit_for(model: DemoModel, task: Task, folder: Path, reports: Path, cfg: DemoConfig) -> dict[str, Any]:
    """Prune, validate and report one circuit; returns its row for the summary."""
    config = PruneConfig(steps=cfg.steps, lr=cfg.lr, target_loss=cfg.target_loss, seed=cfg.seed,
                         n_train_pairs=cfg.train_pairs, n_eval_pairs=cfg.pairs,
                         batch_pairs=min(cfg.batch_pairs, cfg.train_pairs), method=cfg.method,
                         minimal=cfg.minimal, faithful_coef=cfg.faithful_coef)
    ckpt, seconds = model.ckpt, {}
    t0 = time.perf_counter()
    result = prune(ckpt.model, task, ckpt.tokenizer, config, data=model.data, progress=cfg.progress,
                   model_path=model.path)
    result.circuit.save(folder)
    seconds["prune"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = validate(folder, ckpt.model, ckpt.tokenizer, cfg.controls, task=task, data=model.data,
                      n_pairs=cfg.pairs, steps=cfg.control_steps, seed=cfg.seed, progress=cfg.progress)
    seconds["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = build_report_data(folder, ckpt.model, ckpt.tokenizer, model.data, training=ckpt.training,
                             n_pairs=cfg.report_pairs, snippet_tokens=cfg.snippet_tokens,
                             title=f"{task.name}: {model.kind} model ({model.name})")
    page = write_report(data, reports / f"{task.name}-{model.kind}.html")
    seconds["report"] = time.perf_counter() - t0
    circuit = result.circuit
    return {
        "task": task.name,
        "kind": model.kind,
        "model": model.name,
        "method": config.method,
        "circuit": str(folder),
        "report": str(page),
        "n_nodes": circuit.n_nodes,
        "n_edges": circuit.n_edges,
        "target_met": circuit.target_met,
        "losses": circuit.losses.to_dict(),
        "verdict": report.verdict.status,
        "reasons": list(report.verdict.reasons),
        **verdict_fields(report.verdict),
        "seconds": seconds,
        "index_entry": index_entry(data, f"reports/{page.name}", f"{task.name} ({model.kind})"),
    }


def verdict_fields(verdict: Any) -> dict[str, Any]:
    """What the summary and the headline read of a circuit's Verdict: the failed checks and
    whether it passes sufficiency on held-out pairs."""
    sufficiency = verdict.check("sufficiency")
    return {"failed_checks": [c.name for c in verdict.checks if not c.passed],
            "sufficient": bool(sufficiency and sufficiency.passed)}


@dataclass(frozen=True)
class CircuitJob:
    """One circuit to make: which model (and corpus), which task, where to write."""

    kind: str
    model_path: Path
    data: Path
    task: str
    folder: Path
    reports: Path


def _run_job(job: CircuitJob, cfg: DemoConfig) -> dict[str, Any]:
    """A worker process's job: load the model on one thread and make the circuit."""
    torch.set_num_threads(1)
    model = _load(job.kind, job.model_path, job.data)
    return circuit_for(model, get_task(job.task), job.folder, job.reports, replace(cfg, progress=False))


def run_jobs(jobs: Sequence[CircuitJob], models: dict[str, DemoModel], cfg: DemoConfig) -> list[dict[str, Any]]:
    """Make every circuit, in this process (`cfg.workers` 1) or in worker processes of one
    thread each; rows come back in job order."""
    bar = tqdm(total=len(jobs), desc="circuits", unit="circuit", disable=not cfg.progress or not jobs)
    rows: list[dict[str, Any]] = []
    if cfg.workers == 1 or len(jobs) < 2:
        for job in jobs:
            rows.append(circuit_for(models[job.kind], get_task(job.task), job.folder, job.reports, cfg))
            bar.update(1)
        bar.close()
        return rows
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(cfg.workers, len(jobs)), mp_context=context) as pool:
        futures = {pool.submit(_run_job, job, cfg): i for i, job in enumerate(jobs)}
        done: dict[int, dict[str, Any]] = {}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            bar.update(1)
    bar.close()
    return [done[i] for i in range(len(jobs))]


def geometric_mean(values: Sequence[float]) -> float | None:
    """The geometric mean of positive values (None for an empty list)."""
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def compare(
    circuits: Sequence[dict[str, Any]], tasks: Sequence[str], solved: Mapping[str, Mapping[str, bool]] | None = None
) -> dict[str, Any]:
    """Per task, sparse and dense circuit sizes, verdicts and the dense/sparse edge ratio, and
    two geometric means of edge counts:

    - `all`: over the tasks where both circuits reach the target loss on the pruning pairs
      (the figure before validation);
    - `trusted` (the headline): over the tasks both full models solve (`solved[kind][task]`,
      the evaluation's test-split loss at most the target) whose two circuits both pass
      validation's sufficiency check on held-out pairs (`sufficient`), with each left-out
      task and why.
    """
    by = {(c["task"], c["kind"]): c for c in circuits}
    rows, pairs, trusted, left_out = [], [], [], {}
    for task in tasks:
        s, d = by.get((task, "sparse")), by.get((task, "dense"))
        row: dict[str, Any] = {"task": task}
        for kind, c in (("sparse", s), ("dense", d)):
            for key, field_ in (("nodes", "n_nodes"), ("edges", "n_edges"), ("target_met", "target_met"),
                                ("verdict", "verdict"), ("sufficient", "sufficient")):
                row[f"{kind}_{key}"] = c.get(field_) if c else None
        row["edge_ratio"] = d["n_edges"] / s["n_edges"] if s and d and s["n_edges"] else None
        rows.append(row)
        if not (s and d and s["n_edges"] and d["n_edges"]):
            left_out[task] = "a circuit is missing or empty"
            continue
        if s["target_met"] and d["target_met"]:
            pairs.append((s["n_edges"], d["n_edges"]))
        reason = _left_out_reason(task, s, d, solved)
        if reason:
            left_out[task] = reason
        else:
            trusted.append((s["n_edges"], d["n_edges"]))
    return {"rows": rows, "all": _geomeans(pairs), "trusted": {**_geomeans(trusted), "left_out": left_out}}


def _left_out_reason(task: str, s: dict[str, Any], d: dict[str, Any],
                     solved: Mapping[str, Mapping[str, bool]] | None) -> str | None:
    """Why a task's pair of circuits is not in the headline (None: it is)."""
    unsolved = [kind for kind in KINDS if solved is not None and not solved.get(kind, {}).get(task, False)]
    if unsolved:
        return f"the {' and '.join(unsolved)} model does not solve it"
    failing = [kind for kind, c in (("sparse", s), ("dense", d)) if not c.get("sufficient")]
    if failing:
        return f"the {' and '.join(failing)} circuit fails sufficiency on held-out pairs"
    return None


def _geomeans(pairs: Sequence[tuple[int, int]]) -> dict[str, Any]:
    gs, gd = geometric_mean([p[0] for p in pairs]), geometric_mean([p[1] for p in pairs])
    return {"n_tasks": len(pairs), "geomean_edges_sparse": gs, "geomean_edges_dense": gd,
            "geomean_ratio": gd / gs if gs and gd else None}


DEMO_ENTRIES = {"circuits", "reports", "scratch", INDEX_FILE, SUMMARY_FILE}


def _prepare_out(out: Path) -> None:
    """Create OUT, or clear the results of an earlier (even interrupted) demo there; refuse a
    folder holding anything a demo does not write."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_ENTRIES)
        if foreign:
            raise InputError(
                f"--out {out} is not a demo folder (it holds {', '.join(foreign[:3])}); choose a new or empty folder"
            )
        for sub in ("circuits", "reports"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def run_demo(cfg: DemoConfig, log: Callable[[str], Any] = print) -> DemoResult:
    """Run the demo (see the module docstring); writes under `cfg.out` and returns the summary."""
    start = time.perf_counter()
    out = cfg.out
    _prepare_out(out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if cfg.from_scratch:
        models = scratch_models(out / "scratch", dense=cfg.dense, progress=cfg.progress)
    else:
        models = bundled_models(dense=cfg.dense)
    timings["models"] = time.perf_counter() - t0
    tasks = [get_task(name) for name in (cfg.tasks or list_tasks())]
    t0 = time.perf_counter()
    evaluation = {m.kind: evaluate(m, tasks, cfg) for m in models}
    timings["evaluate"] = time.perf_counter() - t0
    chosen, notes = choose_tasks(evaluation["sparse"], cfg)
    for note in notes:
        log(f"note: {note}")
    t0 = time.perf_counter()
    jobs = [CircuitJob(m.kind, m.path, m.data, name, out / "circuits" / name / m.kind, out / "reports")
            for name in chosen for m in models]
    circuits = run_jobs(jobs, {m.kind: m for m in models}, cfg)
    timings["circuits"] = time.perf_counter() - t0
    solved = {kind: {t: r["solved"] for t, r in ev.items()} for kind, ev in evaluation.items()}
    comparison = compare(circuits, chosen, solved) if cfg.dense else None
    summary = {
        "format": DEMO_FORMAT,
        "version": __version__,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "models": {m.kind: _model_card(m) for m in models},
        "evaluation": evaluation,
        "pruned_tasks": chosen,
        "notes": notes,
        "circuits": [{k: v for k, v in c.items() if k != "index_entry"} for c in circuits],
        "comparison": comparison,
        "compare_pages": write_compare_pages(out, chosen, circuits) if cfg.dense else {},
        "reuse": circuit_reuse(out, chosen, circuits),
        "seconds": {**timings, "total": time.perf_counter() - start},
        "torch_threads": torch.get_num_threads(),
    }
    index = write_index(out, summary, [c["index_entry"] for c in circuits])
    summary["seconds"]["total"] = time.perf_counter() - start
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
    log(format_summary(summary))
    log(f"\nindex: {index}\nreports: {out / 'reports'}\ncircuits: {out / 'circuits'}\n"
        f"summary: {out / SUMMARY_FILE}")
    return DemoResult(out, summary, summary["seconds"]["total"], notes)


def write_compare_pages(out: Path, tasks: Sequence[str], circuits: Sequence[dict[str, Any]]) -> dict[str, str]:
    """OUT/reports/TASK-compare.html for every task with a sparse and a dense circuit: their
    summaries and graphs side by side (read back from the circuit folders, without the model);
    returns task -> the page's path relative to OUT."""
    kinds = {(c["task"], c["kind"]) for c in circuits}
    pages = {}
    for task in tasks:
        if not all((task, kind) in kinds for kind in KINDS):
            continue
        sides = [{"label": kind, "href": f"{task}-{kind}.html",
                  "data": build_report_data(out / "circuits" / task / kind, title=f"{task}: {kind}")} for kind in KINDS]
        page = write_report(compare_page(sides, f"{task}: sparse and dense circuits side by side", task),
                            out / "reports" / f"{task}-compare.html")
        pages[task] = page.relative_to(out).as_posix()
    return pages


def circuit_reuse(out: Path, tasks: Sequence[str], circuits: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model kind with at least two circuits, the node and edge overlap between its task
    circuits in the order of `tasks` (`circuits.reuse_from_folders`, read back from
    OUT/circuits/TASK/KIND): do the tasks reuse the same units?"""
    made = {(c["task"], c["kind"]) for c in circuits}
    reuse = {}
    for kind in KINDS:
        folders = {task: out / "circuits" / task / kind for task in tasks if (task, kind) in made}
        if len(folders) >= 2:
            reuse[kind] = reuse_from_folders(folders)
    return reuse


@torch.no_grad()
def validation_loss(model: DemoModel) -> float:
    """Language-model loss of the loaded model on validation windows drawn as its training
    drew them (same seed and batch shape, when the recipe is known) from the checkpoint's
    `corpus-val/`: the training run's own windows when the whole split was shipped, else
    windows of the shipped sample (`model pack --val-tokens`)."""
    import numpy as np
    import torch.nn.functional as F

    from sparsecircuits.data.shards import TokenShards, sample_batch

    recipe = ((model.ckpt.training or {}).get("recipe") or {}).get("train") or {}
    batch_size, batches, seed = recipe.get("batch_size", 32), recipe.get("eval_batches", 8), recipe.get("seed", 0)
    val = TokenShards.open(model.data).val
    rng = np.random.default_rng([seed, 1])
    net = model.ckpt.model.eval()
    total = 0.0
    for _ in range(batches):
        x, y = sample_batch(val, batch_size, net.cfg.n_ctx, rng)
        logits = net(x)
        total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1)).item()
    return total / batches


def _model_card(m: DemoModel) -> dict[str, Any]:
    training = m.ckpt.training or {}
    return {
        "name": m.name,
        "path": str(m.path),
        "data": str(m.data),
        "val_loss": validation_loss(m),
        "val_loss_at_training": training.get("final_val_loss"),
        "steps": training.get("steps"),
        "nonzeros": sparsity_report(m.ckpt.model).to_dict()["totals"],
    }


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Escaped static HTML table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""}">'
                         f"{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _evaluation_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    kinds = list(summary["evaluation"])
    header = ["task"] + [f"{k} loss" for k in kinds] + [f"{k} solved" for k in kinds] + ["pruned"]
    rows = []
    for task in summary["evaluation"][kinds[0]]:
        ev = [summary["evaluation"][k][task] for k in kinds]
        rows.append([task] + [e["loss"] for e in ev] + [e["solved"] for e in ev] + [task in summary["pruned_tasks"]])
    return header, rows


COMPARISON_HEADER = ["task", "sparse nodes", "sparse edges", "sparse verdict", "dense nodes", "dense edges",
                     "dense verdict", "dense/sparse edges", "in the headline"]


def _comparison_rows(comparison: dict[str, Any]) -> list[list[Any]]:
    left_out = comparison["trusted"]["left_out"]
    return [[r["task"], r["sparse_nodes"], r["sparse_edges"], r["sparse_verdict"], r["dense_nodes"], r["dense_edges"],
             r["dense_verdict"], r["edge_ratio"], left_out.get(r["task"], "yes")] for r in comparison["rows"]]


def _geomean_lines(comparison: dict[str, Any]) -> list[str]:
    """The headline (trusted pairs), the all-circuits figure beside it, and what was left out."""
    lines = []
    for key, what in (("trusted", "both full models solve and both circuits pass sufficiency on held-out pairs"),
                      ("all", "both circuits reach the target on the pruning pairs")):
        g = comparison[key]
        if not g["n_tasks"]:
            lines.append(f"geometric mean of edges, tasks where {what}: none")
            continue
        lines.append(f"geometric mean of edges over {g['n_tasks']} task(s) where {what}: sparse "
                     f"{g['geomean_edges_sparse']:.1f}, dense {g['geomean_edges_dense']:.1f} "
                     f"(dense/sparse {g['geomean_ratio']:.2f}x)")
    lines += [f"  left out of the first: {task} ({why})" for task, why in comparison["trusted"]["left_out"].items()]
    return lines


def write_index(out: Path, summary: dict[str, Any], entries: list[dict[str, Any]]) -> Path:
    """OUT/index.html: the viewer's circuit index, preceded by static sections (readable
    without scripts) with the notes, the sparse-vs-dense comparison and the evaluation."""
    parts = ['<section id="demo-summary"><h2>Demo summary</h2>']
    cards = summary["models"]
    parts.append(_table(
        ["model", "kind", "steps", "val loss (as loaded)", "val loss (training run)", "nonzero weights (matrices)",
         "nonzero (all)"],
        [[c["name"], kind, c["steps"], c["val_loss"], c["val_loss_at_training"],
          c["nonzeros"].get("matrix", {}).get("nonzero"), c["nonzeros"]["all"]["nonzero"]] for kind, c in cards.items()],
    ))
    parts += [f'<p class="muted">{html.escape(n)}</p>' for n in summary["notes"]]
    parts.append("</section>")
    comparison = summary["comparison"]
    if comparison is not None and comparison["rows"]:
        parts.append('<section id="demo-comparison"><h2>Sparse vs dense circuit sizes</h2>')
        parts.append(_table(COMPARISON_HEADER, _comparison_rows(comparison)))
        parts += [f"<p>{html.escape(line)}</p>" for line in _geomean_lines(comparison)]
        links = [f'<a href="{html.escape(href)}">{html.escape(task)}</a>' for task, href in summary["compare_pages"].items()]
        if links:
            parts.append(f"<p>Side by side, sparse and dense: {' · '.join(links)}</p>")
        parts.append("</section>")
    header, rows = _evaluation_rows(summary)
    parts.append(f'<section id="demo-evaluation"><h2>Task evaluation (test split, target loss '
                 f'{summary["settings"]["target_loss"]})</h2>{_table(header, rows)}</section>')
    page = render_index(entries, title="sparsecircuits demo", reuse=summary.get("reuse"))
    marker = '<main id="app">'
    if marker not in page:
        raise RuntimeError("the report template has no <main id=\"app\">; cannot place the demo sections")
    page = page.replace(marker, marker + "\n" + "\n".join(parts) + "\n", 1)  # the viewer appends after
    atomic_write_text(out / INDEX_FILE, page)
    return out / INDEX_FILE


def format_summary(summary: dict[str, Any]) -> str:
    """The plain-text summary table the command prints."""
    ev = summary["evaluation"]
    lines = [f"{c['name']} ({kind}): val loss {c['val_loss']:.3f}, {c['nonzeros']['all']['nonzero']:,} nonzero "
             f"parameters" for kind, c in summary["models"].items()]
    solved = [t for t, r in ev["sparse"].items() if r["solved"]]
    lines.append(f"sparse model solves {len(solved)} of {len(ev['sparse'])} tasks: {', '.join(solved) or 'none'}")
    lines += [f"note: {n}" for n in summary["notes"]]
    if summary["circuits"]:
        lines.append("")
        lines.append(f"loss full, circuit: the task loss on the {summary['settings']['pairs']} held-out test-split "
                     "pairs pruning bisected on (the evaluation above uses its own test pairs)")
        lines.append(f"{'task':<28} {'model':<6} {'method':<14} {'loss full':>9} {'circuit':>8} {'nodes':>6} "
                     f"{'edges':>7} {'target':>6}  verdict (failed checks)")
        for c in summary["circuits"]:
            loss = c["losses"]
            failed = f" ({', '.join(c['failed_checks'])})" if c.get("failed_checks") else ""
            lines.append(f"{c['task']:<28} {c['kind']:<6} {c.get('method', 'masks'):<14} {_fmt(loss.get('full')):>9} "
                         f"{_fmt(loss.get('circuit')):>8} {c['n_nodes']:>6} {c['n_edges']:>7} "
                         f"{_fmt(c['target_met']):>6}  {c['verdict']}{failed}")
    comparison = summary["comparison"]
    if comparison is not None and comparison["rows"]:
        lines += ["", *_geomean_lines(comparison)]
    lines.append(f"\ndemo took {summary['seconds']['total']:.0f} s "
                 f"(evaluation {summary['seconds']['evaluate']:.0f} s, circuits {summary['seconds']['circuits']:.0f} s)")
    return "\n".join(lines)
