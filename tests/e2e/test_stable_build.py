"""The Debian-stable build (SPEC 10): it still builds, runs, and says what it lacks.

`make image` builds the default variant (HTCondor 25 with Apptainer), which the
rest of the container tests run. This file builds the other one, Debian stable
(HTCondor 23.9, no Apptainer), with the same script a site would use
(``scripts/build-image.sh`` with ``DEBIAN_SUITE=trixie``), and holds it to its
promises: HTCondor 23.9's bindings run the pilot's checks, no Apptainer is in it,
``check`` refuses to run jobs bare by default (exit 69 naming the fix) and passes
once the site chooses ``JOB_CONTAINMENT=none``.
"""

from __future__ import annotations

import os
import subprocess
import time

import pool  # tests/support/pool.py
import pytest
from jwt_factory import token
from paths import REPO

_reason = pool.unavailable_reason()
pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(_reason is not None, reason=f"container pool unavailable: {_reason}"),
]

STABLE_IMAGE = os.environ.get("OSPOOL_EP_STABLE_IMAGE", "localhost/ospool-ep:stable-smoke")


def podman(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", *argv], capture_output=True, text=True, timeout=timeout, env=environ, check=False
    )


@pytest.fixture(scope="module")
def stable_image() -> str:
    """Built once per run; podman's layer cache makes a rebuild of unchanged layers quick."""
    environ = {**os.environ, "IMAGE": STABLE_IMAGE, "DEBIAN_SUITE": "trixie"}
    environ.pop("APPTAINER_SUITE", None)
    result = subprocess.run(
        [str(REPO / "scripts" / "build-image.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return STABLE_IMAGE


def check(image: str, **env: str) -> tuple[int, str]:
    now = int(time.time())
    variables = {
        "GLIDEIN_Site": "Stable Site",
        "GLIDEIN_ResourceName": "Stable Resource",
        "TOKEN": token(iat=now, exp=now + 30 * 86400),
        "MIN_DISK_GB": "0",
        **env,
    }
    argv = ["run", "--rm", "--network", "none", "--user", "1000:1000"]
    for name, value in variables.items():
        argv += ["-e", f"{name}={value}"]
    result = podman(*argv, image, "check", timeout=180)
    return result.returncode, result.stdout + result.stderr


def test_the_stable_build_has_htcondor_23_and_no_apptainer(stable_image: str) -> None:
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", stable_image)
    assert '"org.ospool-ep.debian-suite":"trixie"' in labels.stdout, labels.stdout
    assert '"org.ospool-ep.apptainer-suite":""' in labels.stdout, labels.stdout
    version = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "condor_version", stable_image
    )
    assert version.returncode == 0, version.stderr
    assert "$CondorVersion: 23." in version.stdout, version.stdout
    apptainer = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        stable_image,
        "-c",
        "command -v apptainer || echo none; test -e /usr/lib/ospool-ep/job-image || echo no-image",
    )
    assert apptainer.stdout.split() == ["none", "no-image"], apptainer.stdout


def test_the_stable_build_refuses_bare_jobs_by_default_and_says_how(stable_image: str) -> None:
    code, output = check(stable_image)

    assert code == 69, output
    assert "WARN  HTCondor: 23." in output, output
    assert "FAIL  Job containment:" in output, output
    assert "JOB_CONTAINMENT=none" in output, output


def test_the_stable_build_checks_clean_when_the_site_runs_jobs_bare(stable_image: str) -> None:
    """HTCondor 23.9's bindings parse the rendered configuration and the pilot's
    expressions; JOB_CONTAINMENT=none is the site's choice, said as a WARN."""
    code, output = check(stable_image, JOB_CONTAINMENT="none", GLIDEIN_Start_Extra='Owner == "x"')

    assert code == 0, output
    assert "WARN  Job containment: JOB_CONTAINMENT=none" in output, output
    assert "PASS  HTCondor config: parsed by HTCondor" in output, output
