"""Limits: what CPUs and memory this container or job may really use (SPEC 8).

:func:`detect_limits` joins the cgroup limits (:mod:`ospool_ep.detect.cgroups`), the
CPU affinity mask, the machine's own size from ``/proc``, the Slurm job
environment and the Kubernetes limits the manifests pass through the downward
API into one frozen :class:`HostLimits`. It never raises on missing or odd
files or values: anything unreadable is *unknown*, and said so in
``HostLimits.sources``. :mod:`ospool_ep.detect.offer` turns the limits into what the
pilot advertises.

"MB" means MiB throughout, as HTCondor's ``MEMORY`` and docker's
``--memory 4g`` count it.

Kubernetes: the container's ``limits.cpu`` and ``limits.memory`` reach the pilot
as environment variables set with ``resourceFieldRef`` (Kubernetes docs, "Expose
Pod Information to Containers Through Environment Variables"); see
:data:`KUBERNETES_CPU_VARIABLE` and :data:`KUBERNETES_MEMORY_VARIABLE`. They
usually repeat the cgroup limits, but are also right where the cgroup is not
visible or not the container's own (VM-based runtimes, cgroup v1 without a
cgroup namespace).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.detect import cgroups
from ospool_ep.detect.cgroups import DIGITS, parse_nonneg_int, read_text, snippet

__all__ = [
    "KUBERNETES_CPU_VARIABLE",
    "KUBERNETES_MEMORY_VARIABLE",
    "HostLimits",
    "cpus_text",
    "detect_limits",
]

_MIB = 1024 * 1024

_SLURM_CPUS_PER_NODE = re.compile(r"([0-9]+)(?:\(x[0-9]+\))?(?:,.*)?")
"""``SLURM_JOB_CPUS_PER_NODE``: ``4``, ``4(x2)``, ``72(x2),36`` -- this node is the first."""

KUBERNETES_CPU_VARIABLE = "K8S_CPU_LIMIT_MILLICORES"
"""The container's ``limits.cpu`` in millicores: ``resourceFieldRef`` with ``divisor: 1m``.

Without a CPU limit the downward API gives the node's allocatable CPUs, still
an upper bound. deploy/kubernetes/base/deployment.yaml sets it."""
KUBERNETES_MEMORY_VARIABLE = "K8S_MEMORY_LIMIT_MIB"
"""The container's ``limits.memory`` in MiB: ``resourceFieldRef`` with ``divisor: 1Mi``
(the kubelet rounds up to the divisor). Without a limit: the node's allocatable memory."""


@dataclass(frozen=True)
class HostLimits:
    """What the container or job may use; each limit is ``None`` when unlimited or unknown."""

    cpu_quota: float | None
    """CPUs allowed by the CFS bandwidth quota (v2 ``cpu.max``, v1 quota/period)."""
    cpuset_cpus: int | None
    """Number of CPUs in the effective cpuset."""
    affinity_cpus: int | None
    """Number of CPUs in this process's affinity mask."""
    memory_limit_mb: int | None
    """cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    host_cpus: int
    """CPUs of the machine."""
    host_memory_mb: int
    """``MemTotal`` of the machine."""
    slurm_cpus: int | None
    """CPUs of the Slurm allocation on this node."""
    slurm_memory_mb: int | None
    """Memory of the Slurm allocation on this node."""
    slurm_end_time: int | None
    """The Slurm job's end time (Unix epoch seconds), when exported."""
    kubernetes_cpus: float | None
    """CPUs of the Kubernetes ``limits.cpu`` (:data:`KUBERNETES_CPU_VARIABLE`)."""
    kubernetes_memory_mb: int | None
    """The Kubernetes ``limits.memory`` (:data:`KUBERNETES_MEMORY_VARIABLE`)."""
    sources: tuple[str, ...]
    """What was detected, and what could not be read, in words."""


def cpus_text(count: float) -> str:
    """``1 CPU``, ``2.5 CPUs``: a CPU count in words, for notes and findings."""
    return f"{count:g} CPU" if count == 1 else f"{count:g} CPUs"


# ------------------------------------------------------------------ host, Slurm, Kubernetes


def _host_cpus(*, root: Path, real: bool, notes: list[str]) -> int:
    if not real:
        text = read_text(root / "proc/cpuinfo")
        if text is not None:
            count = sum(
                1 for line in text.splitlines() if line.split(":")[0].strip() == "processor"
            )
            if count > 0:
                notes.append(f"host: {count} CPUs (/proc/cpuinfo)")
                return count
        notes.append("/proc/cpuinfo unreadable or without processors; using this machine's count")
    count = os.cpu_count() or 1
    notes.append(f"host: {count} CPUs (os.cpu_count)")
    return count


def _host_memory_mb(*, root: Path, notes: list[str]) -> int:
    text = read_text(root / "proc/meminfo")
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if key == "MemTotal" and fields and DIGITS.fullmatch(fields[0]):
            # proc.rst: meminfo values are in kB (KiB), "kB" unit despite the name.
            mib = int(fields[0]) // 1024
            notes.append(f"host: {mib} MB (/proc/meminfo MemTotal)")
            return mib
    try:
        mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // _MIB
    except (OSError, ValueError):
        mib = 0
    notes.append(f"/proc/meminfo without MemTotal; using this machine's {mib} MB (sysconf)")
    return mib


def _env_int(
    environ: Mapping[str, str], name: str, notes: list[str], *, origin: str = "Slurm"
) -> int | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse_nonneg_int(raw)
    except ValueError:
        notes.append(f"{origin} {name}={snippet(raw)} is not a number; ignored")
        return None


def _slurm(
    environ: Mapping[str, str], notes: list[str]
) -> tuple[int | None, int | None, int | None]:
    """CPUs, memory (MiB) and end time of the Slurm allocation on this node (sbatch(1))."""
    cpus = _env_int(environ, "SLURM_CPUS_ON_NODE", notes)
    if cpus is not None:
        notes.append(f"Slurm SLURM_CPUS_ON_NODE: {cpus} CPUs")
    else:
        raw = environ.get("SLURM_JOB_CPUS_PER_NODE")
        if raw:
            match = _SLURM_CPUS_PER_NODE.fullmatch(raw.strip())
            if match:
                cpus = int(match.group(1))
                notes.append(f"Slurm SLURM_JOB_CPUS_PER_NODE={raw.strip()}: {cpus} CPUs")
            else:
                notes.append(f"Slurm SLURM_JOB_CPUS_PER_NODE={snippet(raw)} garbled; ignored")
    if cpus == 0:
        cpus = None

    # --mem and --mem-per-cpu are mutually exclusive; whichever was given is exported (MiB).
    memory = _env_int(environ, "SLURM_MEM_PER_NODE", notes)
    if memory is not None:
        notes.append(f"Slurm SLURM_MEM_PER_NODE: {memory} MB")
    else:
        per_cpu = _env_int(environ, "SLURM_MEM_PER_CPU", notes)
        if per_cpu is not None and cpus is not None:
            memory = per_cpu * cpus
            notes.append(f"Slurm SLURM_MEM_PER_CPU: {per_cpu} MB x {cpus} CPUs = {memory} MB")
        elif per_cpu is not None:
            notes.append("Slurm SLURM_MEM_PER_CPU set but the CPU count is unknown; ignored")
    if memory == 0:
        # --mem=0 asks for all of the node's memory: no limit of its own.
        memory = None

    end = _env_int(environ, "SLURM_JOB_END_TIME", notes)
    if end is not None:
        notes.append(f"Slurm SLURM_JOB_END_TIME: {end}")
    return cpus, memory, end


def _kubernetes(environ: Mapping[str, str], notes: list[str]) -> tuple[float | None, int | None]:
    """CPUs and memory (MiB) of the container's Kubernetes limits, from the downward API."""
    millicores = _env_int(environ, KUBERNETES_CPU_VARIABLE, notes, origin="Kubernetes")
    memory = _env_int(environ, KUBERNETES_MEMORY_VARIABLE, notes, origin="Kubernetes")
    cpus = None
    for name, value in (
        (KUBERNETES_CPU_VARIABLE, millicores),
        (KUBERNETES_MEMORY_VARIABLE, memory),
    ):
        if value == 0:
            # The downward API never reports 0 (no limit gives the node's
            # allocatable): a hand-set 0 is a mistake, not a limit.
            notes.append(f"Kubernetes {name}=0 is no limit; ignored")
    if millicores:
        cpus = millicores / 1000
        notes.append(f"Kubernetes {KUBERNETES_CPU_VARIABLE}={millicores}: {cpus_text(cpus)}")
    if memory:
        notes.append(f"Kubernetes {KUBERNETES_MEMORY_VARIABLE}: {memory} MB")
    return cpus, memory or None


# --------------------------------------------------------------------------- detection


def detect_limits(
    *, root: Path = Path("/"), environ: Mapping[str, str], affinity: int | None = None
) -> HostLimits:
    """Detect what this process may use, reading files under ``root`` (a fixture tree in tests).

    ``affinity`` overrides the CPU affinity count; when it is ``None`` the real
    ``sched_getaffinity`` is used only if ``root`` is the real ``/`` (a fixture
    tree says nothing about this process's mask). Never raises.
    """
    notes: list[str] = []
    # realpath, unlike Path.resolve, never raises (symlink loops included).
    real = os.path.realpath(root) == "/"
    cgroup = cgroups.read_limits(root=root, notes=notes)

    if affinity is None and real:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (OSError, AttributeError):
            notes.append("sched_getaffinity unavailable")
    if affinity is not None:
        notes.append(f"CPU affinity: {affinity} CPUs")

    host_cpus = _host_cpus(root=root, real=real, notes=notes)
    host_memory = _host_memory_mb(root=root, notes=notes)
    slurm_cpus, slurm_memory, slurm_end = _slurm(environ, notes)
    kubernetes_cpus, kubernetes_memory = _kubernetes(environ, notes)

    return HostLimits(
        cpu_quota=cgroup.cpu_quota,
        cpuset_cpus=cgroup.cpuset_cpus,
        affinity_cpus=affinity,
        memory_limit_mb=cgroup.memory_limit_mb,
        host_cpus=host_cpus,
        host_memory_mb=host_memory,
        slurm_cpus=slurm_cpus,
        slurm_memory_mb=slurm_memory,
        slurm_end_time=slurm_end,
        kubernetes_cpus=kubernetes_cpus,
        kubernetes_memory_mb=kubernetes_memory,
        sources=tuple(notes),
    )
