"""End-to-end: every job contained (SPEC 7.6), in a real pool, with real Apptainer and real jobs.

A hostile job (an ordinary shell-script job) tries what a job on a bare pilot can
do to it (FACTS, "What an OSPool job does to today's pilot") and prints one
``CAN ...`` line per success; contained, it must print none, and the pilot keeps
its daemons and its slot. Exit codes come back from inside the container; the
job's own ``+SingularityImage`` and the default distribution pick the image from a
CVMFS-like tree of real Apptainer images (``tests/support/job_images.py``); a pilot
without CVMFS contains jobs in the image's built-in job image. Without the run
option Apptainer needs (podman's ``--security-opt unmask=/proc/*``): ``required``
exits 69 naming it, ``preferred`` runs bare and says so in the log and the ad.

Run: ``OSPOOL_EP_IMAGE=<image> pytest -m container tests/e2e/test_job_containment.py -v -s``
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import job_images
import pool
import pytest
from conftest import TOKEN_FILE, Pilot, Pilots, container_marks, remove_jobs, wait_status

pytestmark = container_marks()

JobStatus = pool.JobStatus
BUILTIN_IMAGE = "/usr/lib/ospool-ep/job-image"

HOSTILE = r"""#!/bin/sh
# A hostile job: everything it manages against the pilot is one "CAN ..." line.
trap '' TERM HUP INT
can() { echo "CAN $*"; }
echo "RAN uid=$(id -u) cwd=$PWD pid1=$(cat /proc/1/comm 2>/dev/null)"
up="$PWD/../.."   # the pilot's LOCAL_DIR from a bare job's execute/dir_N
for f in /etc/condor/tokens-orig.d/* /pilot/*/tokens.d/* "$up"/tokens.d/*; do
    [ -f "$f" ] && head -c 1 "$f" >/dev/null 2>&1 && can "read token $f"
done
for e in /proc/[0-9]*/environ; do
    grep -qa TOKEN "$e" 2>/dev/null && can "read TOKEN in $e"
done
env | grep -q '^TOKEN=' && can "see TOKEN in its own environment"
for d in /pilot/*/config /pilot/* /pilot "$up/config" "$up" /etc/condor /tmp/ospool-ep; do
    [ -d "$d" ] && touch "$d/hostile-was-here" 2>/dev/null && can "write into $d"
done
[ -f /tmp/ospool-ep/state.json ] && : >>/tmp/ospool-ep/state.json 2>/dev/null \
    && can "write the state file"
# HTCondor binds the job's own sandbox at its host path too (apptainer --home), so the
# path down to it exists; anything else there (tokens.d, config, log, another
# pilot's directory, another job's sandbox) is the pilot's.
own="$(dirname "$HOME")"
echo "HOME=$HOME"
for d in /pilot/*; do
    [ -e "$d" ] && [ "$d" != "${own%%/execute/*}" ] && can "see another pilot's directory $d"
done
for d in /pilot/*/*; do
    [ -e "$d" ] && [ "${d##*/}" != execute ] && can "see the pilot's $d"
done
for d in /pilot/*/execute/* "$PWD"/../../dir_*; do
    [ -e "$d" ] && [ "$d" != "$own" ] && [ "$(cd "$d" && pwd)" != "$own" ] \
        && can "see another job's sandbox $d"
done
for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    case "$comm" in
    condor_* | ospool-ep | python3)
        can "see process $comm ${p#/proc/}"
        kill -0 "${p#/proc/}" 2>/dev/null && can "signal $comm ${p#/proc/}"
        kill -TERM "${p#/proc/}" 2>/dev/null
        ;;
    esac
done
pid1=$(cat /proc/1/comm 2>/dev/null)
kill -TERM 1 2>/dev/null && [ "$pid1" != appinit ] && can "signal pid 1 ($pid1)"
command -v pkill >/dev/null && pkill -TERM condor_ 2>/dev/null && can "pkill condor_"
echo DONE
"""

PROBE = r"""#!/bin/sh
# Where a contained job is: its directory, its PID 1, its image's marker.
echo "cwd=$PWD"
echo "pid1=$(cat /proc/1/comm)"
echo "marker=$(cat /ospool-ep-test-image 2>/dev/null || echo none)"
exit "${1:-0}"
"""


def submit_script(pilot: Pilot, text: str, arguments: str = "", **extra: object) -> int:
    """Submit ``text`` as the job's executable (written inside the CM, where
    condor_submit runs, and transferred from there) pinned to ``pilot``."""
    path = f"/home/{pool.SUBMIT_USER}/job-{time.monotonic_ns()}.sh"
    encoded = base64.b64encode(text.encode()).decode()
    pilot.pool.exec_cm(
        ["sh", "-c", f"echo {encoded} | base64 -d > {path} && chmod 755 {path}"],
        user=pool.SUBMIT_USER,
    ).check("write job script")
    return pilot.submit({"executable": path, "arguments": arguments, **extra})


def output(pilot: Pilot, cluster: int) -> dict[str, str]:
    """``key=value`` lines of the job's stdout."""
    text = pilot.pool.job_output(cluster)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def cvmfs_tree() -> Path:
    reason = job_images.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    started = time.monotonic()
    tree = job_images.cvmfs_tree()
    print(f"\njob images ready in {time.monotonic() - started:.1f} s: {tree}")
    return tree


@pytest.fixture(autouse=True)
def _needs_apptainer() -> None:
    if not job_images.has_apptainer():
        pytest.skip(
            "the Debian-stable build has no Apptainer (its pilots need JOB_CONTAINMENT=none)"
        )


def test_a_hostile_job_reaches_nothing_of_the_pilot_and_the_pilot_keeps_its_slot(
    pilots: Pilots, tmp_path: Path
) -> None:
    """With the token both mounted and in TOKEN, and a second pilot sharing /pilot, the
    job cannot read either token copy or any environ holding TOKEN, write the pilot's
    config, state or directory, see other pilots' directories or other sandboxes, or
    see and signal the supervisor, master or startd (the job's PID 1 is Apptainer's
    appinit); afterwards the pilot runs the same daemons and still has its slot."""
    test_pool = pilots.pool
    shared = tmp_path / "pilot"
    shared.mkdir()
    shared.chmod(0o777)
    token = test_pool.mint_token()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o644)
    volumes = [(shared, "/pilot", "rw"), (token_file, TOKEN_FILE, "ro")]
    other = pilots.start("ep-other", volumes=[(shared, "/pilot", "rw")])
    pilot = pilots.start("ep-hostile", token=token, volumes=volumes)
    ad = pilot.pslot()
    assert ad["OSPOOL_EP_JOBS_CONTAINED"] is True
    assert ad["OSG_SINGULARITY_IMAGE_DEFAULT"] == BUILTIN_IMAGE
    before = {c: pilot.process(c).pid for c in ("condor_master", "condor_startd")}

    cluster = submit_script(pilot, HOSTILE)
    try:
        wait_status(test_pool, cluster, JobStatus.COMPLETED, timeout=120)
    finally:
        remove_jobs(test_pool, cluster)
    out = test_pool.job_output(cluster)
    print(f"\nhostile job said:\n{out}")
    assert out.startswith("RAN uid="), out
    assert "cwd=/srv/scratch pid1=appinit" in out, out
    assert "DONE" in out, out
    assert [line for line in out.splitlines() if line.startswith("CAN")] == []

    assert pilot.running() and other.running()
    after = {c: pilot.process(c).pid for c in ("condor_master", "condor_startd")}
    assert after == before
    pilot.wait_for_slot(timeout=30)
    assert not list(shared.glob("*/hostile-was-here")) and not list(shared.glob("hostile*"))


def test_a_contained_job_exits_3_from_srv_in_its_own_pid_namespace_without_cvmfs(
    pilots: Pilots,
) -> None:
    """No CVMFS: the built-in job image contains the job; it starts in /srv/scratch
    (HTCondor 25 puts the job's directory under SINGULARITY_TARGET_DIR /srv), its
    PID 1 is appinit, and its exit code 3 is the job's ExitCode."""
    pilot = pilots.start("ep-exit3")
    assert pilot.pslot()["OSG_SINGULARITY_IMAGE_DEFAULT"] == BUILTIN_IMAGE
    cluster = submit_script(pilot, PROBE, "3")
    wait_status(pilots.pool, cluster, JobStatus.COMPLETED, timeout=120)
    (job,) = pilots.pool.job_ads(cluster, ("ProcId", "ExitCode", "JobStatus"))
    assert job["ExitCode"] == 3
    said = output(pilot, cluster)
    assert (said["cwd"], said["pid1"], said["marker"]) == ("/srv/scratch", "appinit", "none")


def test_the_default_distribution_and_singularity_image_pick_the_cvmfs_images(
    pilots: Pilots, cvmfs_tree: Path
) -> None:
    """With CVMFS images: OSG_DEFAULT_CONTAINER_DISTRIBUTION=100%__htc/rocky:8 makes
    rocky:8 every job's default (its marker inside the job), and a job naming
    +SingularityImage = rocky:9 runs in rocky:9."""
    pilot = pilots.start(
        "ep-distrib",
        {"OSG_DEFAULT_CONTAINER_DISTRIBUTION": "100%__htc/rocky:8"},
        volumes=[(cvmfs_tree, "/cvmfs", "ro")],
    )
    rocky8, rocky9 = job_images.image_path("htc/rocky:8"), job_images.image_path("htc/rocky:9")
    assert pilot.pslot()["OSG_SINGULARITY_IMAGE_DEFAULT"] == rocky8
    default = submit_script(pilot, PROBE)
    named = submit_script(pilot, PROBE, **{"+SingularityImage": f'"{rocky9}"'})
    for cluster in (default, named):
        wait_status(pilots.pool, cluster, JobStatus.COMPLETED, timeout=120)
    assert output(pilot, default)["marker"] == "htc/rocky:8"
    assert output(pilot, named)["marker"] == "htc/rocky:9"
    assert output(pilot, named)["cwd"] == "/srv/scratch"


def test_the_upstream_default_distribution_chooses_one_of_its_images(
    pilots: Pilots, cvmfs_tree: Path
) -> None:
    """``10%__htc/rocky:8 90%__htc/rocky:9`` (the default): the pilot's default image is
    one of the two, and a job without an image runs in it."""
    pilot = pilots.start("ep-upstream", volumes=[(cvmfs_tree, "/cvmfs", "ro")])
    chosen = pilot.pslot()["OSG_SINGULARITY_IMAGE_DEFAULT"]
    names = {job_images.image_path(n): n for n in job_images.DIRECTORY_IMAGES}
    assert chosen in names
    cluster = submit_script(pilot, PROBE)
    wait_status(pilots.pool, cluster, JobStatus.COMPLETED, timeout=120)
    assert output(pilot, cluster)["marker"] == names[chosen]


def test_a_job_naming_a_sif_image_runs_in_it(pilots: Pilots, cvmfs_tree: Path) -> None:
    """A SIF (as users name with +SingularityImage): without a usable /dev/fuse for
    uid 1000, Apptainer must unpack it (--unsquash); the job runs in it."""
    pilot = pilots.start("ep-sif", volumes=[(cvmfs_tree, "/cvmfs", "ro")])
    sif = job_images.image_path(job_images.SIF_IMAGE)
    cluster = submit_script(pilot, PROBE, **{"+SingularityImage": f'"{sif}"'})
    wait_status(pilots.pool, cluster, JobStatus.COMPLETED, timeout=180)
    assert output(pilot, cluster)["marker"] == job_images.SIF_IMAGE


def test_required_containment_without_the_proc_unmask_exits_69_naming_it(
    pilots: Pilots,
) -> None:
    """podman's default /proc mask: Apptainer cannot mount the job's /proc, so
    JOB_CONTAINMENT=required (the default) ends the pilot with 69 and the fix."""
    pilot = pilots.start("ep-masked", wait_slot=False, security_opt=())
    code = pilot.wait_exit(timeout=90)
    out = pilot.logs()
    assert code == 69, out
    assert "JOB_CONTAINMENT=required" in out, out
    assert "--security-opt unmask=/proc/*" in out, out


def test_preferred_containment_without_the_proc_unmask_runs_jobs_bare_and_says_so(
    pilots: Pilots,
) -> None:
    """JOB_CONTAINMENT=preferred in the same place: a WARN, OSPOOL_EP_JOBS_CONTAINED
    false in the ad, and jobs still run (bare)."""
    pilot = pilots.start("ep-preferred", {"JOB_CONTAINMENT": "preferred"}, security_opt=())
    ad = pilot.pslot()
    assert ad["OSPOOL_EP_JOBS_CONTAINED"] is False
    assert ad["HAS_SINGULARITY"] is False
    out = pilot.logs()
    assert "warning: Job containment: JOB_CONTAINMENT=preferred: jobs run bare" in out, out
    cluster = submit_script(pilot, PROBE, "0")
    wait_status(pilots.pool, cluster, JobStatus.COMPLETED, timeout=120)
    assert not output(pilot, cluster)["cwd"].startswith("/srv")


GREEDY = r"""#!/bin/sh
# Touches 300 MB (a bytes object is written, unlike a calloc'd bytearray), then waits.
exec python3 -c 'import time; hog = b"x" * (300 * 1024 * 1024); time.sleep(600)'
"""


def test_a_contained_job_over_its_memory_request_is_held(pilots: Pilots) -> None:
    """HTCondor's Hold_If_Memory_Exceeded holds it: the job's retirement time is none
    once it is over its request, so it is not left to retire (run on) until ToDie. The
    starter reports usage every 5 s here (HTCondor's default is 300 s)."""
    pilot = pilots.start("ep-greedy", {"_CONDOR_STARTER_UPDATE_INTERVAL": "5"})
    cluster = submit_script(pilot, GREEDY, request_memory="64")
    try:
        wait_status(pilots.pool, cluster, JobStatus.HELD, timeout=150)
        (job,) = pilots.pool.job_ads(cluster, ("ProcId", "HoldReasonSubCode", "HoldReason"))
    finally:
        remove_jobs(pilots.pool, cluster)
    assert job["HoldReasonSubCode"] == 102, job
    assert "memory usage exceeded request_memory" in job["HoldReason"], job
    assert pilot.running()


EVIL_PLUGIN = r"""#!/bin/sh
# A job's own transfer plugin: it would run in the starter, outside the job's container,
# as the pilot's uid. It leaves a mark where the test can see it, and tries the token.
if [ "$1" = "-classad" ]; then
    printf 'MultipleFileSupport = true\nPluginType = "FileTransfer"\n'
    printf 'PluginVersion = "1"\nSupportedMethods = "evil"\n'
    exit 0
fi
for d in /pilot /tmp; do echo "plugin ran as $(id -u)" > "$d/evil-plugin-ran" 2>/dev/null; done
cat /pilot/*/tokens.d/* > /pilot/evil-plugin-token 2>/dev/null
exit 1
"""


def test_a_jobs_own_transfer_plugin_never_runs_on_the_pilot(pilots: Pilots, tmp_path: Path) -> None:
    """``transfer_plugins`` would run the job's script in the starter, outside Apptainer,
    as the pilot's uid (beside its token): the pilot ignores it, so the job's ``evil://``
    input has no plugin (the starter says so and the transfer fails), and the script left
    no mark in the pilot's /pilot or /tmp."""
    shared = tmp_path / "pilot"
    shared.mkdir()
    shared.chmod(0o777)
    pilot = pilots.start("ep-own-plugin", volumes=[(shared, "/pilot", "rw")])
    test_pool = pilots.pool
    plugin = f"/home/{pool.SUBMIT_USER}/evil_plugin-{time.monotonic_ns()}.sh"
    encoded = base64.b64encode(EVIL_PLUGIN.encode()).decode()
    test_pool.exec_cm(
        ["sh", "-c", f"echo {encoded} | base64 -d > {plugin} && chmod 755 {plugin}"],
        user=pool.SUBMIT_USER,
    ).check("write the job's plugin")
    cluster = submit_script(
        pilot,
        PROBE,
        transfer_plugins=f"evil={plugin}",
        transfer_input_files="evil://anything/x",
        should_transfer_files="YES",
    )
    try:
        pilot.wait_log("plugin for type evil not found", timeout=120)
    finally:
        remove_jobs(test_pool, cluster)
    assert not list(shared.glob("evil-plugin-*"))
    assert pilot.exec(["sh", "-c", "ls /tmp/evil-plugin-ran 2>/dev/null || true"]).stdout == ""
    assert pilot.running()
