"""Prepare: validated inputs -> a pilot directory holding a checked configuration and tokens.

The heavy half of ``ospool-ep run`` (SPEC 7): plan (ClassAd checks), pilot
directory, cvmfsexec's pre-flight, rendered and verified configuration
(jinja2, HTCondor's parser), installed tokens, and the :class:`~ospool_ep.handoff.Launch`
that the light supervisor runs. A reload (SIGHUP, rotated token) re-runs the
validating part in a child process of the supervisor, from the plan handed over.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from ospool_ep.cvmfs import cvmfsexec
from ospool_ep.cvmfs import plan as cvmfs
from ospool_ep.cvmfs.probe import RepoHealth
from ospool_ep.detect import apptainer
from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Findings, Status
from ospool_ep.inputs import tokens as tokens_mod
from ospool_ep.inputs.attributes import load_extra_attributes_file
from ospool_ep.pilot import atomic, render, transferservice
from ospool_ep.pilot import workdir as pilotdir
from ospool_ep.pilot.handoff import Launch
from ospool_ep.pilot.logs import Emitter, Level
from ospool_ep.pilot.plan import (
    Facilities,
    Host,
    apptainer_candidates,
    build_plan,
    check_htcondor_installed,
    decide_containment,
    find_daemon,
    report_apptainer,
)
from ospool_ep.pilot.render import PilotPlan
from ospool_ep.pilot.run import report_leftover
from ospool_ep.pilot.statefile import UntrustedStateError, state_path, trusted_directory
from ospool_ep.transfer import client

CHILD_ENV_DROPPED = ("TOKEN", "NOTIFY_START_URL", "NOTIFY_STOP_URL")
"""Never passed to condor_master (and so to no daemon or job)."""
HTCONDOR_DIRS = ("log", "execute", "spool", "lock", "run")
LIVE_CONFIG_NAME = "condor_config"
"""Beside the state file: the image's /etc/condor/condor_config includes it (Dockerfile)."""
LIVE_CONFIG_MARK = "OSPOOL_EP_LIVE_CONFIG"


class Reporter(Protocol):
    """Where events go: the pilot's :class:`~ospool_ep.logs.Emitter`, or a reload's record."""

    def event(self, level: Level, msg: str, /, **fields: object) -> None: ...


class NotStarting(Exception):
    """The pilot cannot start; ``code`` is its exit code, the reasons were reported."""

    def __init__(self, code: ExitCode) -> None:
        super().__init__(int(code))
        self.code = code


def report_findings(findings: Findings, emitter: Reporter) -> None:
    level: dict[Status, Level] = {Status.PASS: "info", Status.WARN: "warning", Status.FAIL: "error"}
    for finding in findings:
        fields: dict[str, Any] = {"fix": finding.fix} if finding.fix else {}
        emitter.event(level[finding.status], f"{finding.subject}: {finding.message}", **fields)


def master_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k not in CHILD_ENV_DROPPED}


def prepare_pilot(host: Host, emitter: Emitter) -> Launch:
    """Everything before condor_master starts. Raises :class:`NotStarting` with the code."""
    plan, tokens = validated_plan(host, emitter)
    root = Path(plan.settings.pilot_dir)
    collected = pilotdir.collect_stale(root=root)
    for stale in collected.removed:
        emitter.event("info", "removed the directory of a dead pilot", path=str(stale))
    for leftover in collected.failed:
        report_leftover(leftover, emitter, what="a dead pilot's directory")
    try:
        directory = pilotdir.create(root=root, pilot_id=plan.uuid)
    except OSError as error:
        emitter.event("error", f"cannot create the pilot directory in {root}: {error}")
        raise NotStarting(ExitCode.UNAVAILABLE) from None
    try:
        return configure(directory, plan, tokens, host=host, emitter=emitter)
    except BaseException:
        removal = directory.remove()
        if not removal.complete:
            report_leftover(removal, emitter, what="the pilot's own directory")
        raise


def validated_plan(host: Host, emitter: Emitter) -> tuple[PilotPlan, tuple[tokens_mod.Token, ...]]:
    outcome = build_plan(host)
    findings = outcome.findings
    check_htcondor_installed(findings)
    report_findings(findings, emitter)
    if findings.has_failures() or outcome.plan is None:
        code = findings.exit_code() or ExitCode.CONFIG
        emitter.event("error", f"not starting: fix the errors above (exit {int(code)})")
        raise NotStarting(code)
    return outcome.plan, outcome.tokens


def configure(
    directory: pilotdir.PilotDirectory,
    plan: PilotPlan,
    tokens: tuple[tokens_mod.Token, ...],
    *,
    host: Host,
    emitter: Emitter,
) -> Launch:
    """Render, verify and install into ``directory``; the launch for the supervisor."""
    local_dir = directory.path
    for name in HTCONDOR_DIRS:
        (local_dir / name).mkdir(mode=0o755)
    config_dir = local_dir / "config"
    environment = master_environment(host.environ)
    if plan.osdf.plugin is not None:
        socket = transferservice.socket_for(local_dir / "run")
        if socket is None:
            emitter.event("info", "PILOT_DIR is too long for the OSDF transfer service's socket")
        else:
            environment[client.SOCKET_VARIABLE] = str(socket)
    if plan.settings.squid_url:
        # As OSG's pilot ("ensure HTCondor knows about our squid"): the daemons and the
        # transfer plugins they run (curl, OSDF) use it for plain-HTTP URLs.
        environment["http_proxy"] = plan.settings.squid_url
    launcher = None
    if plan.cvmfs is not None and plan.cvmfs.mode == "cvmfsexec":
        plan, launcher = _start_cvmfsexec(
            local_dir, plan, plan.cvmfs, host=host, environment=environment, emitter=emitter
        )
    findings = Findings()
    if not render.write_and_verify(
        plan, output=config_dir, findings=findings, environ=host.environ
    ):
        report_findings(findings, emitter)
        raise NotStarting(ExitCode.CONFIG)
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
    if not writable_home(environment.get("HOME")):
        # A forced uid under docker gets HOME=/ (no passwd entry): give the
        # daemons and Apptainer (its cache, ~/.apptainer) the pilot's own directory.
        environment["HOME"] = str(local_dir)
    publish_live_config(config_dir / render.ROOT_FILE, environ=host.environ, emitter=emitter)
    command = [master, "-f"]
    if launcher is not None:
        command = cvmfsexec.command(launcher.directory, plan.settings.cvmfsexec_repos, command)
    return launch_for(
        plan,
        tokens,
        directory=directory,
        config_dir=config_dir,
        command=command,
        environment=environment,
        environ=host.environ,
        cvmfsexec_log_dir=str(launcher.log_dir) if launcher is not None else None,
    )


def writable_home(home: str | None) -> bool:
    """``home`` is a directory this uid can create files in (root passes on any mode)."""
    if not home:
        return False
    return Path(home).is_dir() and os.access(home, os.W_OK | os.X_OK)


def live_config_path(environ: Mapping[str, str]) -> Path:
    return state_path(environ).parent / LIVE_CONFIG_NAME


def live_config_text(config_file: Path) -> str:
    """A root config naming this pilot's; ``ifexist``: once the pilot is gone, no error."""
    return (
        "# The running pilot's configuration, for HTCondor's tools in exec sessions\n"
        "# (docker exec PILOT condor_who); written by ospool-ep at each start.\n"
        f"{LIVE_CONFIG_MARK} = {config_file}\n"
        f"include ifexist : $({LIVE_CONFIG_MARK})\n"
    )


def publish_live_config(
    config_file: Path, *, environ: Mapping[str, str], emitter: Reporter
) -> None:
    """Name the live configuration where exec sessions look (SPEC 3), atomically.

    Beside the state file, in the container's own /tmp by default: pilots
    sharing /pilot never see each other's. It names a path, no secret; the
    directory is refused when another uid could have written it, as the state's.
    """
    target = live_config_path(environ)
    try:
        os.close(trusted_directory(target.parent))
        atomic.replace_file(target, live_config_text(config_file))
    except (OSError, UntrustedStateError) as error:
        emitter.event(
            "warning",
            f"cannot publish the live configuration at {target}: {error}; in exec sessions"
            f" set CONDOR_CONFIG={config_file} for HTCondor's tools",
        )


def launch_for(
    plan: PilotPlan,
    tokens: tuple[tokens_mod.Token, ...],
    *,
    directory: pilotdir.PilotDirectory,
    config_dir: Path,
    command: list[str],
    environment: dict[str, str],
    environ: Mapping[str, str],
    cvmfsexec_log_dir: str | None = None,
) -> Launch:
    settings = plan.settings
    log_format = environ.get("LOG_FORMAT", "text").strip().lower()
    return Launch(
        command=tuple(command),
        environment=environment,
        local_dir=str(directory.path),
        config_dir=str(config_dir),
        lock_fd=directory.lock_fd,
        grace_seconds=settings.shutdown_grace_seconds,
        drain_seconds=settings.drain_seconds,
        log_format=log_format if log_format in ("text", "json") else "text",
        cvmfsexec_log_dir=cvmfsexec_log_dir,
        name=plan.name,
        uuid=plan.uuid,
        site=settings.site,
        resource=settings.resource_name,
        token_dir=str(settings.token_dir),
        state_file=str(state_path(environ)),
        metrics_port=settings.metrics_port,
        notify_start_url=settings.notify_start_url,
        notify_stop_url=settings.notify_stop_url,
        cpus=plan.offer.cpus,
        memory_mb=plan.offer.memory_mb,
        gpus=len(plan.gpus.ids),
        to_retire=float(plan.lifetime.to_retire),
        to_die=float(plan.lifetime.to_die),
        token_expiry=tokens_mod.earliest_expiry(tokens),
        cvmfs_repos=tuple(plan.cvmfs.repos) if plan.cvmfs else (),
        cvmfs_healthy=plan.cvmfs.healthy_repos() if plan.cvmfs else {},
        osdf_plugin=plan.osdf.plugin,
        osdf_check_seconds=plan.osdf.check_seconds,
        plan_blob=pack(plan, tokens),
    )


def pack(plan: PilotPlan, tokens: tuple[tokens_mod.Token, ...]) -> str:
    return base64.b64encode(pickle.dumps((plan, tokens))).decode()


def unpack(blob: str) -> tuple[PilotPlan, tuple[tokens_mod.Token, ...]]:
    # Our own data: written by this pilot's preparation, carried in its own memory.
    plan, tokens = pickle.loads(base64.b64decode(blob))  # noqa: S301
    return plan, tokens


def _start_cvmfsexec(
    local_dir: Path,
    plan: PilotPlan,
    cvmfs_plan: cvmfs.CvmfsPlan,
    *,
    host: Host,
    environment: dict[str, str],
    emitter: Emitter,
) -> tuple[PilotPlan, cvmfsexec.Prepared]:
    """SPEC 9.4: copy cvmfsexec into the pilot's directory, mount the repos once and check
    them (and Apptainer) from inside; :class:`NotStarting` (69), after saying why, on failure."""
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
        raise NotStarting(ExitCode.UNAVAILABLE)
    health = tuple(RepoHealth.from_dict(item) for item in checked.document.get("repos", []))
    tested = apptainer.ApptainerTest.from_dict(checked.document.get("apptainer", {}))
    findings = Findings()
    cvmfs.report_health(health, findings)
    report_apptainer(tested, findings)
    cvmfs_plan = dataclasses.replace(cvmfs_plan, health=health)
    root = f"{cvmfs_plan.root.rstrip('/')}/"
    contained = decide_containment(
        host,
        settings,
        Facilities(cvmfs=cvmfs_plan, gpus=plan.gpus, apptainer=tested),
        findings,
        random_value=plan.random_value,
        # The images are inside cvmfsexec's namespace only: a healthy repo is trusted.
        exists=lambda path: path.startswith(root) or Path(path).exists(),
    )
    report_findings(findings, emitter)
    if findings.has_failures():
        emitter.event("error", f"not starting (exit {int(ExitCode.UNAVAILABLE)})")
        raise NotStarting(ExitCode.UNAVAILABLE)
    plan = dataclasses.replace(
        plan,
        cvmfs=cvmfs_plan,
        node_validated=cvmfs_plan.node_validated,
        apptainer=tested,
        containment=contained,
    )
    return plan, prepared


@dataclass(frozen=True)
class Reloaded:
    """A reload's verdict: the new plan (packed) and token expiry when accepted."""

    accepted: bool
    plan_blob: str = ""
    token_expiry: float | None = None


def reload_pilot(
    blob: str, *, config_dir: Path, environ: Mapping[str, str], now: float, emitter: Reporter
) -> Reloaded:
    """SIGHUP or a rotated token: re-validate token and extra attributes, re-render.

    A bad new input is reported and nothing is changed (the running configuration
    stays); a good one is written into ``config_dir`` and the tokens installed.
    """
    plan, _ = unpack(blob)
    settings = plan.settings
    findings = Findings()
    found = tokens_mod.load_tokens(
        token_dir=Path(settings.token_dir),
        token_env=settings.token_text,
        now=now,
        findings=findings,
    )
    extra = load_extra_attributes_file(Path(settings.extra_attributes_file), findings=findings)
    if findings.has_failures() or not found:
        report_findings(Findings(findings.failures), emitter)
        emitter.event("error", "reload refused: keeping the running configuration")
        return Reloaded(accepted=False)
    candidate = dataclasses.replace(plan, extra_attributes=tuple(extra))
    with tempfile.TemporaryDirectory(prefix="ospool-ep-reload-") as scratch:
        trial = Findings()
        if not render.write_and_verify(
            candidate, output=Path(scratch), findings=trial, environ=environ
        ):
            report_findings(Findings(trial.failures), emitter)
            emitter.event("error", "reload refused: keeping the running configuration")
            return Reloaded(accepted=False)
    files = render.render_files(candidate, config_dir=PurePosixPath(config_dir))
    render.write_tree(files, output=config_dir)
    tokens = tuple(found)
    tokens_mod.install_tokens(tokens, dest=Path(candidate.token_dir))
    emitter.event("info", "reloaded token and extra attributes; reconfiguring HTCondor")
    return Reloaded(
        accepted=True,
        plan_blob=pack(candidate, tokens),
        token_expiry=tokens_mod.earliest_expiry(tokens),
    )
