"""Readiness: is this pilot's slot in the pool's collector? Asked out of process (SPEC 7.5).

The PID-1 loop must never block. A query through the Python bindings holds the
interpreter lock for the whole round trip, so a collector that accepts a
connection and never answers froze the supervisor (SIGTERM unanswered, the
container SIGKILLed with its jobs). Each query is therefore a ``condor_status``
child with its output in a file: the loop starts it, the supervisor's reaper
reports its exit, and a query past its deadline is killed. Nothing here waits.

:class:`Observer` keeps what the last answer said (ready, the slot ads, jobs
seen) and decides when to ask again; :class:`Joiner` decides when asking can
find the slot (once the startd has sent its first update: nothing is asked
before) and when a pilot that the collector does not list should make its startd
advertise again (see JOIN_UNANNOUNCED_SECONDS).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ospool_ep.pilot.child import BoundedChild

QUERY_TIMEOUT_SECONDS = 20.0
"""A query still running after this is killed and counts as no answer."""
"""One pilot's slot ads are a few KiB; more is not an answer to our question."""
UNSEEN_INTERVALS = (2.0, 2.0, 3.0, 3.0, 5.0, 5.0, 8.0)
"""Seconds between queries while the slot is not seen, then 10 s: a join is noticed
within seconds without 20 starting pilots asking their collector ten times a second."""
UNSEEN_INTERVAL_LAST = 10.0
SEEN_INTERVAL = 60.0
"""Once seen: each query is an authenticated round trip, the largest part of the
supervisor's idle CPU; ``health --ready`` accepts answers up to 90 s old."""
PROJECTION = ("Name", "State", "Activity", "Cpus", "Memory", "JobStart", "PartitionableSlot")


@dataclass(frozen=True)
class Answer:
    """What one query found out. ``answered`` False: no reply (unreachable, timeout)."""

    answered: bool
    slots: tuple[dict[str, Any], ...] = ()


class Queries(Protocol):
    """Starts collector queries and hands back their answers; never blocks."""

    def start(self) -> None: ...

    def running(self) -> bool: ...

    def expire(self, now: float) -> None:
        """Kill a query that has run past its deadline."""

    def finished(self, pid: int, status: int) -> Answer | None:
        """The answer when ``pid`` was our query (the supervisor reaped it), else None."""


def status_command(condor_status: str, *, uuid: str, attributes: Sequence[str] = ()) -> list[str]:
    """``condor_status`` asking for this pilot's slots only, as JSON."""
    return [
        condor_status,
        "-json",
        "-constraint",
        f'OSPOOL_EP_PILOT_UUID == "{uuid}"',
        "-attributes",
        ",".join((*PROJECTION, *attributes)),
    ]


def parse_answer(*, exit_status: int, output: bytes) -> Answer:
    """``condor_status -json``'s verdict: exit 0 and a JSON list (or nothing: no match)."""
    if not os.WIFEXITED(exit_status) or os.WEXITSTATUS(exit_status) != 0:
        return Answer(answered=False)
    text = output.strip()
    if not text:
        return Answer(answered=True)
    try:
        ads = json.loads(text)
    except ValueError:
        return Answer(answered=False)
    if not isinstance(ads, list):
        return Answer(answered=False)
    return Answer(answered=True, slots=tuple(ad for ad in ads if isinstance(ad, dict)))


@dataclass
class ProcessQueries(BoundedChild):
    """One ``condor_status`` child at a time, its stdout in ``output``."""

    timeout: float = QUERY_TIMEOUT_SECONDS

    def finished(self, pid: int, status: int) -> Answer | None:
        result = self.collect(pid, status)
        if result is None:
            return None
        exit_status, output = result
        if exit_status is None:
            return Answer(answered=False)
        return parse_answer(exit_status=exit_status, output=output)


@dataclass
class Observer:
    """What the collector last said about this pilot, and when to ask it again."""

    queries: Queries
    wall_clock: Callable[[], float]
    ready: bool = False
    reachable: bool | None = None
    """None until the first answer or failure; False while queries go unanswered."""
    checked: float | None = None
    """Wall-clock time of the last answer (``health --ready`` reads its age)."""
    slots: list[dict[str, Any]] = field(default_factory=list)
    seen_jobs: set[tuple[str, int]] = field(default_factory=set)
    """(dynamic slot, JobStart) pairs seen: each is one job start."""
    unseen_queries: int = 0
    next_query: float = 0.0
    became_reachable: bool = False
    """Set when an answer follows a failure (or is the first); :class:`Joiner` consumes it."""

    @property
    def jobs_started(self) -> int:
        return len(self.seen_jobs)

    def interval(self) -> float:
        if self.ready:
            return SEEN_INTERVAL
        if self.unseen_queries <= len(UNSEEN_INTERVALS):
            return UNSEEN_INTERVALS[max(0, self.unseen_queries - 1)]
        return UNSEEN_INTERVAL_LAST

    def tick(self, now: float) -> None:
        """Start a query when one is due; kill one that has run too long."""
        self.queries.expire(now)
        if not self.queries.running() and now >= self.next_query:
            try:
                self.queries.start()
            except OSError:
                self.reachable = False  # cannot even spawn: as good as no answer
                self.next_query = now + UNSEEN_INTERVAL_LAST
                return
            self.next_query = float("inf")  # set again when the answer comes

    def child_exited(self, pid: int, status: int, *, now: float) -> bool:
        """Take the exit of a reaped child; True when it was our query."""
        answer = self.queries.finished(pid, status)
        if answer is None:
            return False
        self.take(answer, now=now)
        return True

    def take(self, answer: Answer, *, now: float) -> None:
        if answer.answered:
            if self.reachable is not True:
                self.became_reachable = True
            self.reachable = True
            self.slots = [dict(ad) for ad in answer.slots]
            self.ready = bool(self.slots)
            self.seen_jobs |= {
                (str(ad.get("Name")), int(ad["JobStart"]))
                for ad in self.slots
                if isinstance(ad.get("JobStart"), int)
            }
            self.checked = self.wall_clock()
        else:
            self.reachable = False
            self.ready = False
        if not self.ready:
            self.unseen_queries += 1
        self.next_query = now + self.interval()


JOIN_BACKOFF = (5.0, 10.0, 20.0, 40.0)
"""Seconds between advertise nudges while the collector answers without our slot,
then every 60 s. A first advertisement refused (a CM that was down, a collector
restarted empty) is otherwise only repeated after UPDATE_INTERVAL (300 s)."""
JOIN_BACKOFF_LAST = 60.0
JOIN_AFTER_ADVERTISING_SECONDS = 5.0
"""The first nudge comes this long after the startd says it sent its first update."""
JOIN_UNANNOUNCED_SECONDS = 90.0
"""Without that line (an HTCondor that words it otherwise), the first nudge waits this long.

Measured with 20 pilots and a CPU hog on 2 cores: the startd sent its first update
some 30 s after it started (its start-up work, the starter's capability probe
among it, is slow there), and each reconfig before then redid that work and put
the first update off further. A nudge before the first update only delays it."""
ADVERTISED_LINE = "Initial update sent to collector"
"""What the startd writes to StartLog once its first update has gone out."""


@dataclass
class Joiner:
    """When to ask the startd to advertise again (a reconfig makes it send its ad)."""

    started_at: float
    advertised_at: float | None = None
    nudges: int = 0
    next_nudge: float = 0.0

    def __post_init__(self) -> None:
        self.next_nudge = self.started_at + JOIN_UNANNOUNCED_SECONDS

    def startd_advertised(self, now: float) -> None:
        """The startd has sent its first update: nudges may follow if it does not arrive."""
        if self.advertised_at is None:
            self.advertised_at = now
            self.next_nudge = min(self.next_nudge, now + JOIN_AFTER_ADVERTISING_SECONDS)

    def announced(self, now: float) -> bool:
        """Whether the collector may list our slot yet: the startd has sent its first
        update (or should have, by JOIN_UNANNOUNCED_SECONDS). Before that a query can
        only say "not there", and 20 starting pilots asking every 2 s load the
        collector that must take their first updates."""
        return self.advertised_at is not None or now >= self.started_at + JOIN_UNANNOUNCED_SECONDS

    def due(self, observer: Observer, now: float) -> bool:
        """True when the collector answers, lacks our slot, and a nudge is due.

        The collector coming back after being unreachable makes a nudge due at
        once (once the startd has advertised), and starts the backoff again.
        """
        if observer.ready:
            observer.became_reachable = False
            return False
        if observer.reachable is not True:
            return False
        if observer.became_reachable:
            observer.became_reachable = False
            if self.nudges:
                self.nudges = 0
                self.next_nudge = min(self.next_nudge, now)
        if now < self.next_nudge:
            return False
        delay = JOIN_BACKOFF[self.nudges] if self.nudges < len(JOIN_BACKOFF) else JOIN_BACKOFF_LAST
        self.nudges += 1
        self.next_nudge = now + delay
        return True
