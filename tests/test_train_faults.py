"""Training runs that meet faults: a second writer, a damaged or foreign resume, a failed first
run, a kill during a save, a diverging loss, Ctrl-C. Tiny models on the CPU."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecircuits.cli import main
from sparsecircuits.errors import InputError
from sparsecircuits.train import Trainer, TrainingInterrupted, load_run_config, train

BASE = ["train.steps=6", "train.checkpoint_every=2", "train.log_every=1", "train.eval_every=0",
        "train.keep_checkpoints=0"]
TIMINGS = {"step_time", "tokens_per_s", "wall_time", "seconds", "tokens_per_second"}


def _train(corpus: Path, out: Path, *overrides: str, resume: bool = False) -> int:
    argv = ["train", "--config", "tiny-sparse", "--data", str(corpus), "--out", str(out), "--no-progress"]
    return main([*argv, *(["--resume"] if resume else []), *BASE, *overrides])


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _training(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "training.json").read_text()).items() if k not in TIMINGS}


def _states(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "state").iterdir()) if (run / "state").is_dir() else []


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def finished(small_corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step run with states at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("faults") / "run"
    assert _train(small_corpus_dir, out) == 0
    assert _states(out) == ["step-00000002", "step-00000004", "step-00000006"]
    return out


# ---- 1. the run lock ----------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_trainer(small_corpus_dir: Path, tmp_path: Path) -> None:
    """While one Trainer holds RUN, a second one is refused, names the owner and touches nothing
    (not even an orphaned temp entry: only the lock holder may clean)."""
    out = tmp_path / "run"
    run = load_run_config("tiny-sparse", BASE)
    first = Trainer(run, small_corpus_dir, out, progress=False)
    orphan = out / ".metrics.jsonl.tmp-held"
    orphan.write_text("x")
    with pytest.raises(InputError) as err:
        Trainer(run, small_corpus_dir, out, progress=False)
    message = str(err.value)
    assert str(out) in message and f"pid {os.getpid()}" in message and socket.gethostname() in message
    assert (out / ".lock").exists() and orphan.exists()
    first.close()
    assert not (out / ".lock").exists()


def test_a_stale_lock_is_taken_over(small_corpus_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    pid = _dead_pid()
    (out / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))
    assert _train(small_corpus_dir, out) == 0
    err = capsys.readouterr().err
    assert f"pid {pid}" in err and "no longer running" in err and "taking it over" in err
    assert not (out / ".lock").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_lock_from_another_host_is_refused(small_corpus_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    lock = json.dumps({"pid": 1234, "host": "elsewhere.invalid", "started": "earlier"})
    (out / ".lock").write_text(lock)
    assert _train(small_corpus_dir, out) == 2
    err = capsys.readouterr().err
    assert "elsewhere.invalid" in err and "pid 1234" in err and f"delete {out / '.lock'}" in err
    assert (out / ".lock").read_text() == lock and sorted(os.listdir(out)) == [".lock"]


def test_the_lock_is_released_when_a_run_fails(small_corpus_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_step(self: Trainer):
        raise RuntimeError("a bug in step")

    monkeypatch.setattr(Trainer, "step", broken_step)
    with pytest.raises(RuntimeError, match="a bug in step"):
        train("tiny-sparse", small_corpus_dir, tmp_path / "run", overrides=BASE, progress=False)
    assert not (tmp_path / "run" / ".lock").exists()


def test_two_train_processes_on_one_out(small_corpus_dir: Path, tmp_path: Path) -> None:
    """Two `train` commands started together on one --out (different seeds): one trains, the
    other exits 2, and the run folder is the winner's alone."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(seed: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "sparsecircuits.cli", "train", "--config", "tiny-sparse", "--data",
             str(small_corpus_dir), "--out", str(out), "--no-progress", "train.steps=40",
             "train.checkpoint_every=10", f"train.seed={seed}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )

    procs = {seed: start(seed) for seed in (1, 2)}
    results = {seed: (p.wait(timeout=120), p.stderr.read()) for seed, p in procs.items()}
    assert sorted(rc for rc, _ in results.values()) == [0, 2], results
    winner = next(seed for seed, (rc, _) in results.items() if rc == 0)
    loser_err = next(err for rc, err in results.values() if rc == 2)
    assert "in use by another run" in loser_err or "already holds a training run" in loser_err, loser_err
    recorded = json.loads((out / "run_config.json").read_text())["train"]["seed"]
    trained = json.loads((out / "training.json").read_text())["recipe"]["train"]["seed"]
    assert recorded == trained == winner
    assert not (out / ".lock").exists()


def test_a_refused_resume_leaves_nothing_behind(small_corpus_dir: Path, tmp_path: Path) -> None:
    """The lock creates the run folder (and its parents); a run refused before writing
    anything removes them again."""
    assert _train(small_corpus_dir, tmp_path / "new" / "run", resume=True) == 2
    assert os.listdir(tmp_path) == []


# ---- 2. --resume refuses another recipe -----------------------------------------------------


def test_resume_refuses_another_seed(finished: Path, tmp_path: Path, small_corpus_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = shutil.copytree(finished, tmp_path / "run")
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert _train(small_corpus_dir, run, "train.seed=7", resume=True) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "seed: 0 -> 7" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


# ---- 3. a damaged newest state -------------------------------------------------------------


class _RunsCode:
    """A pickle that, if loaded without weights_only, would create the folder `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _empty_optimizer(state: Path) -> None:
    (state / "optimizer.pt").write_bytes(b"")


class _Custom:
    """A class of this module: unpickling it means importing and building Python objects."""

    def __init__(self) -> None:
        self.state = {"lr": 0.1}


def _custom_class_optimizer(state: Path) -> None:
    torch.save({"optimizer": _Custom(), "torch_rng": torch.get_rng_state()}, state / "optimizer.pt")


def _code_running_optimizer(state: Path) -> None:
    with open(state / "optimizer.pt", "wb") as fh:
        pickle.dump({"optimizer": _RunsCode(state.parent.parent / "code-ran"), "torch_rng": None}, fh, protocol=2)


def _trainer_json_missing_key(state: Path) -> None:
    record = json.loads((state / "trainer.json").read_text())
    del record["sampler"]
    (state / "trainer.json").write_text(json.dumps(record))


def _truncated_weights(state: Path) -> None:
    weights = state / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


DAMAGE = {
    "empty-optimizer": (_empty_optimizer, "optimizer.pt"),
    "custom-class-optimizer": (_custom_class_optimizer, "optimizer.pt"),
    "code-running-optimizer": (_code_running_optimizer, "optimizer.pt"),
    "trainer-json-missing-key": (_trainer_json_missing_key, "sampler"),
    "truncated-safetensors": (_truncated_weights, "model.safetensors"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_falls_back_past_a_damaged_state(damage: str, finished: Path, tmp_path: Path,
                                                small_corpus_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """With the step-6 state damaged, --resume warns in one line and continues from step 4 to
    the same model; the damaged state is replaced. Loading runs no code."""
    run = shutil.copytree(finished, tmp_path / "run")
    plant, named = DAMAGE[damage]
    plant(run / "state" / "step-00000006")
    assert _train(small_corpus_dir, run, resume=True) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipped state" in line]
    assert len(warnings) == 1, warnings
    assert "step-00000006" in warnings[0] and named in warnings[0] and "resuming from step 4" in warnings[0]
    assert not (run / "code-ran").exists()
    assert _same_weights(run, finished)
    assert _metrics(run) == _metrics(finished)
    assert (run / "state" / "step-00000006" / "optimizer.pt").stat().st_size > 0


def test_resume_fails_when_no_state_loads(finished: Path, tmp_path: Path, small_corpus_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = shutil.copytree(finished, tmp_path / "run")
    for state in _states(run):
        _empty_optimizer(run / "state" / state)
    assert _train(small_corpus_dir, run, resume=True) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"no saved state under {run / 'state'} loads" in err and "step-00000002: optimizer.pt" in err
    assert not (run / ".lock").exists()


# ---- 4. a run that failed before its first checkpoint ---------------------------------------


def test_a_run_that_failed_before_its_first_checkpoint_starts_over(
    small_corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A diverged first run saved nothing: --resume says to run without it, and the same --out
    without --resume (a sane lr now) trains from scratch, with no rows of the failed run; a
    finished run is still refused."""
    out = tmp_path / "run"
    assert _train(small_corpus_dir, out, "train.lr=1e30", "train.checkpoint_every=0") == 2
    assert (out / "run_config.json").exists() and _states(out) == []
    assert _train(small_corpus_dir, out, "train.lr=1e30", "train.checkpoint_every=0", resume=True) == 2
    assert "run the same command without --resume" in capsys.readouterr().err
    assert _train(small_corpus_dir, out) == 0
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "run_config.json").read_text())["train"]["lr"] == 1.28e-2
    assert _train(small_corpus_dir, out) == 2
    assert "already holds a training run" in capsys.readouterr().err


# ---- 5. orphans of a killed save -----------------------------------------------------------


def test_orphaned_temp_entries_are_removed_on_resume(finished: Path, tmp_path: Path,
                                                     small_corpus_dir: Path) -> None:
    run = shutil.copytree(finished, tmp_path / "run")
    shutil.rmtree(run / "state" / "step-00000006")
    planted = [
        run / "state" / ".step-00000006.tmp-k9x2",
        run / ".final-staging",
        run / ".model.safetensors.tmp-a1b2",
        run / ".metrics.jsonl.tmp-c3d4",
    ]
    for path in planted[:2]:
        (path / "model").mkdir(parents=True)
        (path / "model" / "config.json").write_text("{}")
    for path in planted[2:]:
        path.write_bytes(b"partial")
    assert _train(small_corpus_dir, run, resume=True) == 0
    assert not [p for p in planted if p.exists()]
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert _states(run) == ["step-00000002", "step-00000004", "step-00000006"]


# ---- 6. resumed metrics equal an uninterrupted run's ----------------------------------------


@pytest.mark.parametrize(("checkpoint_every", "log_every", "stop_at"), [(3, 2, 10), (2, 5, 7)])
def test_resumed_metrics_are_identical(checkpoint_every: int, log_every: int, stop_at: int,
                                       small_corpus_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted at `stop_at` (the last checkpoint holds a half-filled logging window) and
    resumed, a run writes the metrics rows and training.json of an uninterrupted one."""
    overrides = [*BASE, "train.steps=12", f"train.checkpoint_every={checkpoint_every}",
                 f"train.log_every={log_every}", "train.eval_every=4"]
    straight = train("tiny-sparse", small_corpus_dir, tmp_path / "straight", overrides=overrides,
                     progress=False)
    step = Trainer.step

    def interrupted_step(self: Trainer):
        if self.step_count == stop_at:
            raise KeyboardInterrupt
        return step(self)

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", interrupted_step)
        with pytest.raises(TrainingInterrupted) as stop:
            train("tiny-sparse", small_corpus_dir, out, overrides=overrides, progress=False)
    last = stop_at // checkpoint_every * checkpoint_every
    assert (stop.value.step, stop.value.checkpoint) == (stop_at, last)
    assert last % log_every, "the checkpoint must fall inside a logging window"
    resumed = train("tiny-sparse", small_corpus_dir, out, resume=True, overrides=overrides, progress=False)
    assert resumed.final_train_loss == straight.final_train_loss
    assert _metrics(out) == _metrics(straight.out_dir)
    assert _training(out) == _training(straight.out_dir)
    assert _same_weights(out, straight.out_dir)


# ---- 7. divergence -------------------------------------------------------------------------


def test_a_diverging_run_stops_without_saving_non_finite_weights(
    small_corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(small_corpus_dir, out, "train.lr=1e30", "train.checkpoint_every=1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"training diverged at step \d+ \(", err) and "lower train.lr" in err, err
    assert not (out / "model.safetensors").exists() and not (out / ".lock").exists()
    for state in _states(out):
        weights = load_file(str(out / "state" / state / "model" / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in weights.values()), state
    assert all(row["train_loss"] == row["train_loss"] < float("inf") for row in _metrics(out))


def test_a_non_finite_loss_stops_the_run_at_its_step(small_corpus_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(small_corpus_dir, tmp_path / "run", "train.lr=1e30", "train.checkpoint_every=0") == 2
    assert "training diverged at step 2 (loss nan)" in capsys.readouterr().err


def test_a_checkpoint_refuses_non_finite_weights(small_corpus_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(load_run_config("tiny-sparse", BASE), small_corpus_dir, tmp_path / "run", progress=False)
    trainer.step()
    with torch.no_grad():
        trainer.model.embed.weight[0, 0] = float("inf")
    with pytest.raises(InputError, match=r"diverged at step 1 \(non-finite weights in embed.weight\)"):
        trainer.checkpoint()
    trainer.close()
    assert _states(tmp_path / "run") == []


def test_an_infinite_lr_is_refused(small_corpus_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(small_corpus_dir, tmp_path / "run", "train.lr=inf") == 2
    assert "train.lr must be finite" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---- 8. Ctrl-C -----------------------------------------------------------------------------


def test_ctrl_c_before_the_first_checkpoint(small_corpus_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted_step(self: Trainer):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "step", interrupted_step)
    out = tmp_path / "run"
    assert _train(small_corpus_dir, out) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 0; this was before the first checkpoint, so {out} holds no saved state" in err
    assert "start it over with: sparsecircuits train --config tiny-sparse" in err and "--resume" not in err
    assert not (out / ".lock").exists()


def test_sigint_keeps_the_last_checkpoint_and_says_how_to_resume(small_corpus_dir: Path,
                                                                 tmp_path: Path) -> None:
    """SIGINT to a real `train` process after its first checkpoint: exit 130, and the message
    names the step, the kept checkpoint and the command that continues the run."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "sparsecircuits.cli", "train", "--config", "tiny-sparse", "--data",
            str(small_corpus_dir), "--out", str(out), "--no-progress", "train.steps=100000",
            "train.checkpoint_every=5", "train.eval_every=0"]
    # (a shell without job control starts background jobs with SIGINT ignored, and Python
    # keeps an ignored SIGINT ignored: give the child the default, as a terminal would)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / "state" / "step-00000005").is_dir() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    found = re.search(r"interrupted at step (\d+); the last checkpoint \(step (\d+)\) is kept in (\S+); "
                      r"continue with: (.+)$", err.strip().splitlines()[-1])
    assert found, err
    step, kept = int(found[1]), int(found[2])
    assert kept >= 5 and kept % 5 == 0 and kept <= step <= kept + 5 and found[3] == str(out)
    assert _states(out)[-1] == f"step-{kept:08d}"
    again = shlex.split(found[4])
    assert again[:2] == ["sparsecircuits", "train"] and "--resume" in again
    assert again[again.index("--out") + 1] == str(out) and "train.steps=100000" in again
    assert not (out / ".lock").exists()
