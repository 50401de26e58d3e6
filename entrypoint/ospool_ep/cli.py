"""Command line: argparse front end; turns findings and domain errors into exit codes (SPEC 3)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ospool_ep import __version__
from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Findings, Kind, Status, report, verdict

if TYPE_CHECKING:
    from ospool_ep.pilot import statefile as state
    from ospool_ep.pilot.hardening import Hardened
    from ospool_ep.pilot.logs import Emitter


def cmd_check(args: argparse.Namespace) -> int:
    from ospool_ep.pilot import plan, remotelog, render

    host = plan.Host.current()
    outcome = plan.build_plan(host)
    findings = outcome.findings
    syslog = remotelog.decide(host.environ)
    if syslog.warn:
        findings.warn("remote syslog", syslog.message, syslog.fix)
    else:
        findings.passed("remote syslog", syslog.message)
    if outcome.plan is not None:
        with tempfile.TemporaryDirectory(prefix="ospool-ep-check-") as scratch:
            render.write_and_verify(outcome.plan, output=Path(scratch), findings=findings)
    plan.check_htcondor_installed(findings)
    if args.osdf and outcome.plan is not None and outcome.plan.osdf.plugin is not None:
        from ospool_ep.pilot import osdf, osdfcheck

        tested = osdfcheck.test_once(outcome.plan.osdf.plugin, host.environ)
        if tested.ok:
            findings.passed(osdf.SUBJECT, f"plugin test passed: {tested.reason}")
        else:
            findings.warn(
                osdf.SUBJECT,
                f"plugin test failed, osdf/pelican/stash not offered: {tested.reason}",
                "jobs without OSDF URLs run as ever; the pilot re-tests every OSDF_CHECK_SECONDS",
            )
    code = findings.exit_code()
    if args.json:
        document = {
            "version": __version__,
            "exit_code": int(code),
            "result": verdict(code),
            "checks": [finding.as_dict() for finding in findings],
        }
        print(json.dumps(document, indent=2))
    else:
        report(findings, out=sys.stdout, title="ospool-ep check")
        print(f"Result: {verdict(code)}")
    return int(code)


def cmd_render(args: argparse.Namespace) -> int:
    from ospool_ep.pilot import plan, render

    outcome = plan.build_plan(plan.Host.current(), check_disk=False)
    findings = outcome.findings
    # What this host lacks (Apptainer, CVMFS) is shown, not fatal: the configuration
    # is rendered as run would render it where those facilities are.
    config_failures = [f for f in findings.failures if f.kind is not Kind.ENVIRONMENT]
    if outcome.plan is None or config_failures:
        report(Findings(findings.failures), out=sys.stderr, title="ospool-ep render")
        return int(ExitCode.CONFIG)
    output: Path = args.output
    if not render.write_and_verify(outcome.plan, output=output, findings=findings):
        report(Findings(findings.failures), out=sys.stderr, title="ospool-ep render")
        return int(ExitCode.CONFIG)
    for warning in (f for f in findings if f.status is not Status.PASS):
        print(warning.as_line(), file=sys.stderr)
    print(f"wrote {output.absolute() / render.ROOT_FILE} (pilot {outcome.plan.name})")
    return int(ExitCode.OK)


def cmd_run(args: argparse.Namespace) -> int:
    from ospool_ep.pilot import handoff, hardening, run
    from ospool_ep.pilot.logs import Emitter

    # First of all (before the imports below: the exec would load them twice).
    hardened = hardening.harden(may_exec=args.own_process)
    try:
        launch = handoff.take_launch(os.environ)
    except handoff.HandOffError as error:
        print(f"ospool-ep run: {error}", file=sys.stderr)
        return int(ExitCode.SOFTWARE)
    if launch is not None:
        # The second half (SPEC 7): prepared already, supervise with light imports only.
        emitter = Emitter(fmt=run.log_format({"LOG_FORMAT": launch.log_format}), stream=sys.stdout)
        _report_hardening(hardened, emitter)
        return run.supervise_launch(launch, emitter)

    import dataclasses

    from ospool_ep.pilot import plan

    host = plan.Host.current()
    if hardened.token is not None:
        # In memory only: the settings read TOKEN from the Host as from the environment.
        environ = {**host.environ, hardening.TOKEN_VARIABLE: hardened.token}
        host = dataclasses.replace(host, environ=environ)
    _report_hardening(hardened, Emitter(fmt=run.log_format(host.environ), stream=sys.stdout))
    return run.run_pilot(host, may_exec=args.own_process)


def _report_hardening(hardened: Hardened, emitter: Emitter) -> None:
    for problem in hardened.problems:
        emitter.event(problem.level, problem.message, **problem.fields)


def cmd_health(args: argparse.Namespace) -> int:
    from ospool_ep.pilot import health
    from ospool_ep.pilot import statefile as state

    loaded = state.load(state.state_path(os.environ))
    if loaded.distrust:
        print(f"{loaded.distrust}: run health as the pilot's user")
        return int(ExitCode.NOT_HEALTHY)
    published = loaded.state
    verdict = health.readiness(published) if args.ready else health.liveness(published)
    print(verdict.message)
    return int(ExitCode.OK if verdict.healthy else ExitCode.NOT_HEALTHY)


def cmd_drain(args: argparse.Namespace) -> int:
    import signal

    from ospool_ep.pilot import procfs
    from ospool_ep.pilot import statefile as state

    loaded = state.load(state.state_path(os.environ))
    if loaded.distrust:
        print(f"ospool-ep drain: {loaded.distrust}; signalling nothing", file=sys.stderr)
        return int(ExitCode.NOT_HEALTHY)
    published = loaded.state
    if published is None or not procfs.alive(published.supervisor_pid):
        print("ospool-ep drain: no pilot is running here", file=sys.stderr)
        return int(ExitCode.NOT_HEALTHY)
    signo = signal.SIGQUIT if args.fast else signal.SIGTERM
    try:
        problem = _signal_supervisor(loaded, published.supervisor_pid, signo)
    except PermissionError:
        print("ospool-ep drain: run it as the pilot's user", file=sys.stderr)
        return int(ExitCode.NOT_HEALTHY)
    if problem:
        print(f"ospool-ep drain: {problem}; signalling nothing", file=sys.stderr)
        return int(ExitCode.NOT_HEALTHY)
    if not _acknowledged(state.state_path(os.environ), published.supervisor_pid):
        print(
            f"ospool-ep drain: pilot {published.name} has not acknowledged the request in"
            f" {DRAIN_ACK_SECONDS:g} s; its log says why",
            file=sys.stderr,
        )
        return int(ExitCode.NOT_HEALTHY)
    how = "fast shutdown: running jobs are evicted" if args.fast else "draining"
    print(f"pilot {published.name}: {how}")
    return int(ExitCode.OK)


DRAIN_ACK_SECONDS = 10.0
"""The supervisor publishes its state at least once a second (its loop)."""
STOPPING_STATES = frozenset({"draining", "stopping", "stopped"})


def _acknowledged(path: Path, pid: int) -> bool:
    """Wait until the supervisor says it is stopping, or is gone.

    Waiting also keeps this process alive while the supervisor traces the
    signal's sender: it acts only on senders outside its own tree (SPEC 7.5).
    """
    import time

    from ospool_ep.pilot import procfs
    from ospool_ep.pilot import statefile as state

    deadline = time.monotonic() + DRAIN_ACK_SECONDS
    while time.monotonic() < deadline:
        now = state.load(path).state
        if not procfs.alive(pid) or (now is not None and now.state in STOPPING_STATES):
            return True
        time.sleep(0.05)
    return False


def _signal_supervisor(loaded: state.Loaded, pid: int, signo: int) -> str | None:
    """Send ``signo`` to supervisor ``pid`` (of ``loaded``) once it is verified; else why not.

    Through a pidfd taken before the checks: should the pid die and be reused
    between them, the signal goes to the dead process (ESRCH), never the new one.
    """
    import signal

    from ospool_ep.pilot import statefile as state

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return f"the supervisor (pid {pid}) is gone"
    except OSError:  # a kernel before 5.3: the checks, then kill(), race-free enough
        pidfd = -1
    try:
        problem = state.verify_supervisor(loaded)
        if problem:
            return problem
        if pidfd < 0:
            os.kill(pid, signo)
        else:
            signal.pidfd_send_signal(pidfd, signo)
    except ProcessLookupError:
        return f"the supervisor (pid {pid}) is gone"
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return None


def cmd_launch(args: argparse.Namespace) -> int:
    from ospool_ep.host import launch

    return launch.launch(
        config_path=args.config, engine=args.engine, print_only=args.print, stop=args.stop
    )


def htcondor_version() -> str:
    """Asked in a subprocess: importing the bindings exits the process on a bad config."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", "import htcondor2; print(htcondor2.version())"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = result.stdout.strip()
    return text if result.returncode == 0 and text else "unknown (bindings not importable)"


def cmd_version(args: argparse.Namespace) -> int:
    del args
    print(f"ospool-ep {__version__}")
    print(f"HTCondor {htcondor_version()}")
    print(f"Python {platform.python_version()}")
    return int(ExitCode.OK)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ospool-ep",
        description="OSPool backfill Execution Point: validate, render and run an HTCondor pilot.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="validate, then run and supervise the pilot (PID 1)")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check", help="run every validation and detection; start nothing")
    check.add_argument("--json", action="store_true", help="machine-readable report")
    check.add_argument(
        "--osdf",
        action="store_true",
        help="also fetch the OSDF test object through the plugin, as the pilot does (seconds)",
    )
    check.set_defaults(handler=cmd_check)

    render = commands.add_parser("render", help="write the HTCondor configuration run would use")
    render.add_argument("--output", "-o", type=Path, required=True, metavar="DIR")
    render.set_defaults(handler=cmd_render)

    health = commands.add_parser("health", help="exit 0 if the running pilot is alive")
    health.add_argument(
        "--ready", action="store_true", help="exit 0 only if its slot is in the collector"
    )
    health.set_defaults(handler=cmd_health)

    drain = commands.add_parser("drain", help="ask the running pilot to stop taking jobs and exit")
    drain.add_argument("--fast", action="store_true", help="evict running jobs now")
    drain.set_defaults(handler=cmd_drain)

    # The same options as the RPM's host-only entry point (launch.add_arguments;
    # tests/unit/host/test_host_command.py keeps them equal), without importing it here.
    launch = commands.add_parser(
        "launch", help="host: start the pilot container from a config file"
    )
    launch.add_argument("--config", default="/etc/osg/ospool-ep.cfg", metavar="FILE")
    launch.add_argument("--engine", choices=("docker", "podman"))
    launch.add_argument("--print", action="store_true", help="print the command, do not run it")
    launch.add_argument("--stop", action="store_true", help="drain and remove the container")
    launch.set_defaults(handler=cmd_launch)

    version = commands.add_parser("version", help="print ospool-ep, HTCondor and Python versions")
    version.set_defaults(handler=cmd_version)
    return parser


SUBCOMMANDS = ("run", "check", "render", "health", "drain", "launch", "version")
"""build_parser's subcommands (tests/unit/test_cli_dispatch.py keeps the two equal)."""
NOT_FOUND = 127
NOT_EXECUTABLE = 126
"""The shell's codes for a command that cannot be run (POSIX, "Exit Status for Commands")."""


def foreign_command(argv: Sequence[str]) -> str | None:
    """The program ``argv`` names when it is not one of ours: a path, or a name on PATH.

    ``None`` for a subcommand, an option (``--help``), or a word that names no
    program (argparse then says it is not a command, with a did-you-mean).
    """
    if not argv or argv[0] in SUBCOMMANDS or argv[0].startswith("-"):
        return None
    if "/" in argv[0]:
        return argv[0]
    return shutil.which(argv[0])


def run_foreign(program: str, argv: Sequence[str], *, own_process: bool) -> int:
    """Run ``argv`` as any image would (SPEC 3): exec it in our place, argv unchanged.

    Called with an argv (tests, other tools), this is someone else's process:
    the command runs as a child and its exit status is returned instead.
    """
    try:
        if own_process:
            sys.stdout.flush()
            os.execv(program, list(argv))  # noqa: S606 - the command the user asked for
        return subprocess.run([program, *argv[1:]], check=False).returncode
    except FileNotFoundError:
        print(f"ospool-ep: {argv[0]}: no such file", file=sys.stderr)
        return NOT_FOUND
    except OSError as error:
        print(f"ospool-ep: {argv[0]}: cannot run it: {error.strerror}", file=sys.stderr)
        return NOT_EXECUTABLE


def unknown_command(parser: argparse.ArgumentParser, word: str) -> int:
    """Neither a subcommand nor a program: usage error (exit 2), with a did-you-mean."""
    import difflib

    close = difflib.get_close_matches(word, SUBCOMMANDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    parser.print_usage(sys.stderr)
    print(
        f"ospool-ep: error: '{word}' is neither a command ({', '.join(SUBCOMMANDS)})"
        f" nor a program on PATH{hint}",
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    program = foreign_command(words)
    if program is not None:
        return run_foreign(program, words, own_process=argv is None)
    if words and not words[0].startswith("-") and words[0] not in SUBCOMMANDS:
        return unknown_command(parser, words[0])
    args = parser.parse_args(words)
    # Only a process started for this command may exec itself again (cmd_run):
    # called with an argv (tests, other tools) it is someone else's process.
    args.own_process = argv is None
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug, not a user error: say so, with the details to report
        print("ospool-ep: internal error (please report this):", file=sys.stderr)
        traceback.print_exc()
        return int(ExitCode.SOFTWARE)


if __name__ == "__main__":
    sys.exit(main())
