"""`validate`: metrics + controls + verdict -> validation.json (`ValidationReport`).

The metrics come from `validate.metrics`, the controls from the `CONTROLS` table in
`validate.controls`, the status from `validate.verdict`; this module runs them on a circuit
and its held-out pairs and writes the report beside the circuit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from sparsecircuits import __version__
from sparsecircuits.atomic import atomic_write_text, check_writable_parent
from sparsecircuits.checkpoint import Checkpoint, stage_inputs
from sparsecircuits.circuits import Circuit, TaskRecord, circuit_folder
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json
from sparsecircuits.model import SparseTransformer
from sparsecircuits.prune import PruneConfig
from sparsecircuits.prune.pipeline import circuit_ablation_values
from sparsecircuits.tasks import Task, TaskBatch, get_task, load_task_file, make_batch
from sparsecircuits.tasks.loss import check_fits
from sparsecircuits.validate.controls import (
    CONTROLS,
    DEFAULT_RANDOM_DRAWS,
    DEFAULT_SEEDS,
    ControlContext,
    parse_controls,
)
from sparsecircuits.validate.metrics import Metrics, compute_metrics
from sparsecircuits.validate.nonsense import NONSENSE_SOURCE, nonsense_task
from sparsecircuits.validate.records import Verdict
from sparsecircuits.validate.verdict import Thresholds, verdict

VALIDATION_FORMAT = "sparsecircuits.validation/1"
VALIDATION_FILE = "validation.json"
# Settings whose default changed since earlier circuits were written: what those circuits used.
LEGACY_SETTINGS = {"minimal": False}
# Validation pairs come from the test split with this seed (pruning's bisection uses its own draw).
VALIDATION_SEED = 1


@dataclass
class ValidationReport:
    """A circuit's metrics, control results and verdict (the content of validation.json)."""

    circuit: dict[str, Any]
    settings: dict[str, Any]
    metrics: Metrics
    controls: dict[str, dict[str, Any]]
    verdict: Verdict
    version: str = __version__
    format: str = VALIDATION_FORMAT
    written: Path | None = field(default=None, compare=False)  # where `validate` saved it (not in the file)

    def to_dict(self) -> dict[str, Any]:
        """The validation.json content (documented in docs/validation.md)."""
        return {
            "format": self.format,
            "version": self.version,
            "circuit": self.circuit,
            "settings": self.settings,
            "metrics": self.metrics.to_dict(),
            "controls": self.controls,
            "verdict": self.verdict.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "validation") -> ValidationReport:
        """Parse validation.json content (this version's or an earlier one's)."""
        if d.get("format") != VALIDATION_FORMAT:
            raise InputError(f"{source}: format is {d.get('format')!r}, expected {VALIDATION_FORMAT!r}")
        try:
            return cls(
                circuit=dict(d["circuit"]),
                settings=dict(d["settings"]),
                metrics=Metrics(**d["metrics"]),
                controls={str(k): dict(v) for k, v in d["controls"].items()},
                verdict=Verdict.from_dict(d["verdict"]),
                version=str(d.get("version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed validation record ({exc}); re-run `sparsecircuits validate`") from exc

    @classmethod
    def load(cls, circuit_dir: str | Path) -> ValidationReport:
        """Read DIR/validation.json."""
        path = Path(circuit_dir) / VALIDATION_FILE
        if not path.is_file():
            raise InputError(f"{path} is missing; run `sparsecircuits validate --circuit {circuit_dir}`")
        return cls.from_dict(read_json(path, "re-run `sparsecircuits validate`"), source=str(path))

    def save(self, circuit_dir: str | Path) -> Path:
        """Write validation.json into the circuit folder (atomically), unless the one there
        ran a control this report did not: a richer run is never replaced, and this report
        goes beside it as validation-CONTROLS.json. Returns the path written."""
        path = Path(circuit_dir) / VALIDATION_FILE
        if path.is_file():
            earlier = set(ValidationReport.load(circuit_dir).controls)
            if not earlier <= set(self.controls):
                names = "-".join(sorted(self.controls)) or "none"
                path = path.with_name(f"validation-{names}.json")
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def format_table(self) -> str:
        """A plain-text summary: metrics, one line per check, the verdict."""
        m = self.metrics
        fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        lines = [
            f"circuit   {self.circuit.get('path') or '(in memory)'}  task {self.circuit['task']}  "
            f"{self.circuit['n_nodes']} nodes, {self.circuit['n_edges']} edges",
            f"{'metric':<28} {'value':>9}",
            f"{'loss full model':<28} {fmt(m.full):>9}",
            f"{'loss circuit (sufficiency)':<28} {fmt(m.circuit):>9}",
            f"{'loss circuit ablated':<28} {fmt(m.circuit_ablated):>9}",
            f"{'loss all ablated':<28} {fmt(m.ablate_all):>9}",
            f"{'faithfulness':<28} {fmt(m.faithfulness):>9}",
            f"{'necessity':<28} {fmt(m.necessity):>9}",
            f"{'accuracy full / circuit':<28} {m.accuracy_full:>4.2f}/{m.accuracy_circuit:.2f}",
            f"{'KL(full || circuit)':<28} {fmt(m.kl):>9}",
            "",
            f"{'check':<22} {'result':<6} {'value':>9} {'threshold':>10}",
        ]
        v = self.verdict
        for c in v.checks:
            lines.append(
                f"{c.name:<22} {'pass' if c.passed else 'FAIL':<6} {fmt(c.value):>9} {fmt(c.threshold):>10}"
            )
        if v.controls_not_run:
            lines.append("not run: " + ", ".join(v.controls_not_run))
        lines += ["", f"verdict: {v.status.upper()}"]
        lines += [f"  - {r}" for r in v.reasons]
        lines += [f"  note: {n}" for n in v.notes]
        return "\n".join(lines)


def task_from_info(info: TaskRecord | Mapping[str, Any]) -> Task:
    """Rebuild a circuit's task from its `task` record: a registered name, a JSONL file, or
    the nonsense version of either."""
    if isinstance(info, TaskRecord):
        info = info.to_dict()
    name, source = info.get("name"), info.get("source", "builtin")
    params = info.get("params", info.get("parameters")) or {}
    if source == NONSENSE_SOURCE:
        base = params.get("base")
        if not isinstance(base, Mapping):
            raise InputError(f"task {name!r}: a nonsense task record needs params.base")
        return nonsense_task(task_from_info(base), salt=params.get("salt", "sparsecircuits-nonsense"))
    if source in ("builtin", "python"):
        if not isinstance(name, str):
            raise InputError("the circuit's task record has no name; re-run `sparsecircuits prune`")
        return get_task(name)
    path = Path(str(source))
    if not path.is_file():
        raise InputError(
            f"the circuit's task file {path} does not exist; pass --task FILE to point at it"
        )
    return load_task_file(path)


def prune_config_of(circuit: Circuit, steps: int | None = None) -> PruneConfig:
    """The circuit's pruning settings as a PruneConfig (unknown keys ignored), `steps` overridden."""
    known = {f.name for f in fields(PruneConfig)}
    settings = {**LEGACY_SETTINGS, **{k: v for k, v in circuit.pruning.settings.items() if k in known}}
    settings.setdefault("ablation", circuit.ablation)
    settings.setdefault("target_loss", circuit.target_loss)
    settings.setdefault("seed", circuit.seed)
    if steps is not None:
        settings["steps"] = steps
    return PruneConfig.from_dict(settings)


def _load_circuit(circuit: Circuit | str | Path) -> tuple[Circuit, Path | None]:
    """The circuit (loaded when given its folder or its circuit.json) and its folder, None
    when given in memory; the folder is where validation.json goes."""
    if isinstance(circuit, Circuit):
        return circuit, None
    return Circuit.load(circuit), circuit_folder(circuit)


def _held_out_batch(
    model: SparseTransformer, tokenizer: Tokenizer, task: Task, n_pairs: int
) -> tuple[TaskBatch, int]:
    """The validation pairs as a batch, and their number: `n_pairs` test-split pairs drawn
    with VALIDATION_SEED (apart from pruning's own draw), checked to fit the model's context."""
    pairs = task.generate(tokenizer, n_pairs, seed=VALIDATION_SEED, split="test")
    check_fits(model, pairs, task.name)
    return make_batch(pairs), len(pairs)


def _report(
    ctx: ControlContext,
    circuit_dir: Path | None,
    names: list[str],
    n_pairs: int,
    metrics: Metrics,
    results: dict[str, dict[str, Any]],
    thresholds: Thresholds | None,
) -> ValidationReport:
    """The report: what was validated, with which settings, the results and the verdict."""
    circuit = ctx.circuit
    return ValidationReport(
        circuit={
            "path": str(circuit_dir) if circuit_dir else None,
            "model": dict(circuit.model),
            "task": ctx.task.name,
            "ablation": circuit.ablation,
            "target_loss": circuit.target_loss,
            "n_nodes": ctx.n_nodes,
            "n_edges": circuit.n_edges,
        },
        settings={
            "controls": names,
            "n_pairs": n_pairs,
            "split": "test",
            "pairs_seed": VALIDATION_SEED,
            "prune_steps": ctx.config.steps,
            "n_random": ctx.n_random,
            "n_seeds": ctx.n_seeds,
            "seed": ctx.seed,
        },
        metrics=metrics,
        controls=results,
        verdict=verdict(metrics, results, circuit.target_loss, thresholds),
    )


def validate(
    circuit: Circuit | str | Path,
    model: SparseTransformer | Checkpoint,
    tokenizer: Tokenizer | None = None,
    controls: str | Sequence[str] | None = "core",
    *,
    task: Task | None = None,
    data: Any = None,
    cache_dir: str | Path | None = None,
    n_pairs: int | None = None,
    steps: int | None = None,
    n_random: int = DEFAULT_RANDOM_DRAWS,
    n_seeds: int = DEFAULT_SEEDS,
    thresholds: Thresholds | None = None,
    seed: int = 0,
    write: bool = True,
    progress: bool = True,
) -> ValidationReport:
    """Metrics, the chosen controls and the verdict for one circuit of `model`.

    `circuit` is a Circuit or its folder; with a folder and `write`, validation.json is
    written beside circuit.json. The task defaults to the circuit's own; the pairs are
    `n_pairs` (default: pruning's n_eval_pairs) held-out test-split pairs. Controls that
    prune use the circuit's pruning settings, with `steps` overriding the step count.
    """
    given = stage_inputs(model, tokenizer, data, cache_dir)
    model, tokenizer, data, cache_dir = given.model, given.tokenizer, given.data, given.cache_dir
    circuit, circuit_dir = _load_circuit(circuit)
    if circuit_dir is not None and write:  # before the work, not after it
        check_writable_parent(circuit_dir / VALIDATION_FILE, "--circuit")
    circuit.check_against(model)
    names = parse_controls(controls)
    config = prune_config_of(circuit, steps)
    task = task if task is not None else task_from_info(circuit.task)
    batch, n_held_out = _held_out_batch(model, tokenizer, task, n_pairs or config.n_eval_pairs)
    model.eval()
    values = circuit_ablation_values(model, circuit, tokenizer, task, data=data, cache_dir=cache_dir)
    with torch.no_grad():
        metrics = compute_metrics(model, circuit, batch, values, freeze_norms=config.freeze_norms)
    ctx = ControlContext(
        model=model,
        tokenizer=tokenizer,
        circuit=circuit,
        task=task,
        task_batch=batch,
        values=values,
        config=config,
        data=data,
        cache_dir=cache_dir,
        n_random=n_random,
        n_seeds=n_seeds,
        seed=seed,
        progress=progress,
    )
    results: dict[str, dict[str, Any]] = {}
    for name in tqdm(names, desc="controls", unit="control", disable=not progress):
        results[name] = CONTROLS[name].run(ctx)
    report = _report(ctx, circuit_dir, names, n_held_out, metrics, results, thresholds)
    if circuit_dir is not None and write:
        report.written = report.save(circuit_dir)
    return report
