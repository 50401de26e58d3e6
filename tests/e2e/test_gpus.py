"""End-to-end: simulated GPUs through HTCondor's discovery, to contained jobs (SPEC 6.3, 7.6, 8).

``_CONDOR_GPU_DISCOVERY_EXTRA=-simulate:0,2`` (HTCondor's GPU_DISCOVERY_EXTRA,
passed to condor_gpu_discovery) gives the pilot two fake devices: the slot
offers both, a ``request_gpus = 1`` job gets one assigned and sees it in its
environment, inside Apptainer (the built-in job image: no CVMFS here), with the
OpenCL vendors directory bound in. The Debian-stable build has no Apptainer: its
pilots need JOB_CONTAINMENT=none, run the job bare, and HAS_SINGULARITY is false.
"""

from __future__ import annotations

from pathlib import Path

import job_images
import pool
from conftest import Pilots, container_marks, remove_jobs, stays, wait_status

pytestmark = container_marks()

JobStatus = pool.JobStatus
SHOW_GPU = "env; cat /etc/OpenCL/vendors/test.icd; echo pid1=$(cat /proc/1/comm)"


def test_simulated_gpus_are_offered_assigned_and_seen_by_the_job(
    pilots: Pilots, tmp_path: Path
) -> None:
    """Two simulated GPUs in the slot; a GPU job runs (contained where the image has
    Apptainer) with one of them in CUDA_VISIBLE_DEVICES and _CONDOR_AssignedGPUs, and
    reads the mounted OpenCL vendors directory; a job requiring HAS_SINGULARITY runs
    where jobs are contained and stays idle where they are not."""
    contained = job_images.has_apptainer()
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    (vendors / "test.icd").write_text("libtest-opencl.so.1\n")
    vendors.chmod(0o755)
    (vendors / "test.icd").chmod(0o644)
    pilot = pilots.start(
        "ep-gpu",
        {
            "_CONDOR_GPU_DISCOVERY_EXTRA": "-simulate:0,2",
            "NUM_CPUS": "2",
            "MEMORY": "2000",
            **({} if contained else {"JOB_CONTAINMENT": "none"}),
        },
        volumes=[(vendors, "/etc/OpenCL/vendors", "ro")],
    )
    ad = pilot.pslot()
    assert ad["TotalSlotGPUs"] == 2
    assert ad["GPUs"] == 2
    devices = [d.strip() for d in ad["AssignedGPUs"].split(",")]
    assert len(devices) == 2
    assert ad["HAS_SINGULARITY"] is contained
    assert ad["OSPOOL_EP_JOBS_CONTAINED"] is contained
    assert ad["OSPOOL_EP_CVMFS_MODE"] == "none"

    check = pilot.exec(["ospool-ep", "check"], user="1000").stdout
    assert "PASS  GPUs: 2 found by condor_gpu_discovery" in check
    assert "PASS  OpenCL: /etc/OpenCL/vendors: test.icd" in check
    if contained:
        assert "PASS  Apptainer: /usr/bin/apptainer ran a test container" in check, check
    else:
        assert "WARN  Apptainer: none works" in check, check

    gpu_job = pilot.submit(
        {"executable": "/bin/sh", "arguments": f"\"-c '{SHOW_GPU}'\"", "request_gpus": 1}
    )
    container_job = pilot.submit(
        {
            "executable": "/bin/true",
            "requirements": f"{pilot.requirements()} && HAS_SINGULARITY == true",
            # A GPU pilot's START takes GPU jobs only (inputs/policy).
            "request_gpus": 1,
        }
    )
    try:
        wait_status(pilot.pool, gpu_job, JobStatus.COMPLETED, timeout=90)
        out = dict(
            line.split("=", 1)
            for line in pilot.pool.job_output(gpu_job).splitlines()
            if "=" in line
        )
        assert out["_CONDOR_AssignedGPUs"] in devices, out
        # 23.9 sets the assigned name (or an index); 25 the device's full UUID,
        # "GPU-a0223334-4445-...", which starts with the assigned short name.
        visible = out["CUDA_VISIBLE_DEVICES"]
        assigned = out["_CONDOR_AssignedGPUs"]
        assert visible in ("0", "1") or visible.startswith(assigned), out
        assert "libtest-opencl.so.1" in pilot.pool.job_output(gpu_job)
        assert (out["pid1"] == "appinit") is contained, out
        if contained:
            wait_status(pilot.pool, container_job, JobStatus.COMPLETED, timeout=90)
        else:
            stays(pilot.pool, container_job, JobStatus.IDLE, seconds=5)
    finally:
        remove_jobs(pilot.pool, gpu_job, container_job)
