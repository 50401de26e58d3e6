"""State file: what the running supervisor publishes for `health` and `drain` (SPEC 7.5).

A small JSON document, replaced atomically, readable by any uid (it holds no
secrets). Default ``/tmp/ospool-ep/state.json`` (the container's own /tmp);
``OSPOOL_EP_STATE_FILE`` moves it, e.g. for several pilots on one batch node.

It is trusted only where no one else could have written it ("state it trusts
lives where only it can write"): the publisher refuses a directory that is a
symlink or another uid's (root's sticky /tmp excepted), and the readers refuse
a file or directory that is not their own uid's or root's, is a symlink, or
that others could write to (a sticky directory such as /tmp excepted: there
nobody else can replace our file). ``drain`` checks further that the pid it
signals is that supervisor (:func:`verify_supervisor`).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ospool_ep.pilot import procfs

DEFAULT_PATH = Path("/tmp/ospool-ep/state.json")  # noqa: S108 - checked before use, no secrets
MAX_BYTES = 64 * 1024
"""A state is a few hundred bytes; a bound on what a reader takes in."""


def state_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("OSPOOL_EP_STATE_FILE") or DEFAULT_PATH)


@dataclass(frozen=True, kw_only=True)
class PublishedState:
    supervisor_pid: int
    master_pid: int | None
    state: str
    name: str
    ready: bool
    """This pilot's slot was seen in the collector at ``ready_checked``."""
    ready_checked: float | None
    updated: float
    supervisor_started: int | None = None
    """The supervisor's start time, /proc/<pid>/stat field 22 (clock ticks after boot):
    with the pid it names one process for good, even after the pid is reused.
    Filled in by :func:`publish`; None in files written before it existed."""


class UntrustedStateError(OSError):
    """The state file or its directory could have been written by someone else."""


# -- trust -----------------------------------------------------------------------


def _check(st: os.stat_result, what: str, *, owners: tuple[int, ...]) -> None:
    """Raise :class:`UntrustedStateError` unless ``st`` (of ``what``) is owned by one of
    ``owners`` and nobody else can write to it."""
    if st.st_uid not in owners:
        names = " or ".join(f"uid {uid}" for uid in owners)
        raise UntrustedStateError(f"{what} is owned by uid {st.st_uid}, not {names}")
    sticky_directory = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_directory:
        raise UntrustedStateError(
            f"{what} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
        )


def _open_directory(path: Path) -> int:
    """An fd of directory ``path`` itself (never of what a symlink there points to)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
            raise UntrustedStateError(f"{path} is a symlink") from None
        raise


# -- publishing --------------------------------------------------------------------


def _own_directory(path: Path) -> int:
    """Make (0755) or open the state directory, refusing one that is not ours."""
    if path.is_symlink():  # even a dangling one: mkdir would only say "exists"
        raise UntrustedStateError(f"{path} is a symlink: not publishing state there")
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = _open_directory(path)
    try:
        st = os.fstat(fd)
        euid = os.geteuid()
        sticky = bool(st.st_mode & stat.S_ISVTX)
        # A root-owned sticky directory (/tmp itself, as the Slurm script may use):
        # nobody else can replace or remove a file of ours there.
        if st.st_uid != euid and not (st.st_uid == 0 and sticky):
            raise UntrustedStateError(
                f"{path} is owned by uid {st.st_uid}, not this pilot's uid {euid}: not "
                "publishing state there (remove it, or set OSPOOL_EP_STATE_FILE elsewhere)"
            )
        writable = stat.S_IWGRP | stat.S_IWOTH
        if st.st_mode & writable and not sticky:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~writable)  # ours: so tighten it
    except BaseException:
        os.close(fd)
        raise
    return fd


trusted_directory = _own_directory
"""For what else the pilot publishes beside its state (prepare.publish_live_config)."""


def publish(path: Path, published: PublishedState) -> None:
    """Replace ``path`` atomically with ``published`` (0644). Raises OSError.

    Raises :class:`UntrustedStateError` (an OSError) when the directory is a
    symlink or another uid's. The supervisor's start time is added when missing.
    """
    if published.supervisor_started is None and published.supervisor_pid == os.getpid():
        published = replace(published, supervisor_started=procfs.start_time(os.getpid()))
    directory = _own_directory(path.parent)
    temporary = f".state-{secrets.token_hex(8)}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o644, dir_fd=directory)
        try:
            os.fchmod(fd, 0o644)  # whatever the umask
            os.write(fd, json.dumps(asdict(published)).encode())
        finally:
            os.close(fd)
        # rename() replaces a symlink at ``path`` itself, never its target.
        os.rename(temporary, path.name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
    finally:
        os.close(directory)


# -- reading -----------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """What a reader found at the state path."""

    state: PublishedState | None
    """None: no (valid) state file, or one not trusted."""
    owner: int | None = None
    """The file's uid."""
    distrust: str | None = None
    """Why the file is not trusted (then ``state`` is None), in words."""


def load(path: Path) -> Loaded:
    """Read the state at ``path`` if this uid can trust it; never raises, never blocks."""
    try:
        fd, st = _open_trusted(path, owners=tuple(dict.fromkeys((os.geteuid(), 0))))
    except UntrustedStateError as error:
        return Loaded(None, distrust=f"state file {path} not trusted: {error}")
    except OSError:
        return Loaded(None)
    try:
        text = os.read(fd, MAX_BYTES)
    except OSError:
        return Loaded(None)
    finally:
        os.close(fd)
    return Loaded(_parse(text), owner=st.st_uid)


def _open_trusted(path: Path, *, owners: tuple[int, ...]) -> tuple[int, os.stat_result]:
    directory = _open_directory(path.parent)
    try:
        _check(os.fstat(directory), f"its directory {path.parent}", owners=owners)
        try:
            # O_NONBLOCK: a FIFO planted there must not hang the probe.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(path.name, flags, dir_fd=directory)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UntrustedStateError("it is a symlink") from None
            raise
    finally:
        os.close(directory)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedStateError("it is not a regular file")
        _check(st, "it", owners=owners)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _parse(text: bytes) -> PublishedState | None:
    try:
        data = json.loads(text)
        return PublishedState(**data)
    except (ValueError, TypeError):
        return None


def read(path: Path) -> PublishedState | None:
    """The trusted state at ``path``, else None (see :func:`load` for why)."""
    return load(path).state


def withdraw(path: Path, *, supervisor_pid: int) -> None:
    """Remove the file if it is still ours (another pilot may have replaced it)."""
    current = read(path)
    if current is not None and current.supervisor_pid == supervisor_pid:
        path.unlink(missing_ok=True)


# -- the writer ----------------------------------------------------------------------

SUPERVISOR_MODULES = ("ospool_ep", "ospool_ep.cli")


def is_supervisor_command(argv: tuple[str, ...]) -> bool:
    """``[python] .../ospool-ep run`` or ``python [opts] -m ospool_ep run``."""
    if len(argv) < 2 or argv[-1] != "run":
        return False
    head = argv[:-1]
    if any(Path(arg).name == "ospool-ep" for arg in head):
        return True
    modules = {b for a, b in itertools.pairwise(head) if a == "-m"}
    modules |= {a.removeprefix("-m") for a in head if a.startswith("-m")}
    return bool(modules & set(SUPERVISOR_MODULES))


def verify_supervisor(loaded: Loaded) -> str | None:  # noqa: PLR0911 - one per check
    """Why the pid in ``loaded`` is not (verifiably) the supervisor that wrote it, or None.

    It must run as the file's owner, be an ``ospool-ep run``, and have started
    when the state says: a reused pid, or a state file naming someone else's
    process, fails one of these.
    """
    published = loaded.state
    if published is None:
        return "no state"
    pid = published.supervisor_pid
    if published.supervisor_started is None:
        return (
            f"the state file names pid {pid} without its start time (written by an older "
            "ospool-ep?): cannot tell that pid is still the pilot"
        )
    found = procfs.read(pid)
    if found is None or found.state == "Z":
        return f"the supervisor (pid {pid}) is gone"
    if procfs.start_time(pid) != published.supervisor_started:
        return f"pid {pid} is not the supervisor that wrote the state (it started at another time)"
    uids = procfs.uids(pid)
    if not uids or set(uids) != {loaded.owner}:
        return f"pid {pid} does not run as the state file's owner (uid {loaded.owner})"
    if not is_supervisor_command(procfs.cmdline(pid)):
        return f"pid {pid} is not an `ospool-ep run` process"
    return None
