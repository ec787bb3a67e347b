"""What a command writes at `--out`, and the one rule for an existing `--out`: a new path
is written; an existing output of the same kind is replaced only when asked (`--force`);
anything else is refused and left untouched. Torch-free, so the CLI checks `--out` before
anything heavy loads; `corpus build` and the CLI share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparsecircuits.atomic import check_writable_parent
from sparsecircuits.errors import InputError


@dataclass(frozen=True)
class Artifact:
    """What a command writes at `--out`: a folder recognized by its `markers`, or a file.

    A folder holding any of `foreign` is another command's artifact (a training run holds a
    checkpoint's files too) and is never replaced.
    """

    name: str
    markers: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()
    is_dir: bool = True

    def holds(self, path: Path) -> bool:
        """Whether existing `path` is this artifact (or an empty folder)."""
        if not self.is_dir:
            return path.is_file()
        if not path.is_dir():
            return False
        if not any(path.iterdir()):
            return True
        return all((path / m).exists() for m in self.markers) and not any(
            (path / f).exists() for f in self.foreign
        )


CORPUS = Artifact("corpus folder", markers=("manifest.json", "shards.json"))
# The file names of each artifact, spelled here so that `--out` is checked before torch loads
# (tests/test_cli_flags.py checks them against the library's constants).
TRAINING_RUN_FILES = ("run_config.json", "state")
CHECKPOINT = Artifact(
    "checkpoint folder", markers=("config.json", "model.safetensors"), foreign=TRAINING_RUN_FILES
)
CIRCUIT = Artifact("circuit folder", markers=("circuit.json",))
REFERENCE = Artifact("reference checkpoint folder", markers=("beeg_config.json", "final_model.pt"))
FILE = Artifact("file", is_dir=False)


def check_out(out: str | Path, artifact: Artifact, force: bool) -> Path:
    """Apply the one `--out` rule: a new path is written; an existing output of this kind is
    replaced only with `--force`; anything else (a file where a folder goes, a folder of
    other things, a training run) is refused and left untouched."""
    path = Path(out)
    check_writable_parent(path, "--out")
    if not path.exists():
        return path
    if not artifact.holds(path):
        kind = "a folder" if path.is_dir() else "a file"
        raise InputError(
            f"--out {path} is {kind} but not a {artifact.name}; it is left untouched, "
            "choose another --out"
        )
    if not force:
        raise InputError(f"--out {path} already exists; pass --force to replace it, or choose another --out")
    return path
