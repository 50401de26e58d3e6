"""Metrics: the pilot's state as Prometheus metrics on ``METRICS_PORT`` (SPEC 4.1, 7.5).

The supervisor hands :meth:`Metrics.update` a :class:`PilotSnapshot` each time it
looks at the pilot; every scrape renders the latest snapshot. The exposition is
prometheus_client's own (SPEC 7.5: a maintained library, not hand-written text),
and each :class:`Metrics` has its own registry: nothing here is process-global.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREFIX = "ospool_ep_"

STATES = ("starting", "running", "draining", "stopping", "stopped")
"""The values of ``lifecycle.State``, in lifecycle order (STYLE 6)."""

_MIB = 1024 * 1024
"""HTCondor's ``MEMORY`` "MB" is MiB (see resources); Prometheus wants bytes."""

_HINTS = {
    errno.EADDRINUSE: "another process already listens there; choose another METRICS_PORT",
    errno.EACCES: "ports below 1024 need privileges; choose a METRICS_PORT of 1024 or more",
    errno.EADDRNOTAVAIL: "that address is not one of this host's",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class PilotSnapshot:
    """What the supervisor knows about the pilot at one moment. Units are in the names."""

    state: str
    """A lifecycle state, one of :data:`STATES`."""
    slots_total: int
    slots_claimed: int
    cpus: int
    """CPUs offered to the pool."""
    memory_mb: int
    """Memory offered to the pool, in MiB as HTCondor counts it."""
    gpus: int
    """GPUs offered to the pool."""
    jobs_started: int
    """Jobs started since the pilot (or its source of the count) started."""
    seconds_to_retire: float
    """Until the pilot stops accepting new jobs."""
    seconds_to_die: float
    """Until running jobs are evicted at the latest."""
    token_seconds_to_expiry: float | None
    """Until the pool token expires; ``None`` when the token has no expiry."""
    cvmfs_repos: Mapping[str, bool]
    """CVMFS repository name -> healthy (SPEC 9.2)."""
    ready: bool
    """The slot is visible in the collector."""


@dataclass(frozen=True, slots=True)
class _View:
    """One snapshot and the counter total derived from it, swapped in as one object
    so a scrape never mixes two snapshots."""

    snapshot: PilotSnapshot
    jobs_started_total: int


class _PilotCollector(Collector):
    """Renders the latest :class:`_View`; yields only the info metric before the first one."""

    def __init__(self, *, pilot_name: str, version: str) -> None:
        self._info = {"version": version, "name": pilot_name}
        self.view: _View | None = None

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(PREFIX.rstrip("_"), "The pilot's name and ospool-ep version")
        info.add_metric([], self._info)
        yield info
        view = self.view  # read once: update() may swap it while we render
        if view is None:
            return
        s = view.snapshot
        yield StateSetMetricFamily(
            f"{PREFIX}state",
            "Lifecycle state of the pilot (1 for the current state)",
            value={state: state == s.state for state in STATES},
        )
        for name, doc, value in (
            ("ready", "1 when the pilot's slot is visible in the collector", float(s.ready)),
            ("slots", "Slots the startd advertises", s.slots_total),
            ("slots_claimed", "Slots claimed by a job's schedd", s.slots_claimed),
            ("cpus_offered", "CPUs offered to the pool", s.cpus),
            ("memory_offered_bytes", "Memory offered to the pool", s.memory_mb * _MIB),
            ("gpus_offered", "GPUs offered to the pool", s.gpus),
            ("seconds_until_retire", "Seconds until no new jobs are accepted", s.seconds_to_retire),
            ("seconds_until_die", "Seconds until running jobs are evicted", s.seconds_to_die),
        ):
            yield GaugeMetricFamily(f"{PREFIX}{name}", doc, value=value)
        if s.token_seconds_to_expiry is not None:
            # Absent rather than a made-up number when the token never expires,
            # so an alert like `< 86400` neither fires nor hides a real expiry.
            yield GaugeMetricFamily(
                f"{PREFIX}token_expiry_seconds",
                "Seconds until the pool token expires (negative: expired)",
                value=s.token_seconds_to_expiry,
            )
        yield CounterMetricFamily(
            f"{PREFIX}jobs_started",
            "Jobs started on this pilot",
            value=view.jobs_started_total,
        )
        repos = GaugeMetricFamily(
            f"{PREFIX}cvmfs_repo_healthy",
            "1 when the CVMFS repository passed its last health check",
            labels=["repo"],
        )
        for repo, healthy in sorted(s.cvmfs_repos.items()):
            repos.add_metric([repo], float(healthy))
        yield repos


class Metrics:
    """The pilot's metrics: one registry, updated from snapshots, served over HTTP."""

    def __init__(self, *, pilot_name: str, version: str) -> None:
        self._registry = CollectorRegistry()
        self._collector = _PilotCollector(pilot_name=pilot_name, version=version)
        self._registry.register(self._collector)
        # process_resident_memory_bytes and process_cpu_seconds_total: the
        # supervisor's own budget (SPEC 14: <= 30 MB RSS, <= 0.5 s CPU per 10 min idle).
        ProcessCollector(registry=self._registry)
        self._lock = threading.Lock()
        self._last_jobs_started = 0
        self._server: WSGIServer | None = None

    def update(self, snapshot: PilotSnapshot) -> None:
        """Publish ``snapshot``; the next scrape shows it.

        ``jobs_started`` feeds a counter, which may never go down. A count
        smaller than the last one means its source started again from zero
        (condor_startd restarted), so it is added whole, as the jobs started
        since that restart -- the reset rule Prometheus' own rate() applies.

        Raises ValueError for an unknown state or a negative count (a bug in
        the caller); nothing is published then.
        """
        if snapshot.state not in STATES:
            raise ValueError(f"unknown pilot state {snapshot.state!r}; expected one of {STATES}")
        if snapshot.jobs_started < 0:
            raise ValueError(f"jobs_started must be >= 0, not {snapshot.jobs_started}")
        with self._lock:
            count = snapshot.jobs_started
            last = self._last_jobs_started
            delta = count if count < last else count - last
            previous = self._collector.view
            total = (previous.jobs_started_total if previous else 0) + delta
            self._collector.view = _View(snapshot, total)
            self._last_jobs_started = count

    def serve(self, *, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside the container
        """Serve ``/metrics`` on ``address:port`` from a daemon thread; returns at once.

        Raises OSError, with the address and what to do in its message, when the
        port cannot be bound (in use, privileged, unknown address).
        """
        if self._server is not None:
            raise RuntimeError("metrics are already being served")
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        try:
            started = start_http_server(port, addr=address, registry=self._registry)
        except OSError as exc:
            hint = _HINTS.get(exc.errno or 0)
            text = f"cannot serve metrics on {where}: {exc.strerror or exc}"
            raise OSError(exc.errno, f"{text}; {hint}" if hint else text) from exc
        # prometheus_client < 0.20 returns None: serving still works, only close() cannot stop it.
        self._server = started[0] if isinstance(started, tuple) else None

    def close(self) -> None:
        """Stop serving and free the port; a no-op when not serving.

        Takes up to 0.5 s (serve_forever's poll interval). At exit it need not be
        called: the server thread is a daemon and the port goes with the process.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def render(self) -> bytes:
        """The exposition text a scrape would get now (Prometheus text format 0.0.4)."""
        return generate_latest(self._registry)
