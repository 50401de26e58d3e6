"""End-to-end: the default pool path, in a test pool shaped like the OSPool (SPEC 6.1, 13).

Every other e2e test names its pool with ``CONDOR_HOST``. Here a pilot gets no
``CONDOR_HOST`` and no ``POOL`` (the default, ``ospool``, every real site uses) and
joins two central managers that answer to the production names
``cm-1/cm-2.ospool.osg-htc.org`` and ``ccb-1/ccb-2.ospool.osg-htc.org``: each is a
CM container on the test network (``tests/support/pool.py``, ShapedPool) whose name
is mapped in every container's /etc/hosts, with no working nameserver, so nothing
can resolve to the real hosts. Each CM runs a sub-collector per ``?sock=collectorN``
(N in 1..10) behind the shared port, forwarding to its main collector, and those
sub-collectors are the CCB servers. One token minted by CM 1 is accepted by both.

Needs podman and the built image; skipped with the reason otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

import pool
import pytest
from conftest import Pilots, container_marks, wait_status

pytestmark = container_marks()

JobStatus = pool.JobStatus


def _ccb_contacts(ad: dict[str, object]) -> list[tuple[str, str]]:
    """(address, sock) of each CCB server in the slot's address: ``CCBID=`` holds the
    servers' own sinful strings, URL-quoted and space-separated, each ``#<id>``."""
    found = re.search(r"CCBID=([^&>]*)", str(ad.get("MyAddress", "")))
    assert found, f"no CCB contact in MyAddress {ad.get('MyAddress')!r}"
    contacts = []
    for contact in unquote(found.group(1)).split():
        server = re.fullmatch(r"([\d.]+):9618\?(.*)#\d+", contact)
        assert server, f"CCB contact {contact!r}"
        sock = re.search(r"(?:^|&)sock=([^&]+)", server.group(2))
        contacts.append((server.group(1), sock.group(1) if sock else ""))
    return contacts


@pytest.fixture(scope="module")
def ospool(podman_service: pool.PodmanService) -> Iterator[pool.ShapedPool]:
    del podman_service
    with pool.ShapedPool.start(shape=pool.OSPOOL_SHAPE) as p:
        yield p
        print(f"\nshaped pool timings: {pool.describe_timings(p.timings)}")


@pytest.fixture
def ospool_pilots(ospool: pool.ShapedPool, request: pytest.FixtureRequest) -> Iterator[Pilots]:
    made = Pilots(ospool)
    yield made
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for pilot in made.started:
            print(f"\n--- pilot {pilot.name} output ---\n{pilot.logs()[-6000:]}")
    made.remove_all()


def test_a_pilot_with_the_default_pool_joins_both_ospool_cms_and_runs_a_job_through_ccb(
    ospool: pool.ShapedPool, ospool_pilots: Pilots
) -> None:
    """With neither POOL nor CONDOR_HOST, the pilot advertises its slot to both
    production CM names through one ``?sock=collectorN`` sub-collector on each (the
    slot is in both CMs' main collectors, in sub-collector N and not in another one),
    registers with CCB at ccb-1/ccb-2 on the same socket, publishes OSPool = true and
    GLIDECLIENT_Group = main-container, and a job submitted on CM 1's schedd runs on
    it, the schedd reaching the startd through a CCB request."""
    pilot = ospool_pilots.start("ep-ospool", {"CONDOR_HOST": None}, slot_timeout=90)
    assert "POOL" not in pilot.env and "CONDOR_HOST" not in pilot.env
    resolv = pilot.exec(["cat", "/etc/resolv.conf"]).check("resolv.conf").stdout
    nameservers = re.findall(r"^nameserver\s+(\S+)", resolv, re.MULTILINE)
    assert nameservers == [pool.NO_DNS], resolv
    ad = pilot.pslot()
    assert ad["OSPool"] is True
    assert ad["GLIDECLIENT_Group"] == "main-container"
    # Registered with CCB at ccb-1 and ccb-2 (their addresses), on one collectorN of each.
    contacts = _ccb_contacts(ad)
    ccb_addresses = sorted(ospool.hosts[h] for h in pool.OSPOOL_SHAPE.ccb_hosts)
    assert sorted(address for address, _ in contacts) == ccb_addresses, contacts
    socks = {sock for _, sock in contacts}
    assert len(socks) == 1, contacts
    sock = socks.pop()
    assert re.fullmatch(r"collector([1-9]|10)", sock), sock

    constraint = f'OSPOOL_EP_PILOT_UUID == "{pilot.uuid}" && PartitionableSlot =?= true'
    other = "collector1" if sock != "collector1" else "collector2"
    for name in pool.OSPOOL_SHAPE.central_managers:
        cm = ospool.cm_named(name)
        assert ospool.collector_ads("slot", constraint, on=cm), f"slot not in {name}"
        direct = ospool.collector_ads("slot", constraint, pool=f"{name}:9618?sock={sock}", on=cm)
        assert direct, f"slot not in {name}?sock={sock}"
        assert not ospool.collector_ads(
            "slot", constraint, pool=f"{name}:9618?sock={other}", on=cm
        ), f"slot also in {name}?sock={other}: the sockets are not separate collectors"

    def ccb_requests() -> int:
        total = 0
        for name in pool.OSPOOL_SHAPE.central_managers:
            (collector,) = ospool.collector_ads(
                "collector",
                projection=("CCBRequests",),
                pool=f"{name}:9618?sock={sock}",
                on=ospool.cm_named(name),
            )
            total += int(collector.get("CCBRequests", 0))
        return total

    before = ccb_requests()
    cluster = pilot.submit({"executable": "/bin/echo", "arguments": "hello from the OSPool"})
    seconds = wait_status(ospool, cluster, JobStatus.COMPLETED, timeout=90)
    print(f"\nep-ospool: slot {pilot.slot_seconds} s, job completed {seconds} s, {sock}")
    assert ospool.job_output(cluster) == "hello from the OSPool\n"
    assert ccb_requests() > before, "the schedd reached the startd without CCB"


@pytest.mark.parametrize(
    ("pool_name", "shape", "group", "ccb_socks"),
    [
        ("itb-ospool", pool.ITB_SHAPE, "itb-container", range(1, 11)),
        ("prod-path-facility", pool.PATH_SHAPE, "path-container", range(9620, 9625)),
    ],
)
def test_a_pilot_naming_the_itb_or_path_pool_joins_its_central_managers(
    podman_service: pool.PodmanService,
    pool_name: str,
    shape: pool.PoolShape,
    group: str,
    ccb_socks: range,
) -> None:
    """With POOL=itb-ospool or POOL=prod-path-facility (and no CONDOR_HOST), the
    pilot's slot appears in both of that pool's CMs, answering to their production
    names, with the pool's GLIDECLIENT_Group and OSPool = false, registered with CCB
    on one collectorN of each CM (the PATh CMs are their own CCB, collector9620..9624)."""
    del podman_service
    with pool.ShapedPool.start(shape=shape) as shaped:
        made = Pilots(shaped)
        try:
            pilot = made.start(
                "ep-shape", {"CONDOR_HOST": None, "POOL": pool_name}, slot_timeout=90
            )
        except AssertionError:
            print(shaped.cm_logs())
            raise
        ad = pilot.pslot()
        assert ad["GLIDECLIENT_Group"] == group
        assert ad["OSPool"] is False
        contacts = _ccb_contacts(ad)
        cm_addresses = sorted(shaped.hosts[n] for n in shape.central_managers)
        assert sorted(address for address, _ in contacts) == cm_addresses, contacts
        (sock,) = {sock for _, sock in contacts}
        assert int(sock.removeprefix("collector")) in ccb_socks, sock
        constraint = f'OSPOOL_EP_PILOT_UUID == "{pilot.uuid}" && PartitionableSlot =?= true'
        for name in shape.central_managers:
            assert shaped.collector_ads("slot", constraint, on=shaped.cm_named(name)), name
        print(f"\n{pool_name}: slot {pilot.slot_seconds} s, CCB on {sock}")
        made.remove_all()
