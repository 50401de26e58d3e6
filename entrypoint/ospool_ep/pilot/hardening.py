"""Hardening: keep the supervisor's own process unreadable by what shares its uid (SPEC 7.5).

Jobs run as the pilot's uid, so without these measures any job could read the
supervisor's memory and environment. Both are taken first thing in ``ospool-ep run``:

- **not dumpable** (``prctl(PR_SET_DUMPABLE, 0)``): processes of the same uid can
  no longer open ``/proc/<pid>/environ``, ``mem`` or ``fd/``, nor ptrace it
  (proc(5), "PR_SET_DUMPABLE" in prctl(2)). ``stat``, ``status`` and ``cmdline``
  stay world-readable, so ``health`` and ``drain`` still work. ``execve`` resets
  the flag, so the daemons it starts are unaffected (and are not protected by it);
- **no TOKEN in /proc/<pid>/environ**: that file shows the environment the
  process was exec'd with, whatever ``os.environ`` says later. A supervisor
  given ``TOKEN`` therefore execs itself again, keeping its pid, without it; the
  text travels in a sealed memfd whose number is in :data:`TOKEN_FD_VARIABLE`.

Between an exec and the prctl (the interpreter's start, some 20 ms) the process
is dumpable: at container start no job runs yet, and on a batch node the
processes of the same uid are the user's own, who set TOKEN in the first place.
Not dumpable also means no core dump (which would hold the token).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ospool_ep.pilot import handoff

if TYPE_CHECKING:
    from ospool_ep.pilot.logs import Level

TOKEN_VARIABLE = "TOKEN"  # noqa: S105 - a variable name, not a secret
TOKEN_FD_VARIABLE = "OSPOOL_EP_TOKEN_FD"  # noqa: S105 - a variable name
"""Names the inherited memfd holding the token text; set only by :func:`exec_without_token`."""
MEMFD_NAME = "ospool-ep-token"
MAX_TOKEN_BYTES = 1 << 20
"""Far above any real token file (a few KiB); a bound on what we read."""
_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


class HandOverError(Exception):
    """The token hand-over variable is set but names no memfd of ours."""


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    # unsigned long arguments: a bare Python int would pass a C int, whose upper
    # register half the kernel may read as garbage (it then answers EINVAL).
    zero = ctypes.c_ulong(0)
    result = int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), zero, zero, zero))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def make_undumpable() -> str | None:
    """Clear this process's dumpable flag; the reason, when that could not be done."""
    try:
        _prctl(_PR_SET_DUMPABLE, 0)
    except (OSError, AttributeError) as error:  # AttributeError: a libc without prctl
        return str(error)
    return None


def is_dumpable() -> bool:
    return _prctl(_PR_GET_DUMPABLE, 0) != 0


def exec_without_token(
    environ: Mapping[str, str], *, executable: str, argv: Sequence[str]
) -> OSError:
    """Exec ``executable argv`` with ``environ`` minus TOKEN, the text handed over in a memfd.

    On success this never returns (same pid, fresh environment). It returns the
    error when the exec was impossible; this process is then unchanged.
    """
    fd = -1
    try:
        fd = handoff.memfd_holding(MEMFD_NAME, environ[TOKEN_VARIABLE].encode(), sealed=True)
        environment = {k: v for k, v in environ.items() if k != TOKEN_VARIABLE}
        environment[TOKEN_FD_VARIABLE] = str(fd)
        os.execve(executable, list(argv), environment)  # noqa: S606 - ourselves, again
    except OSError as error:
        if fd >= 0:
            os.close(fd)
        return error
    raise AssertionError("unreachable: execve returned without an error")  # pragma: no cover


def take_token(environ: MutableMapping[str, str]) -> str | None:
    """The token text handed over by :func:`exec_without_token`, if any; the fd is closed.

    The variable is removed from ``environ`` (so no child inherits it). Raises
    :class:`HandOverError` when it names anything but our memfd.
    """
    try:
        data = handoff.take_memfd(
            environ, TOKEN_FD_VARIABLE, name=MEMFD_NAME, limit=MAX_TOKEN_BYTES
        )
    except handoff.HandOffError as error:
        raise HandOverError(str(error).replace("the hand-over", "the token hand-over")) from None
    if data is None:
        return None
    return data.decode(errors="replace")


@dataclass(frozen=True)
class Problem:
    level: Level
    message: str
    fields: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Hardened:
    token: str | None
    """TOKEN's text, no longer in ``os.environ``: handed over from before the re-exec,
    or taken out when the exec was impossible. None: there was none, or it was left in
    the environment (``may_exec`` false)."""
    problems: tuple[Problem, ...]
    """What could not be done, to report once the pilot logs."""


def harden(*, may_exec: bool) -> Hardened:
    """Make this process undumpable and, when TOKEN is set, exec it again without it.

    ``may_exec``: this process was started for ``ospool-ep run`` (``sys.orig_argv``
    runs it again); never true inside another program (a test calling the CLI).
    When the exec is impossible the pilot runs on with a warning: its environment
    is still out of reach of other processes of its uid (not dumpable), only root
    could read it, and refusing to start would turn defence in depth into an outage.
    """
    problems: list[Problem] = []
    not_undumpable = make_undumpable()
    try:
        token = take_token(os.environ)
    except HandOverError as error:
        token = None
        problems.append(Problem("error", f"TOKEN was not handed over: {error}"))
    if os.environ.get(TOKEN_VARIABLE) and may_exec:
        failed = exec_without_token(os.environ, executable=sys.executable, argv=sys.orig_argv)
        # Still here: at least no process we start with the default environment gets it.
        token = os.environ.pop(TOKEN_VARIABLE)
        problems.append(
            Problem(
                "warning",
                "TOKEN stays in this process's initial environment: cannot exec again without it",
                {"error": str(failed)},
            )
        )
    if not_undumpable is not None:
        problems.append(
            Problem(
                "warning",
                "the supervisor stays dumpable: processes of its uid could read its memory",
                {"error": not_undumpable},
            )
        )
    return Hardened(token=token, problems=tuple(problems))
