"""Settings: the environment turned into one frozen, validated :class:`Settings` (SPEC 4.1, 5.2).

The only place that reads the pilot's environment variables. Each variable is
one row of :data:`ospool_ep.variables.VARIABLES` (name, parser, default,
meaning); here the rows are applied, the ClassAd library's checks are added
where a value is an expression, and the rules between variables are checked.
Every problem is collected as a finding; nothing is raised for bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from ospool_ep.findings import Findings
from ospool_ep.inputs.classad import parse_expression
from ospool_ep.inputs.values import Invalid, parse_abs_path
from ospool_ep.inputs.variables import (
    NAMES,
    VARIABLES,
    WALLTIME_FIX,
    Variable,
    default,
    walltime_conflict,
)

DRAIN_SAFETY_MARGIN_SECONDS = 5
"""Seconds kept between the drain deadline and the orchestrator's SIGKILL, for
evicting jobs and the daemons' own exit (SPEC 7.2)."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the pilot was told, validated. Units are in the field names;
    meanings and defaults are the variables' own (:mod:`ospool_ep.inputs.variables`)."""

    site: str
    resource_name: str
    start_extra: str = default("GLIDEIN_Start_Extra")
    project_name: str | None = None
    squid_url: str | None = None
    pool: str = default("POOL")
    condor_host: str | None = None
    itb: bool = default("ITB")
    accept_jobs_for_hours: int = default("ACCEPT_JOBS_FOR_HOURS")
    retirement_hours: int = default("RETIREMENT_HOURS")
    accept_idle_minutes: int = default("ACCEPT_IDLE_MINUTES")
    num_cpus: int | None = None
    memory_mb: int | None = None
    cvmfsexec_repos: tuple[str, ...] = default("CVMFSEXEC_REPOS")
    cvmfs_http_proxy: str | None = None
    cvmfs_quota_limit_mb: int | None = None
    cvmfsexec_debug: bool = default("CVMFSEXEC_DEBUG")
    cvmfs_mode: Literal["auto", "bind", "cvmfsexec", "none"] = default("CVMFS_MODE")
    """How CVMFS is provided (SPEC 9.1): auto picks bind, then cvmfsexec, then none."""
    cvmfs_check_seconds: int = default("CVMFS_CHECK_SECONDS")
    osdf_check_seconds: int = default("OSDF_CHECK_SECONDS")
    """Period of the startd cron job that re-checks the repos (SPEC 9.3; upstream: 4m)."""
    token_text: str | None = field(default=None, repr=False)
    randomize_name: bool = default("GLIDEIN_RANDOMIZE_NAME")
    singularity_disable_pid_namespaces: bool = default("SINGULARITY_DISABLE_PID_NAMESPACES")
    singularity_bind_extra: tuple[str, ...] = default("SINGULARITY_BIND_EXTRA")
    extra_job_env: tuple[tuple[str, str], ...] = default("EXTRA_JOB_ENV")
    apptainer_registry_mirror: str | None = None
    default_container_distribution: tuple[tuple[int, str], ...] = default(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION"
    )
    """(weight, image under /cvmfs/singularity.opensciencegrid.org/) of jobs naming none."""
    default_container_distribution_gpu: tuple[tuple[int, str], ...] = default(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU"
    )
    """The same, when the pilot offers GPUs."""
    job_containment: Literal["required", "preferred", "none"] = default("JOB_CONTAINMENT")
    """Whether every job must run inside Apptainer (SPEC 7.6)."""
    shutdown_grace_seconds: int = default("SHUTDOWN_GRACE_SECONDS")
    pilot_walltime_seconds: int | None = None
    memory_overhead_mb: int = default("MEMORY_OVERHEAD_MB")
    min_disk_gb: float = default("MIN_DISK_GB")
    log_format: Literal["text", "json"] = default("LOG_FORMAT")
    metrics_port: int | None = None
    notify_start_url: str | None = field(default=None, repr=False)
    notify_stop_url: str | None = field(default=None, repr=False)
    topology_check: bool = default("TOPOLOGY_CHECK")
    pilot_dir: PurePosixPath = default("PILOT_DIR")
    token_dir: PurePosixPath = default("TOKEN_DIR")
    extra_attributes_file: PurePosixPath = default("EXTRA_ATTRIBUTES_FILE")
    job_http_proxy: str | None = field(default=None, repr=False)
    """``http_proxy`` from the pilot's environment, for jobs (OSG_SQUID_LOCATION wins)."""
    job_https_proxy: str | None = field(default=None, repr=False)
    job_ftp_proxy: str | None = field(default=None, repr=False)
    osg_hostname: str | None = None
    enable_remote_syslog: bool = default("ENABLE_REMOTE_SYSLOG")
    syslog_host: str | None = None
    """``host[:port]``; unset: the pool's own (SPEC 7.3, :mod:`ospool_ep.pilot.remotelog`)."""
    # Read by OSG's container; checked, not acted on (their variables' not_acted_on).
    registry_host: str | None = None
    ccb_range_low: int | None = None
    ccb_range_high: int | None = None
    garbage_collection: bool = default("GARBAGE_COLLECTION")
    institution_id: str | None = None
    supervisord_restart_policy: str | None = None
    allow_cpujob_on_gpuslot: str | None = None
    container_pilot_use_job_hook: str | None = None
    condor_overrides: tuple[str, ...] = ()
    """Names of ``_CONDOR_<KNOB>`` variables passed through to HTCondor."""

    @property
    def drain_seconds(self) -> int:
        """How long running jobs may go on after SIGTERM before they are evicted."""
        return max(0, self.shutdown_grace_seconds - DRAIN_SAFETY_MARGIN_SECONDS)


_LIBRARY_PARSERS: Mapping[str, Callable[[str], Any]] = {"GLIDEIN_Start_Extra": parse_expression}
"""Variables whose values HTCondor's ClassAd library must accept too (the pilot
has it; the launcher does not, and leaves this part to the pilot)."""


def pilot_parser(variable: Variable) -> Callable[[str], Any]:
    """How the pilot parses ``variable``: its row's parser, or the ClassAd-checked one."""
    return _LIBRARY_PARSERS.get(variable.name, variable.parse)


# Knobs the pilot renders itself: a _CONDOR_ override of one of these is allowed
# (HTCondor honours it) but is worth a warning, since it changes the product's
# guarantees (security, START, lifetime, slot layout).
_PILOT_OWNED_KNOBS = frozenset(
    {
        "START",
        "RANK",
        "DAEMON_LIST",
        "CONDOR_HOST",
        "COLLECTOR_HOST",
        "CCB_ADDRESS",
        "LOCAL_DIR",
        "NUM_CPUS",
        "MEMORY",
        "MAXJOBRETIREMENTTIME",
        "TRUST_DOMAIN",
        "NETWORK_HOSTNAME",
        "STARTD_ATTRS",
        "STARTER_JOB_ENVIRONMENT",
        "STARTD_NOCLAIM_SHUTDOWN",
    }
)
_PILOT_OWNED_KNOB_PREFIXES = ("SEC_", "ALLOW_", "DENY_", "SLOT_TYPE_", "GLIDEIN_")


def load_settings(environ: Mapping[str, str], *, findings: Findings) -> Settings | None:
    """Validate ``environ`` into Settings; None when any FAIL was added to ``findings``."""
    values: dict[str, Any] = {}
    before = len(findings.failures)
    for variable in VARIABLES:
        raw = environ.get(variable.name, "")
        if not raw.strip():
            if variable.required:
                findings.fail(
                    variable.name,
                    "is not set",
                    f"set {variable.name} to your {variable.meaning} (-e {variable.name}=...)",
                )
            continue
        try:
            value = pilot_parser(variable)(raw)
        except Invalid as problem:
            if variable.lenient:
                findings.warn(
                    variable.name,
                    f"{problem.message}; not passed on to jobs",
                    f"{problem.fix} to pass it on",
                )
            else:
                findings.fail(variable.name, problem.message, problem.fix)
            continue
        values[variable.field] = value
        unheeded = variable.unheeded(value)
        if unheeded:
            findings.warn(
                variable.name,
                unheeded,
                f"nothing to fix if that is fine; unset {variable.name} to silence this",
            )
            continue
        shown_value = "set (hidden)" if variable.secret else variable.display(value)
        findings.passed(variable.name, shown_value)
    _check_combinations(environ, values, findings)
    values["condor_overrides"] = _condor_overrides(environ, findings)
    _warn_about_misspellings(environ, findings)
    if len(findings.failures) > before:
        return None
    return Settings(**values)


def input_files(environ: Mapping[str, str]) -> tuple[PurePosixPath, PurePosixPath, str | None]:
    """Token directory, extra-attributes file and ``TOKEN``, even when other settings are bad.

    Lets one run report token and attribute problems alongside environment
    errors. An invalid path falls back to its default (its own FAIL comes
    from :func:`load_settings`).
    """

    def path(name: str, default: PurePosixPath) -> PurePosixPath:
        try:
            return parse_abs_path(environ[name]) if environ.get(name, "").strip() else default
        except Invalid:
            return default

    token_text = environ.get("TOKEN", "").strip() or None
    return (
        path("TOKEN_DIR", Settings.token_dir),
        path("EXTRA_ATTRIBUTES_FILE", Settings.extra_attributes_file),
        token_text,
    )


def _check_combinations(
    environ: Mapping[str, str], values: dict[str, Any], findings: Findings
) -> None:
    # ITB with a production pool name joins that pool, as OSG's container does
    # (ITB only means ospool -> itb-ospool there); no conflict to report.
    pool = values.get("pool")
    if values.get("condor_host") and environ.get("POOL", "").strip() and pool is not None:
        findings.warn(
            "CONDOR_HOST",
            f"overrides the central managers of POOL={pool}",
            "unset one of them to make the intent clear",
        )
    start_extra = values.get("start_extra", "")
    if "projectname" in start_extra.lower():
        findings.warn(
            "GLIDEIN_Start_Extra",
            "restricts ProjectName",
            "use OSG_PROJECT_NAME for project restrictions; it is checked for you",
        )
    grace = values.get("shutdown_grace_seconds", Settings.shutdown_grace_seconds)
    if grace <= DRAIN_SAFETY_MARGIN_SECONDS:
        findings.warn(
            "SHUTDOWN_GRACE_SECONDS",
            f"{grace} s leaves running jobs no time to finish on stop "
            f"({DRAIN_SAFETY_MARGIN_SECONDS} s are kept for eviction)",
            "raise it, and the orchestrator's stop timeout with it (docker run --stop-timeout)",
        )
    walltime = values.get("pilot_walltime_seconds")
    conflict = walltime_conflict(walltime, grace) if walltime is not None else None
    if conflict:
        findings.fail("PILOT_WALLTIME", conflict, WALLTIME_FIX)
    for name, key in (
        ("OSG_DEFAULT_CONTAINER_DISTRIBUTION", "default_container_distribution"),
        ("OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU", "default_container_distribution_gpu"),
    ):
        total = sum(weight for weight, _ in values.get(key, ((100, ""),)))
        if total != 100:
            findings.warn(
                name,
                f"the weights add up to {total}, not 100: they are taken as relative weights",
                "give weights that add up to 100 to make the shares plain",
            )
    cvmfs_tuned = [
        name
        for name, key in (
            ("CVMFS_HTTP_PROXY", "cvmfs_http_proxy"),
            ("CVMFS_QUOTA_LIMIT", "cvmfs_quota_limit_mb"),
        )
        if values.get(key)
    ]
    cvmfsexec_asked = values.get("cvmfsexec_repos") or values.get("cvmfs_mode") == "cvmfsexec"
    if cvmfs_tuned and not cvmfsexec_asked:
        findings.warn(
            cvmfs_tuned[0],
            "cvmfs settings are given but CVMFSEXEC_REPOS is empty, so cvmfsexec is not used",
            "set CVMFSEXEC_REPOS, or drop the cvmfs settings",
        )


def _condor_overrides(environ: Mapping[str, str], findings: Findings) -> tuple[str, ...]:
    names = sorted(name for name in environ if name.upper().startswith("_CONDOR_"))
    for name in names:
        knob = name[len("_CONDOR_") :].upper()
        if knob in _PILOT_OWNED_KNOBS or knob.startswith(_PILOT_OWNED_KNOB_PREFIXES):
            findings.warn(
                name,
                f"overrides {knob}, which the pilot configures itself",
                "remove it unless you mean to change the pilot's behaviour",
            )
    if names:
        findings.passed("_CONDOR_*", f"{len(names)} HTCondor overrides passed through")
    return tuple(names)


_PROXY_NAMES = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"})
"""Proxy variables that tools read in either case: no case slip to point out."""


def _warn_about_misspellings(environ: Mapping[str, str], findings: Findings) -> None:
    by_upper = {name.upper(): name for name in NAMES}
    candidates = sorted(NAMES)
    for name in sorted(environ):
        if name in NAMES or name.upper().startswith("_CONDOR_") or name.upper() in _PROXY_NAMES:
            continue
        guess = by_upper.get(name.upper())
        if guess is None and name.upper().startswith(("GLIDEIN_", "OSG_", "CVMFS", "ACCEPT_")):
            close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85)
            guess = close[0] if close else None
        if guess:
            findings.warn(
                name, f"is not a setting of the pilot; did you mean {guess}?", "rename it"
            )
