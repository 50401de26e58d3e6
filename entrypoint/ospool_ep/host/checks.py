"""The host a pilot is launched on: engine, id mapping, what the config names (SPEC 11).

What belongs here: the checks :mod:`ospool_ep.host.launch` runs before it starts
anything, each adding a :class:`~ospool_ep.findings.Finding` (FAIL or
WARN, config or environment) instead of raising: which engine is installed,
which host uid the container's uid 1000 is (rootless podman maps it), whether
the token file and scratch directory are usable by that uid, and whether
CVMFS, FUSE and GPUs are there when the config asks for them. Reads the
host; runs nothing. Standard library only, Python 3.9 compatible.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.findings import Finding, Kind, Status
from ospool_ep.host import command as lc
from ospool_ep.host.config import LaunchConfig
from ospool_ep.host.keys import DEFAULT_TOKEN_LOCATION

CONTAINER_UID = 1000
"""The uid (and gid) the pilot runs as inside the container."""
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


@dataclass(frozen=True)
class IdMapping:
    """Which host ids the container's uid/gid 1000 are, for permission checks."""

    uid: int
    gid: int
    rootless: bool = False


# ---------------------------------------------------------------------------
# The engine


def choose_engine(wanted: str | None, problems: list[Finding]) -> str | None:
    """The engine to use: the one asked for, else docker, else podman (whichever exists)."""
    if wanted:
        if shutil.which(wanted) is None:
            problems.append(
                Finding(
                    "CONTAINER_ENGINE",
                    Status.FAIL,
                    f"{wanted} is not installed (not on PATH)",
                    f"install {wanted}, or set CONTAINER_ENGINE to the engine you have",
                    Kind.ENVIRONMENT,
                )
            )
            return None
        return "podman" if wanted == "docker" and _is_podman_shim() else wanted
    if shutil.which("docker"):
        # podman-docker's /usr/bin/docker is a script running podman: say podman,
        # so podman's own GPU option is used.
        return "podman" if _is_podman_shim() else "docker"
    if shutil.which("podman"):
        return "podman"
    problems.append(
        Finding(
            "CONTAINER_ENGINE",
            Status.FAIL,
            "neither docker nor podman is installed",
            "install one (EL9: dnf install podman)",
            Kind.ENVIRONMENT,
        )
    )
    return None


def _is_podman_shim() -> bool:
    path = shutil.which("docker")
    if path is None:
        return False
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and b"podman" in head


def id_mapping(engine: str) -> IdMapping | Finding:
    """The host ids behind the container's uid 1000.

    Rootful engines (and docker for members of the docker group: its daemon
    is root) use the ids as they are. Rootless podman maps container uid N>0
    to the N-th subordinate uid of the user (``/etc/subuid``).
    """
    if engine != "podman" or os.geteuid() == 0:
        return IdMapping(CONTAINER_UID, CONTAINER_UID)
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry: subuid lines may name the uid
        user = str(os.geteuid())
    uid_base = subordinate_base(SUBUID, user, os.geteuid())
    gid_base = subordinate_base(SUBGID, user, os.geteuid())
    if uid_base is None or gid_base is None:
        return Finding(
            "podman (rootless)",
            Status.FAIL,
            f"user {user} has no subordinate uids/gids in /etc/subuid and /etc/subgid, "
            "so the container cannot run as uid 1000",
            f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}",
            Kind.ENVIRONMENT,
        )
    return IdMapping(uid_base + CONTAINER_UID - 1, gid_base + CONTAINER_UID - 1, rootless=True)


def subordinate_base(path: Path, user: str, uid: int) -> int | None:
    """The first subordinate id of ``user`` (or ``uid``) in a subuid/subgid file,
    if its range reaches the container's uid 1000."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        named = len(parts) == 3 and parts[0] in (user, str(uid))
        if named and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) >= CONTAINER_UID:
            return int(parts[1])
    return None


# ---------------------------------------------------------------------------
# The host


def host_facts() -> lc.HostFacts:
    return lc.HostFacts(selinux=selinux_enabled(), opencl_vendors=Path(lc.OPENCL_VENDORS).is_dir())


def selinux_enabled() -> bool:
    """Enabled, enforcing or permissive: either way podman labels the container."""
    return Path("/sys/fs/selinux/enforce").exists()


def check_host(config: LaunchConfig, *, engine: str, problems: list[Finding]) -> None:
    """What the config names must exist on the host, usable by the container's uid 1000."""
    ids = id_mapping(engine)
    if isinstance(ids, Finding):
        problems.append(ids)
        return
    _check_files(config, ids=ids, problems=problems)
    if config.flag("BIND_MOUNT_CVMFS") and not Path(lc.CVMFS).is_dir():
        problems.append(
            Finding(
                config.where("BIND_MOUNT_CVMFS"),
                Status.FAIL,
                f"BIND_MOUNT_CVMFS is true but {lc.CVMFS} does not exist on this host",
                "install and start CVMFS (autofs), or use CVMFSEXEC_REPOS instead",
                Kind.ENVIRONMENT,
            )
        )
    _check_fuse(config, problems)
    if config.flag("PROVIDE_NVIDIA_GPU"):
        _check_gpu(engine, problems)
    needed = lc.stop_timeout(config) + lc.ENGINE_SLACK_SECONDS
    if needed > lc.UNIT_TIMEOUT_STOP_SECONDS:
        problems.append(
            Finding(
                config.where("SHUTDOWN_GRACE_SECONDS"),
                Status.WARN,
                f"SHUTDOWN_GRACE_SECONDS={lc.grace_seconds(config)}: stopping takes up to "
                f"{needed} s, more than the systemd unit's TimeoutStopSec="
                f"{lc.UNIT_TIMEOUT_STOP_SECONDS}",
                f"add a drop-in (systemctl edit ospool-ep) with [Service] TimeoutStopSec={needed}",
            )
        )


# Host paths the container mounts: key -> is it a directory (written to) or a file (read).
_MOUNTED = (
    ("TOKEN_LOCATION", False),
    ("WORKER_TEMP_DIR", True),
    ("EXTRA_ATTRIBUTES_FILE", False),
    ("CVMFSEXEC_CACHE_DIR", True),
    ("CVMFSEXEC_LOGS_DIR", True),
    ("CVMFSEXEC_LOCAL_CONFIG", False),
)


def _check_files(config: LaunchConfig, *, ids: IdMapping, problems: list[Finding]) -> None:
    for key, directory in _MOUNTED:
        path = config.get(key) or (DEFAULT_TOKEN_LOCATION if key == "TOKEN_LOCATION" else None)
        unused = key.startswith("CVMFSEXEC_") and config.flag("BIND_MOUNT_CVMFS")
        if path is None or key in config.invalid or unused:
            continue
        where = config.where(key)
        _check_path(path, key=key, where=where, directory=directory, ids=ids, problems=problems)
        if key == "TOKEN_LOCATION":
            _check_token_privacy(path, where=where, ids=ids, problems=problems)
    if not config.get("WORKER_TEMP_DIR"):
        problems.append(
            Finding(
                "WORKER_TEMP_DIR",
                Status.WARN,
                "is not set: jobs write into a volume in the engine's own storage",
                "set it to a scratch directory owned by uid 1000 (recommended)",
            )
        )


def _check_path(
    path: str, *, key: str, where: str, directory: bool, ids: IdMapping, problems: list[Finding]
) -> None:
    what = "directory" if directory else "file"
    try:
        info = Path(path).stat()
    except FileNotFoundError:
        problems.append(
            Finding(where, Status.FAIL, f"{key}: {path} does not exist", f"create the {what}")
        )
        return
    except OSError as exc:
        problems.append(
            Finding(where, Status.FAIL, f"{key}: {path}: {exc.strerror}", "run as root")
        )
        return
    if directory != stat.S_ISDIR(info.st_mode) or not (directory or stat.S_ISREG(info.st_mode)):
        problems.append(
            Finding(where, Status.FAIL, f"{key}: {path} is not a {what}", f"name a {what}")
        )
        return
    if not directory and info.st_size == 0:
        problems.append(Finding(where, Status.FAIL, f"{key}: {path} is empty", f"fill in {path}"))
        return
    wanted = "rwx" if directory else "r"
    if _allowed(info, ids, wanted):
        return
    fix = (
        f"podman unshare chown {CONTAINER_UID}:{CONTAINER_UID} {path}"
        if ids.rootless
        else f"chown {ids.uid}:{ids.gid} {path}"
    )
    acl = _has_acl(path)
    problems.append(
        Finding(
            where,
            # An ACL may grant what the mode bits do not; only a warning then.
            Status.WARN if acl else Status.FAIL,
            f"{key}: {path} is not {_able(wanted)} by the container's uid {CONTAINER_UID} "
            f"(host uid {ids.uid}; owner {info.st_uid}:{info.st_gid}, "
            f"mode {stat.S_IMODE(info.st_mode):04o})"
            + (", unless its ACL allows it" if acl else ""),
            fix,
        )
    )


def _able(wanted: str) -> str:
    return "readable" if wanted == "r" else "writable"


def _allowed(info: os.stat_result, ids: IdMapping, wanted: str) -> bool:
    """Whether the mode bits give ``wanted`` to ``ids`` (owner, else group, else other)."""
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == ids.uid:
        shift = 6
    elif info.st_gid == ids.gid:
        # --user 1000:1000 leaves the process no supplementary groups,
        # whatever the host's /etc/group says: only the gid counts.
        shift = 3
    else:
        shift = 0
    bits = (mode >> shift) & 0o7
    need = (4 if "r" in wanted else 0) | (2 if "w" in wanted else 0) | (1 if "x" in wanted else 0)
    return bits & need == need


def _has_acl(path: str) -> bool:
    try:
        return "system.posix_acl_access" in os.listxattr(path)
    except OSError:
        return False


def _check_token_privacy(path: str, *, where: str, ids: IdMapping, problems: list[Finding]) -> None:
    try:
        info = Path(path).stat()
    except OSError:
        return  # reported by _check_path
    if stat.S_IMODE(info.st_mode) & 0o004:
        problems.append(
            Finding(
                where,
                Status.WARN,
                f"TOKEN_LOCATION: {path} is readable by every user of this host",
                f"chown {ids.uid}:{ids.gid} {path} && chmod 0600 {path}",
            )
        )


def _check_fuse(config: LaunchConfig, problems: list[Finding]) -> None:
    """``--device /dev/fuse`` is always passed: without the device the engine
    refuses to create the container, so say why first."""
    try:
        info = Path("/dev/fuse").stat()
    except OSError:
        problems.append(
            Finding(
                "/dev/fuse",
                Status.FAIL,
                "does not exist: the container (given /dev/fuse for Apptainer and "
                "cvmfsexec) cannot be created",
                "modprobe fuse, and list fuse in /etc/modules-load.d/ so it loads at boot",
                Kind.ENVIRONMENT,
            )
        )
        return
    if stat.S_IMODE(info.st_mode) & 0o006 != 0o006:
        cvmfsexec = bool(config.get("CVMFSEXEC_REPOS"))
        users = "cvmfsexec cannot mount CVMFS" if cvmfsexec else "jobs' Apptainer cannot use FUSE"
        problems.append(
            Finding(
                "/dev/fuse",
                Status.WARN,
                f"has mode {stat.S_IMODE(info.st_mode):04o}: the container's uid "
                f"{CONTAINER_UID} cannot open it, so {users}",
                "chmod 0666 /dev/fuse (the usual mode; a udev rule keeps it)",
                Kind.ENVIRONMENT,
            )
        )


def _check_gpu(engine: str, problems: list[Finding]) -> None:
    if engine == "docker":
        if not (shutil.which("nvidia-container-cli") or shutil.which("nvidia-ctk")):
            problems.append(
                Finding(
                    "PROVIDE_NVIDIA_GPU",
                    Status.WARN,
                    "the NVIDIA Container Toolkit is not installed: docker --gpus will fail",
                    "install nvidia-container-toolkit and restart docker",
                    Kind.ENVIRONMENT,
                )
            )
        return
    specs = [
        spec
        for directory in ("/etc/cdi", "/var/run/cdi")
        for pattern in ("*.yaml", "*.json")
        for spec in sorted(Path(directory).glob(pattern))
    ]
    if not any(_mentions(spec, b"nvidia.com/gpu") for spec in specs):
        problems.append(
            Finding(
                "PROVIDE_NVIDIA_GPU",
                Status.FAIL,
                "no CDI specification of nvidia.com/gpu in /etc/cdi or /var/run/cdi: "
                "podman cannot give the container the GPUs",
                "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
                Kind.ENVIRONMENT,
            )
        )


def _mentions(path: Path, text: bytes) -> bool:
    try:
        return text in path.read_bytes()
    except OSError:
        return False
