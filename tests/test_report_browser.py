"""The report page in a real browser: Debian's chromium driven by Playwright, from file://."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsecircuits.report import index_entry, render_index, render_report, write_report
from sparsecircuits.report.html import compare_page
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
    assert p.page.locator('#validation tr[data-check="sufficiency"] td').first.text_content() == "pass"
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
    script = Path(__file__).parents[1] / "docs" / "screenshots" / "shoot.py"
    out = subprocess.run([sys.executable, str(script), str(path), "--dir", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    top = max((n for n in data["nodes"] if n["delta_loss"] is not None), key=lambda n: n["delta_loss"])
    assert out.strip().endswith(f"(node {top['id']})")
    for name in ("circuit.png", "node-panel.png", "attention.png"):
        shot = tmp_path / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, name


# --- the viewer's views of mechanisms (synthetic data carrying every field) ---------------------

PNG = b"\x89PNG\r\n\x1a\n"
NEW_NODE_FIELDS = ("agreement", "agreement_trivial", "token_acts", "class_acts", "snippet_groups", "act_stats")
WIDEST = """() => {
  const w = window.innerWidth, bad = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5)) { bad.push(e.tagName + '.' + e.getAttribute('class') + ' ' + Math.round(r.right)); }
  }
  return {scroll: document.documentElement.scrollWidth, bad: bad.slice(0, 8)};
}"""
RECTS = "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"


def _open(browser, tmp_path, data, name="circuit.html") -> Page:
    return Page(browser, write_report(data, tmp_path / name))


def _overlap(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def _values(locator) -> list[float]:
    return [float(v) for v in locator.evaluate_all("els => els.map(e => e.getAttribute('data-value'))")]


def _node(data, pred):
    return next(n for n in data["nodes"] if pred(n))


def test_node_panel_shows_token_heatmaps_agreement_snippets_and_stats(report):
    data, p = report
    page = p.page
    node = _node(data, lambda n: n["layer"] == 1 and n["agreement"] is not None)
    p.click_node(node["id"])
    panel = page.locator("#node-panel")
    assert panel.locator(".field-agreement").text_content() == f"{node['agreement']:.2f}"
    full = panel.locator('.heatmap[data-run="full"][data-kind="example"]')
    assert full.count() == len(data["examples"]) and full.first.is_visible()
    ex0, ex1 = full.nth(0), full.nth(1)
    assert _values(ex0.locator('[data-row="a"] .hm-cell')) == node["token_acts"]["full"]["a"][0]
    assert ex0.locator('[data-row="a"] .hm-cell').all_text_contents() == data["examples"][0]["a_tokens"]
    diff = [a - b for a, b in zip(node["token_acts"]["full"]["a"][0], node["token_acts"]["full"]["b"][0], strict=True)]
    assert _values(ex0.locator('[data-row="diff"] .hm-cell')) == pytest.approx(diff)
    assert ex1.locator('[data-row="b"] .hm-cell').count() == len(data["examples"][1]["b_tokens"])
    assert ex1.locator('[data-row="diff"]').count() == 0  # prompts of different lengths
    cls = panel.locator('.heatmap[data-run="full"][data-kind="class"]')
    assert cls.locator('[data-row="label"] th.hm-pos').all_text_contents() == data["class_positions"]["labels"]
    assert _values(cls.locator('[data-row="b"] .hm-cell')) == node["class_acts"]["full"]["b"]
    assert cls.locator('[data-row="diff"] .hm-cell').count() == len(data["class_positions"]["labels"])
    shown = [v for run in ("full", "circuit") for side in ("a", "b")
             for v in node["token_acts"][run][side][0] + node["token_acts"][run][side][1] + node["class_acts"][run][side]]
    assert float(panel.locator(".hm-legend").get_attribute("data-max")) >= max(abs(v) for v in shown)
    panel.locator("select.hm-run").select_option("circuit")
    circuit = panel.locator('.heatmap[data-run="circuit"][data-kind="class"]')
    assert circuit.is_visible() and not cls.is_visible()
    assert _values(circuit.locator('[data-row="a"] .hm-cell')) == node["class_acts"]["circuit"]["a"]
    groups = panel.locator(".snippet-group")
    assert [groups.nth(i).get_attribute("data-label") for i in range(groups.count())] == [g["label"] for g in node["snippet_groups"]]
    assert "quantile 0.99" in groups.nth(1).text_content()
    assert "4096 pretraining tokens" in panel.locator(".act-stats").text_content()
    # the run shown is kept from node to node
    other = _node(data, lambda n: n["agreement_trivial"])
    p.click_node(other["id"])
    assert panel.locator(".field-agreement").text_content() == "1.00 (trivially: reads the embedding)"
    assert panel.locator('.heatmap[data-run="circuit"][data-kind="class"]').is_visible()
    missing = _node(data, lambda n: n["agreement"] is None)
    p.click_node(missing["id"])
    assert panel.locator(".field-agreement.muted").text_content() == "not computed"
    assert p.errors == []


def test_reports_without_the_new_fields_say_not_computed(tmp_path, browser):
    data = synthetic_report_data()
    for n in data["nodes"]:
        for key in NEW_NODE_FIELDS:
            n.pop(key)
    data["nodes"][0]["snippets"] = [{"tokens": ["a", EVIL], "acts": [0.1, 2.0], "focus": 1, "max": 2.0}]
    for key in ("attention", "curve_full", "class_positions"):
        data.pop(key)
    del data["circuit"]["n_total_nodes"]
    for check in data["validation"]["verdict"]["checks"]:
        del check["direction"], check["meaning"]
    p = _open(browser, tmp_path, data)
    page = p.page
    for node in (data["nodes"][0], data["nodes"][5]):
        p.click_node(node["id"])
        panel = page.locator("#node-panel")
        assert panel.locator(".field-agreement.muted").text_content() == "not computed"
        texts = panel.locator(".not-computed").all_text_contents()
        assert any(t.startswith("Activation statistics") for t in texts)
        assert any(t.startswith("Per-token activations") for t in texts)
    p.click_node(data["nodes"][0]["id"])
    assert EVIL in page.locator("#node-panel .tokens .tok").all_text_contents()  # the old snippet list
    assert "not computed" in page.locator("#attention .not-computed").text_content()
    assert "not computed" in page.locator("#curve .not-computed").text_content()
    assert page.locator('#curve circle.marker[data-series="bisection points"]').count() == len(data["curve"])
    assert page.locator("#summary .reason").text_content() == index_entry(data, "c.html", "c")["reason"]
    row = page.locator('#validation tr[data-check="sufficiency"]')
    assert "direction not computed" in row.text_content() and row.locator("td.muted").first.text_content() == "not computed"
    page.locator("#color-mode").select_option("agreement")
    fills = page.locator(".circuit-node circle").evaluate_all("els => els.map(e => getComputedStyle(e).fill)")
    assert set(fills) == {"rgb(203, 213, 225)"}
    assert "not computed" in page.locator(".color-legend").text_content()
    # null everywhere instead of absent
    data = synthetic_report_data()
    full_only = {key: {"full": data["nodes"][4][key]["full"]} for key in ("token_acts", "class_acts")}
    for n in data["nodes"]:
        n.update(dict.fromkeys(NEW_NODE_FIELDS))
    data["nodes"][4].update(full_only)
    data.update(attention=None, curve_full=None, class_positions=None)
    p2 = _open(browser, tmp_path, data, "nulls.html")
    p2.click_node(data["nodes"][3]["id"])
    assert p2.page.locator("#node-panel .not-computed").count() >= 3
    p2.click_node(data["nodes"][4]["id"])
    p2.page.locator("#node-panel select.hm-run").select_option("circuit")
    assert p2.page.locator('#node-panel .hm-run-box[data-run="circuit"] .not-computed').count() == 2
    assert p2.page.locator('.heatmap[data-run="full"][data-kind="class"] [data-row="label"] th').count() == 7
    assert p.errors == [] and p2.errors == []


def test_attention_section_shows_full_and_circuit_patterns(report):
    data, p = report
    page = p.page
    heads = data["attention"]["heads"]
    options = page.locator("select#attn-head option")
    assert options.evaluate_all("els => els.map(e => e.value)") == [f"{h['layer']}.{h['head']}" for h in heads]
    assert "in circuit" in options.first.text_content() and "in circuit" not in options.last.text_content()
    assert page.locator("select#attn-prompt option").count() == len(data["attention"]["prompts"])
    head = heads[0]
    for run in ("full", "circuit"):
        matrix = page.locator(f'.attn-matrix[data-run="{run}"][data-layer="{head["layer"]}"][data-head="{head["head"]}"]')
        assert matrix.is_visible()
        pattern = head[run][0]
        n = len(pattern)
        assert matrix.locator(".attn-cell").count() == n * (n + 1) // 2
        cell = matrix.locator('.attn-cell[data-q="2"][data-k="1"]')
        assert float(cell.get_attribute("data-value")) == pattern[2][1] and cell.get_attribute("title")
        sink = float(matrix.locator('.attn-sink[data-q="2"]').get_attribute("data-value"))
        assert sink == pytest.approx(1 - sum(pattern[2][:3]))
    assert page.locator(".attn-matrix .attn-q").first.text_content() == data["attention"]["prompts"][0]["tokens"][0]
    page.locator("select#attn-prompt").select_option("3")
    n = len(data["attention"]["prompts"][3]["tokens"])
    assert page.locator('.attn-matrix[data-run="full"] .attn-cell').count() == n * (n + 1) // 2
    last = heads[-1]
    page.locator("select#attn-head").select_option(f"{last['layer']}.{last['head']}")
    assert page.locator(f'.attn-matrix[data-run="full"][data-head="{last["head"]}"]').count() == 1
    assert page.locator('.attn-matrix[data-run="circuit"]').count() == 0
    assert "not computed" in page.locator("#attention .attn-block").nth(1).text_content()
    assert p.errors == []


def test_colour_mode_switch_changes_node_fills(report):
    data, p = report
    page = p.page
    fill = "id => getComputedStyle(document.querySelector(`.node[data-node-id=\"${id}\"] circle`)).fill"
    nodes = [_node(data, lambda n: n["agreement_trivial"]), _node(data, lambda n: n["agreement"] is None)]
    before = [page.evaluate(fill, n["id"]) for n in nodes]
    assert page.locator(".color-legend").get_attribute("data-mode") == "location"
    page.locator("select#color-mode").select_option("agreement")
    after = [page.evaluate(fill, n["id"]) for n in nodes]
    assert after == ["rgb(22, 163, 74)", "rgb(203, 213, 225)"] and after != before
    assert page.locator(".color-legend").get_attribute("data-mode") == "agreement"
    assert page.locator(".color-legend .swatch").count() == 6
    page.locator("select#color-mode").select_option("location")
    assert [page.evaluate(fill, n["id"]) for n in nodes] == before
    assert p.errors == []


def test_export_buttons_download_svg_and_png(report):
    data, p = report
    page = p.page
    with page.expect_download() as svg_download:
        page.locator("button#export-svg").click()
    svg = Path(svg_download.value.path()).read_text(encoding="utf-8")
    assert svg.startswith("<svg") and svg_download.value.suggested_filename == "circuit-single_double_quote.svg"
    assert svg.count('class="node circuit-node') == len(data["nodes"]) and "<style>" in svg and EVIL not in svg
    with page.expect_download() as png_download:
        page.locator("button#export-png").click()
    png = Path(png_download.value.path()).read_bytes()
    assert png[:8] == PNG and len(png) > 10_000 and png_download.value.suggested_filename.endswith(".png")
    assert p.errors == [] and p.dialogs == []


def test_loss_versus_k_covers_the_whole_range(report):
    data, p = report
    chart = p.page.locator('#curve svg[data-chart="loss-k"]')
    assert chart.locator('path[data-series="top-k nodes"]').count() == 1
    assert chart.locator('circle.marker[data-series="bisection points"]').count() == len(data["curve"])
    assert chart.locator(".vref").get_attribute("data-k") == str(data["circuit"]["n_nodes"])
    assert chart.locator(".ref").count() == 3
    assert "of 1024 nodes" in chart.text_content() and "(log scale)" in chart.text_content()


def test_checks_table_reads_each_result(report):
    data, p = report
    rows = p.page.locator("#validation table.checks tr[data-check]")
    assert rows.count() == len(data["validation"]["verdict"]["checks"])
    cells = {c["name"]: p.page.locator(f'#validation tr[data-check="{c["name"]}"] td').all_text_contents()
             for c in data["validation"]["verdict"]["checks"]}
    assert cells["sufficiency"][:4] == ["pass", "0.140", "<= 0.200", "the circuit alone reaches the target loss on held-out pairs"]
    assert cells["activation_agreement"][:3] == ["fail", "0.410", ">= 0.700"]
    assert cells["nonsense_task"][:3] == ["pass", "not reached", "not reached or > 2"]
    assert p.page.locator("#validation .check-fail").count() == 1
    # the page names the failed checks as the index row does
    reason = index_entry(data, "c.html", "c")["reason"]
    assert p.page.locator("#summary .reason").text_content() == reason == p.page.locator("#validation .reason").text_content()


@pytest.mark.parametrize("size", ["long validation", "300 nodes"])
def test_nothing_is_wider_than_the_viewport(tmp_path, browser, size):
    data = synthetic_report_data(n_layer=3, per_location=13) if size == "300 nodes" else synthetic_report_data()
    controls = data["validation"]["controls"]
    controls["activation_agreement"]["per_node"] = [{"node": f"blocks.0.mlp.hook_post:{i}", "corr": 0.5} for i in range(300)]
    controls["nonsense"]["note"] = "x" * 3000
    controls["nonsense"]["sizes"] = {"layer": list(range(200)), "nested": {"a": [[1, 2]] * 50}}
    data["model"]["path"] = "runs/" + "very-long-folder-name/" * 40
    p = _open(browser, tmp_path, data)
    assert p.page.locator("#validation details.nested summary", has_text="list of 300 items").count() == 1
    p.click_node(data["nodes"][len(data["nodes"]) // 2]["id"])
    widest = p.page.evaluate(WIDEST)
    assert widest == {"scroll": 1400, "bad": []}
    p.page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    p.page.wait_for_selector("#validation details[open] table")
    assert p.page.evaluate(WIDEST) == {"scroll": 1400, "bad": []}
    assert p.errors == []


def test_graph_of_300_nodes_is_readable(tmp_path, browser):
    data = synthetic_report_data(n_layer=3, per_location=13)
    assert len(data["nodes"]) > 300
    p = _open(browser, tmp_path, data)
    page = p.page
    graph = page.locator("#graph").bounding_box()
    assert graph["width"] > 0.95 * page.locator("#circuit").bounding_box()["width"]
    sizes = page.locator(".node:not(.hidden) text, .col-label, .head-label, .layer-label").evaluate_all(
        "els => els.map(e => [parseFloat(getComputedStyle(e).fontSize) * e.getScreenCTM().a, e.getBoundingClientRect().height])")
    assert len(sizes) > 300 and min(s[0] for s in sizes) >= 10 and min(s[1] for s in sizes) >= 10
    heads = page.locator(".col-label").evaluate_all(RECTS)
    assert not any(_overlap(a, b) for i, a in enumerate(heads) for b in heads[i + 1:])
    embed = page.locator('.terminal-node[data-node-id^="embed"] text').evaluate_all(RECTS)
    circles = page.locator(".node circle").evaluate_all(RECTS)
    assert embed and not any(_overlap(a, b) for a in embed for b in circles)
    assert not page.locator("#show-links").is_checked()
    assert page.locator(".terminal-link:not(.hidden), .residual-link:not(.hidden)").count() == 0
    assert page.locator(".head-band:not(.hidden)").count() == 4 * 3
    page.locator('input[data-collapse="all"]').check()
    assert page.locator(".head-band:not(.hidden), .head-label:not(.hidden)").count() == 0
    assert page.locator(".circuit-node:not(.hidden)").count() == 0
    assert page.locator(".collapsed-node:not(.hidden)").count() == page.locator(".col-label").count()
    assert page.locator('input[data-collapse="attn_q"]').is_checked()
    page.locator('input[data-collapse="attn_q"]').uncheck()
    assert page.locator(".head-band:not(.hidden)").count() == 4 * 3
    assert not page.locator('input[data-collapse="all"]').is_checked()
    assert p.errors == []


def test_compare_page_shows_both_graphs(tmp_path, browser):
    sparse, dense = synthetic_report_data(), synthetic_report_data(per_location=4, seed=1)
    dense["validation"]["verdict"]["status"] = "ok"
    for check in dense["validation"]["verdict"]["checks"]:
        check["passed"] = True
    page_data = compare_page([{"label": "sparse", "href": "sparse.html", "data": sparse},
                              {"label": EVIL, "href": None, "data": dense}], title="compare", task="single_double_quote")
    path = tmp_path / "compare.html"
    path.write_text(render_report(page_data), encoding="utf-8")
    p = Page(browser, path)
    page = p.page
    sides = page.locator(".compare-side")
    assert sides.count() == 2
    for i, d in enumerate((sparse, dense)):
        assert sides.nth(i).locator("svg.graph").is_visible()
        assert sides.nth(i).locator(".node.circuit-node").count() == len(d["nodes"])
    left, right = (sides.nth(i).locator("svg.graph").bounding_box() for i in range(2))
    assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 2
    summary = page.locator("table.compare-summary")
    assert summary.locator("a").get_attribute("href") == "sparse.html"
    assert EVIL in summary.locator("tr").first.text_content()
    assert summary.locator(".reason").all_text_contents() == ["fails activation_agreement (0.41 < 0.70)"]
    node = dense["nodes"][2]["id"]
    sides.nth(1).locator(f'.node[data-node-id="{node}"] circle').click()
    assert page.locator("#node-panel-s2").get_attribute("data-node-id") == node
    ids = page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)")
    assert len(ids) == len(set(ids))
    assert page.evaluate(WIDEST) == {"scroll": 1400, "bad": []}
    assert p.errors == [] and p.dialogs == []


def test_index_shows_why_a_circuit_failed(tmp_path, browser):
    failing, passing = synthetic_report_data(), synthetic_report_data(seed=2)
    passing["validation"]["verdict"]["status"] = "ok"
    for check in passing["validation"]["verdict"]["checks"]:
        check["passed"] = True
    entries = [index_entry(failing, "reports/circuit-a.html", "a"), index_entry(passing, "reports/b.html", "b")]
    path = tmp_path / "index.html"
    path.write_text(render_index(entries), encoding="utf-8")
    p = Page(browser, path)
    rows = p.page.locator("table.circuit-index tr")
    reason = rows.nth(1).locator("td.reason a")
    assert reason.is_visible() and reason.text_content() == "fails activation_agreement (0.41 < 0.70)"
    assert reason.get_attribute("href") == "reports/circuit-a.html#validation"
    assert EVIL in reason.get_attribute("title")
    assert rows.nth(2).locator("td.reason").text_content() == ""
    assert p.errors == [] and p.dialogs == []


def test_index_draws_the_circuit_reuse_heatmaps(tmp_path, browser):
    tasks = ["single_double_quote", "bracket_brace", EVIL]
    reuse = {"sparse": {"tasks": tasks, "fingerprint": "abc",
                        "node_jaccard": [[1.0, 0.25, 0.0], [0.25, 1.0, None], [0.0, None, None]],
                        "node_share": [[1.0, 0.5, 0.0], [0.3333, 1.0, 0.0], [None, None, None]],
                        "edge_jaccard": [[1.0, 0.1, 0.0], [0.1, 1.0, None], [0.0, None, None]],
                        "n_nodes": [8, 12, 0], "n_edges": [10, 16, 0]},
             "dense": {"tasks": tasks[:2], "fingerprint": "def", "node_jaccard": [[1.0, 0.9], [0.9, 1.0]],
                       "node_share": [[1.0, 0.95], [0.9, 1.0]], "edge_jaccard": [[1.0, 0.8], [0.8, 1.0]],
                       "n_nodes": [40, 42], "n_edges": [100, 90]}}
    entries = [index_entry(synthetic_report_data(), "reports/a.html", "a")]
    path = tmp_path / "index.html"
    path.write_text(render_index(entries, reuse=reuse), encoding="utf-8")
    p = Page(browser, path)
    page = p.page
    assert page.locator("#reuse h2").text_content() == "Circuit reuse"
    assert page.locator('nav a[href="#reuse"]').count() == 1
    for model, r in reuse.items():
        for kind in ("node_jaccard", "node_share", "edge_jaccard"):
            matrix = page.locator(f'.reuse-matrix[data-model="{model}"][data-kind="{kind}"]')
            assert matrix.count() == 1
            cells = matrix.locator(".reuse-cell")
            n = len(r["tasks"])
            assert cells.count() == n * n
            for i, row in enumerate(r["tasks"]):
                for j, col in enumerate(r["tasks"]):
                    cell = cells.nth(i * n + j)
                    assert (cell.get_attribute("data-row"), cell.get_attribute("data-col")) == (row, col)
                    v = r[kind][i][j]
                    assert cell.text_content() == ("n/a" if v is None else f"{v:.2f}")
                    value = cell.get_attribute("data-value")
                    assert value == "null" if v is None else float(value) == v
    share = page.locator('.reuse-matrix[data-model="sparse"][data-kind="node_share"]')
    assert "share of this task" in share.locator(".reuse-corner").text_content()
    assert "found in this task" in share.locator(".reuse-axis").text_content()
    assert EVIL in share.locator(".reuse-row").all_text_contents()
    colours = share.locator(".reuse-cell").evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert colours[0] != colours[2]  # 1.0 and 0.0 differ
    assert colours[6] == colours[7] == "rgb(203, 213, 225)"  # null cells are grey
    assert page.evaluate(WIDEST) == {"scroll": 1400, "bad": []}
    assert p.errors == [] and p.dialogs == []


def test_reuse_heatmaps_of_many_tasks_fit_the_viewport(tmp_path, browser):
    tasks = [f"task_with_a_long_name_{i:02d}" for i in range(20)]
    grid = [[1.0 if i == j else round((i * j % 7) / 7, 4) for j in range(20)] for i in range(20)]
    r = {"tasks": tasks, "node_jaccard": grid, "node_share": grid, "edge_jaccard": grid,
         "n_nodes": [10] * 20, "n_edges": [20] * 20}
    path = tmp_path / "index.html"
    path.write_text(render_index([], reuse={"sparse": r, "dense": r}), encoding="utf-8")
    p = Page(browser, path)
    assert p.page.locator(".reuse-cell").count() == 2 * 3 * 400
    assert p.page.evaluate(WIDEST) == {"scroll": 1400, "bad": []}
    assert p.errors == []


def test_a_node_with_a_steering_record_shows_its_effect(tmp_path, browser):
    """A node steered through bridges shows the dense model's p(alt) without and with the
    edit, the random channels' and the sparse model's; other nodes show no such row."""
    data = synthetic_report_data()
    steered, other = data["nodes"][0], data["nodes"][1]
    steered["steering"] = [{"task": "bracket_brace", "value": "toward_alt", "channels": 1, "baseline_p_alt": 0.001,
                            "at": [{"scale": 1.0, "p_alt": 0.015, "control_p_alt": 0.001, "sparse_p_alt": 0.006},
                                   {"scale": 4.0, "p_alt": 0.612, "control_p_alt": 0.002, "sparse_p_alt": 0.528}]}]
    p = _open(browser, tmp_path, data)
    p.click_node(steered["id"])
    text = p.page.locator("#node-panel .field-steering").text_content()
    assert text.startswith("bracket_brace: dense p(alt) 0.001 \u2192 0.015 at scale 1")
    assert "0.612 at scale 4 (random channels 0.002, sparse model 0.528)" in text
    p.click_node(other["id"])
    assert p.page.locator("#node-panel .field-steering").count() == 0
    assert not p.errors, p.errors
