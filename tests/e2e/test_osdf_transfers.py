"""End-to-end: jobs with ``osdf://`` inputs match and run on a real pilot.

A local Pelican federation stand-in (``tests/support/federation.py``) runs in a
container of the image under test on the pool network, as root (discovery listens on
``osg-htc.org:443``). The pilot maps the stand-in's hostnames to its address
(``extra_hosts``) and trusts its test CA through the system bundle, mounted read-only
at ``/etc/ssl/certs/ca-certificates.crt``; so ``osdf:///test/x`` URLs and the pilot's
own self-test object ``osdf:///pelicanplatform/test/hello-world.txt`` reach it, through
the real plugin (``ospool-ep-pelican-plugin``, pelicanfs) run by the real starter.

One pilot serves the whole module. It starts while the self-test object is missing,
so its first verdict is a failure: the first test checks that nothing is offered
then, and that the methods appear once the object is put in place (the drop-in plus
the master's reconfig). The job tests then run on it. Uploads are not tried here: the
stand-in's origin takes writes only with a bearer token, which a job gets only from a
credd (``use_oauth_services``), and the test pool has none.

Run (needs podman and the built image):
``OSPOOL_EP_IMAGE=<image> python -m pytest -m container tests/e2e/test_osdf_transfers.py -s``
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import federation
import pool
import pytest
from conftest import Pilot, Pilots, container_marks, remove_jobs, wait_status

pytestmark = container_marks()

JobStatus = pool.JobStatus

CHECK_SECONDS = 10
"""OSDF_CHECK_SECONDS for the pilot: the smallest period the pilot allows."""
SELFTEST_PATH = "/pelicanplatform/test/hello-world.txt"
"""The object the pilot's self-test fetches (osg-flock's pelican-setup uses the same)."""
INPUT_PATH = "/test/input.dat"
INPUT_SIZE = 3 << 20
HELD_WITHIN = 90.0
"""A missing object must put the job on hold this soon after it is submitted."""
METHODS = ("osdf", "pelican", "stash")
OFFERED = " && ".join(f'stringListMember("{m}", HasFileTransferPluginMethods)' for m in METHODS)
NOT_OFFERED = (
    'OSDF_FAIL_REASON =!= undefined && !stringListMember("osdf", HasFileTransferPluginMethods)'
)
PASSED = "OSDF plugin test passed"
FAILED = "OSDF plugin test failed"
RECONFIG = "Reconfiguring all managed daemons"
"""The master's line for each reconfig (MasterLog, in the pilot's log stream)."""


@dataclass(frozen=True)
class StandIn:
    fed: federation.Federation
    spec: federation.ContainerSpec
    ip: str

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in federation.read_log(self.spec.log) if path in r["path"]]


@pytest.fixture(scope="module")
def stand_in(live_pool: pool.Pool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The stand-in federation, with ``/test`` and ``/pelicanplatform`` namespaces, on the
    pool network; the self-test object is not there yet."""
    base = tmp_path_factory.mktemp("osdf-federation")
    fed = federation.Federation(
        base,
        namespaces=(*federation.DEFAULT_NAMESPACES, federation.NamespaceSpec("/pelicanplatform")),
    )
    spec = federation.container_spec(fed)
    for path in [base, *base.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    container = live_pool.run_container(
        "osdf-fed",
        entrypoint=list(spec.command),
        user="0",
        volumes=[(host, inside, mode) for host, inside, mode in spec.volumes],
        security_opt=(),
    )
    ready = fed.state_dir(container=True) / "ready.json"
    try:
        pool.wait_until(
            ready.is_file, timeout=30, interval=0.2, what="the federation stand-in's ready file"
        )
        ip = pool._container_ip(container, live_pool.network.name)
        yield StandIn(fed, spec, ip)
    finally:
        live_pool.remove_pilot("osdf-fed")


@pytest.fixture(scope="module")
def osdf_pilot(
    live_pool: pool.Pool, stand_in: StandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pilot]:
    """One pilot for the module, started while the self-test object is missing."""
    assert not stand_in.fed.local_path(SELFTEST_PATH).exists()
    bundle = tmp_path_factory.mktemp("osdf-ca") / "ca-certificates.crt"
    bundle.write_bytes(stand_in.spec.ca_file.read_bytes())
    bundle.chmod(0o644)
    hosts = {pool.CM_ALIAS: live_pool.cm_ip, **dict.fromkeys(stand_in.spec.hostnames, stand_in.ip)}
    made = Pilots(live_pool)
    pilot = made.start(
        "ep-osdf",
        {
            "OSDF_CHECK_SECONDS": str(CHECK_SECONDS),
            "PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT": "3s",
        },
        volumes=[(bundle, "/etc/ssl/certs/ca-certificates.crt", "ro")],
        extra_hosts=hosts,
    )
    try:
        yield pilot
    finally:
        saved = tmp_path_factory.getbasetemp() / f"{pilot.name}.log"
        saved.write_text(pilot.logs())
        print(f"\npilot {pilot.name}: its whole output is in {saved}")
        made.remove_all()


def offered_ad(pilot: Pilot, timeout: float) -> dict[str, Any]:
    """The partitionable slot's ad once it offers the three methods."""
    return pilot.wait_for_slot(timeout=timeout, extra=OFFERED)[0]


def ensure_offered(pilot: Pilot, stand_in: StandIn) -> dict[str, Any]:
    if not stand_in.fed.local_path(SELFTEST_PATH).exists():
        stand_in.fed.put_bytes(SELFTEST_PATH, b"Hello, World!\n")
    return offered_ad(pilot, timeout=6 * CHECK_SECONDS)


def start_log_lines(pilot: Pilot, pattern: str) -> list[str]:
    """StartLog lines matching ``pattern`` (the pilot's log stream carries them)."""
    return [
        line
        for line in pilot.logs().splitlines()
        if "StartLog" in line and re.search(pattern, line)
    ]


def test_the_methods_are_offered_only_once_the_plugin_test_passes(
    osdf_pilot: Pilot, stand_in: StandIn
) -> None:
    """Started while the self-test object is missing, the slot has OSDF_FAIL_REASON and
    no osdf/pelican/stash; within two check periods of the object appearing, the
    verdict flips (drop-in + reconfig) and the slot offers all three, without the
    reason."""
    pilot = osdf_pilot
    logs = pilot.wait_log(FAILED, timeout=90)
    # The first ad says "not tested yet" (the test waits until the slot is listed); the
    # collector has the verdict after the reconfig's update.
    tested = f'{NOT_OFFERED} && regexp("hello-world", OSDF_FAIL_REASON)'
    ad = pilot.wait_for_slot(timeout=60, extra=tested)[0]
    reason = str(ad["OSDF_FAIL_REASON"])
    methods = str(ad.get("HasFileTransferPluginMethods", ""))
    print(
        f"\nbefore: OSDF_FAIL_REASON = {reason!r}\nbefore: HasFileTransferPluginMethods = {methods}"
    )
    assert "hello-world.txt" in reason, reason
    assert not set(METHODS) & set(methods.split(",")), methods
    failed_line = next(line for line in logs.splitlines() if FAILED in line)
    assert "hello-world.txt" in failed_line, failed_line

    stand_in.fed.put_bytes(SELFTEST_PATH, b"Hello, World!\n")
    put_at = time.monotonic()
    ad = offered_ad(pilot, timeout=2 * CHECK_SECONDS + 20)
    took = time.monotonic() - put_at
    print(f"after: methods offered {took:.1f} s after the object was put")
    print(f"after: HasFileTransferPluginMethods = {ad['HasFileTransferPluginMethods']}")
    assert "OSDF_FAIL_REASON" not in ad, ad.get("OSDF_FAIL_REASON")
    passed = next(line for line in pilot.logs().splitlines() if PASSED in line)
    assert SELFTEST_PATH in passed, passed
    assert stand_in.requests(SELFTEST_PATH), "the stand-in saw no request for the test object"


def test_a_job_with_an_osdf_input_runs_and_gets_the_object(
    osdf_pilot: Pilot, stand_in: StandIn
) -> None:
    """``transfer_input_files = osdf:///test/input.dat``: the job matches the pilot, the
    starter fetches the object with the plugin, and the job's sha256sum of it is the
    object's."""
    pilot = osdf_pilot
    ad = ensure_offered(pilot, stand_in)
    assert "OSDF_FAIL_REASON" not in ad
    digest = stand_in.fed.put_object(INPUT_PATH, INPUT_SIZE)
    cluster = pilot.submit(
        {
            "executable": "/bin/sh",
            "transfer_executable": "false",
            "arguments": "\"-c 'sha256sum input.dat'\"",
            "transfer_input_files": f"osdf://{INPUT_PATH}",
            "should_transfer_files": "YES",
            "request_disk": f"{4 * INPUT_SIZE >> 10}",  # KiB: the input counts
        }
    )
    try:
        seconds = wait_status(pilot.pool, cluster, JobStatus.COMPLETED, timeout=180)
        out = pilot.pool.job_output(cluster)
        print(f"\nosdf input job: completed in {seconds} s; output {out.strip()!r}")
        assert out.split() == [digest, "input.dat"], out
        cache_reads = [
            r
            for r in stand_in.requests(INPUT_PATH)
            if r["role"] == "cache" and r["method"] == "GET"
        ]
        assert cache_reads, stand_in.requests(INPUT_PATH)
    finally:
        remove_jobs(pilot.pool, cluster)


def test_a_missing_input_object_holds_the_job_with_the_reason(
    osdf_pilot: Pilot, stand_in: StandIn
) -> None:
    """An input that is not in the federation puts the job on hold within a bound, the
    hold reason naming the object and what the plugin said; the starter is not hung:
    the slot takes the next job."""
    pilot = osdf_pilot
    ensure_offered(pilot, stand_in)
    missing = "/test/no-such-object.dat"
    cluster = pilot.submit(
        {
            "executable": "/bin/true",
            "transfer_executable": "false",
            "transfer_input_files": f"osdf://{missing}",
        }
    )
    try:
        seconds = wait_status(pilot.pool, cluster, JobStatus.HELD, timeout=HELD_WITHIN)
        held = pilot.pool.job_ads(
            cluster, ("ProcId", "HoldReason", "HoldReasonCode", "HoldReasonSubCode")
        )[0]
        print(f"\nmissing object: held after {seconds} s: {held}")
        reason = str(held["HoldReason"])
        assert missing in reason, reason
        assert "no such object" in reason, reason
        assert held["HoldReasonCode"] == 13, held  # TransferInputError
    finally:
        remove_jobs(pilot.pool, cluster)
    # The starter is free again: a plain job runs on the same pilot.
    after = pilot.submit({"executable": "/bin/true", "transfer_executable": "false"})
    try:
        wait_status(pilot.pool, after, JobStatus.COMPLETED, timeout=120)
    finally:
        remove_jobs(pilot.pool, after)


def test_passing_again_does_not_reconfigure(osdf_pilot: Pilot, stand_in: StandIn) -> None:
    """Every period re-runs the test; a pass after a pass (its line names another
    transfer time) writes nothing and asks for no reconfig."""
    pilot = osdf_pilot
    ensure_offered(pilot, stand_in)
    first = pilot.logs().count(PASSED)
    reconfigs = pilot.logs().count(RECONFIG)

    def fetches() -> int:
        return sum(
            1
            for r in stand_in.requests(SELFTEST_PATH)
            if (r["role"], r["method"]) == ("cache", "GET")
        )

    def unchanged() -> None:
        logs = pilot.logs()
        assert logs.count(PASSED) == first, [line for line in logs.splitlines() if PASSED in line]
        assert logs.count(RECONFIG) == reconfigs

    before = fetches()
    # A deadline, not a sleep: the logs are checked all along, and a few seconds past
    # the second fetch, when its verdict has landed.
    deadline = time.monotonic() + 3 * CHECK_SECONDS + 20
    settled: float | None = None
    while settled is None or time.monotonic() < settled:
        unchanged()
        if settled is None and fetches() >= before + 2:
            settled = time.monotonic() + 3
        assert time.monotonic() < deadline, "fewer than two self-tests in three periods"
        time.sleep(0.5)
    unchanged()


def test_the_pilot_runs_its_transfer_service_and_jobs_use_it(
    osdf_pilot: Pilot, stand_in: StandIn
) -> None:
    """One ``ospool_ep.transfer.service`` process, the supervisor's child, on the socket the
    daemons' environment names; a job's osdf:// input leaves it running (same pid), and
    the input came without a new discovery of the federation (the service's kept answer)."""
    pilot = osdf_pilot
    ensure_offered(pilot, stand_in)

    def service() -> list[Any]:
        return [
            p
            for p in pilot.processes()
            if "ospool_ep.transfer.service" in p.argv and p.state != "Z"
        ]

    (before,) = service()
    (parent,) = [p for p in pilot.processes() if p.pid == before.ppid]
    assert "run" in parent.argv, parent  # the supervisor: `ospool-ep run`
    socket = before.argv[before.argv.index("--socket") + 1]
    assert pilot.exec(["test", "-S", socket]).exit_code == 0
    path = "/test/served.dat"
    stand_in.fed.put_object(path, 1 << 20)
    discoveries = len(stand_in.requests("/.well-known/pelican-configuration"))
    cluster = pilot.submit(
        {
            "executable": "/bin/true",
            "transfer_executable": "false",
            "transfer_input_files": f"osdf://{path}",
            "should_transfer_files": "YES",
            "request_disk": "8192",
        }
    )
    try:
        wait_status(pilot.pool, cluster, JobStatus.COMPLETED, timeout=180)
    finally:
        remove_jobs(pilot.pool, cluster)
    (after,) = service()
    assert after.pid == before.pid
    assert len(stand_in.requests("/.well-known/pelican-configuration")) == discoveries
