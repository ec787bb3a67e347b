"""Where a corpus build writes: the rule for an existing `--out` (the temp folders of killed
builds are `atomic.remove_orphans`'s)."""

from __future__ import annotations

from pathlib import Path

from sparsecircuits.errors import InputError

CORPUS_FILES = ("manifest.json", "shards.json")  # what makes a folder a corpus folder


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an existing `out_dir` unless `overwrite` and it is a corpus folder (or an empty
    folder): a file, or a folder of other things, is left untouched."""
    if not out_dir.exists():
        return
    if not overwrite:
        raise InputError(f"--out {out_dir} already exists; choose a new folder or use --force")
    if not out_dir.is_dir():
        kind = "a file"
    elif any(out_dir.iterdir()) and not all((out_dir / name).is_file() for name in CORPUS_FILES):
        kind = "a folder"
    else:
        return
    raise InputError(
        f"--out {out_dir} is {kind} but not a corpus folder; it is left untouched, choose another --out"
    )
