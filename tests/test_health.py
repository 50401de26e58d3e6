"""The published state file and the health verdicts read from it (SPEC 7.5).

State: round trip, world-readable mode, atomic replacement, withdrawal only
by its owner. Health: each liveness and readiness verdict, with real
processes standing in for the supervisor, condor_master and condor_startd
(a copy of /bin/sleep named ``condor_startd``), and an explicit ``now``.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ospool_ep import health, procfs, state
from ospool_ep.health import READY_FRESH_SECONDS, STALE_SECONDS
from ospool_ep.state import PublishedState

NOW = 1_700_000_000.0


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

    assert state.read(path) == published


def test_the_state_file_is_world_readable_and_nothing_more(tmp_path: Path) -> None:
    """0644: ``ospool-ep health`` works for any uid (a probe may run as another user)."""
    path = tmp_path / "state.json"
    state.publish(path, snapshot())

    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "no temporary file left"


WRITER = """
import sys, time
from pathlib import Path
from ospool_ep.state import PublishedState, publish
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
    assert state.read(path) == snapshot(supervisor_pid=111)

    state.withdraw(path, supervisor_pid=111)
    assert not path.exists()

    state.withdraw(path, supervisor_pid=111)  # already gone: no error


def test_the_state_path_defaults_to_tmp_and_follows_the_environment() -> None:
    """OSPOOL_EP_STATE_FILE moves it (several pilots on one node); empty means the default."""
    assert state.state_path({}) == Path("/tmp/ospool-ep/state.json")
    assert state.state_path({"OSPOOL_EP_STATE_FILE": ""}) == Path("/tmp/ospool-ep/state.json")
    assert state.state_path({"OSPOOL_EP_STATE_FILE": "/x/s.json"}) == Path("/x/s.json")


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
