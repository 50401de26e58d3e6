"""`ospool-ep drain` signals only the supervisor that wrote the state it reads (SPEC 7.5).

A state file is a claim; drain checks it before it acts: the pid runs as the
file's owner, is an ``ospool-ep run`` and started when the state says. Real
processes stand in for the supervisor (a small program called ``ospool-ep``
that publishes its state and reports the signal it gets) and for what a
planted or stale state could name instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import unprivileged

from ospool_ep.pilot import procfs
from ospool_ep.pilot import statefile as state

OSPOOL_EP = Path(sys.executable).parent / "ospool-ep"

FAKE_SUPERVISOR = """
import os, signal, sys, time
from pathlib import Path
from ospool_ep.pilot import statefile as state
waited = {signal.SIGTERM, signal.SIGQUIT}
signal.pthread_sigmask(signal.SIG_BLOCK, waited)
state.publish(Path(os.environ["OSPOOL_EP_STATE_FILE"]), state.PublishedState(
    supervisor_pid=os.getpid(), master_pid=None, state="running", name="fake@host",
    ready=False, ready_checked=None, updated=time.time()))
print("published", flush=True)
info = signal.sigtimedwait(waited, 60)
print(signal.Signals(info.si_signo).name if info else "nothing", flush=True)
"""


class Supervisor:
    """The stand-in: ``python .../ospool-ep run``, as /proc/<pid>/cmdline shows the real one."""

    def __init__(self, tmp_path: Path) -> None:
        program = tmp_path / "bin" / "ospool-ep"
        program.parent.mkdir()
        program.write_text(FAKE_SUPERVISOR)
        self.state_file = tmp_path / "state" / "state.json"
        self.env = {**os.environ, "OSPOOL_EP_STATE_FILE": str(self.state_file)}
        self.process = subprocess.Popen(
            [sys.executable, str(program), "run"],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "published\n"

    def drain(self, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OSPOOL_EP), "drain", *options],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def rewrite(self, **changes: object) -> None:
        """Change the published state as someone with write access to it could."""
        data = json.loads(self.state_file.read_text())
        data.update(changes)
        data = {k: v for k, v in data.items() if v is not REMOVE}
        self.state_file.write_text(json.dumps(data))

    def still_waiting(self) -> bool:
        time.sleep(0.2)  # a signal, had one been sent, is delivered by now
        return self.process.poll() is None

    def finish(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        return out.strip()


REMOVE = object()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    found = Supervisor(tmp_path)
    yield found
    if found.process.poll() is None:
        found.process.kill()
        found.process.wait()


@pytest.mark.parametrize(("options", "signal_name"), [((), "SIGTERM"), (("--fast",), "SIGQUIT")])
def test_drain_signals_the_supervisor_that_wrote_the_state(
    supervisor: Supervisor, options: tuple[str, ...], signal_name: str
) -> None:
    result = supervisor.drain(*options)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pilot fake@host: ")
    assert supervisor.finish() == signal_name


def test_drain_refuses_a_pid_that_started_at_another_time(supervisor: Supervisor) -> None:
    """The supervisor died and its pid was reused (here: the start time no longer matches)."""
    started = procfs.start_time(supervisor.process.pid)
    assert started is not None
    supervisor.rewrite(supervisor_started=started + 1)

    result = supervisor.drain()

    assert result.returncode == 1
    assert result.stderr == (
        f"ospool-ep drain: pid {supervisor.process.pid} is not the supervisor that wrote the "
        "state (it started at another time); signalling nothing\n"
    )
    assert supervisor.still_waiting()


def test_drain_refuses_a_process_that_is_not_ospool_ep_run(supervisor: Supervisor) -> None:
    """A state naming some other process of ours (start time and all) signals nothing."""
    bystander = subprocess.Popen(["/bin/sleep", "30"])
    try:
        supervisor.rewrite(
            supervisor_pid=bystander.pid, supervisor_started=procfs.start_time(bystander.pid)
        )

        result = supervisor.drain()

        assert result.returncode == 1
        assert f"pid {bystander.pid} is not an `ospool-ep run` process" in result.stderr
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_drain_refuses_an_ospool_ep_run_of_another_uid(supervisor: Supervisor) -> None:
    """Our state naming uid 65534's `ospool-ep run`: not the process that wrote it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process of another uid")
    shared = Path(tempfile.mkdtemp(prefix="ospool-ep-test-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        script = shared / "ospool-ep"
        script.write_text("/bin/sleep 30\n")  # not exec: sh stays, with its command line
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin") or pytest.skip("no setpriv")
        other = subprocess.Popen(
            [
                setpriv,
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/bin/sh",
                str(script),
                "run",
            ],
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 5
            while procfs.cmdline(other.pid)[-1:] != ("run",) and time.monotonic() < deadline:
                time.sleep(0.01)
            supervisor.rewrite(
                supervisor_pid=other.pid, supervisor_started=procfs.start_time(other.pid)
            )

            result = supervisor.drain()

            assert result.returncode == 1
            assert (
                f"pid {other.pid} does not run as the state file's owner (uid 0)" in result.stderr
            )
            assert other.poll() is None
        finally:
            os.killpg(other.pid, signal.SIGKILL)
            other.wait()
    finally:
        shutil.rmtree(shared)
    assert supervisor.still_waiting()


def test_drain_refuses_a_state_file_it_cannot_trust(supervisor: Supervisor) -> None:
    """Owned by another uid: it says so and signals nothing, even a real supervisor."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another uid")
    os.chown(supervisor.state_file, unprivileged.NOBODY, unprivileged.NOBODY)

    result = supervisor.drain()

    assert result.returncode == 1
    assert result.stderr == (
        f"ospool-ep drain: state file {supervisor.state_file} not trusted: it is owned by "
        "uid 65534, not uid 0; signalling nothing\n"
    )
    assert supervisor.still_waiting()


def test_drain_refuses_a_state_without_the_supervisors_start_time(
    supervisor: Supervisor,
) -> None:
    """A file from before start times were recorded: the pid alone proves nothing."""
    supervisor.rewrite(supervisor_started=REMOVE)

    result = supervisor.drain()

    assert result.returncode == 1
    assert "without its start time" in result.stderr
    assert supervisor.still_waiting()


def test_drain_with_a_dead_supervisor_says_no_pilot_runs(supervisor: Supervisor) -> None:
    supervisor.process.kill()
    supervisor.process.wait()

    result = supervisor.drain()

    assert result.returncode == 1
    assert result.stderr == "ospool-ep drain: no pilot is running here\n"


def test_a_supervisor_command_line_is_recognised_in_each_way_it_is_started() -> None:
    """The console script (image, venv), ``python -m ospool_ep``; nothing else."""
    assert state.is_supervisor_command(("/usr/bin/python3", "/usr/local/bin/ospool-ep", "run"))
    assert state.is_supervisor_command(("/venv/bin/ospool-ep", "run"))
    assert state.is_supervisor_command(("python3", "-m", "ospool_ep", "run"))
    assert state.is_supervisor_command(("python3", "-I", "-mospool_ep", "run"))
    assert not state.is_supervisor_command(("/venv/bin/ospool-ep", "health"))
    assert not state.is_supervisor_command(("/bin/sleep", "run"))
    assert not state.is_supervisor_command(("run",))
    assert not state.is_supervisor_command(())
