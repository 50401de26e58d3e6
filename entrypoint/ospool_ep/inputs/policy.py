"""Policy: the START expression, the pilot's lifetime and its name (SPEC 6.2, 6.3).

Pure functions of validated settings and facts passed in (clock, randomness,
hostname), so every rule is unit-tested with the real ClassAd evaluator and no
HTCondor daemons.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass

LONG_JOB_MIN_SECONDS = 40 * 3600
"""A job of ``JobDurationCategory == "Long"`` starts only with this long left before ToDie."""
GPU_RESERVED_CPUS = 8
GPU_RESERVED_MEMORY_MB = 32 * 1024
"""Per unclaimed GPU, CPUs and memory kept back so a GPU job can still fit."""
RETIRE_SPREAD_MAX_SECONDS = 15 * 60
RETIRE_SPREAD_FRACTION = 0.02
"""ToRetire is moved earlier by up to this share of the accepting window (at most
15 minutes) so a fleet started together does not retire together."""


def start_expression() -> str:
    """The machine's START: every term must hold for a job to start here.

    The terms of OSG's container (its 50-main.config), with the site's own parts
    referenced as the machine-ad attributes the pool sees: ``START_EXTRA`` (always
    published) and ``OSG_PROJECT_RESTRICTION`` (published with ``OSG_PROJECT_NAME``).
    Upstream writes ``(START_EXTRA ?: true)``, which lets a job in when the site's
    expression is undefined for it; here an undefined START_EXTRA keeps the job off,
    as the site's restriction did before it was an attribute.
    """
    terms = [
        "time() < MY.GLIDEIN_ToRetire",
        '(TARGET.JobDurationCategory =!= "Long"'
        f" || MY.GLIDEIN_ToDie - time() > {LONG_JOB_MIN_SECONDS})",
        "(MY.OSG_NODE_VALIDATED =?= true)",
        # A job may name the sites it wants or shuns (comma-separated GLIDEIN_Site
        # names; stringListMember is case-sensitive, as upstream's).
        "(TARGET.DESIRED_Sites =?= undefined"
        ' || stringListMember(MY.GLIDEIN_Site, TARGET.DESIRED_Sites, ","))',
        "(TARGET.UNDESIRED_Sites =?= undefined"
        ' || !stringListMember(MY.GLIDEIN_Site, TARGET.UNDESIRED_Sites, ","))',
        # The OSPool accounts every job to a project: jobs without one are not served.
        "!isUndefined(TARGET.ProjectName)",
        # On a GPU machine CPU-only jobs fill the CPUs only while enough stay
        # free for the remaining GPUs to be usable.
        "((MY.GPUs ?: 0) == 0 || (TARGET.RequestGPUs ?: 0) > 0 || "
        f"(MY.Cpus > {GPU_RESERVED_CPUS} * MY.GPUs && "
        f"MY.Memory > {GPU_RESERVED_MEMORY_MB} * MY.GPUs))",
        "(TARGET.Want_MPI =!= true || MY.Has_MPI =?= true)",
        "(MY.START_EXTRA)",
        "(MY.OSG_PROJECT_RESTRICTION ?: true)",
    ]
    return " && ".join(terms)


def start_extra(expression: str, *, itb_sites: bool | None) -> str:
    """``START_EXTRA`` as upstream publishes it: the site's ``GLIDEIN_Start_Extra``
    (validated, one expression), then the pool's ITB clause: the ITB OSPool admits only
    jobs that ask for ITB sites, the production one keeps them off (``itb_sites`` None:
    no clause)."""
    parts = [f"({expression})"]
    if itb_sites is True:
        parts.append("(TARGET.ITB_Sites =?= true)")
    elif itb_sites is False:
        parts.append("(TARGET.ITB_Sites =!= true)")
    return " && ".join(parts)


PROJECT_RESTRICTION = "TARGET.ProjectName =?= MY.OSG_PROJECT_NAME"
"""``OSG_PROJECT_RESTRICTION`` with ``OSG_PROJECT_NAME`` set, as osg-flock's
advertise-base publishes it (case-sensitive, like the project's accounting name)."""

OSPOOL_COLLECTOR = "cm-1.ospool.osg-htc.org"
OSPOOL_GROUP = "main-container"
_RESTRICTS_WHO = re.compile("owner|project", re.IGNORECASE)


def is_ospool(
    *, collector_host: str, group: str, start_extra: str, project_name: str | None
) -> bool:
    """``OSPool`` as osg-flock's advertise-base decides it for a container pilot: True
    only for a pilot of the production OSPool that serves everyone's fair share, so
    not one restricted to a project, or whose GLIDEIN_Start_Extra names an owner or a
    project (upstream looks at the text only, without evaluating it)."""
    return (
        OSPOOL_COLLECTOR in collector_host
        and group == OSPOOL_GROUP
        and not project_name
        and _RESTRICTS_WHO.search(start_extra) is None
    )


@dataclass(frozen=True, slots=True)
class Lifetime:
    start: int
    to_retire: int
    """After this, no new jobs start (epoch seconds)."""
    to_die: int
    """By this, running jobs are evicted and the pilot is gone."""
    capped_by: tuple[str, ...]
    """Why the plain hours were shortened: "PILOT_WALLTIME", "Slurm job end", "token expiry"."""


def plan_lifetime(
    *,
    start: float,
    accept_jobs_for_hours: int,
    retirement_hours: int,
    walltime_seconds: int | None,
    job_end_time: int | None,
    token_expiry: int | None,
    grace_seconds: int,
    rng: random.Random,
) -> Lifetime:
    """ToRetire and ToDie from the hours, capped by every hard end that applies.

    A hard end (walltime, batch job end, token expiry) is when the pilot will be
    killed or can no longer talk to the pool; the pilot must be gone a grace
    period before it. When capped, the remaining life is split: retirement gets
    at most half, so a short batch job still accepts work for half its life.
    """
    now = int(start)
    to_retire = now + accept_jobs_for_hours * 3600
    to_die = to_retire + retirement_hours * 3600
    hard_ends = {
        "PILOT_WALLTIME": now + walltime_seconds if walltime_seconds else None,
        "Slurm job end": job_end_time,
        "token expiry": token_expiry,
    }
    capped_by = []
    for reason, end in hard_ends.items():
        if end is not None and end - grace_seconds < to_die:
            capped_by.append(reason)
            to_die = max(now, end - grace_seconds)
    if capped_by:
        retirement = min(retirement_hours * 3600, (to_die - now) // 2)
        to_retire = min(to_retire, to_die - retirement)
    spread = int(min(RETIRE_SPREAD_MAX_SECONDS, (to_retire - now) * RETIRE_SPREAD_FRACTION))
    to_retire -= rng.randint(0, max(0, spread))
    return Lifetime(now, to_retire, to_die, tuple(capped_by))


def sanitize_name(text: str) -> str:
    """A DNS-label-like form: runs of other characters become one '-', at most 63 long."""
    cleaned = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip(".-")[:63].strip(".-")
    return cleaned or "pilot"


def pilot_name(*, resource_name: str, hostname: str, randomize: bool, rng: random.Random) -> str:
    """The name the pilot's daemons use (``NETWORK_HOSTNAME``), as upstream forms it:
    ``<resource>[.<10 hex>].<host>``; slots appear as ``slot1@<name>``."""
    parts = [sanitize_name(resource_name)]
    if randomize:
        parts.append(f"{rng.getrandbits(40):010x}")
    parts.append(sanitize_name(hostname))
    return ".".join(parts)


def pilot_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
