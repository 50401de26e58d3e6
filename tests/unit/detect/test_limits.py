"""Contracts of ospool_ep.detect.limits: affinity, the host, Slurm and Kubernetes limits (SPEC 8).

Slurm and Kubernetes limits come from the environment (the job's, or what the
manifests set with the downward API: deploy/kubernetes/base/deployment.yaml),
read over the real fixture trees of tests/host_trees.py. Nothing is mocked.
"""

from __future__ import annotations

import pytest
from host_trees import fixture, kubernetes, mentions, offer

from ospool_ep.detect.limits import (
    KUBERNETES_CPU_VARIABLE,
    KUBERNETES_MEMORY_VARIABLE,
    HostLimits,
    detect_limits,
)


def test_an_explicit_affinity_count_is_taken_as_given() -> None:
    """The affinity parameter stands in for sched_getaffinity when reading a fixture tree."""
    host = detect_limits(root=fixture("v2_unlimited"), environ={}, affinity=3)
    assert host.affinity_cpus == 3
    assert mentions(host, "CPU affinity: 3 CPUs")


# --------------------------------------------------------------------------- Slurm


def slurm(environ: dict[str, str]) -> HostLimits:
    return detect_limits(root=fixture("v2_slurm_job"), environ=environ)


def test_slurm_cpus_on_node_and_mem_per_node_size_the_job() -> None:
    """SLURM_CPUS_ON_NODE and SLURM_MEM_PER_NODE (MB) are the allocation on this node."""
    host = slurm(
        {
            "SLURM_JOB_ID": "4242",
            "SLURM_CPUS_ON_NODE": "8",
            "SLURM_MEM_PER_NODE": "8192",
            "SLURM_JOB_CPUS_PER_NODE": "16(x2)",
            "SLURM_JOB_END_TIME": "1767225600",
        }
    )
    assert host.slurm_cpus == 8, "SLURM_CPUS_ON_NODE wins over SLURM_JOB_CPUS_PER_NODE"
    assert host.slurm_memory_mb == 8192
    assert host.slurm_end_time == 1767225600
    assert mentions(host, "SLURM_CPUS_ON_NODE", "8 CPUs")
    assert mentions(host, "SLURM_JOB_END_TIME")


@pytest.mark.parametrize(
    ("value", "cpus"),
    [("4", 4), ("4(x2)", 4), ("72(x2),36", 72), ("12,8,8", 12)],
)
def test_slurm_job_cpus_per_node_first_value_is_this_nodes(value: str, cpus: int) -> None:
    """Without SLURM_CPUS_ON_NODE, the first count of SLURM_JOB_CPUS_PER_NODE is used."""
    host = slurm({"SLURM_JOB_CPUS_PER_NODE": value})
    assert host.slurm_cpus == cpus


def test_slurm_mem_per_cpu_is_multiplied_by_the_cpus() -> None:
    """--mem-per-cpu=2000 on 4 CPUs is 8000 MB for the node."""
    host = slurm({"SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_CPU": "2000"})
    assert host.slurm_memory_mb == 8000
    assert mentions(host, "SLURM_MEM_PER_CPU", "8000 MB")


def test_slurm_mem_per_cpu_without_a_cpu_count_is_unknown() -> None:
    """SLURM_MEM_PER_CPU alone cannot size the node: unknown, and said so."""
    host = slurm({"SLURM_MEM_PER_CPU": "2000"})
    assert host.slurm_memory_mb is None
    assert mentions(host, "SLURM_MEM_PER_CPU", "unknown")


def test_garbled_or_zero_slurm_values_are_unknown() -> None:
    """Non-numbers are noted and ignored; --mem=0 ("all of the node") is no limit of its own."""
    host = slurm(
        {
            "SLURM_CPUS_ON_NODE": "four",
            "SLURM_JOB_CPUS_PER_NODE": "lots(x2)",
            "SLURM_MEM_PER_NODE": "0",
            "SLURM_JOB_END_TIME": "soon",
        }
    )
    assert host.slurm_cpus is None
    assert host.slurm_memory_mb is None
    assert host.slurm_end_time is None
    assert mentions(host, "SLURM_CPUS_ON_NODE", "not a number")
    assert mentions(host, "SLURM_JOB_CPUS_PER_NODE", "garbled")
    assert mentions(host, "SLURM_JOB_END_TIME", "not a number")


def test_no_slurm_environment_means_no_slurm_limits() -> None:
    """Outside Slurm every slurm_* field is None."""
    host = slurm({"HOME": "/root"})
    assert (host.slurm_cpus, host.slurm_memory_mb, host.slurm_end_time) == (None, None, None)


# --------------------------------------------------------------------------- Kubernetes


def test_kubernetes_downward_api_limits_are_read_in_millicores_and_mib() -> None:
    """limits.cpu with divisor 1m and limits.memory with divisor 1Mi, as the manifests set them."""
    host = kubernetes({KUBERNETES_CPU_VARIABLE: "2500", KUBERNETES_MEMORY_VARIABLE: "4096"})
    assert host.kubernetes_cpus == 2.5
    assert host.kubernetes_memory_mb == 4096
    assert mentions(host, KUBERNETES_CPU_VARIABLE, "2.5 CPUs")
    assert mentions(host, KUBERNETES_MEMORY_VARIABLE, "4096 MB")


@pytest.mark.parametrize(
    ("cpu", "memory", "why"),
    [
        ("2.5", "4Gi", "quantities instead of numbers: the divisor was forgotten"),
        ("0", "0", "no limit is never 0 in the downward API"),
        ("-1", " ", "negative, and blank"),
    ],
)
def test_garbled_or_zero_kubernetes_values_are_unknown_and_noted(
    cpu: str, memory: str, why: str
) -> None:
    """Anything but a positive integer is ignored (noted unless blank), never guessed at."""
    host = kubernetes({KUBERNETES_CPU_VARIABLE: cpu, KUBERNETES_MEMORY_VARIABLE: memory})
    assert (host.kubernetes_cpus, host.kubernetes_memory_mb) == (None, None), why
    assert mentions(host, "Kubernetes", KUBERNETES_CPU_VARIABLE), why
    if memory.strip():
        assert mentions(host, "Kubernetes", KUBERNETES_MEMORY_VARIABLE), why


def test_outside_kubernetes_there_are_no_kubernetes_limits() -> None:
    """Without the variables both fields are None and nothing is noted."""
    host = kubernetes({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert (host.kubernetes_cpus, host.kubernetes_memory_mb) == (None, None)
    assert not mentions(host, "Kubernetes")


# --------------------------------------------------------------------------- this machine


def test_the_real_root_gives_sane_values(capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever this machine is, detection from "/" finds at least 1 CPU and some memory."""
    host = detect_limits(environ={})
    assert host.host_cpus >= 1
    assert host.host_memory_mb > 0
    assert host.affinity_cpus is not None
    assert host.affinity_cpus >= 1
    assert host.sources
    result, findings = offer(host, overhead_mb=100)
    assert result.cpus >= 1
    assert result.memory_mb > 0
    assert not findings.has_failures()
    with capsys.disabled():
        print("\nreal root:", host)
        print("offer:", result)
