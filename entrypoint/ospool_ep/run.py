"""Run: `ospool-ep run` from validated inputs to a supervised, cleaned-up pilot (SPEC 7).

The pipeline reads as the product (STYLE 1): plan -> pilot directory ->
rendered config -> installed tokens -> supervised condor_master -> clean up.
:class:`PilotHooks` is what the supervisor calls back for: drain, reload,
token rotation, readiness and metrics, state publishing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ospool_ep import (
    __version__,
    apptainer,
    atomic,
    cvmfs,
    cvmfsexec,
    notify,
    pilotdir,
    readiness,
    render,
)
from ospool_ep import state as published
from ospool_ep import tokens as tokens_mod
from ospool_ep.attributes import load_extra_attributes_file
from ospool_ep.cvmfs_probe import RepoHealth, has_attribute
from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Findings, Status
from ospool_ep.lifecycle import State
from ospool_ep.logs import Emitter, Level, LogTailer
from ospool_ep.plan import (
    Host,
    apptainer_candidates,
    build_plan,
    check_htcondor_installed,
    find_daemon,
    report_apptainer,
)
from ospool_ep.render import PilotPlan
from ospool_ep.supervise import Supervisor, block_signals

TOKEN_POLL_SECONDS = 10
STATE_SECONDS = 5
CHILD_ENV_DROPPED = ("TOKEN", "NOTIFY_START_URL", "NOTIFY_STOP_URL")
"""Never passed to condor_master (and so to no daemon or job)."""
HTCONDOR_DIRS = ("log", "execute", "spool", "lock", "run")


def report_findings(findings: Findings, emitter: Emitter) -> None:
    level: dict[Status, Level] = {Status.PASS: "info", Status.WARN: "warning", Status.FAIL: "error"}
    for finding in findings:
        fields: dict[str, Any] = {"fix": finding.fix} if finding.fix else {}
        emitter.event(level[finding.status], f"{finding.subject}: {finding.message}", **fields)


def run_pilot(host: Host) -> int:
    # Before any thread exists (observer, metrics, webhooks): they inherit the
    # mask, and a SIGTERM during start-up waits for the supervisor's loop.
    block_signals()
    emitter = Emitter(fmt=_log_format(host), stream=sys.stdout)
    outcome = build_plan(host)
    findings = outcome.findings
    check_htcondor_installed(findings)
    report_findings(findings, emitter)
    if findings.has_failures() or outcome.plan is None:
        code = findings.exit_code() or ExitCode.CONFIG
        emitter.event("error", f"not starting: fix the errors above (exit {int(code)})")
        return int(code)
    plan = outcome.plan

    root = Path(plan.settings.pilot_dir)
    collected = pilotdir.collect_stale(root=root)
    for stale in collected.removed:
        emitter.event("info", "removed the directory of a dead pilot", path=str(stale))
    for leftover in collected.failed:
        _report_leftover(leftover, emitter, what="a dead pilot's directory")
    try:
        directory = pilotdir.create(root=root, pilot_id=plan.uuid)
    except OSError as error:
        emitter.event("error", f"cannot create the pilot directory in {root}: {error}")
        return int(ExitCode.UNAVAILABLE)
    try:
        return _run_in(directory.path, plan, outcome.tokens, host, emitter)
    finally:
        removal = directory.remove()
        if not removal.complete:
            _report_leftover(removal, emitter, what="the pilot's own directory")


def _report_leftover(leftover: pilotdir.Removal, emitter: Emitter, *, what: str) -> None:
    emitter.event(
        "warning",
        f"could not remove all of {what}",
        path=str(leftover.path),
        left=leftover.left,
        error=leftover.error,
    )


def _run_in(
    local_dir: Path,
    plan: PilotPlan,
    tokens: tuple[tokens_mod.Token, ...],
    host: Host,
    emitter: Emitter,
) -> int:
    for name in HTCONDOR_DIRS:
        (local_dir / name).mkdir(mode=0o755)
    config_dir = local_dir / "config"
    environment = {k: v for k, v in host.environ.items() if k not in CHILD_ENV_DROPPED}
    launcher = None
    if plan.cvmfs is not None and plan.cvmfs.mode == "cvmfsexec":
        started = _start_cvmfsexec(
            local_dir, plan, plan.cvmfs, host=host, environment=environment, emitter=emitter
        )
        if started is None:
            return int(ExitCode.UNAVAILABLE)
        plan, launcher = started
    findings = Findings()
    if not render.write_and_verify(
        plan, output=config_dir, findings=findings, environ=host.environ
    ):
        report_findings(findings, emitter)
        return int(ExitCode.CONFIG)
    tokens_mod.install_tokens(tokens, dest=Path(plan.token_dir))
    emitter.event(
        "info",
        "pilot configured",
        name=plan.name,
        pool=plan.pool.name,
        cpus=plan.offer.cpus,
        memory_mb=plan.offer.memory_mb,
        retire=render._isotime(plan.lifetime.to_retire),
        die=render._isotime(plan.lifetime.to_die),
    )
    master = find_daemon("condor_master")
    if master is None:  # check_htcondor_installed passed, so this is a bug
        raise RuntimeError("condor_master vanished after the check")
    environment["CONDOR_CONFIG"] = str(config_dir / render.ROOT_FILE)
    command = [master, "-f"]
    finder = None
    if launcher is not None:
        command = cvmfsexec.command(launcher.directory, plan.settings.cvmfsexec_repos, command)
        finder = cvmfsexec.MasterFinder()

    hooks = PilotHooks(plan=plan, tokens=tokens, host=host, config_dir=config_dir, emitter=emitter)
    tailer = LogTailer(log_dir=local_dir / "log", emitter=emitter)
    supervisor = Supervisor(
        command=command,
        environment=environment,
        grace_seconds=plan.settings.shutdown_grace_seconds,
        drain_seconds=plan.settings.drain_seconds,
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
    if launcher and finder and not finder.ever_found and result.code is ExitCode.SOFTWARE:
        # cvmfsexec ended before it ever started the master: its mounts failed.
        for line in cvmfsexec.log_lines(launcher.log_dir):
            emitter.event("error", line, source="cvmfsexec")
        result = dataclasses.replace(
            result, code=ExitCode.UNAVAILABLE, reason=f"cvmfsexec failed: {reason}"
        )
        reason = result.reason
    if result.code is ExitCode.OK and "retired, idle" in reason:
        reason = (
            "retired" if time.time() >= plan.lifetime.to_retire else "idle or shut down by the pool"
        )
    level: Level = "info" if result.code is ExitCode.OK else "error"
    emitter.event(level, f"pilot ended: {reason}", exit_code=int(result.code))
    hooks.notify("stop", reason, wait=True)
    hooks.finished(reason=reason)
    return int(result.code)


def _start_cvmfsexec(
    local_dir: Path,
    plan: PilotPlan,
    cvmfs_plan: cvmfs.CvmfsPlan,
    *,
    host: Host,
    environment: dict[str, str],
    emitter: Emitter,
) -> tuple[PilotPlan, cvmfsexec.Prepared] | None:
    """SPEC 9.4: copy cvmfsexec into the pilot's directory, mount the repos once and check
    them (and Apptainer) from inside; None, after saying why, when that fails (exit 69)."""
    settings = plan.settings
    prepared = cvmfsexec.prepare(
        settings, distribution=host.cvmfsexec_distribution, pilot_dir=local_dir
    )
    probe = cvmfs_plan.startup_command(
        apptainer=apptainer_candidates(host, cvmfs_plan),
        pid_namespace=not settings.singularity_disable_pid_namespaces,
    )
    emitter.event("info", "cvmfsexec: mounting and checking", repos=" ".join(cvmfs_plan.repos))
    checked = cvmfsexec.preflight(
        prepared, repos=settings.cvmfsexec_repos, probe=probe, environ=environment
    )
    if checked.document is None:
        for line in checked.output:
            emitter.event("error", line, source="cvmfsexec")
        emitter.event(
            "error",
            f"CVMFS: {checked.problem}",
            fix="see cvmfsexec's lines above; set CVMFSEXEC_DEBUG=true for more",
        )
        emitter.event("error", f"not starting (exit {int(ExitCode.UNAVAILABLE)})")
        return None
    health = tuple(RepoHealth.from_dict(item) for item in checked.document.get("repos", []))
    tested = apptainer.ApptainerTest.from_dict(checked.document.get("apptainer", {}))
    findings = Findings()
    cvmfs.report_health(health, findings)
    report_apptainer(tested, findings)
    report_findings(findings, emitter)
    cvmfs_plan = dataclasses.replace(cvmfs_plan, health=health)
    plan = dataclasses.replace(
        plan, cvmfs=cvmfs_plan, node_validated=cvmfs_plan.node_validated, apptainer=tested
    )
    return plan, prepared


def _log_format(host: Host) -> Any:
    value = host.environ.get("LOG_FORMAT", "text").strip().lower()
    return value if value in ("text", "json") else "text"


@dataclasses.dataclass
class PilotHooks:
    """The supervisor's callbacks: everything that knows about tokens, config and the pool."""

    plan: PilotPlan
    tokens: tuple[tokens_mod.Token, ...]
    host: Host
    config_dir: Path
    emitter: Emitter
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    state_file: Path = dataclasses.field(init=False)
    token_signature: tuple[object, ...] = ()
    next_token_poll: float = 0.0
    next_state: float = 0.0
    state_problem: str | None = None
    supervisor: Supervisor | None = None
    observer: readiness.Observer | None = None
    queries: readiness.ProcessQueries | None = None
    joiner: readiness.Joiner | None = None
    metrics: Any = None
    """An ospool_ep.metrics.Metrics when METRICS_PORT is set (imported only then: RSS)."""

    def __post_init__(self) -> None:
        self.state_file = published.state_path(self.host.environ)
        self.token_signature = _dir_signature(Path(self.plan.settings.token_dir))

    # -- supervisor hooks ---------------------------------------------------

    def event(self, level: Level, msg: str, **fields: object) -> None:
        self.emitter.event(level, msg, **fields)

    def prepare_drain(self, *, deadline: float) -> None:
        # By rename: a FIFO or symlink left at the name must not block or redirect us.
        atomic.replace_file(
            self.config_dir / render.DRAIN_FILE, render.drain_config(deadline=deadline)
        )

    def reload(self) -> bool:
        if self.supervisor is not None and self.supervisor.state is not State.RUNNING:
            self.event("info", "not reloading while stopping")
            return False
        findings = Findings()
        settings = self.plan.settings
        found = tokens_mod.load_tokens(
            token_dir=Path(settings.token_dir),
            token_env=settings.token_text,
            now=self.wall_clock(),
            findings=findings,
        )
        extra = load_extra_attributes_file(Path(settings.extra_attributes_file), findings=findings)
        if findings.has_failures() or not found:
            report_findings(Findings(findings.failures), self.emitter)
            self.event("error", "reload refused: keeping the running configuration")
            return False
        candidate = dataclasses.replace(self.plan, extra_attributes=tuple(extra))
        with tempfile.TemporaryDirectory(prefix="ospool-ep-reload-") as scratch:
            trial = Findings()
            if not render.write_and_verify(
                candidate, output=Path(scratch), findings=trial, environ=self.host.environ
            ):
                report_findings(Findings(trial.failures), self.emitter)
                self.event("error", "reload refused: keeping the running configuration")
                return False
        files = render.render_files(candidate, config_dir=PurePosixPath(self.config_dir))
        render.write_tree(files, output=self.config_dir)
        tokens_mod.install_tokens(found, dest=Path(candidate.token_dir))
        self.plan, self.tokens = candidate, tuple(found)
        self.event("info", "reloaded token and extra attributes; reconfiguring HTCondor")
        return True

    def tick(self, *, state: State, master_pid: int | None) -> bool:
        now = self.clock()
        reconfigure = False
        if now >= self.next_token_poll:
            self.next_token_poll = now + TOKEN_POLL_SECONDS
            signature = _dir_signature(Path(self.plan.settings.token_dir))
            if signature != self.token_signature:
                self.token_signature = signature
                self.event("info", "token files changed: re-validating")
                reconfigure = self.reload()
        if self.observer is not None:
            if state is State.RUNNING:
                self.observer.tick(now)
            elif self.queries is not None:
                self.queries.stop()  # stopping: nobody asks for readiness any more
        if now >= self.next_state:
            self.next_state = now + STATE_SECONDS
            self.publish(state=state, master_pid=master_pid)
            self.update_metrics(state)
        if state is State.RUNNING and self.advertise_again(now):
            reconfigure = True
        return reconfigure

    def child_exited(self, pid: int, status: int) -> None:
        """The supervisor reaped a child that is not the master: maybe our collector query."""
        if self.observer is not None:
            self.observer.child_exited(pid, status, now=self.clock())

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
        port = self.plan.settings.metrics_port
        if port:
            from ospool_ep.metrics import Metrics  # noqa: PLC0415 - only when asked: ~8 MB RSS

            self.metrics = Metrics(pilot_name=self.plan.name, version=__version__)
            try:
                self.metrics.serve(port=port)
                self.event("info", f"serving Prometheus metrics on port {port}")
            except OSError as error:
                self.metrics = None
                self.event("warning", f"metrics disabled: {error}")

    def start_observing(self) -> None:
        """Readiness needs condor_status; without it the pilot runs, never reported ready."""
        condor_status = shutil.which("condor_status") or find_daemon("condor_status")
        if condor_status is None:
            self.event("warning", "condor_status not found: readiness cannot be observed")
            return
        attributes = (
            tuple(has_attribute(r) for r in self.plan.cvmfs.repos) if self.plan.cvmfs else ()
        )
        environment = {k: v for k, v in self.host.environ.items() if k not in CHILD_ENV_DROPPED}
        environment["CONDOR_CONFIG"] = str(self.config_dir / render.ROOT_FILE)
        self.queries = readiness.ProcessQueries(
            command=readiness.status_command(
                condor_status, uuid=self.plan.uuid, attributes=attributes
            ),
            environment=environment,
            output=self.config_dir.parent / "run" / "collector-query.json",
            clock=self.clock,
        )
        self.observer = readiness.Observer(queries=self.queries, wall_clock=self.wall_clock)

    def update_metrics(self, state: State) -> None:
        if self.metrics is None:
            return
        from ospool_ep.metrics import PilotSnapshot  # noqa: PLC0415 - loaded with Metrics

        observer = self.observer
        slots = observer.slots if observer else []
        now = self.wall_clock()
        expiry = tokens_mod.earliest_expiry(self.tokens)
        self.metrics.update(
            PilotSnapshot(
                state=state.value,
                slots_total=len(slots),
                slots_claimed=sum(1 for ad in slots if ad.get("State") == "Claimed"),
                cpus=self.plan.offer.cpus,
                memory_mb=self.plan.offer.memory_mb,
                gpus=len(self.plan.gpus.ids),
                jobs_started=observer.jobs_started if observer else 0,
                seconds_to_retire=max(0.0, self.plan.lifetime.to_retire - now),
                seconds_to_die=max(0.0, self.plan.lifetime.to_die - now),
                token_seconds_to_expiry=None if expiry is None else max(0.0, expiry - now),
                cvmfs_repos=self.cvmfs_health(slots),
                ready=bool(observer and observer.ready),
            )
        )

    def cvmfs_health(self, slots: list[dict[str, Any]]) -> dict[str, bool]:
        """Repo health as the startd last published it (the cron job's), else as at start."""
        found = self.plan.cvmfs.healthy_repos() if self.plan.cvmfs else {}
        pslot = next((ad for ad in slots if ad.get("PartitionableSlot") is True), None)
        if pslot is not None:
            for repo in found:
                value = pslot.get(has_attribute(repo))
                if isinstance(value, bool):
                    found[repo] = value
        return found

    def notify(self, event: Any, reason: str, *, wait: bool = False) -> None:
        settings = self.plan.settings
        url = settings.notify_start_url if event == "start" else settings.notify_stop_url
        if not url:
            return
        notice = notify.Notice(
            event=event,
            name=self.plan.name,
            site=settings.site,
            resource=settings.resource_name,
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
            name=self.plan.name,
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
