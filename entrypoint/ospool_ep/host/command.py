"""Engine command lines: a validated :class:`LaunchConfig` -> ``docker/podman`` argv (SPEC 11).

Pure: what the host looks like comes in as :class:`HostFacts`, nothing is
read or run here, so every option combination is tested for both engines
without either. Standard library only and Python 3.9 compatible.

Why the container gets what it gets (upstream's install guide, "Container
Security Configuration", and what was measured on this project's hosts):

- ``--user 1000:1000``: the image's ``osg`` user; the pilot never needs root.
- ``--security-opt seccomp=unconfined``: Docker's default seccomp profile
  allows ``unshare``/``mount``/``setns`` only with CAP_SYS_ADMIN, so nested
  Apptainer and cvmfsexec could not make their user namespaces.
- The /proc unmask, docker ``--security-opt systempaths=unconfined``, podman
  ``--security-opt unmask=/proc/*``: every OSPool job runs in Apptainer inside
  the pilot (JOB_CONTAINMENT), and Apptainer mounts a fresh /proc in the job's
  PID namespace, which the kernel refuses while the engine has paths of /proc
  masked or read-only ("can't mount proc filesystem to /proc: operation not
  permitted", measured). Upstream passes ``systempaths=unconfined`` to
  docker; podman accepts that spelling too but then unmasks /sys as well, so
  it gets its own narrower one (podman-run(1), ``unmask``).
- ``--device /dev/fuse``: squashfuse/fuse-overlayfs (Apptainer) and cvmfsexec.
- ``--security-opt no-new-privileges`` and ``--cap-drop ALL``: a uid-1000
  process has no capabilities in its permitted set anyway; dropping them from
  the bounding set as well means no setuid or file-capability binary in an
  image can hand them back. Apptainer and cvmfsexec work in unprivileged user
  namespaces, where the kernel gives the new namespace a full set of its own,
  so none of the capabilities upstream's guide lists for bind-mount mode
  (DAC_OVERRIDE, DAC_READ_SEARCH, SETGID, SETUID, SYS_ADMIN, SYS_CHROOT,
  SYS_PTRACE) are used by a uid-1000 pilot: they matter only for a pilot run
  as root with setuid Apptainer, which this launcher does not start (an admin
  who needs it adds ``--cap-add ...`` to CONTAINER_EXTRA_ARGS). No
  ``--privileged``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ospool_ep.host.config import LaunchConfig
from ospool_ep.host.keys import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_IMAGE,
    DEFAULT_NOFILE_LIMIT,
    DEFAULT_PIDS_LIMIT,
    DEFAULT_TOKEN_LOCATION,
)
from ospool_ep.inputs.variables import default

CONTAINER_USER = "1000:1000"
TOKEN_TARGET = "/etc/condor/tokens-orig.d/flock.opensciencegrid.org"  # noqa: S105 - a path
PILOT_TARGET = "/pilot"
EXTRA_ATTRIBUTES_TARGET = "/etc/osg/extra-attributes.cfg"
CVMFS = "/cvmfs"
CVMFSEXEC_TARGETS = {
    "CVMFSEXEC_CACHE_DIR": "/cvmfs-cache",
    "CVMFSEXEC_LOGS_DIR": "/cvmfs-logs",
    "CVMFSEXEC_LOCAL_CONFIG": "/cvmfsexec/default.local:ro",
}
OPENCL_VENDORS = "/etc/OpenCL/vendors"
CONFIG_LABEL = "org.ospool-ep.config"
"""Label naming the config file a container came from (``docker ps --filter label=...``)."""

DEFAULT_OVERHEAD_MB: int = default("MEMORY_OVERHEAD_MB")
STOP_MARGIN_SECONDS = 5
"""The engine's stop timeout is the grace plus this: the pilot is gone before the
grace ends (SPEC 7.2); the margin covers the engine's own teardown."""
UNIT_TIMEOUT_STOP_SECONDS = 300
"""``TimeoutStopSec`` of the shipped units (a test keeps them equal)."""
DEFAULT_STOP_TIMEOUT = DEFAULT_GRACE_SECONDS + STOP_MARGIN_SECONDS
ENGINE_SLACK_SECONDS = 30
"""Time ``docker/podman stop`` itself needs beyond its timeout (kill, remove)."""

# The pilot streams its daemons' logs to stdout (SPEC 7.3), up to ~30 GB a day
# if a daemon runs away (logtail.MAX_PUMP_BYTES), so the engine's copy must be
# capped or it fills the host's disk.
# - docker: the json-file driver, set explicitly, because docker refuses a
#   size option for a driver without one ("unknown log opt 'max-size' for
#   journald log driver") and a daemon.json may name another default; it
#   rotates within max-file files: at most 200 MB kept, 150 MB after a rotation.
# - podman: only max-size (podman run(1), --log-opt). It bounds the k8s-file
#   driver (json-file is its alias), which has no max-file: conmon starts the
#   file afresh when it is full. The driver is left as the host chose: the
#   default on systemd hosts is journald, which takes no size option from podman
#   (it ignores this one) and is bounded by journald.conf's SystemMaxUse.
# A CONTAINER_EXTRA_ARGS that names a log driver or log option gets none of
# these: the site's choice stands, and ours might not be valid for its driver.
LOG_OPTIONS = {
    "docker": (
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=50m",
        "--log-opt",
        "max-file=4",
    ),
    "podman": ("--log-opt", "max-size=200m"),
}
_LOG_FLAGS = ("--log-driver", "--log-opt")

PROC_UNMASK = {
    "docker": "systempaths=unconfined",
    "podman": "unmask=/proc/*",
}
"""Each engine's ``--security-opt`` that leaves /proc unmasked for Apptainer in the pilot."""


def security_options(engine: str) -> tuple[str, ...]:
    """What nested Apptainer and cvmfsexec need, and no more (the module's docstring)."""
    return (
        "--device",
        "/dev/fuse",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        PROC_UNMASK[engine],
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
    )


@dataclass(frozen=True)
class HostFacts:
    """What the host is like, as far as the command line depends on it."""

    selinux: bool = False
    """SELinux enabled: bind mounts are unreadable to a labelled container."""
    opencl_vendors: bool = False
    """``/etc/OpenCL/vendors`` exists (GPU OpenCL ICDs, SPEC 4.2)."""


@dataclass(frozen=True)
class Command:
    engine: str
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    """Values of ``-e NAME`` arguments, for the engine's environment (secrets)."""
    stop_timeout: int = DEFAULT_STOP_TIMEOUT


def grace_seconds(config: LaunchConfig) -> int:
    return config.integer("SHUTDOWN_GRACE_SECONDS", DEFAULT_GRACE_SECONDS)


def stop_timeout(config: LaunchConfig) -> int:
    """Seconds the engine waits between SIGTERM and SIGKILL: longer than the grace."""
    return grace_seconds(config) + STOP_MARGIN_SECONDS


def run_command(config: LaunchConfig, *, engine: str, name: str, facts: HostFacts) -> Command:
    """The ``<engine> run`` command for a config without FAILs."""
    argv: list[str] = [engine, "run", "--rm", "--name", name, "--user", CONTAINER_USER]
    argv += ["--pull", config.get("PULL_POLICY") or "always"]
    timeout = stop_timeout(config)
    argv += ["--stop-timeout", str(timeout)]
    argv += ["--label", f"{CONFIG_LABEL}={config.source}"]
    argv += _limits(config)
    argv += _log_options(config, engine=engine)
    argv += security_options(engine)
    if config.get("APPARMOR_PROFILE"):
        argv += ["--security-opt", f"apparmor={config.get('APPARMOR_PROFILE')}"]
    if facts.selinux:
        # docker-ce runs containers without SELinux labels by default; podman
        # labels them container_t, which may read no bind mount (token,
        # /pilot, /cvmfs) and may not mount inside for nested Apptainer.
        # Relabelling /cvmfs is impossible and would be wrong for the others.
        argv += ["--security-opt", "label=disable"]
    argv += _mounts(config)
    env: dict[str, str] = {}
    argv += _gpu(config, engine=engine, facts=facts)
    if config.get("SHUTDOWN_GRACE_SECONDS") is None:
        # The pilot must know the grace the engine gives it (SPEC 7.2): the
        # host's default, not the image's.
        argv += ["-e", f"SHUTDOWN_GRACE_SECONDS={DEFAULT_GRACE_SECONDS}"]
    for variable, value, secret in config.pilot_variables():
        if secret:
            argv += ["-e", variable]
            env[variable] = value
        else:
            argv += ["-e", f"{variable}={value}"]
    if (
        config.flag("PROVIDE_NVIDIA_GPU")
        and config.get("SINGULARITY_DISABLE_PID_NAMESPACES") is None
    ):
        # Upstream: Apptainer's PID namespaces conflict with the NVIDIA runtime's mounts.
        argv += ["-e", "SINGULARITY_DISABLE_PID_NAMESPACES=true"]
    argv += config.extra_args()
    argv.append(config.get("IMAGE") or DEFAULT_IMAGE)
    # No command: the image's default (`ospool-ep run`) is the pilot.
    return Command(engine=engine, name=name, argv=tuple(argv), env=env, stop_timeout=timeout)


def _limits(config: LaunchConfig) -> list[str]:
    out: list[str] = []
    if config.get("NUM_CPUS"):
        out += ["--cpus", str(config.get("NUM_CPUS"))]
    if config.get("MEMORY"):
        # The pilot offers MEMORY; its own daemons need the overhead on top,
        # or the kernel OOM-kills the container with all its jobs (SPEC 8).
        total = config.integer("MEMORY", 0) + config.integer(
            "MEMORY_OVERHEAD_MB", DEFAULT_OVERHEAD_MB
        )
        out += ["--memory", f"{total}m"]
    pids = config.integer("CONTAINER_PIDS_LIMIT", DEFAULT_PIDS_LIMIT)
    if pids:
        out += ["--pids-limit", str(pids)]
    nofile = config.integer("CONTAINER_NOFILE_LIMIT", DEFAULT_NOFILE_LIMIT)
    if nofile:
        out += ["--ulimit", f"nofile={nofile}:{nofile}"]
    return out


def _log_options(config: LaunchConfig, *, engine: str) -> list[str]:
    for word in config.extra_args():
        if word.split("=", 1)[0] in _LOG_FLAGS:
            return []  # the site chose its own logging
    return list(LOG_OPTIONS.get(engine, ()))


def _mounts(config: LaunchConfig) -> list[str]:
    token = config.get("TOKEN_LOCATION") or DEFAULT_TOKEN_LOCATION
    out = ["-v", f"{token}:{TOKEN_TARGET}:ro"]
    if config.get("WORKER_TEMP_DIR"):
        out += ["-v", f"{config.get('WORKER_TEMP_DIR')}:{PILOT_TARGET}"]
    if config.get("EXTRA_ATTRIBUTES_FILE"):
        out += ["-v", f"{config.get('EXTRA_ATTRIBUTES_FILE')}:{EXTRA_ATTRIBUTES_TARGET}:ro"]
    if config.flag("BIND_MOUNT_CVMFS"):
        # shared: autofs mounts made on the host after the start appear inside.
        out += ["-v", f"{CVMFS}:{CVMFS}:shared"]
    else:
        for key, target in CVMFSEXEC_TARGETS.items():
            if config.get(key):
                out += ["-v", f"{config.get(key)}:{target}"]
    return out


def _gpu(config: LaunchConfig, *, engine: str, facts: HostFacts) -> list[str]:
    if not config.flag("PROVIDE_NVIDIA_GPU"):
        return []
    # docker: the NVIDIA Container Toolkit's --gpus; podman: the CDI device
    # that `nvidia-ctk cdi generate` describes (podman has no --gpus runtime hook).
    out = ["--gpus", "all"] if engine == "docker" else ["--device", "nvidia.com/gpu=all"]
    if facts.opencl_vendors:
        out += ["-v", f"{OPENCL_VENDORS}:{OPENCL_VENDORS}:ro"]
    return out


def stop_command(*, engine: str, name: str, timeout: int) -> tuple[str, ...]:
    """Ask the container to drain: SIGTERM (the image's STOPSIGNAL), SIGKILL after ``timeout``."""
    return (engine, "stop", "-t", str(timeout), name)


def remove_command(*, engine: str, name: str) -> tuple[str, ...]:
    """Remove a container left behind (exited while its engine client was gone)."""
    return (engine, "rm", "--force", name)


def exists_command(*, engine: str, name: str) -> tuple[str, ...]:
    return (engine, "container", "inspect", "--format", "{{.Id}}", name)
