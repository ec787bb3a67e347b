"""Take the README's screenshot of a circuit report in headless Chromium.

Usage: python docs/screenshots/shoot.py REPORT.html [--node ID] [--out docs/screenshots/circuit.png]

Opens the report from file://, clicks one node (by default the circuit node whose removal
alone raises the task loss most) so that its panel shows, and saves a PNG of the circuit-graph section.
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
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("circuit.png"))
    ap.add_argument("--width", type=int, default=1300)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.report.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        node = args.node or page.evaluate(MOST_IMPORTANT_NODE)
        page.locator(f'.node[data-node-id="{node}"] circle').click()
        page.locator("#circuit").screenshot(path=str(args.out))
        browser.close()
    print(f"{args.out} (node {node})")


if __name__ == "__main__":
    main()
