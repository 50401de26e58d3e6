"""Processes with no more rights than a job, so the kernel's permission checks mean something.

Tests here often run as root, for whom mode bits and ptrace rules do not apply
(CAP_DAC_OVERRIDE, CAP_SYS_PTRACE). Two ways around it:

- :func:`command` prefixes a command line so it runs as **uid 0 without any
  capability** (setpriv with empty bounding and inheritable sets): to the
  kernel an ordinary process of uid 0, mode bits and all, which can still run
  the venv's interpreter (root owns it, even under a 0700 /root). As another
  user the prefix is empty: that user has no capabilities anyway.
- :func:`as_user` runs a function in a forked child that has switched to another
  uid (65534, nobody): no exec, so no interpreter needs to be reachable by it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

NOBODY = 65534


def command() -> list[str]:
    """A prefix for argv: the command runs without privileges (see the module docstring)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop capabilities")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]


def python_json(code: str, *args: str, timeout: float = 60) -> Any:
    """What ``code`` prints as JSON, run by this interpreter unprivileged (:func:`command`)."""
    done = subprocess.run(
        [*command(), sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout)


def as_user(uid: int, function: Callable[[], Any]) -> Any:
    """``function()``'s JSON-able result, computed in a forked child running as ``uid``.

    Needs root (or ``uid`` being ours). An exception in the child is raised here
    as an AssertionError naming it.
    """
    if uid != os.geteuid() and os.geteuid() != 0:
        pytest.skip(f"needs root to run as uid {uid}")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        try:
            if uid != os.geteuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            answer = {"result": function()}
        except BaseException as error:  # reported to the parent
            answer = {"error": f"{type(error).__name__}: {error}"}
        with os.fdopen(write_end, "w") as stream:
            json.dump(answer, stream)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        text = stream.read()
    os.waitpid(pid, 0)
    answer = json.loads(text)
    if "error" in answer:
        raise AssertionError(f"in the child (uid {uid}): {answer['error']}")
    return answer["result"]
