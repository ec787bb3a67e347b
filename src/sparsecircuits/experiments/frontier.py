"""The paper's central experiment as one command: a sweep of weight-sparse models over kept
fraction, width at fixed nonzeros and activation sparsity, with dense baselines, each
evaluated on the tasks and pruned to circuits (docs/frontier.md).

A sweep file (TOML) names a base preset and the axes. Each point is an ordinary training
run made by `train.train` under DIR/points/NAME/run, so a point trains with `torchrun`
like any run. `run_sweep` does what can be done now and can be started again at any time:
complete runs are skipped, interrupted ones resume from their newest state, evaluated
points are not evaluated again and finished circuits are kept. Circuits need the tasks
chosen from *every* point's evaluation (default rule: the tasks all points solve, so the
geometric means compare like with like), so with `shard` (K, N), running every N-th
point, a shard prunes only once every point has been evaluated; running it again after
the other shards finish completes it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json, read_text
from sparsecircuits.train.config import RunConfig, load_run_config, tomllib

POINT_FORMAT = "sparsecircuits-frontier-point/1"
POINT_FILE = "point.json"
RULES = ("all_solve", "each_solves", "listed")


@dataclass(frozen=True)
class SweepPoint:
    """One model of the sweep: a dense baseline or a weight-sparse model, at a width
    `expansion` times the base's; sparse points keep `target_density / expansion**2` of
    their matrices, so that their nonzero weights stay those of expansion 1."""

    kind: str  # sparse | dense
    expansion: int
    target_density: float | None = None  # kept fraction at expansion 1 (sparse only)
    afrac: float | None = None  # AbsTopK fraction (None: the base preset's)

    @property
    def name(self) -> str:
        """The point's folder name, e.g. sparse-e2-k0.125-a0.25 or dense-e1."""
        if self.kind == "dense":
            return f"dense-e{self.expansion}" + (f"-a{self.afrac:g}" if self.afrac is not None else "")
        return f"sparse-e{self.expansion}-k{self.target_density:g}" + (f"-a{self.afrac:g}" if self.afrac is not None else "")

    @property
    def family(self) -> str:
        """The line of the frontier plot the point belongs to."""
        return "dense" if self.kind == "dense" else f"sparse, width x{self.expansion}"

    def run_config(self, base: RunConfig, tokens: int) -> RunConfig:
        """The base config widened and sparsified for this point, trained on `tokens` tokens."""
        m, t, e = base.model, base.train, self.expansion
        model = replace(m, d_model=m.d_model * e, d_mlp=m.d_mlp * e, n_head=m.n_head * e,
                        afrac=self.afrac if self.afrac is not None else m.afrac)
        density = 1.0 if self.kind == "dense" else self.target_density / e**2
        steps = max(1, math.ceil(tokens / (t.batch_size * m.n_ctx)))
        return RunConfig(model=model, train=replace(t, target_density=density, steps=steps))


# [discovery] settings a sweep may give: fields of the demo's config, whose circuit making
# the sweep reuses (their defaults are the demo's, but for the smaller snippet sample below)
DISCOVERY_FIELDS = ("method", "steps", "control_steps", "lr", "batch_pairs", "pairs", "train_pairs", "report_pairs",
                    "snippet_tokens", "controls", "minimal", "faithful_coef")
SWEEP_SNIPPET_TOKENS = 16_384  # per circuit report: a sweep makes many


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: where its data and base preset are, its points, the task rule and
    the discovery settings."""

    base: str
    data: Path
    tokens: int
    points: tuple[SweepPoint, ...]
    overrides: tuple[str, ...] = ()
    rule: str = "all_solve"
    task_names: tuple[str, ...] = ()
    target_loss: float = 0.15
    eval_pairs: int = 100
    seed: int = 0
    discovery: Mapping[str, Any] = field(default_factory=dict)  # DISCOVERY_FIELDS given by the file
    source: str = "sweep"

    def base_config(self) -> RunConfig:
        """The base preset with the sweep's overrides and seed."""
        return load_run_config(self.base, [*self.overrides, f"train.seed={self.seed}"])


def _list(table: Mapping[str, Any], key: str, kind: type, source: str, default: list | None = None) -> list:
    value = table.get(key, default)
    if value is None:
        raise InputError(f"{source}: `{key}` is missing; give a list, e.g. {key} = [1, 2]")
    values = value if isinstance(value, list) else [value]
    types = (int, float) if kind is float else int
    if not values or not all(isinstance(v, types) and not isinstance(v, bool) for v in values):
        raise InputError(f"{source}: `{key}` must be a non-empty list of {kind.__name__}s, got {value!r}")
    return values


def _points(doc: Mapping[str, Any], source: str) -> tuple[SweepPoint, ...]:
    sparse, dense = doc.get("sparse", {}), doc.get("dense")
    points = []
    for e in _list(sparse, "expansion", int, f"{source} [sparse]", [1]):
        for k in _list(sparse, "target_density", float, f"{source} [sparse]"):
            for a in (sparse["afrac"] if isinstance(sparse.get("afrac"), list) else [sparse.get("afrac")]):
                points.append(SweepPoint("sparse", e, float(k), None if a is None else float(a)))
    if dense is not None:
        afrac = dense.get("afrac")
        for e in _list(dense, "expansion", int, f"{source} [dense]", [1]):
            points.append(SweepPoint("dense", e, None, None if afrac is None else float(afrac)))
    for p in points:
        if p.expansion < 1 or (p.kind == "sparse" and not 0 < p.target_density <= 1):
            raise InputError(f"{source}: point {p.name}: expansion must be >= 1 and target_density in (0, 1]")
        if p.afrac is not None and not 0 < p.afrac <= 1:
            raise InputError(f"{source}: point {p.name}: afrac must be in (0, 1]")
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: two points have the same settings ({', '.join(sorted(names))})")
    return tuple(points)


def _discovery(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    unknown = sorted(set(table) - set(DISCOVERY_FIELDS))
    if unknown:
        raise InputError(f"{source} [discovery]: unknown setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(DISCOVERY_FIELDS)}")
    return dict(table)


def sweep_file(spec: str | Path) -> Path:
    """A sweep file path, or the name of a bundled sweep (configs/sweeps/NAME.toml)."""
    path = Path(spec)
    if path.suffix != ".toml" and not path.exists():
        bundled = Path(str(resources.files("sparsecircuits") / "configs" / "sweeps" / f"{spec}.toml"))
        if not bundled.is_file():
            names = sorted(p.stem for p in bundled.parent.glob("*.toml"))
            raise InputError(f"--sweep {spec}: no such file or bundled sweep; bundled: {', '.join(names)}")
        return bundled
    return path


def load_sweep(spec: str | Path, data: str | Path | None = None) -> Sweep:
    """Parse a sweep file (or bundled sweep name); relative `data` and `base` paths are
    relative to the file; `data` given here replaces the file's."""
    path = sweep_file(spec)
    try:
        doc = tomllib.loads(read_text(path, "give a sweep file (TOML)"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"sweep file {path} is not valid TOML ({exc})") from exc
    source = f"sweep file {path}"
    unknown = sorted(set(doc) - {"sweep", "sparse", "dense", "tasks", "discovery"})
    if unknown:
        raise InputError(f"{source}: unknown table(s) {', '.join(unknown)}; use [sweep], [sparse], [dense], [tasks], [discovery]")
    head, tasks = doc.get("sweep", {}), doc.get("tasks", {})
    for key in ("base", "tokens") + (() if data is not None else ("data",)):
        if key not in head:
            hint = " (or pass --data CORPUS_DIR)" if key == "data" else ""
            raise InputError(f"{source}: [sweep] needs `{key}`{hint}")
    base = str(head["base"])
    if base.endswith(".toml"):
        base = str((path.parent / base).resolve())
    rule = tasks.get("rule", "all_solve")
    if rule not in RULES:
        raise InputError(f"{source}: [tasks] rule {rule!r}; choose one of {', '.join(RULES)}")
    if not isinstance(head["tokens"], int) or head["tokens"] < 1:
        raise InputError(f"{source}: [sweep] tokens must be a positive integer")
    sweep = Sweep(
        base=base, data=Path(data).resolve() if data is not None else (path.parent / str(head["data"])).resolve(),
        tokens=head["tokens"],
        points=_points(doc, source), overrides=tuple(head.get("overrides", ())), rule=rule,
        task_names=tuple(tasks.get("names", ())), target_loss=float(tasks.get("target_loss", 0.15)),
        eval_pairs=int(tasks.get("eval_pairs", 100)), seed=int(head.get("seed", 0)),
        discovery=_discovery(doc.get("discovery", {}), source), source=str(path),
    )
    if rule == "listed" and not sweep.task_names:
        raise InputError(f"{source}: [tasks] rule \"listed\" needs names = [...]")
    sweep.base_config()  # a bad base preset, override or discovery setting fails before anything trains
    demo_settings(sweep, Path("."), False)
    return sweep


def parse_shard(text: str | None) -> tuple[int, int]:
    """"K/N" -> (K, N) with 1 <= K <= N; None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: give K/N, e.g. 2/4 (the second of four shards)") from None
    if not 1 <= k <= n:
        raise InputError(f"--shard {text}: K must be between 1 and N")
    return k, n


def point_dir(out: Path, point: SweepPoint) -> Path:
    """DIR/points/NAME: the point's training run (run/), circuits, reports and point.json."""
    return out / "points" / point.name


def read_point(out: Path, point: SweepPoint) -> dict[str, Any] | None:
    """The point's point.json, or None before it has been evaluated."""
    file = point_dir(out, point) / POINT_FILE
    return read_json(file, "delete it to evaluate the point again") if file.is_file() else None


def _write_point(out: Path, point: SweepPoint, record: Mapping[str, Any]) -> None:
    atomic_write_text(point_dir(out, point) / POINT_FILE, json.dumps(record, indent=1) + "\n")


def _complete(run: Path, cfg: RunConfig) -> bool:
    """Has `run` finished training with this config's number of steps?"""
    record = run / "training.json"
    if not (record.is_file() and (run / "model.safetensors").is_file()):
        return False
    return read_json(record, "delete the run folder to train it again").get("steps") == cfg.train.steps


def train_point(sweep: Sweep, out: Path, point: SweepPoint, progress: bool = True) -> Path:
    """Train the point's run (skipped when complete, resumed when interrupted); its folder."""
    from sparsecircuits.train import train
    from sparsecircuits.train.state import has_saved_run

    run = point_dir(out, point) / "run"
    cfg = point.run_config(sweep.base_config(), sweep.tokens)
    if not _complete(run, cfg):
        train(cfg, sweep.data, run, resume=has_saved_run(run), progress=progress)
    return run


def demo_settings(sweep: Sweep, out: Path, progress: bool) -> Any:
    """The sweep's evaluation and discovery settings as the demo's config, whose evaluation
    and circuit making the sweep reuses."""
    from sparsecircuits.experiments.demo import DemoConfig

    try:
        return DemoConfig(out=out, eval_pairs=sweep.eval_pairs, target_loss=sweep.target_loss, seed=sweep.seed,
                          workers=1, progress=progress, **{"snippet_tokens": SWEEP_SNIPPET_TOKENS, **sweep.discovery})
    except TypeError as exc:
        raise InputError(f"{sweep.source} [discovery]: {exc}") from exc


def _candidates(sweep: Sweep) -> list[str]:
    from sparsecircuits.tasks import list_tasks

    return list(sweep.task_names) or list_tasks()


def evaluate_point(sweep: Sweep, out: Path, point: SweepPoint, run: Path, progress: bool = True) -> dict[str, Any]:
    """Validation loss, nonzeros and task losses of a trained point, written to point.json."""
    from sparsecircuits.experiments.demo import _load, evaluate
    from sparsecircuits.model.sparsity import sparsity_report
    from sparsecircuits.tasks import get_task

    model = _load(point.name, run, sweep.data)
    training = model.ckpt.training or {}
    cfg = demo_settings(sweep, out, progress)
    record = {
        "format": POINT_FORMAT, "name": point.name, "kind": point.kind, "family": point.family,
        "expansion": point.expansion, "d_model": model.ckpt.config.d_model,
        "target_density": point.target_density, "afrac": model.ckpt.config.afrac,
        "nonzeros": sparsity_report(model.ckpt.model).to_dict()["totals"].get("matrix", {}).get("nonzero"),
        "tokens": training.get("tokens"), "val_loss": training.get("final_val_loss"),
        "run": run.relative_to(out).as_posix(),
        "evaluation": evaluate(model, [get_task(t) for t in _candidates(sweep)], cfg),
        "tasks": None, "circuits": {}, "reuse": None,
    }
    _write_point(out, point, record)
    return record


def choose_tasks(sweep: Sweep, records: Mapping[str, Mapping[str, Any] | None]) -> dict[str, list[str]] | None:
    """Per point name, the tasks to prune by the sweep's rule; None while a point the rule
    needs has not been evaluated (rule all_solve reads every point)."""
    names = _candidates(sweep)
    if sweep.rule == "listed":
        return {p: list(sweep.task_names) for p in records}
    if sweep.rule == "each_solves":
        return {p: [t for t in names if r["evaluation"].get(t, {}).get("solved")] for p, r in records.items() if r}
    if any(r is None for r in records.values()):
        return None
    common = [t for t in names if all(r["evaluation"].get(t, {}).get("solved") for r in records.values())]
    return {p: common for p in records}


def circuits_for_point(sweep: Sweep, out: Path, point: SweepPoint, tasks: Sequence[str], progress: bool = True,
                       log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Prune, validate and report the point's circuit of each task (finished ones kept);
    point.json gets each circuit's row as it is made, then the circuits' reuse matrices."""
    from sparsecircuits.circuits import reuse_from_folders
    from sparsecircuits.experiments.demo import _load, circuit_for
    from sparsecircuits.tasks import get_task

    record = dict(read_point(out, point) or {})
    record["tasks"] = list(tasks)
    circuits = dict(record.get("circuits") or {})
    here, model = point_dir(out, point), None
    cfg = demo_settings(sweep, out, progress)
    for task in tasks:
        if task in circuits:
            continue
        model = model or _load(point.name, here / "run", sweep.data)
        log(f"{point.name}: circuit for {task}")
        row = circuit_for(model, get_task(task), here / "circuits" / task, here / "reports", cfg)
        circuits[task] = {
            **{k: row[k] for k in ("n_nodes", "n_edges", "target_met", "verdict", "failed_checks", "sufficient")},
            "circuit": Path(row["circuit"]).relative_to(out).as_posix(),
            "report": Path(row["report"]).relative_to(out).as_posix(),
        }
        record["circuits"] = circuits
        _write_point(out, point, record)
    folders = {t: here / "circuits" / t for t in tasks if t in circuits}
    record["circuits"] = circuits
    record["reuse"] = reuse_from_folders(folders) if len(folders) >= 2 else None
    _write_point(out, point, record)
    return record


def run_sweep(spec: str | Path, out: str | Path, shard: tuple[int, int] = (1, 1), data: str | Path | None = None,
              progress: bool = True, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Do every step of the sweep that can be done now for this shard's points (every N-th,
    from the K-th): train, evaluate, and, once the task rule can be read, make circuits.
    Returns what it did and what is still waiting."""
    sweep, out = load_sweep(spec, data), Path(out)
    if not (sweep.data / "shards.json").is_file():
        raise InputError(f"the sweep's corpus {sweep.data} is not a corpus folder (no shards.json); "
                         "build one with `sparsecircuits corpus build` or pass --data")
    k, n = shard
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(
        {"source": sweep.source, "points": [p.name for p in sweep.points], "tokens": sweep.tokens,
         "rule": sweep.rule, "target_loss": sweep.target_loss}, indent=1) + "\n")
    mine = sweep.points[k - 1 :: n]
    for i, point in enumerate(mine, 1):
        log(f"[{i}/{len(mine)}] {point.name}: training (skipped when complete)")
        run = train_point(sweep, out, point, progress)
        if read_point(out, point) is None:
            log(f"[{i}/{len(mine)}] {point.name}: evaluating on the tasks")
            evaluate_point(sweep, out, point, run, progress)
    records = {p.name: read_point(out, p) for p in sweep.points}
    chosen = choose_tasks(sweep, records)
    if chosen is None:
        waiting = sorted(name for name, r in records.items() if r is None)
        log(f"circuits wait for the evaluation of {len(waiting)} point(s) of other shards ({', '.join(waiting)}); "
            "run this command again once they are done")
        return {"points": [p.name for p in mine], "waiting_for": waiting, "tasks": None}
    for point in mine:
        circuits_for_point(sweep, out, point, chosen[point.name], progress, log)
    tasks = sorted({t for ts in chosen.values() for t in ts})
    if not tasks:
        log(f"no task is solved (test loss <= {sweep.target_loss}) by the rule {sweep.rule!r}; no circuits made")
    return {"points": [p.name for p in mine], "waiting_for": [], "tasks": tasks}
