"""GPUs: what HTCondor's own discovery finds, and the OpenCL vendor files jobs need (SPEC 6.3, 8).

The startd discovers and assigns GPUs itself (``use FEATURE : GPUs`` in
40-slot.conf runs ``condor_gpu_discovery $(GPU_DISCOVERY_EXTRA)``); the pilot
runs the same tool with the same arguments at start only to report what the
slot will offer (``check``, metrics). ``_CONDOR_GPU_DISCOVERY_EXTRA`` is
HTCondor's own override and reaches both; ``-simulate:0,2`` fakes two devices
for tests (HTCondor manual, condor_gpu_discovery).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.findings import Findings

DISCOVERY = Path("/usr/libexec/condor/condor_gpu_discovery")
DEFAULT_EXTRA = "-extra"
"""HTCondor's default GPU_DISCOVERY_EXTRA."""
DISCOVERY_TIMEOUT_SECONDS = 30
OPENCL_VENDORS = Path("/etc/OpenCL/vendors")
"""OpenCL ICD files (SPEC 4.2); the OpenCL loader reads this directory."""


@dataclass(frozen=True, kw_only=True)
class GpuReport:
    ids: tuple[str, ...] = ()
    """The device names HTCondor assigns (``AssignedGPUs`` values)."""
    problem: str = ""
    opencl_vendors: str | None = None
    """The mounted vendors directory, when there is one with ICD files."""
    opencl_icds: tuple[str, ...] = ()


def discovery_command(*, tool: Path, extra: str | None) -> list[str]:
    """As the startd runs it: ``-properties $(GPU_DISCOVERY_EXTRA)``."""
    return [str(tool), "-properties", *shlex.split(DEFAULT_EXTRA if extra is None else extra)]


def parse_detected(output: str) -> tuple[str, ...]:
    """``DetectedGPUs="GPU-1a, GPU-2b"`` (or ``= 0``) -> the names."""
    match = re.search(r'^DetectedGPUs\s*=\s*"([^"]*)"', output, re.MULTILINE)
    if not match:
        return ()
    return tuple(name.strip() for name in match[1].split(",") if name.strip())


def detect(
    *, tool: Path = DISCOVERY, extra: str | None, opencl: Path = OPENCL_VENDORS
) -> GpuReport:
    icds: tuple[str, ...] = ()
    vendors = None
    try:
        if opencl.is_dir():
            icds = tuple(sorted(p.name for p in opencl.iterdir() if p.suffix == ".icd"))
            vendors = str(opencl) if icds else None
    except OSError:
        pass
    if not tool.exists():
        return GpuReport(problem=f"{tool} not installed", opencl_vendors=vendors, opencl_icds=icds)
    try:
        result = subprocess.run(
            discovery_command(tool=tool, extra=extra),
            capture_output=True,
            text=True,
            timeout=DISCOVERY_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return GpuReport(problem=str(error), opencl_vendors=vendors, opencl_icds=icds)
    return GpuReport(ids=parse_detected(result.stdout), opencl_vendors=vendors, opencl_icds=icds)


def report(gpus: GpuReport, findings: Findings) -> None:
    if gpus.problem:
        findings.passed("GPUs", f"not detected ({gpus.problem}): the slot offers none")
    elif gpus.ids:
        findings.passed(
            "GPUs",
            f"{len(gpus.ids)} found by condor_gpu_discovery ({', '.join(gpus.ids)}); "
            "CPU-only jobs leave 8 CPUs and 32 GB per idle GPU",
        )
    else:
        findings.passed("GPUs", "none found by condor_gpu_discovery")
    if gpus.opencl_vendors:
        findings.passed(
            "OpenCL",
            f"{gpus.opencl_vendors}: {', '.join(gpus.opencl_icds)}; jobs see it, "
            "container jobs get it bound in",
        )
