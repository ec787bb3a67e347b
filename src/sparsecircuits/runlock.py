"""A lock on an output folder, so that two commands never write into it at once.

`acquire_lock(folder)` creates `folder/.lock` with O_CREAT|O_EXCL (atomic on local and
NFSv3+ file systems), holding JSON with the owner's pid, host name and start time; the
returned `FolderLock` removes it on `release()`. A lock whose owner is on this host and no
longer running is stale: it is taken over, with a note on stderr. A live owner, or an owner
on another host (whose pid cannot be checked from here), makes `acquire_lock` refuse with
an InputError that names the folder, the owner and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparsecircuits.errors import InputError

LOCK_FILE = ".lock"
_READ_TRIES = 50  # an owner writes its JSON right after creating the file: retry for ~1 s


class FolderLock:
    """A held lock; `release()` removes the lock file, and the folders that taking it created
    as long as nothing else was written into them. Releasing twice is harmless."""

    def __init__(self, path: Path, owner: dict[str, Any], created: list[Path]) -> None:
        self.path, self.owner, self._created, self._held = path, owner, created, True

    def release(self) -> None:
        """Remove the lock file (once, only in the process that took it, not a fork, and only
        while it is still this owner's)."""
        if not self._held or os.getpid() != self.owner["pid"]:
            return
        self._held = False
        if _read_owner(self.path) == self.owner:
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # rmdir only succeeds while a folder is empty
            for folder in self._created:  # the run folder first, then its new parents
                folder.rmdir()


def host_tag() -> str:
    """A short tag of this host's name (what a temporary name records of its writer's host)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (True when it cannot be told)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The lock's JSON, or None while it is missing, empty or half-written."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(owner, dict) and isinstance(owner.get("host"), str)
    return owner if ok and isinstance(owner.get("pid"), int) and owner["pid"] > 0 else None


def _describe(owner: dict[str, Any]) -> str:
    return f"pid {owner['pid']} on host {owner['host']}, started {owner.get('started', '?')}"


def _check_stale(path: Path, owner: dict[str, Any], flag: str) -> None:
    """Raise InputError unless the lock's owner is dead (same host, pid not running)."""
    folder = path.parent
    if owner["host"] != socket.gethostname():
        raise InputError(
            f"{flag} {folder} is locked by a run on another host ({_describe(owner)}); wait for "
            f"it to finish, or if that run is dead, delete {path} and try again"
        )
    if pid_alive(owner["pid"]):
        raise InputError(
            f"{flag} {folder} is in use by another run ({_describe(owner)}); wait for it to "
            f"finish or choose another {flag}"
        )
    print(
        f"note: {path} was left by a run that is no longer running ({_describe(owner)}); taking it over",
        file=sys.stderr,
    )


def _remove_stale(path: Path, owner: dict[str, Any]) -> None:
    """Remove the lock file if it still holds `owner` (moved aside first, so that a new
    owner's lock created meanwhile is put back rather than deleted)."""
    aside = path.with_name(f".{path.name}.tmp-stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # someone else removed it
    if _read_owner(aside) != owner:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def acquire_lock(folder: str | Path, flag: str = "--out") -> FolderLock:
    """Lock `folder` (created if missing) for this process; `flag` names it in messages."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder} is a file; give a folder")
    created = list(itertools.takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for _ in range(_READ_TRIES):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is None:
                time.sleep(0.02)
                continue
            _check_stale(path, owner, flag)
            _remove_stale(path, owner)
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
        except BaseException:  # e.g. Ctrl-C right now: leave no empty lock behind
            path.unlink(missing_ok=True)
            raise
        return FolderLock(path, me, created)
    raise InputError(
        f"{flag} {folder} has a lock file {path} that is not a valid lock; if no run is using "
        "the folder, delete it and try again"
    )
