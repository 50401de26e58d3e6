"""Fixture trees of what a process sees of its host, and helpers for the detection tests.

Detection reads real fixture trees under tests/support/fixtures/cgroup/, each a copy of
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

import shutil
from pathlib import Path

from ospool_ep.detect.limits import HostLimits, detect_limits
from ospool_ep.detect.offer import Offer, decide_offer
from ospool_ep.findings import Finding, Findings

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"


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


def kubernetes(environ: dict[str, str], tree: str = "v2_unlimited") -> HostLimits:
    """What is detected in ``tree`` with ``environ`` (the downward API's variables)."""
    return detect_limits(root=fixture(tree), environ=environ)
