"""Supervise: the PID-1 loop that runs condor_master and walks the shutdown ladder (SPEC 7).

Signals are handled synchronously (STYLE 5): they are blocked, then waited
for with ``sigtimedwait`` in one loop that also reaps every child, pumps the
daemon logs and runs periodic work. The master gets a clean signal mask and
its own process group, so only this loop decides what it is told.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ospool_ep.exitcodes import ExitCode
from ospool_ep.pilot.lifecycle import Action, Event, State, step, stop_was_requested
from ospool_ep.pilot.logs import Level
from ospool_ep.pilot.procfs import cmdline, descendants, descends_from, named_below

WAITED_SIGNALS = frozenset(
    {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD}
)
LOOP_SECONDS = 1.0
"""Longest sleep between log pumps; signals and child exits wake the loop at once.
Each wake-up costs about 0.4 ms of CPU (measured in the image), so 1 s keeps an
idle pilot well inside SPEC 14's 0.5 s per 10 minutes; logs lag at most 1 s."""
KILL_MARGIN_SECONDS = 1.5
"""The last resort SIGKILL comes this long before the orchestrator's own."""
IDLE_STOP_SECONDS = 2.0
"""An idle pilot's master normally ends its shutdown in about a second. One still there
after this, with no job running, is blocked in its own shutdown (measured: 20 s, the
security-negotiation timeout, against a collector that accepts and never answers) and
is killed: no job is lost, and SPEC 7.2 wants an idle pilot gone within 3 s."""
_PR_SET_CHILD_SUBREAPER = 36


def starter_running(master_pid: int) -> bool:
    """A job runs when a condor_starter runs below the master (one per running job).

    ``condor_starter -classad`` is not a job: the startd runs it at start and on
    every reconfig (the drain's own) to learn what the starter can do.
    """
    return any("-classad" not in cmdline(pid) for pid in named_below(master_pid, "condor_starter"))


def block_signals() -> None:
    """Block the waited signals in this thread; threads started later inherit the mask.

    Call before starting any thread: a thread with the signals unblocked would
    take a SIGTERM with its default action and kill the pilot outright.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)


def signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:  # real-time signals have no name
        return str(signo)


class Hooks(Protocol):
    """What the supervisor needs from the rest of the pilot."""

    def prepare_drain(self, *, deadline: float) -> None:
        """Make the startd refuse new jobs and retire running ones by ``deadline`` (epoch)."""

    def reload(self) -> bool:
        """SIGHUP: re-validate inputs and re-render. True: the master should reconfigure."""

    def tick(self, *, state: State, master_pid: int | None) -> bool:
        """Periodic work (log pumping excluded). True: the master should reconfigure."""

    def event(self, level: Level, msg: str, **fields: object) -> None:
        """Report a supervisor event."""


@dataclass
class Outcome:
    code: ExitCode
    reason: str
    ending: Ending


class Ending(enum.Enum):
    """How the pilot's life ended: what the caller decides on, never the reason's words."""

    NOT_STARTED = "stopped before condor_master started"
    REQUESTED = "stopped on request"
    """SIGTERM, SIGINT, SIGQUIT or `ospool-ep drain`."""
    MASTER_DONE = "condor_master shut down by itself"
    """Exit 0 on its own: retired, idled out (STARTD_NOCLAIM_SHUTDOWN) or told by the pool."""
    MASTER_FAILED = "condor_master ended abnormally"


@dataclass
class Supervisor:
    command: Sequence[str]
    environment: dict[str, str]
    grace_seconds: int
    drain_seconds: int
    hooks: Hooks
    pump_logs: Callable[[], object] = lambda: None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    state: State = State.STARTING
    master_pid: int | None = None
    master_status: int | None = None
    history: list[Event] = field(default_factory=list)
    drain_deadline: float | None = None
    kill_deadline: float | None = None
    resolve_master: Callable[[int], int | None] | None = None
    """When ``command`` only launches the master (cvmfsexec: its own PID namespace, whose
    init ignores SIGTERM), this finds the real master below the launched process;
    signals go there, and to the launched process only while there is none yet."""
    jobs_running: Callable[[int], bool] = starter_running
    """Whether any job runs below the master (given its pid): decides the idle stop."""
    idle_stop_deadline: float | None = None
    sender_below: Callable[[int, int], bool | None] = descends_from
    """Whether a signal's sender (pid) is in the tree below the supervisor (pid)."""
    child_exited: Callable[[int, int], object] = lambda pid, status: None
    """Told of every reaped child that is not the master (pid, wait status): the PID-1
    reaper takes them all, so a helper the pilot started learns its end only here."""

    def run(self) -> Outcome:
        block_signals()
        _become_subreaper()
        self.master_pid = self._spawn()
        self._handle(Event.MASTER_STARTED)
        self.hooks.event("info", "condor_master started", pid=self.master_pid)
        while not self._stopped():
            info = signal.sigtimedwait(WAITED_SIGNALS, self._sleep_seconds())
            if info is not None and self._trusted(info):
                self._on_signal(info.si_signo)
            self._reap()
            self._check_deadlines()
            self.pump_logs()
            reconfigure = not self._stopped() and self.hooks.tick(
                state=self.state, master_pid=self._master_target()
            )
            if reconfigure:
                self._signal_master(signal.SIGHUP)
        self._kill_leftovers()
        return self._outcome()

    def _stopped(self) -> bool:
        return self.state is State.STOPPED

    # -- events -------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        transition = step(self.state, event)
        self.history.append(event)
        if transition.to is not self.state:
            self.hooks.event(
                "info", f"{self.state.value} -> {transition.to.value}", cause=event.value
            )
        self.state = transition.to
        for action in transition.actions:
            self._perform(action)

    def _trusted(self, info: signal.struct_siginfo) -> bool:
        """SPEC 7.5: act only on signals from outside this process tree.

        Jobs (and, should one go astray, the daemons) are all below the supervisor:
        it is PID 1 or their subreaper, so even a job that detaches is reparented
        to it. A signal from below is ignored and said so; one from outside the
        PID namespace (si_pid 0: `docker stop`, the kubelet, systemd), or from an
        ``exec`` session such as ``ospool-ep drain``, is acted on. A sender that is
        gone before it could be traced is not trusted: ``ospool-ep drain`` waits for
        the answer, so only a fire-and-forget ``kill`` from inside is lost.
        """
        if info.si_signo == signal.SIGCHLD or info.si_pid <= 0:
            return True
        below = self.sender_below(info.si_pid, os.getpid())
        if below is False:
            return True
        self.hooks.event(
            "warning",
            f"ignored {signal_name(info.si_signo)} from pid {info.si_pid}: "
            + (
                "a process of the pilot's own tree (a job?)"
                if below
                else "a sender that was gone before it could be traced"
            )
            + "; stop the pilot from outside (docker/podman stop, kubectl delete, systemctl stop)"
            " or with `ospool-ep drain`",
            signal=signal_name(info.si_signo),
            sender=info.si_pid,
        )
        return False

    def _on_signal(self, signo: int) -> None:
        if signo in (signal.SIGTERM, signal.SIGINT):
            self._handle(Event.TERMINATE)
        elif signo == signal.SIGQUIT:
            self._handle(Event.FAST)
        elif signo == signal.SIGHUP and self.hooks.reload():
            self._signal_master(signal.SIGHUP)

    def _check_deadlines(self) -> None:
        now = self.clock()
        if self.drain_deadline is not None and now >= self.drain_deadline:
            self.drain_deadline = None
            self._handle(Event.DRAIN_DEADLINE)
        if self.kill_deadline is not None and now >= self.kill_deadline:
            self.kill_deadline = None
            self._handle(Event.KILL_DEADLINE)
        if self.idle_stop_deadline is not None and now >= self.idle_stop_deadline:
            self.idle_stop_deadline = None
            master = self._master_target()
            if master is not None and not self.jobs_running(master):
                self.hooks.event(
                    "warning",
                    f"condor_master has not finished its shutdown {IDLE_STOP_SECONDS:g} s after"
                    " the stop request and no job is running: stopping it now",
                )
                self._handle(Event.IDLE_STOP_OVERDUE)

    def _sleep_seconds(self) -> float:
        deadlines = [
            d
            for d in (self.drain_deadline, self.kill_deadline, self.idle_stop_deadline)
            if d is not None
        ]
        until = min(deadlines, default=self.clock() + LOOP_SECONDS) - self.clock()
        return max(0.0, min(LOOP_SECONDS, until))

    # -- actions ------------------------------------------------------------

    def _perform(self, action: Action) -> None:
        now = self.clock()
        if action is Action.DRAIN:
            self.drain_deadline = now + self.drain_seconds
            self.kill_deadline = now + max(0.0, self.grace_seconds - KILL_MARGIN_SECONDS)
            self.idle_stop_deadline = now + IDLE_STOP_SECONDS
            self.hooks.prepare_drain(deadline=self.wall_clock() + self.drain_seconds)
            self.hooks.event(
                "info",
                "draining: no new jobs; running jobs may finish",
                seconds=self.drain_seconds,
            )
            # Reconfigure first so the startd reads START = False and the
            # shortened retirement, then ask for a graceful shutdown.
            self._signal_master(signal.SIGHUP)
            self._signal_master(signal.SIGTERM)
        elif action is Action.FAST_SHUTDOWN:
            self.drain_deadline = None
            if self.kill_deadline is None:
                self.kill_deadline = now + max(5.0, self.grace_seconds - KILL_MARGIN_SECONDS)
            if self.idle_stop_deadline is None:
                self.idle_stop_deadline = now + IDLE_STOP_SECONDS
            self.hooks.event("info", "fast shutdown: evicting running jobs back to their queues")
            self._signal_master(signal.SIGQUIT)
        elif action is Action.KILL:
            self.hooks.event("warning", "condor_master did not stop in time: killing it")
            self._kill_everything()

    def _master_target(self) -> int | None:
        if self.master_pid is None or self.master_status is not None:
            return None
        if self.resolve_master is None:
            return self.master_pid
        return self.resolve_master(self.master_pid) or self.master_pid

    def _signal_master(self, signo: int) -> None:
        target = self._master_target()
        if target is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signo)

    def _kill_leftovers(self) -> None:
        """Daemons or jobs that outlived the master (it died abnormally) go with it.

        In a container the kernel would do this when PID 1 exits; in a batch job
        or on a bare host nobody else would.
        """
        leftovers = descendants(os.getpid())
        if leftovers:
            self.hooks.event("warning", f"killing {len(leftovers)} processes left behind")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = self.clock() + 5
        while leftovers and self.clock() < deadline:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            leftovers = [p for p in leftovers if p != pid]

    def _kill_everything(self) -> None:
        if self.master_pid is None:
            return
        for pid in [self.master_pid, *descendants(self.master_pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- processes ----------------------------------------------------------

    def _spawn(self) -> int:
        return os.posix_spawn(
            self.command[0],
            list(self.command),
            self.environment,
            setpgroup=0,
            setsigmask=(),
            # Every catchable signal back to its default: Python ignores SIGPIPE
            # and SIGXFSZ, and a parent (nohup) may have ignored others.
            setsigdef=tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}),
        )

    def _reap(self) -> None:
        """Collect every exited child: the master, and orphans we inherited as PID 1."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.master_pid:
                self.master_status = status
                self._handle(Event.MASTER_EXITED)
            else:
                self.child_exited(pid, status)

    def _outcome(self) -> Outcome:
        status = self.master_status
        requested = stop_was_requested(tuple(self.history))
        if status is None:
            return Outcome(ExitCode.OK, "stopped before condor_master started", Ending.NOT_STARTED)
        if os.WIFSIGNALED(status):
            how = f"condor_master was killed by signal {signal_name(os.WTERMSIG(status))}"
        else:
            how = f"condor_master exited with status {os.WEXITSTATUS(status)}"
        if requested:
            return Outcome(ExitCode.OK, f"stopped on request ({how})", Ending.REQUESTED)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return Outcome(
                ExitCode.OK,
                "condor_master shut down (retired, idle or told by the pool)",
                Ending.MASTER_DONE,
            )
        return Outcome(ExitCode.SOFTWARE, f"{how} unexpectedly", Ending.MASTER_FAILED)


def _become_subreaper() -> None:
    """Outside a container (batch job, bare host) we are not PID 1: adopt orphans anyway."""
    if os.getpid() == 1:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
