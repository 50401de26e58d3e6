"""Contracts of ospool_ep.pilot.metrics: the pilot's state as Prometheus metrics (SPEC 7.5).

A real HTTP server on 127.0.0.1 and an ephemeral port, scraped with requests;
the text is read back with prometheus_client's own parser, so what is checked is
what Prometheus would see.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ospool_ep.pilot.metrics import STATES, Metrics, PilotSnapshot

MIB = 1024 * 1024

SNAPSHOT = PilotSnapshot(
    state="running",
    slots_total=1,
    slots_claimed=1,
    cpus=8,
    memory_mb=16_000,
    gpus=1,
    jobs_started=3,
    seconds_to_retire=3600.0,
    seconds_to_die=90_000.0,
    token_seconds_to_expiry=86_400.5,
    cvmfs_repos={"oasis.opensciencegrid.org": True, "singularity.opensciencegrid.org": False},
    ready=True,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str | bytes) -> Samples:
    """Every sample of an exposition text: (name, labels) -> value."""
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, metric: str, /, **labels: str) -> float:
    """The sample ``metric{labels}``; positional-only so a label may be called ``name``."""
    return found[(metric, frozenset(labels.items()))]


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def free_port() -> int:
    """A port nobody listens on right now: bind port 0, read it back, let it go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(pilot_name="slot1@pilot-1.example.org", version="0.1.0")


@pytest.fixture
def served(metrics: Metrics) -> Iterator[tuple[Metrics, str]]:
    port = free_port()
    metrics.serve(port=port, address="127.0.0.1")
    yield metrics, f"http://127.0.0.1:{port}/metrics"
    metrics.close()


def scrape(url: str) -> Samples:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    return samples(response.text)


def test_a_scrape_over_http_shows_every_value_of_the_snapshot(
    served: tuple[Metrics, str],
) -> None:
    """Each field of the snapshot is one metric, in base units (bytes, seconds)."""
    metrics, url = served
    metrics.update(SNAPSHOT)
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)

    info = {"name": "slot1@pilot-1.example.org", "version": "0.1.0"}
    assert value(found, "ospool_ep_info", **info) == 1
    assert value(found, "ospool_ep_state", ospool_ep_state="running") == 1
    assert value(found, "ospool_ep_ready") == 1
    assert value(found, "ospool_ep_slots") == 1
    assert value(found, "ospool_ep_slots_claimed") == 1
    assert value(found, "ospool_ep_cpus_offered") == 8
    assert value(found, "ospool_ep_memory_offered_bytes") == 16_000 * MIB
    assert value(found, "ospool_ep_gpus_offered") == 1
    assert value(found, "ospool_ep_jobs_started_total") == 3
    assert value(found, "ospool_ep_seconds_until_retire") == 3600
    assert value(found, "ospool_ep_seconds_until_die") == 90_000
    assert value(found, "ospool_ep_token_expiry_seconds") == 86_400.5
    assert value(found, "ospool_ep_cvmfs_repo_healthy", repo="oasis.opensciencegrid.org") == 1
    assert value(found, "ospool_ep_cvmfs_repo_healthy", repo="singularity.opensciencegrid.org") == 0


def test_the_metric_families_have_the_prometheus_types() -> None:
    """jobs_started is a counter (rate() works on it); the state a state set, shown as gauge."""
    metrics = Metrics(pilot_name="p", version="v")
    metrics.update(SNAPSHOT)
    types = {f.name: f.type for f in text_string_to_metric_families(metrics.render().decode())}
    assert types["ospool_ep_jobs_started"] == "counter"
    assert types["ospool_ep_state"] == "gauge"
    assert types["ospool_ep_memory_offered_bytes"] == "gauge"
    assert types["ospool_ep_cvmfs_repo_healthy"] == "gauge"


def test_the_supervisor_own_memory_and_cpu_are_exported() -> None:
    """process_* metrics come from this registry, so the RSS budget (SPEC 14) is visible."""
    found = samples(Metrics(pilot_name="p", version="v").render())
    assert value(found, "process_resident_memory_bytes") > 0
    assert "process_cpu_seconds_total" in names(found)


def test_before_the_first_snapshot_only_the_info_metric_is_shown(metrics: Metrics) -> None:
    """No made-up zeros before the supervisor has looked at the pilot."""
    ours = {n for n in names(samples(metrics.render())) if n.startswith("ospool_ep_")}
    assert ours == {"ospool_ep_info"}


@pytest.mark.parametrize("state", STATES)
def test_the_current_state_is_one_and_every_other_state_zero(metrics: Metrics, state: str) -> None:
    metrics.update(dataclasses.replace(SNAPSHOT, state=state))
    found = samples(metrics.render())
    shown = {s: value(found, "ospool_ep_state", ospool_ep_state=s) for s in STATES}
    assert shown == {s: float(s == state) for s in STATES}


def test_a_state_change_shows_on_the_next_scrape(served: tuple[Metrics, str]) -> None:
    metrics, url = served
    metrics.update(SNAPSHOT)
    assert value(scrape(url), "ospool_ep_state", ospool_ep_state="running") == 1
    metrics.update(dataclasses.replace(SNAPSHOT, state="draining", ready=False))
    found = scrape(url)
    assert value(found, "ospool_ep_state", ospool_ep_state="draining") == 1
    assert value(found, "ospool_ep_state", ospool_ep_state="running") == 0
    assert value(found, "ospool_ep_ready") == 0


def test_the_states_are_the_lifecycle_states() -> None:
    """One list of states for the transition table and for the metric."""
    from ospool_ep.pilot.lifecycle import State

    assert tuple(s.value for s in State) == STATES


def test_an_unknown_state_is_refused_and_the_last_snapshot_stays(metrics: Metrics) -> None:
    metrics.update(SNAPSHOT)
    with pytest.raises(ValueError, match="unknown pilot state 'exploded'"):
        metrics.update(dataclasses.replace(SNAPSHOT, state="exploded", jobs_started=99))
    found = samples(metrics.render())
    assert value(found, "ospool_ep_state", ospool_ep_state="running") == 1
    assert value(found, "ospool_ep_jobs_started_total") == 3


def test_jobs_started_counter_follows_the_count(metrics: Metrics) -> None:
    for count in (0, 2, 2, 7):
        metrics.update(dataclasses.replace(SNAPSHOT, jobs_started=count))
        assert value(samples(metrics.render()), "ospool_ep_jobs_started_total") == count


def test_jobs_started_counter_never_decreases_when_the_count_restarts(metrics: Metrics) -> None:
    """A smaller count means its source restarted from zero: the counter adds the new
    count (jobs since that restart) instead of going down, as Prometheus counters must."""
    totals = []
    for count in (10, 4, 6, 0, 1):
        metrics.update(dataclasses.replace(SNAPSHOT, jobs_started=count))
        totals.append(value(samples(metrics.render()), "ospool_ep_jobs_started_total"))
    assert totals == [10, 14, 16, 16, 17]


def test_a_negative_job_count_is_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="jobs_started"):
        metrics.update(dataclasses.replace(SNAPSHOT, jobs_started=-1))


def test_a_token_without_expiry_has_no_expiry_metric(metrics: Metrics) -> None:
    """Absent, not 0 or NaN: an alert on `< 86400` must not fire for a token that never expires."""
    metrics.update(dataclasses.replace(SNAPSHOT, token_seconds_to_expiry=None))
    assert "ospool_ep_token_expiry_seconds" not in names(samples(metrics.render()))


def test_an_expired_token_shows_negative_seconds(metrics: Metrics) -> None:
    metrics.update(dataclasses.replace(SNAPSHOT, token_seconds_to_expiry=-60.0))
    assert value(samples(metrics.render()), "ospool_ep_token_expiry_seconds") == -60


def test_a_repo_no_longer_in_the_snapshot_disappears(metrics: Metrics) -> None:
    metrics.update(SNAPSHOT)
    metrics.update(dataclasses.replace(SNAPSHOT, cvmfs_repos={"oasis.opensciencegrid.org": False}))
    found = samples(metrics.render())
    repos = {dict(labels)["repo"]: v for (n, labels), v in found.items() if "cvmfs" in n}
    assert repos == {"oasis.opensciencegrid.org": 0}


def test_two_instances_share_nothing() -> None:
    """Each Metrics has its own registry, not prometheus_client's global one."""
    first = Metrics(pilot_name="first", version="1")
    second = Metrics(pilot_name="second", version="2")
    first.update(SNAPSHOT)
    found = samples(second.render())
    assert value(found, "ospool_ep_info", name="second", version="2") == 1
    assert "ospool_ep_state" not in names(found)
    assert ("ospool_ep_info", frozenset({"name": "first", "version": "1"}.items())) not in found


def test_a_port_in_use_is_an_oserror_that_says_where_and_what_to_do(metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}.*METRICS_PORT") as caught:
            metrics.serve(port=port, address="127.0.0.1")
    assert caught.value.errno == errno.EADDRINUSE
    assert "in use" in str(caught.value)


def test_close_frees_the_port_for_a_new_server() -> None:
    port = free_port()
    first = Metrics(pilot_name="p", version="v")
    first.serve(port=port, address="127.0.0.1")
    first.close()
    first.close()  # idempotent
    second = Metrics(pilot_name="q", version="v")
    second.serve(port=port, address="127.0.0.1")
    try:
        found = scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(found, "ospool_ep_info", name="q", version="v") == 1
    finally:
        second.close()


def test_serving_twice_is_a_bug(served: tuple[Metrics, str]) -> None:
    metrics, _ = served
    with pytest.raises(RuntimeError, match="already"):
        metrics.serve(port=free_port(), address="127.0.0.1")
