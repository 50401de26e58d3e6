"""Contracts of ospool_ep.detect.offer: the CPUs and memory the pilot advertises (SPEC 8).

The offer is the site's NUM_CPUS/MEMORY capped at the tightest detected limit,
less the memory kept for the pilot's own daemons; limits are built by hand or
detected from the real fixture trees of tests/host_trees.py.
"""

from __future__ import annotations

import pytest
from host_trees import fixture, kubernetes, limits, offer, only

from ospool_ep.detect.limits import (
    KUBERNETES_CPU_VARIABLE,
    KUBERNETES_MEMORY_VARIABLE,
    detect_limits,
)
from ospool_ep.detect.offer import Offer
from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Kind, Status

# --------------------------------------------------------------------------- the offer


@pytest.mark.parametrize(
    ("overrides", "cpus", "source"),
    [
        ({}, 64, "host"),
        ({"cpu_quota": 2.5}, 2, "quota"),
        ({"cpu_quota": 0.5}, 1, "quota"),
        ({"cpu_quota": 8.0, "cpuset_cpus": 3}, 3, "cpuset"),
        ({"cpu_quota": 8.0, "cpuset_cpus": 6, "affinity_cpus": 5}, 5, "affinity"),
        ({"cpu_quota": 8.0, "cpuset_cpus": 6, "affinity_cpus": 5, "slurm_cpus": 4}, 4, "Slurm"),
        ({"cpu_quota": 8.0, "kubernetes_cpus": 3.9}, 3, "Kubernetes"),
        ({"kubernetes_cpus": 0.25}, 1, "Kubernetes"),
        ({"cpuset_cpus": 128, "host_cpus": 16}, 16, "host"),
    ],
)
def test_the_cpu_limit_is_the_smallest_of_everything_detected(
    overrides: dict[str, object], cpus: int, source: str
) -> None:
    """min(quota floored but at least 1, cpuset, affinity, Slurm, host), named in the PASS."""
    result, findings = offer(limits(**overrides))
    assert result.cpus == cpus
    passed = only(findings, "CPUs")
    assert passed.status is Status.PASS
    assert f"offering {cpus} CPU" in passed.message
    assert source in passed.message


@pytest.mark.parametrize(
    ("overrides", "limit", "source"),
    [
        ({}, 262144, "host"),
        ({"memory_limit_mb": 4096}, 4096, "cgroup"),
        ({"memory_limit_mb": 4096, "slurm_memory_mb": 3000}, 3000, "Slurm"),
        ({"memory_limit_mb": 4096, "kubernetes_memory_mb": 3500}, 3500, "Kubernetes"),
        ({"memory_limit_mb": 999999, "host_memory_mb": 2048}, 2048, "host"),
    ],
)
def test_without_memory_the_offer_is_the_smallest_limit_less_the_overhead(
    overrides: dict[str, object], limit: int, source: str
) -> None:
    """MEMORY unset: offer min(cgroup, Slurm, host) - MEMORY_OVERHEAD_MB, said in a PASS."""
    result, findings = offer(limits(**overrides), overhead_mb=100)
    assert result.memory_mb == limit - 100
    passed = only(findings, "memory")
    assert passed.status is Status.PASS
    assert f"offering {limit - 100} MB" in passed.message
    assert source in passed.message
    assert not [f for f in findings if f.status is not Status.PASS]


def test_num_cpus_above_the_limit_is_a_warning_and_is_capped() -> None:
    """NUM_CPUS=8 in a --cpus 2 container offers 2, warning with the limit, source and fix."""
    host = detect_limits(root=fixture("v2_limited"), environ={})
    result, findings = offer(host, num_cpus=8)
    assert result.cpus == 2
    warning = only(findings, "NUM_CPUS")
    assert warning.status is Status.WARN
    assert "NUM_CPUS=8" in warning.message
    assert "2 CPUs" in warning.message
    assert "CPU quota" in warning.message
    assert "lower NUM_CPUS" in warning.fix
    assert "--cpus" in warning.fix
    assert findings.exit_code() is ExitCode.OK


def test_num_cpus_at_or_below_the_limit_is_offered_as_asked() -> None:
    """NUM_CPUS within the limit is used unchanged, with no warning."""
    result, findings = offer(limits(cpuset_cpus=8), num_cpus=3)
    assert result.cpus == 3
    assert [f.status for f in findings] == [Status.PASS, Status.PASS]
    assert "NUM_CPUS=3" in only(findings, "CPUs").message


def test_num_cpus_above_a_slurm_allocation_names_the_slurm_fix() -> None:
    """When Slurm is the tightest bound, the fix says how to ask Slurm for more."""
    result, findings = offer(limits(slurm_cpus=4), num_cpus=16)
    assert result.cpus == 4
    warning = only(findings, "NUM_CPUS")
    assert "Slurm" in warning.message
    assert "--cpus-per-task" in warning.fix


def test_memory_above_the_limit_less_overhead_is_a_warning_and_is_capped() -> None:
    """MEMORY=4096 in a 4 GiB container with 100 MB overhead offers 3996: an overcommitted
    pilot is OOM-killed with all its jobs."""
    host = detect_limits(root=fixture("v2_limited"), environ={})
    result, findings = offer(host, memory_mb=4096, overhead_mb=100)
    assert result.memory_mb == 3996
    warning = only(findings, "MEMORY")
    assert warning.status is Status.WARN
    assert "MEMORY=4096" in warning.message
    assert "3996 MB" in warning.message
    assert "OOM" in warning.message
    assert "lower MEMORY" in warning.fix
    assert "--memory" in warning.fix


def test_memory_within_the_limit_is_offered_as_asked() -> None:
    """MEMORY at most limit - overhead is used unchanged."""
    result, findings = offer(limits(memory_limit_mb=4096), memory_mb=3996, overhead_mb=100)
    assert result == Offer(cpus=64, memory_mb=3996)
    assert not [f for f in findings if f.status is not Status.PASS]


def test_a_container_smaller_than_the_overhead_is_an_environment_failure() -> None:
    """A 64 MB container cannot keep 100 MB for the daemons: FAIL memory, exit 69, 0 MB offered."""
    result, findings = offer(limits(memory_limit_mb=64), memory_mb=32, overhead_mb=100)
    assert result.memory_mb == 0
    failure = only(findings, "memory")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert "64 MB" in failure.message
    assert "MEMORY_OVERHEAD_MB" in failure.message
    assert "--memory" in failure.fix
    assert findings.exit_code() is ExitCode.UNAVAILABLE


def test_exactly_the_overhead_leaves_nothing_and_fails() -> None:
    """limit - overhead = 0 is not a usable slot; one MB more is."""
    assert offer(limits(memory_limit_mb=100), overhead_mb=100)[1].has_failures()
    result, findings = offer(limits(memory_limit_mb=101), overhead_mb=100)
    assert result.memory_mb == 1
    assert not findings.has_failures()


def test_fixture_trees_give_the_expected_offers() -> None:
    """Each tree, no NUM_CPUS/MEMORY, 100 MB overhead: the whole container less the overhead."""
    expected = {
        "v2_limited": Offer(cpus=2, memory_mb=3996),
        "v2_unlimited": Offer(cpus=16, memory_mb=32718568 // 1024 - 100),
        "v1_limited": Offer(cpus=1, memory_mb=1948),
        "v1_unlimited": Offer(cpus=2, memory_mb=24684092 // 1024 - 100),
        "v2_nested": Offer(cpus=4, memory_mb=6044),
        "v2_slurm_job": Offer(cpus=8, memory_mb=8092),
    }
    for name, want in expected.items():
        got, findings = offer(detect_limits(root=fixture(name), environ={}))
        assert got == want, name
        assert not findings.has_failures(), name


# --------------------------------------------------------------------------- Kubernetes


def test_kubernetes_limits_size_a_container_whose_cgroup_shows_no_limit() -> None:
    """A pod whose cgroup limits are not visible (v2_unlimited: ``max``) is still sized
    to its Kubernetes limits: CPUs floored, memory less the overhead, named in the PASS."""
    host = kubernetes({KUBERNETES_CPU_VARIABLE: "2500", KUBERNETES_MEMORY_VARIABLE: "4096"})
    result, findings = offer(host, overhead_mb=100)
    assert result == Offer(cpus=2, memory_mb=3996)
    assert "Kubernetes CPU limit (2.5 CPUs)" in only(findings, "CPUs").message
    assert "Kubernetes memory limit 4096 MB" in only(findings, "memory").message


def test_kubernetes_limits_join_the_minimum_with_the_cgroup_limits() -> None:
    """The smaller of the cgroup and the Kubernetes limits wins, either way round
    (v2_limited: 2 CPUs of quota, a 4 GiB memory.max)."""
    tighter = kubernetes(
        {KUBERNETES_CPU_VARIABLE: "1000", KUBERNETES_MEMORY_VARIABLE: "2048"}, "v2_limited"
    )
    assert offer(tighter)[0] == Offer(cpus=1, memory_mb=1948)
    looser = kubernetes(
        {KUBERNETES_CPU_VARIABLE: "8000", KUBERNETES_MEMORY_VARIABLE: "65536"}, "v2_limited"
    )
    assert offer(looser)[0] == Offer(cpus=2, memory_mb=3996)


def test_num_cpus_above_the_kubernetes_limit_names_the_manifest_fix() -> None:
    """NUM_CPUS=8 in a pod limited to 4 CPUs: WARN, capped, fix names resources.limits.cpu."""
    result, findings = offer(limits(kubernetes_cpus=4.0), num_cpus=8)
    assert result.cpus == 4
    warning = only(findings, "NUM_CPUS")
    assert warning.status is Status.WARN
    assert "Kubernetes CPU limit" in warning.message
    assert "resources.limits.cpu" in (warning.fix or "")
