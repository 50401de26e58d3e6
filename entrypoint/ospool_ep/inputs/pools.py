"""The pools a pilot can join: central managers and CCB addresses per ``POOL`` (SPEC 6.1).

Pure data and one pure function. Randomness (which collector socket a pilot
uses) comes from a caller-supplied ``random.Random`` so tests are repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolDefinition:
    central_managers: tuple[str, ...]
    ccb_hosts: tuple[str, ...] = ()
    sock_range: tuple[int, int] | None = None
    """Collector socket numbers ``sock=collectorN`` picked at random, to spread
    a fleet over the collector's sub-collectors."""
    sock_port: str = ""
    """``:port`` put before ``?sock=`` (the PATh facility names it explicitly)."""
    itb: bool = False
    group: str = ""
    """``GLIDECLIENT_Group``, as OSG's container names its pilots per pool."""
    itb_sites: bool | None = None
    """START_EXTRA's ITB clause: True admits only jobs with ``ITB_Sites``, False keeps
    them off, None (the PATh pools) has no clause."""


POOLS: dict[str, PoolDefinition] = {
    "prod-ospool": PoolDefinition(
        central_managers=("cm-1.ospool.osg-htc.org", "cm-2.ospool.osg-htc.org"),
        ccb_hosts=("ccb-1.ospool.osg-htc.org", "ccb-2.ospool.osg-htc.org"),
        sock_range=(1, 10),
        group="main-container",
        itb_sites=False,
    ),
    "itb-ospool": PoolDefinition(
        central_managers=("cm-1.ospool-itb.osg-htc.org", "cm-2.ospool-itb.osg-htc.org"),
        ccb_hosts=("ccb-1.ospool-itb.osg-htc.org", "ccb-2.ospool-itb.osg-htc.org"),
        sock_range=(1, 10),
        itb=True,
        group="itb-container",
        itb_sites=True,
    ),
    "prod-path-facility": PoolDefinition(
        central_managers=("cm-1.facility.path-cc.io", "cm-2.facility.path-cc.io"),
        sock_range=(9620, 9624),
        sock_port=":9618",
        group="path-container",
    ),
    # The upstream container lists a second, river-hosted CM for the dev facility, and
    # gives both PATh pools the same CCB: each CM on a random collector962N socket.
    "dev-path-facility": PoolDefinition(
        central_managers=(
            "htcondor-cm-path.osgdev.chtc.io",
            "htcondor-cm-path.osg-dev.river.chtc.io",
        ),
        sock_range=(9620, 9624),
        sock_port=":9618",
        group="path-container",
    ),
}

POOL_NAMES = ("ospool", *POOLS)


@dataclass(frozen=True)
class PoolEndpoints:
    name: str
    """The canonical pool name, or ``custom`` for a host or ``CONDOR_HOST``."""
    collector_host: str
    """Value for ``CONDOR_HOST``/``COLLECTOR_HOST``: comma-separated."""
    ccb_address: str
    """Value for ``CCB_ADDRESS``; empty when the pool has no CCB."""
    itb: bool
    group: str = ""
    """``GLIDECLIENT_Group``: from ``POOL``, also when ``CONDOR_HOST`` replaces its CMs
    (as upstream); empty for a custom host."""
    itb_sites: bool | None = None
    """START_EXTRA's ITB clause (:attr:`PoolDefinition.itb_sites`), also from ``POOL``."""


def canonical_pool_name(pool: str, *, itb: bool) -> str | None:
    """The POOLS key for a ``POOL`` value, or None for a custom host.

    ``ospool`` means production, or ITB when ``ITB`` is true (upstream behaviour).
    """
    key = pool.lower()
    if key == "ospool":
        return "itb-ospool" if itb else "prod-ospool"
    return key if key in POOLS else None


def resolve_pool(
    *, pool: str, itb: bool, condor_host: str | None, rng: random.Random
) -> PoolEndpoints:
    """Collector and CCB addresses for the validated ``POOL``/``ITB``/``CONDOR_HOST``.

    ``CONDOR_HOST`` replaces the pool's central managers (and then no CCB is
    assumed, as upstream does); a ``POOL`` that is no known name is a host. The
    pool's group and ITB clause follow ``POOL`` even then: upstream sets them from
    ``POOL`` before it looks at ``CONDOR_HOST``.
    """
    name = canonical_pool_name(pool, itb=itb)
    definition = POOLS[name] if name is not None else PoolDefinition(central_managers=())
    group, itb_sites = definition.group, definition.itb_sites
    if condor_host or name is None:
        return PoolEndpoints("custom", condor_host or pool, "", itb, group, itb_sites)
    suffix = ""
    if definition.sock_range:
        low, high = definition.sock_range
        suffix = f"{definition.sock_port}?sock=collector{rng.randint(low, high)}"
    if definition.ccb_hosts:
        # OSPool: the same collector socket on the CMs and on the CCBs.
        collectors = ",".join(cm + suffix for cm in definition.central_managers)
        ccb = ",".join(host + suffix for host in definition.ccb_hosts)
    else:
        # PATh: the CMs themselves act as CCB, on a random collector socket.
        collectors = ",".join(definition.central_managers)
        ccb = ",".join(cm + suffix for cm in definition.central_managers) if suffix else ""
    return PoolEndpoints(name, collectors, ccb, itb or definition.itb, group, itb_sites)
