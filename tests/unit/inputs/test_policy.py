"""START, lifetime and naming policy, evaluated with HTCondor's real ClassAd library."""

from __future__ import annotations

import importlib
import os
import random
import time
from collections.abc import Iterator

import classad2
import pytest

from ospool_ep.inputs import policy

HOUR = 3600
NOW = int(time.time())


@pytest.fixture(scope="module", autouse=True)
def _string_list_functions() -> Iterator[None]:
    """HTCondor's string-list functions (stringListMember, used by START) are registered
    by the htcondor2 module, as the startd has them; bare classad2 says error. Its
    import reads a configuration: an empty one, whatever the caller's CONDOR_CONFIG."""
    saved = os.environ.get("CONDOR_CONFIG")
    os.environ["CONDOR_CONFIG"] = os.devnull
    try:
        importlib.import_module("htcondor2")
    finally:
        if saved is None:
            del os.environ["CONDOR_CONFIG"]
        else:
            os.environ["CONDOR_CONFIG"] = saved
    yield


def machine(
    *, extra: str = "True", project: str | None = None, itb: bool | None = None, **attrs: object
) -> classad2.ClassAd:
    """A partitionable slot ad as the startd publishes it: START_EXTRA from ``extra``
    (GLIDEIN_Start_Extra) and the pool's ITB clause, the project restriction with
    ``project`` (OSG_PROJECT_NAME), as 60-attributes.conf renders them; then overrides."""
    ad = classad2.ClassAd(
        {
            "GLIDEIN_Site": "Wisconsin",
            "GLIDEIN_ToRetire": NOW + 10 * HOUR,
            "GLIDEIN_ToDie": NOW + 100 * HOUR,
            "OSG_NODE_VALIDATED": True,
            "Cpus": 16,
            "Memory": 64000,
            "GPUs": 0,
        }
    )
    ad["START_EXTRA"] = classad2.ExprTree(policy.start_extra(extra, itb_sites=itb))
    if project:
        ad["OSG_PROJECT_NAME"] = project
        ad["OSG_PROJECT_RESTRICTION"] = classad2.ExprTree(policy.PROJECT_RESTRICTION)
    for name, value in attrs.items():
        ad[name] = value
    return ad


def job(**attrs: object) -> classad2.ClassAd:
    ad = classad2.ClassAd(
        {"Owner": "alice", "ProjectName": "Chemistry", "RequestCpus": 1, "RequestMemory": 2000}
    )
    for name, value in attrs.items():
        ad[name] = value
    return ad


def starts(expression: str, slot: classad2.ClassAd, candidate: classad2.ClassAd) -> bool:
    """What the startd decides: START evaluated with MY = slot and TARGET = job."""
    return classad2.ExprTree(expression).eval(slot, candidate) is True


def start() -> str:
    return policy.start_expression()


def test_an_ordinary_job_starts_on_a_fresh_pilot() -> None:
    assert starts(start(), machine(), job())


def test_no_job_starts_after_to_retire() -> None:
    assert not starts(start(), machine(GLIDEIN_ToRetire=NOW - 1), job())


def test_a_node_that_failed_validation_starts_nothing() -> None:
    assert not starts(start(), machine(OSG_NODE_VALIDATED=False), job())


def test_a_node_without_the_validation_flag_starts_nothing() -> None:
    """START must not go true by accident while the flag is missing."""
    slot = machine()
    del slot["OSG_NODE_VALIDATED"]
    assert not starts(start(), slot, job())


@pytest.mark.parametrize(
    ("hours_left", "expected"),
    [(39, False), (41, True)],
    ids=["39h-left-refused", "41h-left-accepted"],
)
def test_a_long_job_starts_only_with_forty_hours_left(hours_left: int, expected: bool) -> None:
    slot = machine(GLIDEIN_ToDie=NOW + hours_left * HOUR)
    assert starts(start(), slot, job(JobDurationCategory="Long")) is expected


def test_short_jobs_ignore_the_long_job_guard() -> None:
    slot = machine(GLIDEIN_ToDie=NOW + 2 * HOUR)
    assert starts(start(), slot, job(JobDurationCategory="Medium"))


def test_start_extra_keeps_a_non_matching_job_out() -> None:
    slot = machine(extra='TARGET.Owner =!= "mallory"')
    assert starts(start(), slot, job(Owner="alice"))
    assert not starts(start(), slot, job(Owner="mallory"))


def test_a_start_extra_undefined_for_a_job_keeps_it_out() -> None:
    """Stricter than upstream's ``(START_EXTRA ?: true)``: a site's restriction that
    cannot be decided for a job does not let the job in."""
    slot = machine(extra="TARGET.WantsChemistry == true")
    assert not starts(start(), slot, job())
    assert starts(start(), slot, job(WantsChemistry=True))


def test_a_slot_without_start_extra_starts_nothing() -> None:
    slot = machine()
    del slot["START_EXTRA"]
    assert not starts(start(), slot, job())


def test_project_restriction_admits_only_that_project() -> None:
    slot = machine(project="Chemistry")
    assert starts(start(), slot, job(ProjectName="Chemistry"))
    assert not starts(start(), slot, job(ProjectName="Physics"))
    # Case-sensitive (=?=), as osg-flock's OSG_PROJECT_RESTRICTION.
    assert not starts(start(), slot, job(ProjectName="chemistry"))


def test_without_a_project_name_no_restriction_applies() -> None:
    assert starts(start(), machine(), job(ProjectName="Physics"))


def test_a_job_without_a_project_never_starts() -> None:
    """Upstream's ``!isUndefined(TARGET.ProjectName)``: with or without a restriction."""
    candidate = job()
    del candidate["ProjectName"]
    assert not starts(start(), machine(), candidate)
    assert not starts(start(), machine(project="Chemistry"), candidate)


def test_production_pilots_refuse_itb_only_jobs_and_itb_pilots_want_them() -> None:
    assert not starts(start(), machine(itb=False), job(ITB_Sites=True))
    assert starts(start(), machine(itb=False), job())
    assert starts(start(), machine(itb=True), job(ITB_Sites=True))
    assert not starts(start(), machine(itb=True), job())
    assert starts(start(), machine(itb=None), job(ITB_Sites=True))
    assert starts(start(), machine(itb=None), job())


@pytest.mark.parametrize(
    ("desired", "expected"),
    [("Wisconsin", True), ("Nebraska,Wisconsin", True), ("Nebraska", False), ("wisconsin", False)],
    ids=["this-site", "in-a-list", "other-site", "case-differs"],
)
def test_a_job_with_desired_sites_starts_only_at_one_of_them(desired: str, expected: bool) -> None:
    assert starts(start(), machine(), job(DESIRED_Sites=desired)) is expected


@pytest.mark.parametrize(
    ("undesired", "expected"),
    [("Wisconsin", False), ("Nebraska,Wisconsin", False), ("Nebraska", True)],
    ids=["this-site", "in-a-list", "other-site"],
)
def test_a_job_never_starts_at_an_undesired_site(undesired: str, expected: bool) -> None:
    assert starts(start(), machine(), job(UNDESIRED_Sites=undesired)) is expected


def test_jobs_without_site_lists_start_anywhere() -> None:
    assert starts(start(), machine(GLIDEIN_Site="Anywhere"), job())


@pytest.mark.parametrize(
    ("want_mpi", "has_mpi", "expected"),
    [(True, None, False), (True, False, False), (True, True, True), (False, None, True)],
    ids=["mpi-job-no-mpi", "mpi-job-mpi-false", "mpi-job-mpi-slot", "plain-job"],
)
def test_an_mpi_job_starts_only_where_mpi_is_advertised(
    want_mpi: bool, has_mpi: bool | None, expected: bool
) -> None:
    slot = machine() if has_mpi is None else machine(Has_MPI=has_mpi)
    assert starts(start(), slot, job(Want_MPI=want_mpi)) is expected


@pytest.mark.parametrize(
    ("collector", "group", "extra", "project", "expected"),
    [
        (
            "cm-1.ospool.osg-htc.org?sock=collector3,cm-2.ospool.osg-htc.org",
            "main-container",
            "True",
            None,
            True,
        ),
        ("cm-1.ospool.osg-htc.org", "main-container", 'TARGET.Owner == "alice"', None, False),
        ("cm-1.ospool.osg-htc.org", "main-container", 'TARGET.ProjectName == "X"', None, False),
        ("cm-1.ospool.osg-htc.org", "main-container", "True", "Chemistry", False),
        ("cm-1.ospool-itb.osg-htc.org", "itb-container", "True", None, False),
        ("cm-1.facility.path-cc.io", "path-container", "True", None, False),
        ("cm.example.edu", "main-container", "True", None, False),
        ("cm-1.ospool.osg-htc.org", "", "True", None, False),
    ],
    ids=["prod", "owner", "project-extra", "project", "itb", "path", "condor-host", "no-group"],
)
def test_ospool_is_true_only_for_unrestricted_production_pilots(
    collector: str, group: str, extra: str, project: str | None, expected: bool
) -> None:
    """osg-flock's advertise-base: the production CM, main-container, no restriction."""
    found = policy.is_ospool(
        collector_host=collector, group=group, start_extra=extra, project_name=project
    )
    assert found is expected


def test_a_gpu_job_starts_on_a_gpu_slot() -> None:
    slot = machine(GPUs=2, Cpus=4, Memory=16000)
    assert starts(start(), slot, job(RequestGPUs=1))


def test_a_cpu_only_job_is_refused_when_it_would_starve_the_gpus() -> None:
    """2 GPUs keep 16 CPUs and 64 GB back; with 12 CPUs left a CPU-only job waits."""
    slot = machine(GPUs=2, Cpus=12, Memory=200000)
    assert not starts(start(), slot, job())


def test_a_cpu_only_job_may_use_a_gpu_slot_with_room_to_spare() -> None:
    slot = machine(GPUs=2, Cpus=32, Memory=200000)
    assert starts(start(), slot, job())


def test_a_cpu_only_job_is_refused_when_gpu_memory_room_is_short() -> None:
    slot = machine(GPUs=1, Cpus=32, Memory=20000)
    assert not starts(start(), slot, job())


def test_a_cpu_only_job_runs_once_every_gpu_is_claimed() -> None:
    slot = machine(GPUs=0, TotalGPUs=2, Cpus=2, Memory=4000)
    assert starts(start(), slot, job())


def lifetime(**overrides: object) -> policy.Lifetime:
    arguments: dict[str, object] = {
        "start": NOW,
        "accept_jobs_for_hours": 336,
        "retirement_hours": 24,
        "walltime_seconds": None,
        "job_end_time": None,
        "token_expiry": None,
        "grace_seconds": 25,
        "rng": random.Random(7),
    }
    arguments.update(overrides)
    return policy.plan_lifetime(**arguments)  # type: ignore[arg-type]


def test_lifetime_follows_the_hours_when_nothing_caps_it() -> None:
    plan = lifetime()
    assert plan.to_die == NOW + 360 * HOUR
    assert NOW + 336 * HOUR - policy.RETIRE_SPREAD_MAX_SECONDS <= plan.to_retire <= NOW + 336 * HOUR
    assert plan.capped_by == ()


def test_the_retire_spread_differs_between_pilots_and_stays_small() -> None:
    retire_times = {lifetime(rng=random.Random(seed)).to_retire for seed in range(20)}
    assert len(retire_times) > 10
    assert max(retire_times) - min(retire_times) <= policy.RETIRE_SPREAD_MAX_SECONDS


def test_a_walltime_ends_the_pilot_a_grace_period_before_it() -> None:
    plan = lifetime(walltime_seconds=4 * HOUR, grace_seconds=60)
    assert plan.to_die == NOW + 4 * HOUR - 60
    assert plan.capped_by == ("PILOT_WALLTIME",)
    assert NOW < plan.to_retire <= plan.to_die - (plan.to_die - NOW) // 2


def test_the_batch_job_end_and_token_expiry_cap_the_lifetime_too() -> None:
    plan = lifetime(job_end_time=NOW + 10 * HOUR, token_expiry=NOW + 5 * HOUR)
    assert plan.to_die == NOW + 5 * HOUR - 25
    assert set(plan.capped_by) == {"Slurm job end", "token expiry"}


def test_a_far_away_cap_changes_nothing() -> None:
    plan = lifetime(token_expiry=NOW + 1000 * HOUR)
    assert plan.capped_by == ()
    assert plan.to_die == NOW + 360 * HOUR


def test_a_cap_already_passed_retires_at_once() -> None:
    plan = lifetime(token_expiry=NOW - HOUR)
    assert plan.to_retire <= plan.to_die == NOW


def test_retire_never_comes_after_die() -> None:
    for walltime in (30, 600, 7200, 86400, 10**7):
        plan = lifetime(walltime_seconds=walltime)
        assert NOW <= plan.to_retire <= plan.to_die


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("CHTC Backfill", "CHTC-Backfill"),
        ("--weird..name--", "weird..name"),
        ("a/b\\c$d", "a-b-c-d"),
        ("x" * 100, "x" * 63),
        ("!!!", "pilot"),
    ],
)
def test_pilot_names_are_sanitized_like_upstream(resource: str, expected: str) -> None:
    name = policy.pilot_name(
        resource_name=resource, hostname="host1", randomize=False, rng=random.Random(1)
    )
    assert name == f"{expected}.host1"


def test_randomized_names_differ_between_pilots() -> None:
    names = {
        policy.pilot_name(resource_name="R", hostname="h", randomize=True, rng=random.Random(seed))
        for seed in range(50)
    }
    assert len(names) == 50
    assert all(len(name.split(".")[1]) == 10 for name in names)


def test_pilot_uuids_are_version_4_and_repeatable_from_the_seed() -> None:
    first = policy.pilot_uuid(random.Random(3))
    assert first == policy.pilot_uuid(random.Random(3))
    assert first[14] == "4"
