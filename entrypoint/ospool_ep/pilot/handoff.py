"""Hand-off: what the preparing process tells the supervisor it execs into (SPEC 7, 14).

Preparing a pilot (validation with the ClassAd library, rendering with jinja2)
loads modules the long-lived supervisor never needs again; they would stay in
its memory for the pilot's whole life. So ``ospool-ep run`` prepares, then execs
itself again, keeping its pid, into a supervisor that imports only the light
modules. :class:`Launch` is everything that supervisor needs, handed over as
JSON in a memfd named by :data:`LAUNCH_FD_VARIABLE`; the pilot directory's lock
descriptor is inherited, so the directory is never unlocked in between.
Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

LAUNCH_FD_VARIABLE = "OSPOOL_EP_LAUNCH_FD"
MEMFD_NAME = "ospool-ep-launch"
MAX_LAUNCH_BYTES = 16 << 20


class HandOffError(Exception):
    """The launch document is missing, foreign or unreadable (a bug, or tampering)."""


@dataclass(frozen=True, kw_only=True)
class Launch:
    """A prepared pilot: the master's command line, where things are, and what the
    supervisor's services report (names, sizes, lifetime). Plain data only."""

    command: tuple[str, ...]
    environment: dict[str, str]
    """condor_master's whole environment (no TOKEN, no webhook URLs)."""
    local_dir: str
    config_dir: str
    lock_fd: int
    """The pilot directory's flock, held from its creation to its removal."""
    grace_seconds: int
    drain_seconds: int
    log_format: str
    cvmfsexec_log_dir: str | None
    """Set when condor_master runs under cvmfsexec (its own PID namespace)."""
    name: str
    uuid: str
    site: str
    resource: str
    token_dir: str
    """Where the site's token files are read from (rotation is watched there)."""
    state_file: str
    metrics_port: int | None
    notify_start_url: str | None
    notify_stop_url: str | None
    cpus: int
    memory_mb: int
    gpus: int
    to_retire: float
    to_die: float
    token_expiry: float | None
    cvmfs_repos: tuple[str, ...] = ()
    cvmfs_healthy: dict[str, bool] = field(default_factory=dict)
    """Repository -> healthy at start; the startd cron job publishes later changes."""
    osdf_plugin: str | None = None
    """The OSDF plugin the supervisor tests and offers; None: not offered."""
    osdf_check_seconds: int = 1800
    plan_blob: str = ""
    """The prepared plan and tokens, opaque here: a reload hands it to a child that
    imports the heavy modules (:func:`ospool_ep.prepare.reload_pilot`)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Launch:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise HandOffError("the launch document is not an object")
        for name in ("command", "cvmfs_repos"):
            data[name] = tuple(data.get(name, ()))
        try:
            return cls(**data)
        except TypeError as error:
            raise HandOffError(f"the launch document does not fit: {error}") from None


def memfd_holding(name: str, data: bytes, *, sealed: bool = False) -> int:
    """An inheritable memfd (it must survive an exec) holding ``data``. Raises OSError.

    ``sealed``: no later write, truncation or growth, so a process that opens it
    through /proc before the new program reads it cannot change what it says.
    """
    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sealed:
            seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError:
        os.close(fd)
        raise
    return fd


def take_memfd(
    environ: MutableMapping[str, str], variable: str, *, name: str, limit: int
) -> bytes | None:
    """What the memfd named by ``environ[variable]`` holds; the fd is closed and the
    variable removed. None without the variable. Raises :class:`HandOffError` when the
    descriptor is not open, not our memfd called ``name`` (then left open: it may be
    something the caller needs), or larger than ``limit``."""
    value = environ.pop(variable, None)
    if value is None:
        return None
    if not value.isdigit():
        raise HandOffError(f"{variable}={value!r} is not a file descriptor")
    fd = int(value)
    try:
        target = str(Path(f"/proc/self/fd/{fd}").readlink())
    except OSError:
        raise HandOffError(f"{variable}: descriptor {fd} is not open") from None
    if not target.startswith(f"/memfd:{name}"):
        raise HandOffError(f"{variable}: descriptor {fd} is not the hand-over")
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise HandOffError(f"{variable}: {size} bytes is too large")
        return os.pread(fd, size, 0)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def exec_supervisor(
    launch: Launch, *, environ: Mapping[str, str], executable: str, argv: list[str]
) -> OSError:
    """Exec ``argv`` (``ospool-ep run`` again) with ``launch`` in a memfd; returns only on error."""
    fd = -1
    try:
        fd = memfd_holding(MEMFD_NAME, launch.to_json().encode())
        os.set_inheritable(launch.lock_fd, True)
        environment = {**environ, LAUNCH_FD_VARIABLE: str(fd)}
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(executable, argv, environment)  # noqa: S606 - ourselves, lighter
    except OSError as error:
        if fd >= 0:
            os.close(fd)
        return error
    raise AssertionError("unreachable: execve returned without an error")  # pragma: no cover


def take_launch(environ: MutableMapping[str, str]) -> Launch | None:
    """The launch handed over by :func:`exec_supervisor`, if any; the memfd is closed and
    the variable removed from ``environ``. Raises :class:`HandOffError` when it is not ours."""
    data = take_memfd(environ, LAUNCH_FD_VARIABLE, name=MEMFD_NAME, limit=MAX_LAUNCH_BYTES)
    if data is None:
        return None
    text = data.decode()
    launch = Launch.from_json(text)
    os.set_inheritable(launch.lock_fd, False)  # condor_master must not hold our lock
    return launch
