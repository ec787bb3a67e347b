"""The report of a frontier sweep (finished or partial): tables, matched-loss ratios, the
widening effect, a static plot and an offline HTML page.

It reads only `DIR/points/NAME/point.json` (and `DIR/sweep.json` for the planned points),
as `experiments.frontier` writes them, and never loads a model. Two kinds of circuits
are kept apart everywhere, never mixed in one figure:

- *all*: the chosen tasks' circuits that reached the target loss on the pruning pairs;
- *trusted* (the headline): the circuits that pass validation's sufficiency check on
  held-out pairs (`sufficient`).

A circuit with no edges cannot enter a geometric mean; it is counted as `n_empty`.
See docs/frontier.md, "The report".
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecircuits.atomic import atomic_file, atomic_write_text
from sparsecircuits.errors import InputError
from sparsecircuits.experiments.demo import geometric_mean
from sparsecircuits.experiments.frontier import POINT_FILE, POINT_FORMAT
from sparsecircuits.jsonio import read_json
from sparsecircuits.report.html import REPORT_FORMAT as PAGE_FORMAT
from sparsecircuits.report.html import write_report

REPORT_FORMAT = "sparsecircuits-frontier-report/1"
OUTSIDE = "outside the dense points' loss range"
NONZERO_TOLERANCE = 0.05  # points whose nonzeros differ by at most this share have "equal nonzeros"
MODES = {"trusted": "passes sufficiency on held-out pairs", "all": "meets the target loss"}
PLOT_FORMATS = ("png", "svg")
_REMEDY = "delete it and run `sparsecircuits frontier run` again to evaluate the point"


# ---------- reading the sweep ----------
def _read_point(file: Path) -> dict[str, Any]:
    """One point.json, checked for its format and the fields every point has."""
    point = read_json(file, _REMEDY)
    if not isinstance(point, dict) or point.get("format") != POINT_FORMAT:
        raise InputError(f"{file} is not a frontier point (format {POINT_FORMAT!r}); {_REMEDY}")
    for key in ("name", "kind", "family"):
        if not isinstance(point.get(key), str):
            raise InputError(f"{file}: field {key!r} is missing or not a string; {_REMEDY}")
    return point


def _order(point: Mapping[str, Any]) -> tuple:
    loss = point.get("val_loss")
    return (point["family"], not _positive(loss), loss if _positive(loss) else 0.0, point["name"])


def load_points(dir: str | Path) -> list[dict[str, Any]]:
    """Every DIR/points/NAME/point.json, sorted by family then validation loss.

    A sweep folder without any point yet gives []; a path that is no sweep folder, or a
    point.json that cannot be read, is an InputError naming the file."""
    root = Path(dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the output folder of `sparsecircuits frontier run`")
    folder = root / "points"
    if not folder.is_dir() and not (root / "sweep.json").is_file():
        raise InputError(f"{root} is not a frontier sweep folder (no points/ and no sweep.json); "
                         "give the output folder of `sparsecircuits frontier run`")
    files = sorted(f for f in folder.glob(f"*/{POINT_FILE}") if f.is_file()) if folder.is_dir() else []
    return sorted((_read_point(f) for f in files), key=_order)


def missing_points(dir: str | Path, points: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """What a partial sweep lacks: planned points (sweep.json, or folders under points/)
    without a point.json, and chosen tasks without a circuit."""
    root = Path(dir)
    have = {p["name"] for p in points}
    planned: list[str] = []
    if (root / "sweep.json").is_file():
        sweep = read_json(root / "sweep.json", "run `sparsecircuits frontier run` again to rewrite it")
        planned = [str(n) for n in (sweep.get("points") or [])] if isinstance(sweep, dict) else []
    if (root / "points").is_dir():
        planned += sorted(d.name for d in (root / "points").iterdir() if d.is_dir() and not d.name.startswith("."))
    absent = list(dict.fromkeys(n for n in planned if n not in have))
    out_points = [{"name": n, "reason": "not evaluated yet (no point.json)"} for n in absent]
    out_circuits = []
    for p in points:
        if p.get("tasks") is None:
            out_circuits.append({"point": p["name"], "task": None, "reason": "no tasks chosen yet: circuits not made"})
            continue
        for task in p["tasks"]:
            if task not in (p.get("circuits") or {}):
                out_circuits.append({"point": p["name"], "task": task, "reason": "circuit not made yet"})
    return {"points": out_points, "circuits": out_circuits}


# ---------- per point ----------
def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _failed(c: Mapping[str, Any]) -> bool:
    """Did the circuit fail any verdict check (suspect or insufficient)?"""
    return bool(c.get("failed_checks")) or c.get("verdict") in ("suspect", "insufficient")


def _usable(c: Mapping[str, Any] | None, mode: str) -> bool:
    """Does the circuit count in `mode` ('trusted': passes sufficiency; 'all': met the target)?"""
    if not c or not _positive(c.get("n_edges")):
        return False
    return bool(c.get("sufficient")) if mode == "trusted" else bool(c.get("target_met"))


def _circuits(point: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The point's circuits of its chosen tasks (others are ignored)."""
    circuits = point.get("circuits") or {}
    return {t: circuits[t] for t in (point.get("tasks") or []) if isinstance(circuits.get(t), dict)}


def edges_by_task(point: Mapping[str, Any], mode: str) -> dict[str, int]:
    """Edge counts of the point's circuits that count in `mode`, by task."""
    return {t: c["n_edges"] for t, c in _circuits(point).items() if _usable(c, mode)}


def _task_cell(c: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("n_nodes", "n_edges", "target_met", "sufficient", "verdict", "failed_checks", "report")
    return {**{k: c.get(k) for k in keys}, "failed": _failed(c)}


def point_row(point: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the points table: the point's settings, losses, circuit counts and the
    two geometric means of edges, each with the number of tasks it covers."""
    circuits = _circuits(point)
    all_, trusted = edges_by_task(point, "all"), edges_by_task(point, "trusted")
    row = {k: point.get(k) for k in ("name", "family", "kind", "expansion", "d_model", "target_density", "afrac",
                                      "nonzeros", "tokens", "val_loss")}
    row.update({
        "n_tasks": len(point.get("tasks") or []),
        "n_circuits": len(circuits),
        "n_target_met": sum(bool(c.get("target_met")) for c in circuits.values()),
        "n_sufficient": sum(bool(c.get("sufficient")) for c in circuits.values()),
        "n_failed": sum(_failed(c) for c in circuits.values()),
        "n_insufficient": sum(c.get("sufficient") is False for c in circuits.values()),
        "n_empty": sum(not _positive(c.get("n_edges")) for c in circuits.values()),
        "geomean_edges_all": geometric_mean(list(all_.values())),
        "n_tasks_all": len(all_),
        "geomean_edges_sufficient": geometric_mean(list(trusted.values())),
        "n_tasks_sufficient": len(trusted),
        "edges": {t: _task_cell(c) for t, c in circuits.items()},
    })
    row["failed"] = row["n_failed"] > 0
    return row


def frontier_table(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The points table: the tasks chosen for circuits (in first-seen order) and a row per point."""
    tasks = list(dict.fromkeys(t for p in points for t in (p.get("tasks") or [])))
    return {"tasks": tasks, "rows": [point_row(p) for p in points]}


# ---------- dense/sparse ratio at matched loss ----------
def _dense(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((p for p in points if p.get("kind") == "dense" and _positive(p.get("val_loss"))),
                  key=lambda p: p["val_loss"])


def bracket(dense: Sequence[Mapping[str, Any]], loss: float) -> tuple[Mapping, Mapping, float] | None:
    """The two dense points (sorted by loss) whose losses bracket `loss`, and the weight of
    the upper one in log(loss); None outside their range (no extrapolation)."""
    if not dense or not dense[0]["val_loss"] <= loss <= dense[-1]["val_loss"]:
        return None
    for lo, hi in zip(dense, dense[1:], strict=False):
        if lo["val_loss"] <= loss <= hi["val_loss"]:
            span = math.log(hi["val_loss"]) - math.log(lo["val_loss"])
            return lo, hi, (math.log(loss) - math.log(lo["val_loss"])) / span if span > 0 else 0.0
    return dense[0], dense[0], 0.0


def interpolate_log(lo: float, hi: float, weight: float) -> float:
    """exp((1 - w) log lo + w log hi): linear interpolation in log space."""
    return math.exp((1 - weight) * math.log(lo) + weight * math.log(hi))


def _task_ratio(task: str, sparse: Mapping, lo: Mapping, hi: Mapping, w: float, mode: str) -> tuple[float | None, str]:
    """Interpolated dense edges / sparse edges of one task, or None and why."""
    s = edges_by_task(sparse, mode).get(task)
    if s is None:
        return None, f"the sparse circuit does not count (it must exist and {MODES[mode]})"
    d_lo, d_hi = edges_by_task(lo, mode).get(task), edges_by_task(hi, mode).get(task)
    if d_lo is None or d_hi is None:
        which = lo["name"] if d_lo is None else hi["name"]
        return None, f"the dense circuit of {which} does not count (it must exist and {MODES[mode]})"
    return interpolate_log(d_lo, d_hi, w) / s, ""


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else None


def _matched_mode(point: Mapping, found: tuple | None, mode: str, reason: str | None) -> dict[str, Any]:
    """The per-task and geomean matched ratio of one sparse point, in one mode (`reason`:
    why there is no bracket, when `found` is None)."""
    per_task: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for task in point.get("tasks") or []:
        ratio, why = _task_ratio(task, point, *found, mode) if found else (None, reason or OUTSIDE)
        per_task[task] = ratio
        if why:
            reasons[task] = why
    good = [r for r in per_task.values() if r is not None]
    return {"geomean_ratio": geometric_mean(good), "n_tasks": len(good), "per_task": per_task,
            "reasons": reasons, "spread": _spread(good)}


def _matched_point(point: Mapping, dense: Sequence[Mapping]) -> dict[str, Any]:
    loss = point.get("val_loss")
    found = bracket(dense, loss) if _positive(loss) else None
    reason = None
    if not dense:
        reason = "no dense point with a validation loss"
    elif not found:
        reason = OUTSIDE if _positive(loss) else "no validation loss"
    out = {"name": point["name"], "family": point["family"], "val_loss": loss, "reason": reason,
           "bracket": {"lower": found[0]["name"], "upper": found[1]["name"], "weight": found[2]} if found else None}
    for mode in MODES:
        out[mode] = _matched_mode(point, found, mode, reason)
    return out


def _family_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    families: dict[str, Any] = {}
    for fam in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == fam]
        families[fam] = {mode: {"geomean_ratio": geometric_mean([r[mode]["geomean_ratio"] for r in mine
                                                                 if r[mode]["geomean_ratio"] is not None]),
                                "n_points": sum(r[mode]["geomean_ratio"] is not None for r in mine),
                                "points_total": len(mine)} for mode in MODES}
    return families


def _family_statement(fam: str, s: Mapping[str, Any]) -> str:
    t, a = s["trusted"], s["all"]
    if t["geomean_ratio"] is None:
        head = f"{fam}: no matched ratio from trusted circuits (0 of {t['points_total']} point(s); the ratios table says why)"
    else:
        head = (f"{fam}: at matched loss, dense circuits have {t['geomean_ratio']:.2f}x the edges of sparse ones "
                f"(trusted circuits; geomean over {t['n_points']} of {t['points_total']} point(s))")
    tail = f"{a['geomean_ratio']:.2f}x over all circuits that met the target" if a["geomean_ratio"] else "none over all circuits"
    return f"{head}; {tail} ({a['n_points']} point(s))"


def matched_ratios(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per sparse point, dense/sparse edges at its validation loss: each task's dense edges
    are interpolated linearly in log(edges) against log(val_loss) between the two dense
    points that bracket it (None outside their range); the geomean ratio is the geomean of
    the per-task ratios, with their spread. 'trusted' and 'all' circuits kept apart; a
    per-family geomean of the points' ratios."""
    dense = _dense(points)
    rows = [_matched_point(p, dense) for p in points if p.get("kind") == "sparse"]
    families = _family_summary(rows)
    return {"dense_points": [p["name"] for p in dense], "points": rows, "families": families,
            "statements": [_family_statement(f, s) for f, s in families.items()]}


# ---------- widening at equal nonzeros ----------
def _equal_nonzeros(a: Mapping, b: Mapping) -> str | None:
    """How two points match in nonzero weights ('nonzeros' within 5%, or, when a count is
    missing, the same target_density: the sweep's kept fraction at width x1, i.e. the
    model's own density times expansion squared), or None."""
    na, nb = a.get("nonzeros"), b.get("nonzeros")
    if _positive(na) and _positive(nb):
        return "nonzeros" if abs(na - nb) <= NONZERO_TOLERANCE * max(na, nb) else None
    ka, kb = a.get("target_density"), b.get("target_density")
    return "target_density" if _positive(ka) and _positive(kb) and math.isclose(ka, kb, rel_tol=1e-9) else None


def _edge_ratio(narrow: Mapping, wide: Mapping, mode: str) -> tuple[float | None, int]:
    """Geomean over the tasks both count in `mode` of wide/narrow edges, and how many tasks."""
    a, b = edges_by_task(narrow, mode), edges_by_task(wide, mode)
    common = [t for t in a if t in b]
    return geometric_mean([b[t] / a[t] for t in common]), len(common)


def _verdict(d_loss: float, ratio: float) -> tuple[bool, str]:
    better, fewer = d_loss < 0, ratio < 1
    if better and fewer:
        return True, "lower-left (better loss and fewer edges)"
    if better:
        return False, "better loss, but more edges"
    return False, "fewer edges, but worse loss" if fewer else "upper-right (worse loss and more edges)"


def _pair(narrow: Mapping, wide: Mapping, matched_by: str) -> dict[str, Any]:
    ratio, n = _edge_ratio(narrow, wide, "trusted")
    ratio_all, n_all = _edge_ratio(narrow, wide, "all")
    la, lb = narrow.get("val_loss"), wide.get("val_loss")
    out = {"narrow": narrow["name"], "wide": wide["name"], "matched_by": matched_by,
           "expansion": [narrow.get("expansion"), wide.get("expansion")],
           "nonzeros": [narrow.get("nonzeros"), wide.get("nonzeros")], "val_loss": [la, lb],
           "loss_change": lb - la if _positive(la) and _positive(lb) else None,
           "edge_ratio": ratio, "n_tasks": n, "edge_ratio_all": ratio_all, "n_tasks_all": n_all}
    if out["loss_change"] is None or ratio is None:
        out.update(lower_left=None, verdict="not comparable: a validation loss or common trusted circuits are missing")
    else:
        out["lower_left"], out["verdict"] = _verdict(out["loss_change"], ratio)
    out["statement"] = _pair_statement(out)
    return out


def _pair_statement(p: Mapping[str, Any]) -> str:
    head = f"{p['wide']} (x{p['expansion'][1]}) vs {p['narrow']} (x{p['expansion'][0]})"
    if p["lower_left"] is None:
        return f"{head}: {p['verdict']}"
    la, lb = p["val_loss"]
    return (f"{head}: val loss {lb:.4f} vs {la:.4f} ({p['loss_change']:+.4f} nats/token), "
            f"{p['edge_ratio']:.2f}x the edges (geomean over {p['n_tasks']} trusted task(s)): {p['verdict']}")


def widening_effect(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pairs of points of one kind and afrac, equal nonzeros and different expansion: is the
    wider one lower-left (lower val loss AND fewer edges), and by how much."""
    pairs = []
    for i, a in enumerate(points):
        for b in points[i + 1:]:
            if a.get("kind") != b.get("kind") or a.get("afrac") != b.get("afrac"):
                continue
            ea, eb = a.get("expansion"), b.get("expansion")
            if not (_positive(ea) and _positive(eb)) or ea == eb:
                continue
            how = _equal_nonzeros(a, b)
            if how:
                narrow, wide = (a, b) if ea < eb else (b, a)
                pairs.append(_pair(narrow, wide, how))
    judged = [p for p in pairs if p["lower_left"] is not None]
    if not pairs:
        statement = "no comparable pairs (no two points of one kind with equal nonzeros and different widths)"
    else:
        statement = (f"At equal nonzeros, the wider model is lower-left (better loss and fewer edges) in "
                     f"{sum(p['lower_left'] for p in judged)} of {len(judged)} comparable pair(s)")
        if len(judged) < len(pairs):
            statement += f"; {len(pairs) - len(judged)} pair(s) lack a loss or common trusted circuits"
    return {"pairs": pairs, "n_pairs": len(judged), "n_lower_left": sum(bool(p["lower_left"]) for p in judged),
            "statement": statement}


# ---------- circuit reuse ----------
def _off_diagonal_mean(matrix: Any) -> float | None:
    values = [v for i, row in enumerate(matrix or []) for j, v in enumerate(row or [])
              if i != j and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else None


def reuse_summary(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per point with reuse matrices: the mean off-diagonal node and edge Jaccard of its circuits."""
    out = []
    for p in points:
        r = p.get("reuse")
        if isinstance(r, dict) and r.get("tasks"):
            out.append({"name": p["name"], "family": p["family"], "n_tasks": len(r["tasks"]),
                        "mean_node_jaccard": _off_diagonal_mean(r.get("node_jaccard")),
                        "mean_edge_jaccard": _off_diagonal_mean(r.get("edge_jaccard"))})
    return out


def frontier_data(dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, JSON-ready (what frontier.json holds)."""
    points = load_points(dir)
    return {"format": REPORT_FORMAT, "dir": str(dir), "table": frontier_table(points),
            "matched": matched_ratios(points), "widening": widening_effect(points),
            "reuse": reuse_summary(points), "missing": missing_points(dir, points),
            "reuse_matrices": {p["name"]: p["reuse"] for p in points if isinstance(p.get("reuse"), dict)}}


# ---------- Markdown ----------
def _n(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3g}"
    return str(x)


def _g(x: Any) -> str:
    return "–" if x is None else f"{x:g}"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def _edges_text(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{t} {c['n_edges']}{'*' if c['failed'] else ''}" for t, c in row["edges"].items()) or "–"


def _md_points(table: Mapping[str, Any]) -> list[str]:
    heads = ["point", "family", "x", "target density", "afrac", "nonzeros", "val loss", "tasks",
             "geomean edges (sufficient)", "n", "geomean edges (all)", "n", "failed", "insufficient", "edges per task"]
    rows = [[r["name"], r["family"], r["expansion"], _g(r["target_density"]), _g(r["afrac"]), _n(r["nonzeros"]),
             _n(r["val_loss"]), r["n_tasks"], _n(r["geomean_edges_sufficient"], 1), r["n_tasks_sufficient"],
             _n(r["geomean_edges_all"], 1), r["n_tasks_all"], r["n_failed"], r["n_insufficient"], _edges_text(r)]
            for r in table["rows"]]
    return ["## Points", "", *_md_table(heads, rows), "",
            "`*`: the circuit failed a verdict check. Sufficient: circuits that pass sufficiency on held-out "
            "pairs (the trusted figure); all: circuits that met the target on the pruning pairs.", ""]


def _ratio_text(m: Mapping[str, Any]) -> str:
    return f"{m['geomean_ratio']:.2f}x ({m['n_tasks']})" if m["geomean_ratio"] else "–"


def _md_matched(matched: Mapping[str, Any]) -> list[str]:
    heads = ["point", "family", "val loss", "dense bracket", "ratio, trusted (tasks)", "min", "median", "max",
             "ratio, all (tasks)", "per task (trusted)", "note"]
    rows = []
    for r in matched["points"]:
        t, sp = r["trusted"], r["trusted"]["spread"] or {}
        br = f"{r['bracket']['lower']} – {r['bracket']['upper']}" if r["bracket"] else "–"
        per = ", ".join(f"{k} {_n(v, 2)}" for k, v in t["per_task"].items()) or "–"
        rows.append([r["name"], r["family"], _n(r["val_loss"]), br, _ratio_text(t), _n(sp.get("min"), 2),
                     _n(sp.get("median"), 2), _n(sp.get("max"), 2), _ratio_text(r["all"]), per, r["reason"] or ""])
    lines = ["## Dense/sparse edges at matched loss", "", *_md_table(heads, rows), ""]
    return lines + [f"- {s}" for s in matched["statements"]] + [""]


def frontier_markdown(data: Mapping[str, Any]) -> str:
    """The Markdown report: points, matched ratios, widening, reuse, missing, plot note."""
    lines = ["# Frontier report", "", f"Sweep folder: `{data['dir']}`.", ""]
    lines += _md_points(data["table"]) + _md_matched(data["matched"])
    lines += ["## Widening at equal nonzeros", "", data["widening"]["statement"] + ".", ""]
    lines += [f"- {p['statement']}" for p in data["widening"]["pairs"]] + [""]
    lines += ["## Circuit reuse", ""]
    lines += _md_table(["point", "tasks", "mean node Jaccard (off-diagonal)", "mean edge Jaccard (off-diagonal)"],
                       [[r["name"], r["n_tasks"], _n(r["mean_node_jaccard"], 3), _n(r["mean_edge_jaccard"], 3)]
                        for r in data["reuse"]]) if data["reuse"] else ["No point has reuse matrices (two or more circuits)."]
    miss = data["missing"]
    lines += ["", "## Missing", ""]
    lines += [f"- point {m['name']}: {m['reason']}" for m in miss["points"]]
    lines += [f"- {m['point']}{' / ' + m['task'] if m['task'] else ''}: {m['reason']}" for m in miss["circuits"]]
    if not (miss["points"] or miss["circuits"]):
        lines.append("Nothing: every planned point and circuit is there.")
    lines += ["", "## Plot", "", data.get("plot_note") or "![frontier](frontier.png)", ""]
    return "\n".join(lines)


# ---------- plot ----------
def _family_series(rows: Sequence[Mapping[str, Any]], y: Any) -> dict[str, list[tuple[float, float, bool]]]:
    """Per family, (val_loss, y(row), failed) of the rows where both are positive, by loss."""
    out: dict[str, list[tuple[float, float, bool]]] = {}
    for r in rows:
        value = y(r)
        if _positive(r["val_loss"]) and value is not None and _positive(value[0]):
            out.setdefault(r["family"], []).append((r["val_loss"], value[0], value[1]))
    return {f: sorted(pts) for f, pts in out.items()}


def _log_labels(ax: Any, ys: Sequence[float]) -> None:
    """Plain numbers on a log y axis (100, not 10^2), with 2 and 5 multiples labelled too
    when the values span under two decades."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if ys and max(ys) / min(ys) < 100:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _draw(ax: Any, series: Mapping[str, Sequence[tuple[float, float, bool]]], colors: Mapping[str, str]) -> None:
    """One line per family, a marker per point: filled, or hollow when a circuit failed a check."""
    for fam, pts in series.items():
        c = colors[fam]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=c, linewidth=1.2, label=fam)
        for x, y, failed in pts:
            ax.plot([x], [y], "o", color=c, markerfacecolor="white" if failed else c, markersize=6)
    ax.set_yscale("log")
    _log_labels(ax, [p[1] for pts in series.values() for p in pts])
    ax.grid(alpha=0.3, which="both")


def _task_value(task: str) -> Any:
    def get(r: Mapping[str, Any]) -> tuple[int, bool] | None:
        c = r["edges"].get(task)
        return (c["n_edges"], c["failed"]) if c and c.get("target_met") else None
    return get


def plot_frontier(data: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """frontier.png and .svg: trusted geomean edges (log y) vs val loss per family, hollow
    markers for points with a failed circuit, and a small panel per task."""
    from sparsecircuits.report.plots import _pyplot

    plt, rows, tasks = _pyplot(), data["table"]["rows"], data["table"]["tasks"]
    families = list(dict.fromkeys(r["family"] for r in rows))
    colors = {f: f"C{i % 10}" for i, f in enumerate(families)}
    ncol = max(1, min(4, len(tasks)))
    nrow = 1 + math.ceil(len(tasks) / ncol) if tasks else 1
    fig = plt.figure(figsize=(max(8.0, 3.2 * ncol), 4.4 + 2.6 * (nrow - 1)))
    try:
        grid = fig.add_gridspec(nrow, ncol, height_ratios=[1.6] + [1] * (nrow - 1))
        ax = fig.add_subplot(grid[0, :])
        _draw(ax, _family_series(rows, lambda r: (r["geomean_edges_sufficient"], r["failed"])), colors)
        ax.set(title="geomean edges of trusted circuits vs validation loss",
               xlabel="validation loss (nats/token)", ylabel="geomean edges")
        if families:
            ax.plot([], [], "o", color="gray", markerfacecolor="white", label="hollow: a circuit failed a check")
            ax.legend(fontsize=8)
        for i, task in enumerate(tasks):
            sub = fig.add_subplot(grid[1 + i // ncol, i % ncol])
            _draw(sub, _family_series(rows, _task_value(task)), colors)
            sub.set_title(task, fontsize=8)
            sub.tick_params(labelsize=7, which="both")
        fig.tight_layout()
        return _save_figure(fig, Path(out_dir), "frontier")
    finally:
        plt.close(fig)


def _save_figure(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    """Each format written to a temporary name beside its target, then renamed into place."""
    paths = []
    for fmt in PLOT_FORMATS:
        final = out_dir / f"{stem}.{fmt}"
        with atomic_file(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(final)
    return paths


# ---------- everything ----------
def _have_matplotlib() -> bool:
    """Is the optional extra `plots` (matplotlib) installed?"""
    return importlib.util.find_spec("matplotlib") is not None


def html_data(data: Mapping[str, Any], title: str) -> dict[str, Any]:
    """The viewer's data for the frontier page (`render_report` kind 'frontier')."""
    page = {k: v for k, v in data.items() if k != "reuse_matrices"}
    return {"format": PAGE_FORMAT, "kind": "frontier", "title": title, "frontier": page,
            "reuse": dict(data.get("reuse_matrices") or {})}


def write_frontier_report(dir: str | Path) -> dict[str, Path]:
    """Write DIR/frontier.json, .md, .png and .svg (when matplotlib is installed) and .html,
    each atomically; returns the paths by format."""
    root = Path(dir)
    data = frontier_data(root)
    paths: dict[str, Path] = {}
    if not _have_matplotlib():
        data["plot_note"] = ("frontier.png and frontier.svg were not written: matplotlib is not installed "
                             "(pip install 'sparsecircuits[plots]'); the HTML page draws the same chart.")
    else:
        paths.update(zip(PLOT_FORMATS, plot_frontier(data, root), strict=True))
    paths["json"] = root / "frontier.json"
    atomic_write_text(paths["json"], json.dumps(data, indent=1) + "\n")
    paths["md"] = root / "frontier.md"
    atomic_write_text(paths["md"], frontier_markdown(data))
    paths["html"] = write_report(html_data(data, f"frontier: {root.resolve().name}"), root / "frontier.html")
    return paths
