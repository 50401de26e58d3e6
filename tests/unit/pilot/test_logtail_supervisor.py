"""The PID-1 loop stays free whatever is in the log directory (SPEC 7.3, 7.5).

A real Supervisor (``programs/drive_supervisor.py``, its own process) pumps a
real LogTailer on a LOG directory holding a FIFO, a link to /dev/zero, a
300 MB line and a log written without pause, around ``programs/fake_master.py``.
The test waits (polling, with deadlines) until the pumps have seen all of it,
then sends SIGTERM: the pilot must still drain and exit 0 within the grace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from paths import PROGRAMS

from ospool_ep.exitcodes import ExitCode

GRACE = 4
MiB = 1024 * 1024


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return value


def stream(path: Path) -> list[dict[str, Any]]:
    """The JSON lines the driver wrote to its stdout so far (a last partial one left out)."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def kill_if_ours(pid_file: Path, marker: str) -> None:
    try:
        pid = int(pid_file.read_text())
        if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


@pytest.fixture
def hostile_log_dir(tmp_path: Path) -> Iterator[Path]:
    """LOG with a FIFO, a link to /dev/zero, a 300 MB line and a log that never stops growing."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    os.mkfifo(log_dir / "StarterLog.slot1_1")
    (log_dir / "StarterLog.slot1_2").symlink_to("/dev/zero")
    with (log_dir / "StartLog").open("wb") as f:
        block = b"x" * MiB
        for _ in range(300):
            f.write(block)
        f.write(b"\nafter the long line\n")
    (log_dir / "MasterLog").write_text("master up\n")
    stop = threading.Event()

    def endless() -> None:
        line = b"11/21/26 05:00:00 (pid:42) a starter that never stops talking\n" * 1000
        with (log_dir / "StarterLog.slot1_3").open("ab") as f:
            while not stop.wait(0.001):
                f.write(line)
                f.flush()

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    yield log_dir
    stop.set()
    writer.join()


def test_sigterm_ends_the_supervisor_promptly_whatever_the_log_directory_holds(
    tmp_path: Path, hostile_log_dir: Path
) -> None:
    """A FIFO, a device link, a 300 MB line, an endless writer: the daemons' lines still
    come out, each bad file gets one warning, and SIGTERM still drains the master and
    ends the pilot with 0 within the grace."""
    fake = [
        sys.executable,
        str(PROGRAMS / "fake_master.py"),
        f"--log={tmp_path / 'master.log'}",
        f"--ready={tmp_path / 'master.ready'}",
    ]
    config = {
        "command": fake,
        "environment": {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        "grace_seconds": GRACE,
        "drain_seconds": 1,
        "record": str(tmp_path / "record.json"),
        "outcome": str(tmp_path / "outcome.json"),
        "log_dir": str(hostile_log_dir),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "driver.out"
    with out.open("wb") as stdout, (tmp_path / "driver.err").open("wb") as stderr:
        driver = subprocess.Popen(
            [sys.executable, str(PROGRAMS / "drive_supervisor.py"), str(tmp_path / "config.json")],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_for((tmp_path / "master.ready").exists, timeout=10, what="the fake master")

        def seen(source: str, text: str) -> bool:
            return any(r["source"] == source and text in r["msg"] for r in stream(out))

        wait_for(lambda: seen("MasterLog", "master up"), timeout=10, what="MasterLog's line")
        wait_for(lambda: seen("StartLog", "after the long line"), timeout=10, what="the long line")
        wait_for(lambda: seen("StarterLog.slot1_3", "never stops"), timeout=10, what="the writer")

        started = time.monotonic()
        os.kill(driver.pid, signal.SIGTERM)
        try:
            driver.wait(timeout=GRACE + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError("the supervisor did not exit after SIGTERM") from None
        elapsed = time.monotonic() - started
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        kill_if_ours(tmp_path / "master.ready", "fake_master")

    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert driver.returncode == ExitCode.OK == outcome["code"]
    assert outcome["reason"].startswith("stopped on request")
    print(f"SIGTERM to exit with a hostile LOG: {elapsed * 1000:.0f} ms")
    assert elapsed < GRACE
    signals = [line.split()[1] for line in (tmp_path / "master.log").read_text().splitlines()]
    assert signals == ["SIGHUP", "SIGTERM"]

    records = stream(out)
    warnings = [r for r in records if r["source"] == "supervisor"]
    for bad in ("StarterLog.slot1_1", "StarterLog.slot1_2"):
        assert len([w for w in warnings if w["file"].endswith(bad)]) == 1, warnings
    assert not any(r["source"] in ("StarterLog.slot1_1", "StarterLog.slot1_2") for r in records)
    [long_line] = [r["msg"] for r in records if r["source"] == "StartLog" and "xxx" in r["msg"]]
    assert long_line.endswith(" [truncated]") and len(long_line) < 17000
