"""A short-lived helper process the supervisor runs without waiting for it.

The supervisor's loop must never block (signals, log pumping), so a helper is spawned,
its stdout sent to a file, and its end learnt from the supervisor's reaper
(:meth:`BoundedChild.collect` with the pid and exit status it reaped). One at a time;
killed, with its process group, once past ``timeout``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT_BYTES = 4 * 1024 * 1024


@dataclass
class BoundedChild:
    command: Sequence[str]
    environment: Mapping[str, str]
    output: Path
    clock: Callable[[], float]
    timeout: float = 60.0
    niceness: int = 0
    """Added to the child's nice value: background work yields to the daemons."""
    pid: int | None = None
    deadline: float = 0.0
    killed: bool = False

    def start(self) -> None:
        if self.pid is not None:
            return
        self.output.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW  # no CLOEXEC: it is stdout
        self.pid = os.posix_spawn(
            self.command[0],
            list(self.command),
            dict(self.environment),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(self.output), flags, 0o600),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
            setpgroup=0,
            # The supervisor blocks the signals it waits for; a child must not inherit that.
            setsigmask=(),
            setsigdef=tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}),
        )
        lower_priority(self.pid, self.niceness)
        self.deadline = self.clock() + self.timeout
        self.killed = False

    def running(self) -> bool:
        return self.pid is not None

    def expire(self, now: float) -> None:
        if self.pid is not None and not self.killed and now >= self.deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.killed = True

    def collect(self, pid: int, status: int) -> tuple[int | None, bytes] | None:
        """None when ``pid`` is not ours; else (exit status, or None if killed; stdout)."""
        if pid != self.pid:
            return None
        self.pid = None
        if self.killed:
            return None, b""
        return status, read_bounded(self.output)

    def stop(self) -> None:
        """Kill a child still running (the pilot is ending); the reaper collects it."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.killed = True


def lower_priority(pid: int, niceness: int) -> None:
    """Best effort: raising a child's nice value needs no privilege; it may be gone."""
    if niceness > 0:
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
            )


def read_bounded(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, OUTPUT_LIMIT_BYTES + 1)[:OUTPUT_LIMIT_BYTES]
    except OSError:
        return b""
    finally:
        os.close(fd)
