"""The pilot's lifecycle table: every (state, event) pair, the shutdown ladder, and who asked to
stop.

The expected table below is written out by hand from SPEC 7.2, not derived
from ``lifecycle.TRANSITIONS``: a change to the product's table has to be a
change to this contract too.
"""

from __future__ import annotations

import itertools

import pytest

from ospool_ep.pilot.lifecycle import (
    TRANSITIONS,
    Action,
    Event,
    State,
    Transition,
    step,
    stop_was_requested,
)

S, E, A = State, Event, Action

EXPECTED: dict[tuple[State, Event], tuple[State, tuple[Action, ...]]] = {
    # Asked to stop before condor_master runs: nothing to drain, just leave.
    (S.STARTING, E.MASTER_STARTED): (S.RUNNING, ()),
    (S.STARTING, E.TERMINATE): (S.STOPPED, (A.FINISH,)),
    (S.STARTING, E.FAST): (S.STOPPED, (A.FINISH,)),
    # SIGTERM/SIGINT drain; SIGQUIT is fast shutdown; an unasked exit ends the pilot.
    (S.RUNNING, E.TERMINATE): (S.DRAINING, (A.DRAIN,)),
    (S.RUNNING, E.FAST): (S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.RUNNING, E.MASTER_EXITED): (S.STOPPED, (A.FINISH,)),
    # While draining: a second SIGTERM, a SIGQUIT or the drain deadline mean "now".
    (S.DRAINING, E.TERMINATE): (S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.DRAINING, E.FAST): (S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.DRAINING, E.DRAIN_DEADLINE): (S.STOPPING, (A.FAST_SHUTDOWN,)),
    (S.DRAINING, E.KILL_DEADLINE): (S.STOPPING, (A.KILL,)),
    (S.DRAINING, E.MASTER_EXITED): (S.STOPPED, (A.FINISH,)),
    # No job runs and the master is still there seconds after the request: kill it.
    (S.DRAINING, E.IDLE_STOP_OVERDUE): (S.STOPPING, (A.KILL,)),
    # Fast shutdown running: only the kill deadline, an overdue idle stop or the
    # master's exit move on.
    (S.STOPPING, E.IDLE_STOP_OVERDUE): (S.STOPPING, (A.KILL,)),
    (S.STOPPING, E.KILL_DEADLINE): (S.STOPPING, (A.KILL,)),
    (S.STOPPING, E.MASTER_EXITED): (S.STOPPED, (A.FINISH,)),
}

ALL_PAIRS = list(itertools.product(State, Event))


def pair_id(pair: tuple[State, Event]) -> str:
    state, event = pair
    return f"{state.name}-{event.name}"


def walk(state: State, events: list[Event]) -> tuple[State, list[Action]]:
    """Feed ``events`` to the table from ``state``: the final state and every action taken."""
    actions: list[Action] = []
    for event in events:
        transition = step(state, event)
        state = transition.to
        actions += transition.actions
    return state, actions


def test_the_product_table_is_exactly_the_expected_table() -> None:
    """No transition added, dropped or changed without this contract changing with it."""
    assert {pair: (t.to, t.actions) for pair, t in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=pair_id)
def test_every_state_and_event_pair_moves_as_the_table_says_or_not_at_all(
    pair: tuple[State, Event],
) -> None:
    """Listed pairs make their transition; every other pair changes nothing and does nothing."""
    state, event = pair
    to, actions = EXPECTED.get(pair, (state, ()))

    assert step(state, event) == Transition(to, actions)


@pytest.mark.parametrize("event", list(Event), ids=lambda e: e.name)
def test_stopped_is_final(event: Event) -> None:
    """Once condor_master has been reaped, nothing moves the pilot and nothing is done twice."""
    assert step(State.STOPPED, event) == Transition(State.STOPPED)


def test_finish_is_taken_exactly_when_the_pilot_reaches_stopped() -> None:
    """FINISH (leave the loop) and the STOPPED state always come together."""
    for (state, event), (to, actions) in EXPECTED.items():
        reaches_stopped = to is State.STOPPED and state is not State.STOPPED
        assert (Action.FINISH in actions) == reaches_stopped, (state, event)


@pytest.mark.parametrize(
    ("events", "final", "actions"),
    [
        pytest.param(
            [E.MASTER_STARTED, E.TERMINATE, E.DRAIN_DEADLINE, E.KILL_DEADLINE, E.MASTER_EXITED],
            S.STOPPED,
            [A.DRAIN, A.FAST_SHUTDOWN, A.KILL, A.FINISH],
            id="full-ladder-drain-fast-kill",
        ),
        pytest.param(
            [E.MASTER_STARTED, E.TERMINATE, E.MASTER_EXITED],
            S.STOPPED,
            [A.DRAIN, A.FINISH],
            id="drained-in-time",
        ),
        pytest.param(
            [E.MASTER_STARTED, E.TERMINATE, E.TERMINATE, E.TERMINATE, E.MASTER_EXITED],
            S.STOPPED,
            [A.DRAIN, A.FAST_SHUTDOWN, A.FINISH],
            id="second-sigterm-is-fast-third-changes-nothing",
        ),
        pytest.param(
            [E.MASTER_STARTED, E.FAST, E.FAST, E.TERMINATE, E.DRAIN_DEADLINE],
            S.STOPPING,
            [A.FAST_SHUTDOWN],
            id="fast-is-not-undone-by-a-later-sigterm",
        ),
        pytest.param(
            [E.MASTER_STARTED, E.TERMINATE, E.KILL_DEADLINE, E.KILL_DEADLINE, E.MASTER_EXITED],
            S.STOPPED,
            [A.DRAIN, A.KILL, A.KILL, A.FINISH],
            id="kill-deadline-before-drain-deadline-kills",
        ),
        pytest.param(
            [E.MASTER_STARTED, E.MASTER_EXITED, E.TERMINATE],
            S.STOPPED,
            [A.FINISH],
            id="master-exits-on-its-own",
        ),
        pytest.param(
            [E.TERMINATE, E.MASTER_STARTED],
            S.STOPPED,
            [A.FINISH],
            id="terminate-before-start",
        ),
    ],
)
def test_the_shutdown_ladder_walks_drain_then_fast_then_kill(
    events: list[Event], final: State, actions: list[Action]
) -> None:
    """Each rung comes once, in order; later signals never step back down the ladder."""
    assert walk(State.STARTING, events) == (final, actions)


@pytest.mark.parametrize(
    ("history", "requested"),
    [
        ((), False),
        ((E.MASTER_STARTED, E.MASTER_EXITED), False),
        ((E.MASTER_STARTED, E.DRAIN_DEADLINE, E.KILL_DEADLINE, E.MASTER_EXITED), False),
        ((E.MASTER_STARTED, E.TERMINATE, E.MASTER_EXITED), True),
        ((E.MASTER_STARTED, E.FAST, E.MASTER_EXITED), True),
        ((E.TERMINATE,), True),
        ((E.MASTER_STARTED, E.MASTER_EXITED, E.FAST), True),
    ],
    ids=["nothing", "unasked-exit", "deadlines-alone", "terminate", "fast", "only", "late"],
)
def test_a_stop_was_requested_exactly_when_terminate_or_fast_is_in_the_history(
    history: tuple[Event, ...], requested: bool
) -> None:
    """A requested stop makes any ending normal (exit 0); deadlines and exits are not requests."""
    assert stop_was_requested(history) is requested
