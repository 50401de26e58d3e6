"""Run: `ospool-ep run`, from the environment to a supervised, cleaned-up pilot (SPEC 7).

The pipeline reads as the product (STYLE 1), in two halves:

1. prepare (:mod:`ospool_ep.pilot.prepare`, the heavy half): validate, plan, make the
   pilot directory, render and verify the configuration, install the tokens;
2. exec ``ospool-ep run`` again, same pid, into the light half
   (:mod:`ospool_ep.pilot.handoff`): the supervisor imports neither the ClassAd library
   nor jinja2, which would otherwise stay in its memory for the pilot's life;
3. supervise condor_master until it ends, then clean up and say why.

:class:`PilotHooks` is what the supervisor calls back for: drain, reload (in a
child process that loads the heavy half), token rotation, readiness and
metrics, state publishing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospool_ep import __version__
from ospool_ep.cvmfs import cvmfsexec
from ospool_ep.cvmfs.probe import has_attribute
from ospool_ep.exitcodes import ExitCode
from ospool_ep.pilot import atomic, dropin, handoff, notify, readiness, remotelog
from ospool_ep.pilot import statefile as published
from ospool_ep.pilot import workdir as pilotdir
from ospool_ep.pilot.handoff import Launch
from ospool_ep.pilot.lifecycle import State
from ospool_ep.pilot.logs import Emitter, Level
from ospool_ep.pilot.logtail import LogTailer
from ospool_ep.pilot.osdf import OsdfPlan
from ospool_ep.pilot.osdfcheck import OsdfCheck
from ospool_ep.pilot.supervise import Ending, Supervisor, block_signals
from ospool_ep.pilot.transferservice import TransferService
from ospool_ep.transfer.client import SOCKET_VARIABLE

if TYPE_CHECKING:
    from ospool_ep.pilot.plan import Host

TOKEN_POLL_SECONDS = 10
OSDF_START_LATEST_SECONDS = 120.0
"""The transfer service and the first OSDF test start when the collector first lists our
slot, or this long after the start if it has not: on a busy host every CPU-second spent
before then delays the joining of the pilots beside it (the service imports pelicanfs,
each new verdict is a reconfig, and a reconfig redoes the starter's own tests)."""
OSDF_FIRST_TEST_AFTER_SECONDS = 3.0
"""After the service's start: its imports take about a second."""
STATE_SECONDS = 5
RELOAD_TIMEOUT_SECONDS = 60.0
"""A reload (validation, HTCondor's parser on the new tree) still running after this
is killed and refused: the running configuration stays."""
SBIN = "/usr/sbin:/sbin:/usr/local/sbin"
REMOTE_FLUSH_SECONDS = 1.0
"""How long lines still queued for the syslog receiver may hold up an exec or the
pilot's exit; only while connected (a dead receiver holds up nothing)."""


def log_format(environ: Mapping[str, str]) -> Any:
    value = environ.get("LOG_FORMAT", "text").strip().lower()
    return value if value in ("text", "json") else "text"


def run_pilot(host: Host, *, may_exec: bool = False) -> int:
    """``ospool-ep run`` in its first process: prepare, then become the light supervisor.

    ``may_exec``: this process was started
    for ``ospool-ep run`` (never inside a test calling the CLI in-process).
    """
    # Before any thread exists (observer, metrics, webhooks): they inherit the
    # mask, and a SIGTERM during start-up waits for the supervisor's loop.
    block_signals()
    emitter = Emitter(fmt=log_format(host.environ), stream=sys.stdout)
    attach_remote(emitter, host.environ, announce=True)
    from ospool_ep.pilot import prepare  # noqa: PLC0415 - the heavy half, never in the supervisor

    try:
        launch = prepare.prepare_pilot(host, emitter)
    except prepare.NotStarting as stop:
        detach_remote(emitter)
        return int(stop.code)
    if may_exec:
        # The exec ends the sender thread: what is queued goes first (bounded).
        detach_remote(emitter)
        environ = {k: v for k, v in os.environ.items() if k != "TOKEN"}
        error = handoff.exec_supervisor(
            launch, environ=environ, executable=sys.executable, argv=list(sys.orig_argv)
        )
        emitter.event(
            "warning",
            "cannot exec the light supervisor: supervising from the preparing process",
            error=str(error),
        )
    return supervise_launch(launch, emitter, environ=host.environ)


def supervise_launch(
    launch: Launch, emitter: Emitter, *, environ: Mapping[str, str] | None = None
) -> int:
    """The light half: supervise the prepared pilot, then remove its directory."""
    attach_remote(emitter, os.environ if environ is None else environ)
    try:
        directory = pilotdir.PilotDirectory(Path(launch.local_dir), launch.lock_fd)
        try:
            return _supervise(launch, emitter)
        finally:
            removal = directory.remove()
            if not removal.complete:
                report_leftover(removal, emitter, what="the pilot's own directory")
    finally:
        detach_remote(emitter)


def attach_remote(emitter: Emitter, environ: Mapping[str, str], *, announce: bool = False) -> None:
    """Also send the emitter's lines to the syslog receiver the environment names (SPEC 7.3).

    ``announce``: say where the stream goes (once per pilot: the first half).
    """
    if emitter.remote is not None:
        return
    decision = remotelog.decide(environ)
    if announce:
        emitter.event("warning" if decision.warn else "info", f"remote syslog: {decision.message}")
    if decision.target is None:
        return
    # The sender thread must inherit the mask (exec keeps it; this makes it certain).
    block_signals()
    sender = remotelog.RemoteLog(decision.target, report=emitter.local_event)
    sender.start()
    emitter.remote = sender


def detach_remote(emitter: Emitter, *, timeout: float = REMOTE_FLUSH_SECONDS) -> None:
    """Stop sending; lines still queued get ``timeout`` while connected; losses are said."""
    sender = emitter.remote
    if not isinstance(sender, remotelog.RemoteLog):
        return
    emitter.remote = None
    counts = sender.close(timeout=timeout)
    if counts.dropped or counts.failures:
        emitter.local_event(
            "warning",
            f"remote syslog: {counts.sent} lines sent to {sender.target.shown}, "
            f"{counts.dropped} dropped, {counts.failures} failed connections",
        )


def report_leftover(leftover: pilotdir.Removal, emitter: Emitter, *, what: str) -> None:
    emitter.event(
        "warning",
        f"could not remove all of {what}",
        path=str(leftover.path),
        left=leftover.left,
        error=leftover.error,
    )


def _supervise(launch: Launch, emitter: Emitter) -> int:
    finder = cvmfsexec.MasterFinder() if launch.cvmfsexec_log_dir else None
    hooks = PilotHooks(launch=launch, emitter=emitter)
    tailer = LogTailer(log_dir=Path(launch.local_dir) / "log", emitter=StartdWatch(emitter, hooks))
    supervisor = Supervisor(
        command=list(launch.command),
        environment=dict(launch.environment),
        grace_seconds=launch.grace_seconds,
        drain_seconds=launch.drain_seconds,
        hooks=hooks,
        pump_logs=tailer.pump,
        resolve_master=finder,
        child_exited=hooks.child_exited,
    )
    hooks.started(supervisor)
    hooks.notify("start", "pilot started")
    result = supervisor.run()
    tailer.close()
    reason = result.reason
    if finder and not finder.ever_found and result.ending is Ending.MASTER_FAILED:
        # cvmfsexec ended before it ever started the master: its mounts failed.
        for line in cvmfsexec.log_lines(Path(launch.cvmfsexec_log_dir or "")):
            emitter.event("error", line, source="cvmfsexec")
        result = dataclasses.replace(
            result, code=ExitCode.UNAVAILABLE, reason=f"cvmfsexec failed: {reason}"
        )
        reason = result.reason
    if result.ending is Ending.MASTER_DONE:
        reason = "retired" if time.time() >= launch.to_retire else "idle or shut down by the pool"
    level: Level = "info" if result.code is ExitCode.OK else "error"
    emitter.event(level, f"pilot ended: {reason}", exit_code=int(result.code))
    hooks.notify("stop", reason, wait=True)
    hooks.finished(reason=reason)
    return int(result.code)


class StartdWatch:
    """The log stream's emitter, watching StartLog for the startd's first update."""

    def __init__(self, emitter: Emitter, hooks: PilotHooks) -> None:
        self.emitter = emitter
        self.hooks = hooks

    def event(self, level: Level, msg: str, /, **fields: object) -> None:
        self.emitter.event(level, msg, **fields)

    def daemon_line(self, source: str, text: str) -> None:
        self.emitter.daemon_line(source, text)
        if source == "StartLog" and readiness.ADVERTISED_LINE in text:
            self.hooks.startd_advertised()


@dataclasses.dataclass
class Periodic:
    """One periodic task: due every ``period`` seconds (0: every loop); True asks for a
    reconfig of the master."""

    name: str
    period: float
    run: Callable[[State, int | None], bool]
    due: float = 0.0


@dataclasses.dataclass
class PilotHooks:
    """The supervisor's callbacks: everything that knows about tokens, config and the pool."""

    launch: Launch
    emitter: Emitter
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    plan_blob: str = ""
    """The prepared plan, replaced by each accepted reload (opaque: see handoff.Launch)."""
    token_expiry: float | None = None
    token_signature: tuple[object, ...] = ()
    periodic: tuple[Periodic, ...] = ()
    """The supervisor's periodic work, run from :meth:`tick` on the injected clock."""
    state_problem: str | None = None
    published_state: State | None = None
    """The state last published: a change is published at once."""
    supervisor: Supervisor | None = None
    observer: readiness.Observer | None = None
    queries: readiness.ProcessQueries | None = None
    joiner: readiness.Joiner | None = None
    metrics: Any = None
    """An ospool_ep.metrics.Metrics when METRICS_PORT is set (imported only then: RSS)."""
    osdf: OsdfCheck | None = None
    transfers: TransferService | None = None

    def __post_init__(self) -> None:
        self.plan_blob = self.plan_blob or self.launch.plan_blob
        self.token_expiry = self.launch.token_expiry
        self.token_signature = _dir_signature(Path(self.launch.token_dir))
        self.periodic = (
            Periodic("token files", TOKEN_POLL_SECONDS, self.poll_tokens),
            Periodic("readiness", 0.0, self.observe),
            Periodic("state and metrics", STATE_SECONDS, self.report_state),
            Periodic("joining", 0.0, self.join),
            Periodic("OSDF plugin test", 0.0, self.check_osdf),
        )

    @property
    def config_dir(self) -> Path:
        return Path(self.launch.config_dir)

    @property
    def state_file(self) -> Path:
        return Path(self.launch.state_file)

    # -- supervisor hooks ---------------------------------------------------

    def event(self, level: Level, msg: str, **fields: object) -> None:
        self.emitter.event(level, msg, **fields)

    def prepare_drain(self, *, deadline: float) -> None:
        # By rename: a FIFO or symlink left at the name must not block or redirect us.
        atomic.replace_file(
            self.config_dir / dropin.DRAIN_FILE, dropin.drain_config(deadline=deadline)
        )

    def reload(self) -> bool:
        if self.supervisor is not None and self.supervisor.state is not State.RUNNING:
            self.event("info", "not reloading while stopping")
            return False
        verdict = reload_in_child(self.plan_blob, config_dir=self.config_dir, now=self.wall_clock())
        if verdict is None:
            self.event("error", "reload failed: keeping the running configuration")
            return False
        events = verdict.get("events")
        for level, msg, fields in events if isinstance(events, list) else []:
            self.event(level, msg, **fields)
        if not verdict.get("accepted"):
            return False
        self.plan_blob = str(verdict["plan_blob"])
        if self.osdf is not None:
            self.osdf.reapply()  # the reload rendered config.d anew, with the plugin off
        expiry = verdict.get("token_expiry")
        self.token_expiry = float(expiry) if isinstance(expiry, int | float) else None
        return True

    def tick(self, *, state: State, master_pid: int | None) -> bool:
        """Run each periodic task that is due; True when one asks for a reconfig."""
        now = self.clock()
        reconfigure = False
        if state is not self.published_state:
            # At once, not at the next period: `ospool-ep drain` waits for it, and an
            # idle pilot may be gone in a second (health sees the change at once too).
            self.published_state = state
            self.report_state(state, master_pid)
        for task in self.periodic:
            if now >= task.due:
                task.due = now + task.period
                reconfigure = task.run(state, master_pid) or reconfigure
        return reconfigure

    def poll_tokens(self, state: State, master_pid: int | None) -> bool:
        """A replaced token file (Secret rotation) is re-validated and installed."""
        del state, master_pid
        signature = _dir_signature(Path(self.launch.token_dir))
        if signature == self.token_signature:
            return False
        self.token_signature = signature
        self.event("info", "token files changed: re-validating")
        return self.reload()

    def observe(self, state: State, master_pid: int | None) -> bool:
        del master_pid
        if self.observer is not None:
            if state is State.RUNNING:
                now = self.clock()
                if self.joiner is None or self.joiner.announced(now):
                    self.observer.tick(now)
            elif self.queries is not None:
                self.queries.stop()  # stopping: nobody asks for readiness any more
        return False

    def report_state(self, state: State, master_pid: int | None) -> bool:
        self.publish(state=state, master_pid=master_pid)
        self.update_metrics(state)
        return False

    def join(self, state: State, master_pid: int | None) -> bool:
        del master_pid
        return state is State.RUNNING and self.advertise_again(self.clock())

    def check_osdf(self, state: State, master_pid: int | None) -> bool:
        del master_pid
        if self.osdf is None:
            return False
        if state is not State.RUNNING:
            self.osdf.stop()  # no new offers while stopping; the reaper collects it
            return False
        if self.transfers is not None:
            self.transfers.tick()
        return self.osdf.tick()

    def startd_advertised(self) -> None:
        if self.joiner is not None:
            self.joiner.startd_advertised(self.clock())

    def joined(self, now: float) -> None:
        """The collector lists our slot: the OSDF work may start (see start_osdf_checks)."""
        if self.transfers is not None and self.transfers.failures == 0:
            self.transfers.next_start = min(self.transfers.next_start, now)
        if self.osdf is not None and self.osdf.applied is None:
            # The service's import first, then the test it can serve.
            self.osdf.due = min(self.osdf.due, now + OSDF_FIRST_TEST_AFTER_SECONDS)

    def child_exited(self, pid: int, status: int) -> None:
        """The supervisor reaped a child that is not the master: maybe our collector query."""
        if self.osdf is not None and self.osdf.child_exited(pid, status):
            return
        if self.transfers is not None and self.transfers.child_exited(pid, status):
            return
        observer = self.observer
        if observer is not None:
            now = self.clock()
            if observer.child_exited(pid, status, now=now) and observer.ready:
                self.joined(now)

    def advertise_again(self, now: float) -> bool:
        """True when the collector answers without our slot and the next nudge is due."""
        if self.observer is None or self.joiner is None:
            return False
        if not self.joiner.due(self.observer, now):
            return False
        self.event("info", "slot not in the collector yet: asking the startd to advertise again")
        return True

    # -- life ---------------------------------------------------------------

    def started(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.joiner = readiness.Joiner(started_at=self.clock())
        self.start_observing()
        self.start_osdf_checks()
        port = self.launch.metrics_port
        if port:
            from ospool_ep.pilot.metrics import Metrics  # noqa: PLC0415 - only when asked: ~8 MB RSS

            self.metrics = Metrics(pilot_name=self.launch.name, version=__version__)
            try:
                self.metrics.serve(port=port)
                self.event("info", f"serving Prometheus metrics on port {port}")
            except OSError as error:
                self.metrics = None
                self.event("warning", f"metrics disabled: {error}")

    def start_osdf_checks(self) -> None:
        plugin = self.launch.osdf_plugin
        if plugin is None:
            return
        # Both wait until the collector lists our slot (joined), at most
        # OSDF_START_LATEST_SECONDS: importing pelicanfs takes a CPU-second and a new
        # verdict a reconfig, better not spent while the daemons start and join.
        latest = self.clock() + OSDF_START_LATEST_SECONDS
        if SOCKET_VARIABLE in self.launch.environment:
            self.transfers = TransferService(
                environment=dict(self.launch.environment),
                clock=self.clock,
                event=self.event,
                next_start=latest,
            )
        self.osdf = OsdfCheck(
            plan=OsdfPlan(plugin=plugin, check_seconds=self.launch.osdf_check_seconds),
            config_dir=self.config_dir,
            # The master's environment: the one the starter gives the plugin for jobs.
            environment=dict(self.launch.environment),
            output=self.config_dir.parent / "run" / "osdf-test.out",
            clock=self.clock,
            event=self.event,
            due=latest + OSDF_FIRST_TEST_AFTER_SECONDS,
        )

    def start_observing(self) -> None:
        """Readiness needs condor_status; without it the pilot runs, never reported ready."""
        condor_status = shutil.which("condor_status") or shutil.which("condor_status", path=SBIN)
        if condor_status is None:
            self.event("warning", "condor_status not found: readiness cannot be observed")
            return
        attributes = tuple(has_attribute(repo) for repo in self.launch.cvmfs_repos)
        self.queries = readiness.ProcessQueries(
            command=readiness.status_command(
                condor_status, uuid=self.launch.uuid, attributes=attributes
            ),
            # The master's own environment: its CONDOR_CONFIG, no secrets.
            environment=dict(self.launch.environment),
            output=self.config_dir.parent / "run" / "collector-query.json",
            clock=self.clock,
        )
        self.observer = readiness.Observer(queries=self.queries, wall_clock=self.wall_clock)

    def update_metrics(self, state: State) -> None:
        if self.metrics is None:
            return
        from ospool_ep.pilot.metrics import PilotSnapshot  # noqa: PLC0415 - loaded with Metrics

        observer = self.observer
        slots = observer.slots if observer else []
        now = self.wall_clock()
        expiry = self.token_expiry
        self.metrics.update(
            PilotSnapshot(
                state=state.value,
                slots_total=len(slots),
                slots_claimed=sum(1 for ad in slots if ad.get("State") == "Claimed"),
                cpus=self.launch.cpus,
                memory_mb=self.launch.memory_mb,
                gpus=self.launch.gpus,
                jobs_started=observer.jobs_started if observer else 0,
                seconds_to_retire=max(0.0, self.launch.to_retire - now),
                seconds_to_die=max(0.0, self.launch.to_die - now),
                token_seconds_to_expiry=None if expiry is None else max(0.0, expiry - now),
                cvmfs_repos=self.cvmfs_health(slots),
                ready=bool(observer and observer.ready),
            )
        )

    def cvmfs_health(self, slots: list[dict[str, Any]]) -> dict[str, bool]:
        """Repo health as the startd last published it (the cron job's), else as at start."""
        found = dict(self.launch.cvmfs_healthy)
        pslot = next((ad for ad in slots if ad.get("PartitionableSlot") is True), None)
        if pslot is not None:
            for repo in found:
                value = pslot.get(has_attribute(repo))
                if isinstance(value, bool):
                    found[repo] = value
        return found

    def notify(self, event: Any, reason: str, *, wait: bool = False) -> None:
        launch = self.launch
        url = launch.notify_start_url if event == "start" else launch.notify_stop_url
        if not url:
            return
        notice = notify.Notice(
            event=event,
            name=launch.name,
            site=launch.site,
            resource=launch.resource,
            reason=reason,
            time=self.wall_clock(),
        )
        thread = notify.send_async(url, notice, log=self.emitter.event)
        if wait:
            thread.join(timeout=notify.NOTIFY_TIMEOUT_SECONDS)

    def publish(self, *, state: State, master_pid: int | None) -> None:
        observer = self.observer
        snapshot = published.PublishedState(
            supervisor_pid=os.getpid(),
            master_pid=master_pid,
            state=state.value,
            name=self.launch.name,
            ready=bool(observer and observer.ready),
            ready_checked=observer.checked if observer else None,
            updated=self.wall_clock(),
        )
        try:
            published.publish(self.state_file, snapshot)
        except OSError as error:
            problem = f"cannot write the state file {self.state_file}: {error}"
            if problem != self.state_problem:  # every 5 s otherwise
                self.event("warning", problem, fix="health and drain cannot see this pilot")
            self.state_problem = problem
        else:
            self.state_problem = None

    def finished(self, *, reason: str) -> None:
        del reason
        if self.queries is not None:
            self.queries.stop()
        if self.osdf is not None:
            self.osdf.stop()
        if self.transfers is not None:
            self.transfers.stop()
        published.withdraw(self.state_file, supervisor_pid=os.getpid())


def _dir_signature(directory: Path) -> tuple[object, ...]:
    """Cheap change detector: names, inodes, sizes and mtimes (Secret updates swap symlinks)."""
    entries: list[object] = []
    try:
        names = sorted(entry.name for entry in directory.iterdir())
    except OSError:
        return ("missing",)
    for name in names:
        try:
            st = (directory / name).stat()
        except OSError:
            continue
        entries.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(entries)


class _Recorded:
    """A reload child's events, sent back for the supervisor to log (one writer, in order)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def event(self, level: Level, msg: str, /, **fields: object) -> None:
        self.events.append((level, msg, fields))


def reload_in_child(plan_blob: str, *, config_dir: Path, now: float) -> dict[str, Any] | None:
    """Run :func:`ospool_ep.prepare.reload_pilot` in a forked child; its verdict (with the
    events it reported), or None when it died, said nothing or took longer than
    RELOAD_TIMEOUT_SECONDS.

    The child loads the heavy half (ClassAd library, jinja2) and exits; the
    supervisor stays light.
    """
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its effects are tested
        code = 1
        try:
            os.close(read_end)
            from ospool_ep.pilot import prepare  # noqa: PLC0415 - the heavy half, in the child only

            recorded = _Recorded()
            verdict = prepare.reload_pilot(
                plan_blob, config_dir=config_dir, environ=os.environ, now=now, emitter=recorded
            )
            answer = {**dataclasses.asdict(verdict), "events": recorded.events}
            data = memoryview(json.dumps(answer, default=str).encode())
            while data:
                data = data[os.write(write_end, data) :]
            code = 0
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_end)
    try:
        output = _read_until(read_end, deadline=time.monotonic() + RELOAD_TIMEOUT_SECONDS)
    finally:
        os.close(read_end)
    if output is None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    try:
        verdict = json.loads(output or b"")
    except ValueError:
        return None
    return verdict if isinstance(verdict, dict) else None


def _read_until(fd: int, *, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until its writer closes it; None past ``deadline``."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
