"""`sparsecircuits demo` in reduced modes: every output exists and parses, the summary lists
the pruned tasks, sizes are compared, bad input exits 2."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

import sparsecircuits.experiments.demo as demo
from sparsecircuits.checkpoint import pack_checkpoint
from sparsecircuits.cli import main
from sparsecircuits.data.shards import TokenShards

TASK = "single_double_quote"


class _Page(HTMLParser):
    """Collects the embedded data script, tables and section ids of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.data_text: str | None = None
        self.sections: list[str] = []
        self.tables = 0
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("id") == "data":
            self._in_data, self.data_text = True, ""
        if tag == "section" and a.get("id"):
            self.sections.append(a["id"])
        self.tables += tag == "table"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_data = False

    def handle_data(self, data):
        if self._in_data:
            self.data_text += data


def parse_page(path: Path) -> tuple[_Page, dict]:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.data_text, f"{path} has no embedded data script"
    return page, json.loads(page.data_text)


@pytest.fixture(scope="module")
def fake_bundle(tmp_path_factory, small_corpus_dir):
    """A bundle folder like the package's, with tiny sparse and dense models packed into it."""
    from sparsecircuits.train import train

    root = tmp_path_factory.mktemp("bundle")
    for kind, preset in (("small-sparse", "tiny-sparse"), ("small-dense", "tiny-dense")):
        run = train(preset, small_corpus_dir, root / f"run-{kind}", overrides=["model.n_ctx=128"], progress=False)
        pack_checkpoint(run.out_dir, root / "bundled" / kind, val_corpus=small_corpus_dir)
    return root / "bundled"


@pytest.fixture
def use_fake_bundle(fake_bundle, monkeypatch, tmp_path):
    """The demo runs on the tiny packed models."""
    monkeypatch.setattr(demo, "bundled_root", lambda: fake_bundle)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return fake_bundle


@pytest.fixture
def use_bundle(request, monkeypatch, tmp_path):
    """The package's bundled models when installed, else the tiny packed models."""
    if not demo.bundled_available():
        return request.getfixturevalue("use_fake_bundle")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return demo.bundled_root()


@pytest.mark.slow
def test_reduced_demo_writes_parseable_outputs(use_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--tasks", TASK, "--steps", "20", "--pairs", "8", "--report-pairs", "4",
            "--snippet-tokens", "4096", "--eval-pairs", "8", "--controls", "random_circuits", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"{TASK:<28} sparse" in printed and f"{TASK:<28} dense" in printed
    assert f"index: {out / 'index.html'}" in printed

    page, data = parse_page(out / "index.html")
    assert data["kind"] == "index"
    assert [e["task"] for e in data["circuits"]] == [TASK, TASK]
    assert {"demo-summary", "demo-comparison", "demo-evaluation"} <= set(page.sections)
    for entry in data["circuits"]:
        report, rdata = parse_page(out / entry["href"])
        assert rdata["kind"] == "circuit" and rdata["task"]["name"] == TASK
        assert rdata["validation"]["settings"]["controls"] == ["random_circuits"]
        assert rdata["nodes"] and rdata["nodes"][0]["acts"] is not None, "per-node details computed"
    for kind in ("sparse", "dense"):
        folder = out / "circuits" / TASK / kind
        circuit = json.loads((folder / "circuit.json").read_text(encoding="utf-8"))
        validation = json.loads((folder / "validation.json").read_text(encoding="utf-8"))
        assert circuit["task"]["name"] == TASK and circuit["pruning"]["steps"] == 20
        assert validation["verdict"]["status"] in ("ok", "suspect", "insufficient")
        assert Path(circuit["model"]["path"]) == use_bundle / f"small-{kind}"

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["settings"]["workers"] == min(2, os.cpu_count() or 1)
    assert list(summary["evaluation"]["sparse"]) == [TASK]
    assert summary["pruned_tasks"] == [TASK]
    (row,) = summary["comparison"]["rows"]
    by_kind = {c["kind"]: c for c in summary["circuits"]}
    assert row["sparse_edges"] == by_kind["sparse"]["n_edges"]
    assert row["dense_edges"] == by_kind["dense"]["n_edges"]
    for kind in ("sparse", "dense"):  # the verdict and the sufficiency check come from validation.json
        validation = json.loads((out / "circuits" / TASK / kind / "validation.json").read_text(encoding="utf-8"))
        sufficiency = next(c for c in validation["verdict"]["checks"] if c["name"] == "sufficiency")
        assert row[f"{kind}_verdict"] == validation["verdict"]["status"]
        assert row[f"{kind}_sufficient"] == sufficiency["passed"] == by_kind[kind]["sufficient"]
    # the side-by-side page: both circuits, their sizes as in summary.json, linked from the index
    assert summary["compare_pages"] == {TASK: f"reports/{TASK}-compare.html"}
    assert f'href="reports/{TASK}-compare.html"' in (out / "index.html").read_text(encoding="utf-8")
    _, cdata = parse_page(out / "reports" / f"{TASK}-compare.html")
    assert cdata["kind"] == "compare" and [s["label"] for s in cdata["sides"]] == ["sparse", "dense"]
    for side in cdata["sides"]:
        assert side["data"]["circuit"]["n_edges"] == by_kind[side["label"]]["n_edges"]
        assert (out / "reports" / side["href"]).is_file()
    in_headline = summary["comparison"]["trusted"]["n_tasks"] == 1
    assert in_headline == (TASK not in summary["comparison"]["trusted"]["left_out"])
    for kind, card in summary["models"].items():
        assert card["nonzeros"]["all"]["nonzero"] > 0
        val = TokenShards.open(use_bundle / f"small-{kind}" / "corpus-val").info["val"]
        # the loaded (float16-bigram) model on the training run's own validation windows, or,
        # where only a sample of the split was shipped, on windows of that sample
        tolerance = 0.15 if "sample_of" in val else 0.01
        assert card["val_loss"] == pytest.approx(card["val_loss_at_training"], abs=tolerance)
    # a second run into the same folder replaces the first
    assert main(args + ["--no-dense"]) == 0
    assert not (out / "circuits" / TASK / "dense").exists()
    assert sorted(p.name for p in (out / "reports").iterdir()) == [f"{TASK}-sparse.html"]


def test_demo_when_no_task_is_solved(use_fake_bundle, tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["demo", "--out", str(out), "--eval-pairs", "4", "--no-dense", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "the sparse model solves no task" in printed
    page, data = parse_page(out / "index.html")
    assert data["circuits"] == []
    assert "demo-evaluation" in page.sections and "demo-comparison" not in page.sections
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["evaluation"]["sparse"]) == 20 and summary["circuits"] == []
    assert not (out / "reports").exists()


def test_bad_input_exits_2(use_fake_bundle, tmp_path, capsys, monkeypatch):
    assert main(["demo", "--out", str(tmp_path / "a"), "--tasks", "no_such_task"]) == 2
    assert "unknown task(s) no_such_task" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "b"), "--controls", "bogus"]) == 2
    assert main(["demo", "--out", str(tmp_path / "c"), "--steps", "0"]) == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me", encoding="utf-8")
    assert main(["demo", "--out", str(busy), "--tasks", TASK]) == 2
    assert "not a demo folder (it holds precious.txt)" in capsys.readouterr().err
    assert (busy / "precious.txt").read_text(encoding="utf-8") == "keep me"
    monkeypatch.setattr(demo, "bundled_root", lambda: tmp_path / "empty")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert "--from-scratch" in capsys.readouterr().err


def test_compare_sizes_and_geometric_mean():
    def c(task, kind, edges, met=True, sufficient=True):
        return {"task": task, "kind": kind, "n_nodes": edges + 1, "n_edges": edges, "target_met": met,
                "verdict": "ok" if sufficient else "insufficient", "sufficient": sufficient}

    circuits = [c("a", "sparse", 10), c("a", "dense", 160), c("b", "sparse", 40), c("b", "dense", 160),
                c("x", "sparse", 5), c("x", "dense", 50, met=False, sufficient=False),
                c("y", "sparse", 10), c("y", "dense", 1000, sufficient=False),
                c("z", "sparse", 10), c("z", "dense", 2000)]
    solved = {"sparse": dict.fromkeys("abxyz", True), "dense": {**dict.fromkeys("abxy", True), "z": False}}
    result = demo.compare(circuits, ["a", "b", "x", "y", "z"], solved)
    assert [r["edge_ratio"] for r in result["rows"]] == [16.0, 4.0, 10.0, 100.0, 200.0]
    assert result["all"]["n_tasks"] == 4  # x: the dense circuit misses the target
    trusted = result["trusted"]
    assert trusted["n_tasks"] == 2  # the headline: only a and b
    assert trusted["geomean_edges_sparse"] == pytest.approx(20.0)
    assert trusted["geomean_edges_dense"] == pytest.approx(160.0)
    assert trusted["geomean_ratio"] == pytest.approx(8.0)
    assert trusted["left_out"] == {"x": "the dense circuit fails sufficiency on held-out pairs",
                                   "y": "the dense circuit fails sufficiency on held-out pairs",
                                   "z": "the dense model does not solve it"}
    assert result["all"]["geomean_ratio"] == pytest.approx((16 * 4 * 100 * 200) ** 0.25)
    assert demo.geometric_mean([]) is None
    assert demo.geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert demo.compare([], [])["trusted"]["n_tasks"] == 0


def test_circuit_reuse_per_model_kind_in_task_order(tmp_path):
    from planted_model import PLANTED_NODES, MarkerTask, circuit_from_nodes, planted_model
    from sparsecircuits.prune import PruneConfig

    model, config = planted_model(), PruneConfig(ablation="zero")
    small = {"attn_in": [0], "attn_v": [0], "attn_out": [4]}  # 3 of the 7 planted nodes
    made = [("b", "sparse", PLANTED_NODES), ("a", "sparse", small), ("a", "dense", small)]
    for task, kind, nodes in made:
        circuit_from_nodes(model, nodes, MarkerTask(task), config).save(tmp_path / "circuits" / task / kind)
    rows = [{"task": task, "kind": kind} for task, kind, _ in made]
    reuse = demo.circuit_reuse(tmp_path, ["a", "b"], rows)
    assert list(reuse) == ["sparse"], "a model with one circuit has nothing to compare"
    sparse = reuse["sparse"]
    assert sparse["tasks"] == ["a", "b"] and sparse["n_nodes"] == [3, 7]
    assert sparse["node_share"] == [[1.0, 1.0], [pytest.approx(3 / 7), 1.0]]
    assert demo.circuit_reuse(tmp_path, ["a"], rows) == {}
    summary = {"models": {}, "notes": [], "comparison": None, "evaluation": {"sparse": {}},
               "settings": {"target_loss": 0.15}, "reuse": reuse}
    _, data = parse_page(demo.write_index(tmp_path, summary, []))
    assert data["reuse"] == json.loads(json.dumps(reuse))


def test_choose_tasks_rules():
    ev = {"a": {"loss": 0.1, "solved": True}, "b": {"loss": 0.05, "solved": True},
          "c": {"loss": 0.6, "solved": False}, "d": {"loss": None, "solved": False, "error": "too long"}}
    assert demo.choose_tasks(ev, demo.DemoConfig())[0] == ["b", "a"]
    assert demo.choose_tasks(ev, demo.DemoConfig(max_tasks=1))[0] == ["b"]
    unsolved = {k: {**v, "solved": False} for k, v in ev.items()}
    chosen, notes = demo.choose_tasks(unsolved, demo.DemoConfig())
    assert chosen == [] and "solves no task" in notes[0]
    chosen, notes = demo.choose_tasks(unsolved, demo.DemoConfig(from_scratch=True))
    assert chosen == ["b", "a"] and "anyway" in notes[0]


@pytest.mark.slow
def test_from_scratch_trains_tiny_models_and_prunes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "scratch-demo"
    args = ["demo", "--from-scratch", "--out", str(out), "--tasks", TASK, "--steps", "10", "--pairs", "8",
            "--eval-pairs", "8", "--controls", "none", "--workers", "1", "--no-progress"]
    assert main(args) == 0
    for kind in ("sparse", "dense"):
        assert (out / "scratch" / f"tiny-{kind}" / "model.safetensors").is_file()
        assert json.loads((out / "circuits" / TASK / kind / "validation.json").read_text(encoding="utf-8"))
        parse_page(out / "reports" / f"{TASK}-{kind}.html")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["models"]["sparse"]["name"] == "tiny-sparse"
    assert "pruned as asked although the sparse model does not solve" in capsys.readouterr().out
    assert main(args + ["--no-dense"]) == 0, "a second run into the same folder retrains and replaces"
