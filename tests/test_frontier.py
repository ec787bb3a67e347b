"""The frontier sweep: sweep files, points, the task rule, and the bundled tiny sweep run
through train -> interrupt -> resume -> circuits -> report, checked against its runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecircuits.cli import main
from sparsecircuits.errors import InputError
from sparsecircuits.experiments.frontier import (
    SweepPoint,
    choose_tasks,
    load_sweep,
    parse_shard,
    read_point,
    run_sweep,
)
from sparsecircuits.train import Trainer, TrainingInterrupted
from sparsecircuits.train.config import load_run_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


SWEEP = """
[sweep]
base = "tiny-sparse"
data = "corpus"
tokens = 4096
[sparse]
target_density = [0.5, 0.25]
expansion = [1, 2]
afrac = [0.25, 0.5]
[dense]
expansion = [1, 3]
"""


def test_points_hold_nonzeros_fixed_across_widths(tmp_path):
    sweep = load_sweep(_write(tmp_path, SWEEP))
    names = [p.name for p in sweep.points]
    assert len(names) == 2 * 2 * 2 + 2 and "sparse-e2-k0.25-a0.5" in names and names[-1] == "dense-e3"
    base = load_run_config("tiny-sparse")
    narrow = SweepPoint("sparse", 1, 0.25).run_config(base, 4096)
    wide = SweepPoint("sparse", 2, 0.25).run_config(base, 4096)
    assert (wide.model.d_model, wide.model.d_mlp, wide.model.n_head) == (64, 256, 4)
    assert wide.model.d_head == narrow.model.d_head == 16
    # matrices have 4x the entries at width x2 and keep a quarter of the fraction
    assert wide.train.target_density * 4 == narrow.train.target_density == 0.25
    assert narrow.train.steps == 4096 // (base.train.batch_size * base.model.n_ctx)
    dense = SweepPoint("dense", 3).run_config(base, 4096)
    assert dense.train.target_density == 1.0 and dense.model.d_model == 96
    assert sweep.data == (tmp_path / "corpus").resolve()


@pytest.mark.parametrize(("text", "match"), [
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\n[sparse]\ntarget_density=[0.5]", "tokens"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[1.5]", "target_density"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density='x'", "list"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[0.5]\n[tasks]\nrule='most'", "rule"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[0.5]\n[tasks]\nrule='listed'",
     "names"),
    ("[sweep]\nbase='no-such-preset'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[0.5]", "no-such-preset"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[0.5]\n[discovery]\nstep=3",
     "unknown"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[0.5, 0.5]", "same settings"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[sparse]\ntarget_density=[0.5]\n[discovery]\nsteps=0",
     "steps"),
    ("[sweep\n", "not valid TOML"),
    ("[sweep]\nbase='tiny-sparse'\ndata='c'\ntokens=10\n[points]\n", "unknown table"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        load_sweep(_write(tmp_path, text))


def test_shards_and_the_task_rule():
    assert parse_shard(None) == (1, 1) and parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x", "1/2/3"):
        with pytest.raises(InputError):
            parse_shard(bad)
    from sparsecircuits.experiments.frontier import Sweep

    sweep = Sweep(base="tiny-sparse", data=Path("."), tokens=1, points=(), task_names=("a", "b", "c"))
    solved = {"p": {"evaluation": {"a": {"solved": True}, "b": {"solved": True}}},
              "q": {"evaluation": {"a": {"solved": True}, "c": {"solved": True}}}}
    assert choose_tasks(sweep, solved) == {"p": ["a"], "q": ["a"]}
    assert choose_tasks(sweep, {**solved, "r": None}) is None  # all_solve waits for every point
    each = Sweep(base="tiny-sparse", data=Path("."), tokens=1, points=(), task_names=("a", "b", "c"), rule="each_solves")
    assert choose_tasks(each, {**solved, "r": None}) == {"p": ["a", "b"], "q": ["a", "c"]}


@pytest.mark.slow
def test_tiny_sweep_interrupted_resumes_and_reports(tmp_path, small_corpus_dir, monkeypatch, capsys):
    out = tmp_path / "sweep"
    step = Trainer.step

    def interrupted(self: Trainer):  # the second point stops after its step-10 checkpoint
        if self.step_count == 12 and "sparse-e2" in str(self.out_dir):
            raise KeyboardInterrupt
        return step(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", interrupted)
        with pytest.raises(TrainingInterrupted):
            run_sweep("tiny", out, data=small_corpus_dir, progress=False, log=lambda m: None)
    sweep = load_sweep("tiny", small_corpus_dir)
    first, second, dense = sweep.points
    assert read_point(out, first) is not None and read_point(out, second) is None
    assert not (out / "points" / dense.name).exists()
    before = (out / "points" / first.name / "run" / "training.json").read_bytes()

    # shard 2 of 2 holds the interrupted point: it resumes it and makes its circuits only
    assert main(["frontier", "run", "--sweep", "tiny", "--out", str(out), "--data", str(small_corpus_dir),
                 "--shard", "2/2", "--no-progress"]) == 0
    assert "every step done" in capsys.readouterr().out
    assert set(read_point(out, second)["circuits"]) == {"single_double_quote", "bracket_brace"}
    assert read_point(out, first)["circuits"] == {} and not (out / "points" / dense.name).exists()
    assert main(["frontier", "run", "--sweep", "tiny", "--out", str(out), "--data", str(small_corpus_dir),
                 "--no-progress"]) == 0
    assert (out / "points" / first.name / "run" / "training.json").read_bytes() == before  # not retrained
    metrics = (out / "points" / second.name / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in metrics if "train_loss" in json.loads(r)] == [5, 10, 15, 20]

    for point in sweep.points:
        record = read_point(out, point)
        training = json.loads((out / record["run"] / "training.json").read_text())
        assert record["val_loss"] == training["final_val_loss"] and record["tokens"] == training["tokens"]
        assert record["tasks"] == ["single_double_quote", "bracket_brace"]
        for task, row in record["circuits"].items():
            circuit = json.loads((out / row["circuit"] / "circuit.json").read_text())
            validation = json.loads((out / row["circuit"] / "validation.json").read_text())
            assert row["n_edges"] == len(circuit["edges"]) and row["verdict"] == validation["verdict"]["status"]
            assert (out / row["report"]).is_file(), task
        assert record["reuse"]["tasks"] == record["tasks"]
    assert main(["frontier", "report", str(out)]) == 0
    report = json.loads((out / "frontier.json").read_text())
    assert (out / "frontier.md").is_file() and (out / "frontier.html").is_file()
    rows = {r["name"]: r for r in report["table"]["rows"]}
    assert set(rows) == {p.name for p in sweep.points}
    for point in sweep.points:  # the table against the runs and the circuits
        record, row = read_point(out, point), rows[point.name]
        training = json.loads((out / record["run"] / "training.json").read_text())
        assert row["val_loss"] == training["final_val_loss"] and row["nonzeros"] == record["nonzeros"]
        assert row["n_circuits"] == 2 and row["n_insufficient"] == sum(
            not json.loads((out / c["circuit"] / "validation.json").read_text())["verdict"]["checks"][0]["passed"]
            for c in record["circuits"].values())
    assert report["missing"]["points"] == []


@pytest.mark.slow
def test_a_shard_waits_for_every_evaluation_under_the_all_solve_rule(tmp_path, small_corpus_dir, capsys):
    """Rule all_solve reads every point's evaluation: a shard that finishes first says which
    points it waits for and makes no circuit."""
    from sparsecircuits.experiments.frontier import sweep_file

    text = sweep_file("tiny").read_text().replace('rule = "listed"', 'rule = "all_solve"')
    out = tmp_path / "sweep"
    assert main(["frontier", "run", "--sweep", str(_write(tmp_path, text)), "--out", str(out), "--data",
                 str(small_corpus_dir), "--shard", "2/2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "waiting" in captured.out and "sparse-e1-k0.25" in captured.err and "dense-e1" in captured.err
    (point,) = [p for p in load_sweep(_write(tmp_path, text), small_corpus_dir).points if p.name == "sparse-e2-k0.25"]
    assert read_point(out, point)["circuits"] == {} and read_point(out, point)["tasks"] is None
