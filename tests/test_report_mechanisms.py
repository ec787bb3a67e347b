"""The viewer shows mechanisms: on the hand-built model of planted_model.py (head 0 reads
the marker at position 0 from END and copies its sign through value channel 0), a real
report in Debian's chromium shows the value channel's heatmap differing between classes
at the marker only, the attention view shows head 0 attending from END to the marker,
no element is wider than a 1400 px viewport, and the index says why a circuit fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from planted_model import PLANTED_NODES, MarkerTask, circuit_from_nodes, planted_model
from sparsecircuits.prune import PruneConfig
from sparsecircuits.report import build_report_data, index_entry, render_index, write_report
from sparsecircuits.tasks.base import add_task, registered_tasks
from sparsecircuits.validate import validate
from test_report_browser import Page, browser  # noqa: F401  (the module's browser fixture)

pytestmark = [pytest.mark.browser]

TASK = "planted_marker_report"
ZERO = PruneConfig(ablation="zero", locations=("attn_in", "attn_q", "attn_k", "attn_v", "attn_out"))
VALUE = "blocks.0.attn.hook_v:0"


class Tokens:
    """A tokenizer for the planted vocabulary (decode only: the task builds token ids)."""

    names = ("pad", "m1", "m2", "END", "X", "Y", "f6", "f7", "f8", "f9")

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return " ".join(self.names[i] for i in ids)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The planted circuit's report, and an index of it beside one without the query node."""
    task = MarkerTask(TASK)
    if TASK not in registered_tasks():
        add_task(task)
    model, root = planted_model(), tmp_path_factory.mktemp("mechanisms")
    entries, paths = [], {}
    broken = {**PLANTED_NODES, "attn_q": []}
    for name, nodes in (("planted", PLANTED_NODES), ("no_query", broken)):
        folder = circuit_from_nodes(model, nodes, task, ZERO).save(root / name)
        validate(folder, model, Tokens(), "random_circuits,activation_agreement", task=task, progress=False)
        data = build_report_data(folder, model, Tokens(), n_pairs=32, title=name)
        paths[name] = write_report(data, root / f"{name}.html")
        entries.append(index_entry(data, f"{name}.html", name))
    paths["index"] = root / "index.html"
    paths["index"].write_text(render_index(entries), encoding="utf-8")
    return paths


@pytest.fixture
def planted_page(pages, browser):  # noqa: F811
    page = Page(browser, pages["planted"])
    yield page
    page.page.close()


def _cells(page, selector: str) -> list[float]:
    return [float(v) for v in page.page.eval_on_selector_all(
        selector, "els => els.map(e => e.getAttribute('data-value'))")]


def test_value_channel_heatmap_differs_between_classes_at_the_marker(planted_page):
    planted_page.click_node(VALUE)
    base = '#node-panel .heatmap[data-run="full"][data-kind="class"]'
    a = _cells(planted_page, f'{base} [data-row="a"] .hm-cell')
    b = _cells(planted_page, f'{base} [data-row="b"] .hm-cell')
    diff = _cells(planted_page, f'{base} [data-row="diff"] .hm-cell')
    assert len(a) == len(b) == len(diff) == 8  # marker, six fillers, END
    assert a[0] > 1.0 and b[0] < -1.0 and diff[0] == pytest.approx(a[0] - b[0], abs=1e-3)
    assert all(abs(d) < 1e-3 for d in diff[1:])  # the fillers are shared by the two prompts of a pair
    assert not planted_page.errors


def test_attention_view_shows_the_planted_head_reading_the_marker(planted_page):
    page = planted_page.page
    first = page.eval_on_selector("select#attn-head", "s => s.options[0].value")
    assert first == "0.0"  # the circuit's head comes first
    page.select_option("select#attn-head", "0.0")
    for run in ("full", "circuit"):
        matrix = f'.attn-matrix[data-run="{run}"][data-layer="0"][data-head="0"]'
        end_row = _cells(planted_page, f'{matrix} .attn-cell[data-q="7"]')
        assert len(end_row) >= 8 and end_row[0] > 0.9, run  # END attends to the marker at position 0
    assert not planted_page.errors


def _widest(page) -> tuple[float, str]:
    return page.page.evaluate("""() => {
        let worst = [document.documentElement.scrollWidth, 'document'];
        for (const e of document.querySelectorAll('body *')) {
            const r = e.getBoundingClientRect();
            if (r.width > 0 && r.right > worst[0]) { worst = [r.right, e.tagName + '.' + e.className]; }
        }
        return worst;
    }""")


def test_nothing_is_wider_than_the_viewport(planted_page):
    planted_page.click_node(VALUE)
    right, what = _widest(planted_page)
    assert right <= 1400, what


def test_index_says_why_a_circuit_fails_and_links_to_its_validation(pages, browser):  # noqa: F811
    page = Page(browser, pages["index"])
    text = page.page.inner_text("body")
    assert "sufficiency" in text  # the circuit without its query fails it, visibly
    link = page.page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    assert "no_query.html#validation" in link
    right, what = _widest(page)
    assert right <= 1400, what
    page.page.close()
