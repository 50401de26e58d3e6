"""START, lifetime and naming policy, evaluated with HTCondor's real ClassAd library."""

from __future__ import annotations

import random
import time

import classad2
import pytest

from ospool_ep.inputs import policy

HOUR = 3600
NOW = int(time.time())


def machine(**attrs: object) -> classad2.ClassAd:
    """A partitionable slot ad as the startd publishes it, with the given overrides."""
    ad = classad2.ClassAd(
        {
            "GLIDEIN_ToRetire": NOW + 10 * HOUR,
            "GLIDEIN_ToDie": NOW + 100 * HOUR,
            "OSG_NODE_VALIDATED": True,
            "Cpus": 16,
            "Memory": 64000,
            "GPUs": 0,
        }
    )
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


def start(*, extra: str = "True", project: str | None = None, itb: bool | None = None) -> str:
    return policy.start_expression(start_extra=extra, project_name=project, pool_itb=itb)


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
    expression = start(extra='TARGET.Owner =!= "mallory"')
    assert starts(expression, machine(), job(Owner="alice"))
    assert not starts(expression, machine(), job(Owner="mallory"))


def test_project_restriction_admits_only_that_project() -> None:
    expression = start(project="Chemistry")
    assert starts(expression, machine(), job(ProjectName="Chemistry"))
    assert not starts(expression, machine(), job(ProjectName="Physics"))


def test_project_restriction_refuses_a_job_without_a_project() -> None:
    candidate = job()
    del candidate["ProjectName"]
    assert not starts(start(project="Chemistry"), machine(), candidate)


def test_production_pilots_refuse_itb_only_jobs_and_itb_pilots_want_them() -> None:
    assert not starts(start(itb=False), machine(), job(ITB_Sites=True))
    assert starts(start(itb=False), machine(), job())
    assert starts(start(itb=True), machine(), job(ITB_Sites=True))
    assert not starts(start(itb=True), machine(), job())


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
