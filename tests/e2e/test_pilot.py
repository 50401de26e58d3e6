"""End-to-end: the product pilot (``ospool-ep run``) in a real HTCondor pool (SPEC 3, 4, 7, 13).

Every test starts its own pilot container(s) from the image under test on one
shared pool (a real central manager, a real IDTOKEN minted by it, real jobs
submitted by the non-root user ``osg``), and removes them afterwards. Waits
poll against deadlines (``pool.wait_until`` and the helpers in conftest.py).

Needs podman and the built image (``scripts/build-image.sh``); skipped with
the reason otherwise. Run: ``python -m pytest -m container tests/e2e -v -s``
(``-s`` prints the measured timings).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pool
import pytest
import requests
from conftest import (
    TOKEN_FILE,
    Pilots,
    container_marks,
    digest,
    remove_jobs,
    stays,
    token_claims,
    wait_status,
)

pytestmark = container_marks()

JobStatus = pool.JobStatus
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


TIMINGS: dict[str, float] = {}
"""Measured figures, printed when the module ends (run with -s to see them)."""


@pytest.fixture(scope="module", autouse=True)
def _print_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        print("\npilot timings: " + ", ".join(f"{k}={v:.2f}s" for k, v in TIMINGS.items()))


def echo_job(text: str) -> dict[str, object]:
    return {"executable": "/bin/echo", "arguments": text}


def sleep_job(seconds: int) -> dict[str, object]:
    return {"executable": "/bin/sleep", "arguments": str(seconds)}


def wait_job_executing(pilot: Any, cluster: int) -> None:
    """Until the job's process runs on the pilot (RUNNING in the queue comes a
    little earlier, when the shadow starts)."""
    wait_status(pilot.pool, cluster, JobStatus.RUNNING, timeout=60)
    pilot.wait_log(f"Starting a VANILLA universe job with ID: {cluster}.0", timeout=30)
    pilot.wait_log("Create_Process succeeded", timeout=30)


def _exited_with(pilot: Any, code: int, timeout: float) -> None:
    got = pilot.wait_exit(timeout)
    assert got == code, f"exit {got}, expected {code}\n{pilot.logs()}"


# ---------------------------------------------------------------------------
# Joining and the machine ad


def test_a_pilot_joins_the_pool_advertises_its_ad_and_runs_a_job(
    pilots: Pilots, tmp_path: Path
) -> None:
    """With a site, a resource name, a token and a read-only extra-attributes
    file, the pilot's partitionable slot appears in the collector with
    GLIDEIN_Site, GLIDEIN_ResourceName, the extra attributes, the capped CPUs
    and memory, the product version, a pilot UUID and IsOsgVoContainer; a job
    runs there and its output comes back."""
    extra = tmp_path / "extra-attributes.cfg"
    extra.write_text(
        "# site attributes\n"
        "\n"
        'SITE_TEST_LABEL = "blue rack"\n'
        "SITE_TEST_RACK = 42\n"
        "HAS_TEST_FEATURE = True\n"
    )
    extra.chmod(0o644)
    pilot = pilots.start("ep-ad", volumes=[(extra, "/etc/osg/extra-attributes.cfg", "ro")])
    TIMINGS["slot_visible"] = pilot.slot_seconds or 0.0
    ad = pilot.pslot()

    assert ad["GLIDEIN_Site"] == "TestSite"
    assert ad["GLIDEIN_ResourceName"] == "Test Resource"
    assert ad["SITE_TEST_LABEL"] == "blue rack"
    assert ad["SITE_TEST_RACK"] == 42
    assert ad["HAS_TEST_FEATURE"] is True
    assert ad["IsOsgVoContainer"] is True
    assert (ad["TotalSlotCpus"], ad["Cpus"]) == (1, 1)
    assert (ad["TotalSlotMemory"], ad["Memory"]) == (1000, 1000)
    version = pilot.exec(["ospool-ep", "version"]).check("ospool-ep version").stdout
    assert version.splitlines()[0] == f"ospool-ep {ad['OSPOOL_EP_VERSION']}"
    assert re.fullmatch(UUID, ad["OSPOOL_EP_PILOT_UUID"])
    assert ad["AuthenticationMethod"] == "IDTOKENS"

    cluster = pilot.submit(echo_job("hello from ep-ad"))
    TIMINGS["echo_job_completed"] = wait_status(
        pilot.pool, cluster, JobStatus.COMPLETED, timeout=60
    )
    assert pilot.pool.job_output(cluster) == "hello from ep-ad\n"
    (job,) = pilot.pool.job_ads(cluster, ("ProcId", "ExitCode", "LastRemoteHost"))
    assert job["ExitCode"] == 0
    assert job["LastRemoteHost"].endswith(ad["Machine"])


def test_the_slot_ad_carries_what_the_ospool_matches_and_accounts_on(pilots: Pilots) -> None:
    """As OSG's container publishes them, read from the real collector: GLIDECLIENT_Group
    of POOL (ospool: main-container, also with CONDOR_HOST), OSPool false (not the
    production CMs), START_EXTRA with the production ITB clause, OSG_PROJECT_RESTRICTION
    with OSG_PROJECT_NAME, the job OS (the pilot image's own, Debian, for the built-in
    image or bare jobs) and HAS_CVMFS_* for all of OSG's repositories (false: no CVMFS
    here). A job that names this site undesired stays idle."""
    # preferred: the ad is the same whether jobs are contained here or not.
    pilot = pilots.start("ep-osgad", {"OSG_PROJECT_NAME": "Chem", "JOB_CONTAINMENT": "preferred"})
    ad = pilot.pslot()
    assert ad["GLIDECLIENT_Group"] == "main-container"
    assert ad["OSPool"] is False
    # condor_status -json writes expressions as /Expr(...)/, =!= as isnt.
    assert re.search(r"ITB_Sites (=!=|isnt) true", str(ad["START_EXTRA"]), re.IGNORECASE)
    assert "ProjectName" in str(ad["OSG_PROJECT_RESTRICTION"])
    assert ad["OSG_PROJECT_NAME"] == "Chem"
    kernel = pilot.exec(["uname", "-r"]).check("uname -r").stdout.strip()
    assert ad["OSG_OS_NAME"] == "DEBIAN"
    assert ad["OSG_OS_STRING"] == f"DEBIAN {ad['OSG_OS_VERSION']}"
    assert ad["OSG_OS_KERNEL"] == kernel
    for repo in ("cms.cern.ch", "atlas.cern.ch", "oasis.opensciencegrid.org", "sw.lsst.eu"):
        assert ad["HAS_CVMFS_" + re.sub(r"[^A-Za-z0-9]", "_", repo)] is False

    shunned = pilot.submit(
        {**echo_job("shunned"), "+ProjectName": '"Chem"', "My.UNDESIRED_Sites": '"TestSite"'}
    )
    wanted = pilot.submit(
        {**echo_job("wanted"), "+ProjectName": '"Chem"', "My.DESIRED_Sites": '"Elsewhere,TestSite"'}
    )
    try:
        wait_status(pilot.pool, wanted, JobStatus.COMPLETED, timeout=60)
        stays(pilot.pool, shunned, JobStatus.IDLE, seconds=10)
    finally:
        remove_jobs(pilot.pool, shunned)


# ---------------------------------------------------------------------------
# START policy


def test_glidein_start_extra_keeps_jobs_it_rejects_idle(pilots: Pilots) -> None:
    """GLIDEIN_Start_Extra is ANDed into START: a job it rejects (My.Forbidden =
    true) stays idle while the slot is there, a job it accepts runs."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-start", {"GLIDEIN_Start_Extra": "TARGET.Forbidden =!= true"})
    forbidden = pilot.submit({**echo_job("forbidden"), "My.Forbidden": True})
    allowed = pilot.submit(echo_job("allowed"))
    try:
        wait_status(test_pool, allowed, JobStatus.COMPLETED, timeout=60)
        stays(test_pool, forbidden, JobStatus.IDLE, seconds=15)
        assert pilot.pslot()["OSPOOL_EP_PILOT_UUID"] == pilot.uuid  # the slot is still there
    finally:
        remove_jobs(test_pool, forbidden)


def test_osg_project_name_restricts_the_pilot_to_that_project(pilots: Pilots) -> None:
    """OSG_PROJECT_NAME=Chem: a job with ProjectName "Chem" runs, one with
    "Physics" stays idle."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-project", {"OSG_PROJECT_NAME": "Chem"})
    physics = pilot.submit({**echo_job("physics"), "+ProjectName": '"Physics"'})
    chem = pilot.submit({**echo_job("chem"), "+ProjectName": '"Chem"'})
    try:
        wait_status(test_pool, chem, JobStatus.COMPLETED, timeout=60)
        assert test_pool.job_output(chem) == "chem\n"
        stays(test_pool, physics, JobStatus.IDLE, seconds=10)
    finally:
        remove_jobs(test_pool, physics)


# ---------------------------------------------------------------------------
# Lifetime and signals


@pytest.mark.slow
def test_an_idle_pilot_exits_0_after_accept_idle_minutes(pilots: Pilots) -> None:
    """ACCEPT_IDLE_MINUTES=1: a pilot that never gets a job exits 0 on its own
    (about a minute after start, well within 2.5 min)."""
    pilot = pilots.start("ep-idle", {"ACCEPT_IDLE_MINUTES": "1"})
    _exited_with(pilot, 0, timeout=150 - (time.monotonic() - pilot.started))
    TIMINGS["idle_exit_after_start"] = round(time.monotonic() - pilot.started, 2)
    assert "pilot ended" in pilot.logs()


def test_sigterm_stops_an_idle_pilot_with_0_within_3_seconds(pilots: Pilots) -> None:
    """SIGTERM to an idle pilot: exit 0 within 3 s (SPEC 7.2)."""
    pilot = pilots.start("ep-term")
    sent = pilot.signal("SIGTERM")
    code = pilot.wait_exit(10)
    latency = round(time.monotonic() - sent, 2)
    TIMINGS["sigterm_idle_exit"] = latency
    print(f"\nSIGTERM -> exit (idle pilot): {latency:.2f} s")
    assert code == 0, pilot.logs()
    assert latency < 3, pilot.logs()


def test_sigterm_lets_a_job_that_fits_in_the_grace_period_complete(pilots: Pilots) -> None:
    """SHUTDOWN_GRACE_SECONDS=30, a job of 8 s running: after SIGTERM the job
    completes (not evicted) and the pilot exits 0 before the 30 s are up."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-fits", {"SHUTDOWN_GRACE_SECONDS": "30"})
    cluster = pilot.submit(sleep_job(8))
    wait_job_executing(pilot, cluster)
    sent = pilot.signal("SIGTERM")
    code = pilot.wait_exit(40)
    took = round(time.monotonic() - sent, 2)
    TIMINGS["sigterm_job_fits_exit"] = took
    print(f"\nSIGTERM -> exit with an 8 s job running (grace 30 s): {took:.2f} s")
    assert code == 0, pilot.logs()
    assert took < 30
    # The job was running when the signal came and sleeps 8 s (seen in the
    # streamed StarterLog, up to a second or two late): a pilot gone much
    # sooner took the job down with it.
    assert took >= 4, f"exited {took} s after SIGTERM, before its 8 s job could end"
    wait_status(test_pool, cluster, JobStatus.COMPLETED, timeout=30)
    (job,) = test_pool.job_ads(cluster, ("ProcId", "ExitCode", "NumJobStarts"))
    assert job["ExitCode"] == 0
    assert job.get("NumJobStarts", 1) == 1


def test_sigterm_evicts_a_job_that_does_not_fit_back_to_the_queue(pilots: Pilots) -> None:
    """SHUTDOWN_GRACE_SECONDS=20, a 300 s job running: after SIGTERM the job runs
    on until the drain deadline (20 - 5 s margin = 15 s), is evicted then and goes
    back to the queue idle (not held, not removed), and the pilot exits 0 before
    the 20 s are up."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-long", {"SHUTDOWN_GRACE_SECONDS": "20"})
    cluster = pilot.submit(sleep_job(300))
    try:
        wait_job_executing(pilot, cluster)
        sent = pilot.signal("SIGTERM")
        code = pilot.wait_exit(30)
        took = round(time.monotonic() - sent, 2)
        TIMINGS["sigterm_job_evicted_exit"] = took
        print(f"\nSIGTERM -> exit with a 300 s job running (grace 20 s): {took:.2f} s")
        assert code == 0, pilot.logs()
        assert took < 20, pilot.logs()
        # The job must not go down with the pilot: the schedd gets it back, idle.
        waited = wait_status(test_pool, cluster, JobStatus.IDLE, timeout=60)
        TIMINGS["evicted_job_idle_after_exit"] = waited
        (job,) = test_pool.job_ads(cluster, ("ProcId", "JobStatus", "NumJobStarts", "HoldReason"))
        assert job["JobStatus"] == JobStatus.IDLE, job
        assert "draining" in pilot.logs()
        # Evicted around the drain deadline (15 s), not at once; the startd may
        # begin the soft kill a vacate time (a few seconds) before it.
        assert took >= 9, f"exited {took} s after SIGTERM: the job did not get its drain time"
    finally:
        remove_jobs(test_pool, cluster)


def test_a_second_sigterm_shuts_down_at_once(pilots: Pilots) -> None:
    """A second SIGTERM during the drain means "now": the pilot evicts its
    300 s job and exits 0 within a few seconds of the second signal, long before
    the drain deadline; the job goes back to the queue idle."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-twice")  # default grace: 25 s, drain 20 s
    cluster = pilot.submit(sleep_job(300))
    try:
        wait_job_executing(pilot, cluster)
        first = pilot.signal("SIGTERM")
        pilot.wait_log("draining", timeout=10)
        # Still draining a few seconds later, the job still running: only then
        # does the second signal have something to cut short.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert pilot.running(), f"the first SIGTERM already ended the pilot:\n{pilot.logs()}"
            time.sleep(0.5)
        assert test_pool.job_status(cluster) == {0: JobStatus.RUNNING}
        second = pilot.signal("SIGTERM")
        code = pilot.wait_exit(30)
        took = round(time.monotonic() - second, 2)
        TIMINGS["second_sigterm_exit"] = took
        print(
            f"\nsecond SIGTERM -> exit: {took:.2f} s "
            f"({time.monotonic() - first:.2f} s after the first)"
        )
        assert code == 0, pilot.logs()
        assert took < 5, pilot.logs()
        wait_status(test_pool, cluster, JobStatus.IDLE, timeout=60)
    finally:
        remove_jobs(test_pool, cluster)


# ---------------------------------------------------------------------------
# Daemons dying


def test_the_master_restarts_a_killed_startd_and_the_slot_comes_back(pilots: Pilots) -> None:
    """kill -9 of condor_startd: condor_master starts a new one, a new slot ad
    (later DaemonStartTime) reaches the collector, the pilot keeps running."""
    pilot = pilots.start("ep-startd")
    before = pilot.pslot()["DaemonStartTime"]
    old_pid = pilot.kill_process("condor_startd")
    killed = time.monotonic()
    pilot.wait_for_slot(timeout=90, extra=f"DaemonStartTime > {before}")
    TIMINGS["startd_killed_to_new_slot"] = round(time.monotonic() - killed, 2)
    assert pilot.running(), pilot.logs()
    assert pilot.process("condor_startd").pid != old_pid
    health = pilot.exec(["ospool-ep", "health"])
    assert health.exit_code == 0, health


def test_a_killed_master_ends_the_pilot_with_70(pilots: Pilots) -> None:
    """kill -9 of condor_master: the container exits 70 and says the master was
    killed by SIGKILL."""
    pilot = pilots.start("ep-master")
    pilot.kill_process("condor_master")
    _exited_with(pilot, 70, timeout=15)
    assert "condor_master was killed by signal SIGKILL" in pilot.logs()


def test_a_pilot_started_while_the_collector_is_down_joins_when_it_comes_up(
    pilots: Pilots,
) -> None:
    """The central manager's collector is off when the pilot starts: the pilot
    keeps running and its slot appears once the collector is back."""
    test_pool = pilots.pool
    token = test_pool.mint_token()
    test_pool.exec_cm(["condor_off", "-daemon", "collector"]).check("condor_off collector")
    try:
        pool.wait_until(
            lambda: test_pool.exec_cm(["condor_status", "-collector"], timeout=10).exit_code != 0,
            timeout=30,
            what="collector down",
        )
        pilot = pilots.start("ep-nocm", token=token, wait_slot=False)
        pilot.wait_log("condor_master started", timeout=30)
        # While nothing answers, the pilot must stay up (not exit on it).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert pilot.running(), pilot.logs()
            time.sleep(0.5)
    finally:
        test_pool.exec_cm(["condor_on", "-daemon", "collector"]).check("condor_on collector")
    back = time.monotonic()
    pilot.wait_for_slot(timeout=90)
    TIMINGS["collector_back_to_slot"] = round(time.monotonic() - back, 2)
    print(f"\ncollector back -> slot visible: {TIMINGS['collector_back_to_slot']:.2f} s")
    assert pilot.running()


# ---------------------------------------------------------------------------
# Tokens


def test_an_expired_token_stops_the_pilot_with_78(pilots: Pilots) -> None:
    """A token whose exp has passed: exit 78 before anything starts, and the log
    says when it expired (never the token itself)."""
    test_pool = pilots.pool
    token = test_pool.mint_token(lifetime=1)
    exp = int(token_claims(token)["exp"])
    pool.wait_until(lambda: time.time() > exp + 1, timeout=10, what="token expiry")
    pilot = pilots.start("ep-expired", token=token, wait_slot=False)
    _exited_with(pilot, 78, timeout=30)
    logs = pilot.logs()
    assert "expired at" in logs
    print("\n" + "\n".join(line for line in logs.splitlines() if "expired at" in line))
    assert token not in logs
    assert token.split(".")[2] not in logs


def test_an_unreadable_token_file_stops_the_pilot_with_78_naming_it(
    pilots: Pilots, tmp_path: Path
) -> None:
    """The only token is a file the pilot's uid (1000) cannot read (root, 0600):
    exit 78, and the log names the file."""
    token_file = tmp_path / "flock.opensciencegrid.org"
    token_file.write_text(pilots.pool.mint_token() + "\n")
    token_file.chmod(0o600)
    pilot = pilots.start(
        "ep-unreadable",
        token_env=False,
        volumes=[(token_file, TOKEN_FILE, "ro")],
        wait_slot=False,
    )
    _exited_with(pilot, 78, timeout=30)
    logs = pilot.logs()
    assert TOKEN_FILE in logs
    print("\n" + "\n".join(line for line in logs.splitlines() if TOKEN_FILE in line))


def test_the_token_is_in_no_daemon_environment_job_or_log(pilots: Pilots) -> None:
    """TOKEN (the token text) is not in condor_master's or condor_startd's
    environment, nor in a job's, the supervisor's own environment cannot be read
    by its uid, and the token never appears in the pilot's output."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-secret")
    secret = digest(pilot.token)
    for daemon in ("condor_master", "condor_startd"):
        environ = pilot.process(daemon, environ=True).environ
        assert environ is not None, f"could not read {daemon}'s environment"
        assert "CONDOR_CONFIG" in environ  # the environment was really read
        assert "TOKEN" not in environ, f"{daemon} has TOKEN in its environment"
        assert secret not in environ.values(), f"{daemon} has the token in its environment"
    # SPEC 7.5: the supervisor is not dumpable, so a process of its own uid (a job,
    # an exec session) cannot read its environment, and TOKEN was left out of it
    # at the re-exec in any case.
    supervisor = pilot.exec(["cat", "/proc/1/environ"], user="1000")
    assert supervisor.exit_code != 0 and "Permission denied" in supervisor.stderr
    status = pilot.exec(["cat", "/proc/1/status"], user="1000").check("supervisor status")
    assert "\nPid:\t1\n" in status.stdout  # /proc/1 itself stays readable (health uses it)
    cluster = pilot.submit({"executable": "/usr/bin/env"})
    wait_status(test_pool, cluster, JobStatus.COMPLETED, timeout=60)
    job_env = test_pool.job_output(cluster)
    assert "GLIDEIN_Site=TestSite" in job_env
    assert "TOKEN" not in {line.split("=", 1)[0] for line in job_env.splitlines()}
    assert pilot.token.split(".")[2] not in job_env
    pilot.signal("SIGTERM")
    _exited_with(pilot, 0, timeout=10)
    logs = pilot.logs()
    assert pilot.token not in logs
    assert pilot.token.split(".")[2] not in logs


def test_the_daemons_and_jobs_run_as_uid_1000(pilots: Pilots) -> None:
    """The supervisor, condor_master and condor_startd run as uid 1000, and so
    does a job (its `id -u` prints 1000)."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-uid")
    procs = {p.comm: p for p in pilot.processes()}
    assert procs["condor_master"].uid == 1000
    assert procs["condor_startd"].uid == 1000
    assert [p.uid for p in pilot.processes() if p.pid == 1] == [1000]
    cluster = pilot.submit({"executable": "/usr/bin/id", "arguments": "-u"})
    wait_status(test_pool, cluster, JobStatus.COMPLETED, timeout=60)
    assert test_pool.job_output(cluster) == "1000\n"


# ---------------------------------------------------------------------------
# Sharing a host


def test_two_pilots_sharing_one_pilot_directory_do_not_collide(
    pilots: Pilots, tmp_path: Path
) -> None:
    """Two pilots with the same host directory at /pilot: both slots are
    visible under different names, both run a job, and each removes only its
    own ospool-ep-<uuid> directory when it exits."""
    test_pool = pilots.pool
    shared = tmp_path / "pilot"
    shared.mkdir()
    shared.chmod(0o777)
    volume = [(shared, "/pilot", "rw")]
    a = pilots.start("ep-share-a", volumes=volume)
    b = pilots.start("ep-share-b", volumes=volume)
    name_a, name_b = a.pslot()["Name"], b.pslot()["Name"]
    assert name_a != name_b
    dir_a, dir_b = f"ospool-ep-{a.uuid}", f"ospool-ep-{b.uuid}"
    assert {dir_a, dir_b} <= {p.name for p in shared.iterdir()}
    jobs = [a.submit(echo_job("a")), b.submit(echo_job("b"))]
    for cluster, text in zip(jobs, ("a", "b"), strict=True):
        wait_status(test_pool, cluster, JobStatus.COMPLETED, timeout=60)
        assert test_pool.job_output(cluster) == f"{text}\n"

    a.signal("SIGTERM")
    _exited_with(a, 0, timeout=15)
    left = {p.name for p in shared.iterdir()}
    assert dir_a not in left
    assert dir_b in left, f"pilot a removed pilot b's directory: {left}"
    assert b.running()
    b.wait_for_slot(timeout=10)

    b.signal("SIGTERM")
    _exited_with(b, 0, timeout=15)
    assert not [p for p in shared.iterdir() if p.name.startswith("ospool-ep-")]


# ---------------------------------------------------------------------------
# Logs, metrics, notifications, health


def test_log_format_json_makes_every_output_line_a_json_object(pilots: Pilots) -> None:
    """LOG_FORMAT=json: every line the pilot writes to stdout, its own events
    and its daemons' log lines, is a JSON object with ts, level, source, msg."""
    test_pool = pilots.pool
    pilot = pilots.start("ep-json", {"LOG_FORMAT": "json"})
    cluster = pilot.submit(echo_job("json"))
    wait_status(test_pool, cluster, JobStatus.COMPLETED, timeout=60)
    pilot.signal("SIGTERM")
    _exited_with(pilot, 0, timeout=10)
    lines = pilot.logs(stderr=False).splitlines()
    assert len(lines) > 20
    sources = set()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"stdout line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert {"ts", "level", "source", "msg"} <= record.keys(), line
        sources.add(record["source"])
    assert {"supervisor", "MasterLog", "StartLog"} <= sources, sources
    stderr = pilot.logs(stdout=False)
    print(f"\nstderr of the json pilot: {len(stderr.splitlines())} lines")


def _scrape(test_pool: pool.Pool, ip: str, port: int) -> str:
    """/metrics over the pool network: from the host (podman's bridge is routable
    from the host as root), else from inside the central manager."""
    url = f"http://{ip}:{port}/metrics"
    try:
        response = requests.get(url, timeout=5)
    except requests.ConnectionError:
        fetch = (
            "import urllib.request;"
            f" print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
        )
        return test_pool.exec_cm(["python3", "-c", fetch]).check(f"GET {url} in the CM").stdout
    response.raise_for_status()
    return response.text


def _samples(text: str) -> dict[str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_metrics_are_served_and_report_the_pilot_ready(pilots: Pilots) -> None:
    """METRICS_PORT=9100: /metrics (scraped over the pool network) has
    ospool_ep_info (name, version) and ospool_ep_state (running), and
    ospool_ep_ready becomes 1 once the slot is in the collector."""
    pilot = pilots.start("ep-metrics", {"METRICS_PORT": "9100"})
    ip = pilot.ip()
    visible = time.monotonic()

    def ready() -> dict[str, list[Any]] | None:
        samples = _samples(_scrape(pilot.pool, ip, 9100))
        return samples if samples["ospool_ep_ready"][0].value == 1 else None

    try:
        samples = pool.wait_until(ready, timeout=60, interval=1, what="ospool_ep_ready 1")
    except TimeoutError:
        pytest.fail(f"ospool_ep_ready never 1:\n{_scrape(pilot.pool, ip, 9100)}")
    TIMINGS["slot_visible_to_metrics_ready"] = round(time.monotonic() - visible, 2)
    ad = pilot.pslot()
    (info,) = samples["ospool_ep_info"]
    assert info.labels["version"] == ad["OSPOOL_EP_VERSION"]
    assert info.labels["name"] == ad["Machine"]
    state = {s.labels["ospool_ep_state"]: s.value for s in samples["ospool_ep_state"]}
    assert state["running"] == 1
    assert sum(state.values()) == 1
    assert samples["ospool_ep_cpus_offered"][0].value == 1
    assert samples["ospool_ep_memory_offered_bytes"][0].value == 1000 * 1024 * 1024


RECEIVER = """\
import http.server, json
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print(json.dumps({"path": self.path, "headers": dict(self.headers),
                          "body": body.decode(errors="replace")}), flush=True)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Hook).serve_forever()
"""


def test_start_and_stop_notifications_reach_the_webhook_without_the_token(
    pilots: Pilots, tmp_path: Path
) -> None:
    """NOTIFY_START_URL/NOTIFY_STOP_URL: a receiver on the pool network gets a
    JSON POST when the pilot starts and when it stops, with event, name, site,
    resource, reason and time, and never the token."""
    test_pool = pilots.pool
    script = tmp_path / "hook.py"
    script.write_text(RECEIVER)
    script.chmod(0o644)
    receiver = test_pool.run_container(
        "hook", entrypoint=["python3", "/hook.py"], volumes=[(script, "/hook.py", "ro")]
    )
    try:
        url = f"http://{pool._container_ip(receiver, test_pool.network.name)}:8080"

        def posts() -> list[dict[str, Any]]:
            out = receiver.get_wrapped_container().logs(stderr=False).decode()
            return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

        pilot = pilots.start(
            "ep-hook", {"NOTIFY_START_URL": f"{url}/start", "NOTIFY_STOP_URL": f"{url}/stop"}
        )
        pool.wait_until(posts, timeout=15, what="start notice")
        pilot.signal("SIGTERM")
        _exited_with(pilot, 0, timeout=15)
        received = pool.wait_until(
            lambda: (got := posts())[1:] and got, timeout=10, what="stop notice"
        )
        machine = pilot.name
        for post, event in zip(received, ("start", "stop"), strict=True):
            assert post["path"] == f"/{event}"
            assert pilot.token not in json.dumps(post)
            assert pilot.token.split(".")[2] not in json.dumps(post)
            body = json.loads(post["body"])
            assert {"event", "name", "site", "resource", "reason", "time"} <= body.keys(), body
            assert not [k for k in body if "token" in k.lower()]
            assert body["event"] == event
            assert body["site"] == "TestSite"
            assert body["resource"] == "Test Resource"
            assert machine in body["name"]
            assert body["reason"]
            datetime.fromisoformat(body["time"])
    finally:
        test_pool.remove_pilot("hook")


def test_health_ready_follows_the_collector_and_drain_stops_the_pilot(pilots: Pilots) -> None:
    """`ospool-ep health --ready` exits 0 once the slot is in the collector;
    `ospool-ep drain` (exec'd as the pilot's user) makes the pilot exit 0."""
    pilot = pilots.start("ep-health")
    visible = time.monotonic()
    ready = pilot.exec(
        [
            "sh",
            "-c",
            "i=0; until ospool-ep health --ready; do i=$((i+1)); [ $i -ge 120 ] && exit 1;"
            " sleep 0.5; done",
        ],
        timeout=90,
    )
    TIMINGS["slot_visible_to_health_ready"] = round(time.monotonic() - visible, 2)
    assert ready.exit_code == 0, ready
    live = pilot.exec(["ospool-ep", "health"])
    assert live.exit_code == 0, live
    drain = pilot.exec(["ospool-ep", "drain"])
    assert drain.exit_code == 0, drain
    sent = time.monotonic()
    _exited_with(pilot, 0, timeout=15)
    TIMINGS["drain_exit"] = round(time.monotonic() - sent, 2)
