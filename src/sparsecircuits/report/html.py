"""Render report data dicts into one self-contained HTML file (script, style and data inline).

The page is the package's template with the viewer's CSS and JavaScript pasted in and the
data embedded as JSON in `<script type="application/json" id="data">`. The JSON is escaped
so that no string in it can close the script element, and the viewer renders every piece
of text with `textContent`. A Content-Security-Policy allows only the page's own script
and style (by hash), so the file loads nothing from anywhere, even if opened online.
`compare_page` makes the data of a page showing several circuits of one task side by side.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from sparsecircuits import __version__
from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.errors import InputError

REPORT_FORMAT = "sparsecircuits-report/1"
KINDS = ("circuit", "run", "index", "compare", "frontier")
_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")
# a failed check's value against its threshold: the opposite of the direction it passes in
_FAILED_AS = {"<=": ">", ">=": "<", "<": ">=", ">": "<=", "not reached or >": "<="}
# per-node and per-report fields a compare page does not show (they make up most of a report)
_HEAVY_NODE_FIELDS = ("acts", "token_acts", "class_acts", "snippet_groups", "snippets", "act_stats")
_HEAVY_FIELDS = ("attention", "examples", "class_positions")
_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _asset(name: str) -> str:
    return (resources.files("sparsecircuits.report") / "assets" / name).read_text(encoding="utf-8")


def _finite(obj: Any) -> Any:
    """Replace non-finite floats (which JSON cannot hold) by their names, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def embed_json(data: Any) -> str:
    """JSON text that is safe inside a `<script>` element: `<`, `>`, `&`, U+2028/9 escaped."""
    try:
        text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except TypeError as exc:
        raise InputError(f"report data is not JSON-serializable ({exc}); pass plain dicts, lists, str and numbers") from exc
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group(0)], text)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_report(data: dict[str, Any]) -> str:
    """The whole HTML page for a report data dict (kind 'circuit', 'run', 'index', 'compare' or
    'frontier', the last from `experiments.frontier_report.html_data`)."""
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise InputError("report data must be a dict with kind 'circuit', 'run', 'index', 'compare' or 'frontier'; "
                         "build it with build_report_data, compare_page or frontier_report.html_data")
    script, style = _asset("viewer.js"), _asset("viewer.css")
    for name, text, tag in (("viewer.js", script, "</script"), ("viewer.css", style, "</style")):
        if tag in text.lower():
            raise RuntimeError(f"report asset {name} contains {tag!r} and would break the page")
    # the hashed text is exactly what sits between the tags in template.html
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(chr(10) + script + chr(10))}; "
        f"style-src {_csp_hash(chr(10) + style + chr(10))}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    values = {
        "CSP": csp,
        "GENERATOR": html.escape(f"sparsecircuits {__version__}"),
        "TITLE": html.escape(str(data.get("title") or "sparsecircuits report")),
        "STYLE": style,
        "SCRIPT": script,
        "DATA": embed_json(data),
    }
    # one pass over the template: text inserted for one placeholder is never rescanned
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("template.html"))


def render_index(
    entries: list[dict[str, Any]], title: str = "sparsecircuits circuits", reuse: Mapping[str, dict] | None = None
) -> str:
    """An index page linking circuit reports.

    Each entry: name, href (relative), task, method, n_nodes, n_edges, losses, target_loss,
    validation (or None) and reason (the failed checks, or ""); `index_entry` builds one from a
    circuit report's data. `reuse` maps a model's label to its circuits' overlap matrices
    (`circuits.reuse_matrices`), which the page draws as heatmaps.
    """
    data = {"format": REPORT_FORMAT, "kind": "index", "title": title, "circuits": list(entries)}
    if reuse:
        data["reuse"] = dict(reuse)
    return render_report(data)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _versus(value: Any, threshold: Any, direction: Any) -> str:
    """'0.41 < 0.70': a failed check's value against its threshold, with the fewest decimals
    (2 to 6) that tell the two apart."""
    if not (_is_number(value) and _is_number(threshold)):
        return f"{'not computed' if value is None else value} vs {threshold}"
    for digits in range(2, 7):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b:
            break
    return f"{a} {_FAILED_AS.get(direction, 'vs')} {b}"


def failed_checks(validation: Mapping[str, Any] | None) -> str:
    """One line naming a validation's failed checks with their values, e.g.
    'fails activation_agreement (0.41 < 0.70)'; empty when every check passed or there is none.
    The viewer writes the same line beside a report's verdict (`failedChecks` in viewer.js)."""
    checks = ((validation or {}).get("verdict") or {}).get("checks") or []
    failed = [f"{c.get('name')} ({_versus(c.get('value'), c.get('threshold'), c.get('direction'))})"
              for c in checks if not c.get("passed", True)]
    return "fails " + ", ".join(failed) if failed else ""


def index_entry(data: dict[str, Any], href: str, name: str) -> dict[str, Any]:
    """The index row of a circuit report's data, linking to `href`; `reason` names the failed
    checks (the page links it to the report's validation section)."""
    circuit = data.get("circuit", {})
    return {
        "name": name,
        "href": href,
        "task": (data.get("task") or {}).get("name"),
        "method": (circuit.get("pruning") or {}).get("method", "masks"),
        "n_nodes": circuit.get("n_nodes"),
        "n_edges": circuit.get("n_edges"),
        "losses": circuit.get("losses") or {},
        "target_loss": circuit.get("target_loss"),
        "validation": data.get("validation"),
        "reason": failed_checks(data.get("validation")),
    }


def _light(data: Mapping[str, Any]) -> dict[str, Any]:
    """A circuit report's data without the heavy fields a compare page does not show."""
    light = {k: v for k, v in data.items() if k not in _HEAVY_FIELDS}
    light["nodes"] = [{k: v for k, v in n.items() if k not in _HEAVY_NODE_FIELDS} for n in data.get("nodes") or []]
    return light


def compare_page(sides: Sequence[Mapping[str, Any]], title: str, task: str) -> dict[str, Any]:
    """The data of a page comparing circuits of one task side by side (summaries and graphs).

    Each side: label, href (a relative link to its full report, or None) and data (a circuit
    report's data dict, as `build_report_data` makes it). Render it with `render_report`."""
    out = []
    for side in sides:
        data = side.get("data")
        if not isinstance(data, Mapping) or data.get("kind") != "circuit":
            raise InputError(f"compare side {side.get('label')!r}: data must be a circuit report's data (kind 'circuit')")
        out.append({"label": str(side.get("label", "")), "href": side.get("href"), "data": _light(data)})
    return {"format": REPORT_FORMAT, "kind": "compare", "title": title, "task": task, "sides": out}


def write_report(data: dict[str, Any], out_path: str | Path) -> Path:
    """Render `data` and write it atomically to `out_path`; returns the path."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out_path}: a report is an HTML file; give a name ending in .html")
    atomic_write_text(out_path, render_report(data))
    return out_path
