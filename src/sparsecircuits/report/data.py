"""Build the report data dict: everything a report page shows, JSON-ready.

`build_report_data` reads a circuit (folder or dict) and, when a model is given, computes
the per-node details the viewer shows on click: the node's ablation value, the change in
task loss when that node alone is removed from the circuit, its activations on task pairs
(A versus B, in the full model and in the circuit), and its top-activating pretraining
snippets. Without a model those fields are None and the page says "not computed".
`build_run_data` makes the page of a training run (model card, training curves, circuits).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecircuits import __version__
from sparsecircuits.checkpoint import Checkpoint, TrainingRecord, load_config, stage_inputs
from sparsecircuits.circuits import CIRCUIT_FILE, Circuit, node_id, parse_node_id
from sparsecircuits.errors import InputError
from sparsecircuits.jsonio import read_json, read_text
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.locations import get_location, hook_location, node_locations
from sparsecircuits.report.html import REPORT_FORMAT, index_entry
from sparsecircuits.validate.records import Check

VALIDATION_FILE = "validation.json"
METRICS_FILE = "metrics.jsonl"
MAX_EMBED_TOKENS = 12  # embedding terminals drawn (the tokens with the largest total |weight|)


def load_validation(circuit_dir: str | Path) -> dict[str, Any] | None:
    """DIR/validation.json when present, else None."""
    file = Path(circuit_dir) / VALIDATION_FILE
    return read_json(file, "regenerate the validation with `sparsecircuits validate`") if file.is_file() else None


def _node_records(nodes: Mapping[str, Sequence[int]], cfg: ModelConfig | None) -> list[dict[str, Any]]:
    records = []
    for hook, indices in nodes.items():
        layer, alias = hook_location(hook)
        role = get_location(alias).role
        if cfg is not None and layer >= cfg.n_layer:
            raise InputError(f"circuit node location {hook!r} is beyond the model's {cfg.n_layer} layer(s); wrong --model?")
        for index in indices:
            head = channel = None
            if role == "qkv" and cfg is not None:
                head, channel = divmod(int(index), cfg.d_head)
            records.append({
                "id": node_id(hook, index), "hook": hook, "alias": alias, "role": role, "layer": layer, "index": int(index),
                "head": head, "channel": channel, "ablation_value": None, "delta_loss": None,
                "acts": None, "token_acts": None, "class_acts": None, "snippet_groups": None,
                "act_stats": None, "agreement": None, "steering": None,
            })
    return records


def _with_agreement(nodes: list[dict[str, Any]], validation: Mapping[str, Any] | None) -> None:
    """Each node's activation agreement from the validation's control, when it ran; layer-0
    attn_in nodes read the embedding, which no circuit ablates, so theirs is 1 trivially."""
    controls = (validation or {}).get("controls") or {}
    per_node = (controls.get("activation_agreement") or {}).get("per_node") or []
    corr = {p["node"]: p["corr"] for p in per_node if isinstance(p, Mapping) and "node" in p}
    for n in nodes:
        n["agreement"] = corr.get(n["id"])
        n["agreement_trivial"] = n["layer"] == 0 and n["alias"] == "attn_in"


def _with_steering(nodes: list[dict[str, Any]], records: Sequence[Mapping[str, Any]]) -> None:
    """Each node's steering effects on the dense model (via bridges), where one was measured."""
    from sparsecircuits.bridges.steer import steering_summary

    for n in nodes:
        found = [steering_summary(r) for r in records if n["id"] in r.get("node_ids", ())]
        n["steering"] = found or None


def _validation_record(validation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The validation as the page shows it: every check with its pass direction and meaning
    (files written before checks carried them get them from the table)."""
    if validation is None:
        return None
    record = dict(validation)
    verdict = record.get("verdict")
    if isinstance(verdict, Mapping) and isinstance(verdict.get("checks"), list):
        checks = [Check.from_dict(c).to_dict() if isinstance(c, Mapping) and "name" in c and "passed" in c else c
                  for c in verdict["checks"]]
        record["verdict"] = {**verdict, "checks": checks}
    return record


def _token_label(tokenizer: Any | None) -> Callable[[int], str]:
    if tokenizer is None:
        return lambda t: f"token {t}"
    from sparsecircuits.data.tokenizer import decode

    return lambda t: decode(tokenizer, [t])


def display_links(circuit: Circuit, nodes: Sequence[Mapping[str, Any]], tokenizer: Any | None = None) -> dict[str, Any]:
    """Terminals and links for drawing: embedding tokens linked to the kept nodes that read
    their channels, kept write nodes linked to the answer tokens' logits, and the circuit's
    residual links. These are joins of the circuit's embed/unembed links with the nodes on
    the same residual channel; none of them is a circuit edge."""
    label = _token_label(tokenizer)
    readers: dict[int, list[str]] = {}
    writers: dict[int, list[str]] = {}
    for n in nodes:
        if n["role"] == "read":
            readers.setdefault(n["index"], []).append(n["id"])
        elif n["role"] == "write":
            writers.setdefault(n["index"], []).append(n["id"])
    totals: dict[str, float] = {}
    for e in circuit.embed_links:
        totals[e.src] = totals.get(e.src, 0.0) + abs(e.weight)
    shown = set(sorted(totals, key=lambda k: -totals[k])[:MAX_EMBED_TOKENS])
    links = []
    for e in circuit.embed_links:
        if e.src in shown:
            links += [{"src": e.src, "dst": r, "weight": e.weight} for r in readers.get(parse_node_id(e.dst)[1], [])]
    for e in circuit.unembed_links:
        links += [{"src": w, "dst": e.dst, "weight": e.weight} for w in writers.get(parse_node_id(e.src)[1], [])]
    answers = {e.dst for e in circuit.unembed_links} | {f"unembed:{t}" for t in circuit.tokens.get("answer", [])}
    terminals = [{"id": k, "kind": "embed", "token": label(int(k.split(":")[1])), "label": repr(label(int(k.split(":")[1])))}
                 for k in sorted(shown, key=lambda k: -totals[k])]
    terminals += [{"id": k, "kind": "logit", "token": label(int(k.split(":")[1])), "label": "logit " + repr(label(int(k.split(":")[1])))}
                  for k in sorted(answers)]
    residual = [e.to_dict() for e in circuit.residual_links]
    notes = []
    if len(totals) > len(shown):
        notes.append(f"{len(totals) - len(shown)} of {len(totals)} embedding tokens with links are not drawn")
    return {"terminals": terminals, "terminal_links": links, "residual_links": residual, "notes": notes}


def _geometry(cfg: ModelConfig | None, nodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    if cfg is not None:
        return {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_head": cfg.d_head}
    return {"n_layer": 1 + max((n["layer"] for n in nodes), default=-1), "n_head": None, "d_head": None}


def _circuit_summary(circuit: Circuit) -> dict[str, Any]:
    """The circuit's settings, sizes and losses as the page's summary shows them."""
    return {
        "ablation": circuit.ablation,
        "target_loss": circuit.target_loss,
        "target_met": circuit.target_met,
        "n_nodes": circuit.n_nodes,
        "n_edges": circuit.n_edges,
        "seed": circuit.seed,
        "version": circuit.version,
        "pruning": circuit.pruning.to_dict(),
        "calibration": circuit.calibration.to_dict() if circuit.calibration else {},
        "losses": circuit.losses.to_dict(),
    }


def _config_from_path(circuit: Circuit) -> ModelConfig | None:
    path = circuit.model.get("path")
    if path and (Path(path) / "config.json").is_file():
        return load_config(path)
    return None


def model_card(
    model: SparseTransformer | None = None,
    model_dir: str | Path | None = None,
    training: Mapping[str, Any] | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Config, nonzero weights and losses of a model (any argument may be missing)."""
    from sparsecircuits.checkpoint import model_fingerprint
    from sparsecircuits.model.sparsity import sparsity_report

    card: dict[str, Any] = {"path": str(model_dir) if model_dir else None, "fingerprint": fingerprint}
    cfg = model.cfg if model is not None else None
    if cfg is None and model_dir is not None and (Path(model_dir) / "config.json").is_file():
        cfg = load_config(model_dir)
    card["config"] = cfg.to_dict() if cfg is not None else None
    if model is not None:
        card["fingerprint"] = model_fingerprint(model)
        card["nonzeros"] = sparsity_report(model).to_dict()["totals"]
    record = TrainingRecord.from_dict(dict(training) if training else None)
    shown = {"val_loss": record.final_val_loss, "train_loss": record.final_train_loss,
             "steps": record.steps, "tokens": record.tokens}
    card.update({key: value for key, value in shown.items() if value is not None})
    return card


def _open_circuit(circuit: str | Path | Circuit | Mapping[str, Any], validation: Mapping[str, Any] | None
                  ) -> tuple[Circuit, Mapping[str, Any] | None, list[dict[str, Any]]]:
    """The circuit, its validation and its steering records (a folder's files when given one)."""
    if isinstance(circuit, (str, Path)):
        from sparsecircuits.bridges.steer import load_steering

        validation = validation if validation is not None else load_validation(circuit)
        return Circuit.load(circuit), validation, load_steering(circuit)
    return (circuit if isinstance(circuit, Circuit) else Circuit.from_dict(circuit)), validation, []


def build_report_data(
    circuit: str | Path | Circuit | Mapping[str, Any],
    model: SparseTransformer | Checkpoint | None = None,
    tokenizer: Any | None = None,
    shards: Any | None = None,
    validation: Mapping[str, Any] | None = None,
    *,
    training: Mapping[str, Any] | None = None,
    n_pairs: int = 32,
    n_examples: int = 4,
    snippet_tokens: int = 131_072,
    window: int = 64,
    n_snippets: int = 5,
    radius: int = 12,
    seed: int = 0,
    title: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The JSON-ready data of one circuit's report.

    `circuit` is a circuit folder (its validation.json is read too), a `Circuit` or the
    content of a circuit.json. With `model` (checked against the circuit's fingerprint; a
    `Checkpoint` brings its tokenizer, corpus and training record) and
    `tokenizer`, task examples and per-node details are computed on `n_pairs` test pairs;
    with `shards` (a corpus folder or TokenShards) as well, each node gets `n_snippets`
    snippets of +-`radius` tokens at each of its activation quantiles, from a sample of
    about `snippet_tokens` validation tokens in windows of `window` (with a progress bar
    when `progress`).
    """
    circuit, validation, steering = _open_circuit(circuit, validation)
    if model is not None:
        if isinstance(model, Checkpoint):
            training = training if training is not None else model.training
        given = stage_inputs(model, tokenizer, shards)  # a model off the CPU is an input error
        model, tokenizer, shards = given.model, given.tokenizer, given.data
        circuit.check_against(model)
    cfg = model.cfg if model is not None else _config_from_path(circuit)
    nodes = _node_records(circuit.nodes, cfg)
    _with_agreement(nodes, validation)
    _with_steering(nodes, steering)
    links = display_links(circuit, nodes, tokenizer)
    task = circuit.task.to_dict()
    data: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "kind": "circuit",
        "title": title or f"circuit: {task.get('name', 'task')}",
        "generated_by": f"sparsecircuits {__version__}",
        "locations": [loc.alias for loc in node_locations()],
        "roles": {loc.alias: loc.role for loc in node_locations()},
        "task": task,
        "circuit": _circuit_summary(circuit),
        "geometry": _geometry(cfg, nodes),
        "nodes": nodes,
        "edges": [e.to_dict() for e in circuit.edges],
        "terminals": links["terminals"],
        "terminal_links": links["terminal_links"],
        "residual_links": links["residual_links"],
        "examples": [],
        "curve": [{"k": c["k"], "loss": c["loss"]} for c in circuit.curve],
        "curve_full": None,
        "attention": None,
        "class_positions": None,
        "validation": _validation_record(validation),
        "model": model_card(model, circuit.model.get("path"), training, circuit.model.get("fingerprint")),
        "notes": links["notes"],
    }
    if model is not None and tokenizer is not None:
        from sparsecircuits.report.nodes import add_model_details

        add_model_details(data, circuit, model, tokenizer, shards, n_pairs=n_pairs, n_examples=n_examples,
                          snippet_tokens=snippet_tokens, window=window, n_snippets=n_snippets, radius=radius,
                          seed=seed, progress=progress)
    return data


def find_circuits(folder: str | Path) -> list[Path]:
    """Circuit folders directly under `folder` (each holding circuit.json), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give a folder whose subfolders hold circuit.json")
    return sorted(p.parent for p in folder.glob(f"*/{CIRCUIT_FILE}"))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of RUN/metrics.jsonl (an empty list when the file is absent)."""
    file = Path(run_dir) / METRICS_FILE
    if not file.is_file():
        return []
    rows = []
    for number, line in enumerate(read_text(file, "fix or delete it").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{file} line {number} is not valid JSON ({exc}); fix or delete that line") from exc
    return rows


def kept_fraction(row: Mapping[str, Any]) -> float | None:
    """A metrics row's kept fraction as one number (mean over matrices when given per matrix)."""
    value = row.get("kept_fraction")
    if isinstance(value, Mapping):
        values = [float(v) for v in value.values() if isinstance(v, (int, float))]
        return sum(values) / len(values) if values else None
    return float(value) if isinstance(value, (int, float)) else None


def _series(rows: Sequence[Mapping[str, Any]], x: str, y: str) -> list[list[float]]:
    out = []
    for r in rows:
        xv = r.get(x)
        yv = kept_fraction(r) if y == "kept_fraction" else r.get(y)
        if isinstance(xv, (int, float)) and isinstance(yv, (int, float)) and math.isfinite(yv):
            out.append([float(xv), float(yv)])
    return out


def training_charts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chart specs (title, axis labels, lines of [x, y] points) for a run's metrics."""
    if not rows:
        return []
    x_loss = "tokens" if any("tokens" in r for r in rows) else "step"
    charts = [{
        "title": f"loss vs {x_loss}", "x_label": x_loss, "y_label": "loss (nats/token)",
        "lines": [{"label": "train", "points": _series(rows, x_loss, "train_loss")},
                  {"label": "validation", "points": _series(rows, x_loss, "val_loss")}],
    }]
    kept = _series(rows, "step", "kept_fraction")
    if kept:
        charts.append({"title": "kept fraction vs step", "x_label": "step", "y_label": "kept fraction of weights",
                       "lines": [{"label": "kept fraction", "points": kept}]})
    return charts


def build_run_data(run_dir: str | Path, circuits: Sequence[Mapping[str, Any]] = (), title: str | None = None) -> dict[str, Any]:
    """The data of a training run's page: model card, training curves and a circuits table."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() and not (run_dir / METRICS_FILE).is_file():
        raise InputError(f"--run {run_dir}: neither config.json nor {METRICS_FILE} there; give a training run folder")
    training = read_json(run_dir / "training.json", "regenerate the training record") if (run_dir / "training.json").is_file() else None
    model = None
    if (run_dir / "model.safetensors").is_file():
        from sparsecircuits.checkpoint import load_checkpoint

        model = load_checkpoint(run_dir).model
    rows = read_metrics(run_dir)
    card = model_card(model, run_dir, training)
    if "val_loss" not in card:
        vals = _series(rows, "step", "val_loss")
        if vals:
            card["val_loss"] = vals[-1][1]
    return {
        "format": REPORT_FORMAT,
        "kind": "run",
        "title": title or f"training run: {run_dir.name}",
        "generated_by": f"sparsecircuits {__version__}",
        "model": card,
        "training": {"charts": training_charts(rows), "n_records": len(rows)},
        "circuits": list(circuits),
    }


def circuit_index(reports: Sequence[tuple[dict[str, Any], str, str]]) -> list[dict[str, Any]]:
    """Index rows for (report data, href, name) triples."""
    return [index_entry(d, href, name) for d, href, name in reports]
