"""Collector queries out of process: the PID-1 loop starts them and never waits (SPEC 7.5)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from paths import PROGRAMS

from ospool_ep.pilot import readiness

PROGRAM = PROGRAMS / "fake_condor_status.py"


def queries(tmp_path: Path, mode: str, *, timeout: float = 20.0) -> readiness.ProcessQueries:
    return readiness.ProcessQueries(
        command=[sys.executable, str(PROGRAM)],
        environment={"FAKE_STATUS": mode, "PATH": "/usr/bin:/bin"},
        output=tmp_path / "query.json",
        clock=time.monotonic,
        timeout=timeout,
    )


def reap(query: readiness.ProcessQueries, *, within: float = 30.0) -> readiness.Answer | None:
    """What the supervisor's reaper does: waitpid, then offer the exit to the query."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        query.expire(time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            return query.finished(pid, status)
        time.sleep(0.05)
    raise AssertionError("the query never ended")


def test_the_status_command_asks_only_for_this_pilots_slots_as_json() -> None:
    argv = readiness.status_command("/usr/bin/condor_status", uuid="u-1", attributes=("HAS_X",))
    assert argv[:2] == ["/usr/bin/condor_status", "-json"]
    assert argv[argv.index("-constraint") + 1] == 'OSPOOL_EP_PILOT_UUID == "u-1"'
    assert argv[argv.index("-attributes") + 1].split(",")[-1] == "HAS_X"


def test_a_query_that_finds_the_slot_reports_its_ads(tmp_path: Path) -> None:
    query = queries(tmp_path, 'json:[{"Name": "slot1@h", "JobStart": 7}]')
    query.start()
    assert query.running()
    answer = reap(query)
    assert answer == readiness.Answer(answered=True, slots=({"Name": "slot1@h", "JobStart": 7},))
    assert not query.running()


def test_no_match_is_an_answer_without_slots(tmp_path: Path) -> None:
    query = queries(tmp_path, "json:")
    query.start()
    assert reap(query) == readiness.Answer(answered=True)


def test_an_unreachable_collector_is_no_answer(tmp_path: Path) -> None:
    query = queries(tmp_path, "fail")
    query.start()
    assert reap(query) == readiness.Answer(answered=False)


def test_a_collector_that_never_answers_is_killed_at_the_deadline(tmp_path: Path) -> None:
    """The query is a child with a deadline: past it, it is killed and counts as no answer."""
    query = queries(tmp_path, "hang", timeout=0.5)
    query.start()
    started = time.monotonic()
    assert reap(query) == readiness.Answer(answered=False)
    assert time.monotonic() - started < 20  # killed, not waited for its 60 s sleep


def test_garbage_output_is_no_answer() -> None:
    exited_0 = 0
    assert readiness.parse_answer(exit_status=exited_0, output=b"{not json") == readiness.Answer(
        answered=False
    )
    assert readiness.parse_answer(exit_status=exited_0, output=b'{"a": 1}') == readiness.Answer(
        answered=False
    )
    assert readiness.parse_answer(exit_status=exited_0, output=b"[1, {}]") == readiness.Answer(
        answered=True, slots=({},)
    )


def test_the_child_does_not_inherit_the_supervisors_blocked_signals(tmp_path: Path) -> None:
    """The supervisor blocks SIGTERM; a query it starts must still die of a plain SIGTERM."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        query = queries(tmp_path, "hang")
        query.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert query.pid is not None
    time.sleep(0.3)
    os.kill(query.pid, signal.SIGTERM)
    _, status = os.waitpid(query.pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def test_another_childs_exit_is_not_taken_for_the_query(tmp_path: Path) -> None:
    query = queries(tmp_path, "json:[]")
    query.start()
    assert query.finished(123456789, 0) is None
    assert query.running()
    reap(query)


class Scripted:
    """A Queries whose answers the test hands in, one per query."""

    def __init__(self, *answers: readiness.Answer) -> None:
        self.answers = list(answers)
        self.pid: int | None = None

    def start(self) -> None:
        self.pid = 1

    def running(self) -> bool:
        return self.pid is not None

    def expire(self, now: float) -> None:
        del now

    def finished(self, pid: int, status: int) -> readiness.Answer | None:
        del pid, status
        self.pid = None
        return self.answers.pop(0)


def test_the_observer_asks_often_until_seen_then_once_a_minute() -> None:
    seen = readiness.Answer(answered=True, slots=({"Name": "slot1@h"},))
    unseen = readiness.Answer(answered=True)
    observer = readiness.Observer(queries=Scripted(unseen, unseen, seen), wall_clock=lambda: 5.0)
    starts = []
    for now in range(200):
        was = observer.queries.running()
        observer.tick(float(now))
        if observer.queries.running() and not was:
            starts.append(now)
            observer.child_exited(1, 0, now=float(now))
        if len(starts) == 3:
            break
    assert starts == [0, 2, 4]
    assert observer.ready and observer.checked == 5.0
    assert observer.next_query == 4 + readiness.SEEN_INTERVAL


def test_the_observer_counts_each_job_start_once() -> None:
    ad = {"Name": "slot1_1@h", "JobStart": 100}
    answer = readiness.Answer(answered=True, slots=(ad, dict(ad), {"Name": "slot1_2@h"}))
    observer = readiness.Observer(queries=Scripted(answer, answer), wall_clock=lambda: 0.0)
    for now in (0.0, 100.0):
        observer.tick(now)
        observer.child_exited(1, 0, now=now)
    assert observer.jobs_started == 1


def test_an_unanswered_query_makes_the_pilot_not_ready() -> None:
    seen = readiness.Answer(answered=True, slots=({"Name": "slot1@h"},))
    observer = readiness.Observer(
        queries=Scripted(seen, readiness.Answer(answered=False)), wall_clock=lambda: 1.0
    )
    for now in (0.0, 100.0):
        observer.tick(now)
        observer.child_exited(1, 0, now=now)
    assert not observer.ready and observer.reachable is False
