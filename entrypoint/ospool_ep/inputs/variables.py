"""The pilot's variables, in one table (SPEC 4.1): name, parser, default, unit and meaning.

Read by the pilot (:mod:`ospool_ep.inputs.settings` turns the container's
environment into ``Settings`` with it) and by the host launcher
(:mod:`ospool_ep.host.keys` derives the config file's pilot keys from it),
so every variable is written down once. A variable's parser is the light one
of :mod:`ospool_ep.inputs.values`; where a value needs HTCondor's ClassAd library too,
the pilot adds that check (``settings``), the launcher leaves it to the pilot.

Standard library only and Python 3.9 compatible (the launcher imports it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ospool_ep.inputs import values as v
from ospool_ep.inputs.pools import POOL_NAMES

TEN_YEARS_H = 10 * 365 * 24
"""Upper bound of every duration: larger values are typos, and overflow date arithmetic."""

CVMFS_MODES = ("auto", "bind", "cvmfsexec", "none")
JOB_CONTAINMENTS = ("required", "preferred", "none")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Variable:
    name: str
    field: str
    """The ``Settings`` field that holds the parsed value."""
    parse: Callable[[str], Any]
    """Raises values.Invalid for a bad value."""
    meaning: str
    """A few words: what to set it to ("set GLIDEIN_Site to your <meaning>")."""
    default: Any = None
    """The value when unset; None: nothing (the feature is off, or detected)."""
    unit: str = ""
    required: bool = False
    secret: bool = False
    """The value is a credential: never shown, never passed on a command line."""
    credentials: bool = False
    """The value may embed a credential (URL paths, proxy passwords): shown
    redacted (``display``), and the launcher passes it by name, not on its argv."""
    shell_syntax: bool = False
    """``;``, ``|``, ``&&``, ``<`` belong to the value's own syntax (cvmfs proxy
    lists, ClassAd expressions), so the launcher's file may hold them unquoted."""
    display: Callable[[Any], str] = str
    """How a valid value is shown in ``ospool-ep check``'s PASS line."""
    lenient: bool = False
    """A bad value is a WARN and the variable stays unset, not a FAIL: the variable is
    often set for other programs (container engines inject proxy settings into every
    container), and the pilot can do without it."""
    not_acted_on: str = ""
    """For a variable OSG's container (or its RPM) reads and this pilot does not act
    on: what upstream does with it. Its value is checked, and one that asks for
    something this pilot does not do is a WARN naming it (SPEC 4.1, 11: never
    silently dropped)."""
    inert: Callable[[Any], bool] = lambda _value: False
    """For a not-acted-on variable: True for a value that asks for nothing this
    pilot does not do anyway (no WARN)."""

    def unheeded(self, value: Any) -> str | None:
        """The WARN message for a set ``value`` this pilot will not act on, or None."""
        if not self.not_acted_on or self.inert(value):
            return None
        return f"is accepted but not acted on by this pilot: {self.not_acted_on}"


def _int(low: int, high: int | None = None, unit: str = "") -> Callable[[str], int]:
    return lambda raw: v.parse_int(raw, minimum=low, maximum=high, unit=unit)


def _optional_url(url: str | None) -> str:
    return v.redact_url(url) if url else ""


def _pool_shown(pool: str) -> str:
    return pool if pool in POOL_NAMES else f"{pool} (a central manager's host)"


def _distribution_shown(entries: tuple[tuple[int, str], ...]) -> str:
    return " ".join(f"{weight}%__{image}" for weight, image in entries)


_NO_LONGER_READ = "OSG's container no longer reads it"

SYSLOG_TLS_PORT = 6514
"""syslog over TLS (RFC 5425), the port OSG's container sends to; any other port is
plain TCP (RFC 6587)."""


def parse_syslog_host(raw: str) -> str:
    """``SYSLOG_HOST``: a receiver's ``host[:port]`` (port 6514, TLS, when none is given)."""
    text = raw.strip()
    try:
        host, port = v.parse_host_port(text)
    except v.Invalid as problem:
        raise v.Invalid(
            f"{problem.message}: SYSLOG_HOST names a syslog receiver",
            f"write host or host:port, e.g. syslog.example.org:{SYSLOG_TLS_PORT} (TLS) "
            "or loghost.example.org:514 (plain TCP)",
        ) from None
    return host if port is None else f"{host}:{port}"


VARIABLES: tuple[Variable, ...] = (
    Variable("GLIDEIN_Site", "site", v.parse_ad_string, "OSG Topology site name", required=True),
    Variable(
        "GLIDEIN_ResourceName",
        "resource_name",
        v.parse_ad_string,
        "OSG Topology resource",
        required=True,
    ),
    Variable(
        "GLIDEIN_Start_Extra",
        "start_extra",
        v.parse_expression_text,
        "extra START clause",
        default="True",
        shell_syntax=True,
    ),
    Variable("OSG_PROJECT_NAME", "project_name", v.parse_project_name, "only this project"),
    Variable("OSG_SQUID_LOCATION", "squid_url", v.parse_proxy_url, "HTTP proxy for jobs"),
    Variable(
        "POOL",
        "pool",
        lambda raw: v.parse_pool(raw, known=POOL_NAMES),
        "pool name or host",
        default="ospool",
        display=_pool_shown,
    ),
    Variable("CONDOR_HOST", "condor_host", v.parse_collector_list, "central manager override"),
    Variable("ITB", "itb", v.parse_bool, "join the ITB pool", default=False),
    Variable(
        "ACCEPT_JOBS_FOR_HOURS",
        "accept_jobs_for_hours",
        _int(1, TEN_YEARS_H, "hours"),
        "hours",
        default=336,
        unit="hours",
    ),
    Variable(
        "RETIREMENT_HOURS",
        "retirement_hours",
        _int(1, TEN_YEARS_H, "hours"),
        "hours",
        default=24,
        unit="hours",
    ),
    Variable(
        "ACCEPT_IDLE_MINUTES",
        "accept_idle_minutes",
        _int(0, TEN_YEARS_H * 60, "minutes"),
        "0 = never",
        default=30,
        unit="minutes",
    ),
    Variable("NUM_CPUS", "num_cpus", _int(1, 100_000, "CPUs"), "CPUs offered", unit="CPUs"),
    Variable("MEMORY", "memory_mb", _int(1, 2**40, "MB"), "MB offered", unit="MB"),
    Variable(
        "CVMFSEXEC_REPOS",
        "cvmfsexec_repos",
        v.parse_repos,
        "repos cvmfsexec mounts",
        default=(),
        display=" ".join,
    ),
    Variable(
        "CVMFS_HTTP_PROXY",
        "cvmfs_http_proxy",
        v.parse_cvmfs_proxy,
        "cvmfs proxies",
        credentials=True,
        shell_syntax=True,
        display=v.redact_credentials,
    ),
    Variable(
        "CVMFS_QUOTA_LIMIT", "cvmfs_quota_limit_mb", v.parse_cvmfs_quota, "cache MB", unit="MB"
    ),
    Variable("CVMFSEXEC_DEBUG", "cvmfsexec_debug", v.parse_bool, "cvmfs debug log", default=False),
    Variable(
        "CVMFS_MODE",
        "cvmfs_mode",
        lambda raw: v.parse_choice(raw, CVMFS_MODES, "a CVMFS mode"),
        "auto, bind, cvmfsexec or none",
        default="auto",
    ),
    Variable(
        "CVMFS_CHECK_SECONDS",
        "cvmfs_check_seconds",
        _int(1, 24 * 3600, "seconds"),
        "repo re-check period",
        default=240,
        unit="seconds",
    ),
    Variable(
        "OSDF_CHECK_SECONDS",
        "osdf_check_seconds",
        _int(10, 24 * 3600, "seconds"),
        "OSDF plugin re-test period",
        default=1800,
        unit="seconds",
    ),
    Variable("TOKEN", "token_text", str.strip, "token text", secret=True),
    Variable(
        "GLIDEIN_RANDOMIZE_NAME",
        "randomize_name",
        v.parse_bool,
        "random name suffix",
        default=False,
    ),
    Variable(
        "SINGULARITY_DISABLE_PID_NAMESPACES",
        "singularity_disable_pid_namespaces",
        v.parse_bool,
        "apptainer --pid off",
        default=False,
    ),
    Variable(
        "SINGULARITY_BIND_EXTRA",
        "singularity_bind_extra",
        v.parse_bind_list,
        "extra binds",
        default=(),
        display=",".join,
    ),
    Variable(
        "EXTRA_JOB_ENV",
        "extra_job_env",
        v.parse_job_env,
        "job environment",
        default=(),
        display=lambda pairs: " ".join(name for name, _ in pairs),
    ),
    Variable(
        "APPTAINER_REGISTRY_MIRROR",
        "apptainer_registry_mirror",
        v.parse_registry_mirror,
        "registry mirror",
        not_acted_on="OSG's container makes Apptainer pull docker.io images through "
        "this mirror; this pilot does not configure Apptainer's registries",
    ),
    Variable(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        "default_container_distribution",
        v.parse_image_distribution,
        "default job images",
        default=((10, "htc/rocky:8"), (90, "htc/rocky:9")),
        display=_distribution_shown,
    ),
    Variable(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU",
        "default_container_distribution_gpu",
        v.parse_image_distribution,
        "default GPU job images",
        default=((100, "htc/rocky:9-cuda-12.6.0"),),
        display=_distribution_shown,
    ),
    Variable(
        "JOB_CONTAINMENT",
        "job_containment",
        lambda raw: v.parse_choice(raw, JOB_CONTAINMENTS, "a containment policy"),
        "required, preferred or none",
        default="required",
    ),
    # OSG's pilot passes these on to every job when they are set in its environment.
    Variable(
        "http_proxy",
        "job_http_proxy",
        v.parse_proxy_setting,
        "jobs' HTTP proxy",
        credentials=True,
        lenient=True,
        display=v.redact_credentials,
    ),
    Variable(
        "https_proxy",
        "job_https_proxy",
        v.parse_proxy_setting,
        "jobs' HTTPS proxy",
        credentials=True,
        lenient=True,
        display=v.redact_credentials,
    ),
    Variable(
        "FTP_PROXY",
        "job_ftp_proxy",
        v.parse_proxy_setting,
        "jobs' FTP proxy",
        credentials=True,
        lenient=True,
        display=v.redact_credentials,
    ),
    Variable("OSG_HOSTNAME", "osg_hostname", v.parse_host_name, "host name for jobs", lenient=True),
    # Where the log stream also goes (SPEC 7.3); ospool_ep.pilot.remotelog decides.
    Variable(
        "ENABLE_REMOTE_SYSLOG",
        "enable_remote_syslog",
        v.parse_bool,
        "remote syslog on or off",
        default=True,
    ),
    Variable(
        "SYSLOG_HOST",
        "syslog_host",
        parse_syslog_host,
        "syslog receiver's host[:port]",
    ),
    # -- read by OSG's container, not acted on here (yet) ------------------------
    Variable(
        "REGISTRY_HOST",
        "registry_host",
        v.parse_host_name,
        "token registry",
        not_acted_on="the token registry OSG's container gets its syslog client certificate from",
    ),
    Variable(
        "CCB_RANGE_LOW",
        "ccb_range_low",
        _int(1, 65535, "(a port)"),
        "lowest CCB port",
        not_acted_on="with CCB_RANGE_HIGH, OSG's container uses a random port in that "
        "range on each central manager as CCB",
    ),
    Variable(
        "CCB_RANGE_HIGH",
        "ccb_range_high",
        _int(1, 65535, "(a port)"),
        "highest CCB port",
        not_acted_on="with CCB_RANGE_LOW, OSG's container uses a random port in that "
        "range on each central manager as CCB",
    ),
    Variable(
        "GARBAGE_COLLECTION",
        "garbage_collection",
        v.parse_bool,
        "remove dead pilots' files",
        default=True,
        not_acted_on="this pilot always removes the directories of dead pilots under "
        "PILOT_DIR; that cannot be turned off",
        inert=bool,
    ),
    Variable(
        "OSG_INSTITUTION_ID",
        "institution_id",
        v.parse_ad_string,
        "OSG institution ID",
        not_acted_on="OSG's container publishes it in the slot ad as OSG_INSTITUTION_ID",
    ),
    Variable(
        "SUPERVISORD_RESTART_POLICY",
        "supervisord_restart_policy",
        lambda raw: v.parse_choice(raw, ("true", "false", "unexpected"), "a restart policy"),
        "condor_master restarts",
        not_acted_on="OSG's container restarts condor_master by this supervisord policy; "
        "this pilot ends when condor_master ends, and its orchestrator restarts it",
    ),
    # -- keys OSG's RPM still ships in /etc/osg/ospool-ep.cfg ----------------------
    Variable(
        "ALLOW_CPUJOB_ON_GPUSLOT",
        "allow_cpujob_on_gpuslot",
        v.parse_condor_knob_value,
        "(no longer used)",
        not_acted_on=f"{_NO_LONGER_READ}; CPU-only jobs run on a GPU slot only "
        "while 8 CPUs and 32 GB per free GPU stay free",
    ),
    Variable(
        "CONTAINER_PILOT_USE_JOB_HOOK",
        "container_pilot_use_job_hook",
        v.parse_condor_knob_value,
        "(no longer used)",
        not_acted_on=f"{_NO_LONGER_READ}; HTCondor runs container jobs itself",
    ),
    Variable(
        "SHUTDOWN_GRACE_SECONDS",
        "shutdown_grace_seconds",
        _int(1, TEN_YEARS_H * 3600, "seconds"),
        "stop grace",
        default=25,
        unit="seconds",
    ),
    Variable(
        "PILOT_WALLTIME",
        "pilot_walltime_seconds",
        v.parse_walltime,
        "pilot lifetime",
        unit="seconds",
    ),
    Variable(
        "MEMORY_OVERHEAD_MB",
        "memory_overhead_mb",
        _int(0, 2**40, "MB"),
        "daemon memory",
        default=100,
        unit="MB",
    ),
    Variable(
        "MIN_DISK_GB",
        "min_disk_gb",
        lambda raw: v.parse_number(raw, minimum=0, unit="GB"),
        "free /pilot",
        default=5.0,
        unit="GB",
    ),
    Variable(
        "LOG_FORMAT",
        "log_format",
        lambda raw: v.parse_choice(raw, LOG_FORMATS, "a log format"),
        "text or json",
        default="text",
    ),
    Variable("METRICS_PORT", "metrics_port", _int(1, 65535), "Prometheus port"),
    Variable(
        "NOTIFY_START_URL",
        "notify_start_url",
        v.parse_http_url,
        "start webhook",
        credentials=True,
        display=_optional_url,
    ),
    Variable(
        "NOTIFY_STOP_URL",
        "notify_stop_url",
        v.parse_http_url,
        "stop webhook",
        credentials=True,
        display=_optional_url,
    ),
    Variable("TOPOLOGY_CHECK", "topology_check", v.parse_bool, "check OSG Topology", default=False),
    Variable(
        "PILOT_DIR",
        "pilot_dir",
        v.parse_abs_path,
        "scratch root",
        default=PurePosixPath("/pilot"),
    ),
    Variable(
        "TOKEN_DIR",
        "token_dir",
        v.parse_abs_path,
        "token files",
        default=PurePosixPath("/etc/condor/tokens-orig.d"),
    ),
    Variable(
        "EXTRA_ATTRIBUTES_FILE",
        "extra_attributes_file",
        v.parse_abs_path,
        "extra attributes",
        default=PurePosixPath("/etc/osg/extra-attributes.cfg"),
    ),
)

BY_NAME: Mapping[str, Variable] = {variable.name: variable for variable in VARIABLES}
NAMES = frozenset(BY_NAME)


def default(name: str) -> Any:
    """The default of variable ``name`` (for ``Settings``' field defaults)."""
    return BY_NAME[name].default


WALLTIME_FIX = "give the pilot a longer walltime, or a shorter grace period"


def walltime_conflict(walltime_seconds: int, grace_seconds: int) -> str | None:
    """Why PILOT_WALLTIME and SHUTDOWN_GRACE_SECONDS cannot go together, or None: a
    rule between two variables, judged alike by the pilot and the launcher."""
    if walltime_seconds > grace_seconds:
        return None
    return (
        f"{walltime_seconds} s is not longer than SHUTDOWN_GRACE_SECONDS={grace_seconds}: "
        "the pilot would have to stop before it starts"
    )
