"""Take the README's screenshots of a circuit report in headless Chromium.

Usage: python docs/screenshots/shoot.py REPORT.html [--node ID] [--dir docs/screenshots]

Opens the report from file://, clicks one node (by default the circuit node whose removal
alone raises the task loss most) and saves three PNGs in --dir: circuit.png (the graph),
node-panel.png (the top of that node's panel: its details and per-token heatmaps) and
attention.png (the attention view of the circuit's first head, full model beside circuit).
Needs Debian's chromium (/usr/bin/chromium) and the `playwright` package (the test extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

MOST_IMPORTANT_NODE = """() => {
  const data = JSON.parse(document.getElementById('data').textContent);
  const nodes = data.nodes.filter(n => n.delta_loss !== null && n.delta_loss !== undefined);
  nodes.sort((a, b) => b.delta_loss - a.delta_loss);
  return nodes.length ? nodes[0].id : data.nodes[0].id;
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--node", help="node id to open (default: the most important one)")
    ap.add_argument("--dir", type=Path, default=Path(__file__).parent)
    ap.add_argument("--width", type=int, default=1300)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--panel-height", type=int, default=900, help="pixels of the node panel's top to keep")
    args = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.report.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        node = args.node or page.evaluate(MOST_IMPORTANT_NODE)
        page.locator(f'.node[data-node-id="{node}"] circle').click()
        page.locator(".graph-wrap > :first-child").first.screenshot(path=str(args.dir / "circuit.png"))
        box = page.locator("#node-panel").bounding_box()
        page.screenshot(path=str(args.dir / "node-panel.png"), full_page=True, clip={
            "x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], args.panel_height)})
        page.locator("#attention").screenshot(path=str(args.dir / "attention.png"))
        browser.close()
    print(f"{args.dir}/circuit.png, node-panel.png, attention.png (node {node})")


if __name__ == "__main__":
    main()
