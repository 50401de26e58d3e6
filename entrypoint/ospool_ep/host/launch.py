"""Launching on the host: ``/etc/osg/ospool-ep.cfg`` -> ``docker/podman run``, exec'd (SPEC 3, 11).

The pipeline of ``ospool-ep launch``: read the config file -> validate it
(:mod:`launch_config`) -> choose the engine -> check what the host must
provide (token file, scratch, CVMFS, FUSE, GPUs) -> report every problem at
once and exit 78 (file) or 69 (host), like ``ospool-ep check`` -> build the
command (:mod:`launch_command`) -> exec it, print it (``--print``), or stop
the container it started (``--stop``, systemd's ExecStop).

This is the I/O edge that acts: it reads the file, runs the engine and execs
it; what it looks at on the host is :mod:`launch_host`. It is also the entry
point of the RPM's ``/usr/bin/ospool-ep`` (:func:`main`), which ships only
the ``launch*`` modules: standard library only, Python 3.9 compatible.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ospool_ep import __version__
from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Finding, Findings, Status, report, verdict
from ospool_ep.host import command as lc
from ospool_ep.host.checks import check_host, choose_engine, host_facts
from ospool_ep.host.config import (
    DEFAULT_CONFIG,
    LaunchConfig,
    default_container_name,
    parse_config,
)

ENGINES = ("docker", "podman")
ENGINE_TIMEOUT_SECONDS = 60
"""Bound on ``inspect``/``rm`` calls; ``stop`` gets the stop timeout on top."""


# ---------------------------------------------------------------------------
# The command


def launch(
    *,
    config_path: str = str(DEFAULT_CONFIG),
    engine: str | None = None,
    print_only: bool = False,
    stop: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``ospool-ep launch``: returns an exit code, or never returns (exec)."""
    out, err = out or sys.stdout, err or sys.stderr
    config, problems = read_config(config_path)
    chosen = choose_engine(engine or (config.get("CONTAINER_ENGINE") if config else None), problems)
    name = (config.get("CONTAINER_NAME") if config else None) or default_container_name(config_path)
    if stop:
        # ExecStop must stop the container even when the file was broken or
        # removed after the start: only the engine and the name are needed.
        for problem in problems:
            print(problem.as_line(), file=err)
        return _stop(config, engine=chosen, name=name, dry_run=print_only, out=out)
    if config is None or chosen is None:
        return _refuse(problems, out=err)
    check_host(config, engine=chosen, problems=problems)
    if problems.has_failures():
        return _refuse(problems, out=err)
    for problem in problems:  # warnings: said, and the pilot starts
        print(problem.as_line(), file=err)
    command = lc.run_command(config, engine=chosen, name=name, facts=host_facts())
    if print_only:
        return _print(command, out=out, err=err)
    return _exec(command, err=err)


def _refuse(problems: Findings, *, out: TextIO) -> int:
    """Report every problem, ``check``'s way; 78 if the file must change, else 69."""
    code = problems.exit_code()
    report(problems, out=out, title="ospool-ep launch")
    print(f"Result: {verdict(code)}", file=out)
    return int(code)


def _stop(
    config: LaunchConfig | None, *, engine: str | None, name: str, dry_run: bool, out: TextIO
) -> int:
    if engine is None:
        return int(ExitCode.UNAVAILABLE)
    timeout = lc.stop_timeout(config) if config else lc.DEFAULT_STOP_TIMEOUT
    return stop_container(engine=engine, name=name, timeout=timeout, dry_run=dry_run, out=out)


def _print(command: lc.Command, *, out: TextIO, err: TextIO) -> int:
    print(shlex.join(command.argv), file=out)
    for variable in command.env:
        print(f"# {variable}: value passed in the engine's environment, not shown", file=err)
    return int(ExitCode.OK)


def _exec(command: lc.Command, *, err: TextIO) -> int:
    """Become the engine client: systemd's main process, its exit status the pilot's."""
    print(
        f"ospool-ep launch: starting {command.name} with {command.engine} "
        f"({command.argv[-1]}), stop timeout {command.stop_timeout} s",
        file=err,
    )
    err.flush()
    sys.stdout.flush()
    executable = shutil.which(command.engine) or command.engine
    os.execve(executable, list(command.argv), {**os.environ, **command.env})  # noqa: S606
    return int(ExitCode.SOFTWARE)  # not reached


def read_config(path: str) -> tuple[LaunchConfig | None, Findings]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        problem = (
            "does not exist",
            f"create it (the RPM installs {DEFAULT_CONFIG}), or pass --config FILE",
        )
    except OSError as exc:
        problem = (f"cannot be read: {exc.strerror}", "run as root")
    else:
        config = parse_config(data, source=path)
        return config, Findings(config.problems)
    return None, Findings([Finding(path, Status.FAIL, *problem)])


# ---------------------------------------------------------------------------
# Stopping (systemd's ExecStop, and ExecStartPre for leftovers)


def stop_container(*, engine: str, name: str, timeout: int, dry_run: bool, out: TextIO) -> int:
    """Drain and remove the container ``name`` if there is one; 0 when none is left.

    ``<engine> stop -t T`` sends the image's STOPSIGNAL (SIGTERM: the pilot
    drains, SPEC 7.2) and SIGKILL only after ``T`` = grace + margin. The
    container was started with ``--rm``; a leftover (its engine client was
    killed, the host rebooted) is removed too, so the next start can reuse
    the name.
    """
    stop = lc.stop_command(engine=engine, name=name, timeout=timeout)
    remove = lc.remove_command(engine=engine, name=name)
    if dry_run:
        print(shlex.join(stop), file=out)
        print(shlex.join(remove), file=out)
        return int(ExitCode.OK)
    if not _exists(engine, name):
        print(f"ospool-ep launch --stop: no container {name}", file=out)
        return int(ExitCode.OK)
    print(f"ospool-ep launch --stop: {shlex.join(stop)}", file=out)
    out.flush()
    code = _run(stop, timeout=timeout + ENGINE_TIMEOUT_SECONDS)
    if _exists(engine, name):
        code = _run(remove, timeout=ENGINE_TIMEOUT_SECONDS) or code
    return code if _exists(engine, name) else int(ExitCode.OK)


def _exists(engine: str, name: str) -> bool:
    argv = lc.exists_command(engine=engine, name=name)
    return _run(argv, timeout=ENGINE_TIMEOUT_SECONDS, quiet=True) == 0


def _run(argv: Sequence[str], *, timeout: float, quiet: bool = False) -> int:
    sink = subprocess.DEVNULL if quiet else None
    try:
        return subprocess.run(
            list(argv), stdout=sink, stderr=sink, timeout=timeout, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        return int(ExitCode.SOFTWARE)
    except OSError:
        return int(ExitCode.UNAVAILABLE)


# ---------------------------------------------------------------------------
# The RPM's /usr/bin/ospool-ep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``launch``, shared by the full CLI and the host entry point."""
    parser.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        metavar="FILE",
        help=f"the KEY=VALUE config file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, help="container engine (default: CONTAINER_ENGINE, else found)"
    )
    parser.add_argument(
        "--print", action="store_true", help="print the command instead of running it"
    )
    parser.add_argument(
        "--stop",
        action="store_true",
        help="drain and remove the container this config starts (systemd ExecStop)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The host-side ``ospool-ep``: only ``launch`` and ``version``; the rest runs in the image."""
    parser = argparse.ArgumentParser(
        prog="ospool-ep",
        description="Host launcher of the OSPool backfill Execution Point container.",
        epilog="run, check, render, health and drain are commands of the container image: "
        "docker/podman run --rm IMAGE check",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    launcher = commands.add_parser("launch", help="start the pilot container from the config file")
    add_arguments(launcher)
    commands.add_parser("version", help="print the launcher and Python versions")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"ospool-ep {__version__} (host launcher)")
        print(f"Python {sys.version.split()[0]}")
        return int(ExitCode.OK)
    return launch(
        config_path=args.config, engine=args.engine, print_only=args.print, stop=args.stop
    )
