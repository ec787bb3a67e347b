"""The frontier report on a hand-made sweep with known numbers: tables, matched-loss ratios,
widening, missing points, the files it writes, and the viewer page in a real browser."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sparsecircuits.errors import InputError
from sparsecircuits.experiments import frontier_report as fr
from sparsecircuits.experiments.frontier_report import (
    OUTSIDE,
    frontier_table,
    interpolate_log,
    load_points,
    matched_ratios,
    missing_points,
    widening_effect,
    write_frontier_report,
)
from test_report_browser import INSTALL, WIDEST, Page, _missing, browser  # noqa: F401 (the fixture)

TASKS = ["t1", "t2"]
OK = {"verdict": "ok", "failed_checks": [], "sufficient": True, "target_met": True}
SUSPECT = {"verdict": "suspect", "failed_checks": ["activation_agreement"], "sufficient": True, "target_met": True}
INSUFFICIENT = {"verdict": "insufficient", "failed_checks": ["sufficiency"], "sufficient": False, "target_met": True}
REUSE = {"tasks": TASKS, "fingerprint": "f", "node_jaccard": [[1.0, 0.3], [0.3, 1.0]],
         "node_share": [[1.0, 0.5], [0.4, 1.0]], "edge_jaccard": [[1.0, 0.1], [0.1, 1.0]],
         "n_nodes": [20, 25], "n_edges": [100, 50]}
# name: (kind, expansion, target density, nonzeros, val loss, {task: (edges, status)})
POINTS = {
    "dense-e1": ("dense", 1, None, 1_000_000, 3.0, {"t1": (1000, OK), "t2": (400, OK)}),
    "dense-e2": ("dense", 2, None, 4_000_000, 2.0, {"t1": (500, OK), "t2": (200, OK)}),
    "sparse-e1-k0.25": ("sparse", 1, 0.25, 250_000, 2.5, {"t1": (100, OK), "t2": (50, OK)}),
    "sparse-e1-k0.125": ("sparse", 1, 0.125, 125_000, 3.5, {"t1": (80, OK), "t2": (40, OK)}),
    "sparse-e2-k0.25": ("sparse", 2, 0.25, 251_000, 2.4, {"t1": (60, OK), "t2": (30, INSUFFICIENT)}),
    "sparse-e2-k0.125": ("sparse", 2, 0.125, 126_000, 2.8, {"t1": (90, SUSPECT), "t2": (50, OK)}),
    "sparse-e2-k0.5": ("sparse", 2, 0.5, 500_000, 2.1, {"t1": (40, OK)}),  # t2's circuit not made yet
}


def point_record(name: str) -> dict:
    kind, e, k, nz, loss, circuits = POINTS[name]
    return {
        "format": "sparsecircuits-frontier-point/1", "name": name, "kind": kind,
        "family": "dense" if kind == "dense" else f"sparse, width x{e}", "expansion": e, "d_model": 64 * e,
        "target_density": k, "afrac": 0.25, "nonzeros": nz, "tokens": 1000, "val_loss": loss,
        "run": f"points/{name}/run", "evaluation": {t: {"loss": 0.1, "accuracy": 1.0, "solved": True} for t in TASKS},
        "tasks": TASKS,
        "circuits": {t: {"n_nodes": edges // 4, "n_edges": edges, **status, "circuit": f"points/{name}/circuits/{t}",
                         "report": f"points/{name}/reports/{t}.html"} for t, (edges, status) in circuits.items()},
        "reuse": REUSE if name == "sparse-e1-k0.25" else None,
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A partial sweep: 7 evaluated points, one planned in sweep.json only, one folder without point.json."""
    root = tmp_path / "sweep"
    for name in POINTS:
        (root / "points" / name).mkdir(parents=True)
        (root / "points" / name / "point.json").write_text(json.dumps(point_record(name)), encoding="utf-8")
    (root / "points" / "sparse-e1-k0.0625" / "run").mkdir(parents=True)
    planned = [*POINTS, "sparse-e1-k0.0625", "sparse-e2-k0.0625"]
    (root / "sweep.json").write_text(json.dumps({"points": planned}), encoding="utf-8")
    return root


def rows_by_name(points: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in frontier_table(points)["rows"]}


def test_points_are_sorted_by_family_then_loss(sweep):
    names = [p["name"] for p in load_points(sweep)]
    assert names == ["dense-e2", "dense-e1", "sparse-e1-k0.25", "sparse-e1-k0.125",
                     "sparse-e2-k0.5", "sparse-e2-k0.25", "sparse-e2-k0.125"]


def test_bad_folders_and_files_are_input_errors(tmp_path, sweep):
    with pytest.raises(InputError, match="not a folder"):
        load_points(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a frontier sweep folder"):
        load_points(tmp_path / "empty")
    file = sweep / "points" / "dense-e1" / "point.json"
    file.write_text("{broken", encoding="utf-8")
    with pytest.raises(InputError, match="point.json is not valid JSON"):
        load_points(sweep)
    file.write_text(json.dumps({"format": "other/1"}), encoding="utf-8")
    with pytest.raises(InputError, match="is not a frontier point"):
        load_points(sweep)


def test_geomeans_keep_trusted_and_all_circuits_apart(sweep):
    rows = rows_by_name(load_points(sweep))
    r = rows["sparse-e2-k0.25"]  # t1 60 ok, t2 30 insufficient
    assert r["geomean_edges_all"] == pytest.approx(math.sqrt(60 * 30)) and r["n_tasks_all"] == 2
    assert r["geomean_edges_sufficient"] == pytest.approx(60) and r["n_tasks_sufficient"] == 1
    assert (r["n_failed"], r["n_insufficient"], r["failed"]) == (1, 1, True)
    r = rows["sparse-e2-k0.125"]  # t1 90 suspect (sufficient), t2 50 ok
    assert r["geomean_edges_sufficient"] == pytest.approx(math.sqrt(90 * 50)) == r["geomean_edges_all"]
    assert (r["n_failed"], r["n_insufficient"], r["failed"]) == (1, 0, True)
    r = rows["dense-e1"]
    assert r["geomean_edges_sufficient"] == pytest.approx(math.sqrt(1000 * 400))
    assert (r["n_failed"], r["n_insufficient"], r["failed"]) == (0, 0, False)
    assert rows["sparse-e2-k0.5"]["n_circuits"] == 1 and rows["sparse-e2-k0.5"]["n_tasks"] == 2
    assert rows["sparse-e2-k0.125"]["edges"]["t1"]["failed"] and not rows["sparse-e2-k0.125"]["edges"]["t2"]["failed"]


def test_matched_ratio_is_interpolated_in_log_space(sweep):
    m = {r["name"]: r for r in matched_ratios(load_points(sweep))["points"]}
    r = m["sparse-e1-k0.25"]  # loss 2.5, between dense-e2 (2.0) and dense-e1 (3.0)
    w = (math.log(2.5) - math.log(2.0)) / (math.log(3.0) - math.log(2.0))
    dense_t1 = math.exp((1 - w) * math.log(500) + w * math.log(1000))
    dense_t2 = math.exp((1 - w) * math.log(200) + w * math.log(400))
    assert r["bracket"] == {"lower": "dense-e2", "upper": "dense-e1", "weight": pytest.approx(w)}
    assert r["trusted"]["per_task"] == {"t1": pytest.approx(dense_t1 / 100), "t2": pytest.approx(dense_t2 / 50)}
    assert r["trusted"]["geomean_ratio"] == pytest.approx(math.sqrt(dense_t1 / 100 * dense_t2 / 50))
    assert r["trusted"]["spread"] == {"min": pytest.approx(dense_t2 / 50), "max": pytest.approx(dense_t1 / 100),
                                      "median": pytest.approx((dense_t1 / 100 + dense_t2 / 50) / 2)}
    assert r["all"]["geomean_ratio"] == pytest.approx(r["trusted"]["geomean_ratio"])
    assert interpolate_log(500, 1000, w) == pytest.approx(dense_t1)


def test_matched_ratio_leaves_out_untrusted_and_out_of_range(sweep):
    matched = matched_ratios(load_points(sweep))
    m = {r["name"]: r for r in matched["points"]}
    assert set(m) == {n for n, p in POINTS.items() if p[0] == "sparse"}
    out = m["sparse-e1-k0.125"]  # loss 3.5 > every dense loss: no extrapolation
    assert out["bracket"] is None and out["reason"] == OUTSIDE
    assert out["trusted"]["geomean_ratio"] is None and out["trusted"]["per_task"] == {"t1": None, "t2": None}
    assert out["trusted"]["reasons"] == {"t1": OUTSIDE, "t2": OUTSIDE}
    r = m["sparse-e2-k0.25"]  # t2 is insufficient: trusted uses t1 only, all uses both
    w = (math.log(2.4) - math.log(2.0)) / (math.log(3.0) - math.log(2.0))
    t1 = interpolate_log(500, 1000, w) / 60
    assert r["trusted"]["per_task"]["t1"] == pytest.approx(t1) and r["trusted"]["per_task"]["t2"] is None
    assert "sufficiency" in r["trusted"]["reasons"]["t2"] and r["trusted"]["n_tasks"] == 1
    assert r["all"]["geomean_ratio"] == pytest.approx(math.sqrt(t1 * interpolate_log(200, 400, w) / 30))
    fam = matched["families"]["sparse, width x1"]["trusted"]
    assert fam["n_points"] == 1 and fam["points_total"] == 2
    assert fam["geomean_ratio"] == pytest.approx(m["sparse-e1-k0.25"]["trusted"]["geomean_ratio"])
    assert len(matched["statements"]) == 2 and "x1" in matched["statements"][0]


def test_widening_verdicts_at_equal_nonzeros(sweep):
    w = widening_effect(load_points(sweep))
    pairs = {(p["narrow"], p["wide"]): p for p in w["pairs"]}
    assert set(pairs) == {("sparse-e1-k0.25", "sparse-e2-k0.25"), ("sparse-e1-k0.125", "sparse-e2-k0.125")}
    a = pairs["sparse-e1-k0.25", "sparse-e2-k0.25"]  # loss 2.4 < 2.5; trusted t1 only: 60 / 100
    assert a["lower_left"] is True and a["edge_ratio"] == pytest.approx(0.6) and a["n_tasks"] == 1
    assert a["loss_change"] == pytest.approx(-0.1) and a["matched_by"] == "nonzeros"
    b = pairs["sparse-e1-k0.125", "sparse-e2-k0.125"]  # better loss, 90/80 and 50/40 edges
    assert b["lower_left"] is False and b["edge_ratio"] == pytest.approx(math.sqrt(90 / 80 * 50 / 40))
    assert b["verdict"] == "better loss, but more edges"
    assert (w["n_pairs"], w["n_lower_left"]) == (2, 1) and "1 of 2" in w["statement"]
    dense_only = [p for p in load_points(sweep) if p["kind"] == "dense"]
    assert widening_effect(dense_only)["statement"].startswith("no comparable pairs")


def test_equal_nonzeros_falls_back_on_target_density(sweep):
    points = load_points(sweep)
    for p in points:
        p["nonzeros"] = None
    pairs = widening_effect(points)["pairs"]
    assert len(pairs) == 2 and {p["matched_by"] for p in pairs} == {"target_density"}


def test_missing_points_and_circuits_are_listed(sweep):
    miss = missing_points(sweep, load_points(sweep))
    assert [m["name"] for m in miss["points"]] == ["sparse-e1-k0.0625", "sparse-e2-k0.0625"]
    assert miss["circuits"] == [{"point": "sparse-e2-k0.5", "task": "t2", "reason": "circuit not made yet"}]


def test_report_files_are_written_and_parse(sweep):
    paths = write_frontier_report(sweep)
    assert set(paths) == {"json", "md", "png", "svg", "html"}
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["format"] == fr.REPORT_FORMAT and len(data["table"]["rows"]) == len(POINTS)
    assert data["reuse"] == [{"name": "sparse-e1-k0.25", "family": "sparse, width x1", "n_tasks": 2,
                              "mean_node_jaccard": pytest.approx(0.3), "mean_edge_jaccard": pytest.approx(0.1)}]
    assert [m["name"] for m in data["missing"]["points"]] == ["sparse-e1-k0.0625", "sparse-e2-k0.0625"]
    md = paths["md"].read_text(encoding="utf-8")
    for text in ("## Points", "| sparse-e2-k0.25 |", "## Dense/sparse edges at matched loss", OUTSIDE,
                 "## Widening at equal nonzeros", "1 of 2", "## Circuit reuse", "0.300", "point sparse-e2-k0.0625",
                 "![frontier](frontier.png)"):
        assert text in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths["svg"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    assert '"kind":"frontier"' in html
    assert not [p.name for p in sweep.iterdir() if ".tmp-" in p.name]


def test_without_matplotlib_the_plot_is_skipped_with_a_note(sweep, monkeypatch):
    monkeypatch.setattr(fr, "_have_matplotlib", lambda: False)
    paths = write_frontier_report(sweep)
    assert set(paths) == {"json", "md", "html"}
    assert not (sweep / "frontier.png").exists()
    assert "matplotlib is not installed" in paths["md"].read_text(encoding="utf-8")


@pytest.mark.browser
@pytest.mark.skipif(_missing, reason=INSTALL)
def test_frontier_page_draws_one_marker_per_point(sweep, browser):  # noqa: F811
    paths = write_frontier_report(sweep)
    p = Page(browser, paths["html"])
    page = p.page
    chart = page.locator('svg[data-chart="frontier"]')
    assert chart.count() == 1
    markers = chart.locator(".frontier-point")
    assert markers.count() == len(POINTS)
    for name in POINTS:
        assert chart.locator(f'.frontier-point[data-point="{name}"]').count() == 1
    hollow = {m.get_attribute("data-point") for m in chart.locator('.frontier-point[data-failed="1"]').all()}
    assert hollow == {"sparse-e2-k0.25", "sparse-e2-k0.125"}
    assert {m.get_attribute("fill") for m in chart.locator('.frontier-point[data-failed="1"]').all()} == {"#fff"}
    assert "#fff" not in {m.get_attribute("fill") for m in chart.locator('.frontier-point[data-failed="0"]').all()}
    assert "2 point(s) with a circuit that failed" in page.locator(".frontier-legend").text_content()
    assert page.locator('svg[data-chart="frontier-task"]').count() == len(TASKS)
    assert page.locator('.frontier-task-point[data-task="t2"]').count() == len(POINTS) - 1
    assert page.locator("#frontier-table tr[data-point]").count() == len(POINTS)
    assert page.locator("#matched-ratios tr[data-point]").count() == 5
    assert OUTSIDE in page.locator('#matched-ratios tr[data-point="sparse-e1-k0.125"]').text_content()
    assert page.locator('.reuse-matrix[data-model="sparse-e1-k0.25"]').count() == 3
    assert "1 of 2" in page.locator("#summary .frontier-widening").text_content()
    assert page.locator("#missing li").count() == 3
    assert page.evaluate(WIDEST) == {"scroll": 1400, "bad": []}
    assert p.errors == [] and p.dialogs == []
    page.close()
