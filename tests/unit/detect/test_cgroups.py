"""Contracts of ospool_ep.detect.cgroups: the cgroup's limits, found in each layout (SPEC 8).

The limits are read through :func:`~ospool_ep.limits.detect_limits` from the
real fixture trees of tests/host_trees.py (v1, v2, hybrid, nested, Slurm), whole
and broken. Nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from host_trees import copy_fixture, fixture, mentions

from ospool_ep.detect.cgroups import parse_cpu_list
from ospool_ep.detect.limits import detect_limits

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
