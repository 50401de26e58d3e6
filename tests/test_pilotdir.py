"""Pilot directories: private, locked while their pilot lives, collected once it is dead (SPEC 4.2).

"Dead" and "alive" are real processes here: a pilot that created its
directory and exited, and one that still holds its lock in a subprocess.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ospool_ep import pilotdir
from ospool_ep.pilotdir import LOCK_NAME, PREFIX, UNLOCKED_GRACE_SECONDS

CREATE_AND_HOLD = """
import sys
from pathlib import Path
from ospool_ep import pilotdir
pilotdir.create(root=Path(sys.argv[1]), pilot_id=sys.argv[2])
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
"""


def lock_is_free(lock: Path) -> bool:
    """Whether another open file description can take the lock right now."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def dead_pilot(root: Path, pilot_id: str) -> Path:
    """A directory made by a pilot process that has exited since (its lock file stays behind)."""
    subprocess.run(
        [sys.executable, "-c", CREATE_AND_HOLD, str(root), pilot_id],
        input="",
        check=True,
        capture_output=True,
        text=True,
    )
    path = root / f"{PREFIX}{pilot_id}"
    assert (path / LOCK_NAME).exists()
    return path


@pytest.fixture
def live_pilot(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A directory whose pilot process is still running and holding the lock."""
    process = subprocess.Popen(
        [sys.executable, "-c", CREATE_AND_HOLD, str(tmp_path), "alive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    yield tmp_path / f"{PREFIX}alive", process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_create_makes_a_private_directory_holding_a_lock_with_our_pid(tmp_path: Path) -> None:
    """0700, so other uids on a shared /pilot see nothing; the lock is held as long as we live."""
    directory = pilotdir.create(root=tmp_path, pilot_id="abc")
    try:
        assert directory.path == tmp_path / "ospool-ep-abc"
        assert stat.S_IMODE(directory.path.stat().st_mode) == 0o700
        lock = directory.path / LOCK_NAME
        assert lock.read_text() == f"{os.getpid()}\n"
        assert not lock_is_free(lock)
        assert os.get_inheritable(directory.lock_fd) is False
    finally:
        directory.remove()


def test_a_second_create_with_the_same_id_fails(tmp_path: Path) -> None:
    """Two pilots never share a directory; the first one's is left as it was."""
    first = pilotdir.create(root=tmp_path, pilot_id="same")
    try:
        with pytest.raises(FileExistsError):
            pilotdir.create(root=tmp_path, pilot_id="same")
        assert not lock_is_free(first.path / LOCK_NAME)
    finally:
        first.remove()


def test_remove_deletes_the_directory_and_lets_go_of_the_lock(tmp_path: Path) -> None:
    """After remove() the directory is gone and the lock no longer held."""
    directory = pilotdir.create(root=tmp_path, pilot_id="gone")
    probe = os.open(directory.path / LOCK_NAME, os.O_RDWR)  # keeps the inode after rmtree
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)

        directory.remove()

        assert not directory.path.exists()
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
        with pytest.raises(OSError):
            os.fstat(directory.lock_fd)
    finally:
        os.close(probe)


def test_collect_stale_removes_the_directory_of_a_pilot_that_exited(tmp_path: Path) -> None:
    """The kernel dropped the dead pilot's lock; its directory (and what jobs left there) goes."""
    dead = dead_pilot(tmp_path, "dead")
    (dead / "execute").mkdir()
    (dead / "execute" / "leftover").write_text("job output")

    assert pilotdir.collect_stale(root=tmp_path).removed == (dead,)
    assert not dead.exists()


def test_collect_stale_keeps_a_directory_whose_pilot_still_runs(
    tmp_path: Path, live_pilot: tuple[Path, subprocess.Popen[str]]
) -> None:
    """A live pilot's directory is never touched; once that pilot exits it is collected."""
    path, process = live_pilot

    assert pilotdir.collect_stale(root=tmp_path, now=time.time() + 10 * 24 * 3600).removed == ()
    assert (path / LOCK_NAME).exists()

    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=5)
    assert pilotdir.collect_stale(root=tmp_path).removed == (path,)


def test_collect_stale_keeps_a_fresh_directory_without_a_lock_file(tmp_path: Path) -> None:
    """No lock file yet may be a pilot being created right now: left alone for an hour."""
    fresh = tmp_path / f"{PREFIX}being-created"
    fresh.mkdir()

    assert pilotdir.collect_stale(root=tmp_path).removed == ()
    almost = time.time() + UNLOCKED_GRACE_SECONDS - 60
    assert pilotdir.collect_stale(root=tmp_path, now=almost).removed == ()
    assert fresh.exists()


def test_collect_stale_removes_an_old_directory_without_a_lock_file(tmp_path: Path) -> None:
    """Past the grace period a directory without a lock file is a leftover, not a pilot starting."""
    old = tmp_path / f"{PREFIX}old"
    old.mkdir()

    removed = pilotdir.collect_stale(root=tmp_path, now=time.time() + UNLOCKED_GRACE_SECONDS + 60)

    assert removed.removed == (old,)
    assert not old.exists()


def test_collect_stale_ignores_symlinks_files_and_names_not_ours(tmp_path: Path) -> None:
    """Only real directories named ospool-ep-*; a symlink's target (elsewhere) is never removed."""
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = dead_pilot(elsewhere, "target")
    (root / f"{PREFIX}link").symlink_to(target)
    foreign = dead_pilot(root, "x").rename(root / "not-a-pilot")
    (root / f"{PREFIX}file").write_text("a file, not a directory")

    assert pilotdir.collect_stale(root=root, now=time.time() + 10 * 24 * 3600).removed == ()
    assert target.exists()
    assert foreign.exists()
    assert (root / f"{PREFIX}file").exists()


def test_collect_stale_keeps_the_directory_it_is_told_to_keep(tmp_path: Path) -> None:
    """``keep`` is spared even when its lock is free; other dead pilots still go."""
    kept = dead_pilot(tmp_path, "kept")
    other = dead_pilot(tmp_path, "other")

    assert pilotdir.collect_stale(root=tmp_path, keep=kept).removed == (other,)
    assert kept.exists()


def test_collect_stale_does_not_follow_a_lock_file_that_is_a_symlink(tmp_path: Path) -> None:
    """A lock that is a symlink is not ours to judge: the directory stays."""
    odd = tmp_path / f"{PREFIX}odd"
    odd.mkdir()
    (tmp_path / "real-lock").write_text("")
    (odd / LOCK_NAME).symlink_to(tmp_path / "real-lock")

    assert pilotdir.collect_stale(root=tmp_path).removed == ()
    assert odd.exists()
