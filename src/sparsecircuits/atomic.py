"""Atomic writes: every artifact is built under a temporary name beside its target and
renamed into place, so a failure never leaves a half-written file or folder.

Everything renamed into place gets the permissions a plain `open`/`mkdir` would (the umask
applies), not the private 0600/0700 of `tempfile`, nor that of writers which make their own
private temporary file and rename it (safetensors' `save_file` leaves 0600 files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sparsecircuits.errors import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_permissions(path: Path, umask: int) -> None:
    """Give `path` the mode `open`/`mkdir` would: 0777 for folders and executables, else 0666, less the umask."""
    mode = path.stat().st_mode
    full = 0o777 if path.is_dir() or mode & 0o111 else 0o666
    os.chmod(path, full & ~umask)


def _normalize_tree(root: Path) -> None:
    """`_plain_permissions` on `root` and everything under it (symlinks are left alone)."""
    umask = _umask()
    _plain_permissions(root, umask)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            if not path.is_symlink():
                _plain_permissions(path, umask)


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _normalize_tree(tmp)
        if path.exists():
            if not overwrite:
                raise InputError(f"{path} already exists; choose another output path")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _plain_permissions(tmp, _umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file through a temporary name and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
