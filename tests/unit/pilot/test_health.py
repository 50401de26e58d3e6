"""The published state file and the health verdicts read from it (SPEC 7.5).

State: round trip, world-readable mode, atomic replacement, withdrawal only
by its owner; trusted only where nobody else could have written it (files and
directories of other uids, symlinks, FIFOs, modes others can write; uids
switched in forked children, tests/unprivileged.py). Health: each liveness
and readiness verdict, with real processes standing in for the supervisor,
condor_master and condor_startd (a copy of /bin/sleep named ``condor_startd``),
and an explicit ``now``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import unprivileged

from ospool_ep.pilot import health, procfs
from ospool_ep.pilot import statefile as state
from ospool_ep.pilot.health import READY_FRESH_SECONDS, STALE_SECONDS
from ospool_ep.pilot.statefile import PublishedState

NOW = 1_700_000_000.0
OSPOOL_EP = Path(sys.executable).parent / "ospool-ep"


def snapshot(**changes: object) -> PublishedState:
    """A running pilot's state, published just now by this (live) process."""
    base = PublishedState(
        supervisor_pid=os.getpid(),
        master_pid=None,
        state="running",
        name="pilot-1@host",
        ready=False,
        ready_checked=None,
        updated=NOW,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def wait_for_pid(predicate: Callable[[], int | None], *, timeout: float = 5.0) -> int:
    """Poll until ``predicate`` names a pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError("timed out waiting for the process")


def is_zombie(pid: int) -> int | None:
    stat_line = Path(f"/proc/{pid}/stat").read_text()
    return pid if stat_line[stat_line.rfind(")") + 2] == "Z" else None


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    return child.pid


@pytest.fixture
def master_with_startd(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A stand-in condor_master (sh) with a child named condor_startd: (master, startd) pids."""
    startd = tmp_path / "condor_startd"
    startd.write_bytes(Path("/bin/sleep").read_bytes())
    startd.chmod(0o755)
    master = subprocess.Popen(["/bin/sh", "-c", f"{startd} 60 & wait"])
    startd_pid = wait_for_pid(lambda: procfs.child_named(master.pid, "condor_startd"))
    yield master.pid, startd_pid
    for pid in (startd_pid, master.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 9)
        except (OSError, ProcessLookupError):
            pass
    master.wait()


@pytest.fixture
def master_alone() -> Iterator[int]:
    """A stand-in condor_master with no children at all."""
    master = subprocess.Popen(["/bin/sleep", "60"])
    yield master.pid
    master.kill()
    master.wait()


# -- state ----------------------------------------------------------------------


def test_a_published_state_reads_back_equal(tmp_path: Path) -> None:
    """What the supervisor publishes is what health reads, field for field."""
    path = tmp_path / "deep" / "state.json"
    published = snapshot(master_pid=1234, ready=True, ready_checked=NOW - 5, state="draining")

    state.publish(path, published)

    started = procfs.start_time(os.getpid())
    assert state.read(path) == dataclasses.replace(published, supervisor_started=started)


def test_the_state_file_is_world_readable_and_nothing_more(tmp_path: Path) -> None:
    """0644: ``ospool-ep health`` works for any uid (a probe may run as another user)."""
    path = tmp_path / "state.json"
    state.publish(path, snapshot())

    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "no temporary file left"


WRITER = """
import sys, time
from pathlib import Path
from ospool_ep.pilot.statefile import PublishedState, publish
path = Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    publish(path, PublishedState(supervisor_pid=i, master_pid=None, state="running",
        name="p" * (i % 4000), ready=False, ready_checked=None, updated=time.time()))
"""


def test_a_reader_never_sees_a_partial_state_file(tmp_path: Path) -> None:
    """Replaced atomically: a probe reading during a write sees the old or the new state, not half.

    A writer process publishes 3000 states of varying size while we read in a loop.
    """
    path = tmp_path / "state.json"
    state.publish(path, snapshot())
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "3000"])
    reads = torn = 0
    while writer.poll() is None:
        got = state.read(path)
        reads += 1
        if got is None:
            torn += 1
    writer.wait()

    assert writer.returncode == 0
    assert reads > 100, "the reader should have overlapped the writer"
    assert torn == 0, f"{torn} of {reads} reads saw no valid state"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "no temporary file left"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '"running"',
        "null",
        '{"supervisor_pid": 1}',
        '{"supervisor_pid": 1, "master_pid": null, "state": "running", "name": "x", '
        '"ready": false, "ready_checked": null, "updated": 1.0, "extra": 1}',
    ],
    ids=["empty", "truncated", "list", "string", "null", "missing-fields", "unknown-field"],
)
def test_a_state_file_that_is_not_a_state_reads_as_none(tmp_path: Path, text: str) -> None:
    """Garbage is "no pilot here", never an exception in the health probe."""
    path = tmp_path / "state.json"
    path.write_text(text)

    assert state.read(path) is None


def test_a_missing_state_file_reads_as_none(tmp_path: Path) -> None:
    assert state.read(tmp_path / "absent.json") is None


def test_withdraw_removes_only_our_own_state(tmp_path: Path) -> None:
    """Another pilot may have replaced the file since; its state stays."""
    path = tmp_path / "state.json"
    state.publish(path, snapshot(supervisor_pid=111))

    state.withdraw(path, supervisor_pid=222)
    assert state.read(path) == snapshot(supervisor_pid=111)  # not us: no start time added

    state.withdraw(path, supervisor_pid=111)
    assert not path.exists()

    state.withdraw(path, supervisor_pid=111)  # already gone: no error


def test_the_state_path_defaults_to_tmp_and_follows_the_environment() -> None:
    """OSPOOL_EP_STATE_FILE moves it (several pilots on one node); empty means the default."""
    assert state.state_path({}) == Path("/tmp/ospool-ep/state.json")
    assert state.state_path({"OSPOOL_EP_STATE_FILE": ""}) == Path("/tmp/ospool-ep/state.json")
    assert state.state_path({"OSPOOL_EP_STATE_FILE": "/x/s.json"}) == Path("/x/s.json")


# -- trust ----------------------------------------------------------------------


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make files owned by another uid")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A 0755 directory in /tmp: reachable by uid 65534, unlike pytest's 0700 tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="ospool-ep-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_the_publisher_records_its_own_start_time(tmp_path: Path) -> None:
    """With the pid, the start time names one process for good: drain checks both."""
    path = tmp_path / "state.json"
    state.publish(path, snapshot())
    written = json.loads(path.read_text())
    assert written["supervisor_started"] == procfs.start_time(os.getpid())


def test_a_state_file_from_before_start_times_still_reads(tmp_path: Path) -> None:
    """An older supervisor's file (no supervisor_started) is a state; health still judges it."""
    path = tmp_path / "state.json"
    old = {k: v for k, v in dataclasses.asdict(snapshot()).items() if k != "supervisor_started"}
    path.write_text(json.dumps(old))
    found = state.read(path)
    assert found == snapshot()
    assert found is not None
    assert found.supervisor_started is None


def test_the_publisher_refuses_a_state_directory_of_another_uid(tmp_path: Path) -> None:
    """Another uid made /tmp/ospool-ep first: we write nothing there, and say why."""
    needs_root()
    planted = tmp_path / "ospool-ep"
    planted.mkdir(mode=0o777)
    os.chown(planted, unprivileged.NOBODY, unprivileged.NOBODY)

    with pytest.raises(state.UntrustedStateError, match="owned by uid 65534, not this pilot's"):
        state.publish(planted / "state.json", snapshot())
    assert list(planted.iterdir()) == []


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-directory", "dangling"])
def test_the_publisher_refuses_a_state_directory_that_is_a_symlink(
    tmp_path: Path, dangling: bool
) -> None:
    """Even one pointing at a directory of our own: whoever made the link chose the target."""
    target = tmp_path / "target"
    if not dangling:
        target.mkdir()
    link = tmp_path / "ospool-ep"
    link.symlink_to(target)

    with pytest.raises(state.UntrustedStateError, match="is a symlink"):
        state.publish(link / "state.json", snapshot())
    assert not (target / "state.json").exists()


def test_the_publisher_tightens_its_own_directory_that_others_could_write(
    tmp_path: Path,
) -> None:
    """Ours but 0777: fixed to 0755 rather than refused (we may; health keeps working)."""
    directory = tmp_path / "ospool-ep"
    directory.mkdir()
    directory.chmod(0o777)

    state.publish(directory / "state.json", snapshot())

    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert state.load(directory / "state.json").distrust is None


def test_the_publisher_replaces_a_planted_symlink_and_never_writes_through_it(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "state.json"
    path.symlink_to(victim)

    state.publish(path, snapshot())

    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert state.read(path) is not None


def test_a_reader_refuses_a_state_file_of_another_uid(tmp_path: Path) -> None:
    """It could say anything (a pid to signal): "not trusted", and who owns it."""
    needs_root()
    path = tmp_path / "state.json"
    state.publish(path, snapshot())
    os.chown(path, unprivileged.NOBODY, unprivileged.NOBODY)

    loaded = state.load(path)

    assert loaded.state is None
    assert loaded.distrust == (
        f"state file {path} not trusted: it is owned by uid 65534, not uid 0"
    )
    assert state.read(path) is None


def test_a_reader_refuses_a_state_directory_of_another_uid(tmp_path: Path) -> None:
    """Our own file in another uid's directory: that uid could swap it at any time."""
    needs_root()
    directory = tmp_path / "ospool-ep"
    state.publish(directory / "state.json", snapshot())
    os.chown(directory, unprivileged.NOBODY, unprivileged.NOBODY)

    distrust = state.load(directory / "state.json").distrust

    assert distrust is not None
    assert f"its directory {directory} is owned by uid 65534" in distrust


def test_a_reader_of_another_uid_trusts_roots_state_but_not_a_third_uids(
    shared_tmp: Path,
) -> None:
    """health works for any uid: a root pilot's state reads for uid 65534; one owned by
    uid 1 (daemon), neither root's nor the reader's, does not."""
    needs_root()
    ours = shared_tmp / "root" / "state.json"
    state.publish(ours, snapshot())
    theirs = shared_tmp / "daemon" / "state.json"
    state.publish(theirs, snapshot())
    os.chown(theirs, 1, 1)

    def load_both() -> list[object]:
        return [state.load(ours).state is not None, state.load(theirs).distrust]

    trusted, distrust = unprivileged.as_user(unprivileged.NOBODY, load_both)
    assert trusted is True
    assert (
        distrust == f"state file {theirs} not trusted: it is owned by uid 1, not uid 65534 or uid 0"
    )


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_reader_refuses_a_state_that_others_can_write(tmp_path: Path, what: str) -> None:
    directory = tmp_path / "ospool-ep"
    path = directory / "state.json"
    state.publish(path, snapshot())
    (path if what == "file" else directory).chmod(0o666 if what == "file" else 0o777)

    distrust = state.load(path).distrust

    assert distrust is not None
    assert "is writable by others" in distrust


def test_a_sticky_world_writable_directory_such_as_tmp_is_trusted(tmp_path: Path) -> None:
    """In a sticky directory (1777) nobody else can replace or remove our file."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    directory.chmod(0o1777)
    path = directory / "state.json"

    state.publish(path, snapshot())

    assert state.load(path).distrust is None
    assert state.read(path) is not None


def test_a_pilot_of_another_uid_publishes_straight_into_a_sticky_tmp(shared_tmp: Path) -> None:
    """The Slurm script's default without TMPDIR: /tmp/ospool-ep-state-<job>.json. /tmp
    is root's, but sticky: uid 65534 publishes there, and reads its own state back."""
    needs_root()
    tmp = shared_tmp / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    path = tmp / "ospool-ep-state-42.json"

    def publish_and_read() -> object:
        state.publish(path, snapshot(supervisor_pid=1))
        return state.load(path).distrust

    assert unprivileged.as_user(unprivileged.NOBODY, publish_and_read) is None
    assert path.stat().st_uid == unprivileged.NOBODY
    assert state.load(path).distrust is not None, "root does not trust uid 65534's file"


def test_a_fifo_at_the_state_path_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO would hang a plain open(); the probe must answer."""
    path = tmp_path / "state.json"
    os.mkfifo(path)

    started = time.monotonic()
    distrust = state.load(path).distrust

    assert time.monotonic() - started < 1
    assert distrust == f"state file {path} not trusted: it is not a regular file"


def test_a_symlink_at_the_state_path_is_refused(tmp_path: Path) -> None:
    """Even to a valid state: the link's maker chose what we read."""
    real = tmp_path / "real.json"
    state.publish(real, snapshot())
    path = tmp_path / "state.json"
    path.symlink_to(real)

    assert state.load(path).distrust == f"state file {path} not trusted: it is a symlink"


def test_health_says_an_untrusted_state_is_not_trusted(tmp_path: Path) -> None:
    """The command names the file and why, and exits 1; it does not pretend no pilot runs."""
    needs_root()
    path = tmp_path / "state.json"
    state.publish(path, snapshot())
    os.chown(path, unprivileged.NOBODY, unprivileged.NOBODY)

    result = subprocess.run(
        [str(OSPOOL_EP), "health"],
        env={**os.environ, "OSPOOL_EP_STATE_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stdout == (
        f"state file {path} not trusted: it is owned by uid 65534, not uid 0: "
        "run health as the pilot's user\n"
    )


# -- liveness ---------------------------------------------------------------------


def test_no_state_file_is_not_live() -> None:
    verdict = health.liveness(None, now=NOW)
    assert verdict == health.Verdict(False, "no pilot is running here (no state file)")


def test_a_dead_supervisor_is_not_live() -> None:
    """The state file outlived its supervisor (killed with SIGKILL, say)."""
    pid = dead_pid()
    verdict = health.liveness(snapshot(supervisor_pid=pid), now=NOW)
    assert verdict == health.Verdict(False, f"the supervisor (pid {pid}) is gone")


def test_a_zombie_supervisor_is_not_live() -> None:
    """A process that exited but was not reaped yet is not running."""
    child = subprocess.Popen(["/bin/true"])
    try:
        wait_for_pid(lambda: is_zombie(child.pid))
        assert not procfs.alive(child.pid)
        assert not health.liveness(snapshot(supervisor_pid=child.pid), now=NOW).healthy
    finally:
        child.wait()


def test_a_supervisor_pid_now_used_by_another_process_is_not_live() -> None:
    """The pid is alive but started at another time than the state says: it was reused."""
    started = procfs.start_time(os.getpid())
    assert started is not None
    verdict = health.liveness(snapshot(supervisor_started=started + 1), now=NOW)
    assert verdict == health.Verdict(False, f"the supervisor (pid {os.getpid()}) is gone")
    assert health.liveness(snapshot(supervisor_started=started, state="starting"), now=NOW).healthy


def test_a_supervisor_that_stopped_reporting_is_not_live() -> None:
    """The state is rewritten every few seconds; older than STALE_SECONDS: the loop is stuck."""
    verdict = health.liveness(snapshot(), now=NOW + STALE_SECONDS + 1)
    assert verdict == health.Verdict(
        False, f"the supervisor has not reported for {STALE_SECONDS + 1} s"
    )
    assert health.liveness(snapshot(state="starting"), now=NOW + STALE_SECONDS).healthy


@pytest.mark.parametrize("phase", ["starting", "draining", "stopping"])
def test_a_pilot_starting_or_shutting_down_is_live_without_its_daemons(phase: str) -> None:
    """No master or startd is expected then; a liveness probe must not restart a draining pilot."""
    verdict = health.liveness(snapshot(state=phase, master_pid=None), now=NOW)
    assert verdict == health.Verdict(True, f"pilot pilot-1@host is {phase}")


def test_a_running_pilot_whose_master_is_dead_is_not_live() -> None:
    pid = dead_pid()
    verdict = health.liveness(snapshot(master_pid=pid), now=NOW)
    assert verdict == health.Verdict(False, f"condor_master (pid {pid}) is not running")


def test_a_running_pilot_without_a_master_pid_is_not_live() -> None:
    assert not health.liveness(snapshot(master_pid=None), now=NOW).healthy


def test_a_running_pilot_whose_master_has_no_startd_is_not_live(master_alone: int) -> None:
    verdict = health.liveness(snapshot(master_pid=master_alone), now=NOW)
    assert verdict == health.Verdict(
        False, "condor_startd is not running (the master may be restarting it)"
    )


def test_a_running_pilot_with_master_and_startd_is_live(
    master_with_startd: tuple[int, int],
) -> None:
    master, _ = master_with_startd
    verdict = health.liveness(snapshot(master_pid=master), now=NOW)
    assert verdict == health.Verdict(
        True, "pilot pilot-1@host: condor_master and condor_startd running"
    )


def test_a_condor_startd_that_is_not_the_masters_child_does_not_count(
    master_alone: int, master_with_startd: tuple[int, int]
) -> None:
    """Another pilot's startd on the same host says nothing about ours."""
    assert not health.liveness(snapshot(master_pid=master_alone), now=NOW).healthy


def test_a_zombie_condor_startd_does_not_count(tmp_path: Path) -> None:
    """The startd exited and the master has not reaped it yet: not running."""
    startd = tmp_path / "condor_startd"
    startd.write_bytes(Path("/bin/true").read_bytes())
    startd.chmod(0o755)
    child = subprocess.Popen([str(startd)])  # our child: we are its "master" and do not reap it
    try:
        wait_for_pid(lambda: is_zombie(child.pid))
        assert procfs.child_named(os.getpid(), "condor_startd") is None
        assert not health.liveness(snapshot(master_pid=os.getpid()), now=NOW).healthy
    finally:
        child.wait()


# -- readiness --------------------------------------------------------------------


def test_readiness_is_liveness_first() -> None:
    """A pilot that is not live is not ready, for the same reason."""
    assert health.readiness(None, now=NOW) == health.liveness(None, now=NOW)


@pytest.mark.parametrize("phase", ["starting", "draining", "stopping"])
def test_a_pilot_that_is_not_running_is_not_ready(phase: str) -> None:
    """Live, but not taking jobs: a load balancer or operator should not count it."""
    verdict = health.readiness(snapshot(state=phase, ready=True, ready_checked=NOW), now=NOW)
    assert verdict == health.Verdict(False, f"pilot pilot-1@host is {phase}: not taking jobs")


@pytest.mark.parametrize(
    ("ready", "checked_ago", "expected"),
    [
        (False, 1.0, False),
        (True, None, False),
        (True, READY_FRESH_SECONDS + 1, False),
        (True, READY_FRESH_SECONDS, True),
        (True, 1.0, True),
    ],
    ids=["not-in-collector", "never-checked", "stale-check", "just-fresh", "fresh"],
)
def test_a_running_pilot_is_ready_when_its_slot_was_seen_recently(
    master_with_startd: tuple[int, int], ready: bool, checked_ago: float | None, expected: bool
) -> None:
    """Ready: the collector showed our slot within READY_FRESH_SECONDS; an old sighting is not."""
    master, _ = master_with_startd
    checked = None if checked_ago is None else NOW - checked_ago
    published = snapshot(master_pid=master, ready=ready, ready_checked=checked)

    verdict = health.readiness(published, now=NOW)

    assert verdict.healthy is expected
    assert verdict.message == (
        "pilot pilot-1@host's slot is in the collector"
        if expected
        else "pilot pilot-1@host's slot is not (yet) in the collector"
    )
