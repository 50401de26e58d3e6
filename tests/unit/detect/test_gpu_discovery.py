"""GPUs: the pilot runs HTCondor's discovery as the startd would, and reads its answer."""

from __future__ import annotations

from pathlib import Path

from ospool_ep.detect import gpus
from ospool_ep.findings import Findings


def test_discovery_runs_with_the_startds_arguments_and_htcondors_override() -> None:
    tool = Path("/usr/libexec/condor/condor_gpu_discovery")
    assert gpus.discovery_command(tool=tool, extra=None) == [str(tool), "-properties", "-extra"]
    assert gpus.discovery_command(tool=tool, extra="-simulate:0,2") == [
        str(tool),
        "-properties",
        "-simulate:0,2",
    ]


def test_detected_gpus_are_read_from_the_tools_output() -> None:
    out = 'DetectedGPUs="GPU-a1b2c3d4, GPU-e5f6a7b8"\nCUDACapability=7.0\n'
    assert gpus.parse_detected(out) == ("GPU-a1b2c3d4", "GPU-e5f6a7b8")
    assert gpus.parse_detected("DetectedGPUs=0\n") == ()


def test_a_fake_tool_and_a_mounted_vendors_directory(tmp_path: Path) -> None:
    tool = tmp_path / "condor_gpu_discovery"
    tool.write_text('#!/bin/sh\necho "DetectedGPUs=\\"GPU-0, GPU-1\\""\n')
    tool.chmod(0o755)
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    (vendors / "nvidia.icd").write_text("libnvidia-opencl.so.1\n")
    report = gpus.detect(tool=tool, extra=None, opencl=vendors)
    assert report.ids == ("GPU-0", "GPU-1")
    assert (report.opencl_vendors, report.opencl_icds) == (str(vendors), ("nvidia.icd",))
    findings = Findings()
    gpus.report(report, findings)
    assert [f.subject for f in findings] == ["GPUs", "OpenCL"]
    assert "2 found" in findings[0].message


def test_no_discovery_tool_means_no_gpus(tmp_path: Path) -> None:
    report = gpus.detect(tool=tmp_path / "absent", extra=None, opencl=tmp_path / "none")
    assert report.ids == () and "not installed" in report.problem
    assert report.opencl_vendors is None
