"""Render report data dicts into one self-contained HTML file (script, style and data inline).

The page is the package's template with the viewer's CSS and JavaScript pasted in and the
data embedded as JSON in `<script type="application/json" id="data">`. The JSON is escaped
so that no string in it can close the script element, and the viewer renders every piece
of text with `textContent`. A Content-Security-Policy allows only the page's own script
and style (by hash), so the file loads nothing from anywhere, even if opened online.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from sparsecircuits import __version__
from sparsecircuits.atomic import atomic_write_text
from sparsecircuits.errors import InputError

REPORT_FORMAT = "sparsecircuits-report/1"
_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")
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
    """The whole HTML page for a report data dict (kind 'circuit', 'run' or 'index')."""
    if not isinstance(data, dict) or data.get("kind") not in ("circuit", "run", "index"):
        raise InputError("report data must be a dict with kind 'circuit', 'run' or 'index'; build it with build_report_data")
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


def render_index(entries: list[dict[str, Any]], title: str = "sparsecircuits circuits") -> str:
    """An index page linking circuit reports.

    Each entry: name, href (relative), task, method, n_nodes, n_edges, losses, target_loss and
    validation (or None); `index_entry` builds one from a circuit report's data.
    """
    return render_report({"format": REPORT_FORMAT, "kind": "index", "title": title, "circuits": list(entries)})


def index_entry(data: dict[str, Any], href: str, name: str) -> dict[str, Any]:
    """The index row of a circuit report's data, linking to `href`."""
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
    }


def write_report(data: dict[str, Any], out_path: str | Path) -> Path:
    """Render `data` and write it atomically to `out_path`; returns the path."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out_path}: a report is an HTML file; give a name ending in .html")
    atomic_write_text(out_path, render_report(data))
    return out_path
