"""cvmfsexec: default.local, the command line, the per-pilot copy, and signalling the master
inside cvmfsexec's PID namespace (SPEC 7.1, 9.4)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paths import PROGRAMS, REPO

from ospool_ep.cvmfs import cvmfsexec
from ospool_ep.inputs.settings import Settings

SITE = Settings(site="S", resource_name="R")


def test_default_local_takes_the_environment_over_the_sites_file() -> None:
    """The mounted file's lines are kept; CVMFS_HTTP_PROXY, CVMFS_QUOTA_LIMIT and the
    debug log from the environment come after them, so they win when sourced."""
    settings = Settings(
        site="S",
        resource_name="R",
        cvmfs_http_proxy="http://squid.site:3128;DIRECT",
        cvmfs_quota_limit_mb=8000,
        cvmfsexec_debug=True,
    )
    site_text = 'CVMFS_HTTP_PROXY="http://old:3128"\nCVMFS_KEYS_DIR=/etc/keys\n'
    text = cvmfsexec.default_local(
        settings, site_text=site_text, cache_dir="/cvmfs-cache", log_dir="/cvmfs-logs"
    )
    lines = text.splitlines()
    assert lines.index('CVMFS_HTTP_PROXY="http://old:3128"') < lines.index(
        'CVMFS_HTTP_PROXY="http://squid.site:3128;DIRECT"'
    )
    assert "CVMFS_KEYS_DIR=/etc/keys" in lines
    assert 'CVMFS_QUOTA_LIMIT="8000"' in lines
    assert 'CVMFS_DEBUGLOG="/cvmfs-logs/debuglog"' in lines
    assert 'CVMFS_CACHE_BASE="/cvmfs-cache"' in lines


def test_default_local_without_a_proxy_anywhere_uses_wpad() -> None:
    text = cvmfsexec.default_local(SITE, site_text=None, cache_dir=None, log_dir="/x")
    assert 'CVMFS_HTTP_PROXY="auto;DIRECT"' in text.splitlines()
    assert "CVMFS_QUOTA_LIMIT" not in text and "CVMFS_DEBUGLOG" not in text
    assert "CVMFS_CACHE_BASE" not in text
    kept = cvmfsexec.default_local(
        SITE, site_text="CVMFS_HTTP_PROXY=http://p:1\nCVMFS_CACHE_BASE=/c\n", cache_dir="/d",
        log_dir="/x",
    )  # fmt: skip
    assert "auto;DIRECT" not in kept and 'CVMFS_CACHE_BASE="/d"' not in kept


def test_the_command_line_mounts_the_repos_without_nesting_and_runs_the_master() -> None:
    argv = cvmfsexec.command(
        Path("/pilot/p1/cvmfsexec"),
        ("oasis.opensciencegrid.org", "icecube.opensciencegrid.org"),
        ["/usr/sbin/condor_master", "-f"],
    )
    assert argv == [
        "/pilot/p1/cvmfsexec/cvmfsexec",
        "-N",
        "oasis.opensciencegrid.org",
        "icecube.opensciencegrid.org",
        "--",
        "/usr/sbin/condor_master",
        "-f",
    ]


def test_a_distribution_is_copied_per_pilot_with_its_default_local(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "dist" / "etc" / "cvmfs").mkdir(parents=True)
    (dist / "cvmfsexec").write_text("#!/bin/sh\n")
    (dist / "dist" / "etc" / "cvmfs" / "default.local").write_text("OLD=1\n")
    assert cvmfsexec.distribution_problem(dist) is None
    site_file = tmp_path / "site.local"
    site_file.write_text("CVMFS_KEYS_DIR=/k\n")
    pilot_dir = tmp_path / "pilot"
    pilot_dir.mkdir()
    prepared = cvmfsexec.prepare(
        SITE,
        distribution=dist,
        pilot_dir=pilot_dir,
        site_file=site_file,
        cache_mount=tmp_path / "no-cache",
        log_mount=tmp_path / "no-logs",
    )
    assert prepared.directory == pilot_dir / "cvmfsexec"
    local = (prepared.directory / "dist/etc/cvmfs/default.local").read_text()
    assert "CVMFS_KEYS_DIR=/k" in local and "OLD=1" not in local
    assert prepared.log_dir.is_dir() and not prepared.log_dir.is_symlink()
    (prepared.log_dir / "oasis.log").write_text("line one\n\nline two\n")
    assert cvmfsexec.log_lines(prepared.log_dir) == ["oasis.log: line one", "oasis.log: line two"]
    # The image's copy is never written to.
    assert (dist / "dist/etc/cvmfs/default.local").read_text() == "OLD=1\n"


def test_a_missing_or_unbuilt_distribution_says_which(tmp_path: Path) -> None:
    assert "no cvmfsexec distribution" in (cvmfsexec.distribution_problem(tmp_path / "x") or "")
    (tmp_path / "cvmfsexec").write_text("")
    assert "no dist/" in (cvmfsexec.distribution_problem(tmp_path) or "")


# -- the master in a PID namespace ---------------------------------------------------------


def fake_proc(root: Path, entries: dict[int, tuple[str, int, str]]) -> Path:
    """A /proc of ``pid -> (comm, ppid, NSpid line)``."""
    for pid, (comm, ppid, ns) in entries.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0 -1\n")
        (d / "status").write_text(f"Name:\t{comm}\nNSpid:\t{ns}\n")
    return root


def test_the_finder_picks_the_top_master_below_the_launcher_and_reads_its_inner_pid(
    tmp_path: Path,
) -> None:
    proc = fake_proc(
        tmp_path,
        {
            100: ("bash", 1, "100"),  # cvmfsexec
            101: ("unshare", 100, "101"),
            102: ("bash", 101, "102\t1"),  # the namespace's PID 1, ignoring TERM
            103: ("condor_master", 102, "103\t2"),
            104: ("condor_master", 103, "104\t3"),  # a fork that still has the name
            105: ("condor_startd", 103, "105\t4"),
            200: ("condor_master", 1, "200"),  # someone else's
        },
    )
    finder = cvmfsexec.MasterFinder(proc=proc)
    assert finder(100) == 103
    assert (finder.inner_pid, finder.ever_found) == (2, True)
    assert cvmfsexec.nspid(105, proc=proc) == (105, 4)
    # Cached while alive; found again when gone.
    shutil.rmtree(proc / "103")
    shutil.rmtree(proc / "104")
    assert finder(100) is None


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)")
def test_sigterm_reaches_a_master_inside_a_pid_namespace_whose_init_ignores_it(
    tmp_path: Path,
) -> None:
    """The supervisor drains by signalling the master itself, not the cvmfsexec process:
    with a real PID namespace whose PID 1 ignores SIGTERM in between, the master gets
    SIGHUP then SIGTERM, exits, and the pilot ends 0 as stopped on request."""
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "/bin/true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"no PID namespaces here: {probe.stderr.decode().strip()}")
    config = {
        "command": [
            str(PROGRAMS / "fake_cvmfsexec.sh"),
            "-N",
            "oasis.opensciencegrid.org",
            "--",
            sys.executable,
            str(PROGRAMS / "fake_master.py"),
            f"--log={tmp_path / 'master.log'}",
            f"--ready={tmp_path / 'master.ready'}",
        ],
        "environment": {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        "grace_seconds": 6,
        "drain_seconds": 3,
        "record": str(tmp_path / "record.json"),
        "outcome": str(tmp_path / "outcome.json"),
        "master_name": Path(sys.executable).name[:15],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    driver = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "drive_namespaced.py"), str(tmp_path / "config.json")],
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO / "entrypoint")},
    )
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "master.ready").exists():
            assert time.monotonic() < deadline, "the fake master never started"
            time.sleep(0.02)
        # Its own idea of its pid: it runs inside the new namespace.
        assert (tmp_path / "master.ready").read_text().strip() == "2"
        sent = time.monotonic()
        driver.send_signal(signal.SIGTERM)
        assert driver.wait(timeout=15) == 0
        took = time.monotonic() - sent
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    got = [line.split()[1] for line in (tmp_path / "master.log").read_text().splitlines()]
    assert got == ["SIGHUP", "SIGTERM"]
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert outcome["code"] == 0 and "stopped on request" in outcome["reason"]
    assert (outcome["found"], outcome["inner_pid"]) == (True, 2)
    assert took < 5
