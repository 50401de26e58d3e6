"""Offer: the CPUs and memory the pilot advertises as its slot resources (SPEC 8).

:func:`decide_offer` is pure: it turns the detected :class:`~ospool_ep.limits.HostLimits`
and the site's ``NUM_CPUS``/``MEMORY`` into an :class:`Offer`, capping (with a
WARN) what the container could not honour, because an overcommitted pilot is
OOM-killed together with every job it runs.

"MB" means MiB throughout, as HTCondor's ``MEMORY`` counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ospool_ep.detect.limits import HostLimits, cpus_text
from ospool_ep.findings import Findings, Kind

__all__ = ["Offer", "decide_offer"]


@dataclass(frozen=True)
class Offer:
    """What the pilot will advertise as its slot resources."""

    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class _Bound:
    value: int
    source: str
    """Where the limit comes from, e.g. ``the cgroup CPU quota (2.5 CPUs)``."""
    fix: str
    """How to raise it."""


def _bound(value: int | None, source: str, fix: str) -> _Bound | None:
    """A bound, or ``None`` where the limit is unknown or there is none."""
    return None if value is None else _Bound(value, source, fix)


def _whole_cpus(cpus: float | None, source: str, fix: str) -> _Bound | None:
    """A bound from a limit in fractional CPUs: whole CPUs, at least one; the fraction shown.

    A slot needs whole CPUs: 1.5 CPUs of quota run 1 job at full speed.
    """
    if cpus is None:
        return None
    return _Bound(max(1, math.floor(cpus)), f"{source} ({cpus_text(cpus)})", fix)


def _known(*bounds: _Bound | None) -> list[_Bound]:
    return [bound for bound in bounds if bound is not None]


def _cpu_bounds(limits: HostLimits) -> list[_Bound]:
    return _known(
        _whole_cpus(
            limits.cpu_quota,
            "the cgroup CPU quota",
            "raise the container's CPU limit (--cpus, Kubernetes limits.cpu)",
        ),
        _bound(
            limits.cpuset_cpus,
            "the cgroup cpuset",
            "give the container more CPUs (--cpuset-cpus)",
        ),
        _bound(
            limits.affinity_cpus,
            "the CPU affinity mask",
            "start the container with more CPUs in its affinity (taskset, --cpuset-cpus)",
        ),
        # Like the CFS quota it usually mirrors.
        _whole_cpus(
            limits.kubernetes_cpus,
            "the Kubernetes CPU limit",
            "raise the container's resources.limits.cpu",
        ),
        _bound(
            limits.slurm_cpus,
            "the Slurm allocation",
            "request more CPUs (sbatch -c/--cpus-per-task)",
        ),
        _Bound(limits.host_cpus, "the host's CPU count", "this machine has no more CPUs"),
    )


def _memory_bounds(limits: HostLimits) -> list[_Bound]:
    return _known(
        _bound(
            limits.memory_limit_mb,
            "the cgroup memory limit",
            "raise the container's memory limit (--memory, Kubernetes limits.memory)",
        ),
        _bound(
            limits.kubernetes_memory_mb,
            "the Kubernetes memory limit",
            "raise the container's resources.limits.memory",
        ),
        _bound(
            limits.slurm_memory_mb,
            "the Slurm allocation",
            "request more memory (sbatch --mem)",
        ),
        _Bound(limits.host_memory_mb, "the host's MemTotal", "this machine has no more memory"),
    )


def decide_offer(
    *,
    limits: HostLimits,
    num_cpus: int | None,
    memory_mb: int | None,
    overhead_mb: int,
    findings: Findings,
) -> Offer:
    """Choose the CPUs and memory to offer: the site's request, capped at what may be used.

    The effective limit is the smallest of every detected bound. ``NUM_CPUS``/
    ``MEMORY`` above it is a WARN and is capped; memory also keeps
    ``overhead_mb`` back for the pilot's own daemons. Too little memory left
    for any slot is an environment FAIL; the returned offer then has 0 MB.
    Values below 1 for ``num_cpus``/``memory_mb`` are treated as unset: settings
    validation reports them.
    """
    cpu_limit = min(_cpu_bounds(limits), key=lambda b: b.value)
    if num_cpus is not None and num_cpus >= 1:
        if num_cpus > cpu_limit.value:
            findings.warn(
                "NUM_CPUS",
                f"NUM_CPUS={num_cpus} is more than the {cpus_text(cpu_limit.value)} "
                f"this pilot may use, set by {cpu_limit.source}; offering {cpu_limit.value}",
                f"lower NUM_CPUS to {cpu_limit.value} or less, or {cpu_limit.fix}",
            )
            cpus = cpu_limit.value
        else:
            cpus = num_cpus
        why = f"NUM_CPUS={num_cpus}; limit {cpu_limit.value} from {cpu_limit.source}"
    else:
        cpus = cpu_limit.value
        why = f"NUM_CPUS not set; limit from {cpu_limit.source}"
    findings.passed("CPUs", f"offering {cpus_text(cpus)} ({why})")

    mem_limit = min(_memory_bounds(limits), key=lambda b: b.value)
    available = mem_limit.value - overhead_mb
    if available < 1:
        findings.fail(
            "memory",
            f"{mem_limit.source} is {mem_limit.value} MB, not more than the "
            f"{overhead_mb} MB MEMORY_OVERHEAD_MB kept for the pilot's own daemons; "
            "no memory is left for jobs",
            f"{mem_limit.fix}, or lower MEMORY_OVERHEAD_MB",
            kind=Kind.ENVIRONMENT,
        )
        return Offer(cpus=cpus, memory_mb=0)
    if memory_mb is not None and memory_mb >= 1:
        if memory_mb > available:
            findings.warn(
                "MEMORY",
                f"MEMORY={memory_mb} MB is more than the {available} MB this pilot may offer "
                f"({mem_limit.source}, {mem_limit.value} MB, "
                f"less MEMORY_OVERHEAD_MB={overhead_mb}); "
                f"offering {available} MB so the pilot is not OOM-killed with all its jobs",
                f"lower MEMORY to {available} or less, or {mem_limit.fix}",
            )
            memory = available
        else:
            memory = memory_mb
        why = f"MEMORY={memory_mb}; limit {available} MB"
    else:
        memory = available
        why = "MEMORY not set; limit"
    findings.passed(
        "memory",
        f"offering {memory} MB ({why} = {mem_limit.source} {mem_limit.value} MB "
        f"less MEMORY_OVERHEAD_MB={overhead_mb})",
    )
    return Offer(cpus=cpus, memory_mb=memory)
