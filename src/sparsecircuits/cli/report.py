"""`sparsecircuits report`: self-contained HTML reports of circuits and training runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sparsecircuits.cli.common import (
    MODEL_HELP,
    add_command,
    add_device,
    add_force,
    model_path,
    positive_int,
    resolve_device,
)
from sparsecircuits.errors import InputError
from sparsecircuits.outputs import FILE, check_out


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` command."""
    p = add_command(
        subparsers,
        "report",
        raw=True,
        help="write an HTML report of a circuit, a folder of circuits or a training run",
        description=(
            "Write one self-contained HTML file (script, style and data inline; opens offline\n"
            "from disk). --circuit: the circuit graph, per-node details, task examples, loss vs\n"
            "k, validation and model card. --circuits: one report per circuit folder, written\n"
            "beside --out, and an index at --out. --run: model card, training curves and the\n"
            "circuits under RUN/circuits/. Per-node details need the model: it is taken from\n"
            "--model or the circuit's recorded model path; pretraining snippets and mean\n"
            "ablation values also need the corpus (--data, or the one named in training.json)."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--circuit", metavar="DIR", help="a circuit folder (circuit.json)")
    src.add_argument("--circuits", metavar="DIR", help="a folder of circuit folders")
    src.add_argument("--run", metavar="DIR", help="a training run / checkpoint folder")
    p.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    add_force(p, "a file (and, with --circuits, the reports beside it)")
    p.add_argument("--model", metavar="RUN",
                   help=MODEL_HELP + "; the circuits' model (default: the one each circuit records)")
    p.add_argument("--no-model", action="store_true", help="do not load any model (no per-node details)")
    add_device(p)
    p.add_argument("--data", metavar="CORPUS_DIR",
                   help="corpus folder for snippets and mean ablation values (default: the model's)")
    p.add_argument("--plots", metavar="DIR", help="also write PNG and SVG plots to DIR (default: no plots)")
    p.add_argument("--pairs", type=positive_int, default=32, metavar="N", help="task pairs for per-node details")
    p.add_argument("--snippet-tokens", type=positive_int, default=131_072, metavar="N",
                   help="validation tokens whose activations give each node's snippets at quantiles "
                        "(default: 131072, or the whole split when it is shorter)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)


class _Models:
    """Checkpoints loaded once per path, with their corpus."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loaded: dict[Path, Any] = {}

    def for_circuit(self, circuit_model: dict[str, Any]) -> tuple[Any, Any, Any, dict | None]:
        """(model, tokenizer, shards, training) for a circuit, or Nones when unavailable."""
        if self.args.no_model:
            return None, None, self.args.data, None
        spec = self.args.model or circuit_model.get("path")
        if not spec:
            print("note: the circuit records no model path; per-node details not computed (use --model RUN)",
                  file=sys.stderr)
            return None, None, self.args.data, None
        path = model_path(spec)
        if not path.is_dir():
            given = f"--model {spec}" if self.args.model else f"the circuit's model {spec}"
            raise InputError(f"{given} is not a checkpoint folder; pass --model RUN, or --no-model for a report "
                             "without per-node details")
        if path not in self.loaded:
            from sparsecircuits.checkpoint import load_checkpoint

            ckpt = load_checkpoint(path, device=resolve_device(self.args.device))
            if ckpt.tokenizer is None:
                print(f"note: {path} has no tokenizer.json; per-node details not computed", file=sys.stderr)
            data = ckpt.open_corpus(self.args.data)
            self.loaded[path] = (ckpt.model, ckpt.tokenizer, data, ckpt.training)
        return self.loaded[path]


def _circuit_data(folder: Path, models: _Models, args: argparse.Namespace) -> dict[str, Any]:
    from sparsecircuits.circuits import Circuit
    from sparsecircuits.report.data import build_report_data, load_validation

    circuit = Circuit.load(folder)
    model, tokenizer, shards, training = models.for_circuit(circuit.model)
    return build_report_data(circuit, model, tokenizer, shards, load_validation(folder), training=training,
                             n_pairs=args.pairs, snippet_tokens=args.snippet_tokens, progress=not args.no_progress)


def _write_circuits(folders: list[Path], out: Path, models: _Models, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Write one report per circuit folder beside `out`; returns the index entries."""
    from tqdm.auto import tqdm

    from sparsecircuits.report.html import index_entry, write_report
    from sparsecircuits.report.plots import plot_curve

    entries = []
    for folder in tqdm(folders, desc="circuit reports", unit="report", disable=args.no_progress or len(folders) < 2):
        data = _circuit_data(folder, models, args)
        page = write_report(data, out.parent / f"circuit-{folder.name}.html")
        print(f"wrote {page}", file=sys.stderr)
        if args.plots and data["curve"]:
            plot_curve(folder, Path(args.plots) / folder.name)
        entries.append(index_entry(data, page.name, folder.name))
    return entries


def _reuse_by_model(folders: list[Path]) -> dict[str, Any]:
    """Circuit reuse matrices of the folders' circuits, one per model with at least two
    circuits (keyed by the model's folder name and fingerprint)."""
    from sparsecircuits.circuits import Circuit, reuse_matrices

    groups: dict[str, dict[str, Any]] = {}
    for folder in folders:
        circuit = Circuit.load(folder)
        model = circuit.model
        label = f"{Path(str(model.get('path') or 'model')).name} ({str(model.get('fingerprint') or '?')[:8]})"
        groups.setdefault(label, {})[folder.name] = circuit
    return {label: reuse_matrices(group) for label, group in groups.items() if len(group) >= 2}


def _run(args: argparse.Namespace) -> int:
    from sparsecircuits.report.data import build_run_data, find_circuits
    from sparsecircuits.report.html import render_index, write_report
    from sparsecircuits.report.plots import plot_curve, plot_training

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out}: a report is an HTML file; give a name ending in .html")
    check_out(out, FILE, args.force)
    models = _Models(args)
    written = [out]
    if args.circuit:
        data = _circuit_data(Path(args.circuit), models, args)
        write_report(data, out)
        if args.plots and data["curve"]:
            written += plot_curve(args.circuit, args.plots)
        for note in data["notes"]:
            print(f"note: {note}", file=sys.stderr)
    elif args.circuits:
        folders = find_circuits(args.circuits)
        if not folders:
            raise InputError(f"--circuits {args.circuits}: no subfolder holds a circuit.json")
        entries = _write_circuits(folders, out, models, args)
        from sparsecircuits.atomic import atomic_write_text

        atomic_write_text(out, render_index(entries, title=f"circuits in {Path(args.circuits).name}",
                                            reuse=_reuse_by_model(folders)))
    else:
        run = Path(args.run)
        circuits_dir = run / "circuits"
        folders = find_circuits(circuits_dir) if circuits_dir.is_dir() else []
        if args.model is None and not args.no_model and (run / "model.safetensors").is_file():
            args.model = str(run)
        entries = _write_circuits(folders, out, models, args)
        write_report(build_run_data(run, entries), out)
        if args.plots:
            written += plot_training(run, args.plots)
    print(f"wrote {written[0]} (open it in a browser; it needs no network)", file=sys.stderr)
    for path in written:
        print(path)
    return 0
