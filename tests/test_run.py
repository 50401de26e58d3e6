"""`ospool-ep run` up to the supervisor, and the hooks the supervisor calls back.

Reload (SIGHUP), token rotation and the drain drop-in are exercised on real
files, with the rendered tree read back through HTCondor's own parser.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jwt_factory import token
from ospool_ep import render, run
from ospool_ep.lifecycle import State
from ospool_ep.logs import Emitter
from ospool_ep.plan import Host, build_plan

NOW = int(time.time())
OSPOOL_EP = str(Path(sys.executable).parent / "ospool-ep")


def write_token(directory: Path, text: str) -> Path:
    path = directory / "flock.opensciencegrid.org"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def site(tmp_path: Path) -> dict[str, str]:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    write_token(tokens, token(iat=NOW, exp=NOW + 30 * 86400))
    (tmp_path / "pilot").mkdir()
    return {
        "PATH": os.environ["PATH"],
        "GLIDEIN_Site": "Test Site",
        "GLIDEIN_ResourceName": "Test Resource",
        "TOKEN_DIR": str(tokens),
        "PILOT_DIR": str(tmp_path / "pilot"),
        "EXTRA_ATTRIBUTES_FILE": str(tmp_path / "extra.cfg"),
        "MIN_DISK_GB": "0",
        "OSPOOL_EP_STATE_FILE": str(tmp_path / "state.json"),
    }


def hooks_for(site: dict[str, str], tmp_path: Path) -> tuple[run.PilotHooks, io.StringIO]:
    host = Host(environ=site, now=NOW, rng=random.Random(1), hostname="h", user="osg")
    outcome = build_plan(host)
    assert outcome.plan is not None, [f.as_line() for f in outcome.findings]
    config_dir = tmp_path / "config"
    assert render.write_and_verify(
        outcome.plan, output=config_dir, findings=outcome.findings, environ={}
    )
    out = io.StringIO()
    hooks = run.PilotHooks(
        plan=outcome.plan,
        tokens=outcome.tokens,
        host=host,
        config_dir=config_dir,
        emitter=Emitter(fmt="text", stream=out),
    )
    return hooks, out


def knob(config_dir: Path, name: str) -> str:
    code = "import sys, htcondor2; print(htcondor2.param.get(sys.argv[1]))"
    env = {**os.environ, "CONDOR_CONFIG": str(config_dir / "condor_config")}
    result = subprocess.run(
        [sys.executable, "-c", code, name], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_run_on_a_host_without_htcondor_exits_69_and_leaves_nothing(
    site: dict[str, str], tmp_path: Path
) -> None:
    """No daemons here: exit 69 naming HTCondor, before any pilot directory is made."""
    result = subprocess.run(
        [OSPOOL_EP, "run"], env=site, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 69, result.stdout + result.stderr
    assert "HTCondor: daemons not installed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert list((tmp_path / "pilot").iterdir()) == []


def test_run_with_a_bad_setting_exits_78_naming_it(site: dict[str, str]) -> None:
    site["ACCEPT_JOBS_FOR_HOURS"] = "soon"
    result = subprocess.run(
        [OSPOOL_EP, "run"], env=site, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 78
    assert "ACCEPT_JOBS_FOR_HOURS" in result.stdout


def test_json_logs_are_one_object_per_line(site: dict[str, str]) -> None:
    site["LOG_FORMAT"] = "json"
    result = subprocess.run(
        [OSPOOL_EP, "run"], env=site, capture_output=True, text=True, timeout=60, check=False
    )
    lines = result.stdout.splitlines()
    assert lines
    for line in lines:
        event = json.loads(line)
        assert {"ts", "level", "source", "msg"} <= set(event)


def test_the_drain_drop_in_stops_new_jobs_and_bounds_retirement(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    hooks.prepare_drain(deadline=NOW + 20)
    assert knob(hooks.config_dir, "START") == "False"
    assert knob(hooks.config_dir, "MAXJOBRETIREMENTTIME") == (
        f"ifThenElse(MY.JobStart =?= undefined, 0, {NOW + 20} - MY.JobStart)"
    )
    # Set from the start (the startd fixes a job's vacate time when it starts):
    # HTCondor's default, 600 s, would make the startd evict at once.
    assert knob(hooks.config_dir, "MachineMaxVacateTime") == str(render.VACATE_SECONDS)


def test_a_renewed_token_is_installed_and_reconfigures(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    installed = Path(hooks.plan.token_dir)
    fresh = token(iat=NOW, exp=NOW + 60 * 86400, jti="renewed")
    write_token(Path(site["TOKEN_DIR"]), fresh)
    assert hooks.reload() is True
    texts = [p.read_text().strip() for p in installed.iterdir()]
    assert texts == [fresh]
    assert oct(installed.stat().st_mode & 0o777) == "0o700"


def test_an_expired_replacement_token_is_refused_and_the_old_one_kept(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, out = hooks_for(site, tmp_path)
    tokens_dir = Path(hooks.plan.token_dir)
    tokens_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    run.tokens_mod.install_tokens(hooks.tokens, dest=tokens_dir)
    before = {p.name: p.read_text() for p in tokens_dir.iterdir()}
    expired = token(iat=NOW - 86400, exp=NOW - 60)
    write_token(Path(site["TOKEN_DIR"]), expired)
    assert hooks.reload() is False
    assert {p.name: p.read_text() for p in tokens_dir.iterdir()} == before
    assert "expired at" in out.getvalue()
    assert "reload refused" in out.getvalue()
    assert expired not in out.getvalue()


def test_a_bad_extra_attributes_file_on_reload_keeps_the_running_config(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, out = hooks_for(site, tmp_path)
    start_before = knob(hooks.config_dir, "START")
    Path(site["EXTRA_ATTRIBUTES_FILE"]).write_text("START = True\n")
    assert hooks.reload() is False
    assert knob(hooks.config_dir, "START") == start_before
    assert "extra.cfg:1" in out.getvalue()


def test_new_extra_attributes_are_published_after_reload(
    site: dict[str, str], tmp_path: Path
) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    Path(site["EXTRA_ATTRIBUTES_FILE"]).write_text('RACK = "b12"\n')
    assert hooks.reload() is True
    assert knob(hooks.config_dir, "RACK") == '"b12"'
    assert "RACK" in knob(hooks.config_dir, "STARTD_ATTRS").split()


def test_reload_is_refused_while_stopping(site: dict[str, str], tmp_path: Path) -> None:
    hooks, _ = hooks_for(site, tmp_path)

    class Stopping:
        state = State.DRAINING

    hooks.supervisor = Stopping()  # type: ignore[assignment]
    assert hooks.reload() is False


def test_periodic_work_notices_a_rotated_token_file(site: dict[str, str], tmp_path: Path) -> None:
    """A Kubernetes Secret update swaps the file; the next poll re-validates and reconfigures."""
    hooks, _ = hooks_for(site, tmp_path)
    assert hooks.tick(state=State.RUNNING, master_pid=None) is False
    write_token(Path(site["TOKEN_DIR"]), token(iat=NOW, exp=NOW + 90 * 86400, jti="rotated"))
    hooks.next_token_poll = 0
    assert hooks.tick(state=State.RUNNING, master_pid=None) is True
    assert hooks.tick(state=State.RUNNING, master_pid=None) is False


def test_the_state_file_is_published_and_withdrawn(site: dict[str, str], tmp_path: Path) -> None:
    hooks, _ = hooks_for(site, tmp_path)
    hooks.publish(state=State.RUNNING, master_pid=12345)
    published = json.loads(Path(site["OSPOOL_EP_STATE_FILE"]).read_text())
    assert published["state"] == "running"
    assert published["master_pid"] == 12345
    assert published["supervisor_pid"] == os.getpid()
    hooks.finished(reason="test")
    assert not Path(site["OSPOOL_EP_STATE_FILE"]).exists()


def test_the_master_never_gets_the_token_or_webhook_urls() -> None:
    assert {"TOKEN", "NOTIFY_START_URL", "NOTIFY_STOP_URL"} <= set(run.CHILD_ENV_DROPPED)


def test_a_slot_missing_from_the_collector_is_advertised_again_with_backoff(
    site: dict[str, str], tmp_path: Path
) -> None:
    """Started while the CM was down: nudges at 30, 90 and 210 s, then HTCondor's own updates."""
    hooks, out = hooks_for(site, tmp_path)

    class NotSeen:
        ready = False
        checked = 1.0

    hooks.observer = NotSeen()  # type: ignore[assignment]
    hooks.started_at = 1000.0
    asked = [t for t in range(1000, 1400, 5) if hooks.advertise_again(float(t))]
    assert asked == [1030, 1090, 1210]
    assert out.getvalue().count("advertise again") == 3


def test_a_visible_slot_is_not_nudged(site: dict[str, str], tmp_path: Path) -> None:
    hooks, _ = hooks_for(site, tmp_path)

    class Seen:
        ready = True
        checked = 1.0

    hooks.observer = Seen()  # type: ignore[assignment]
    hooks.started_at = 0.0
    assert not any(hooks.advertise_again(float(t)) for t in range(0, 400, 5))


def test_a_nudge_waits_for_the_collectors_first_answer(
    site: dict[str, str], tmp_path: Path
) -> None:
    """Under load the first query may not have answered by 30 s: the nudge is not spent."""
    hooks, _ = hooks_for(site, tmp_path)

    class NoAnswerYet:
        ready = False
        checked: float | None = None

    observer = NoAnswerYet()
    hooks.observer = observer  # type: ignore[assignment]
    hooks.started_at = 0.0
    assert not hooks.advertise_again(45.0)
    observer.checked = 46.0
    assert hooks.advertise_again(47.0)
    assert hooks.nudges_done == 1
