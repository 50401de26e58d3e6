"""Apptainer: find a working apptainer for container jobs, proven by a trivial run.

Candidates are the image's own (``apptainer``/``singularity`` on ``PATH``), then
the one OSG publishes in CVMFS. A candidate counts only when it really runs a
container: HTCondor's own test sandbox (``singularity_test_sandbox``, whose
``/exit_37`` exits 37, the check HTCondor's starter makes) under ``exec
--contain --ipc`` (and ``--pid`` unless ``SINGULARITY_DISABLE_PID_NAMESPACES``).
Without one, ``HAS_SINGULARITY`` is advertised false so container jobs do not
match. Stdlib only: it also runs inside cvmfsexec's namespace
(``cvmfs_probe startup``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CVMFS_APPTAINER = "oasis.opensciencegrid.org/mis/apptainer/current/bin/apptainer"
"""Relative to the CVMFS root: the Apptainer OSG publishes."""
TEST_SANDBOX = Path("/usr/libexec/condor/singularity_test_sandbox")
TEST_PROGRAM = "/exit_37"
TEST_EXIT_CODE = 37
TEST_TIMEOUT_SECONDS = 60.0
"""A first run from CVMFS fetches the binary and its libraries: allow for that."""


@dataclass(frozen=True, kw_only=True)
class ApptainerTest:
    path: str | None = None
    """The binary that passed the test run (None: none did)."""
    version: str = ""
    detail: str = ""
    """What was found or why no candidate works, for the check report."""

    @property
    def works(self) -> bool:
        return self.path is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ApptainerTest:
        path = data.get("path")
        return cls(
            path=path if isinstance(path, str) and path else None,
            version=str(data.get("version") or ""),
            detail=str(data.get("detail") or ""),
        )


def candidates(*, cvmfs_root: str | None, search_path: str | None) -> list[str]:
    """The image's apptainer first (its version is the one the image was tested with),
    then CVMFS's; as absolute paths, each binary once (Debian's ``singularity`` is a
    link to ``apptainer``: testing it again would only double the wait and the report)."""
    found: list[str] = []
    seen: set[str] = set()
    for name in ("apptainer", "singularity"):
        path = shutil.which(name, path=search_path)
        if path and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            found.append(path)
    if cvmfs_root:
        found.append(f"{cvmfs_root.rstrip('/')}/{CVMFS_APPTAINER}")
    return found


def test_command(binary: str, *, pid_namespace: bool, sandbox: Path = TEST_SANDBOX) -> list[str]:
    flags = ["--contain", "--ipc", *(["--pid"] if pid_namespace else [])]
    return [binary, "exec", *flags, str(sandbox), TEST_PROGRAM]


def test_binary(
    binary: str,
    *,
    pid_namespace: bool = True,
    sandbox: Path = TEST_SANDBOX,
    timeout: float = TEST_TIMEOUT_SECONDS,
) -> ApptainerTest:
    """Run the test container with ``binary``; a working one exits with TEST_EXIT_CODE."""
    if not sandbox.is_dir():
        return ApptainerTest(detail=f"no test image at {sandbox} (is HTCondor installed?)")
    try:
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
        if version.returncode != 0:
            return ApptainerTest(detail=f"{binary} --version exited {version.returncode}")
        result = subprocess.run(
            test_command(binary, pid_namespace=pid_namespace, sandbox=sandbox),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ApptainerTest(detail=f"{binary} did not finish its test run in {timeout:g} s")
    except OSError as error:
        return ApptainerTest(detail=f"{binary}: {error.strerror or error}")
    if result.returncode != TEST_EXIT_CODE:
        return ApptainerTest(
            detail=f"{binary} test run exited {result.returncode}, not {TEST_EXIT_CODE}: "
            + failure_reason(result.stderr or result.stdout)
        )
    shown = version.stdout.strip().splitlines()[0] if version.stdout.strip() else ""
    return ApptainerTest(path=binary, version=shown, detail=f"{binary} ran a test container")


PROC_MOUNT_REFUSED = "can't mount proc filesystem"
PROC_MOUNT_FIX = (
    "the container engine masks /proc: run the pilot with --security-opt unmask=/proc/*"
    " (podman) or --security-opt systempaths=unconfined (docker)"
)


USERNS_REFUSED = "user namespace"
"""In each of the reasons Apptainer's starter gives when it cannot create a user
namespace (cmd/starter/c/starter.c, nserror: "user namespace disabled", "not allowed
to create user namespace", "maximum number of user namespaces exceeded, check
/proc/sys/user/max_user_namespaces", "user namespace requires to set
/proc/sys/kernel/unprivileged_userns_clone to 1", after "Failed to create user
namespace:")."""
USERNS_FIX = (
    "user namespaces are not available to the pilot: allow them on the host"
    " (sysctl user.max_user_namespaces=15000; kernel.unprivileged_userns_clone=1 where"
    " that exists) and in the container engine (docker's default seccomp profile refuses"
    " them: --security-opt seccomp=unconfined)"
)
NO_APPTAINER = "no apptainer in the image or in CVMFS"
NO_APPTAINER_FIX = (
    "run the default image (HTCondor 25 with Apptainer), or set JOB_CONTAINMENT=none"
    " to run jobs bare (an image built without Apptainer, e.g. the Debian-stable build)"
)


def known_fix(said: str) -> str | None:
    """The run option or host setting that cures a refusal Apptainer is known to give."""
    if PROC_MOUNT_REFUSED in said:
        return PROC_MOUNT_FIX
    if USERNS_REFUSED in said:
        return USERNS_FIX
    if NO_APPTAINER in said:
        return NO_APPTAINER_FIX
    return None


def failure_reason(output: str) -> str:
    """Apptainer's own reason (its last FATAL line, else the output's end), and the fix
    for the refusals seen in containers: a masked /proc (podman's and docker's default),
    no user namespaces (host sysctl, docker's seccomp profile)."""
    lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("FATAL")]
    said = fatal[-1] if fatal else " ".join(lines)[-200:]
    fix = known_fix(said)
    return f"{said} -- {fix}" if fix else said


def find_working(
    binaries: Iterable[str],
    *,
    pid_namespace: bool = True,
    sandbox: Path = TEST_SANDBOX,
    timeout: float = TEST_TIMEOUT_SECONDS,
) -> ApptainerTest:
    """The first candidate that exists and passes the test run."""
    tried = []
    for binary in binaries:
        if not os.access(binary, os.X_OK):
            continue
        tested = test_binary(binary, pid_namespace=pid_namespace, sandbox=sandbox, timeout=timeout)
        if tested.works:
            return tested
        tried.append(tested.detail)
    return ApptainerTest(detail="; ".join(tried) or NO_APPTAINER)
