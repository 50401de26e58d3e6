"""OSG's own CI checks of its container, as contract tests of ours (issue 12 part 7).

osgvo-docker-pilot's ``tests/test_inside_gha.sh`` (docker path) runs the image with
a fixed environment and checks, in order:

1. preflight: ``docker run IMAGE /bin/bash -c /bin/true`` exits 0; ``apptainer
   version`` runs inside; Apptainer-in-the-container runs HTCondor's test image
   (``/exit_37`` exits 37);
2. startup: the pilot's startd comes up;
3. ``HAS_SINGULARITY``: from an exec session, ``condor_status -slot -direct
   <startd address> -af HAS_SINGULARITY`` (FS authentication) says true.

Fixture differences, on purpose: the engine is podman with the README's
``--security-opt unmask=/proc/*`` (upstream: docker ``--privileged``-style
options); the pool is the test pool (``CONDOR_HOST``) and the token one it minted,
mounted where upstream mounts it; no CVMFS, so the Apptainer check drops
``-B /cvmfs``, and it runs HTCondor's test *sandbox* (Debian's condor ships no
``exit_37.sif``); the startd's address comes from its address file (upstream's
``startd_addr.sh`` is its own script). Upstream's environment is used as it is,
``OSG_SQUID_LOCATION=None`` and a default image that does not exist
(``100%__htc/minimal:0``: the pilot warns and falls back to its built-in image)
included.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pool  # tests/support/pool.py
from conftest import TOKEN_FILE, Pilots, container_marks

pytestmark = container_marks()

UPSTREAM_CI_ENV = {
    "GLIDEIN_Site": "None",
    "GLIDEIN_ResourceName": "None",
    "GLIDEIN_Start_Extra": "True",
    "OSG_DEFAULT_CONTAINER_DISTRIBUTION": "100%__htc/minimal:0",
    "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU": "100%__htc/minimal:0",
    "OSG_SQUID_LOCATION": "None",
    "ENABLE_REMOTE_SYSLOG": "False",
}
"""``COMMON_DOCKER_RUN_ARGS``'s variables in test_inside_gha.sh."""

UNMASK = ("--security-opt", "unmask=/proc/*")


def image_run(*command: str) -> subprocess.CompletedProcess[str]:
    """``docker run --rm ... IMAGE command...`` with upstream's environment, as its CI does."""
    argv = ["podman", "run", "--rm", "--network", "none", "--user", "1000:1000", *UNMASK]
    for name, value in UPSTREAM_CI_ENV.items():
        argv += ["-e", f"{name}={value}"]
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    return subprocess.run(
        [*argv, pool.IMAGE, *command],
        capture_output=True,
        text=True,
        timeout=180,
        env=environ,
        check=False,
    )


def test_preflight_the_image_runs_bin_bash_c_bin_true() -> None:
    result = image_run("/bin/bash", "-c", "/bin/true")
    assert result.returncode == 0, result.stdout + result.stderr


def test_preflight_apptainer_runs_inside_and_runs_htcondors_test_image() -> None:
    version = image_run("/bin/bash", "-c", "/usr/bin/apptainer version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip()[:1].isdigit(), version.stdout
    inner = image_run(
        "/bin/bash",
        "-c",
        "/usr/bin/apptainer exec /usr/libexec/condor/singularity_test_sandbox /exit_37",
    )
    assert inner.returncode == 37, inner.stdout + inner.stderr


def test_startup_and_has_singularity_through_condor_status_direct(
    pilots: Pilots, tmp_path: Path
) -> None:
    """Upstream's environment, the token mounted where upstream mounts it (not in
    TOKEN): the startd comes up, and an exec session asking it directly with FS
    authentication reads HAS_SINGULARITY = true."""
    token = tmp_path / "token"
    token.write_text(pilots.pool.mint_token() + "\n")
    token.chmod(0o644)
    pilot = pilots.start(
        "osg-ci",
        {**UPSTREAM_CI_ENV, "MIN_DISK_GB": "0"},
        token_env=False,
        volumes=[(token, TOKEN_FILE, "ro")],
    )
    address = pilot.exec(
        ["bash", "-c", 'head -n1 "$(condor_config_val STARTD_ADDRESS_FILE)"']
    ).check("the startd's address file")
    has_singularity = pilot.exec(
        [
            "env",
            "_CONDOR_SEC_CLIENT_AUTHENTICATION_METHODS=FS",
            "condor_status",
            "-slot",
            "-direct",
            address.stdout.strip(),
            "-af",
            "HAS_SINGULARITY",
        ]
    ).check("condor_status -direct")
    assert has_singularity.stdout.split() == ["true"], has_singularity.stdout
    logs = pilot.logs()
    assert "htc/minimal:0" in logs, "the missing default image is named in a WARN"
