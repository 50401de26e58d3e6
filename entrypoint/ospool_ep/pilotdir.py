"""Pilot directories: one private, locked directory per pilot under PILOT_DIR (SPEC 4.2).

Several pilots may share one ``/pilot`` (a host volume, a node's scratch).
Each holds an exclusive ``flock`` on ``<dir>/.lock`` for as long as it lives;
a directory whose lock can be taken belongs to a dead pilot and is removed.
A live pilot's directory is never touched: the kernel drops the lock only when
its holder dies.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "ospool-ep-"
LOCK_NAME = ".lock"
UNLOCKED_GRACE_SECONDS = 3600
"""A directory without a lock file may be a pilot that is being created right now."""


@dataclass
class PilotDirectory:
    path: Path
    lock_fd: int

    def remove(self) -> None:
        """Delete the directory, then let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.lock_fd)


def create(*, root: Path, pilot_id: str) -> PilotDirectory:
    """Make ``root/ospool-ep-<pilot_id>`` (0700) and lock it. Raises OSError.

    The directory is made and locked under a name collection ignores, then
    renamed: another pilot's collection never sees it unlocked.
    """
    path = root / f"{PREFIX}{pilot_id}"
    if path.exists():
        raise FileExistsError(f"{path} exists")
    making = root / f".making-{pilot_id}"
    making.mkdir(mode=0o700)
    fd = os.open(making / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        making.rename(path)
    except OSError:
        os.close(fd)
        shutil.rmtree(making, ignore_errors=True)
        raise
    return PilotDirectory(path, fd)


def collect_stale(*, root: Path, keep: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove directories of dead pilots under ``root``; return what was removed."""
    now = time.time() if now is None else now
    removed = []
    for candidate in sorted(root.glob(f"{PREFIX}*")):
        if candidate == keep or candidate.is_symlink() or not candidate.is_dir():
            continue
        if _is_stale(candidate, now=now):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _is_stale(path: Path, *, now: float) -> bool:
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            return now - path.stat().st_mtime > UNLOCKED_GRACE_SECONDS
        except OSError:
            return False
    except OSError:
        return False  # not ours to judge (another uid's pilot, say)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live pilot holds it
    finally:
        # Closing drops our probe lock; removal happens right after, and a new
        # pilot never reuses a directory name (each has a fresh UUID).
        os.close(fd)
    return True
