"""``ospool-ep`` run two ways for tests: in this process (fast) and as the installed command.

In-process (:func:`run_in_process`, after pipx's ``run_pipx_cli``) calls the
console script's own function, ``ospool_ep.cli.main(argv)``, with the
environment and working directory a process would get, and captures what it
writes to ``sys.stdout``/``sys.stderr`` (the CLI, argparse and
``traceback.print_exc`` all look those up at call time). Spawning the console
script costs about a quarter of a second per call (interpreter, imports): most
of a 150-case corpus's time. A handful of real-process cases
(:func:`run_as_process`) keep the promise about the installed command itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from venv_tools import ospool_ep_command

TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def fail_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("FAIL")]


def run_as_process(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Result:
    """The installed console script in a child process with exactly ``env``."""
    done = subprocess.run(
        [*ospool_ep_command(), *argv],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_in_process(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Result:
    """``ospool_ep.cli.main(argv)`` here, seeing exactly ``env`` and ``cwd``, as a process would.

    ``os.environ`` is emptied and refilled (not replaced: modules hold the object
    itself as a default) and restored afterwards, so no case sees another's
    variables. An exit through ``SystemExit`` (argparse's usage errors) gives the
    code an interpreter would. A traceback in the output fails the calling test:
    a user error must never show one (SPEC 3).
    """
    from ospool_ep import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _environment(env),
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            returncode = cli.main(list(argv))
        except SystemExit as stop:
            returncode = _exit_status(stop, stderr)
    result = Result(returncode, stdout.getvalue(), stderr.getvalue())
    assert TRACEBACK not in result.output, result.output
    return result


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _exit_status(stop: SystemExit, stderr: io.StringIO) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, text is printed and 1."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=stderr)
    return 1
