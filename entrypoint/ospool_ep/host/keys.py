"""The keys of the host's config file: each one's role, meaning and value check (SPEC 4.1, 11).

One row of :data:`KEYS` per key: upstream's RPM keys (TOKEN_LOCATION,
WORKER_TEMP_DIR, PROVIDE_NVIDIA_GPU, BIND_MOUNT_CVMFS), the launcher's own
(CONTAINER_ENGINE, IMAGE, ...), and one per variable the pilot reads, derived
from the pilot's own table (:mod:`ospool_ep.inputs.variables`) with what happens to
it: passed to the container, or refused with what to use instead. The
defaults of the launcher's keys are here too. Pure data; standard library
only and Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ospool_ep.inputs import values as v
from ospool_ep.inputs.variables import VARIABLES, Variable

DEFAULT_TOKEN_LOCATION = "/etc/osg/ospool-ep.tkn"  # noqa: S105 - a path
"""Where upstream's install guide tells sites to put the token."""

DEFAULT_IMAGE = "hub.opensciencegrid.org/osg-htc/ospool-ep:25-release"
"""Used when IMAGE is not set. Upstream's current release tag: its image reads
the same variables and mounts, so a site keeps working until it sets IMAGE to
this project's published image (the project's registry path goes here)."""

DEFAULT_GRACE_SECONDS = 120
"""SHUTDOWN_GRACE_SECONDS when the host's file leaves it unset: OSG's RPM stops
its container with ``docker container stop -t 120``, so a site's running jobs
keep upstream's 120 s on ``systemctl stop`` (SPEC 11). The pilot's own default
(25 s, what orchestrators give) stays for ``docker run`` and Kubernetes."""

DEFAULT_CONTAINER_NAME = "ospool-ep-container"
"""Upstream's container name for ``/etc/osg/ospool-ep.cfg``: a site's ``docker exec
ospool-ep-container ...`` keeps working, and after an upgrade from OSG's RPM the
new unit's ExecStop drains the container the old unit started."""

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
    """Raises values.Invalid for a bad value (its result is not used)."""
    refusal: str = ""
    """For REFUSED keys: what to do instead."""
    shell_chars_ok: bool = False
    """``;`` and ``|`` belong to this value's own syntax (cvmfs proxy lists)."""
    lenient: bool = False
    """A bad value is a WARN, not a FAIL (the variable's own ``lenient``)."""
    unheeded: Callable[[str], str | None] | None = None
    """For a key upstream reads and the pilot does not act on: the WARN for a
    (valid) value, or None (the variable's own :meth:`Variable.unheeded`)."""


H = Role.HOST


def _ints(low: int, high: int) -> Callable[[str], int]:
    return lambda raw: v.parse_int(raw, minimum=low, maximum=high)


def _choice(*choices: str) -> Callable[[str], str]:
    return lambda raw: v.parse_choice(raw, choices, f"one of {', '.join(choices)}", fold_case=False)


HOST_KEYS: tuple[Key, ...] = (
    # -- upstream's RPM keys ---------------------------------------------------
    Key(
        "TOKEN_LOCATION",
        H,
        "host file with the pool token, mounted read-only",
        v.parse_mount_source,
    ),
    Key(
        "WORKER_TEMP_DIR", H, "host directory mounted at /pilot (job scratch)", v.parse_mount_source
    ),
    Key("PROVIDE_NVIDIA_GPU", H, "give the container the host's NVIDIA GPUs", v.parse_bool),
    Key("BIND_MOUNT_CVMFS", H, "bind-mount the host's /cvmfs", v.parse_bool),
    # -- the launcher's own ---------------------------------------------------
    Key("CONTAINER_ENGINE", H, "docker or podman", _choice("docker", "podman")),
    Key("IMAGE", H, "the pilot image", v.parse_image),
    Key(
        "PULL_POLICY",
        H,
        "pull the image: always, missing, never",
        _choice("always", "missing", "never"),
    ),
    Key("CONTAINER_NAME", H, "the container's name", v.parse_container_name),
    Key(
        "CONTAINER_PIDS_LIMIT",
        H,
        "max processes in the container, 0 = engine default",
        _ints(0, 2**22),
    ),
    Key(
        "CONTAINER_NOFILE_LIMIT",
        H,
        "max open files per process, 0 = engine default",
        _ints(0, 2**30),
    ),
    Key("CONTAINER_EXTRA_ARGS", H, "more engine options, space separated"),
    Key("APPARMOR_PROFILE", H, "AppArmor profile for the container", v.parse_apparmor_profile),
    # The pilot's EXTRA_ATTRIBUTES_FILE names a file in the container; here, the host's.
    Key(
        "EXTRA_ATTRIBUTES_FILE",
        H,
        "host file of extra machine-ad attributes, mounted",
        v.parse_mount_source,
    ),
    Key("CVMFSEXEC_CACHE_DIR", H, "host directory for cvmfsexec's cache", v.parse_mount_source),
    Key("CVMFSEXEC_LOGS_DIR", H, "host directory for cvmfsexec's logs", v.parse_mount_source),
    Key(
        "CVMFSEXEC_LOCAL_CONFIG",
        H,
        "host file of extra cvmfs client settings",
        v.parse_mount_source,
    ),
)

REFUSALS: Mapping[str, str] = {
    "TOKEN": "put the token in a file readable by uid 1000 and set TOKEN_LOCATION to it "
    "(a TOKEN here would end up on the engine's command line)",
    "PILOT_DIR": "set WORKER_TEMP_DIR to the host directory; it is mounted at /pilot",
    "TOKEN_DIR": "set TOKEN_LOCATION to the host's token file; it is mounted for you",
}
"""Pilot variables that make no sense in a host file, and what to set instead."""


def _pilot_key(variable: Variable) -> Key:
    if variable.name in REFUSALS:
        return Key(variable.name, Role.REFUSED, variable.meaning, refusal=REFUSALS[variable.name])
    role = Role.PILOT_SECRET if variable.secret or variable.credentials else Role.PILOT
    unheeded = None
    if variable.not_acted_on:

        def unheeded(raw: str) -> str | None:
            return variable.unheeded(variable.parse(raw))

    return Key(
        variable.name,
        role,
        variable.meaning,
        variable.parse,
        shell_chars_ok=variable.shell_syntax,
        lenient=variable.lenient,
        unheeded=unheeded,
    )


_HOST_NAMES = {key.name for key in HOST_KEYS}
KEYS: tuple[Key, ...] = HOST_KEYS + tuple(
    _pilot_key(variable) for variable in VARIABLES if variable.name not in _HOST_NAMES
)

KEYS_BY_NAME: Mapping[str, Key] = {key.name: key for key in KEYS}
PILOT_VARIABLES = frozenset(variable.name for variable in VARIABLES)
"""Every variable the pilot reads (EXTRA_ATTRIBUTES_FILE too, which names the host file here)."""
