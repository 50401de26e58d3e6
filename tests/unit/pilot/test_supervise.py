"""The supervisor's contract with condor_master and with whoever signals it (SPEC 7.1, 7.2).

Each contract test runs ``programs/drive_supervisor.py`` (a real Supervisor in
its own process: ``sigtimedwait`` must not run inside pytest) with
``programs/fake_master.py`` as condor_master, sends real signals to the
driver's pid and reads what the fake master says it received. Files are
polled with deadlines; nothing sleeps a fixed time. A few tests at the end
drive the shutdown ladder in-process through the injectable clock, without
ever calling ``run()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from paths import PROGRAMS

from ospool_ep.exitcodes import ExitCode
from ospool_ep.pilot.lifecycle import Event, State
from ospool_ep.pilot.procfs import descendants
from ospool_ep.pilot.supervise import (
    IDLE_STOP_SECONDS,
    KILL_MARGIN_SECONDS,
    LOOP_SECONDS,
    Ending,
    Supervisor,
)

GRACE = 4
"""Seconds; short for a quick test, yet the kill rung (grace - 1.5 s) comes after the drain's."""
DRAIN = 1
MASTER_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "OSPOOL_EP_TEST": "a b=c"}


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Past ``timeout``, fail with an AssertionError naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ppid_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("PPid:")[1].split()[0])


def status_field(pid: int, name: str) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return status.split(f"{name}:")[1].split()[0]


def kill_if_ours(pid: int, marker: str) -> None:
    """SIGKILL ``pid`` only if its command line still names what we started (pids get reused)."""
    try:
        if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


@dataclass
class Pilot:
    """One driver process running one Supervisor around one fake master."""

    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def master_pid(self, timeout: float = 5.0) -> int:
        ready = self.directory / "master.ready"
        text = wait_for(
            lambda: ready.exists() and ready.read_text(), timeout=timeout, what=str(ready)
        )
        return int(text)

    def send(self, signo: int) -> float:
        """Signal the supervisor; return the wall-clock time it was sent."""
        sent = time.time()
        os.kill(self.pid, signo)
        return sent

    def signals(self) -> list[tuple[float, str]]:
        """What the fake master received so far: (epoch seconds, SIGNAME) in order."""
        try:
            lines = (self.directory / "master.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [(float(at), name) for at, name in (line.split() for line in lines)]

    def names(self) -> list[str]:
        return [name for _, name in self.signals()]

    def wait_signal(self, name: str, *, count: int = 1, timeout: float = 5.0) -> float:
        """Wait until the master got ``name`` ``count`` times; return when it got the last one."""
        got = wait_for(
            lambda: [at for at, n in self.signals() if n == name][count - 1 :],
            timeout=timeout,
            what=f"the master to receive {name} x{count}",
        )
        return float(got[0])

    def record(self) -> dict[str, Any]:
        return read_json(self.directory / "record.json") or {}

    def outcome(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the supervisor did not exit within {timeout} s") from None
        outcome = read_json(self.directory / "outcome.json")
        if outcome is None:
            stderr = (self.directory / "driver.err").read_text()
            raise AssertionError(
                f"the supervisor wrote no outcome (exit {self.process.returncode}):\n{stderr}"
            )
        assert self.process.returncode == outcome["code"]
        return dict(outcome)

    def child_pid(self, timeout: float = 5.0) -> int:
        path = self.directory / "child.pid"
        return int(
            wait_for(lambda: path.exists() and path.read_text(), timeout=timeout, what=str(path))
        )


StartPilot = Callable[..., Pilot]
CHILDREN = ["sleep", "fake_master"]
"""What the fake master's child runs: /bin/sleep, or a fork of the fake master (the orphan)."""


@pytest.fixture
def start_pilot(tmp_path: Path) -> Iterator[StartPilot]:
    """Start a driver; afterwards kill whatever of it is still running."""
    pilots: list[Pilot] = []

    def start(
        *master_args: str,
        command: list[str] | None = None,
        environment: dict[str, str] | None = None,
        grace: int = GRACE,
        drain: int = DRAIN,
        preexec_fn: Callable[[], None] | None = None,
        **hooks: object,
    ) -> Pilot:
        directory = tmp_path / f"pilot{len(pilots)}"
        directory.mkdir()
        fake = [
            sys.executable,
            str(PROGRAMS / "fake_master.py"),
            f"--log={directory / 'master.log'}",
            f"--ready={directory / 'master.ready'}",
            f"--child-pid={directory / 'child.pid'}",
            *master_args,
        ]
        config = {
            "command": command or fake,
            "environment": MASTER_ENV if environment is None else environment,
            "grace_seconds": grace,
            "drain_seconds": drain,
            "record": str(directory / "record.json"),
            "outcome": str(directory / "outcome.json"),
            **hooks,
        }
        (directory / "config.json").write_text(json.dumps(config))
        with (
            (directory / "driver.out").open("wb") as out,
            (directory / "driver.err").open("wb") as err,
        ):
            process = subprocess.Popen(
                [sys.executable, str(PROGRAMS / "drive_supervisor.py"), directory / "config.json"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, "ONLY_IN_THE_SUPERVISOR": "1"},
                preexec_fn=preexec_fn,  # noqa: PLW1509 - pytest runs no threads here
            )
        pilot = Pilot(process, directory)
        pilots.append(pilot)
        return pilot

    yield start

    for pilot in pilots:
        if pilot.process.poll() is None:
            pilot.process.kill()
            pilot.process.wait()
        for name, markers in (("master.ready", ["fake_master"]), ("child.pid", CHILDREN)):
            path = pilot.directory / name
            if path.exists() and path.read_text().strip():
                for marker in markers:
                    kill_if_ours(int(path.read_text()), marker)


# -- SIGTERM / SIGINT: drain ---------------------------------------------------


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_then_asks_the_master_for_a_graceful_shutdown(
    start_pilot: StartPilot, signo: signal.Signals
) -> None:
    """SIGTERM or SIGINT: prepare_drain(now + drain), then the master gets SIGHUP, then SIGTERM.

    The master reconfigures first (START = False, shortened retirement), then
    shuts down gracefully; its exit ends the pilot with 0, "stopped on request".
    """
    pilot = start_pilot()
    pilot.master_pid()
    sent = pilot.send(signo)

    outcome = pilot.outcome()

    assert pilot.names() == ["SIGHUP", "SIGTERM"]
    assert outcome["code"] == ExitCode.OK
    assert outcome["reason"].startswith("stopped on request")
    [drain] = pilot.record()["prepare_drain"]
    assert drain["deadline"] == pytest.approx(sent + DRAIN, abs=0.5)
    assert drain["at"] < pilot.signals()[0][0], "prepare_drain comes before the master is told"


def test_a_master_that_ignores_sigterm_gets_sigquit_at_the_drain_deadline(
    start_pilot: StartPilot,
) -> None:
    """Running jobs may finish until the drain deadline; then fast shutdown evicts them."""
    pilot = start_pilot("--on-term=ignore", "--starter-lives=60")
    pilot.master_pid()
    sent = pilot.send(signal.SIGTERM)

    quit_at = pilot.wait_signal("SIGQUIT")
    outcome = pilot.outcome()

    assert pilot.names() == ["SIGHUP", "SIGTERM", "SIGQUIT"]
    assert quit_at - sent == pytest.approx(DRAIN, abs=0.4)
    assert outcome["code"] == ExitCode.OK
    assert outcome["reason"].startswith("stopped on request")


def test_a_master_that_ignores_sigterm_and_sigquit_is_killed_before_the_grace_period_ends(
    start_pilot: StartPilot,
) -> None:
    """The last rung: SIGKILL at grace - margin; the pilot exits 0 before the orchestrator kills.

    The master ignores both SIGTERM and SIGQUIT, as a wedged condor_master would,
    while a job runs (a condor_starter below it).
    """
    pilot = start_pilot("--on-term=ignore", "--on-quit=ignore", "--starter-lives=60")
    master = pilot.master_pid()
    started = time.monotonic()
    pilot.send(signal.SIGTERM)

    outcome = pilot.outcome()
    elapsed = time.monotonic() - started

    assert pilot.names() == ["SIGHUP", "SIGTERM", "SIGQUIT"]
    # Not before the kill rung, and before the orchestrator's own kill (no timing
    # window on top: a busy machine only makes the driver slower to report).
    assert GRACE - KILL_MARGIN_SECONDS - 0.1 <= elapsed < GRACE
    assert outcome["code"] == ExitCode.OK
    assert "SIGKILL" in outcome["reason"]
    assert not Path(f"/proc/{master}").exists()
    assert any("did not stop in time" in e["msg"] for e in pilot.record()["events"])


def test_an_idle_pilot_whose_master_does_not_stop_is_killed_within_seconds(
    start_pilot: StartPilot,
) -> None:
    """SPEC 7.2: an idle pilot is gone within 3 s. No job runs (no condor_starter) and
    the master, blocked in its own shutdown, ignores SIGTERM and SIGQUIT: after
    IDLE_STOP_SECONDS it is killed, long before the grace period, and the pilot
    still ends with 0 (it was asked to stop, nothing was lost)."""
    pilot = start_pilot("--on-term=ignore", "--on-quit=ignore", grace=20, drain=15)
    master = pilot.master_pid()
    started = time.monotonic()
    pilot.send(signal.SIGTERM)

    outcome = pilot.outcome()
    elapsed = time.monotonic() - started

    # At the idle rung, long before the drain deadline (15 s) and the grace (20 s).
    assert IDLE_STOP_SECONDS - 0.1 <= elapsed < 10
    assert pilot.names() == ["SIGHUP", "SIGTERM"]
    assert outcome["code"] == ExitCode.OK
    assert "SIGKILL" in outcome["reason"]
    assert not Path(f"/proc/{master}").exists()
    assert any("no job is running" in e["msg"] for e in pilot.record()["events"])


def test_the_startds_capability_probe_is_not_taken_for_a_running_job(
    start_pilot: StartPilot,
) -> None:
    """The startd runs ``condor_starter -classad`` on every reconfig, the drain's own
    included: a pilot with only that below its master is idle and still stops in seconds."""
    pilot = start_pilot(
        "--on-term=ignore", "--on-quit=ignore", "--detecting-starter-lives=60", grace=20, drain=15
    )
    pilot.master_pid()
    started = time.monotonic()
    pilot.send(signal.SIGTERM)

    outcome = pilot.outcome()

    assert IDLE_STOP_SECONDS - 0.1 <= time.monotonic() - started < 10
    assert outcome["code"] == ExitCode.OK
    assert any("no job is running" in e["msg"] for e in pilot.record()["events"])


def test_a_second_sigterm_while_draining_asks_for_fast_shutdown_at_once(
    start_pilot: StartPilot,
) -> None:
    """SPEC 7.2: a second SIGTERM means "now": SIGQUIT without waiting for the drain deadline."""
    pilot = start_pilot("--on-term=ignore", "--starter-lives=60", grace=8, drain=5)
    pilot.master_pid()
    pilot.send(signal.SIGTERM)
    pilot.wait_signal("SIGTERM")

    again = pilot.send(signal.SIGTERM)
    quit_at = pilot.wait_signal("SIGQUIT")
    outcome = pilot.outcome()

    assert quit_at - again < 0.5
    assert pilot.names() == ["SIGHUP", "SIGTERM", "SIGQUIT"]
    assert outcome["code"] == ExitCode.OK


def test_sigquit_to_the_supervisor_asks_the_master_for_fast_shutdown(
    start_pilot: StartPilot,
) -> None:
    """SIGQUIT skips the drain: the master gets SIGQUIT and nothing else; no drain is prepared."""
    pilot = start_pilot()
    pilot.master_pid()
    pilot.send(signal.SIGQUIT)

    outcome = pilot.outcome()

    assert pilot.names() == ["SIGQUIT"]
    assert pilot.record()["prepare_drain"] == []
    assert outcome["code"] == ExitCode.OK
    assert outcome["reason"].startswith("stopped on request")


def test_an_idle_pilot_exits_within_a_second_of_sigterm(start_pilot: StartPilot) -> None:
    """SPEC 7.2 wants 3 s for an idle pilot; the supervisor's own share must be far below that."""
    pilot = start_pilot()
    pilot.master_pid()
    started = time.monotonic()
    pilot.send(signal.SIGTERM)
    pilot.process.wait(timeout=5)
    latency = time.monotonic() - started

    print(f"idle exit latency: {latency * 1000:.0f} ms (SIGTERM to supervisor process exit)")
    assert latency < 1.0
    assert pilot.outcome()["code"] == ExitCode.OK


# -- SIGHUP and periodic reconfiguration --------------------------------------


@pytest.mark.parametrize("accepted", [True, False], ids=["reload-accepted", "reload-refused"])
def test_sighup_reloads_and_tells_the_master_only_when_the_reload_succeeds(
    start_pilot: StartPilot, accepted: bool
) -> None:
    """SIGHUP calls reload(); the master is told to reconfigure only if reload() said True.

    A bad new token or attribute file is refused and the old config kept (SPEC 7.2).
    """
    pilot = start_pilot(reload_returns=accepted)
    pilot.master_pid()
    pilot.send(signal.SIGHUP)
    wait_for(lambda: pilot.record().get("reload") == 1, timeout=5, what="reload()")
    if accepted:
        pilot.wait_signal("SIGHUP")

    pilot.send(signal.SIGTERM)  # the drain's own SIGHUP, SIGTERM come after
    outcome = pilot.outcome()

    expected = ["SIGHUP", "SIGHUP", "SIGTERM"] if accepted else ["SIGHUP", "SIGTERM"]
    assert pilot.names() == expected
    assert pilot.record()["reload"] == 1
    assert outcome["code"] == ExitCode.OK


def test_a_tick_that_asks_for_reconfiguration_sends_the_master_sighup(
    start_pilot: StartPilot,
) -> None:
    """Periodic work (a renewed token, say) may reconfigure the master unasked."""
    pilot = start_pilot(tick_reconfigure_once=True)
    pilot.master_pid()

    pilot.wait_signal("SIGHUP")
    pilot.send(signal.SIGTERM)
    pilot.outcome()

    assert pilot.names() == ["SIGHUP", "SIGHUP", "SIGTERM"]


# -- the master ending on its own ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (0, ExitCode.OK, "condor_master shut down (retired, idle or told by the pool)"),
        (3, ExitCode.SOFTWARE, "condor_master exited with status 3 unexpectedly"),
    ],
)
def test_the_masters_own_exit_status_decides_the_outcome(
    start_pilot: StartPilot, status: int, code: ExitCode, reason: str
) -> None:
    """Exit 0 unasked is a normal end (retired, idle); any other status is an abnormal end, 70."""
    pilot = start_pilot("--exit-after=0.2", f"--exit-code={status}")

    outcome = pilot.outcome()

    assert (outcome["code"], outcome["reason"]) == (code, reason)
    assert pilot.names() == []


def test_a_master_killed_from_outside_ends_the_pilot_with_70_naming_the_signal(
    start_pilot: StartPilot,
) -> None:
    """SIGKILL from elsewhere (the OOM killer, say) is abnormal: 70, the reason names SIGKILL."""
    pilot = start_pilot()
    os.kill(pilot.master_pid(), signal.SIGKILL)

    outcome = pilot.outcome()

    assert outcome["code"] == ExitCode.SOFTWARE
    assert outcome["reason"] == "condor_master was killed by signal SIGKILL unexpectedly"


def test_a_master_killed_by_a_realtime_signal_ends_the_pilot_with_70(
    start_pilot: StartPilot,
) -> None:
    """Any death by signal is abnormal: 70, naming the signal (by number if it has no name)."""
    pilot = start_pilot()
    signo = signal.SIGRTMIN + 6
    os.kill(pilot.master_pid(), signo)

    outcome = pilot.outcome()

    assert outcome["code"] == ExitCode.SOFTWARE
    assert str(signo) in outcome["reason"]


# -- processes: orphans, mask, group, environment -----------------------------


def test_an_orphan_adopted_by_the_supervisor_is_reaped_while_the_pilot_runs(
    start_pilot: StartPilot,
) -> None:
    """Not PID 1 (a batch job), the supervisor is a subreaper: it adopts orphans and reaps them.

    The orphan exits while the master still runs; it must not stay a zombie.
    """
    pilot = start_pilot("--orphan-lives=1.0")
    pilot.master_pid()
    orphan = pilot.child_pid()

    wait_for(lambda: ppid_of(orphan) in (pilot.pid, None), timeout=2, what="the orphan's adoption")
    assert ppid_of(orphan) == pilot.pid, "the orphan exited before we saw who adopted it"
    wait_for(lambda: not Path(f"/proc/{orphan}").exists(), timeout=3, what="the orphan reaped")

    pilot.send(signal.SIGTERM)
    outcome = pilot.outcome()

    assert outcome["code"] == ExitCode.OK
    assert outcome["children"] == []


def test_a_child_outliving_the_master_is_killed_and_reaped(start_pilot: StartPilot) -> None:
    """The master exits and leaves a child running: the supervisor, its subreaper, kills
    and reaps it, so nothing of the pilot outlives it (in a batch job nobody else would)."""
    pilot = start_pilot("--child-lives=30", "--exit-after=0.3")
    pilot.master_pid()
    child = pilot.child_pid()

    outcome = pilot.outcome()

    assert outcome["code"] == ExitCode.OK
    assert outcome["children"] == []
    assert not Path(f"/proc/{child}").exists()


def test_the_master_starts_with_no_signal_blocked_in_its_own_process_group(
    start_pilot: StartPilot, tmp_path: Path
) -> None:
    """The supervisor blocks the signals it waits for; the master must not inherit that mask.

    It sits in its own process group, so a signal sent to the supervisor's
    group (a terminal's Ctrl-C) reaches only the supervisor, which decides.
    """
    status = tmp_path / "master-status"
    pilot = start_pilot(f"--status-to={status}")
    master = pilot.master_pid()

    inherited = status.read_text().split("SigBlk:")[1].split()[0]
    assert int(inherited, 16) == 0, f"the master started with signals blocked: {inherited}"
    assert os.getpgid(master) == master
    assert os.getpgid(master) != os.getpgid(pilot.pid)
    assert master_pid_reported(pilot) == master
    pilot.send(signal.SIGTERM)
    pilot.outcome()


def master_pid_reported(pilot: Pilot) -> int:
    """The pid in the supervisor's "condor_master started" event."""

    def started() -> int | None:
        events = pilot.record().get("events", [])
        pids = [e["fields"]["pid"] for e in events if e["msg"] == "condor_master started"]
        return pids[0] if pids else None

    return int(wait_for(started, timeout=5, what="the condor_master started event"))


def ignore_hangup_and_interrupts() -> None:
    """As ``nohup ospool-ep run &`` from a script starts it."""
    for signo in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signo, signal.SIG_IGN)


def master_dispositions_test(start_pilot: StartPilot, tmp_path: Path, signo: int) -> None:
    sleeper = tmp_path / "condor_master"
    sleeper.write_bytes(Path("/bin/sleep").read_bytes())
    sleeper.chmod(0o755)
    pilot = start_pilot(command=[str(sleeper), "30"], preexec_fn=ignore_hangup_and_interrupts)
    master = master_pid_reported(pilot)

    ignored = int(status_field(master, "SigIgn"), 16)
    blocked = int(status_field(master, "SigBlk"), 16)
    pilot.send(signal.SIGTERM)
    pilot.outcome()

    assert blocked == 0
    assert not ignored & (1 << (signo - 1)), f"{signal.Signals(signo).name} is ignored"


@pytest.mark.parametrize(
    "signo",
    [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGPIPE],
    ids=lambda s: signal.Signals(s).name,
)
def test_the_master_starts_with_default_dispositions_for_what_the_supervisor_blocks_or_ignores(
    start_pilot: StartPilot, tmp_path: Path, signo: int
) -> None:
    """What the supervisor's parent (nohup) or Python (SIGPIPE) ignored is default again.

    The driver is started with SIGHUP, SIGINT and SIGQUIT ignored; the master
    is a copy of /bin/sleep, which changes no disposition of its own.
    """
    master_dispositions_test(start_pilot, tmp_path, signo)


def test_the_master_starts_with_sigxfsz_at_its_default_disposition(
    start_pilot: StartPilot, tmp_path: Path
) -> None:
    """Python ignores SIGXFSZ in its own process; that must not leak into condor_master."""
    master_dispositions_test(start_pilot, tmp_path, signal.SIGXFSZ)


def test_the_master_gets_exactly_the_environment_it_is_given(
    start_pilot: StartPilot, tmp_path: Path
) -> None:
    """The supervisor's own environment (a token in a variable, say) stays out of the master."""
    env_file = tmp_path / "master-env.json"
    pilot = start_pilot(f"--env-to={env_file}")
    pilot.master_pid()
    pilot.send(signal.SIGTERM)
    pilot.outcome()

    assert json.loads(env_file.read_text()) == MASTER_ENV


@pytest.mark.parametrize(
    "thread_before_run",
    [
        False,
        True,
    ],
    ids=["single-threaded", "thread-started-before-run"],
)
def test_a_sigterm_arriving_while_the_loop_is_busy_is_still_a_drain(
    start_pilot: StartPilot, tmp_path: Path, thread_before_run: bool
) -> None:
    """A SIGTERM that comes while the loop is busy waits for the loop; it never kills the pilot,
    also with a thread started (after block_signals(), as run.py does) before run().

    tick() holds the loop away from sigtimedwait for a second, as a slow
    reload or collector query would; the SIGTERM is sent during that second.
    """
    in_tick = tmp_path / "in-tick"
    pilot = start_pilot(
        thread_before_run=thread_before_run,
        tick_block_file=str(in_tick),
        tick_block_seconds=1.0,
    )
    pilot.master_pid()
    wait_for(in_tick.exists, timeout=5, what="the loop to be busy in tick()")
    pilot.send(signal.SIGTERM)

    outcome = pilot.outcome()

    assert outcome["code"] == ExitCode.OK
    assert pilot.names() == ["SIGHUP", "SIGTERM"]


# -- descendants() -------------------------------------------------------------


def test_descendants_finds_every_process_below_a_real_tree_and_nothing_else() -> None:
    """Children and grandchildren of the root, not the root itself, not its parent or siblings."""
    root = subprocess.Popen(
        ["/bin/sh", "-c", "/bin/sleep 30 & /bin/sh -c '/bin/sleep 30 & wait' & wait"]
    )
    try:
        found = wait_for(
            lambda: len(descendants(root.pid)) == 3 and descendants(root.pid),
            timeout=5,
            what="three descendants",
        )
        for pid in found:
            ancestors = []
            parent = ppid_of(pid)
            while parent and parent != root.pid:
                ancestors.append(parent)
                parent = ppid_of(parent)
            assert parent == root.pid, f"{pid} is not below {root.pid}"
        assert root.pid not in found
        assert os.getpid() not in found
        assert sorted(Path(f"/proc/{pid}/comm").read_text().strip() for pid in found) == [
            "sh",
            "sleep",
            "sleep",
        ]
    finally:
        for pid in descendants(root.pid):
            kill_if_ours(pid, "sleep")
            kill_if_ours(pid, "sh")
        root.kill()
        root.wait()


def test_descendants_reads_parent_links_past_command_names_with_spaces_and_parentheses(
    tmp_path: Path,
) -> None:
    """A process may name itself ``a) S 1 (``; the parent is read after the last ``)``."""
    table = {
        10: "10 (root) S 1 10 10",
        11: "11 (evil) S 99 (x) S 10 11 11",
        12: "12 (with space) R 11 12 12",
        13: "13 (stranger) S 1 13 13",
        14: "14 (grandchild) Z 12 14 14",
    }
    for pid, stat in table.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat + " 0 0 0\n")
    (tmp_path / "15").mkdir()  # exited between listing and reading
    (tmp_path / "self").mkdir()

    assert sorted(descendants(10, proc=tmp_path)) == [11, 12, 14]
    assert descendants(13, proc=tmp_path) == []


# -- the ladder on an injected clock (in-process, run() never called) ----------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.drains: list[float] = []
        self.messages: list[str] = []

    def prepare_drain(self, *, deadline: float) -> None:
        self.drains.append(deadline)

    def reload(self) -> bool:
        return True

    def tick(self, *, state: State, master_pid: int | None) -> bool:
        return False

    def event(self, level: str, msg: str, **fields: object) -> None:
        self.messages.append(msg)


def idle_supervisor(*, grace: int, drain: int) -> tuple[Supervisor, FakeClock, Recorder]:
    """A Supervisor in RUNNING with no master to signal (master_pid None), on a fake clock."""
    clock, hooks = FakeClock(100.0), Recorder()
    supervisor = Supervisor(
        command=["/bin/false"],
        environment={},
        grace_seconds=grace,
        drain_seconds=drain,
        hooks=hooks,
        clock=clock,
        wall_clock=lambda: 1_000_000.0,
        state=State.RUNNING,
    )
    return supervisor, clock, hooks


def test_the_ladders_deadlines_run_on_the_injected_clock() -> None:
    """TERM sets the drain (now + drain) and kill (now + grace - margin) deadlines.

    Each fires when the injected clock reaches it, not before.
    """
    supervisor, clock, hooks = idle_supervisor(grace=10, drain=4)

    supervisor._handle(Event.TERMINATE)
    assert (supervisor.state, supervisor.drain_deadline, supervisor.kill_deadline) == (
        State.DRAINING,
        104.0,
        100.0 + 10 - KILL_MARGIN_SECONDS,
    )
    assert hooks.drains == [1_000_004.0]

    clock.now = 103.75
    supervisor._check_deadlines()
    assert supervisor.state is State.DRAINING
    assert supervisor._sleep_seconds() == pytest.approx(0.25)

    clock.now = 104.0
    supervisor._check_deadlines()
    assert (supervisor.state, supervisor.drain_deadline) == (State.STOPPING, None)
    assert supervisor.kill_deadline == 108.5, "fast shutdown keeps the drain's kill deadline"

    clock.now = 108.4
    supervisor._check_deadlines()
    assert not any("did not stop in time" in m for m in hooks.messages)

    clock.now = 108.5
    supervisor._check_deadlines()
    assert supervisor.kill_deadline is None
    assert any("did not stop in time" in m for m in hooks.messages)
    assert supervisor.history[-3:] == [
        Event.TERMINATE,
        Event.DRAIN_DEADLINE,
        Event.KILL_DEADLINE,
    ]


def test_a_loop_with_no_deadline_sleeps_at_most_loop_seconds() -> None:
    """Without a deadline the loop still wakes regularly to pump logs and tick."""
    supervisor, _, _ = idle_supervisor(grace=10, drain=4)
    assert supervisor._sleep_seconds() == LOOP_SECONDS


@pytest.mark.parametrize(
    ("history", "status", "code", "reason"),
    [
        ((), None, ExitCode.OK, "stopped before condor_master started"),
        (
            (Event.MASTER_STARTED, Event.MASTER_EXITED),
            0,
            ExitCode.OK,
            "condor_master shut down (retired, idle or told by the pool)",
        ),
        (
            (Event.MASTER_STARTED, Event.MASTER_EXITED),
            3 << 8,
            ExitCode.SOFTWARE,
            "condor_master exited with status 3 unexpectedly",
        ),
        (
            (Event.MASTER_STARTED, Event.MASTER_EXITED),
            signal.SIGSEGV,
            ExitCode.SOFTWARE,
            "condor_master was killed by signal SIGSEGV unexpectedly",
        ),
        (
            (Event.MASTER_STARTED, Event.TERMINATE, Event.MASTER_EXITED),
            3 << 8,
            ExitCode.OK,
            "stopped on request (condor_master exited with status 3)",
        ),
        (
            (Event.MASTER_STARTED, Event.FAST, Event.KILL_DEADLINE, Event.MASTER_EXITED),
            signal.SIGKILL,
            ExitCode.OK,
            "stopped on request (condor_master was killed by signal SIGKILL)",
        ),
    ],
    ids=["never-started", "exit-0", "exit-3", "segv", "asked-exit-3", "asked-killed"],
)
def test_the_outcome_is_0_for_a_requested_or_clean_end_and_70_otherwise(
    history: tuple[Event, ...], status: int | None, code: ExitCode, reason: str
) -> None:
    """The wait status and whether a stop was asked for give the exit code and the reason."""
    supervisor, _, _ = idle_supervisor(grace=10, drain=4)
    supervisor.history = list(history)
    supervisor.master_status = status

    outcome = supervisor._outcome()

    assert (outcome.code, outcome.reason) == (code, reason)


@pytest.mark.parametrize(
    ("history", "status", "ending"),
    [
        ((), None, Ending.NOT_STARTED),
        ((Event.MASTER_STARTED, Event.MASTER_EXITED), 0, Ending.MASTER_DONE),
        ((Event.MASTER_STARTED, Event.MASTER_EXITED), 3 << 8, Ending.MASTER_FAILED),
        ((Event.MASTER_STARTED, Event.MASTER_EXITED), signal.SIGSEGV, Ending.MASTER_FAILED),
        ((Event.MASTER_STARTED, Event.TERMINATE, Event.MASTER_EXITED), 3 << 8, Ending.REQUESTED),
        ((Event.MASTER_STARTED, Event.FAST, Event.MASTER_EXITED), signal.SIGKILL, Ending.REQUESTED),
    ],
    ids=["never-started", "exit-0", "exit-3", "segv", "asked-exit-3", "asked-killed"],
)
def test_the_outcome_names_its_ending_so_no_caller_reads_the_reasons_words(
    history: tuple[Event, ...], status: int | None, ending: Ending
) -> None:
    """run decides on the ending (retired vs. failed vs. asked), never on the sentence."""
    supervisor, _, _ = idle_supervisor(grace=10, drain=4)
    supervisor.history = list(history)
    supervisor.master_status = status
    assert supervisor._outcome().ending is ending


# -- SPEC 7.5: signals from the pilot's own tree are not obeyed ----------------

SIGNALLING_MASTER = """
import os, signal, sys, time
from pathlib import Path
how, sent = sys.argv[1], Path(sys.argv[2])
supervisor = os.getppid()
if how == "detached":
    if os.fork():
        time.sleep(60)  # the master; SIGHUP ends it
    if os.fork():
        os._exit(0)  # the grandchild is orphaned: reparented to the supervisor, its subreaper
    while os.getppid() != supervisor:
        time.sleep(0.01)
os.kill(supervisor, signal.SIGTERM)
sent.write_text(str(os.getpid()))
time.sleep(60)  # alive while the supervisor traces the sender
"""


@pytest.mark.parametrize("how", ["directly", "detached"])
def test_a_process_below_the_supervisor_cannot_stop_the_pilot_with_a_signal(
    start_pilot: StartPilot, tmp_path: Path, how: str
) -> None:
    """Jobs run below condor_master; a SIGTERM from there to the supervisor (PID 1 in the
    image) is ignored and logged, even from a process that detached itself. The same
    signal from outside the tree (here: the test, as `docker stop` would) drains."""
    program = tmp_path / "signalling_master.py"
    program.write_text(SIGNALLING_MASTER)
    sent = tmp_path / "sent"
    pilot = start_pilot(command=[sys.executable, str(program), how, str(sent)])
    sender = int(wait_for(lambda: sent.exists() and sent.read_text(), timeout=5, what="the signal"))
    ignored = wait_for(
        lambda: [e for e in pilot.record()["events"] if e["msg"].startswith("ignored SIGTERM")],
        timeout=5,
        what="the supervisor to report the ignored signal",
    )

    assert ignored[0]["fields"] == {"signal": "SIGTERM", "sender": sender}
    assert "a process of the pilot's own tree" in ignored[0]["msg"]
    assert "docker/podman stop" in ignored[0]["msg"], "the message says how to stop it"
    time.sleep(0.3)
    assert pilot.record()["prepare_drain"] == [], "the pilot did not start to drain"
    assert pilot.process.poll() is None

    pilot.send(signal.SIGTERM)

    wait_for(lambda: pilot.record()["prepare_drain"], timeout=5, what="the drain")
    assert pilot.outcome()["reason"].startswith("stopped on request")
