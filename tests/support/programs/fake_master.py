"""A stand-in for ``condor_master -f`` that reports every signal it gets (dumb-init's habit).

Each signal is appended to ``--log`` as ``<epoch seconds> <SIGNAME>``. How it
reacts is chosen on the command line, so one program plays every master the
supervisor tests need: one that stops on SIGTERM (at once or after a while),
one that ignores SIGTERM and/or SIGQUIT, one that exits on its own, one that
leaves orphans behind. ``--ready`` is written (atomically, holding our pid)
only once the signals are blocked, so a test never signals a master that
would still die of a default disposition.

Signals are taken synchronously (blocked, then ``sigtimedwait``): Python-level
handlers can nest and would log SIGHUP, SIGTERM sent back to back in either
order. The mask we inherited is written to ``--status-to`` before we block
anything, so the tests can still check it was clean.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPORTED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1)


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def spawn_orphan(lives: float, pid_file: Path) -> None:
    """Double fork: the grandchild outlives its parent and is adopted by our subreaper."""
    middle = os.fork()
    if middle == 0:
        grandchild = os.fork()
        if grandchild == 0:
            write_atomically(pid_file, f"{os.getpid()}\n")
            time.sleep(lives)
            os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True, help="signals received, one a line")
    parser.add_argument(
        "--ready", type=Path, required=True, help="our pid, once signals are blocked"
    )
    parser.add_argument("--on-term", choices=("exit", "ignore"), default="exit")
    parser.add_argument("--term-delay", type=float, default=0.0, help="seconds from TERM to exit")
    parser.add_argument("--on-quit", choices=("exit", "ignore"), default="exit")
    parser.add_argument("--exit-after", type=float, help="exit on our own after this many seconds")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--env-to", type=Path, help="write our environment here as JSON")
    parser.add_argument("--status-to", type=Path, help="copy /proc/self/status here at start")
    parser.add_argument("--orphan-lives", type=float, help="leave an orphan living this long")
    parser.add_argument("--child-lives", type=float, help="start a child living this long")
    parser.add_argument("--child-pid", type=Path, help="where the orphan or child writes its pid")
    parser.add_argument(
        "--starter-lives",
        type=float,
        help="run a child named condor_starter this long: the pilot is running a job",
    )
    parser.add_argument(
        "--detecting-starter-lives",
        type=float,
        help="run `condor_starter -classad` this long (the startd's capability probe: no job)",
    )
    args = parser.parse_args()

    if args.status_to:
        write_atomically(args.status_to, Path("/proc/self/status").read_text())
    if args.env_to:
        write_atomically(args.env_to, json.dumps(dict(os.environ)))
    if args.orphan_lives is not None:
        spawn_orphan(args.orphan_lives, args.child_pid)
    if args.child_lives is not None:
        child = subprocess.Popen(["/bin/sleep", str(args.child_lives)])
        write_atomically(args.child_pid, f"{child.pid}\n")
    if args.starter_lives is not None:
        # The supervisor tells a busy pilot from an idle one by a condor_starter below
        # the master; /proc's comm is the executable's file name.
        starter = args.log.parent / "condor_starter"
        starter.unlink(missing_ok=True)
        starter.symlink_to("/bin/sleep")
        subprocess.Popen([str(starter), str(args.starter_lives)])
    if args.detecting_starter_lives is not None:
        # /bin/sleep takes no -classad: a shell named condor_starter sleeps instead.
        probe = args.log.parent / "condor_starter"
        probe.unlink(missing_ok=True)
        probe.symlink_to("/bin/sh")
        subprocess.Popen([str(probe), "-c", f"sleep {args.detecting_starter_lives}", "-classad"])
    signal.pthread_sigmask(signal.SIG_BLOCK, REPORTED)
    args.log.touch()
    write_atomically(args.ready, f"{os.getpid()}\n")

    exit_at = None if args.exit_after is None else time.monotonic() + args.exit_after
    while exit_at is None or time.monotonic() < exit_at:
        timeout = 1.0 if exit_at is None else max(0.0, exit_at - time.monotonic())
        info = signal.sigtimedwait(REPORTED, timeout)
        if info is None:
            continue
        with args.log.open("a") as log:
            log.write(f"{time.time():.6f} {signal.Signals(info.si_signo).name}\n")
        now = time.monotonic()
        if info.si_signo == signal.SIGTERM and args.on_term == "exit":
            exit_at = min(exit_at or float("inf"), now + args.term_delay)
        elif info.si_signo == signal.SIGQUIT and args.on_quit == "exit":
            exit_at = now
    return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
