"""The systemd units (SPEC 11): valid for systemd, and their command lines run as written.

systemd is not PID 1 on the test machines, so :class:`Unit` does what systemd
does with a unit's ``Exec*=`` lines, for the parts these units use: specifier
expansion (``%i``, ``%n``...), the ``-`` prefix, splitting into argv, and the
restart decision from the exit status. The paths the package installs
(``/usr/bin/ospool-ep``, ``/etc/osg``) are moved under a test root the way
systemd's ``RootDirectory=`` would; nothing else in a line changes.

``systemd-analyze verify`` checks the files against systemd itself, in a root
laid out like the RPM's (:func:`install_tree`, the spec's ``%install``).
The end-to-end tests (``tests/e2e/test_launch.py``) run the same lines
against real podman and a real pool.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from units import SERVICE, TEMPLATE, ExecLine, Relocation, Unit, install_tree, python39
from venv_tools import ospool_ep_command

from ospool_ep.host import command as launch_command

CONFIG_ERROR = 78


# ---------------------------------------------------------------------------
# The RPM's layout, from the working tree


# ---------------------------------------------------------------------------
# What systemd does with a unit's lines


def run_line(
    line: ExecLine, where: Relocation, *, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        where.argv(line),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dev_launcher() -> tuple[str, ...]:
    """The launcher as this checkout's ``ospool-ep`` (the full CLI's ``launch``)."""
    return tuple(ospool_ep_command())


# ---------------------------------------------------------------------------
# systemd's own checks


def _verify_root(tmp_path: Path) -> Path:
    """A root for ``systemd-analyze verify --root``: the package's files, plus the
    host's system units (the targets the units order themselves against)."""
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for host_units in (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system")):
        if host_units.is_dir():
            shutil.copytree(host_units, units, symlinks=True, dirs_exist_ok=True)
            break
    return install_tree(root)


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["ospool-ep.service", "ospool-ep@gpu.service"])
def test_systemd_analyze_verify_finds_nothing_to_say_about_the_units(
    unit: str, tmp_path: Path
) -> None:
    """``systemd-analyze verify`` in the package's layout: exit 0 and no message
    at all (it prints a bad time value as a warning and still exits 0)."""
    root = _verify_root(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", unit],
        cwd=root / "usr/lib/systemd/system",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_systemd_analyze
def test_systemd_analyze_verify_notices_a_missing_launcher(tmp_path: Path) -> None:
    """The check above can fail: without /usr/bin/ospool-ep in the root, verify says so."""
    root = _verify_root(tmp_path)
    (root / "usr/bin/ospool-ep").unlink()
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "ospool-ep.service"],
        cwd=root / "usr/lib/systemd/system",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "/usr/bin/ospool-ep is not executable" in result.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_sees_the_hardening_the_engines_allow(tmp_path: Path) -> None:
    """Recorded for the notes (run with -s): the exposure score, and the directives set."""
    root = _verify_root(tmp_path)
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--root={root}",
            str(root / "usr/lib/systemd/system/ospool-ep.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    print(result.stdout[-400:])
    assert re.search(r"Overall exposure level for ospool-ep.service: \d", result.stdout)
    passed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✓")}
    assert {
        "NoNewPrivileges=",
        "RestrictRealtime=",
        "CapabilityBoundingSet=~CAP_SYS_BOOT",
    } <= passed


# ---------------------------------------------------------------------------
# The lines themselves


def test_the_template_is_the_plain_unit_with_the_instance_config_and_name() -> None:
    """ospool-ep@NAME runs the same commands on /etc/osg/ospool-ep.d/NAME.cfg."""
    plain, template = Unit.load(SERVICE), Unit.load(TEMPLATE, instance="gpu")
    for key in ("ExecStartPre", "ExecStart", "ExecStop"):
        expected = [
            ExecLine(
                tuple(w.replace("ospool-ep.cfg", "ospool-ep.d/gpu.cfg") for w in line.argv),
                line.ignore_failure,
            )
            for line in plain.exec_lines(key)
        ]
        assert template.exec_lines(key) == expected
    for key in ("Type", "TimeoutStopSec", "Restart", "RestartPreventExitStatus", "NoNewPrivileges"):
        assert template.values(key) == plain.values(key)
    assert template.expand(template.value("SyslogIdentifier")) == "ospool-ep@gpu"


def test_the_units_start_with_the_launcher_and_stop_by_draining() -> None:
    unit = Unit.load(SERVICE)
    (start,) = unit.exec_lines("ExecStart")
    (stop,) = unit.exec_lines("ExecStop")
    (pre,) = unit.exec_lines("ExecStartPre")
    assert start.argv == ("/usr/bin/ospool-ep", "launch", "--config", "/etc/osg/ospool-ep.cfg")
    assert stop.argv == (*start.argv, "--stop") and not stop.ignore_failure
    assert pre.argv == stop.argv and pre.ignore_failure
    assert unit.value("Type") == "exec"


def test_timeout_stop_sec_is_above_the_default_grace_with_the_engines_margins() -> None:
    """TimeoutStopSec > SHUTDOWN_GRACE_SECONDS (120, upstream's) + stop margin + engine slack,
    and the launcher's constant (it warns when a bigger grace needs more) agrees."""
    for path in (SERVICE, TEMPLATE):
        unit = Unit.load(path)
        seconds = unit.seconds("TimeoutStopSec")
        assert seconds == launch_command.UNIT_TIMEOUT_STOP_SECONDS
        assert seconds > launch_command.DEFAULT_STOP_TIMEOUT + launch_command.ENGINE_SLACK_SECONDS
        assert unit.seconds("TimeoutStartSec") >= launch_command.DEFAULT_STOP_TIMEOUT


@pytest.mark.parametrize(
    ("code", "restarted"),
    [
        (0, True),  # retired, idled out, drained from inside: a fresh pilot replaces it
        (78, False),  # configuration error: nothing changes until the file does
        (69, True),  # a facility was missing (CVMFS, disk): may come back
        (70, True),  # condor_master died
        (125, True),  # the engine could not start the container
        (137, True),  # killed
    ],
)
def test_which_exit_statuses_restart_the_pilot(code: int, restarted: bool) -> None:
    """Restart=on-failure with RestartPreventExitStatus=78 (SPEC 7.4) and
    RestartForceExitStatus=0: only a configuration error stops the service for good."""
    for path in (SERVICE, TEMPLATE):
        assert Unit.load(path).restarts_after(code) is restarted


# ---------------------------------------------------------------------------
# Running the lines against a fake engine (the real one: tests/e2e/test_launch.py)

FAKE_ENGINE = """#!/bin/sh
# Records its arguments; "containers" are files in $FAKE_STATE named after them.
echo "$*" >> "$FAKE_LOG"
case "$1" in
  container) test -e "$FAKE_STATE/$5" ;;
  stop) rm -f "$FAKE_STATE/$4" ;;
  rm) rm -f "$FAKE_STATE/$3" ;;
  run) exit "${FAKE_RUN_EXIT:-0}" ;;
  *) exit 64 ;;
esac
"""


@dataclass
class FakeHost:
    """A PATH with a fake ``podman``, an /etc/osg with a valid config, a token, scratch."""

    root: Path
    env: dict[str, str]
    etc: Path
    log: Path
    state: Path

    def config(self, name: str = "ospool-ep.cfg", **extra: str) -> Path:
        path = self.etc / name
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.root / "scratch"
        scratch.mkdir(exist_ok=True)
        scratch.chmod(0o777)  # writable by the container's uid 1000, whoever runs the test
        token = self.root / "token"
        token.write_text("header.payload.signature\n")
        token.chmod(0o644)
        lines = {
            "GLIDEIN_Site": "TestSite",
            "GLIDEIN_ResourceName": "Test Resource",
            "TOKEN_LOCATION": str(token),
            "WORKER_TEMP_DIR": str(scratch),
            "CONTAINER_ENGINE": "podman",
            "IMAGE": "localhost/ospool-ep:dev",
            **extra,
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def fake_host(tmp_path: Path) -> FakeHost:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    engine = bin_dir / "podman"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "engine.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(log),
        "FAKE_STATE": str(state),
    }
    return FakeHost(tmp_path, env, tmp_path / "etc-osg", log, state)


def _where(fake: FakeHost, launcher: Sequence[str] | None = None) -> Relocation:
    return Relocation(tuple(launcher or dev_launcher()), fake.etc)


def test_exec_start_runs_the_engine_and_its_exit_status_is_the_units(
    fake_host: FakeHost,
) -> None:
    """ExecStart execs ``podman run``: what the engine exits with, the unit sees
    (here 78 from the pilot inside, which systemd does not retry)."""
    fake_host.config()
    (start,) = Unit.load(SERVICE).exec_lines("ExecStart")
    env = {**fake_host.env, "FAKE_RUN_EXIT": "78"}
    result = run_line(start, _where(fake_host), env=env, timeout=60)
    assert result.returncode == CONFIG_ERROR, result.stderr
    (call,) = fake_host.calls()
    assert call.startswith("run --rm --name ospool-ep-container --user 1000:1000 ")
    assert call.endswith(" localhost/ospool-ep:dev")
    assert not Unit.load(SERVICE).restarts_after(result.returncode)


def test_exec_start_refuses_a_bad_file_with_78_and_starts_nothing(fake_host: FakeHost) -> None:
    fake_host.config(NUM_CPUS="0")
    (start,) = Unit.load(SERVICE).exec_lines("ExecStart")
    result = run_line(start, _where(fake_host), env=fake_host.env, timeout=60)
    assert result.returncode == CONFIG_ERROR
    assert f"FAIL  {fake_host.etc}/ospool-ep.cfg:" in result.stderr
    assert "NUM_CPUS: 0 is out of range" in result.stderr
    assert fake_host.calls() == []


def test_exec_stop_drains_the_container_and_start_pre_clears_a_leftover(
    fake_host: FakeHost,
) -> None:
    """ExecStop (and ExecStartPre, for a container left behind) runs
    ``podman stop -t <grace + 5> <name>``; with no container it does nothing and exits 0."""
    fake_host.config(SHUTDOWN_GRACE_SECONDS="40")
    unit = Unit.load(SERVICE)
    (stop,) = unit.exec_lines("ExecStop")
    (pre,) = unit.exec_lines("ExecStartPre")
    where = _where(fake_host)
    nothing = run_line(pre, where, env=fake_host.env, timeout=60)
    assert nothing.returncode == 0, nothing.stderr
    assert fake_host.calls() == ["container inspect --format {{.Id}} ospool-ep-container"]
    (fake_host.state / "ospool-ep-container").touch()  # a running container
    started = time.monotonic()
    result = run_line(stop, where, env=fake_host.env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < unit.seconds("TimeoutStopSec")
    assert "stop -t 45 ospool-ep-container" in fake_host.calls()
    assert not (fake_host.state / "ospool-ep-container").exists()


def test_exec_stop_still_stops_when_the_file_was_broken_after_the_start(
    fake_host: FakeHost,
) -> None:
    """Only the engine and the name are needed to stop: a file edited into an
    invalid state (or deleted) while the pilot runs does not keep it running."""
    path = fake_host.config(CONTAINER_NAME="site-pilot")
    (fake_host.state / "site-pilot").touch()
    path.write_text(path.read_text() + "NUM_CPUS=zero\n")
    (stop,) = Unit.load(SERVICE).exec_lines("ExecStop")
    result = run_line(stop, _where(fake_host), env=fake_host.env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "stop -t 125 site-pilot" in fake_host.calls()
    assert "NUM_CPUS" in result.stderr  # still reported


def test_template_instances_get_their_config_and_distinct_container_names(
    fake_host: FakeHost,
) -> None:
    """ospool-ep@a and ospool-ep@b read ospool-ep.d/a.cfg and b.cfg and run
    containers ospool-ep-a and ospool-ep-b, with the scratch each file names."""
    for instance in ("a", "b"):
        fake_host.config(f"ospool-ep.d/{instance}.cfg", GLIDEIN_ResourceName=f"Res {instance}")
        (start,) = Unit.load(TEMPLATE, instance=instance).exec_lines("ExecStart")
        assert start.argv[-1] == f"/etc/osg/ospool-ep.d/{instance}.cfg"
        result = run_line(start, _where(fake_host), env=fake_host.env, timeout=60)
        assert result.returncode == 0, result.stderr
    runs = [call for call in fake_host.calls() if call.startswith("run ")]
    assert [shlex.split(c)[shlex.split(c).index("--name") + 1] for c in runs] == [
        "ospool-ep-a",
        "ospool-ep-b",
    ]
    assert "GLIDEIN_ResourceName=Res a" in runs[0] and "GLIDEIN_ResourceName=Res b" in runs[1]


def test_the_lines_run_the_same_with_the_packaged_launcher_under_python_3_9(
    fake_host: FakeHost, tmp_path: Path
) -> None:
    """The RPM's /usr/bin/ospool-ep (its modules in /usr/share/ospool-ep) under
    EL9's Python version: ExecStart and ExecStop behave as with the full CLI."""
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no python3.9 on this machine")
    root = install_tree(tmp_path / "rpmroot")
    launcher = (interpreter, "-I", str(root / "usr/bin/ospool-ep"))
    fake_host.config()
    unit = Unit.load(SERVICE)
    (start,) = unit.exec_lines("ExecStart")
    (stop,) = unit.exec_lines("ExecStop")
    where = _where(fake_host, launcher)
    assert run_line(start, where, env=fake_host.env, timeout=60).returncode == 0
    (fake_host.state / "ospool-ep-container").touch()
    assert run_line(stop, where, env=fake_host.env, timeout=60).returncode == 0
    calls = fake_host.calls()
    assert calls[0].startswith("run --rm --name ospool-ep-container ")
    assert "stop -t 125 ospool-ep-container" in calls
    assert not list(root.rglob("__pycache__")), "the launcher wrote bytecode into /usr/share"
