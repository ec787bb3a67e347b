"""Atomic writes: every artifact is built under a temporary name beside its target and
renamed into place, so a failure never leaves a half-written file or folder.

Everything renamed into place gets the permissions a plain `open`/`mkdir` would (the umask
applies), not the private 0600/0700 of `tempfile`, nor that of writers which make their own
private temporary file and rename it (safetensors' `save_file` leaves 0600 files).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sparsecircuits.errors import InputError
from sparsecircuits.runlock import host_tag, pid_alive


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
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), dir=path.parent))
    try:
        yield tmp
        _normalize_tree(tmp)
        if path.exists():
            if not overwrite:
                raise InputError(f"{path} already exists; choose another output path")
            if not path.is_dir():
                raise InputError(f"{path} is a file, and a folder goes there; it is left untouched, "
                                 "choose another output path")
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
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(path.name), dir=path.parent)
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


def check_writable_parent(path: Path, flag: str) -> None:
    """Refuse, before any compute, a path that cannot be created: one under a regular file,
    or in a folder this process may not write to."""
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is a file, not a folder; choose another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: the folder {parent} is not writable; choose another {flag}")


def _temp_prefix(name: str) -> str:
    """`.NAME.tmp-PID-HOST-`: a temporary name that says which process writes it, so that a
    later run can tell a killed writer's leftovers from a live writer's (`remove_orphans`)."""
    return f".{name}.tmp-{os.getpid()}-{host_tag()}-"


_TEMP = re.compile(r"^\..+\.tmp-(\d+)-([0-9a-f]{8})-")


def remove_orphans(folder: str | Path, locked: bool = False) -> list[Path]:
    """Delete the temporary entries (`.NAME.tmp-*`) that writers killed before their rename
    left in `folder`: those whose writer, as the temporary name records it, is a process of
    this host that no longer runs. With `locked` (the caller holds the folder's lock, so no
    one else writes there) every temporary entry goes. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if not (entry.name.startswith(".") and ".tmp-" in entry.name[1:]):
            continue
        writer = _TEMP.match(entry.name)
        dead = writer is not None and writer.group(2) == host_tag() and not pid_alive(int(writer.group(1)))
        if locked or dead:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
