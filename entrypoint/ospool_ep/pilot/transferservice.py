"""The supervisor's care of the pilot's transfer service (:mod:`ospool_ep.transfer.service`).

Started with the pilot when the OSDF plugin is there, restarted after it ends (1, 2, 4 ...
up to 60 s later), stopped with the pilot. While it is away the plugin does its work in
its own process, only slower, so nothing waits for it. Its stderr goes to a file beside
its socket, not to the pilot's log stream (a traceback there would break JSON logs); the
warning that it ended quotes that file's last line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.pilot.child import lower_priority
from ospool_ep.transfer.client import SOCKET_VARIABLE

Event = Callable[..., None]
MAX_SOCKET_PATH = 100
"""sun_path holds 108 bytes; a longer PILOT_DIR means no service (the plugin works alone)."""
MAX_BACKOFF_SECONDS = 60.0
STDERR_NAME = "transfer-service.err"
STDERR_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
"""Truncated at each start; never through a link a job may have left at the name."""
MAX_QUOTED = 300
"""Characters of the service's last stderr line quoted in the warning."""
BACKGROUND_NICENESS = 10
"""Its start (importing pelicanfs, a CPU-second) yields to daemons and jobs; a transfer is
waiting on the network far more than on the CPU."""


def socket_for(run_dir: Path) -> Path | None:
    path = run_dir / "osdf.sock"
    return path if len(str(path)) <= MAX_SOCKET_PATH else None


@dataclass
class TransferService:
    environment: Mapping[str, str]
    clock: Callable[[], float]
    event: Event
    python: str = sys.executable
    pid: int | None = None
    failures: int = 0
    next_start: float = 0.0
    stopping: bool = False

    @property
    def socket(self) -> str:
        return self.environment[SOCKET_VARIABLE]

    @property
    def stderr(self) -> Path:
        return Path(self.socket).with_name(STDERR_NAME)

    def command(self) -> list[str]:
        return [self.python, "-I", "-m", "ospool_ep.transfer.service", "--socket", self.socket]

    def last_words(self) -> str:
        """The last line the service wrote to stderr (a traceback's is its exception)."""
        try:
            with self.stderr.open("rb") as stream:
                stream.seek(max(0, stream.seek(0, os.SEEK_END) - 4096))
                tail = stream.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        said = "".join(c if c.isprintable() else "?" for c in lines[-1]) if lines else ""
        return said if len(said) <= MAX_QUOTED else said[: MAX_QUOTED - 3] + "..."

    def tick(self) -> None:
        if self.pid is None and not self.stopping and self.clock() >= self.next_start:
            try:
                self.pid = os.posix_spawn(
                    self.python,
                    self.command(),
                    dict(self.environment),
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 2, str(self.stderr), STDERR_FLAGS, 0o600),
                    ],
                    setpgroup=0,
                    # The supervisor blocks the signals it waits for; the child must not.
                    setsigmask=(),
                    setsigdef=tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}),
                )
                lower_priority(self.pid, BACKGROUND_NICENESS)
            except OSError as error:
                self.ended(f"could not start: {error}")

    def child_exited(self, pid: int, status: int) -> bool:
        if pid != self.pid:
            return False
        self.pid = None
        if not self.stopping:
            code = os.waitstatus_to_exitcode(status)
            how = f"exit {code}" if code >= 0 else f"signal {-code}"
            said = self.last_words()
            self.ended(f"{how}: {said}" if said else how)
        return True

    def ended(self, how: str) -> None:
        delay = min(MAX_BACKOFF_SECONDS, 2.0**self.failures)
        self.failures += 1
        self.next_start = self.clock() + delay
        self.event(
            "warning",
            f"OSDF transfer service ended ({how}): restarting in {delay:g} s; "
            "the plugin works without it meanwhile",
        )

    def stop(self) -> None:
        self.stopping = True
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
