"""The report page in a real browser: Debian's chromium driven by Playwright, from file://."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsecircuits.report import render_index, write_report
from test_report_html import EVIL, synthetic_report_data

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "install Debian packages chromium and chromium-driver (apt-get install chromium chromium-driver)"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

_missing = sync_playwright is None or not CHROMIUM.exists()
if _missing and os.environ.get("CI"):
    raise RuntimeError(f"browser tests must run in CI: {INSTALL}")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing, reason=INSTALL)]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Page:
    """A page with every console message, page error and dialog recorded."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def click_node(self, node_id: str) -> None:
        self.page.locator(f'.node[data-node-id="{node_id}"] circle').click()


@pytest.fixture
def report(tmp_path, browser):
    data = synthetic_report_data()
    path = write_report(data, tmp_path / "circuit.html")
    page = Page(browser, path)
    yield data, page
    page.page.close()


def test_report_opens_with_every_node_and_edge(report, tmp_path):
    data, p = report
    assert p.page.locator(".node.circuit-node").count() == data["circuit"]["n_nodes"] == len(data["nodes"])
    assert p.page.locator(".edge").count() == data["circuit"]["n_edges"] == len(data["edges"])
    assert p.page.locator(".node.terminal-node").count() == len(data["terminals"])
    assert p.page.locator(".terminal-link").count() == len(data["terminal_links"])
    assert p.page.locator(".residual-link").count() == len(data["residual_links"])
    signs = {e["src"] + ">" + e["dst"]: e["weight"] >= 0 for e in data["edges"]}
    for el in p.page.locator(".edge").all()[:20]:
        cls = el.get_attribute("class")
        assert ("pos" in cls) == signs[el.get_attribute("data-src") + ">" + el.get_attribute("data-dst")]
    shot = tmp_path / "report.png"
    p.page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert p.errors == [] and p.dialogs == []


def test_clicking_a_node_shows_its_panel(report):
    data, p = report
    for node in (data["nodes"][4], data["nodes"][20], data["nodes"][-1]):
        p.click_node(node["id"])
        panel = p.page.locator("#node-panel")
        assert panel.get_attribute("data-node-id") == node["id"]
        assert panel.locator(".field-index").text_content() == str(node["index"])
        assert panel.locator(".field-location").text_content() == node["alias"]
        assert panel.locator(".field-hook").text_content() == node["hook"]
        head = "n/a" if node["head"] is None else str(node["head"])
        assert panel.locator(".field-head").text_content() == head
        assert panel.locator(".field-delta").text_content() == f"{node['delta_loss']:.4f}"
        n_in = sum(e["dst"] == node["id"] for e in data["edges"])
        n_out = sum(e["src"] == node["id"] for e in data["edges"])
        links = data["terminal_links"] + data["residual_links"]
        n_in += sum(e["dst"] == node["id"] for e in links)
        n_out += sum(e["src"] == node["id"] for e in links)
        assert panel.locator(".field-degree").text_content() == f"{n_in} / {n_out}"
        assert p.page.locator(".node.selected").get_attribute("data-node-id") == node["id"]
    assert p.errors == []


def test_hostile_token_is_text_and_no_dialog_opens(report):
    data, p = report
    p.click_node(data["nodes"][0]["id"])
    tokens = p.page.locator("#node-panel .tokens .tok").all_text_contents()
    assert EVIL in tokens
    assert p.page.locator("#examples .tokens .tok", has_text="</script>").count() == 1
    assert p.page.locator("img").count() == 0
    assert p.page.title() == data["title"]
    assert EVIL in p.page.locator("#validation li").all_text_contents()[0]
    assert p.page.locator("#summary .notes li").all_text_contents() == [f"note {EVIL}"]
    assert p.page.locator("#validation table").first.locator("td").nth(1).text_content() == "true"
    p.page.wait_for_timeout(200)
    assert p.dialogs == [] and p.errors == []


def test_filter_collapse_search_zoom_and_pan(report):
    data, p = report
    page = p.page
    page.locator("#weight-threshold").fill("1000")
    visible = page.locator(".edge:not(.hidden)").count()
    assert 0 < visible < len(data["edges"])
    weights = sorted(abs(e["weight"]) for e in data["edges"])
    assert visible == sum(w >= weights[-1] for w in weights)
    assert f"({visible} of {len(data['edges'])} edges)" in page.locator("#weight-threshold-value").text_content()
    page.locator("#weight-threshold").fill("0")
    assert page.locator(".edge.hidden").count() == 0

    n_neurons = sum(n["alias"] == "mlp_neuron" for n in data["nodes"])
    page.locator('input[data-collapse="mlp_neuron"]').check()
    assert page.locator(".node.circuit-node.hidden").count() == n_neurons
    assert page.locator(".node.collapsed-node:not(.hidden)").count() == data["geometry"]["n_layer"]
    page.locator('input[data-collapse="mlp_neuron"]').uncheck()
    assert page.locator(".node.circuit-node.hidden").count() == 0

    target = data["nodes"][9]["id"]
    page.locator("#node-search").fill(target)
    assert page.locator("#node-panel").get_attribute("data-node-id") == target

    svg = page.locator("#graph")
    before = svg.get_attribute("viewBox")
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    zoomed = [float(v) for v in svg.get_attribute("viewBox").split()]
    assert zoomed[2] < [float(v) for v in before.split()][2]
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 150, steps=5)
    page.mouse.up()
    panned = [float(v) for v in svg.get_attribute("viewBox").split()]
    assert panned[0] < zoomed[0] and panned[2] == zoomed[2]
    assert p.errors == []


def test_thousands_of_edges_stay_usable(tmp_path, browser):
    data = synthetic_report_data(per_location=16, seed=1)
    assert len(data["edges"]) > 1500
    p = Page(browser, write_report(data, tmp_path / "big.html"))
    assert p.page.locator(".edge").count() == len(data["edges"])
    p.page.locator("#weight-threshold").fill("900")
    assert p.page.locator(".edge:not(.hidden)").count() <= len(data["edges"]) // 10 + 1
    p.click_node(data["nodes"][-1]["id"])
    assert p.page.locator("#node-panel .field-index").text_content() == str(data["nodes"][-1]["index"])
    assert p.errors == []


def test_index_page_links_reports_and_drops_unsafe_links(tmp_path, browser):
    entries = [
        {"name": "quote", "href": "circuit-quote.html", "task": "single_double_quote", "n_nodes": 12,
         "n_edges": 9, "losses": {"full": 0.05}, "target_loss": 0.15, "validation": {"verdict": {"status": "ok"}}},
        {"name": EVIL, "href": "javascript:alert(1)", "task": EVIL, "n_nodes": 1, "n_edges": 0,
         "losses": {}, "validation": None},
    ]
    path = tmp_path / "index.html"
    path.write_text(render_index(entries), encoding="utf-8")
    p = Page(browser, path)
    links = p.page.locator("table.circuit-index a")
    assert links.count() == 1 and links.get_attribute("href") == "circuit-quote.html"
    rows = p.page.locator("table.circuit-index tr")
    assert rows.count() == 3
    assert rows.nth(1).locator(".verdict").text_content() == "ok"
    assert rows.nth(2).locator(".verdict").text_content() == "not validated"
    assert EVIL in rows.nth(2).text_content()
    assert p.errors == [] and p.dialogs == []


def test_readme_screenshot_script_opens_the_most_important_node(tmp_path):
    import subprocess
    import sys

    data = synthetic_report_data()
    path = write_report(data, tmp_path / "circuit.html")
    shot = tmp_path / "shot.png"
    script = Path(__file__).parents[1] / "docs" / "screenshots" / "shoot.py"
    out = subprocess.run([sys.executable, str(script), str(path), "--out", str(shot)],
                         capture_output=True, text=True, check=True).stdout
    top = max((n for n in data["nodes"] if n["delta_loss"] is not None), key=lambda n: n["delta_loss"])
    assert out.strip() == f"{shot} (node {top['id']})"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
