"""End-to-end: CVMFS for a real pilot in a real pool (SPEC 9).

Real directory trees are bind-mounted at /cvmfs (what a host's CVMFS looks like
through ``-v /cvmfs:/cvmfs``), a repo is emptied while the pilot runs, and the
pool's own negotiator shows what START then does. cvmfsexec asked for in an
image built without it must end the pilot with 69 at once.

Run: ``OSPOOL_EP_IMAGE=<image> python -m pytest -m container tests/e2e/test_cvmfs.py -v -s``
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import job_images
import pool
import pytest
from conftest import Pilots, container_marks, remove_jobs, stays, wait_status

pytestmark = container_marks()

JobStatus = pool.JobStatus
CONFIG = "config-osg.opensciencegrid.org"
OASIS = "oasis.opensciencegrid.org"
SINGULARITY = "singularity.opensciencegrid.org"
FAKE_APPTAINER = """#!/bin/sh
# Stands in for OSG's apptainer in CVMFS: runs the test sandbox's program.
case "$1" in
--version) echo "apptainer version 0.0-test" ;;
exec) shift; while [ "${1#-}" != "$1" ]; do shift; done; exec "$1$2" ;;
*) exit 2 ;;
esac
"""


def make_tree(root: Path, *, healthy: tuple[str, ...], empty: tuple[str, ...] = ()) -> Path:
    """A /cvmfs of plain directories, readable by the pilot's uid 1000."""
    root.mkdir(parents=True)
    for repo in healthy:
        (root / repo / "etc").mkdir(parents=True)
        (root / repo / "README").write_text(f"{repo}\n")
    for repo in empty:
        (root / repo).mkdir()
    if OASIS in healthy:
        binary = root / OASIS / "mis/apptainer/current/bin/apptainer"
        binary.parent.mkdir(parents=True)
        binary.write_text(FAKE_APPTAINER)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755)
    return root


def cvmfs_ad(pilot: object, *names: str) -> dict[str, object]:
    ad = pilot.pslot()  # type: ignore[attr-defined]
    return {name: ad.get(name) for name in names}


def test_bind_mounted_repos_are_probed_and_advertised(pilots: Pilots, tmp_path: Path) -> None:
    """Healthy repos are HAS_CVMFS true, an empty one and a missing one are not; the
    node is validated; an Apptainer passed its test run (the image's own where it has
    one, else the one found in the oasis repo), so HAS_SINGULARITY is true; `ospool-ep
    check` says the same, one line each; a job (contained where the image has
    Apptainer, in the built-in image: the image repo is empty) reads /cvmfs."""
    root = make_tree(tmp_path / "cvmfs", healthy=(CONFIG, OASIS), empty=(SINGULARITY,))
    pilot = pilots.start(
        "ep-cvmfs",
        {"CVMFSEXEC_REPOS": "missing.example.org"},
        volumes=[(root, "/cvmfs", "ro")],
    )
    # The startd cron job publishes the probe's findings a little after the slot
    # first appears (later still on a busy host): wait for them, never read once.
    pilot.wait_for_slot(
        timeout=120,
        extra="OSPOOL_EP_CVMFS_PROBLEMS =!= undefined"
        " && HAS_CVMFS_missing_example_org =!= undefined",
    )
    ad = pilot.pslot()
    assert ad["OSPOOL_EP_CVMFS_MODE"] == "bind"
    assert ad["OSPOOL_EP_CVMFS_PROBLEMS"] == (
        f"{SINGULARITY}: /cvmfs/{SINGULARITY} is empty; "
        "missing.example.org: /cvmfs/missing.example.org does not exist"
    )
    assert ad["HAS_CVMFS_config_osg_opensciencegrid_org"] is True
    assert ad["HAS_CVMFS_oasis_opensciencegrid_org"] is True
    assert ad["HAS_CVMFS_singularity_opensciencegrid_org"] is False
    assert ad["HAS_CVMFS_missing_example_org"] is False
    assert ad["OSG_NODE_VALIDATED"] is True
    assert ad["HAS_SINGULARITY"] is True

    check = pilot.exec(["ospool-ep", "check"], user="1000").stdout
    assert f"PASS  CVMFS {CONFIG}: directory" in check
    assert f"WARN  CVMFS {SINGULARITY}: not usable: /cvmfs/{SINGULARITY} is empty" in check
    assert "PASS  CVMFS: bind: host CVMFS at /cvmfs" in check
    if job_images.has_apptainer():
        # The image's own Apptainer comes before the one in CVMFS (detect/apptainer).
        assert ad["OSG_SINGULARITY_VERSION"].startswith("apptainer version 1."), ad
        assert "PASS  Apptainer: /usr/bin/apptainer ran a test container" in check, check
    else:
        assert ad["OSG_SINGULARITY_VERSION"] == "apptainer version 0.0-test"
        assert "PASS  Apptainer: /cvmfs/oasis.opensciencegrid.org/mis/apptainer" in check

    cluster = pilot.submit(
        {
            "executable": "/bin/cat",
            "arguments": f"/cvmfs/{OASIS}/README",
            "requirements": f"{pilot.requirements()} && HAS_CVMFS_oasis_opensciencegrid_org",
        }
    )
    wait_status(pilot.pool, cluster, JobStatus.COMPLETED, timeout=60)
    assert pilot.pool.job_output(cluster) == f"{OASIS}\n"


def test_a_repo_going_bad_stops_new_jobs_but_not_running_ones_and_recovers(
    pilots: Pilots, tmp_path: Path
) -> None:
    """The cron job (every 2 s here) sees a repo emptied at run time: HAS_CVMFS turns
    false and OSG_NODE_VALIDATED false in the collector, a new job stays idle while a
    running one goes on to complete; refilled, the repo is true again and the idle
    job runs."""
    root = make_tree(tmp_path / "cvmfs", healthy=(CONFIG, OASIS, SINGULARITY))
    test_pool = pilots.pool
    pilot = pilots.start(
        "ep-flip",
        # The startd's START changes at the next cron run; the collector sees it at the
        # startd's next update (UPDATE_INTERVAL, 300 s by default): shortened here.
        {
            "CVMFS_CHECK_SECONDS": "2",
            "_CONDOR_UPDATE_INTERVAL": "4",
            "NUM_CPUS": "2",
            "MEMORY": "2000",
        },
        volumes=[(root, "/cvmfs", "ro")],
    )
    running = pilot.submit({"executable": "/bin/sleep", "arguments": "40"})
    waiting = None
    try:
        wait_status(test_pool, running, JobStatus.RUNNING, timeout=60)
        emptied = time.monotonic()
        shutil.rmtree(root / SINGULARITY / "etc")
        (root / SINGULARITY / "README").unlink()
        pilot.wait_for_slot(
            timeout=30,
            extra="HAS_CVMFS_singularity_opensciencegrid_org == false"
            " && OSG_NODE_VALIDATED == false",
        )
        flipped = round(time.monotonic() - emptied, 1)
        print(f"\nrepo emptied -> HAS_CVMFS false in the collector: {flipped} s")
        ad = pilot.pslot()
        assert "singularity.opensciencegrid.org" in ad["OSPOOL_EP_CVMFS_PROBLEMS"]
        assert ad["HAS_CVMFS_oasis_opensciencegrid_org"] is True

        waiting = pilot.submit({"executable": "/bin/echo", "arguments": "later"})
        stays(test_pool, waiting, JobStatus.IDLE, seconds=8)
        assert test_pool.job_status(running) == {0: JobStatus.RUNNING}

        (root / SINGULARITY / "etc").mkdir()
        (root / SINGULARITY / "etc").chmod(0o755)
        recovered = time.monotonic()
        wait_status(test_pool, waiting, JobStatus.COMPLETED, timeout=60)
        print(f"repo back -> idle job completed: {time.monotonic() - recovered:.1f} s")
        assert pilot.pslot()["OSG_NODE_VALIDATED"] is True
        wait_status(test_pool, running, JobStatus.COMPLETED, timeout=60)
        (job,) = test_pool.job_ads(running, ("ProcId", "ExitCode", "NumJobStarts"))
        assert (job["ExitCode"], job["NumJobStarts"]) == (0, 1)
    finally:
        remove_jobs(test_pool, running, *([waiting] if waiting else []))


def test_cvmfsexec_asked_for_in_an_image_without_it_exits_69_at_once(pilots: Pilots) -> None:
    """No distribution in the image: exit 69 saying so, before anything is started."""
    pilot = pilots.start(
        "ep-noexec", {"CVMFSEXEC_REPOS": "oasis.opensciencegrid.org"}, wait_slot=False
    )
    started = time.monotonic()
    code = pilot.wait_exit(timeout=30)
    took = time.monotonic() - started
    out = pilot.logs()
    assert code == 69, out
    assert "this image has no cvmfsexec distribution" in out
    assert "CVMFSEXEC_VERSION" in out
    assert took < 15, f"took {took:.1f} s"
    print(f"\ncvmfsexec without a distribution: exit 69 after {took:.1f} s")


FAKE_CVMFSEXEC_FAILING = """#!/bin/bash
# Fails the way cvmfsexec does when a mount fails: its own words, a log file.
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/log"
log="$here/log/oasis.opensciencegrid.org.log"
echo "(oasis.opensciencegrid.org) failed to discover HTTP proxy servers" >"$log"
echo "Failed to mount oasis.opensciencegrid.org"
echo "mountrepo oasis.opensciencegrid.org failed"
exit 1
"""


def test_a_cvmfsexec_mount_failure_exits_69_showing_its_log_lines(
    pilots: Pilots, tmp_path: Path
) -> None:
    """A distribution that cannot mount (a stand-in printing cvmfsexec's failure and
    writing its log): exit 69, with cvmfsexec's own lines and its log in the output."""
    dist = tmp_path / "cvmfsexec"
    (dist / "dist" / "etc" / "cvmfs").mkdir(parents=True)
    (dist / "cvmfsexec").write_text(FAKE_CVMFSEXEC_FAILING)
    for path in [dist, *dist.rglob("*")]:
        path.chmod(0o755)
    pilot = pilots.start(
        "ep-execfail",
        {"CVMFSEXEC_REPOS": OASIS, "CVMFS_HTTP_PROXY": "http://squid.example:3128"},
        volumes=[(dist, "/usr/lib/ospool-ep/cvmfsexec", "ro")],
        devices=["/dev/fuse:/dev/fuse"],
        wait_slot=False,
    )
    code = pilot.wait_exit(timeout=60)
    out = pilot.logs()
    assert code == 69, out
    assert "cvmfsexec: mountrepo oasis.opensciencegrid.org failed" in out
    assert "oasis.opensciencegrid.org.log: (oasis.opensciencegrid.org) failed to discover" in out
    assert "CVMFS: cvmfsexec failed (exit 1) mounting oasis.opensciencegrid.org" in out


def _squashfuse_mount(image: Path, target: Path) -> bool:
    result = subprocess.run(
        ["squashfuse", "-o", "allow_other", str(image), str(target)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def test_a_real_fuse_mount_is_seen_as_fuse_with_its_cvmfs_xattrs(
    pilots: Pilots, tmp_path: Path
) -> None:
    """A squashfs image mounted with squashfuse (a real FUSE filesystem) on the host and
    bind-mounted into the pilot: the probe finds a FUSE entry in the pilot's mountinfo
    and the user.fqrn/user.revision xattrs stored in the image."""
    if not (shutil.which("squashfuse") and shutil.which("mksquashfs")):
        pytest.skip("squashfuse/squashfs-tools not installed (apt-get install squashfuse)")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse on this host")
    source = tmp_path / "src"
    (source / "etc").mkdir(parents=True)
    (source / "README").write_text("config\n")
    try:
        subprocess.run(["setfattr", "-n", "user.fqrn", "-v", CONFIG, str(source)], check=True)
        subprocess.run(["setfattr", "-n", "user.revision", "-v", "4711", str(source)], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot set user xattrs here: {error}")
    for path in [source, *source.rglob("*")]:
        path.chmod(0o755)
    image = tmp_path / "config.sqfs"
    subprocess.run(
        ["mksquashfs", str(source), str(image), "-xattrs", "-quiet", "-noappend"],
        check=True,
        capture_output=True,
    )
    root = make_tree(tmp_path / "cvmfs", healthy=(OASIS, SINGULARITY))
    target = root / CONFIG
    target.mkdir(mode=0o755)
    if not _squashfuse_mount(image, target):
        pytest.skip("squashfuse could not mount here (kernel or FUSE permissions)")
    try:
        pilot = pilots.start("ep-fuse", volumes=[(root, "/cvmfs", "ro")])
        ad = pilot.pslot()
        assert ad["HAS_CVMFS_config_osg_opensciencegrid_org"] is True
        assert ad["CVMFS_config_osg_opensciencegrid_org_REVISION"] == 4711
        check = pilot.exec(["ospool-ep", "check"], user="1000").stdout
        assert f"PASS  CVMFS {CONFIG}: FUSE mount, revision 4711" in check
    finally:
        pilots.remove_all()
        unmount = shutil.which("fusermount3") or shutil.which("fusermount")
        argv = [unmount, "-u", str(target)] if unmount else ["umount", "-l", str(target)]
        subprocess.run(argv, check=False, capture_output=True)
