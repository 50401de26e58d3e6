"""Whether the OSDF plugin is offered: the verdict of its test and the configuration for it."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from render_plans import make_plan, read_knobs

from ospool_ep.pilot import osdf, osdfcheck, render
from ospool_ep.pilot.osdf import OsdfPlan, Verdict, config_text, verdict_from

PLUGIN = "/usr/bin/ospool-ep-pelican-plugin"


def exited(code: int) -> int:
    return code << 8


def test_the_tests_last_line_and_exit_status_make_the_verdict() -> None:
    assert verdict_from(exited(0), b"ok: osdf:///x: 13 bytes\n") == Verdict(
        True, "ok: osdf:///x: 13 bytes"
    )
    assert verdict_from(exited(1), b"noise\nosdf:///x: cannot resolve osg-htc.org\n\n") == Verdict(
        False, "osdf:///x: cannot resolve osg-htc.org"
    )
    assert verdict_from(exited(3), b"").reason == "the test failed (exit 3)"
    assert "signal 9" in verdict_from(signal.SIGKILL, b"").reason
    assert not verdict_from(None, b"").ok


def tree_with(tmp_path: Path, text: str) -> Path:
    plan = make_plan()
    files = render.render_files(plan, config_dir=tmp_path)
    files[osdf.DROPIN_FILE] = text
    render.write_tree(files, output=tmp_path)
    return tmp_path


def test_a_passing_test_offers_the_plugin_to_htcondor(tmp_path: Path) -> None:
    text = config_text(OsdfPlan(plugin=PLUGIN), Verdict(True, "ok: 13 bytes"))
    knobs = read_knobs(
        tree_with(tmp_path, text), "STASH_PLUGIN", "OSDF_PLUGIN", "FILETRANSFER_PLUGINS"
    )
    assert knobs["STASH_PLUGIN"] == PLUGIN
    assert knobs["OSDF_PLUGIN"] == PLUGIN
    assert PLUGIN in knobs["FILETRANSFER_PLUGINS"]
    assert "OSDF_FAIL_REASON" not in text


@pytest.mark.parametrize(
    ("plan", "verdict", "reason"),
    [
        (OsdfPlan(plugin=PLUGIN), None, osdf.NOT_TESTED),
        (OsdfPlan(plugin=PLUGIN), Verdict(False, "cache stalled"), "cache stalled"),
        (OsdfPlan(unavailable="no pelicanfs"), Verdict(True, "ok"), "no plugin: no pelicanfs"),
    ],
)
def test_without_a_passing_test_nothing_is_offered_and_the_ad_says_why(
    tmp_path: Path, plan: OsdfPlan, verdict: Verdict | None, reason: str
) -> None:
    knobs = read_knobs(
        tree_with(tmp_path, config_text(plan, verdict)),
        "STASH_PLUGIN",
        "OSDF_FAIL_REASON",
        "STARTD_ATTRS",
    )
    assert knobs["STASH_PLUGIN"] in ("", "None")
    assert knobs["OSDF_FAIL_REASON"] == f'"{reason}"'
    assert "OSDF_FAIL_REASON" in knobs["STARTD_ATTRS"]


def test_a_hostile_reason_stays_one_harmless_string(tmp_path: Path) -> None:
    nasty = 'x" \nSTART = True\n$(LOCAL_DIR) \\ ' + "y" * 500
    text = config_text(OsdfPlan(plugin=PLUGIN), Verdict(False, nasty))
    knobs = read_knobs(tree_with(tmp_path, text), "OSDF_FAIL_REASON", "START")
    assert knobs["START"] != "True"
    reason = knobs["OSDF_FAIL_REASON"]
    assert reason.startswith('"') and reason.endswith('"') and '"' not in reason[1:-1]
    assert "$" not in reason and "\\" not in reason
    assert len(reason) <= osdf.MAX_REASON + 2


def plugin_script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "plugin"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def reap(check: osdfcheck.OsdfCheck, timeout: float = 10) -> None:
    child = check.child
    assert child is not None and child.pid is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            assert check.child_exited(pid, status)
            return
        time.sleep(0.02)
    raise AssertionError("the test child did not end")


def make_check(tmp_path: Path, plugin: str, events: list[tuple[str, str]]) -> osdfcheck.OsdfCheck:
    (tmp_path / "config.d").mkdir(exist_ok=True)
    now = [0.0]
    return osdfcheck.OsdfCheck(
        plan=OsdfPlan(plugin=plugin, check_seconds=60),
        config_dir=tmp_path,
        environment={"PATH": os.defpath},
        output=tmp_path / "out",
        clock=lambda: now[0],
        event=lambda level, msg, **_: events.append((level, msg)),
    )


def test_a_changed_verdict_is_written_once_and_asks_for_one_reconfig(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, plugin_script(tmp_path, 'echo "ok: 13 bytes"'), events)
    assert check.tick() is False  # started, not finished
    reap(check)
    assert check.tick() is True
    written = (tmp_path / osdf.DROPIN_FILE).read_text()
    assert f"STASH_PLUGIN = {check.plan.plugin}" in written
    assert events == [("info", "OSDF plugin test passed, osdf/pelican/stash offered: ok: 13 bytes")]
    assert check.tick() is False  # not due again for check_seconds


def test_the_same_verdict_again_changes_nothing(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, plugin_script(tmp_path, 'echo "x: gone"; exit 1'), events)
    check.tick()
    reap(check)
    assert check.tick() is True
    check.due = 0.0
    check.tick()
    reap(check)
    assert check.tick() is False
    assert len(events) == 1 and events[0][0] == "warning"


def test_a_second_pass_with_other_words_changes_nothing(tmp_path: Path) -> None:
    """A pass names its transfer time, different each run: no new drop-in, no reconfig."""
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, plugin_script(tmp_path, 'echo "ok: in $$ s"'), events)
    check.tick()
    reap(check)
    assert check.tick() is True
    first = check.applied
    check.due = 0.0
    check.tick()
    reap(check)
    assert check.tick() is False
    assert check.applied == first and len(events) == 1


def test_a_test_past_its_time_is_killed_and_fails(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, plugin_script(tmp_path, "exec sleep 60"), events)
    check.tick()
    assert check.child is not None
    check.child.deadline = 0.0  # its time is up
    check.tick()
    reap(check)
    check.tick()
    assert check.applied == Verdict(False, f"the test took longer than {osdf.SELFTEST_SECONDS:g} s")


def test_a_plugin_that_cannot_run_fails_the_test_with_the_reason(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, str(tmp_path / "missing"), events)
    assert check.tick() is True
    assert check.applied is not None and "cannot run the plugin" in check.applied.reason


def test_a_reload_gets_the_applied_verdict_back(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, plugin_script(tmp_path, 'echo "ok"'), events)
    check.tick()
    reap(check)
    (tmp_path / osdf.DROPIN_FILE).write_text(config_text(check.plan, None))  # a reload's
    check.reapply()
    assert "STASH_PLUGIN = " + str(check.plan.plugin) in (tmp_path / osdf.DROPIN_FILE).read_text()


def test_the_installed_plugin_is_found_beside_this_interpreter() -> None:
    found, why = osdf.installed_plugin()
    assert why == ""
    assert found == str(Path(sys.executable).parent.absolute() / osdf.PLUGIN_COMMAND)


def test_check_waits_for_the_same_test(tmp_path: Path) -> None:
    passed = osdfcheck.test_once(plugin_script(tmp_path, 'echo "ok: 1 byte"'), {})
    assert passed == Verdict(True, "ok: 1 byte")
    failed = osdfcheck.test_once(plugin_script(tmp_path, 'echo "nope"; exit 1'), {})
    assert failed == Verdict(False, "nope")


def test_a_jobs_own_transfer_plugin_is_ignored_so_none_runs_outside_its_container(
    tmp_path: Path,
) -> None:
    """It would run in the starter as the pilot's uid, next to the pilot's token."""
    plan = make_plan()
    render.write_tree(render.render_files(plan, config_dir=tmp_path), output=tmp_path)
    knob = "STARTER_DISABLE_USER_SUPPLIED_TRANSFER_PLUGINS"
    assert read_knobs(tmp_path, knob)[knob] == "2"


def test_the_transfer_service_is_restarted_later_each_time_it_ends(tmp_path: Path) -> None:
    from ospool_ep.pilot.transferservice import TransferService
    from ospool_ep.transfer.client import SOCKET_VARIABLE

    events: list[tuple[str, str]] = []
    now = [0.0]
    service = TransferService(
        environment={SOCKET_VARIABLE: str(tmp_path / "osdf.sock")},
        clock=lambda: now[0],
        event=lambda level, msg, **_: events.append((level, msg)),
        python="/bin/false",
    )
    delays = []
    for _ in range(3):
        service.tick()
        assert service.pid is not None
        pid, status = os.waitpid(service.pid, 0)
        assert service.child_exited(pid, status)
        delays.append(service.next_start - now[0])
        service.tick()
        assert service.pid is None  # not before its time
        now[0] = service.next_start
    assert delays == [1.0, 2.0, 4.0]
    assert all(level == "warning" and "exit 1" in msg for level, msg in events)
    assert not service.child_exited(12345, 0)  # not ours
    service.stop()
    service.tick()
    assert service.pid is None  # stopped: never again


def test_the_transfer_services_stderr_is_kept_out_of_the_log_stream_and_quoted(
    tmp_path: Path,
) -> None:
    """What the service writes to stderr (a traceback) goes to a file beside its socket,
    truncated at each start and never through a link; the warning quotes its last line."""
    from ospool_ep.pilot.transferservice import STDERR_NAME, TransferService
    from ospool_ep.transfer.client import SOCKET_VARIABLE

    events: list[tuple[str, str]] = []
    service = TransferService(
        environment={SOCKET_VARIABLE: str(tmp_path / "osdf.sock")},
        clock=lambda: 0.0,
        event=lambda level, msg, **_: events.append((level, msg)),
        python="/bin/sh",  # `sh -I -m ...`: an illegal option, said on stderr
    )
    stderr = tmp_path / STDERR_NAME
    for _ in range(2):
        service.next_start = 0.0
        service.tick()
        assert service.pid is not None
        pid, status = os.waitpid(service.pid, 0)
        assert service.child_exited(pid, status)
        assert stat.S_IMODE(stderr.stat().st_mode) == 0o600
        said = stderr.read_text().strip().splitlines()
        assert said and "old run" not in stderr.read_text()
        level, msg = events[-1]
        assert level == "warning" and msg.startswith("OSDF transfer service ended (exit 2: ")
        assert said[-1] in msg
        stderr.write_text("an old run's words\n")  # the next start begins the file anew

    stderr.unlink()
    stderr.symlink_to(tmp_path / "elsewhere")
    service.next_start = 0.0
    service.tick()  # the open fails (O_NOFOLLOW): not started, retried later
    assert service.pid is None
    assert not (tmp_path / "elsewhere").exists()
    assert "could not start" in events[-1][1]


def test_the_background_test_runs_at_a_lower_priority(tmp_path: Path) -> None:
    """The test (and the service) yield the CPU to the daemons joining and to jobs."""
    events: list[tuple[str, str]] = []
    check = make_check(tmp_path, plugin_script(tmp_path, "exec sleep 5"), events)
    check.tick()
    assert check.child is not None and check.child.pid is not None
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, check.child.pid) == min(19, ours + 10)
    finally:
        os.kill(check.child.pid, signal.SIGKILL)
        reap(check)
