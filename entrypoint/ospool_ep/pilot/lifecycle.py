"""Lifecycle: the pilot's states, the events that move it and the actions each move takes.

A pure transition table (STYLE 6): the supervisor feeds it events and carries
out the actions it returns; every transition is tested from the table itself.
The shutdown ladder is drain -> fast -> kill, each rung with its own deadline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    STARTING = "starting"
    """Validated and rendered; condor_master not started yet."""
    RUNNING = "running"
    DRAINING = "draining"
    """No new jobs; running jobs may finish until the drain deadline."""
    STOPPING = "stopping"
    """Fast shutdown asked for: jobs are evicted (they go back to the queue)."""
    STOPPED = "stopped"
    """condor_master has exited and been reaped."""


class Event(enum.Enum):
    MASTER_STARTED = "master started"
    TERMINATE = "terminate"
    """SIGTERM or SIGINT, or `ospool-ep drain`."""
    FAST = "fast"
    """SIGQUIT, or `ospool-ep drain --fast`."""
    DRAIN_DEADLINE = "drain deadline"
    KILL_DEADLINE = "kill deadline"
    IDLE_STOP_OVERDUE = "idle stop overdue"
    """Asked to stop, no job running, and condor_master still there after IDLE_STOP_SECONDS
    (it blocks in its own shutdown, e.g. invalidating its ad at a silent collector)."""
    MASTER_EXITED = "master exited"


class Action(enum.Enum):
    DRAIN = "drain"
    """Stop accepting jobs at once; graceful shutdown with retirement until the drain deadline."""
    FAST_SHUTDOWN = "fast shutdown"
    """condor_master's fast shutdown: running jobs are evicted and requeued by their schedd."""
    KILL = "kill"
    """SIGKILL to everything the pilot started, just before the orchestrator's own."""
    FINISH = "finish"
    """Leave the loop: clean up and exit."""


@dataclass(frozen=True, slots=True)
class Transition:
    to: State
    actions: tuple[Action, ...] = ()


S, E, A = State, Event, Action
TRANSITIONS: dict[tuple[State, Event], Transition] = {
    (S.STARTING, E.MASTER_STARTED): Transition(S.RUNNING),
    (S.STARTING, E.TERMINATE): Transition(S.STOPPED, (A.FINISH,)),
    (S.STARTING, E.FAST): Transition(S.STOPPED, (A.FINISH,)),
    (S.RUNNING, E.TERMINATE): Transition(S.DRAINING, (A.DRAIN,)),
    (S.RUNNING, E.FAST): Transition(S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.RUNNING, E.MASTER_EXITED): Transition(S.STOPPED, (A.FINISH,)),
    # A second SIGTERM means "now" (SPEC 7.2).
    (S.DRAINING, E.TERMINATE): Transition(S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.DRAINING, E.FAST): Transition(S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.DRAINING, E.DRAIN_DEADLINE): Transition(S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.DRAINING, E.KILL_DEADLINE): Transition(S.STOPPING, (A.KILL,)),
    (S.DRAINING, E.MASTER_EXITED): Transition(S.STOPPED, (A.FINISH,)),
    # Nothing to lose when no job runs: an idle pilot stops in seconds (SPEC 7.2).
    (S.DRAINING, E.IDLE_STOP_OVERDUE): Transition(S.STOPPING, (A.KILL,)),
    (S.STOPPING, E.IDLE_STOP_OVERDUE): Transition(S.STOPPING, (A.KILL,)),
    (S.STOPPING, E.KILL_DEADLINE): Transition(S.STOPPING, (A.KILL,)),
    (S.STOPPING, E.MASTER_EXITED): Transition(S.STOPPED, (A.FINISH,)),
}


def step(state: State, event: Event) -> Transition:
    """The transition for ``event`` in ``state``; events that do not apply change nothing."""
    return TRANSITIONS.get((state, event), Transition(state))


def stop_was_requested(history: tuple[Event, ...]) -> bool:
    """Whether someone asked the pilot to stop (then its ending is normal, exit 0)."""
    return any(event in (Event.TERMINATE, Event.FAST) for event in history)
