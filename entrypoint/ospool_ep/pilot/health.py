"""Health: liveness and readiness of a running pilot, from the state it publishes (SPEC 7.5).

Works for any uid: it reads the world-readable state file (if it can trust it,
ospool_ep.pilot.statefile) and /proc files any uid may read, and talks to nothing (a
probe must not hang on the network).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ospool_ep.pilot.procfs import alive, child_named, start_time
from ospool_ep.pilot.statefile import PublishedState

STALE_SECONDS = 60
"""The supervisor rewrites the state every few seconds; older means it is stuck."""
READY_FRESH_SECONDS = 90


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    message: str


def liveness(  # noqa: PLR0911 - one return per probe, in the order they are checked
    published: PublishedState | None, *, now: float | None = None
) -> Verdict:
    now = time.time() if now is None else now
    if published is None:
        return Verdict(False, "no pilot is running here (no state file)")
    if not alive(published.supervisor_pid) or not _same_process(published):
        return Verdict(False, f"the supervisor (pid {published.supervisor_pid}) is gone")
    if now - published.updated > STALE_SECONDS:
        return Verdict(
            False, f"the supervisor has not reported for {now - published.updated:.0f} s"
        )
    if published.state in ("starting", "draining", "stopping"):
        return Verdict(True, f"pilot {published.name} is {published.state}")
    if not alive(published.master_pid):
        return Verdict(False, f"condor_master (pid {published.master_pid}) is not running")
    if child_named(published.master_pid or 0, "condor_startd") is None:
        return Verdict(False, "condor_startd is not running (the master may be restarting it)")
    return Verdict(True, f"pilot {published.name}: condor_master and condor_startd running")


def readiness(published: PublishedState | None, *, now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    live = liveness(published, now=now)
    if not live.healthy or published is None:
        return live
    if published.state != "running":
        return Verdict(False, f"pilot {published.name} is {published.state}: not taking jobs")
    checked = published.ready_checked
    if not published.ready or checked is None or now - checked > READY_FRESH_SECONDS:
        return Verdict(False, f"pilot {published.name}'s slot is not (yet) in the collector")
    return Verdict(True, f"pilot {published.name}'s slot is in the collector")


def _same_process(published: PublishedState) -> bool:
    """The pid still names the supervisor that wrote the state, not a later process."""
    started = published.supervisor_started
    return started is None or start_time(published.supervisor_pid) == started
