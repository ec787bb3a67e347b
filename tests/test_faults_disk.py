"""A full disk and a read-only folder: every command that writes exits 2 with a one-line
message, and leaves no temporary or half-written file behind.

The tests mount a small tmpfs (CI runs as root); where mounting is refused they are skipped
with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsecircuits.cli import main

SIZE_KB = 1024
# Commands that write their output at {out} on the small disk.
WRITERS = {
    "corpus build": "corpus build --max-files 20 --vocab-size 300 --no-progress --out {out}",
    "train": "train --config tiny-sparse --data {corpus} --no-progress train.steps=2 model.n_ctx=64 --out {out}",
    "prune": "prune --model {run} --task {task} --method attribution --no-minimal --pairs 8 --train-pairs 16 "
             "--no-progress --out {out}",
    "report": "report --circuit {circuit} --out {out}.html",
    "model pack": "model pack {run} --out {out}",
    "export-openai": "export-openai {run} --out {out}",
    "import-openai": "import-openai {export} --out {out}",
    "tasks eval": "tasks eval --model {run} --task {task} --out {out}.json",
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_KB}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); the disk tests need root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _run(line: str, world: dict[str, Path], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    words = [w.format(out=out, **{k: str(v) for k, v in world.items()}) for w in line.split()]
    rc = main(words)
    return rc, capsys.readouterr().err


def _entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


SMALL_OUTPUTS = ("tasks eval",)  # outputs that fit in a nearly full disk's 16 KB
DISK_CASES = [(command, free_kb) for command in sorted(WRITERS) for free_kb in (0, 16)
              if not (free_kb and command in SMALL_OUTPUTS)]


@pytest.mark.parametrize(("command", "free_kb"), DISK_CASES, ids=[f"{c}-{'full' if not f else 'nearly-full'}"
                                                                   for c, f in DISK_CASES])
def test_a_full_disk_is_a_clear_error_and_leaves_nothing(command: str, free_kb: int, small_disk: Path,
                                                         fuzz_world: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Full: the first write fails. Nearly full: the work runs and its last writes fail."""
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.fstat(fd).st_size < (SIZE_KB - free_kb) * 1024 and os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # full before the size asked for
        pass
    finally:
        os.close(fd)
    rc, err = _run(WRITERS[command], fuzz_world, small_disk / "out", capsys)
    lines = [line for line in err.strip().splitlines() if line.strip() and "%|" not in line]
    assert rc == 2, err[-800:]
    assert "Traceback" not in err
    assert "No space left on device" in lines[-1] and "error:" in lines[-1]
    left = _entries(small_disk)
    assert not [e for e in left if ".tmp-" in e], left  # no temporary file or folder survives
    if command == "train":  # a run folder keeps what resumes it; anything else is not written at all
        assert all(e == "filler" or e.startswith("out") for e in left)
    else:
        assert left == ["filler"], left


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_read_only_folder_is_refused_before_any_work(command: str, small_disk: Path, fuzz_world: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    rc, err = _run(WRITERS[command], fuzz_world, small_disk / "out", capsys)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == 2, err[-800:]
    assert len(lines) == 1 and "not writable" in lines[0] and str(small_disk) in lines[0], err
    assert _entries(small_disk) == []


def test_validate_refuses_a_read_only_circuit_folder_before_any_work(small_disk: Path, fuzz_world: dict[str, Path],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """validate writes validation.json into the circuit's folder: a read-only one is refused
    at once, given as the folder or as its circuit.json."""
    shutil.copytree(fuzz_world["circuit"], small_disk / "circuit")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for given in (small_disk / "circuit", small_disk / "circuit" / "circuit.json"):
        rc = main(["validate", "--circuit", str(given), "--controls", "none", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "not writable" in err[0] and str(small_disk / "circuit") in err[0]
    assert _entries(small_disk) == ["circuit", "circuit/circuit.json", "circuit/masks.safetensors"]
