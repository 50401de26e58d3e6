"""The supervisor's own process: not dumpable, TOKEN handed over out of its environment (SPEC 7.5).

Real processes throughout. Whether a process can read another's /proc files
depends on uids and capabilities, so the readers here run as uid 65534 in
forked children (tests/unprivileged.py): root would read everything.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import unprivileged

from ospool_ep.pilot import hardening, procfs

PROC_FILES = ("environ", "mem", "fd/0", "stat", "status", "cmdline")


def try_reading(pid: int) -> dict[str, str]:
    """For each /proc/<pid> file: "read" or the error's name (what a job of our uid would get)."""
    found = {}
    for name in PROC_FILES:
        path = Path(f"/proc/{pid}/{name}")
        try:
            if name.startswith("fd/"):
                path.readlink()  # opening it could block (a pipe); the link is as guarded
            else:
                path.open("rb").close()
            found[name] = "read"
        except OSError as error:
            found[name] = type(error).__name__
    return found


def hold(*, undumpable: bool, uid: int) -> int:
    """A forked child of uid ``uid`` that sleeps until killed."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_read)
            if uid != os.geteuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            if undumpable:
                hardening.make_undumpable()
            else:
                # A uid change clears the flag (suid_dumpable, proc(5)): set it back, as
                # an exec would, so this twin stands for an ordinary process of the uid.
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(ctypes.c_int(4), ctypes.c_ulong(1), *[ctypes.c_ulong(0)] * 3)
            os.write(ready_write, b"ready")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(ready_write)
    assert os.read(ready_read, 5) == b"ready"
    os.close(ready_read)
    return pid


def python_with(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` in a fresh interpreter, with ``env`` on top of ours."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_an_undumpable_process_cannot_be_read_by_another_process_of_its_uid() -> None:
    """environ, mem and fd/ are closed to uid 65534's other processes; stat, status and
    cmdline (what health and drain read) stay open. A dumpable twin shows it is the flag."""
    uid = unprivileged.NOBODY if os.geteuid() == 0 else os.geteuid()
    guarded = hold(undumpable=True, uid=uid)
    plain = hold(undumpable=False, uid=uid)
    try:
        seen = unprivileged.as_user(
            uid,
            lambda: [try_reading(guarded), try_reading(plain), procfs.start_time(guarded)],
        )
        started = procfs.start_time(guarded)
    finally:
        for pid in (guarded, plain):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    undumpable, dumpable, started_as_seen = seen
    assert started_as_seen == started, "the start time (drain, health) is not hidden"
    assert undumpable == {
        "environ": "PermissionError",
        "mem": "PermissionError",
        "fd/0": "PermissionError",
        "stat": "read",
        "status": "read",
        "cmdline": "read",
    }
    # mem is left out: Yama (ptrace_scope 1) may refuse it to non-ancestors anyway.
    assert {name: dumpable[name] for name in ("environ", "fd/0")} == {
        "environ": "read",
        "fd/0": "read",
    }


def test_an_undumpable_process_still_reads_the_proc_files_it_needs_of_its_own() -> None:
    """After the flag is cleared the supervisor still lists and follows /proc/self/fd
    (subprocess, the token hand-over, chmod through an fd), reads its stat (its start
    time, for the state file), cgroup and mountinfo (resources). Its own environ is
    closed even to itself (root-owned, 0400): nothing in the pilot reads it."""

    def own() -> dict[str, object]:
        assert hardening.make_undumpable() is None
        read_end, write_end = os.pipe()
        found: dict[str, object] = {
            "dumpable": hardening.is_dumpable(),
            "fds": any(Path("/proc/self/fd").iterdir()),
            "fd link": Path(f"/proc/self/fd/{read_end}").readlink().name.startswith("pipe:"),
            "exe": Path("/proc/self/exe").readlink().is_absolute(),
            "started": procfs.start_time(os.getpid()) is not None,
            "cgroup": bool(Path("/proc/self/cgroup").read_text()),
            "mountinfo": bool(Path("/proc/self/mountinfo").read_text()),
        }
        os.close(read_end)
        os.close(write_end)
        try:
            Path("/proc/self/environ").read_bytes()
            found["environ"] = "read"
        except PermissionError:
            found["environ"] = "refused"
        return found

    uid = unprivileged.NOBODY if os.geteuid() == 0 else os.geteuid()
    assert unprivileged.as_user(uid, own) == {
        "dumpable": False,
        "fds": True,
        "fd link": True,
        "exe": True,
        "started": True,
        "cgroup": True,
        "mountinfo": True,
        "environ": "refused",
    }


HAND_OVER = """
import os, sys
from ospool_ep.pilot import hardening
if sys.argv[1] == "before":
    print(os.getpid(), flush=True)
    error = hardening.exec_without_token(
        os.environ, executable=sys.executable, argv=[sys.executable, "-c", sys.argv[2], "after"]
    )
    print("exec failed:", error)
else:
    token = hardening.take_token(os.environ)
    initial = open("/proc/self/environ", "rb").read().split(b"\\0")
    print(os.getpid())
    print(repr(token))
    print(any(v.startswith(b"TOKEN=") for v in initial), "TOKEN" in os.environ)
    print(hardening.TOKEN_FD_VARIABLE in os.environ, len(os.listdir("/proc/self/fd")))
"""


def test_the_token_crosses_an_exec_in_a_memfd_and_leaves_no_trace_in_the_environment() -> None:
    """Same pid after the exec; the text arrives whole (any bytes, newlines, a long one);
    neither /proc/self/environ nor os.environ holds TOKEN; the fd is closed after reading."""
    text = "eyJhbGciOiJFUzI1NiJ9.payload.sig\nsecond line é " + "x" * 100_000
    result = subprocess.run(
        [sys.executable, "-c", HAND_OVER, "before", HAND_OVER],
        env={**os.environ, "TOKEN": text},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, after, token, in_environ, leftovers = result.stdout.splitlines()
    assert after == before, "exec, not fork: the pid stays"
    assert token == repr(text)
    assert in_environ == "False False"
    assert leftovers.startswith("False ")


def test_an_impossible_exec_returns_its_error_and_leaks_no_descriptor() -> None:
    """This process is unchanged; the memfd made for the hand-over is closed again."""
    before = sorted(Path("/proc/self/fd").iterdir())
    error = hardening.exec_without_token(
        {"TOKEN": "text"}, executable="/nonexistent/python", argv=["python"]
    )
    assert isinstance(error, FileNotFoundError)
    assert sorted(Path("/proc/self/fd").iterdir()) == before


def test_no_hand_over_variable_means_no_token() -> None:
    environ = {"PATH": "/bin"}
    assert hardening.take_token(environ) is None
    assert environ == {"PATH": "/bin"}


@pytest.mark.parametrize("value", ["three", "-1", "999999"])
def test_a_hand_over_variable_naming_no_descriptor_is_an_error(value: str) -> None:
    environ = {hardening.TOKEN_FD_VARIABLE: value}
    with pytest.raises(hardening.HandOverError, match=hardening.TOKEN_FD_VARIABLE):
        hardening.take_token(environ)
    assert environ == {}, "removed all the same: no child inherits it"


def test_a_hand_over_variable_naming_some_other_descriptor_leaves_it_alone() -> None:
    """A pipe (say) is not our memfd: neither read nor closed."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"not a token")
        with pytest.raises(hardening.HandOverError, match="not the token hand-over"):
            hardening.take_token({hardening.TOKEN_FD_VARIABLE: str(read_end)})
        assert os.read(read_end, 100) == b"not a token"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_process_not_started_for_run_never_execs_and_keeps_token() -> None:
    """harden(may_exec=False), as for a test calling the CLI in-process: nothing to report."""
    code = (
        "import json, os; from ospool_ep.pilot import hardening; "
        "h = hardening.harden(may_exec=False); "
        "print(json.dumps([h.token, os.environ.get('TOKEN'), h.problems == (), "
        "hardening.is_dumpable()]))"
    )
    result = python_with(code, env={"TOKEN": "abc"})
    assert json.loads(result.stdout) == [None, "abc", True, False]


def test_a_sealed_hand_over_cannot_be_changed_before_it_is_read() -> None:
    """A process that opens the memfd through /proc (same uid, before the flag is set) gets a
    read-only view: writes, growing and shrinking are refused by the seals."""
    code = """
import os, sys
from ospool_ep.pilot import hardening
if sys.argv[1] == "before":
    hardening.exec_without_token(
        os.environ, executable=sys.executable, argv=[sys.executable, "-c", sys.argv[2], "after"]
    )
fd = int(os.environ[hardening.TOKEN_FD_VARIABLE])
try:
    os.pwrite(fd, b"X", 0)
    print("written")
except OSError as error:
    print(type(error).__name__)
try:
    os.ftruncate(fd, 0)
    print("truncated")
except OSError as error:
    print(type(error).__name__)
print(hardening.take_token(os.environ))
"""
    result = python_with(code, "before", code, env={"TOKEN": "the-token"})
    assert result.stdout.splitlines() == ["PermissionError", "PermissionError", "the-token"]


def test_start_time_is_stable_and_differs_between_processes() -> None:
    """Field 22 of stat: the same for one process whenever read, later for a later one."""
    mine = procfs.start_time(os.getpid())
    assert mine is not None
    time.sleep(0.05)
    child = subprocess.Popen(["/bin/sleep", "5"])
    try:
        theirs = procfs.start_time(child.pid)
        assert theirs is not None
        assert theirs > mine
        assert procfs.start_time(os.getpid()) == mine
        assert procfs.uids(child.pid) == (os.getuid(),) * 4
        assert procfs.cmdline(child.pid) == ("/bin/sleep", "5")
    finally:
        child.kill()
        child.wait()
    assert procfs.start_time(child.pid) is None
    assert procfs.uids(child.pid) == ()
    assert procfs.cmdline(child.pid) == ()


def test_when_the_exec_is_impossible_the_pilot_runs_on_with_token_and_a_warning() -> None:
    """No interpreter to exec (here: sys.executable pointed nowhere): one warning naming
    the error; the text is handed to the settings in memory all the same, and taken
    out of os.environ (no process started later inherits it)."""
    code = (
        "import os, sys; sys.executable = '/nonexistent/python'; "
        "from ospool_ep.pilot import hardening; h = hardening.harden(may_exec=True); "
        "print([(p.level, p.message, p.fields) for p in h.problems]); "
        "print(h.token, os.environ.get('TOKEN'))"
    )
    result = python_with(code, env={"TOKEN": "abc"})
    problems, token = result.stdout.splitlines()
    assert problems == repr(
        [
            (
                "warning",
                "TOKEN stays in this process's initial environment: cannot exec again without it",
                {"error": "[Errno 2] No such file or directory: '/nonexistent/python'"},
            )
        ]
    )
    assert token == "abc None"


def test_a_broken_hand_over_is_reported_as_an_error() -> None:
    code = (
        "from ospool_ep.pilot import hardening; h = hardening.harden(may_exec=True); "
        "print(h.token, [(p.level, p.message) for p in h.problems])"
    )
    expected = "TOKEN was not handed over: OSPOOL_EP_TOKEN_FD: descriptor 250 is not open"
    result = python_with(code, env={hardening.TOKEN_FD_VARIABLE: "250"})
    assert result.stdout == f"None {[('error', expected)]}\n"
