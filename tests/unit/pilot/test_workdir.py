"""Pilot directories: private, locked while their pilot lives, collected once it is dead (SPEC 4.2).

"Dead" and "alive" are real processes here: a pilot that created its
directory and exited, and one that still holds its lock in a subprocess.
PILOT_DIR's own check (writable, enough free space: SPEC 8) runs on real
directories too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import unprivileged
from leftovers import job_leftovers
from paths import SUPPORT

from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Finding, Findings, Kind, Status
from ospool_ep.pilot import hardening
from ospool_ep.pilot import workdir as pilotdir
from ospool_ep.pilot.workdir import LOCK_NAME, PREFIX, UNLOCKED_GRACE_SECONDS, check_disk

CREATE_AND_HOLD = """
import sys
from pathlib import Path
from ospool_ep.pilot import workdir as pilotdir
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


# -- what jobs leave behind ------------------------------------------------------------
#
# Mode bits do not stop root, so the removal runs in a process they do stop: uid 0
# without capabilities, or uid 65534 in a forked child (tests/unprivileged.py),
# undumpable like the supervisor that collects.

COLLECT = """
import json, sys
from pathlib import Path
from ospool_ep.pilot import hardening
from ospool_ep.pilot import workdir as pilotdir
assert hardening.make_undumpable() is None
found = pilotdir.collect_stale(root=Path(sys.argv[1]))
print(json.dumps({
    "removed": [str(path) for path in found.removed],
    "failed": [[str(r.path), r.left, r.error] for r in found.failed],
}))
"""


def collect_unprivileged(root: Path) -> dict[str, list[object]]:
    found: dict[str, list[object]] = unprivileged.python_json(COLLECT, str(root))
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the pilot root that no removal may touch: 000, with a file."""
    path = tmp_path / "outside"
    (path / "locked").mkdir(parents=True)
    (path / "locked" / "keep").write_text("not yours")
    (path / "locked").chmod(0)
    return path


def test_shutil_rmtree_alone_leaves_a_mode_000_tree_behind(tmp_path: Path) -> None:
    """Why collection does more: without privileges, rmtree(ignore_errors) keeps it all."""
    root = tmp_path / "pilot"
    root.mkdir()
    dead = dead_pilot(root, "dead")
    job_leftovers(dead, depth=3)
    code = "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)"
    subprocess.run([*unprivileged.command(), sys.executable, "-c", code, str(dead)], check=True)
    assert (dead / "execute").exists()


def test_collection_removes_mode_000_and_0500_leftovers_and_deep_trees(
    tmp_path: Path, outside: Path
) -> None:
    """Everything a dead pilot's jobs left goes, without privileges; a symlink out is
    removed as a link, and what it pointed at keeps its contents and its mode."""
    root = tmp_path / "pilot"
    root.mkdir()
    dead = dead_pilot(root, "dead")
    job_leftovers(dead)
    (dead / "execute").chmod(0o700)
    (dead / "execute" / "escape").symlink_to(outside)
    (dead / "execute" / "escape-locked").symlink_to(outside / "locked")
    (dead / "execute").chmod(0o500)

    found = collect_unprivileged(root)

    assert found == {"removed": [str(dead)], "failed": []}
    assert list(root.iterdir()) == []
    assert stat.S_IMODE((outside / "locked").stat().st_mode) == 0
    assert (outside / "locked" / "keep").read_text() == "not yours"


def test_collection_as_another_uid_fixes_modes_through_its_own_fds(tmp_path: Path) -> None:
    """The chmod goes through /proc/self/fd: it must work for an undumpable non-root uid
    (its /proc/self belongs to root then). Uid 65534, in a forked child (which can
    import nothing new: root's interpreter lies under a 0700 /root here)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to uid 65534")
    shared = Path(tempfile.mkdtemp(prefix="ospool-ep-test-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        root = shared / "pilot"
        root.mkdir()
        os.chown(root, unprivileged.NOBODY, unprivileged.NOBODY)

        def as_nobody() -> list[object]:
            dead = root / f"{PREFIX}dead"
            dead.mkdir(mode=0o700)
            job_leftovers(dead)
            assert hardening.make_undumpable() is None
            found = pilotdir.collect_stale(root=root, now=time.time() + 2 * UNLOCKED_GRACE_SECONDS)
            return [
                [str(p) for p in found.removed],
                len(found.failed),
                [p.name for p in root.iterdir()],
            ]

        removed, failed, left = unprivileged.as_user(unprivileged.NOBODY, as_nobody)
        assert removed == [str(root / f"{PREFIX}dead")]
        assert failed == 0
        assert left == []
    finally:
        shutil.rmtree(shared)


def test_collection_counts_what_it_cannot_remove_and_removes_the_rest(tmp_path: Path) -> None:
    """Another uid's directory inside (a job cannot make one; a site's mistake can): its
    file stays, counted and named; everything else of the dead pilot is gone."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another uid")
    root = tmp_path / "pilot"
    root.mkdir()
    dead = dead_pilot(root, "dead")
    job_leftovers(dead, depth=3)
    (dead / "execute").chmod(0o700)
    foreign = dead / "execute" / "foreign"
    foreign.mkdir()
    (foreign / "theirs").write_text("z")
    os.chown(foreign, unprivileged.NOBODY, unprivileged.NOBODY)

    found = collect_unprivileged(root)

    assert found == {
        "removed": [],
        "failed": [[str(dead), 1, f"{foreign}/theirs: Permission denied"]],
    }
    assert sorted(p.name for p in (dead / "execute").iterdir()) == ["foreign"]
    assert (foreign / "theirs").exists()


def test_a_dead_pilot_whose_own_directory_and_lock_a_job_made_000_is_collected(
    tmp_path: Path,
) -> None:
    """A job may chmod its pilot's directory and lock file (same uid): ours, so given back."""
    root = tmp_path / "pilot"
    root.mkdir()
    dead = dead_pilot(root, "dead")
    (dead / LOCK_NAME).chmod(0)
    dead.chmod(0)

    assert collect_unprivileged(root) == {"removed": [str(dead)], "failed": []}


def test_a_live_pilot_whose_directory_a_job_made_000_is_kept(
    tmp_path: Path, live_pilot: tuple[Path, subprocess.Popen[str]]
) -> None:
    """Its lock is still held: modes given back (0700, as made), nothing removed."""
    path, _ = live_pilot
    path.chmod(0)

    assert collect_unprivileged(tmp_path) == {"removed": [], "failed": []}
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert not lock_is_free(path / LOCK_NAME)


def test_a_tree_many_times_deeper_than_the_fd_budget_is_removed(tmp_path: Path) -> None:
    """Deep subtrees are moved up inside the tree, so open fds stay bounded."""
    directory = tmp_path / "deep"
    directory.mkdir()
    job_leftovers(directory, depth=pilotdir.MAX_DEPTH * 5)
    fds_before = len(list(Path("/proc/self/fd").iterdir()))

    removal = pilotdir.remove_tree(directory)

    assert removal == pilotdir.Removal(directory)
    assert not directory.exists()
    assert len(list(Path("/proc/self/fd").iterdir())) == fds_before


def test_the_pilots_own_directory_goes_at_exit_whatever_its_jobs_left(tmp_path: Path) -> None:
    """PilotDirectory.remove() uses the same removal, and says it is complete."""
    code = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from leftovers import job_leftovers
from ospool_ep.pilot import workdir as pilotdir
directory = pilotdir.create(root=Path(sys.argv[1]), pilot_id="mine")
job_leftovers(directory.path)
removal = directory.remove()
print(removal.complete, removal.left, directory.path.exists())
"""
    tests = str(SUPPORT)
    result = subprocess.run(
        [*unprivileged.command(), sys.executable, "-c", code, str(tmp_path), tests],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == "True 0 False\n"


def test_a_mount_inside_a_dead_pilots_directory_is_not_entered(tmp_path: Path) -> None:
    """A filesystem mounted inside (say a FUSE mount left behind) keeps its files; counted."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    root = tmp_path / "pilot"
    root.mkdir()
    dead = dead_pilot(root, "dead")
    mount = dead / "mnt"
    mount.mkdir()
    if subprocess.run(["/bin/mount", "-t", "tmpfs", "none", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mount / "file").write_text("on another filesystem")

        found = pilotdir.collect_stale(root=root)

        assert found.removed == ()
        assert found.failed == (
            pilotdir.Removal(dead, left=1, error=f"{mount}: another filesystem is mounted there"),
        )
        assert (mount / "file").exists()
    finally:
        subprocess.run(["/bin/umount", str(mount)], check=True)


def only(findings: Findings, subject: str) -> Finding:
    matching = [f for f in findings if f.subject == subject]
    assert len(matching) == 1, findings
    return matching[0]


# -- free space --------------------------------------------------------------------------------


def test_a_writable_directory_with_enough_space_passes(tmp_path: Path) -> None:
    """min_gb=0 always fits; the free space comes back in MB for the slot's Disk."""
    findings = Findings()
    free_mb = check_disk(path=tmp_path, min_gb=0, findings=findings)
    assert isinstance(free_mb, int)
    assert free_mb >= 0
    passed = only(findings, "PILOT_DIR")
    assert passed.status is Status.PASS
    assert str(tmp_path) in passed.message
    assert not list(tmp_path.iterdir()), "the write test leaves nothing behind"


def test_too_little_free_space_fails_naming_the_path(tmp_path: Path) -> None:
    """Below MIN_DISK_GB: environment FAIL naming the path, free vs required, and the fix."""
    findings = Findings()
    free_mb = check_disk(path=tmp_path, min_gb=1e9, findings=findings)
    assert isinstance(free_mb, int), "free space is still reported"
    failure = only(findings, "PILOT_DIR")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert str(tmp_path) in failure.message
    assert "GB free" in failure.message
    assert "MIN_DISK_GB=1e+09" in failure.message
    assert "bigger volume" in failure.fix
    assert "MIN_DISK_GB" in failure.fix
    assert findings.exit_code() is ExitCode.UNAVAILABLE


def test_a_missing_directory_fails(tmp_path: Path) -> None:
    """A PILOT_DIR that does not exist is an environment FAIL and no free space."""
    missing = tmp_path / "no" / "such" / "pilot"
    findings = Findings()
    assert check_disk(path=missing, min_gb=0, findings=findings) is None
    failure = only(findings, "PILOT_DIR")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert str(missing) in failure.message
    assert "does not exist" in failure.message


def test_a_file_instead_of_a_directory_fails(tmp_path: Path) -> None:
    """PILOT_DIR naming a regular file is not scratch space."""
    not_dir = tmp_path / "pilot"
    not_dir.write_text("")
    findings = Findings()
    assert check_disk(path=not_dir, min_gb=0, findings=findings) is None
    assert "not a directory" in only(findings, "PILOT_DIR").message


def test_a_directory_nobody_can_create_files_in_fails_even_for_root() -> None:
    """/proc passes os.access for root but refuses new files: the real write test catches it."""
    findings = Findings()
    assert check_disk(path=Path("/proc"), min_gb=0, findings=findings) is None
    failure = only(findings, "PILOT_DIR")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert "not writable" in failure.message


READ_ONLY = """
import json, sys
from pathlib import Path
from ospool_ep.findings import Findings
from ospool_ep.pilot.workdir import check_disk
findings = Findings()
free = check_disk(path=Path(sys.argv[1]), min_gb=0, findings=findings)
print(json.dumps([free, [(f.subject, f.message) for f in findings.failures]]))
"""


def test_a_read_only_directory_fails_for_a_normal_user(tmp_path: Path) -> None:
    """Mode 0555 stops an unprivileged pilot from using the directory (checked by a process
    without capabilities: root's would write there whatever the mode)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    free, failures = unprivileged.python_json(READ_ONLY, str(locked))
    assert free is None
    assert [message for subject, message in failures if subject == "PILOT_DIR"], failures
    assert all("not writable" in message for _, message in failures), failures
    assert list(locked.iterdir()) == []
