"""`ospool-ep run` up to the supervisor, and the hooks the supervisor calls back.

Reload (SIGHUP), token rotation and the drain drop-in are exercised on real
files, with the rendered tree read back through HTCondor's own parser.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import unprivileged
from jwt_factory import token
from venv_tools import venv_tool

from ospool_ep.inputs.tokens import install_tokens
from ospool_ep.pilot import prepare, procfs, readiness, render, run
from ospool_ep.pilot import workdir as pilotdir
from ospool_ep.pilot.dropin import OVER_ITS_REQUEST
from ospool_ep.pilot.lifecycle import State
from ospool_ep.pilot.logs import Emitter
from ospool_ep.pilot.plan import Host, build_plan
from ospool_ep.transfer.client import SOCKET_VARIABLE

NOW = int(time.time())
OSPOOL_EP = venv_tool("ospool-ep")
"""The venv's console script: never whatever ``ospool-ep`` the caller's PATH finds."""


def write_token(directory: Path, text: str) -> Path:
    path = directory / "flock.opensciencegrid.org"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def site(tmp_path: Path) -> dict[str, str]:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    write_token(tokens, token(iat=NOW, exp=NOW + 30 * 86400))
    (tmp_path / "pilot").mkdir()
    return {
        "PATH": os.environ["PATH"],
        "GLIDEIN_Site": "Test Site",
        "GLIDEIN_ResourceName": "Test Resource",
        "TOKEN_DIR": str(tokens),
        "PILOT_DIR": str(tmp_path / "pilot"),
        "EXTRA_ATTRIBUTES_FILE": str(tmp_path / "extra.cfg"),
        "MIN_DISK_GB": "0",
        # Stub daemons and no Apptainer here: containment is the e2e tests' (tests/e2e).
        "JOB_CONTAINMENT": "preferred",
        "OSPOOL_EP_STATE_FILE": str(tmp_path / "state.json"),
    }


def hooks_for(site: dict[str, str], tmp_path: Path) -> tuple[run.PilotHooks, io.StringIO]:
    host = Host(environ=site, now=NOW, rng=random.Random(1), hostname="h", user="osg")
    outcome = build_plan(host)
    assert outcome.plan is not None, [f.as_line() for f in outcome.findings]
    config_dir = tmp_path / "config"
    assert render.write_and_verify(
        outcome.plan, output=config_dir, findings=outcome.findings, environ={}
    )
    out = io.StringIO()
    launch = prepare.launch_for(
        outcome.plan,
        outcome.tokens,
        directory=pilotdir.PilotDirectory(tmp_path, -1),
        config_dir=config_dir,
        command=["/bin/false"],
        environment={},
        environ=site,
    )
    hooks = run.PilotHooks(launch=launch, emitter=Emitter(fmt="text", stream=out))
    return hooks, out


def installed_token_dir(hooks: run.PilotHooks) -> Path:
    plan, _ = prepare.unpack(hooks.plan_blob)
    return Path(plan.token_dir)


def run_command(site: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ospool-ep run`` as a site starts it, with ``site`` as its whole environment."""
    return subprocess.run(
        [OSPOOL_EP, "run"], env=site, capture_output=True, text=True, timeout=60, check=False
    )


def knob(config_dir: Path, name: str) -> str:
    code = "import sys, htcondor2; print(htcondor2.param.get(sys.argv[1]))"
    env = {**os.environ, "CONDOR_CONFIG": str(config_dir / "condor_config")}
    result = subprocess.run(
        [sys.executable, "-c", code, name], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_run_on_a_host_without_htcondor_exits_69_and_leaves_nothing(
    site: dict[str, str], tmp_path: Path
) -> None:
    """No daemons here: exit 69 naming HTCondor, before any pilot directory is made."""
    result = run_command(site)
    assert result.returncode == 69, result.stdout + result.stderr
    assert "HTCondor: daemons not installed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert list((tmp_path / "pilot").iterdir()) == []


def test_run_with_a_bad_setting_exits_78_naming_it(site: dict[str, str]) -> None:
    site["ACCEPT_JOBS_FOR_HOURS"] = "soon"
    result = run_command(site)
    assert result.returncode == 78
    assert "ACCEPT_JOBS_FOR_HOURS" in result.stdout


def test_json_logs_are_one_object_per_line(site: dict[str, str]) -> None:
    site["LOG_FORMAT"] = "json"
    result = run_command(site)
    lines = result.stdout.splitlines()
    assert lines
    for line in lines:
        event = json.loads(line)
        assert {"ts", "level", "source", "msg"} <= set(event)


def test_the_drain_drop_in_stops_new_jobs_and_bounds_retirement(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    hooks.prepare_drain(deadline=NOW + 20)
    assert knob(hooks.config_dir, "START") == "False"
    assert knob(hooks.config_dir, "MAXJOBRETIREMENTTIME") == (
        f"ifThenElse({OVER_ITS_REQUEST}, -1,"
        f" ifThenElse(MY.JobStart =?= undefined, 0, {NOW + 20} - MY.JobStart))"
    )
    # Set from the start (the startd fixes a job's vacate time when it starts):
    # HTCondor's default, 600 s, would make the startd evict at once.
    assert knob(hooks.config_dir, "MachineMaxVacateTime") == str(render.VACATE_SECONDS)


def test_a_renewed_token_is_installed_and_reconfigures(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    installed = installed_token_dir(hooks)
    fresh = token(iat=NOW, exp=NOW + 60 * 86400, jti="renewed")
    write_token(Path(site["TOKEN_DIR"]), fresh)
    assert hooks.reload() is True
    texts = [p.read_text().strip() for p in installed.iterdir()]
    assert texts == [fresh]
    assert oct(installed.stat().st_mode & 0o777) == "0o700"


def test_an_expired_replacement_token_is_refused_and_the_old_one_kept(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, out = hooks_for(site, tmp_path)
    tokens_dir = installed_token_dir(hooks)
    tokens_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    install_tokens(prepare.unpack(hooks.plan_blob)[1], dest=tokens_dir)
    before = {p.name: p.read_text() for p in tokens_dir.iterdir()}
    expired = token(iat=NOW - 86400, exp=NOW - 60)
    write_token(Path(site["TOKEN_DIR"]), expired)
    assert hooks.reload() is False
    assert {p.name: p.read_text() for p in tokens_dir.iterdir()} == before
    assert "expired at" in out.getvalue()
    assert "reload refused" in out.getvalue()
    assert expired not in out.getvalue()


def test_a_bad_extra_attributes_file_on_reload_keeps_the_running_config(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, out = hooks_for(site, tmp_path)
    start_before = knob(hooks.config_dir, "START")
    Path(site["EXTRA_ATTRIBUTES_FILE"]).write_text("START = True\n")
    assert hooks.reload() is False
    assert knob(hooks.config_dir, "START") == start_before
    assert "extra.cfg:1" in out.getvalue()


def test_new_extra_attributes_are_published_after_reload(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    Path(site["EXTRA_ATTRIBUTES_FILE"]).write_text('RACK = "b12"\n')
    assert hooks.reload() is True
    assert knob(hooks.config_dir, "RACK") == '"b12"'
    assert "RACK" in knob(hooks.config_dir, "STARTD_ATTRS").split()


def test_reload_is_refused_while_stopping(site: dict[str, str], tmp_path: Path) -> None:
    hooks, _ = hooks_for(site, tmp_path)

    class Stopping:
        state = State.DRAINING

    hooks.supervisor = Stopping()  # type: ignore[assignment]
    assert hooks.reload() is False


def test_periodic_work_notices_a_rotated_token_file(site: dict[str, str], tmp_path: Path) -> None:
    """A Kubernetes Secret update swaps the file; the next poll re-validates and reconfigures."""
    hooks, _ = hooks_for(site, tmp_path)
    assert hooks.tick(state=State.RUNNING, master_pid=None) is False
    write_token(Path(site["TOKEN_DIR"]), token(iat=NOW, exp=NOW + 90 * 86400, jti="rotated"))
    now = time.monotonic() + run.TOKEN_POLL_SECONDS
    hooks.clock = lambda: now  # the next poll is due
    assert hooks.tick(state=State.RUNNING, master_pid=None) is True
    assert hooks.tick(state=State.RUNNING, master_pid=None) is False


def test_the_state_file_is_published_and_withdrawn(site: dict[str, str], tmp_path: Path) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    hooks.publish(state=State.RUNNING, master_pid=12345)
    published = json.loads(Path(site["OSPOOL_EP_STATE_FILE"]).read_text())
    assert published["state"] == "running"
    assert published["master_pid"] == 12345
    assert published["supervisor_pid"] == os.getpid()
    hooks.finished(reason="test")
    assert not Path(site["OSPOOL_EP_STATE_FILE"]).exists()


def test_the_master_never_gets_the_token_or_webhook_urls() -> None:
    assert {"TOKEN", "NOTIFY_START_URL", "NOTIFY_STOP_URL"} <= set(prepare.CHILD_ENV_DROPPED)


class FakeQueries:
    """Stands in for condor_status children: answers are handed in by the test."""

    def __init__(self) -> None:
        self.started = 0
        self.pid: int | None = None

    def start(self) -> None:
        self.started += 1
        self.pid = 4000 + self.started

    def running(self) -> bool:
        return self.pid is not None

    def expire(self, now: float) -> None:
        del now

    def finished(self, pid: int, status: int) -> readiness.Answer | None:
        del status
        if pid != self.pid:
            return None
        self.pid = None
        return self.answer

    answer = readiness.Answer(answered=True)


def observed_hooks(
    site: dict[str, str], tmp_path: Path, *, answer: readiness.Answer
) -> tuple[run.PilotHooks, io.StringIO, FakeQueries, list[float]]:
    hooks, out = hooks_for(site, tmp_path)
    clock = [1000.0]
    hooks.clock = lambda: clock[0]
    queries = FakeQueries()
    queries.answer = answer
    hooks.observer = readiness.Observer(queries=queries, wall_clock=lambda: clock[0])
    hooks.joiner = readiness.Joiner(started_at=clock[0])
    return hooks, out, queries, clock


def drive(
    hooks: run.PilotHooks, queries: FakeQueries, clock: list[float], until: float
) -> list[float]:
    """Tick once a second, answering each query at once; the times a nudge was asked for."""
    nudged = []
    while clock[0] < until:
        if hooks.tick(state=State.RUNNING, master_pid=None):
            nudged.append(clock[0])
        if queries.pid is not None:
            hooks.child_exited(queries.pid, 0)
        clock[0] += 1.0
    return nudged


def test_a_slot_missing_from_a_reachable_collector_is_advertised_again_with_backoff(
    site: dict[str, str], tmp_path: Path
) -> None:
    """The startd logged its first update at +3 s, the collector answers without our slot:
    nudges 5 s after that update, then 5, 10, 20, 40, 60 s apart."""
    hooks, out, queries, clock = observed_hooks(
        site, tmp_path, answer=readiness.Answer(answered=True)
    )
    drive(hooks, queries, clock, until=1003.0)
    hooks.startd_advertised()
    nudged = drive(hooks, queries, clock, until=1300.0)
    assert [t - 1000 for t in nudged][:7] == [8, 13, 23, 43, 83, 143, 203]
    assert out.getvalue().count("advertise again") == len(nudged)


def test_no_nudge_before_the_startd_has_sent_its_first_update(
    site: dict[str, str], tmp_path: Path
) -> None:
    """A reconfig before the first update redoes the startd's start-up work and puts the
    update off further: without the StartLog line, the first nudge waits 90 s."""
    hooks, _, queries, clock = observed_hooks(
        site, tmp_path, answer=readiness.Answer(answered=True)
    )
    nudged = drive(hooks, queries, clock, until=1200.0)
    # The first query goes at +90 s, its answer makes the nudge due at the next tick.
    assert nudged[0] - 1000 == readiness.JOIN_UNANNOUNCED_SECONDS + 1


def test_the_collector_is_not_asked_before_the_startd_has_sent_its_first_update(
    site: dict[str, str], tmp_path: Path
) -> None:
    """Until then the answer can only be "not there": 20 starting pilots asking every
    2 s only load the collector that has to take their first updates."""
    hooks, _, queries, clock = observed_hooks(
        site, tmp_path, answer=readiness.Answer(answered=True)
    )
    drive(hooks, queries, clock, until=1030.0)
    assert queries.started == 0
    hooks.startd_advertised()
    drive(hooks, queries, clock, until=1031.0)
    assert queries.started == 1


def test_the_startds_first_update_is_read_from_startlog(
    site: dict[str, str], tmp_path: Path
) -> None:
    """The log stream's watcher passes every line on and tells the joiner of the update."""
    hooks, out, _, clock = observed_hooks(site, tmp_path, answer=readiness.Answer(answered=True))
    watch = run.StartdWatch(hooks.emitter, hooks)
    watch.daemon_line("MasterLog", "12/01/26 11:59:45 Initial update sent to collector(s)")
    assert hooks.joiner is not None and hooks.joiner.advertised_at is None
    watch.daemon_line("StartLog", "12/01/26 11:59:45 Initial update sent to collector(s)")
    assert hooks.joiner.advertised_at == clock[0]
    assert out.getvalue().count("Initial update sent") == 2


def test_a_visible_slot_is_not_nudged(site: dict[str, str], tmp_path: Path) -> None:
    answer = readiness.Answer(answered=True, slots=({"Name": "slot1@h"},))
    hooks, _, queries, clock = observed_hooks(site, tmp_path, answer=answer)
    assert drive(hooks, queries, clock, until=1400.0) == []
    assert hooks.observer is not None and hooks.observer.ready


def test_no_nudge_while_the_collector_does_not_answer(site: dict[str, str], tmp_path: Path) -> None:
    """A nudge cannot help while the CM is down (or the query hangs): none is spent."""
    hooks, _, queries, clock = observed_hooks(
        site, tmp_path, answer=readiness.Answer(answered=False)
    )
    assert drive(hooks, queries, clock, until=1300.0) == []


def test_a_collector_that_comes_back_gets_a_nudge_within_seconds(
    site: dict[str, str], tmp_path: Path
) -> None:
    """Down at start, reachable at +200 s: the startd is asked to advertise within seconds."""
    hooks, _, queries, clock = observed_hooks(
        site, tmp_path, answer=readiness.Answer(answered=False)
    )
    hooks.startd_advertised()  # its first update was refused
    assert drive(hooks, queries, clock, until=1200.0) == []
    queries.answer = readiness.Answer(answered=True)
    nudged = drive(hooks, queries, clock, until=1300.0)
    assert nudged and nudged[0] - 1200 <= 11


def test_the_osdf_work_waits_until_the_collector_lists_the_slot(
    site: dict[str, str], tmp_path: Path
) -> None:
    """The transfer service's imports and the test's reconfig are not spent while the
    pilot joins (20 pilots under a CPU hog missed 90 s): the startd's first update moves
    nothing, the collector listing the slot starts both, and without that the bound holds."""
    hooks, _, queries, clock = observed_hooks(
        site, tmp_path, answer=readiness.Answer(answered=True)
    )
    hooks.launch = dataclasses.replace(
        hooks.launch,
        osdf_plugin="/bin/true",
        environment={SOCKET_VARIABLE: str(tmp_path / "transfer.sock")},
    )
    hooks.start_osdf_checks()
    assert hooks.osdf is not None and hooks.transfers is not None
    latest = 1000.0 + run.OSDF_START_LATEST_SECONDS
    assert (hooks.transfers.next_start, hooks.osdf.due) == (
        latest,
        latest + run.OSDF_FIRST_TEST_AFTER_SECONDS,
    )
    clock[0] = 1010.0
    hooks.startd_advertised()
    assert hooks.observer is not None
    hooks.observer.tick(clock[0])
    assert queries.pid is not None
    hooks.child_exited(queries.pid, 0)  # answered without our slot
    assert hooks.transfers.next_start == latest

    clock[0] = 1030.0
    queries.answer = readiness.Answer(answered=True, slots=({"Name": "slot1@h"},))
    hooks.observer.next_query = 0.0
    hooks.observer.tick(clock[0])
    assert queries.pid is not None
    hooks.child_exited(queries.pid, 0)
    assert (hooks.transfers.next_start, hooks.osdf.due) == (
        1030.0,
        1030.0 + run.OSDF_FIRST_TEST_AFTER_SECONDS,
    )


def test_a_fifo_in_place_of_the_drain_drop_in_does_not_freeze_the_drain(
    site: dict[str, str], tmp_path: Path
) -> None:
    """SPEC 7.5: a job that leaves a FIFO at the drop-in's name cannot block PID 1's drain."""
    import threading

    hooks, _ = hooks_for(site, tmp_path)
    drain = hooks.config_dir / render.DRAIN_FILE
    os.mkfifo(drain)
    worker = threading.Thread(
        target=hooks.prepare_drain, kwargs={"deadline": NOW + 60.0}, daemon=True
    )
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "prepare_drain blocked on a FIFO"
    assert knob(hooks.config_dir, "START") == "False"


# -- the running supervisor, from outside ------------------------------------------

FAKE_MASTER = """#!/bin/sh
# Stands in for condor_master -f: one condor_startd child; stops on TERM or QUIT.
trap '' HUP
trap 'kill $startd 2>/dev/null; exit 0' TERM QUIT
"$(dirname "$0")/condor_startd" 600 &
startd=$!
echo $$ > "$FAKE_MASTER_PID.tmp" && mv "$FAKE_MASTER_PID.tmp" "$FAKE_MASTER_PID"
wait $startd
"""

READ_PROC = """
import json, sys
from pathlib import Path
found = {}
for pid in sys.argv[1:]:
    try:
        found[pid] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\\0")
        found[pid] = [v.decode(errors="replace").split("=")[0] for v in found[pid] if v]
    except OSError as error:
        found[pid] = type(error).__name__
print(json.dumps(found))
"""


def fake_htcondor(directory: Path) -> Path:
    """A PATH entry with condor_master (a shell script) and condor_startd (/bin/sleep)."""
    directory.mkdir()
    master = directory / "condor_master"
    master.write_text(FAKE_MASTER)
    master.chmod(0o755)
    startd = directory / "condor_startd"
    startd.write_bytes(Path("/bin/sleep").read_bytes())
    startd.chmod(0o755)
    return directory


def wait_for(path: Path, process: subprocess.Popen[str], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"ospool-ep run ended early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{path.name} never came:\n{log.read_text()}"
        time.sleep(0.05)
    return path.read_text().strip()


def unprivileged_run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*unprivileged.command(), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_running_supervisor_hides_its_token_and_its_memory_from_its_own_uid(
    site: dict[str, str], tmp_path: Path
) -> None:
    """SPEC 7.5, end to end: `ospool-ep run` given TOKEN, as a process without privileges.

    Its /proc/<pid>/environ (the one it was exec'd with) holds no TOKEN: it exec'd
    itself again (same pid) and got the text through a memfd; the token still works
    (it is installed for the daemons). Another process of its uid cannot read that
    environ at all (not dumpable), while it can read condor_master's. health and drain,
    run as that uid, still work on it.
    """
    text = token(iat=NOW, exp=NOW + 30 * 86400, jti="from-the-environment")
    for path in Path(site["TOKEN_DIR"]).iterdir():
        path.unlink()
    master_pid_file = tmp_path / "master.pid"
    site.update(
        TOKEN=text,
        PATH=f"{fake_htcondor(tmp_path / 'htcondor')}:{site['PATH']}",
        POOL="127.0.0.1:9",  # nothing listens there: the collector query fails at once
        ENABLE_REMOTE_SYSLOG="false",
        FAKE_MASTER_PID=str(master_pid_file),
    )
    log = tmp_path / "run.log"
    with log.open("w") as out:
        supervisor = subprocess.Popen(
            [*unprivileged.command(), OSPOOL_EP, "run"],
            env=site,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        master = int(wait_for(master_pid_file, supervisor, log, timeout=90))
        environ_of = json.loads(
            unprivileged_run(
                sys.executable, "-c", READ_PROC, str(supervisor.pid), str(master), env=site
            ).stdout
        )
        assert environ_of[str(supervisor.pid)] == "PermissionError"
        assert "TOKEN" not in environ_of[str(master)]
        assert "GLIDEIN_Site" in environ_of[str(master)]
        if os.geteuid() == 0:  # we may read it (CAP_SYS_PTRACE): the exec'd environment
            initial = Path(f"/proc/{supervisor.pid}/environ").read_bytes()
            assert text.encode() not in initial
            names = [entry.split(b"=")[0] for entry in initial.split(b"\0")]
            assert b"TOKEN" not in names
            # The supervisor is the light half, exec'd after preparing (handoff.py): its
            # environment is what the token hand-over left, plus the launch.
            assert b"OSPOOL_EP_LAUNCH_FD" in names, "it exec'd itself into the supervisor"
            assert b"OSPOOL_EP_TOKEN_FD" not in names
        installed = list(Path(site["PILOT_DIR"]).glob("ospool-ep-*/tokens.d/*"))
        assert [path.read_text().strip() for path in installed] == [text]

        deadline = time.monotonic() + 30
        while (health := unprivileged_run(OSPOOL_EP, "health", env=site)).returncode:
            assert time.monotonic() < deadline, health.stdout + log.read_text()
            time.sleep(0.2)
        assert "condor_master and condor_startd running" in health.stdout
        published = json.loads(Path(site["OSPOOL_EP_STATE_FILE"]).read_text())
        assert published["supervisor_pid"] == supervisor.pid
        assert published["supervisor_started"] == procfs.start_time(supervisor.pid)

        drain = unprivileged_run(OSPOOL_EP, "drain", env=site)
        assert drain.returncode == 0, drain.stderr
        assert supervisor.wait(timeout=30) == 0, log.read_text()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    output = log.read_text()
    assert text not in output
    assert "TOKEN stays" not in output
    assert "dumpable" not in output


def test_run_reports_hardening_problems_in_its_log_format(site: dict[str, str]) -> None:
    """A hand-over that went wrong is an event like any other (here in JSON), then the
    pilot goes on (here to exit 69: no HTCondor on this host)."""
    site.update(LOG_FORMAT="json", OSPOOL_EP_TOKEN_FD="250")
    result = run_command(site)
    assert result.returncode == 69
    first = json.loads(result.stdout.splitlines()[0])
    assert first["level"] == "error"
    assert (
        first["msg"] == "TOKEN was not handed over: OSPOOL_EP_TOKEN_FD: descriptor 250 is not open"
    )


def test_periodic_tasks_run_at_their_periods_on_the_injected_clock(
    site: dict[str, str], tmp_path: Path
) -> None:
    """Token polling every 10 s, state every 5 s, readiness and joining every loop."""
    hooks, _ = hooks_for(site, tmp_path)
    now = [0.0]
    hooks.clock = lambda: now[0]
    runs: dict[str, list[float]] = {task.name: [] for task in hooks.periodic}
    for task in hooks.periodic:
        task.run = lambda state, pid, name=task.name: runs[name].append(now[0]) or False
    for second in range(21):
        now[0] = float(second)
        assert hooks.tick(state=State.RUNNING, master_pid=None) is False
    assert runs["token files"] == [0.0, 10.0, 20.0]
    assert runs["state and metrics"] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert len(runs["readiness"]) == len(runs["joining"]) == 21
