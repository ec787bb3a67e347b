"""kill -9 at random moments of a training run, and in the middle of its checkpoint saves:
after each kill `--resume` continues, and the finished run equals one that was never
killed, bit for bit in the weights and field for field in metrics.jsonl and training.json
(timings aside), for checkpoint intervals that are and are not multiples of the log
interval. No state is ever unloadable and no temporary entry survives.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

STEPS = 24
TIMINGS = {"step_time", "tokens_per_s", "wall_time", "seconds", "tokens_per_second"}
# kills per run, alternately at a random moment and while a state is being written
# (benchmarks/bench_reliability.py runs more)
KILLS = int(os.environ.get("SPARSECIRCUITS_KILLS", "4"))


def _argv(corpus: Path, out: Path, every: tuple[int, int], resume: bool) -> list[str]:
    checkpoint_every, log_every = every
    return [sys.executable, "-m", "sparsecircuits.cli", "train", "--config", "tiny-sparse", "--data", str(corpus),
            "--out", str(out), "--no-progress", *(["--resume"] if resume else []), f"train.steps={STEPS}",
            f"train.checkpoint_every={checkpoint_every}", f"train.log_every={log_every}", "train.eval_every=0",
            "train.keep_checkpoints=2", "model.n_ctx=64"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _saving(out: Path) -> bool:
    """Whether a state is being written right now (its temporary folder exists)."""
    state = out / "state"
    return state.is_dir() and any(".tmp-" in p.name for p in state.iterdir())


def _logged_step(out: Path) -> int:
    """The last step metrics.jsonl holds (0 before the first row; a row being written is skipped)."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [0]
    for line in lines:
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError):
            continue
    return max(steps)


def _kill_once(argv: list[str], out: Path, rng: random.Random, during_save: bool, log_every: int) -> str | None:
    """Start `argv`; kill -9 it at a random moment: a random step after the one it resumes
    from, plus up to 50 ms (or, with `during_save`, as soon as it writes a state). The moment
    is counted in the run's own steps, so it lands before the end on a fast machine as on a
    slow one. Returns where it was killed ("save" or "step"), None when it finished first."""
    later = [s for s in range(log_every, STEPS, log_every) if s > _logged_step(out)]
    target = rng.choice(later) if later else STEPS
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if (_saving(out) if during_save else _logged_step(out) >= target):
                break
            time.sleep(0.002)
        if not during_save:
            time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is not None:
            return None
        where = "save" if _saving(out) else "step"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return where
    finally:
        proc.kill()


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _training(run: Path) -> dict:
    record = json.loads((run / "training.json").read_text())
    return {k: v for k, v in record.items() if k not in TIMINGS and k != "data_dir"}


@pytest.mark.slow
@pytest.mark.parametrize("every", [(3, 2), (4, 4), (5, 3)], ids=lambda e: f"checkpoint{e[0]}-log{e[1]}")
def test_a_run_killed_again_and_again_ends_as_if_never_killed(every: tuple[int, int], small_corpus_dir: Path,
                                                              tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = subprocess.run(_argv(small_corpus_dir, reference, every, resume=False), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rng = random.Random(sum(every))
    kills: list[str] = []
    for attempt in range(KILLS):
        started = (killed / "state").is_dir() and any((killed / "state").glob("step-*"))
        argv = _argv(small_corpus_dir, killed, every, resume=started)
        where = _kill_once(argv, killed, rng, attempt % 2 == 1, every[1])  # (its lock is taken over)
        kills += [where] if where else []
    started = (killed / "state").is_dir() and any((killed / "state").glob("step-*"))
    done = subprocess.run(_argv(small_corpus_dir, killed, every, resume=started), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(kills) >= 2, "the run finished before it could be killed: raise STEPS"
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(killed) == _metrics(reference)
    assert _training(killed) == _training(reference)
    leftovers = [p for p in killed.rglob("*") if ".tmp-" in p.name or p.name == ".lock"]
    assert leftovers == []
    print(f"kills: {len(kills)} ({kills.count('save')} during a save), resume bit-identical")
