"""The pilot as a Slurm batch job: ``deploy/slurm/ospool-ep.sbatch`` (SPEC 8, 12).

Two kinds of test:

* The script itself, run by bash outside Slurm with stand-ins for ``squeue``,
  ``scontrol`` and ``ospool-ep`` on PATH (a stand-in prints what it was given):
  what it exports, where it finds the job's end time, and that it ``exec``\\s
  the supervisor, so the SIGTERM Slurm sends to the batch shell reaches it.
  Seconds; no containers.
* A real Slurm: a one-node cluster (Debian's slurmctld, slurmd, munge) in a
  container built from the pilot image (``tests/support/slurm/``), on the test pool's
  network. The pilot script is submitted with a 3-minute walltime and its
  default runtime: the pilot image under the node's Apptainer, contained, its
  jobs in Apptainer again inside. The pilot joins the pool sized to the job's
  allocation and says its jobs are contained, runs a job, runs one that looks
  for the submitting user's key, munge socket and sbatch and finds none, has a
  long job running when the end comes, and is gone before the walltime: Slurm
  records the job COMPLETED (not TIMEOUT or CANCELLED), the short jobs
  completed and the long one is back in the queue, idle. About 4 minutes.

Run: ``python -m pytest tests/e2e/test_slurm.py -v -s`` (``-s`` prints timings).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pool
import pytest
from conftest import TOKEN_FILE, UNAVAILABLE, remove_jobs
from paths import REPO

SCRIPT = REPO / "deploy" / "slurm" / "ospool-ep.sbatch"
SLURM_DIR = REPO / "tests" / "support" / "slurm"
SLURM_IMAGE = os.environ.get("OSPOOL_EP_SLURM_IMAGE", "localhost/ospool-ep-slurm:dev")
NODE = "slurm"
"""The Slurm node's hostname (and its name on the pool network)."""
SCRIPT_IN_NODE = "/opt/ospool-ep/slurm/ospool-ep.sbatch"
ARCHIVE_IN_NODE = "/opt/ospool-ep/pilot-image.tar"
PILOT_IMAGE_IN_NODE = "/home/osg/ospool-ep-image"
"""The pilot image as an Apptainer sandbox in the user's home: what the script's
default runtime (apptainer) runs. Built on the node from a docker archive of the
image under test, as a site would build it from the registry."""
USER_SECRET = "/home/osg/.ssh/id_ed25519"
"""A key of the submitting user's, which no OSPool job may see."""
MUNGE_SOCKET = "/run/munge/munge.socket.2"

WALLTIME_MINUTES = 3
GRACE_SECONDS = 30
"""SHUTDOWN_GRACE_SECONDS, and the lead of --signal=B:TERM@<seconds>."""

TIMINGS: dict[str, float] = {}

needs_containers = pytest.mark.skipif(
    UNAVAILABLE is not None, reason=f"container pool unavailable: {UNAVAILABLE}"
)


@pytest.fixture(scope="module", autouse=True)
def _print_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        print("\nslurm timings: " + ", ".join(f"{k}={v:.1f}s" for k, v in TIMINGS.items()))


# ---------------------------------------------------------------------------
# The script, outside Slurm

_STAND_IN_PILOT = """\
#!/bin/bash
# Stands in for ospool-ep, apptainer and podman: what it was started with, as JSON.
python3 - "$$" "$@" <<'PY'
import json, os, sys
names = ("SLURM_JOB_END_TIME", "PILOT_DIR", "OSPOOL_EP_STATE_FILE", "SHUTDOWN_GRACE_SECONDS",
         "TOKEN_DIR", "GLIDEIN_Site", "GLIDEIN_ResourceName", "PILOT_WALLTIME")
print(json.dumps({"pid": int(sys.argv[1]), "argv": sys.argv[2:],
                  "env": {n: os.environ.get(n) for n in names},
                  "apptainerenv": {k[len("APPTAINERENV_"):]: v for k, v in os.environ.items()
                                   if k.startswith("APPTAINERENV_")}}))
PY
"""
RUNTIMES = ("apptainer", "podman", "node")
"""The script's runtimes; the first is its default."""
STAND_INS = {"apptainer": "apptainer", "podman": "podman", "node": "ospool-ep"}
"""The program each runtime execs."""


def stand_ins(tmp_path: Path, *, squeue: str, scontrol: str) -> Path:
    """A bin directory with ``ospool-ep``, ``apptainer``, ``podman``, ``squeue`` and
    ``scontrol`` stand-ins.

    ``squeue`` prints ``squeue`` only when asked for epoch seconds
    (SLURM_TIME_FORMAT=%s), as Slurm does; ``scontrol`` prints ``scontrol``.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        **dict.fromkeys(STAND_INS.values(), _STAND_IN_PILOT),
        "squeue": f'#!/bin/bash\n[[ "$SLURM_TIME_FORMAT" == %s ]] && echo "{squeue}"\n',
        "scontrol": f'#!/bin/bash\necho "JobId=42 JobName=ospool-ep {scontrol} Partition=x"\n',
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return bin_dir


def run_script(
    tmp_path: Path, env: Mapping[str, str], *, squeue: str = "", scontrol: str = ""
) -> tuple[dict[str, Any], str, int]:
    """Run the sbatch script under bash as Slurm would; (what the program it execs got,
    stderr, bash's pid). The runtime is ``node`` unless ``env`` names another."""
    bin_dir = stand_ins(tmp_path, squeue=squeue, scontrol=scontrol)
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TZ": "UTC",
        "TMPDIR": str(tmp_path / "scratch"),
        "SLURM_JOB_ID": "42",
        "OSPOOL_EP_RUNTIME": "node",
    }
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return json.loads(out), err, process.pid


def test_the_script_is_clean_for_bash_and_shellcheck() -> None:
    """The sbatch script parses, and shellcheck finds nothing (when installed)."""
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_the_sbatch_signal_and_the_grace_default_agree() -> None:
    """#SBATCH --signal=B:TERM@N sends SIGTERM to the batch shell N s before the end,
    and the pilot's SHUTDOWN_GRACE_SECONDS default is the same N."""
    text = SCRIPT.read_text()
    signal_lead = re.search(r"^#SBATCH --signal=B:TERM@(\d+)$", text, re.MULTILINE)
    grace = re.search(r'^: "\$\{SHUTDOWN_GRACE_SECONDS:=(\d+)\}"$', text, re.MULTILINE)
    assert signal_lead and grace, "the #SBATCH --signal line or the grace default is missing"
    assert signal_lead.group(1) == grace.group(1)


def test_the_script_execs_the_supervisor_with_per_job_paths(tmp_path: Path) -> None:
    """Slurm's SLURM_JOB_END_TIME is passed on as it is; the supervisor replaces the
    batch shell (same pid: exec), and gets the job's scratch, a per-job state file,
    the grace period and the site's settings."""
    got, _, pid = run_script(
        tmp_path,
        {
            "SLURM_JOB_END_TIME": "1795240389",
            "GLIDEIN_Site": "Test Site",
            "GLIDEIN_ResourceName": "Test Resource",
        },
        squeue="1",
    )
    assert got["pid"] == pid, "the script must exec ospool-ep, not run it as a child"
    assert got["argv"] == ["run"]
    scratch = str(tmp_path / "scratch")
    assert got["env"] == {
        "SLURM_JOB_END_TIME": "1795240389",
        "PILOT_DIR": scratch,
        "OSPOOL_EP_STATE_FILE": f"{scratch}/ospool-ep-state-42.json",
        "SHUTDOWN_GRACE_SECONDS": "300",
        "TOKEN_DIR": f"{tmp_path}/.ospool-ep/tokens",
        "GLIDEIN_Site": "Test Site",
        "GLIDEIN_ResourceName": "Test Resource",
        "PILOT_WALLTIME": None,
    }


def test_without_slurm_job_end_time_the_end_comes_from_squeue(tmp_path: Path) -> None:
    """Slurm before 23.02 does not export the end time: squeue's %e in epoch seconds."""
    got, err, _ = run_script(tmp_path, {}, squeue="1795240389")
    assert got["env"]["SLURM_JOB_END_TIME"] == "1795240389"
    assert "from squeue/scontrol" in err


def test_when_squeue_has_no_answer_the_end_comes_from_scontrol(tmp_path: Path) -> None:
    """squeue failing or printing N/A: scontrol's EndTime (local time, here UTC)."""
    got, _, _ = run_script(tmp_path, {}, squeue="N/A", scontrol="EndTime=2026-11-21T05:53:09")
    assert got["env"]["SLURM_JOB_END_TIME"] == "1795240389"


def test_a_job_without_an_end_time_is_said_and_left_to_the_signal(tmp_path: Path) -> None:
    """No time limit (EndTime=Unknown): nothing is made up, and the log says so."""
    got, err, _ = run_script(tmp_path, {}, squeue="Unknown", scontrol="EndTime=Unknown")
    assert got["env"]["SLURM_JOB_END_TIME"] is None
    assert "end time is unknown" in err


def test_pilot_walltime_set_by_the_site_is_left_alone(tmp_path: Path) -> None:
    """PILOT_WALLTIME given: no end time is looked up (the site knows better)."""
    got, _, _ = run_script(tmp_path, {"PILOT_WALLTIME": "3600"}, squeue="1795240389")
    assert got["env"]["PILOT_WALLTIME"] == "3600"
    assert got["env"]["SLURM_JOB_END_TIME"] is None


def test_check_mode_and_an_unknown_runtime(tmp_path: Path) -> None:
    """OSPOOL_EP_COMMAND=check validates only; an unknown runtime is a configuration error."""
    got, _, _ = run_script(tmp_path, {"OSPOOL_EP_COMMAND": "check"}, squeue="1")
    assert got["argv"] == ["check"]
    bad = subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "1", "OSPOOL_EP_RUNTIME": "docker"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 78
    assert "use apptainer, podman or node" in bad.stderr


def test_the_default_runtime_is_the_pilot_image_under_apptainer() -> None:
    """OSPOOL_EP_RUNTIME defaults to apptainer: the runtime that keeps the pilot
    itself, not only its jobs, away from the submitting user's files."""
    default = re.search(r'^: "\$\{OSPOOL_EP_RUNTIME:=(\w+)\}"$', SCRIPT.read_text(), re.MULTILINE)
    assert default and default.group(1) == RUNTIMES[0] == "apptainer"


def _site(tmp_path: Path) -> dict[str, str]:
    """A site's settings, the default image in place, and a secret of the user's own."""
    (tmp_path / "ospool-ep.sif").write_bytes(b"")
    return {
        "OSPOOL_EP_RUNTIME": "apptainer",
        "GLIDEIN_Site": "Test Site",
        "GLIDEIN_ResourceName": "Test Resource",
        "SLURM_JOB_END_TIME": "1795240389",
        "AWS_SECRET_ACCESS_KEY": "users-own-secret",
    }


def test_apptainer_runs_the_pilot_contained_with_only_its_variables(tmp_path: Path) -> None:
    """``apptainer run --contain --ipc --cleanenv --underlay``, exec'ed: an empty $HOME,
    /tmp and /dev instead of the node's, no overlayfs (the jobs' Apptainer needs the
    kernel's second level); binds only the scratch (same path) and the token
    directory (read-only, where the image looks); the pilot's variables go in as
    APPTAINERENV_ copies, never on the command line, and the user's other
    variables not at all. Jobs then run in Apptainer again, inside."""
    got, _, pid = run_script(tmp_path, _site(tmp_path), squeue="1")
    scratch, tokens = str(tmp_path / "scratch"), f"{tmp_path}/.ospool-ep/tokens"
    assert got["pid"] == pid, "the script must exec apptainer, not run it as a child"
    # The node's /cvmfs and /dev/fuse when it has them (for the jobs' images).
    node = ["--bind", "/cvmfs"] if Path("/cvmfs").is_dir() else []
    node += ["--bind", "/dev/fuse"] if Path("/dev/fuse").is_char_device() else []
    assert got["argv"] == [
        "run", "--contain", "--ipc", "--cleanenv", "--underlay",
        "--bind", scratch, "--bind", f"{tokens}:/etc/condor/tokens-orig.d:ro",
        *node,
        str(tmp_path / "ospool-ep.sif"), "run",
    ]  # fmt: skip
    inside = got["apptainerenv"]
    assert inside["GLIDEIN_Site"] == "Test Site"
    assert inside["SLURM_JOB_END_TIME"] == "1795240389"
    assert inside["SLURM_JOB_ID"] == "42"
    assert inside["PILOT_DIR"] == scratch
    assert inside["OSPOOL_EP_STATE_FILE"] == f"{scratch}/ospool-ep-state-42.json"
    assert inside["TOKEN_DIR"] == "/etc/condor/tokens-orig.d"
    assert "AWS_SECRET_ACCESS_KEY" not in inside and "HOME" not in inside
    assert not any("Test Site" in word or "secret" in word for word in got["argv"])


def test_apptainer_without_the_image_says_how_to_build_it(tmp_path: Path) -> None:
    """The default image is ~/ospool-ep.sif; missing, the job ends 78 with the command
    that builds it (a docker:// or other URI is left to Apptainer)."""
    env = {**_site(tmp_path), "OSPOOL_EP_IMAGE": str(tmp_path / "none.sif")}
    bin_dir = stand_ins(tmp_path, squeue="1", scontrol="")
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "SLURM_JOB_ID": "1",
             **env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 78, result.stderr
    assert f"apptainer build {tmp_path}/none.sif docker://" in result.stderr
    (tmp_path / "u").mkdir()
    uri, _, _ = run_script(tmp_path / "u", {**env, "OSPOOL_EP_IMAGE": "docker://x/y:1"}, squeue="1")
    assert uri["argv"][-2:] == ["docker://x/y:1", "run"]


def test_podman_runs_the_pilot_with_proc_unmasked_and_no_privilege(tmp_path: Path) -> None:
    """Rootless podman: /proc unmasked for the jobs' Apptainer, every capability
    dropped, no --privileged; the pilot's variables by name only, the scratch and
    token as mounts at the image's paths."""
    env = {**_site(tmp_path), "OSPOOL_EP_RUNTIME": "podman", "OSPOOL_EP_IMAGE": "docker://x/y:1"}
    got, _, pid = run_script(tmp_path, env, squeue="1")
    argv = got["argv"]
    assert got["pid"] == pid
    pairs = list(itertools.pairwise(argv))
    assert ("--security-opt", "unmask=/proc/*") in pairs
    assert ("--cap-drop", "ALL") in pairs
    assert "--privileged" not in argv
    assert ("--env", "GLIDEIN_Site") in pairs and ("--env", "SLURM_JOB_END_TIME") in pairs
    assert ("--env", "AWS_SECRET_ACCESS_KEY") not in pairs
    assert ("--env", "PILOT_DIR") not in pairs, "the node's path is not the container's"
    assert ("--volume", f"{tmp_path}/scratch:/pilot") in pairs
    assert argv[-2:] == ["x/y:1", "run"]


def test_outside_a_slurm_job_the_script_refuses(tmp_path: Path) -> None:
    """Run by hand (no SLURM_JOB_ID): exit 2 with what to do."""
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "submit this script with sbatch" in result.stderr


# ---------------------------------------------------------------------------
# A real Slurm


def _podman_env() -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF") or str(pool.CONTAINERS_CONF),
    }


def base_suite_expired() -> bool:
    """Whether the pilot image's build accepted its own suite's expired Release file
    (a stale mirror, Dockerfile APT_EXPIRED_SUITES): the Slurm image's apt needs it too."""
    labels = subprocess.run(
        [
            "podman", "image", "inspect", "--format",
            '{{index .Labels "org.ospool-ep.debian-suite"}}|'
            '{{index .Labels "org.ospool-ep.apt-expired-suites"}}',
            pool.IMAGE,
        ],
        env=_podman_env(), capture_output=True, text=True, timeout=60, check=False,
    ).stdout.strip()  # fmt: skip
    suite, _, expired = labels.replace("<no value>", "").partition("|")
    return bool(suite) and suite in expired.split()


@pytest.fixture(scope="module")
def slurm_image() -> str:
    """localhost/ospool-ep-slurm:dev, built FROM the image under test (layers cached)."""
    if UNAVAILABLE is not None:
        pytest.skip(f"container pool unavailable: {UNAVAILABLE}")
    start = time.monotonic()
    result = subprocess.run(
        [
            "podman", "build", "--format", "docker",
            "--build-arg", f"BASE_IMAGE={pool.IMAGE}",
            "--build-arg", f"APT_CHECK_VALID_UNTIL={str(not base_suite_expired()).lower()}",
            "-t", SLURM_IMAGE, str(SLURM_DIR),
        ],
        env=_podman_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Each rebuild leaves the previous image untagged; drop those (by our label).
    subprocess.run(
        ["podman", "image", "prune", "-f", "--filter", "label=org.ospool-ep.stage=slurm-test"],
        env=_podman_env(),
        capture_output=True,
        check=False,
    )
    TIMINGS["slurm_image_build"] = time.monotonic() - start
    return SLURM_IMAGE


class SlurmNode:
    """The one-node Slurm cluster's container, and commands run in it."""

    def __init__(self, test_pool: pool.Pool, container: Any) -> None:
        self.pool = test_pool
        self.container = container

    def sh(self, script: str, *, user: str = "root", timeout: float = 60) -> pool.ExecResult:
        return pool._exec(self.container, ["bash", "-c", script], user=user, timeout=timeout)

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (the job is kept MinJobAge = 10 minutes)."""
        text = self.sh(f"scontrol show job --oneliner {job_id}").check("scontrol").stdout
        return dict(field.split("=", 1) for field in text.split() if "=" in field)

    def jobcomp(self, job_id: int) -> dict[str, str]:
        """The job's line in the completion log (jobcomp/filetxt) as a dict, or {}."""
        text = self.sh("cat /var/log/slurm/jobcomp.log 2>/dev/null || true").stdout
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("JobId") == str(job_id):
                return fields
        return {}

    def diagnostics(self, job_id: int | None) -> str:
        out = f"--- pilot job {job_id} output ---\n"
        if job_id is not None:
            out += self.sh(f"cat /home/osg/pilot-{job_id}.out 2>&1 | tail -n 80").stdout
        out += "\n--- slurmctld / slurmd ---\n"
        out += self.sh("tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log").stdout
        return out


@pytest.fixture(scope="module")
def pilot_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image under test as a docker archive, for the node's Apptainer."""
    if UNAVAILABLE is not None:
        pytest.skip(f"container pool unavailable: {UNAVAILABLE}")
    start = time.monotonic()
    path = tmp_path_factory.mktemp("pilot-image") / "pilot.tar"
    result = subprocess.run(
        ["podman", "save", "--format", "docker-archive", "-o", str(path), pool.IMAGE],
        env=_podman_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    path.chmod(0o644)  # bind-mounted read-only; read by the node's uid 1000
    TIMINGS["pilot_archive"] = time.monotonic() - start
    return path


@pytest.fixture
def slurm_node(
    live_pool: pool.Pool, slurm_image: str, pilot_archive: Path, tmp_path: Path
) -> Iterator[SlurmNode]:
    """A Slurm node on the pool's network, idle and ready for jobs, with the
    pilot script at /opt/ospool-ep/slurm, a pool token in the usual place, the
    pilot image as an Apptainer sandbox in the user's home (built there by the
    user, unprivileged), and a key of the user's in ~/.ssh. The node runs with
    /proc unmasked (the pool's default), as a Slurm node's /proc is."""
    token = tmp_path / "token"
    token.write_text(live_pool.mint_token() + "\n")
    token.chmod(0o644)  # read-only bind mount; the pilot installs its own 0600 copy
    start = time.monotonic()
    container = live_pool.run_container(
        NODE,
        image=slurm_image,
        user="0",
        entrypoint=["/usr/local/sbin/start-slurm.sh"],
        volumes=[
            (SCRIPT.parent, str(Path(SCRIPT_IN_NODE).parent), "ro"),
            (token, TOKEN_FILE, "ro"),
            (pilot_archive, ARCHIVE_IN_NODE, "ro"),
        ],
    )
    node = SlurmNode(live_pool, container)
    try:
        node.sh(
            "until sinfo --noheader --format %T 2>/dev/null | grep -qx idle; do sleep 0.3; done",
            timeout=60,
        ).check("Slurm node idle")
        TIMINGS["slurm_node_idle"] = time.monotonic() - start
        built = time.monotonic()
        node.sh(
            f"apptainer -q build --sandbox {PILOT_IMAGE_IN_NODE} docker-archive:{ARCHIVE_IN_NODE}"
            f" && install -d -m 0700 ~/.ssh && echo users-own-key > {USER_SECRET}"
            f" && chmod 0600 {USER_SECRET} && test -S {MUNGE_SOCKET}",
            user="osg",
            timeout=600,
        ).check("the pilot image's sandbox and the user's key")
        TIMINGS["pilot_sandbox"] = time.monotonic() - built
        yield node
    finally:
        live_pool.remove_pilot(NODE)


def _slot(node: SlurmNode, job_id: int, timeout: float) -> dict[str, Any]:
    constraint = (
        f'UtsnameNodename == "{NODE}" && PartitionableSlot =?= true'
        " && OSPOOL_EP_PILOT_UUID =!= undefined"
    )
    try:
        out = node.pool._poll_cm(
            ["condor_status", "-slot", "-json", "-constraint", constraint],
            timeout=timeout,
            what="the Slurm pilot's slot",
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{node.diagnostics(job_id)}") from None
    return pool._json_list(out)[0]


@pytest.mark.container
@pytest.mark.slow
@needs_containers
def test_a_pilot_batch_job_runs_pool_jobs_and_ends_completed_before_its_walltime(
    slurm_node: SlurmNode,
) -> None:
    """sbatch the pilot script (3-minute walltime, --signal=B:TERM@30, grace 30 s,
    the default runtime: Apptainer): the pilot's jobs are contained and see none of
    the submitting user's files, munge socket or Slurm client; the pilot offers
    the job's 2 CPUs and its --mem less the overhead, retires
    before the end time (GLIDEIN_ToDie at least the grace before it), runs a
    short job to completion, has a long one evicted back to the queue when the
    end comes, and exits 0 in time: Slurm says COMPLETED, exit 0:0, and no
    HTCondor process is left on the node."""
    node = slurm_node
    test_pool = node.pool
    settings = {
        "GLIDEIN_Site": "SlurmSite",
        "GLIDEIN_ResourceName": "Slurm Test Resource",
        "CONDOR_HOST": test_pool.cm_host,
        "TOKEN_DIR": str(Path(TOKEN_FILE).parent),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "MIN_DISK_GB": "0",
        # OSPOOL_EP_RUNTIME is left to the script's default: apptainer.
        "OSPOOL_EP_IMAGE": PILOT_IMAGE_IN_NODE,
    }
    exports = " ".join(f"{k}='{v}'" for k, v in settings.items())
    submitted = time.monotonic()
    submit = node.sh(
        f"cd /home/osg && env {exports} sbatch --parsable --time={WALLTIME_MINUTES}"
        f" --cpus-per-task=2 --mem=1000 --signal=B:TERM@{GRACE_SECONDS}"
        f" --output=/home/osg/pilot-%j.out {SCRIPT_IN_NODE}",
        user="osg",
    ).check("sbatch")
    job_id = int(submit.stdout.strip().split(";")[0])
    clusters: list[int] = []
    try:
        job = node.job(job_id)
        ad = _slot(node, job_id, timeout=90)
        TIMINGS["submit_to_slot"] = time.monotonic() - submitted
        print(f"\npilot job {job_id}: slot visible {TIMINGS['submit_to_slot']:.1f} s after sbatch")

        # Sized from the allocation, lifetime capped by the job's end.
        assert ad["Cpus"] == 2, ad
        assert ad["Memory"] == 1000 - 100, ad
        assert ad["GLIDEIN_Site"] == "SlurmSite"
        assert ad.get("OSPOOL_EP_JOBS_CONTAINED") is True, ad
        end = int(node.sh(f"SLURM_TIME_FORMAT=%s squeue -h -j {job_id} -o %e").stdout.strip())
        assert ad["GLIDEIN_ToDie"] <= end - GRACE_SECONDS, (ad["GLIDEIN_ToDie"], end, job)
        assert ad["GLIDEIN_ToRetire"] < ad["GLIDEIN_ToDie"]

        pinned = f'TARGET.OSPOOL_EP_PILOT_UUID == "{ad["OSPOOL_EP_PILOT_UUID"]}"'
        short = test_pool.submit(
            {"executable": "/bin/echo", "arguments": "from slurm", "requirements": pinned}
        )
        # An OSPool job looks for what the user who ran sbatch has on the node,
        # and says what its PID 1 is: Apptainer's appinit, in the job's own PID
        # namespace (the pilot's Apptainer, nested in the one running the pilot).
        snoop = test_pool.submit(
            {
                "executable": "/bin/sh",
                "arguments": (
                    f"\"-c 'test -e {USER_SECRET} && echo key-visible;"
                    f" test -e {MUNGE_SOCKET} && echo munge-visible;"
                    " command -v sbatch || echo no-sbatch; cat /proc/1/comm'\""
                ),
                "requirements": pinned,
            }
        )
        long_job = test_pool.submit(
            {"executable": "/bin/sleep", "arguments": "600", "requirements": pinned}
        )
        clusters += [short, snoop, long_job]
        test_pool.wait_for_job(short, timeout=60)
        assert test_pool.job_output(short) == "from slurm\n"
        test_pool.wait_for_job(snoop, timeout=60)
        assert test_pool.job_output(snoop) == "no-sbatch\nappinit\n", "the user's files leak"
        node.sh(f"test -e {USER_SECRET} && test -S {MUNGE_SOCKET}", user="osg").check(
            "the user's key and munge, there for the user all along"
        )
        test_pool.wait_for_job(long_job, pool.JobStatus.RUNNING, timeout=60)

        # The end: the pilot must be gone before the walltime kill.
        def finished() -> dict[str, str] | None:
            state = node.job(job_id)
            return None if state["JobState"] in ("PENDING", "RUNNING", "COMPLETING") else state

        remaining = end - time.time() + 60
        try:
            final = pool.wait_until(finished, timeout=remaining, interval=2, what="job end")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{node.diagnostics(job_id)}") from None
        TIMINGS["submit_to_job_end"] = time.monotonic() - submitted
        TIMINGS["job_end_before_walltime"] = end - time.time()
        output = node.sh(f"cat /home/osg/pilot-{job_id}.out").stdout
        record = node.jobcomp(job_id)
        print(
            f"pilot job {job_id}: {final['JobState']} {final['ExitCode']},"
            f" {TIMINGS['job_end_before_walltime']:.0f} s before the walltime"
        )
        # How it ended: the --signal (drain) or the lifetime (retired), as the log says.
        for line in output.splitlines():
            if re.search(r"supervisor.*( -> |draining|pilot ended)", line):
                print(f"  {line}")
        assert final["JobState"] == "COMPLETED", node.diagnostics(job_id)
        assert final["ExitCode"] == "0:0", node.diagnostics(job_id)
        assert record.get("JobState") == "COMPLETED", record
        assert "shortened by Slurm job end" in output, output[-3000:]
        assert "pilot ended" in output, output[-3000:]

        # Nothing of the pilot is left on the node.
        left = node.sh("cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^condor_' || true").stdout
        assert left.strip() == "0", left

        # None lost: the short jobs completed, the long one is back in the queue.
        assert test_pool.job_status(short) == {0: pool.JobStatus.COMPLETED}
        assert test_pool.job_status(snoop) == {0: pool.JobStatus.COMPLETED}
        (ad_long,) = test_pool.job_ads(long_job, ("ProcId", "JobStatus", "NumJobStarts"))
        assert ad_long["JobStatus"] == pool.JobStatus.IDLE, ad_long
        assert ad_long["NumJobStarts"] >= 1, ad_long
    except BaseException:
        print(node.diagnostics(job_id))
        raise
    finally:
        remove_jobs(test_pool, *clusters)
        node.sh(f"scancel {job_id} 2>/dev/null || true")
