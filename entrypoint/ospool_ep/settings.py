"""Settings: the environment turned into one frozen, validated :class:`Settings` (SPEC 4.1, 5.2).

The only place that reads the pilot's environment variables. Each variable is
one row of :data:`VARIABLES`: its name, parser, default and meaning. Every
problem is collected as a finding; nothing is raised for bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from ospool_ep import env_values as ev
from ospool_ep.findings import Findings
from ospool_ep.pools import POOL_NAMES, canonical_pool_name

DRAIN_SAFETY_MARGIN_SECONDS = 5
"""Seconds kept between the drain deadline and the orchestrator's SIGKILL, for
evicting jobs and the daemons' own exit (SPEC 7.2)."""


TEN_YEARS_H = 10 * 365 * 24
"""Upper bound of every duration: larger values are typos, and overflow date arithmetic."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the pilot was told, validated. Units are in the field names."""

    site: str
    resource_name: str
    start_extra: str = "True"
    project_name: str | None = None
    squid_url: str | None = None
    pool: str = "ospool"
    condor_host: str | None = None
    itb: bool = False
    accept_jobs_for_hours: int = 336
    retirement_hours: int = 24
    accept_idle_minutes: int = 30
    num_cpus: int | None = None
    memory_mb: int | None = None
    cvmfsexec_repos: tuple[str, ...] = ()
    cvmfs_http_proxy: str | None = None
    cvmfs_quota_limit_mb: int | None = None
    cvmfsexec_debug: bool = False
    cvmfs_mode: Literal["auto", "bind", "cvmfsexec", "none"] = "auto"
    """How CVMFS is provided (SPEC 9.1): auto picks bind, then cvmfsexec, then none."""
    cvmfs_check_seconds: int = 240
    """Period of the startd cron job that re-checks the repos (SPEC 9.3; upstream: 4m)."""
    token_text: str | None = field(default=None, repr=False)
    randomize_name: bool = False
    singularity_disable_pid_namespaces: bool = False
    singularity_bind_extra: tuple[str, ...] = ()
    extra_job_env: tuple[tuple[str, str], ...] = ()
    apptainer_registry_mirror: str | None = None
    shutdown_grace_seconds: int = 25
    pilot_walltime_seconds: int | None = None
    memory_overhead_mb: int = 100
    min_disk_gb: float = 5.0
    log_format: Literal["text", "json"] = "text"
    metrics_port: int | None = None
    notify_start_url: str | None = field(default=None, repr=False)
    notify_stop_url: str | None = field(default=None, repr=False)
    topology_check: bool = False
    pilot_dir: PurePosixPath = PurePosixPath("/pilot")
    token_dir: PurePosixPath = PurePosixPath("/etc/condor/tokens-orig.d")
    extra_attributes_file: PurePosixPath = PurePosixPath("/etc/osg/extra-attributes.cfg")
    condor_overrides: tuple[str, ...] = ()
    """Names of ``_CONDOR_<KNOB>`` variables passed through to HTCondor."""

    @property
    def drain_seconds(self) -> int:
        """How long running jobs may go on after SIGTERM before they are evicted."""
        return max(0, self.shutdown_grace_seconds - DRAIN_SAFETY_MARGIN_SECONDS)


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    field: str
    parse: Callable[[str], Any]
    meaning: str
    required: bool = False
    secret: bool = False
    display: Callable[[Any], str] = str


def _in(low: int, high: int | None = None, unit: str = "") -> Callable[[str], int]:
    return lambda raw: ev.parse_int(raw, minimum=low, maximum=high, unit=unit)


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ev.Invalid(f"{ev.shown(raw)} is not a log format", "use text or json")
    return value


def _cvmfs_mode(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("auto", "bind", "cvmfsexec", "none"):
        raise ev.Invalid(
            f"{ev.shown(raw)} is not a CVMFS mode", "use auto, bind, cvmfsexec or none"
        )
    return value


def _optional_url(url: str | None) -> str:
    return ev.redact_url(url) if url else ""


VARIABLES: tuple[Variable, ...] = (
    Variable("GLIDEIN_Site", "site", ev.parse_ad_string, "OSG Topology site name", True),
    Variable(
        "GLIDEIN_ResourceName", "resource_name", ev.parse_ad_string, "OSG Topology resource", True
    ),
    Variable("GLIDEIN_Start_Extra", "start_extra", ev.parse_expression, "extra START clause"),
    Variable("OSG_PROJECT_NAME", "project_name", ev.parse_project_name, "only this project"),
    Variable("OSG_SQUID_LOCATION", "squid_url", ev.parse_proxy_url, "HTTP proxy for jobs"),
    Variable("POOL", "pool", lambda raw: ev.parse_pool(raw, known=POOL_NAMES), "pool name or host"),
    Variable("CONDOR_HOST", "condor_host", ev.parse_collector_list, "central manager override"),
    Variable("ITB", "itb", ev.parse_bool, "join the ITB pool"),
    Variable(
        "ACCEPT_JOBS_FOR_HOURS", "accept_jobs_for_hours", _in(1, TEN_YEARS_H, "hours"), "hours"
    ),
    Variable("RETIREMENT_HOURS", "retirement_hours", _in(1, TEN_YEARS_H, "hours"), "hours"),
    Variable(
        "ACCEPT_IDLE_MINUTES",
        "accept_idle_minutes",
        _in(0, TEN_YEARS_H * 60, "minutes"),
        "0 = never",
    ),
    Variable("NUM_CPUS", "num_cpus", _in(1, 100_000, "CPUs"), "CPUs offered"),
    Variable("MEMORY", "memory_mb", _in(1, 2**40, "MB"), "MB offered"),
    Variable(
        "CVMFSEXEC_REPOS",
        "cvmfsexec_repos",
        ev.parse_repos,
        "repos cvmfsexec mounts",
        display=" ".join,
    ),
    Variable(
        "CVMFS_HTTP_PROXY",
        "cvmfs_http_proxy",
        ev.parse_cvmfs_proxy,
        "cvmfs proxies",
        display=ev.redact_credentials,
    ),
    Variable("CVMFS_QUOTA_LIMIT", "cvmfs_quota_limit_mb", ev.parse_cvmfs_quota, "cache MB"),
    Variable("CVMFSEXEC_DEBUG", "cvmfsexec_debug", ev.parse_bool, "cvmfs debug log"),
    Variable("CVMFS_MODE", "cvmfs_mode", _cvmfs_mode, "auto, bind, cvmfsexec or none"),
    Variable(
        "CVMFS_CHECK_SECONDS",
        "cvmfs_check_seconds",
        _in(1, 24 * 3600, "seconds"),
        "repo re-check period",
    ),
    Variable("TOKEN", "token_text", str.strip, "token text", secret=True),
    Variable("GLIDEIN_RANDOMIZE_NAME", "randomize_name", ev.parse_bool, "random name suffix"),
    Variable(
        "SINGULARITY_DISABLE_PID_NAMESPACES",
        "singularity_disable_pid_namespaces",
        ev.parse_bool,
        "apptainer --pid off",
    ),
    Variable(
        "SINGULARITY_BIND_EXTRA",
        "singularity_bind_extra",
        ev.parse_bind_list,
        "extra binds",
        display=",".join,
    ),
    Variable(
        "EXTRA_JOB_ENV",
        "extra_job_env",
        ev.parse_job_env,
        "job environment",
        display=lambda pairs: " ".join(name for name, _ in pairs),
    ),
    Variable(
        "APPTAINER_REGISTRY_MIRROR",
        "apptainer_registry_mirror",
        ev.parse_registry_mirror,
        "registry mirror",
    ),
    Variable(
        "SHUTDOWN_GRACE_SECONDS",
        "shutdown_grace_seconds",
        _in(1, TEN_YEARS_H * 3600, "seconds"),
        "stop grace",
    ),
    Variable("PILOT_WALLTIME", "pilot_walltime_seconds", ev.parse_walltime, "pilot lifetime"),
    Variable("MEMORY_OVERHEAD_MB", "memory_overhead_mb", _in(0, 2**40, "MB"), "daemon memory"),
    Variable(
        "MIN_DISK_GB",
        "min_disk_gb",
        lambda raw: ev.parse_number(raw, minimum=0, unit="GB"),
        "free /pilot",
    ),
    Variable("LOG_FORMAT", "log_format", _log_format, "text or json"),
    Variable("METRICS_PORT", "metrics_port", _in(1, 65535), "Prometheus port"),
    Variable(
        "NOTIFY_START_URL",
        "notify_start_url",
        ev.parse_http_url,
        "start webhook",
        display=_optional_url,
    ),
    Variable(
        "NOTIFY_STOP_URL",
        "notify_stop_url",
        ev.parse_http_url,
        "stop webhook",
        display=_optional_url,
    ),
    Variable("TOPOLOGY_CHECK", "topology_check", ev.parse_bool, "check OSG Topology"),
    Variable("PILOT_DIR", "pilot_dir", ev.parse_abs_path, "scratch root"),
    Variable("TOKEN_DIR", "token_dir", ev.parse_abs_path, "token files"),
    Variable(
        "EXTRA_ATTRIBUTES_FILE", "extra_attributes_file", ev.parse_abs_path, "extra attributes"
    ),
)

VARIABLE_NAMES = frozenset(v.name for v in VARIABLES)

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
            value = variable.parse(raw)
        except ev.Invalid as problem:
            findings.fail(variable.name, problem.message, problem.fix)
            continue
        values[variable.field] = value
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
            return ev.parse_abs_path(environ[name]) if environ.get(name, "").strip() else default
        except ev.Invalid:
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
    pool = values.get("pool", "ospool")
    itb = values.get("itb", False)
    if itb and canonical_pool_name(pool, itb=False) == "prod-ospool" and pool != "ospool":
        findings.fail(
            "ITB",
            "ITB=true conflicts with POOL=prod-ospool",
            "use POOL=itb-ospool (or POOL=ospool with ITB=true), or unset ITB",
        )
    if values.get("condor_host") and environ.get("POOL", "").strip():
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
    if walltime is not None and walltime <= grace:
        findings.fail(
            "PILOT_WALLTIME",
            f"{walltime} s is not longer than SHUTDOWN_GRACE_SECONDS={grace}: "
            "the pilot would have to stop before it starts",
            "give the pilot a longer walltime, or a shorter grace period",
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


def _warn_about_misspellings(environ: Mapping[str, str], findings: Findings) -> None:
    by_upper = {name.upper(): name for name in VARIABLE_NAMES}
    candidates = sorted(VARIABLE_NAMES)
    for name in sorted(environ):
        if name in VARIABLE_NAMES or name.upper().startswith("_CONDOR_"):
            continue
        guess = by_upper.get(name.upper())
        if guess is None and name.upper().startswith(("GLIDEIN_", "OSG_", "CVMFS", "ACCEPT_")):
            close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85)
            guess = close[0] if close else None
        if guess:
            findings.warn(
                name, f"is not a setting of the pilot; did you mean {guess}?", "rename it"
            )
