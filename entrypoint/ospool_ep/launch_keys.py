"""The keys of the host's config file: each one's role, meaning and value check (SPEC 4.1, 11).

One row of :data:`KEYS` per key: upstream's RPM keys (TOKEN_LOCATION,
WORKER_TEMP_DIR, PROVIDE_NVIDIA_GPU, BIND_MOUNT_CVMFS), the launcher's own
(CONTAINER_ENGINE, IMAGE, ...), and every variable the pilot reads (SPEC 4.1;
``settings.VARIABLES``, kept equal by a test), with what happens to it: passed
to the container, used by the launcher, or refused with what to use instead.
The defaults of the launcher's keys are here too. Pure data; standard
library only and Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ospool_ep import launch_values as lv

DEFAULT_TOKEN_LOCATION = "/etc/osg/ospool-ep.tkn"  # noqa: S105 - a path
"""Where upstream's install guide tells sites to put the token."""

DEFAULT_IMAGE = "hub.opensciencegrid.org/osg-htc/ospool-ep:25-release"
"""Used when IMAGE is not set. Upstream's current release tag: its image reads
the same variables and mounts, so a site keeps working until it sets IMAGE to
this project's published image (the project's registry path goes here)."""

DEFAULT_PIDS_LIMIT = 16384
"""Upstream's RPM value (SOFTWARE-6142): a fork bomb in a job cannot exhaust the host's pids."""

DEFAULT_NOFILE_LIMIT = 2048
"""Upstream's RPM value. Engines otherwise give 1048576 or more, which makes
programs that close every descriptor before exec (HTCondor's starter,
Apptainer, many jobs) slow."""


class Role:
    PILOT = "pilot"
    """A variable the pilot reads: passed as ``-e NAME=value``."""
    PILOT_SECRET = "pilot-secret"  # noqa: S105 - a role name
    """A pilot variable whose value may carry a credential (webhook paths,
    proxy passwords): passed as ``-e NAME`` with the value in the engine's
    environment, so it never appears in ``ps`` or ``--print``."""
    HOST = "host"
    """Read by the launcher only; never passed to the container."""
    REFUSED = "refused"
    """Known, but not allowed in this file (the fix says what to use)."""


@dataclass(frozen=True)
class Key:
    name: str
    role: str
    meaning: str
    check: Callable[[str], object] | None = None
    """Raises launch_values.Invalid for a bad value (its result is not used)."""
    refusal: str = ""
    """For REFUSED keys: what to do instead."""
    shell_chars_ok: bool = False
    """``;`` and ``|`` belong to this value's own syntax (cvmfs proxy lists)."""


P, S, H, R = Role.PILOT, Role.PILOT_SECRET, Role.HOST, Role.REFUSED
HOURS = lv.int_in(1, lv.TEN_YEARS_H, "hours")
CVMFS_MODES = lv.one_of("auto", "bind", "cvmfsexec", "none")

KEYS: tuple[Key, ...] = (
    # -- upstream's RPM keys, read by the launcher --------------------------
    Key("TOKEN_LOCATION", H, "host file with the pool token, mounted read-only", lv.abs_path),
    Key("WORKER_TEMP_DIR", H, "host directory mounted at /pilot (job scratch)", lv.abs_path),
    Key("PROVIDE_NVIDIA_GPU", H, "give the container the host's NVIDIA GPUs", lv.parse_host_bool),
    Key("BIND_MOUNT_CVMFS", H, "bind-mount the host's /cvmfs", lv.parse_host_bool),
    # -- the launcher's own ---------------------------------------------------
    Key("CONTAINER_ENGINE", H, "docker or podman", lv.one_of("docker", "podman")),
    Key("IMAGE", H, "the pilot image", lv.image),
    Key(
        "PULL_POLICY",
        H,
        "pull the image: always, missing, never",
        lv.one_of("always", "missing", "never"),
    ),
    Key("CONTAINER_NAME", H, "the container's name", lv.container_name),
    Key(
        "CONTAINER_PIDS_LIMIT",
        H,
        "max processes in the container, 0 = engine default",
        lv.int_in(0, 2**22),
    ),
    Key(
        "CONTAINER_NOFILE_LIMIT",
        H,
        "max open files per process, 0 = engine default",
        lv.int_in(0, 2**30),
    ),
    Key("CONTAINER_EXTRA_ARGS", H, "more engine options, space separated"),
    Key("APPARMOR_PROFILE", H, "AppArmor profile for the container", lv.apparmor_profile),
    Key(
        "EXTRA_ATTRIBUTES_FILE", H, "host file of extra machine-ad attributes, mounted", lv.abs_path
    ),
    Key("CVMFSEXEC_CACHE_DIR", H, "host directory for cvmfsexec's cache", lv.abs_path),
    Key("CVMFSEXEC_LOGS_DIR", H, "host directory for cvmfsexec's logs", lv.abs_path),
    Key("CVMFSEXEC_LOCAL_CONFIG", H, "host file of extra cvmfs client settings", lv.abs_path),
    # -- the pilot's variables (SPEC 4.1; settings.VARIABLES) -----------------
    Key("GLIDEIN_Site", P, "OSG Topology site name", lv.ad_string),
    Key("GLIDEIN_ResourceName", P, "OSG Topology resource name", lv.ad_string),
    # ClassAd's && || < > are the value's own syntax, as ; and | are cvmfs's.
    Key("GLIDEIN_Start_Extra", P, "extra START clause", lv.expression_text, shell_chars_ok=True),
    Key("OSG_PROJECT_NAME", P, "only this project", lv.project_name),
    Key("OSG_SQUID_LOCATION", P, "HTTP proxy for jobs", lv.proxy_url),
    Key("POOL", P, "pool name or host", lv.pool),
    Key("CONDOR_HOST", P, "central manager override", lv.collector_list),
    Key("ITB", P, "join the ITB pool", lv.parse_pilot_bool),
    Key("ACCEPT_JOBS_FOR_HOURS", P, "hours", HOURS),
    Key("RETIREMENT_HOURS", P, "hours", HOURS),
    Key("ACCEPT_IDLE_MINUTES", P, "0 = never", lv.int_in(0, lv.TEN_YEARS_H * 60, "minutes")),
    Key("NUM_CPUS", P, "CPUs offered", lv.int_in(1, 100_000, "CPUs")),
    Key("MEMORY", P, "MB offered", lv.int_in(1, 2**40, "MB")),
    Key("CVMFSEXEC_REPOS", P, "repos cvmfsexec mounts", lv.repos),
    Key("CVMFS_HTTP_PROXY", S, "cvmfs proxies", lv.cvmfs_proxy, shell_chars_ok=True),
    Key("CVMFS_QUOTA_LIMIT", P, "cvmfs cache MB", lv.cvmfs_quota),
    Key("CVMFSEXEC_DEBUG", P, "cvmfs debug log", lv.parse_pilot_bool),
    Key("CVMFS_MODE", P, "auto, bind, cvmfsexec or none", lambda v: CVMFS_MODES(v.strip().lower())),
    Key("CVMFS_CHECK_SECONDS", P, "repo re-check period", lv.int_in(1, 24 * 3600, "seconds")),
    Key("GLIDEIN_RANDOMIZE_NAME", P, "random name suffix", lv.parse_pilot_bool),
    Key("SINGULARITY_DISABLE_PID_NAMESPACES", P, "apptainer --pid off", lv.parse_pilot_bool),
    Key("SINGULARITY_BIND_EXTRA", P, "extra binds for jobs", lv.bind_list),
    Key("EXTRA_JOB_ENV", P, "job environment", lv.job_env),
    Key("APPTAINER_REGISTRY_MIRROR", P, "registry mirror", lv.registry_mirror),
    Key("SHUTDOWN_GRACE_SECONDS", P, "stop grace", lv.int_in(1, lv.TEN_YEARS_H * 3600, "seconds")),
    Key("PILOT_WALLTIME", P, "pilot lifetime", lv.walltime),
    Key("MEMORY_OVERHEAD_MB", P, "daemon memory", lv.int_in(0, 2**40, "MB")),
    Key("MIN_DISK_GB", P, "free /pilot", lv.number),
    Key("LOG_FORMAT", P, "text or json", lv.log_format),
    Key("METRICS_PORT", P, "Prometheus port", lv.int_in(1, 65535)),
    Key("NOTIFY_START_URL", S, "start webhook", lv.http_url),
    Key("NOTIFY_STOP_URL", S, "stop webhook", lv.http_url),
    Key("TOPOLOGY_CHECK", P, "check OSG Topology", lv.parse_pilot_bool),
    # -- pilot variables that make no sense in a host file --------------------
    Key(
        "TOKEN",
        R,
        "token text",
        refusal="put the token in a file readable by uid 1000 and set TOKEN_LOCATION to it "
        "(a TOKEN here would end up on the engine's command line)",
    ),
    Key(
        "PILOT_DIR",
        R,
        "scratch root inside the container",
        refusal="set WORKER_TEMP_DIR to the host directory; it is mounted at /pilot",
    ),
    Key(
        "TOKEN_DIR",
        R,
        "token directory inside the container",
        refusal="set TOKEN_LOCATION to the host's token file; it is mounted for you",
    ),
)

KEYS_BY_NAME: Mapping[str, Key] = {key.name: key for key in KEYS}
PILOT_VARIABLES = frozenset(
    key.name for key in KEYS if key.role in (Role.PILOT, Role.PILOT_SECRET, Role.REFUSED)
) | {"EXTRA_ATTRIBUTES_FILE"}
"""Every variable the pilot reads (settings.VARIABLE_NAMES; a test keeps them equal).
EXTRA_ATTRIBUTES_FILE is one too, but here it names the host file to mount."""
