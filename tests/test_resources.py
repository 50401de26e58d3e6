"""Contracts of ospool_ep.resources: detected limits, the offer, scratch space (SPEC 8).

Detection reads real fixture trees under tests/fixtures/cgroup/, each a copy of
what a process sees in /proc/self/{cgroup,mountinfo}, /proc/{cpuinfo,meminfo}
and /sys/fs/cgroup in one deployment:

* ``v2_limited``   podman/docker on a cgroup v2 distribution (private cgroupns,
  ``0::/``), ``--cpus 2 --memory 4g --cpuset-cpus 0-3,6,8-9``; 16-CPU host.
* ``v2_unlimited`` the same container without limits (``max``).
* ``v1_limited``   docker (cgroupfs driver) on EL7: no cgroupns, every v1
  controller's mount root is ``/docker/<id>`` and /proc/self/cgroup names the
  same path; ``--cpus 1.5 --memory 2g --cpuset-cpus 0-3``; 8-CPU host.
* ``v1_unlimited`` the machine these tests were written on: systemd "hybrid"
  layout (v1 controllers, controller-less cgroup2 at /sys/fs/cgroup/unified),
  own memory cgroup /process_api/<id>, quota -1, the v1 "no limit" sentinel.
* ``v2_nested``    a Kubernetes container with cgroupns=host: /proc/self/cgroup
  names the full kubepods.slice/.../cri-containerd-<id>.scope path.
* ``v2_slurm_job`` a Slurm batch step on a v2 host: the memory limit sits on
  the job's cgroup, two levels above the task's own.

Kubernetes limits come from the environment the manifests set with the
downward API (deploy/kubernetes/base/deployment.yaml).

Trees are copied to tmp_path where a test breaks a file. Nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Finding, Findings, Kind, Status
from ospool_ep.resources import (
    KUBERNETES_CPU_VARIABLE,
    KUBERNETES_MEMORY_VARIABLE,
    HostLimits,
    Offer,
    check_disk,
    decide_offer,
    detect_limits,
    parse_cpu_list,
)

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"
MIB = 1024 * 1024


def fixture(name: str) -> Path:
    return FIXTURES / name


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(fixture(name), target)
    return target


def limits(**overrides: object) -> HostLimits:
    """A HostLimits with nothing limited on a 64-CPU, 256 GiB host, then ``overrides``."""
    base: dict[str, object] = {
        "cpu_quota": None,
        "cpuset_cpus": None,
        "affinity_cpus": None,
        "memory_limit_mb": None,
        "host_cpus": 64,
        "host_memory_mb": 262144,
        "slurm_cpus": None,
        "slurm_memory_mb": None,
        "slurm_end_time": None,
        "kubernetes_cpus": None,
        "kubernetes_memory_mb": None,
        "sources": (),
    }
    base.update(overrides)
    return HostLimits(**base)  # type: ignore[arg-type]


def offer(
    host: HostLimits,
    *,
    num_cpus: int | None = None,
    memory_mb: int | None = None,
    overhead_mb: int = 100,
) -> tuple[Offer, Findings]:
    findings = Findings()
    result = decide_offer(
        limits=host,
        num_cpus=num_cpus,
        memory_mb=memory_mb,
        overhead_mb=overhead_mb,
        findings=findings,
    )
    return result, findings


def only(findings: Findings, subject: str) -> Finding:
    matching = [f for f in findings if f.subject == subject]
    assert len(matching) == 1, findings
    return matching[0]


def mentions(host: HostLimits, *words: str) -> bool:
    """Whether one line of ``sources`` contains every word."""
    return any(all(w in line for w in words) for line in host.sources)


# --------------------------------------------------------------------------- fixture trees


def test_a_cgroup_v2_container_is_limited_by_cpu_max_memory_max_and_its_cpuset() -> None:
    """v2 cpu.max "200000 100000" is 2.0 CPUs, memory.max 4 GiB is 4096 MB, the cpuset 7 CPUs."""
    host = detect_limits(root=fixture("v2_limited"), environ={})
    assert host.cpu_quota == 2.0
    assert host.memory_limit_mb == 4096
    assert host.cpuset_cpus == 7
    assert host.host_cpus == 16
    assert host.host_memory_mb == 32718568 // 1024
    assert host.affinity_cpus is None, "a fixture root says nothing about this process's mask"
    assert host.slurm_cpus is None
    assert host.slurm_memory_mb is None
    assert host.slurm_end_time is None
    assert mentions(host, "cgroup v2", "own cgroup at /sys/fs/cgroup")
    assert mentions(host, "cpu.max", "2 CPUs")
    assert mentions(host, "4096 MB", "memory.max")


def test_cgroup_v2_max_means_no_cpu_or_memory_limit() -> None:
    """ "max 100000" in cpu.max and "max" in memory.max are no limit (None), not an error."""
    host = detect_limits(root=fixture("v2_unlimited"), environ={})
    assert host.cpu_quota is None
    assert host.memory_limit_mb is None
    assert host.cpuset_cpus == 16
    assert mentions(host, "no CFS CPU quota")
    assert mentions(host, "no cgroup memory limit")
    assert not mentions(host, "garbled")


def test_cgroup_v1_docker_limits_are_found_where_the_mount_root_is_the_containers_cgroup() -> None:
    """Without cgroupns, /proc/self/cgroup says /docker/<id> and so does the mount root.

    The files are at the mount point itself, not at <mount>/docker/<id>; the
    quota is 150000/100000 = 1.5 CPUs in the combined cpu,cpuacct hierarchy,
    and EL7's kernel has only cpuset.cpus (no cpuset.effective_cpus).
    """
    host = detect_limits(root=fixture("v1_limited"), environ={})
    assert host.cpu_quota == 1.5
    assert host.memory_limit_mb == 2048
    assert host.cpuset_cpus == 4
    assert host.host_cpus == 8
    assert mentions(host, "cgroup v1,", "own cgroup at /sys/fs/cgroup/memory")
    assert mentions(host, "cpu.cfs_quota_us", "1.5 CPUs")
    assert mentions(host, "cpuset.cpus", "4 CPUs")


def test_cgroup_v1_quota_minus_one_and_the_huge_memory_sentinel_mean_no_limit() -> None:
    """cfs_quota_us -1 and memory.limit_in_bytes 9223372036854771712 are "unlimited".

    The tree is this hybrid host's: its own memory cgroup is /process_api/<id>
    (which exists under the mount), and a sibling's 1 GiB limit is not ours.
    """
    host = detect_limits(root=fixture("v1_unlimited"), environ={})
    assert host.cpu_quota is None
    assert host.memory_limit_mb is None
    assert host.cpuset_cpus == 2
    assert host.host_cpus == 2
    assert mentions(host, "hybrid", "/sys/fs/cgroup/unified")
    assert mentions(host, "own cgroup at /sys/fs/cgroup/memory/process_api/19c0304a")


def test_a_nested_container_cgroup_named_by_proc_self_cgroup_is_the_one_read() -> None:
    """With cgroupns=host, /proc/self/cgroup names kubepods.slice/.../cri-containerd-<id>.scope.

    That container's own 4-CPU, 6 GiB limits apply; a smaller pod elsewhere on
    the node and the node-wide kubepods.slice limits (31 CPUs) do not change them.
    """
    host = detect_limits(root=fixture("v2_nested"), environ={})
    assert host.cpu_quota == 4.0
    assert host.memory_limit_mb == 6144
    assert host.cpuset_cpus == 32
    assert host.host_cpus == 32
    assert mentions(host, "own cgroup at /sys/fs/cgroup/kubepods.slice/", "cri-containerd-5e4d")


def test_a_memory_limit_on_a_parent_cgroup_applies_in_v2() -> None:
    """A Slurm job's memory.max is on job_4242; the task's own cgroup says "max".

    The limit two levels up still binds the task (cgroup-v2 top-down
    constraint), so it is the one detected, and named as a parent's.
    """
    host = detect_limits(root=fixture("v2_slurm_job"), environ={})
    assert host.memory_limit_mb == 8192
    assert host.cpuset_cpus == 8
    assert host.cpu_quota is None
    assert mentions(host, "8192 MB", "parent /sys/fs/cgroup/system.slice/slurmstepd.scope/job_4242")


def test_the_tightest_cpu_max_on_the_way_up_wins_over_the_containers_own(tmp_path: Path) -> None:
    """A pod-level cpu.max of 1.5 CPUs caps a container whose own cpu.max allows 4."""
    root = copy_fixture("v2_nested", tmp_path)
    pod = next((root / "sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice").glob("*pod8f6b*"))
    (pod / "cpu.max").write_text("150000 100000\n")
    (pod / "memory.max").write_text("1073741824\n")
    host = detect_limits(root=root, environ={})
    assert host.cpu_quota == 1.5
    assert host.memory_limit_mb == 1024
    assert mentions(host, "1.5 CPUs", "parent /sys/fs/cgroup/kubepods.slice/")


@pytest.mark.parametrize(
    "own",
    [
        "0::/system.slice/podman-1234.scope\n",
        "0::/../../system.slice/podman-1234.scope\n",
        "0::/..\n",
        "0::/../..\n",
    ],
)
def test_a_cgroup_path_that_is_not_under_the_mount_falls_back_to_the_mount_root(
    tmp_path: Path, own: str
) -> None:
    """If /proc/self/cgroup names no directory under the mount, the mount point's files are used.

    A missing path happens when the namespace was made after the process moved;
    "/.." is how the kernel shows a cgroup outside the namespace root, and must
    never lead the lookup out of /sys/fs/cgroup (here /sys/fs, which exists).
    """
    root = copy_fixture("v2_limited", tmp_path)
    (root / "proc/self/cgroup").write_text(own)
    host = detect_limits(root=root, environ={})
    assert host.cpu_quota == 2.0
    assert host.memory_limit_mb == 4096
    assert mentions(host, "own cgroup at /sys/fs/cgroup")
    assert not mentions(host, "parent")


def test_an_explicit_affinity_count_is_taken_as_given() -> None:
    """The affinity parameter stands in for sched_getaffinity when reading a fixture tree."""
    host = detect_limits(root=fixture("v2_unlimited"), environ={}, affinity=3)
    assert host.affinity_cpus == 3
    assert mentions(host, "CPU affinity: 3 CPUs")


# --------------------------------------------------------------------------- broken trees


def test_garbled_cgroup_v2_files_are_unknown_and_noted_never_an_exception(tmp_path: Path) -> None:
    """Nonsense in cpu.max, memory.max, cpuset.cpus.effective and meminfo leaves those unknown."""
    root = copy_fixture("v2_limited", tmp_path)
    cg = root / "sys/fs/cgroup"
    (cg / "cpu.max").write_text("banana\n")
    (cg / "memory.max").write_text("12abc\n")
    (cg / "cpuset.cpus.effective").write_text("0-\n")
    (root / "proc/meminfo").write_text("MemTotal: lots\n")
    host = detect_limits(root=root, environ={})
    assert host.cpu_quota is None
    assert host.memory_limit_mb is None
    assert host.cpuset_cpus is None
    assert host.host_memory_mb > 0, "falls back to this machine's physical memory"
    assert mentions(host, "cpu.max", "garbled", "banana")
    assert mentions(host, "memory.max", "garbled", "12abc")
    assert mentions(host, "cpuset.cpus.effective", "garbled")
    assert mentions(host, "/proc/meminfo")


@pytest.mark.parametrize(
    ("cpu_max", "why"),
    [
        ("0 100000\n", "a zero quota"),
        ("200000 0\n", "a zero period"),
        ("200000\n", "one field"),
        ("-1 100000\n", "v1's -1 in a v2 file"),
        ("200000 100000 7\n", "three fields"),
        ("", "an empty file"),
    ],
)
def test_odd_cpu_max_values_are_ignored(tmp_path: Path, cpu_max: str, why: str) -> None:
    """cpu.max that is not "$MAX $PERIOD" with positive numbers gives no quota."""
    root = copy_fixture("v2_limited", tmp_path)
    (root / "sys/fs/cgroup/cpu.max").write_text(cpu_max)
    host = detect_limits(root=root, environ={})
    assert host.cpu_quota is None, why
    assert host.memory_limit_mb == 4096


def test_garbled_cgroup_v1_files_are_unknown_and_noted(tmp_path: Path) -> None:
    """A non-numeric quota, a negative memory limit and a reversed cpuset range are unknown."""
    root = copy_fixture("v1_limited", tmp_path)
    cg = root / "sys/fs/cgroup"
    (cg / "cpu,cpuacct/cpu.cfs_quota_us").write_text("lots\n")
    (cg / "memory/memory.limit_in_bytes").write_text("-5\n")
    (cg / "memory/memory.stat").write_text("hierarchical_memory_limit oops\n")
    (cg / "cpuset/cpuset.cpus").write_text("3-1\n")
    host = detect_limits(root=root, environ={})
    assert host.cpu_quota is None
    assert host.memory_limit_mb is None
    assert host.cpuset_cpus is None
    assert mentions(host, "cfs", "garbled")
    assert mentions(host, "memory.limit_in_bytes", "garbled")
    assert mentions(host, "cpuset.cpus", "garbled")


def test_v1_hierarchical_memory_limit_reveals_a_parent_limit_the_container_cannot_see(
    tmp_path: Path,
) -> None:
    """memory.stat's hierarchical_memory_limit (all ancestors) wins when it is smaller."""
    root = copy_fixture("v1_limited", tmp_path)
    stat = root / "sys/fs/cgroup/memory/memory.stat"
    stat.write_text(
        stat.read_text().replace(
            "hierarchical_memory_limit 2147483648", "hierarchical_memory_limit 1073741824"
        )
    )
    host = detect_limits(root=root, environ={})
    assert host.memory_limit_mb == 1024
    assert mentions(host, "hierarchical_memory_limit")


def test_an_empty_root_detects_nothing_and_does_not_raise(tmp_path: Path) -> None:
    """No /proc and no /sys at all: every limit unknown, host figures from this machine."""
    host = detect_limits(root=tmp_path, environ={})
    assert host.cpu_quota is None
    assert host.cpuset_cpus is None
    assert host.memory_limit_mb is None
    assert host.affinity_cpus is None
    assert host.host_cpus >= 1
    assert host.host_memory_mb > 0
    assert mentions(host, "/proc/self/cgroup unreadable")
    assert mentions(host, "/proc/self/mountinfo unreadable", "no cgroup found")


def test_without_mountinfo_the_usual_cgroup_layout_is_guessed(tmp_path: Path) -> None:
    """An unreadable mountinfo falls back to /sys/fs/cgroup (v2 if cgroup.controllers is there)."""
    for name, quota in (("v2_limited", 2.0), ("v1_unlimited", None)):
        root = copy_fixture(name, tmp_path)
        (root / "proc/self/mountinfo").unlink()
        host = detect_limits(root=root, environ={})
        assert host.cpu_quota == quota
        assert mentions(host, "mountinfo unreadable", "guessed")
    v1 = detect_limits(root=tmp_path / "v1_unlimited", environ={})
    assert v1.cpuset_cpus == 2


def test_garbage_in_proc_self_cgroup_and_mountinfo_is_survived(tmp_path: Path) -> None:
    """Binary junk in both files: no cgroup found, no exception, both noted."""
    root = copy_fixture("v2_limited", tmp_path)
    (root / "proc/self/cgroup").write_bytes(b"\xff\xfe\x00garbage:\n::\n")
    (root / "proc/self/mountinfo").write_bytes(b"\x00\x01 - cgroup2\nnot a mount line\n")
    host = detect_limits(root=root, environ={})
    assert host.cpu_quota is None
    assert host.memory_limit_mb is None
    assert mentions(host, "/proc/self/cgroup garbled")
    assert mentions(host, "no cgroup filesystem mounted")


def test_a_directory_where_a_file_should_be_is_unknown(tmp_path: Path) -> None:
    """memory.max being a directory (unreadable as text) is treated like a missing file."""
    root = copy_fixture("v2_limited", tmp_path)
    (root / "sys/fs/cgroup/memory.max").unlink()
    (root / "sys/fs/cgroup/memory.max").mkdir()
    host = detect_limits(root=root, environ={})
    assert host.memory_limit_mb is None
    assert host.cpu_quota == 2.0


# --------------------------------------------------------------------------- CPU lists


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("0", 1),
        ("0-3,6,8-9", 7),
        ("0-3,6,8-9\n", 7),
        ("  4-7,20-23  \n", 8),
        ("0-3,2-5", 6),
        ("5,5,5", 1),
        ("7,0-1", 3),
        ("0-4095", 4096),
        ("0-4294967295", 4294967296),
    ],
)
def test_cpu_lists_count_each_cpu_once(text: str, count: int) -> None:
    """Numbers and inclusive ranges, in any order, overlaps counted once, without listing them."""
    assert parse_cpu_list(text) == count


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "a",
        "0-",
        "-1",
        "3-1",
        "0,,1",
        "0,",
        "0-3:1/2",
        "1 - 3",
        "+1",
        "1_0",
        "0x1",
        "\u0663",
        "0-3\n4",
    ],
)
def test_garbled_cpu_lists_raise_value_error(text: str) -> None:
    """Anything but ASCII numbers and ranges is rejected, not guessed at."""
    with pytest.raises(ValueError, match="CPU"):
        parse_cpu_list(text)


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


def kubernetes(environ: dict[str, str], tree: str = "v2_unlimited") -> HostLimits:
    return detect_limits(root=fixture(tree), environ=environ)


def test_kubernetes_downward_api_limits_are_read_in_millicores_and_mib() -> None:
    """limits.cpu with divisor 1m and limits.memory with divisor 1Mi, as the manifests set them."""
    host = kubernetes({KUBERNETES_CPU_VARIABLE: "2500", KUBERNETES_MEMORY_VARIABLE: "4096"})
    assert host.kubernetes_cpus == 2.5
    assert host.kubernetes_memory_mb == 4096
    assert mentions(host, KUBERNETES_CPU_VARIABLE, "2.5 CPUs")
    assert mentions(host, KUBERNETES_MEMORY_VARIABLE, "4096 MB")


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


# --------------------------------------------------------------------------- disk


def test_a_writable_directory_with_enough_space_passes(tmp_path: Path) -> None:
    """min_gb=0 always fits; the free space comes back in MB for the slot's Disk."""
    findings = Findings()
    free_mb = check_disk(path=tmp_path, min_gb=0, findings=findings)
    assert isinstance(free_mb, int)
    assert free_mb >= 0
    passed = only(findings, "PILOT_DIR")
    assert passed.status is Status.PASS
    assert str(tmp_path) in passed.message
    assert not list(tmp_path.iterdir()), "the write test leaves nothing behind"


def test_too_little_free_space_fails_naming_the_path(tmp_path: Path) -> None:
    """Below MIN_DISK_GB: environment FAIL naming the path, free vs required, and the fix."""
    findings = Findings()
    free_mb = check_disk(path=tmp_path, min_gb=1e9, findings=findings)
    assert isinstance(free_mb, int), "free space is still reported"
    failure = only(findings, "PILOT_DIR")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert str(tmp_path) in failure.message
    assert "GB free" in failure.message
    assert "MIN_DISK_GB=1e+09" in failure.message
    assert "bigger volume" in failure.fix
    assert "MIN_DISK_GB" in failure.fix
    assert findings.exit_code() is ExitCode.UNAVAILABLE


def test_a_missing_directory_fails(tmp_path: Path) -> None:
    """A PILOT_DIR that does not exist is an environment FAIL and no free space."""
    missing = tmp_path / "no" / "such" / "pilot"
    findings = Findings()
    assert check_disk(path=missing, min_gb=0, findings=findings) is None
    failure = only(findings, "PILOT_DIR")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert str(missing) in failure.message
    assert "does not exist" in failure.message


def test_a_file_instead_of_a_directory_fails(tmp_path: Path) -> None:
    """PILOT_DIR naming a regular file is not scratch space."""
    not_dir = tmp_path / "pilot"
    not_dir.write_text("")
    findings = Findings()
    assert check_disk(path=not_dir, min_gb=0, findings=findings) is None
    assert "not a directory" in only(findings, "PILOT_DIR").message


def test_a_directory_nobody_can_create_files_in_fails_even_for_root() -> None:
    """/proc passes os.access for root but refuses new files: the real write test catches it."""
    findings = Findings()
    assert check_disk(path=Path("/proc"), min_gb=0, findings=findings) is None
    failure = only(findings, "PILOT_DIR")
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.ENVIRONMENT
    assert "not writable" in failure.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory modes")
def test_a_read_only_directory_fails_for_a_normal_user(tmp_path: Path) -> None:
    """Mode 0555 stops an unprivileged pilot from using the directory."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    findings = Findings()
    assert check_disk(path=locked, min_gb=0, findings=findings) is None
    assert "not writable" in only(findings, "PILOT_DIR").message


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
