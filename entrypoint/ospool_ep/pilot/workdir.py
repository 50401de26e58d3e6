"""Pilot directories: one private, locked directory per pilot under PILOT_DIR (SPEC 4.2).

Several pilots may share one ``/pilot`` (a host volume, a node's scratch).
Each holds an exclusive ``flock`` on ``<dir>/.lock`` for as long as it lives;
a directory whose lock can be taken belongs to a dead pilot and is removed.
A live pilot's directory is never touched: the kernel drops the lock only when
its holder dies.

Removal (:func:`remove_tree`) must get rid of what jobs leave: directories of
mode 000 or 0500 (``shutil.rmtree(ignore_errors=True)`` silently leaves those),
trees deeper than any fd budget, symlinks pointing anywhere. It works through
directory fds, never follows a symlink, never crosses into another filesystem,
and says how much it could not remove.

:func:`check_disk` checks, before any of that, that PILOT_DIR itself is a
writable directory with the free space the site asked for (SPEC 8).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ospool_ep.findings import Findings, Kind

PREFIX = "ospool-ep-"
LOCK_NAME = ".lock"
UNLOCKED_GRACE_SECONDS = 3600
"""A directory without a lock file may be a pilot that is being created right now."""
MAX_DEPTH = 64
"""Directory fds held open at once while removing; deeper subtrees are moved up first."""

KEPT_LOGS_DIR = "log"
"""Under PILOT_DIR: ``log/<pilot id>/``, the daemon logs of ended pilots (:func:`keep_logs`)."""
KEEP_LOGS = 3
"""Ended pilots whose logs are kept: each is at most (1 + MAX_NUM_DEFAULT_LOG) x
MAX_DEFAULT_LOG per daemon log (10-daemons.conf.j2: 30 MB)."""

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@dataclass(frozen=True)
class Removal:
    """What :func:`remove_tree` did to one directory."""

    path: Path
    left: int = 0
    """Entries it could not remove (a directory it could not enter counts once)."""
    error: str | None = None
    """The first error met, in words."""

    @property
    def complete(self) -> bool:
        return self.left == 0


@dataclass(frozen=True)
class Collection:
    """What :func:`collect_stale` did. Iterating it yields ``removed`` (as the list it once was)."""

    removed: tuple[Path, ...] = ()
    failed: tuple[Removal, ...] = ()
    """Dead pilots' directories it could not remove entirely."""

    def __iter__(self) -> Iterator[Path]:
        return iter(self.removed)


@dataclass
class PilotDirectory:
    path: Path
    lock_fd: int

    def remove(self) -> Removal:
        """Keep its daemon logs (:func:`keep_logs`), delete the directory, let go of the lock."""
        try:
            keep_logs(self.path, root=self.path.parent)
            return remove_tree(self.path)
        finally:
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


def collect_stale(*, root: Path, keep: Path | None = None, now: float | None = None) -> Collection:
    """Remove directories of dead pilots under ``root``; say what was removed and what not."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    failed: list[Removal] = []
    for candidate in sorted(root.glob(f"{PREFIX}*")):
        if candidate == keep or candidate.is_symlink() or not candidate.is_dir():
            continue
        if _is_stale(candidate, now=now):
            keep_logs(candidate, root=root)
            result = remove_tree(candidate)
            if result.complete:
                removed.append(candidate)
            else:
                failed.append(result)
    return Collection(tuple(removed), tuple(failed))


def _is_stale(path: Path, *, now: float) -> bool:
    fd = _open_lock(path)
    if fd is None:
        return False
    if fd < 0:  # no lock file
        try:
            return now - path.stat().st_mtime > UNLOCKED_GRACE_SECONDS
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live pilot holds it
    finally:
        # Closing drops our probe lock; removal happens right after, and a new
        # pilot never reuses a directory name (each has a fresh UUID).
        os.close(fd)
    return True


def _open_lock(path: Path) -> int | None:
    """An fd of ``path``'s lock file; -1 when there is none; None when it is not ours to judge.

    A job (it runs as our uid) may have taken the permissions off its pilot's
    directory or lock file: when they are ours, they are given back first.
    """
    for attempt in (1, 2):
        try:
            return os.open(path / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return -1
        except PermissionError:
            if attempt == 2 or not _give_back_modes(path):
                return None
        except OSError:
            return None  # a symlink (ELOOP), another uid's pilot, ...
    return None


def _give_back_modes(path: Path) -> bool:
    """Give our own ``path`` (a directory) and its lock file their modes back; True if done."""
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        if st.st_uid != os.geteuid() or not stat.S_ISDIR(st.st_mode):
            return False
        _chmod_nofollow(parent, path.name, 0o700, expect=st)
        directory = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:
        return False
    finally:
        os.close(parent)
    try:
        lock = os.stat(LOCK_NAME, dir_fd=directory, follow_symlinks=False)
        if lock.st_uid == os.geteuid() and stat.S_ISREG(lock.st_mode):
            _chmod_nofollow(directory, LOCK_NAME, 0o600, expect=lock)
    except OSError:
        pass  # none, or not ours: judged as such by the caller
    finally:
        os.close(directory)
    return True


# -- logs for a post-mortem ----------------------------------------------------------


def keep_logs(path: Path, *, root: Path, keep: int = KEEP_LOGS) -> Path | None:
    """Move pilot directory ``path``'s daemon logs to ``root/log/<pilot id>``; where, or None.

    As upstream keeps /pilot/log: what the daemons wrote survives the pilot (a
    dead one's too, when the next pilot collects it). Only the plain, visible
    files go: HTCondor's dot files there (``.startd_claim_id``, addresses) name
    capabilities, and the logs never hold a token. Bounded: each file by the
    pilot's MAX_DEFAULT_LOG rotation, and only the ``keep`` newest pilots' are kept.
    Best effort: what cannot be kept is removed with the directory.
    """
    kept = root / KEPT_LOGS_DIR
    try:
        source = path / "log"
        if not stat.S_ISDIR(source.lstat().st_mode):
            return None
        if not kept.is_symlink():
            kept.mkdir(mode=0o755, exist_ok=True)
        st = kept.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return None  # a symlink, or another uid's: not ours to write in
        for entry in source.iterdir():
            if entry.name.startswith(".") or not stat.S_ISREG(entry.lstat().st_mode):
                remove_tree(entry)
        destination = kept / path.name.removeprefix(PREFIX)
        source.rename(destination)
        os.utime(destination)
    except OSError:
        return None
    _prune(kept, keep=keep)
    return destination


def _prune(kept: Path, *, keep: int) -> None:
    """Remove all but the ``keep`` newest of our own kept log directories."""
    ours: list[tuple[float, Path]] = []
    for entry in kept.iterdir():
        try:
            st = entry.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            ours.append((st.st_mtime, entry))
    for _, old in sorted(ours, reverse=True)[keep:]:
        remove_tree(old)


# -- free space ------------------------------------------------------------------------


def check_disk(*, path: Path, min_gb: float, findings: Findings) -> int | None:
    """Check the scratch directory exists, is writable and has ``min_gb`` GiB free.

    Returns the free space in MiB (for the slot's Disk), or ``None`` when the
    directory cannot be used at all. Failures are environment FAILs (exit 69).
    """
    subject = "PILOT_DIR"
    fix_mount = "mount a volume at /pilot (-v /some/dir:/pilot) or set PILOT_DIR to a directory"
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        findings.fail(subject, f"{path} {what}", fix_mount, kind=Kind.ENVIRONMENT)
        return None
    # os.access alone is not enough: root passes it on any mode bits, and a
    # read-only mount or a full inode table only shows when a file is created.
    writable = os.access(path, os.W_OK | os.X_OK)
    reason = "permission denied"
    if writable:
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".ospool-ep-write-test-"):
                pass
        except OSError as err:
            writable = False
            reason = err.strerror or type(err).__name__
    if not writable:
        findings.fail(
            subject,
            f"{path} is not writable by uid {os.geteuid()} ({reason})",
            f"chown {path} to uid {os.geteuid()} on the host, or {fix_mount}",
            kind=Kind.ENVIRONMENT,
        )
        return None
    try:
        st = os.statvfs(path)
    except OSError as err:
        findings.fail(
            subject,
            f"cannot read free space of {path}: {err.strerror}",
            fix_mount,
            kind=Kind.ENVIRONMENT,
        )
        return None
    # f_bavail: blocks free to unprivileged users (excludes root's reserve), in f_frsize units.
    free = st.f_bavail * st.f_frsize
    free_gb = free / _GIB
    if free_gb < min_gb:
        findings.fail(
            subject,
            f"{path} has {free_gb:.1f} GB free, less than MIN_DISK_GB={min_gb:g}",
            f"mount a bigger volume at {path} or lower MIN_DISK_GB",
            kind=Kind.ENVIRONMENT,
        )
    else:
        findings.passed(
            subject,
            f"{path} has {free_gb:.1f} GB free (MIN_DISK_GB={min_gb:g})",
            kind=Kind.ENVIRONMENT,
        )
    return free // _MIB


# -- removal ---------------------------------------------------------------------------


def _chmod_nofollow(dir_fd: int, name: str, mode: int, *, expect: os.stat_result) -> None:
    """chmod ``name`` in ``dir_fd`` if it is still the ``expect`` inode; never a symlink's target.

    Linux has no fchmodat(AT_SYMLINK_NOFOLLOW) before 6.6: an O_PATH fd, opened
    without following, is chmod-ed through its /proc/self/fd link (as glibc does).
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (expect.st_dev, expect.st_ino) or stat.S_ISLNK(st.st_mode):
            raise FileNotFoundError(f"{name} was replaced while being removed")
        os.chmod(f"/proc/self/fd/{fd}", mode)  # noqa: PTH101 - an fd's magic link, on purpose
    finally:
        os.close(fd)


@dataclass
class _Walk:
    top: int
    """The fd of the directory being removed: deep subtrees are moved up into it."""
    device: int
    left: int = 0
    error: str | None = None
    pending: list[str] = field(default_factory=list)

    def failed(self, where: str, error: OSError | str) -> None:
        self.left += 1
        if self.error is None:
            reason = (error.strerror or str(error)) if isinstance(error, OSError) else error
            self.error = f"{where}: {reason}"


def remove_tree(path: Path) -> Removal:
    """Remove ``path`` and everything below it, giving our directories u+rwx on the way down.

    Never follows a symlink (it is removed, not its target), never leaves ``path``
    (no ``..``; every step is relative to an open directory fd), never enters another
    filesystem mounted inside. Not removable (another uid's, immutable, a mount
    point): counted in ``left``, the rest still goes.
    """
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        return Removal(path, left=1, error=f"{path.parent}: {error.strerror}")
    try:
        st = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        walk = _Walk(top=-1, device=st.st_dev)
        if stat.S_ISDIR(st.st_mode):
            _remove_directory(parent, path.name, st, walk, depth=0, where=str(path))
        else:
            _delete(parent, path.name, walk, where=str(path))
    except FileNotFoundError:
        return Removal(path)
    except OSError as error:
        return Removal(path, left=1, error=f"{path}: {error.strerror}")
    finally:
        os.close(parent)
    return Removal(path, walk.left, walk.error)


def _remove_directory(
    dir_fd: int, name: str, st: os.stat_result, walk: _Walk, *, depth: int, where: str
) -> None:
    try:
        fd = _enter(dir_fd, name, st)
    except OSError as error:
        walk.failed(where, error)
        return
    before = walk.left
    try:
        if depth == 0:
            walk.top = fd
        _empty(fd, walk, depth=depth + 1, where=where)
        while depth == 0 and walk.pending:
            moved = walk.pending.pop()
            _remove(fd, moved, walk, depth=1, where=f"{where}/{moved}")
    finally:
        os.close(fd)
    if walk.left == before:
        _delete(dir_fd, name, walk, where=where, directory=True)


def _enter(dir_fd: int, name: str, st: os.stat_result) -> int:
    """Open directory ``name`` (the ``st`` inode) for removing what is in it: u+rwx first."""
    if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
        _chmod_nofollow(dir_fd, name, 0o700, expect=st)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise FileNotFoundError(f"{name} was replaced while being removed")
    return fd


def _empty(fd: int, walk: _Walk, *, depth: int, where: str) -> None:
    try:
        names = os.listdir(fd)
    except OSError as error:
        walk.failed(where, error)
        return
    for name in names:
        _remove(fd, name, walk, depth=depth, where=f"{where}/{name}")


def _remove(dir_fd: int, name: str, walk: _Walk, *, depth: int, where: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as error:
        walk.failed(where, error)
        return
    if not stat.S_ISDIR(st.st_mode):
        _delete(dir_fd, name, walk, where=where)
    elif st.st_dev != walk.device:
        walk.failed(where, "another filesystem is mounted there")
    elif depth >= MAX_DEPTH:
        _move_up(dir_fd, name, walk, where=where)
    else:
        _remove_directory(dir_fd, name, st, walk, depth=depth, where=where)


def _move_up(dir_fd: int, name: str, walk: _Walk, *, where: str) -> None:
    """Too deep to hold one more fd: move it to the top (still inside the tree), for later."""
    moved = f".ospool-ep-removing-{secrets.token_hex(8)}"
    try:
        os.rename(name, moved, src_dir_fd=dir_fd, dst_dir_fd=walk.top)
    except OSError as error:
        walk.failed(where, error)
        return
    walk.pending.append(moved)


def _delete(dir_fd: int, name: str, walk: _Walk, *, where: str, directory: bool = False) -> None:
    """Unlink ``name`` (rmdir it, if ``directory``); gone already is done, other errors count."""
    try:
        if directory:
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        walk.failed(where, error)
