"""The image's interface as OSG's container users know it (SPEC 3, 4.2; issue 12).

OSG's CI (osgvo-docker-pilot tests/test_inside_gha.sh) runs ``docker run IMAGE
/bin/bash -c ...`` and, in a running pilot, ``docker exec backfill condor_version``
and ``condor_status -direct <startd> -af HAS_SINGULARITY``; sites force their own
uid (``--user N``) with or without a /pilot mount, and read /pilot/log after a
pilot ended. Fixture differences from upstream's CI: the pool is the test pool
(tests/support/pool.py), the engine podman (its ``docker`` API), no CVMFS.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pool  # tests/support/pool.py (tests/ is not a package)
import pytest
from conftest import Pilots, container_marks

pytestmark = container_marks()

FORCED_UID = "12345"


def podman_run(*argv: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``podman run --rm IMAGE argv...``: the image's own ENTRYPOINT, as a site runs it."""
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "none", *options, pool.IMAGE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )


def test_docker_run_image_bin_bash_c_runs_the_command_with_its_exit_status() -> None:
    result = podman_run("/bin/bash", "-c", "echo hi; exit 3")
    assert (result.returncode, result.stdout) == (3, "hi\n"), result.stderr


def test_docker_run_image_condor_version_runs_htcondors_tool() -> None:
    result = podman_run("condor_version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("$CondorVersion: ")


def test_a_mistyped_subcommand_exits_2_with_a_did_you_mean() -> None:
    result = podman_run("chek")
    assert result.returncode == 2
    assert "did you mean 'check'?" in result.stderr


@pytest.mark.parametrize("passwd", [True, False], ids=["passwd-entry", "no-passwd-entry"])
def test_a_forced_uid_runs_commands_and_htcondors_tools_without_a_mount(passwd: bool) -> None:
    """Docker gives a forced uid no passwd entry (podman's --passwd=false does the same)."""
    options = ("--user", f"{FORCED_UID}:{FORCED_UID}", f"--passwd={str(passwd).lower()}")
    result = podman_run(
        "/bin/bash",
        "-c",
        "id -u; touch /pilot/x && echo writable; condor_config_val LOCAL_DIR",
        options=options,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [FORCED_UID, "writable", "/var"]


def test_exec_sessions_read_the_live_pilots_configuration_with_no_setup(
    pilots: Pilots,
) -> None:
    pilot = pilots.start("habits-exec")
    uuid = pilot.uuid
    local_dir = pilot.exec(["condor_config_val", "LOCAL_DIR"]).check("condor_config_val")
    assert local_dir.stdout.strip() == f"/pilot/ospool-ep-{uuid}"

    who = pilot.exec(["condor_who", "-daemons"]).check("condor_who")
    assert "Startd" in who.stdout or "STARTD" in who.stdout.upper(), who.stdout

    address = pilot.exec(
        ["bash", "-c", 'head -n1 "$(condor_config_val STARTD_ADDRESS_FILE)"']
    ).check("the startd's address file")
    direct = pilot.exec(
        [
            "condor_status",
            "-slot",
            "-direct",
            address.stdout.strip(),
            "-af",
            "OSPOOL_EP_PILOT_UUID",
            "HAS_SINGULARITY",
        ]
    ).check("condor_status -direct")
    assert direct.stdout.split()[0] == uuid


def test_two_pilots_sharing_a_pilot_mount_each_see_their_own_configuration(
    pilots: Pilots, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 1000, 1000)
    one = pilots.start("habits-one", volumes=[(shared, "/pilot", "rw")])
    two = pilots.start("habits-two", volumes=[(shared, "/pilot", "rw")])
    for pilot in (one, two):
        seen = pilot.exec(["condor_config_val", "LOCAL_DIR"]).check("condor_config_val")
        assert seen.stdout.strip() == f"/pilot/ospool-ep-{pilot.uuid}"


def image_passwd(tmp_path: Path) -> Path:
    """The image's own /etc/passwd: mounted over it, podman adds no entry for a forced
    uid, as docker never does."""
    result = podman_run("cat", "/etc/passwd")
    assert result.returncode == 0, result.stderr
    assert f":{FORCED_UID}:" not in result.stdout
    copy = tmp_path / "passwd"
    copy.write_text(result.stdout)
    copy.chmod(0o644)
    return copy


@pytest.mark.parametrize("mount", [False, True], ids=["no-mount", "host-dir"])
def test_a_forced_uid_pilot_with_no_passwd_entry_joins_with_apptainer_working(
    pilots: Pilots, tmp_path: Path, mount: bool
) -> None:
    """JOB_CONTAINMENT=required (the default): the pilot starts only where Apptainer works."""
    volumes: list[tuple[str | Path, str, str]] = [(image_passwd(tmp_path), "/etc/passwd", "ro")]
    if mount:
        host = tmp_path / "scratch"
        host.mkdir()
        os.chown(host, int(FORCED_UID), int(FORCED_UID))
        volumes.append((host, "/pilot", "rw"))
    name = f"habits-uid-{'mount' if mount else 'bare'}"
    pilot = pilots.start(name, volumes=volumes, user=f"{FORCED_UID}:{FORCED_UID}")
    seen = pilot.exec(["condor_config_val", "LOCAL_DIR"]).check("condor_config_val")
    assert seen.stdout.strip() == f"/pilot/ospool-ep-{pilot.uuid}"
    assert pilot.pslot()["HAS_SINGULARITY"] is True
    who = pilot.exec(["id", "-un"]).check("id -un")
    assert who.stdout.strip() == f"uid-{FORCED_UID}"


def test_an_ended_pilots_daemon_logs_stay_in_pilot_log_without_claim_ids(
    pilots: Pilots, tmp_path: Path
) -> None:
    host = tmp_path / "scratch"
    host.mkdir()
    os.chown(host, 1000, 1000)
    pilot = pilots.start("habits-logs", volumes=[(host, "/pilot", "rw")])
    pilot.signal("SIGTERM")
    assert pilot.wait_exit(timeout=60) == 0

    kept = host / "log" / str(pilot.uuid)
    names = sorted(p.name for p in kept.iterdir())
    assert {"MasterLog", "StartLog"} <= set(names), names
    assert not [n for n in names if n.startswith(".")]
    assert not list(host.glob("ospool-ep-*")), "the pilot left its directory"
    assert "startd" in (kept / "StartLog").read_text().lower()
