"""The pool table by value: every ``POOL``/``ITB``/``CONDOR_HOST`` combination resolves to
exactly the collector and CCB addresses SPEC 6.1 lists, and ``custom`` names any host.

The collector socket is random; a ``random.Random`` that always draws one number (and
records the range asked for) makes each address exact.
"""

from __future__ import annotations

import random

import pytest

from ospool_ep.inputs import pools
from ospool_ep.inputs.pools import PoolDefinition, PoolEndpoints, resolve_pool


class Draw(random.Random):
    """Draws ``value`` from every ``randint`` and records the ranges asked for."""

    def __init__(self, value: int) -> None:
        super().__init__(0)
        self.value = value
        self.ranges: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.ranges.append((a, b))
        return self.value


E = PoolEndpoints
OSPOOL_CMS = "cm-1.ospool.osg-htc.org?sock=collector7,cm-2.ospool.osg-htc.org?sock=collector7"
OSPOOL_CCBS = "ccb-1.ospool.osg-htc.org?sock=collector7,ccb-2.ospool.osg-htc.org?sock=collector7"
ITB_CMS = "cm-1.ospool-itb.osg-htc.org?sock=collector7,cm-2.ospool-itb.osg-htc.org?sock=collector7"
ITB_CCBS = (
    "ccb-1.ospool-itb.osg-htc.org?sock=collector7,ccb-2.ospool-itb.osg-htc.org?sock=collector7"
)
PATH_CMS = "cm-1.facility.path-cc.io,cm-2.facility.path-cc.io"
PATH_CCBS = (
    "cm-1.facility.path-cc.io:9618?sock=collector9622,"
    "cm-2.facility.path-cc.io:9618?sock=collector9622"
)
DEV_CMS = "htcondor-cm-path.osgdev.chtc.io,htcondor-cm-path.osg-dev.river.chtc.io"
DEV_CCBS = (
    "htcondor-cm-path.osgdev.chtc.io:9618?sock=collector9621,"
    "htcondor-cm-path.osg-dev.river.chtc.io:9618?sock=collector9621"
)
MAIN, ITB, PATH = "main-container", "itb-container", "path-container"


@pytest.mark.parametrize(
    ("pool", "itb", "draw", "expected"),
    [
        ("ospool", False, 7, E("prod-ospool", OSPOOL_CMS, OSPOOL_CCBS, False, MAIN, False)),
        ("prod-ospool", False, 7, E("prod-ospool", OSPOOL_CMS, OSPOOL_CCBS, False, MAIN, False)),
        ("PROD-OSPOOL", False, 7, E("prod-ospool", OSPOOL_CMS, OSPOOL_CCBS, False, MAIN, False)),
        ("ospool", True, 7, E("itb-ospool", ITB_CMS, ITB_CCBS, True, ITB, True)),
        ("itb-ospool", False, 7, E("itb-ospool", ITB_CMS, ITB_CCBS, True, ITB, True)),
        (
            "prod-path-facility",
            False,
            9622,
            E("prod-path-facility", PATH_CMS, PATH_CCBS, False, PATH),
        ),
        (
            "prod-path-facility",
            True,
            9622,
            E("prod-path-facility", PATH_CMS, PATH_CCBS, True, PATH),
        ),
        ("dev-path-facility", False, 9621, E("dev-path-facility", DEV_CMS, DEV_CCBS, False, PATH)),
        ("pool.example.org:9618", False, 0, E("custom", "pool.example.org:9618", "", False)),
        ("pool.example.org:9618", True, 0, E("custom", "pool.example.org:9618", "", True)),
    ],
)
def test_each_pool_resolves_to_exactly_the_addresses_of_the_spec_table(
    pool: str, itb: bool, draw: int, expected: PoolEndpoints
) -> None:
    """SPEC 6.1 row by row, with OSG's container where they differ (dev-path-facility:
    two CMs, each its own CCB, as prod-path-facility): the ITB flag is the pool's own or
    the site's ``ITB``; the group and the ITB_Sites clause are upstream's per pool; a
    ``POOL`` that names no known pool is a host, ``custom``, without CCB or group."""
    assert resolve_pool(pool=pool, itb=itb, condor_host=None, rng=Draw(draw)) == expected


@pytest.mark.parametrize(
    ("pool", "expected_range"),
    [
        ("ospool", (1, 10)),
        ("itb-ospool", (1, 10)),
        ("prod-path-facility", (9620, 9624)),
        ("dev-path-facility", (9620, 9624)),
    ],
)
def test_the_collector_socket_is_drawn_once_from_the_pools_range(
    pool: str, expected_range: tuple[int, int]
) -> None:
    rng = Draw(expected_range[0])
    resolve_pool(pool=pool, itb=False, condor_host=None, rng=rng)
    assert rng.ranges == [expected_range]


@pytest.mark.parametrize(("itb", "group", "itb_sites"), [(False, MAIN, False), (True, ITB, True)])
def test_condor_host_is_a_custom_pool_without_ccb_keeping_the_sites_itb_and_group(
    itb: bool, group: str, itb_sites: bool
) -> None:
    """Upstream names the group and the ITB clause from ``POOL`` before it reads
    ``CONDOR_HOST``: the CMs change, the group and the clause stay."""
    resolved = resolve_pool(pool="ospool", itb=itb, condor_host="a.b:9618,c.d", rng=Draw(1))
    assert resolved == PoolEndpoints("custom", "a.b:9618,c.d", "", itb, group, itb_sites)


def test_a_pool_with_ccbs_but_no_socket_range_uses_the_plain_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table row added later without ``sock_range`` still resolves (no ``?sock=``)."""
    monkeypatch.setitem(pools.POOLS, "plain", PoolDefinition(("cm-a", "cm-b"), ("ccb-a",)))
    resolved = resolve_pool(pool="plain", itb=False, condor_host=None, rng=Draw(1))
    assert resolved == PoolEndpoints("plain", "cm-a,cm-b", "ccb-a", False)
