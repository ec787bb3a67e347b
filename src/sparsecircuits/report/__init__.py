"""Reports: one self-contained HTML file per circuit or training run, and static plots.

`build_report_data` gathers what a page shows into a JSON-ready dict, `render_report` turns
it into HTML (viewer script, style and data inline; no network), `write_report` writes it
atomically; `render_index` links several circuit reports and `compare_page` puts circuits
of one task side by side. `plots` draws PNG/SVG figures.
"""

from sparsecircuits.report.data import (
    build_report_data,
    build_run_data,
    display_links,
    find_circuits,
    load_validation,
    model_card,
    read_metrics,
)
from sparsecircuits.report.html import (
    compare_page,
    embed_json,
    index_entry,
    render_index,
    render_report,
    write_report,
)

__all__ = [
    "build_report_data",
    "build_run_data",
    "compare_page",
    "display_links",
    "embed_json",
    "find_circuits",
    "index_entry",
    "load_validation",
    "model_card",
    "read_metrics",
    "render_index",
    "render_report",
    "write_report",
]
