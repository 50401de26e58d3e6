"""CVMFS probe: the health of repositories, each checked in a subprocess, and the startd cron job.

A broken FUSE mount hangs ``stat`` and ``readdir`` (SPEC 9.2), so no check of a
repository ever runs in the process that asked for it: :func:`probe_many`
starts one ``python3 -m ospool_ep.cvmfs.probe repo NAME`` per repository, all
at once, and gives up on those that have not answered by the deadline.

Run as a program (stdlib only: it starts every few minutes)::

    python3 -I -m ospool_ep.cvmfs.probe repo --root /cvmfs NAME
        one JSON line: what :func:`check_repo` found
    python3 -I -m ospool_ep.cvmfs.probe cron --root /cvmfs --timeout S --require A --probe B
            --publish C
        the startd cron job (SPEC 9.3): HTCondor's STARTD_CRON output, one
        ``Attribute = value`` line each (HTCondor manual, "Startd Cron"); ``--publish``
        repos (the rest of OSG's list) are only published, never reported as problems
    python3 -I -m ospool_ep.cvmfs.probe startup --root /cvmfs --timeout S [--apptainer P] NAME...
        one JSON document: every repo and the Apptainer test, for the
        supervisor's start-up check inside cvmfsexec's namespace
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

PROBE_TIMEOUT_SECONDS = 10.0
"""A repo that has not answered by then counts as broken (a healthy one answers in ms)."""
MOUNTINFO = Path("/proc/self/mountinfo")
_PYTHON_FLAGS = ("-I",)
"""Isolated: no PYTHONPATH or user site from the daemons' environment."""


@dataclass(frozen=True, kw_only=True)
class RepoHealth:
    """What one probe found; ``None`` means unknown (e.g. no xattrs on a plain bind)."""

    repo: str
    healthy: bool
    mount: str | None = None
    """``fuse`` (a FUSE mount entry), ``mount`` (another mount), ``directory`` (part of a bind)."""
    fqrn: str | None = None
    revision: int | None = None
    nioerr: int | None = None
    """cvmfs's I/O error counter (``user.nioerr``): reported, not judged."""
    last_ioerr: int | None = None
    """When cvmfs last had an I/O error (``user.timestamp_last_ioerr``, epoch; 0: never)."""
    problem: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RepoHealth:
        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        fqrn = data.get("fqrn")
        return cls(
            repo=str(data["repo"]),
            healthy=data.get("healthy") is True,
            mount=str(data["mount"]) if data.get("mount") else None,
            fqrn=str(fqrn) if isinstance(fqrn, str) else None,
            revision=number("revision"),
            nioerr=number("nioerr"),
            last_ioerr=number("last_ioerr"),
            problem=str(data.get("problem") or ""),
        )

    def summary(self) -> str:
        if not self.healthy:
            return self.problem
        facts = [{"fuse": "FUSE mount", "mount": "mounted"}.get(self.mount or "", "directory")]
        if self.revision is not None:
            facts.append(f"revision {self.revision}")
        if self.nioerr:
            facts.append(f"{self.nioerr} I/O errors so far")
        if self.fqrn is None:
            facts.append("no cvmfs xattrs (unknown revision)")
        return ", ".join(facts)


def attribute_suffix(repo: str) -> str:
    """``oasis.opensciencegrid.org`` -> ``oasis_opensciencegrid_org`` (SPEC 9.3)."""
    return re.sub(r"[^A-Za-z0-9]", "_", repo)


def has_attribute(repo: str) -> str:
    return f"HAS_CVMFS_{attribute_suffix(repo)}"


def revision_attribute(repo: str) -> str:
    return f"CVMFS_{attribute_suffix(repo)}_REVISION"


def nioerr_attribute(repo: str) -> str:
    return f"CVMFS_{attribute_suffix(repo)}_NIOERR"


def last_ioerr_attribute(repo: str) -> str:
    """Seconds since the repo's last I/O error, -1 for none (osg-flock's advertise-base)."""
    return f"CVMFS_{attribute_suffix(repo)}_LAST_IOERR"


def seconds_since(timestamp: int, *, now: float) -> int:
    return -1 if timestamp <= 0 else max(0, int(now) - timestamp)


# -- one repository, inside the probing subprocess ------------------------------------------


def mount_kind(mountinfo: str, path: str) -> str | None:
    """The kind of mount at exactly ``path`` (the last one stacked there wins), or None.

    mountinfo(5): field 5 is the mount point (octal escapes for blanks), and the
    filesystem type follows the `` - `` separator.
    """
    kind = None
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[4])
        if mount_point == path:
            fstype = rest.split()[0]
            kind = "fuse" if fstype == "fuse" or fstype.startswith("fuse.") else "mount"
    return kind


def _xattr(path: str, name: str) -> str | None:
    try:
        return os.getxattr(path, name).decode(errors="replace").strip("\0 \n")
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.E2BIG):
            return None
        raise


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def check_repo(root: str, repo: str, *, mountinfo: Path = MOUNTINFO) -> RepoHealth:
    """Mounted (or a directory of a bind), cvmfs xattrs when there are any, not empty.

    Can hang on a broken FUSE mount: only ever call it in a process of its own.
    """
    path = f"{root.rstrip('/')}/{repo}"
    try:
        # The listing first: it also triggers an autofs mount of host CVMFS.
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
        mount = mount_kind(mountinfo.read_text(errors="replace"), path)
        fqrn = _xattr(path, "user.fqrn")
        revision = _integer(_xattr(path, "user.revision"))
        nioerr = _integer(_xattr(path, "user.nioerr"))
        last_ioerr = _integer(_xattr(path, "user.timestamp_last_ioerr"))
    except FileNotFoundError:
        return RepoHealth(repo=repo, healthy=False, problem=f"{path} does not exist")
    except NotADirectoryError:
        return RepoHealth(repo=repo, healthy=False, problem=f"{path} is not a directory")
    except OSError as error:
        reason = error.strerror or str(error)
        return RepoHealth(repo=repo, healthy=False, problem=f"{path}: {reason}")
    found = RepoHealth(
        repo=repo,
        healthy=True,
        mount=mount or "directory",
        fqrn=fqrn,
        revision=revision,
        nioerr=nioerr,
        last_ioerr=last_ioerr,
    )
    if fqrn is not None and fqrn != repo:
        return replace(found, healthy=False, problem=f"{path} serves {fqrn}")
    if empty:
        return replace(found, healthy=False, problem=f"{path} is empty")
    return found


# -- many repositories, each in a subprocess -------------------------------------------------


def _interpreter() -> str:
    """This interpreter. Run by the startd (argv[0] is the cron job's name, no PATH),
    Python cannot tell and leaves sys.executable empty: the kernel knows."""
    return sys.executable or os.path.realpath("/proc/self/exe")


def probe_command(root: str, *repos: str) -> list[str]:
    return [
        _interpreter(),
        *_PYTHON_FLAGS,
        "-m",
        "ospool_ep.cvmfs.probe",
        "repo",
        "--root",
        root,
        *repos,
    ]


def probe_many(
    repos: Sequence[str],
    *,
    root: str,
    timeout: float = PROBE_TIMEOUT_SECONDS,
    batched: Sequence[str] = (),
) -> list[RepoHealth]:
    """Probe every repo at once, each in its own process, except the ``batched`` ones,
    which share one process and are probed one after the other (OSG's long list of
    repos only published: 30 interpreters every cron period would cost more than the
    probe is worth; should one of them hang, the rest of the batch count as not
    answering). One result per repo of ``repos`` and then ``batched``, in order."""
    groups: list[tuple[str, ...]] = [(repo,) for repo in repos]
    if batched:
        groups.append(tuple(batched))
    running: list[tuple[tuple[str, ...], subprocess.Popen[str] | None, str]] = []
    for group in groups:
        try:
            process = subprocess.Popen(
                probe_command(root, *group),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            running.append((group, process, ""))
        except OSError as error:
            running.append((group, None, f"cannot start the probe: {error}"))
    deadline = time.monotonic() + timeout
    results: list[RepoHealth] = []
    for group, started, failure in running:
        if started is None:
            results += [RepoHealth(repo=repo, healthy=False, problem=failure) for repo in group]
            continue
        results += _collect(group, started, deadline=deadline, timeout=timeout)
    return results


def _collect(
    repos: tuple[str, ...], process: subprocess.Popen[str], *, deadline: float, timeout: float
) -> list[RepoHealth]:
    """One result per repo of the process: its JSON line, else why there is none."""
    try:
        out, err = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
        lost = f"probe failed ({process.returncode}): "
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = "", ""
        # A process stuck in a dead FUSE mount may take a moment to die; do not
        # wait for it longer than that (PID 1 reaps it later).
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, err = process.communicate(timeout=1)
        lost = f"no answer within {timeout:g} s (hung mount?)"
    found: dict[str, RepoHealth] = {}
    for line in (out or "").splitlines():
        try:
            health = RepoHealth.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        found[health.repo] = health
    if lost.startswith("probe failed"):
        lost += " ".join((err or out or "").split())[-200:]
    return [found.get(repo) or RepoHealth(repo=repo, healthy=False, problem=lost) for repo in repos]


# -- the startd cron job -------------------------------------------------------------------


def _plain(text: str) -> str:
    """Printable text without quotes, backslashes or ``$``, at most 500 characters."""
    return "".join(ch for ch in text if ch.isprintable() and ch not in '"\\$')[:500]


def problems_summary(results: Iterable[RepoHealth]) -> str:
    """OSPOOL_EP_CVMFS_PROBLEMS' text: each unhealthy repository with its problem.

    Rendered at start from the start-up probe too, so the first ad sent to the
    collector has it: the cron job's value reaches the collector only with a later
    update (UPDATE_INTERVAL, see 80-cvmfs.conf.j2).
    """
    return _plain("; ".join(f"{r.repo}: {r.problem}" for r in results if not r.healthy))


def cron_ad(
    results: Iterable[RepoHealth],
    *,
    required: Iterable[str],
    published: Iterable[str] = (),
    now: float | None = None,
) -> list[str]:
    """STARTD_CRON output lines: per repo HAS_CVMFS_*, revision, error count and the
    age of the last error where known; OSG_NODE_VALIDATED, false as soon as one
    required repo is not healthy. ``published`` repos are not counted as problems."""
    lines = []
    now = time.time() if now is None else now
    by_repo = {result.repo: result for result in results}
    for repo, result in by_repo.items():
        lines.append(f"{has_attribute(repo)} = {'true' if result.healthy else 'false'}")
        if result.revision is not None:
            lines.append(f"{revision_attribute(repo)} = {result.revision}")
        if result.nioerr is not None:
            lines.append(f"{nioerr_attribute(repo)} = {result.nioerr}")
        if result.last_ioerr is not None:
            age = seconds_since(result.last_ioerr, now=now)
            lines.append(f"{last_ioerr_attribute(repo)} = {age}")
    required = list(required)
    validated = all(repo in by_repo and by_repo[repo].healthy for repo in required)
    lines.append(f"OSG_NODE_VALIDATED = {'true' if validated else 'false'}")
    quiet = set(published)
    reported = [result for repo, result in by_repo.items() if repo not in quiet]
    lines.append(f'OSPOOL_EP_CVMFS_PROBLEMS = "{problems_summary(reported)}"')
    return lines


# -- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m ospool_ep.cvmfs.probe")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("repo", help="probe repositories, one JSON line each, in turn")
    one.add_argument("--root", default="/cvmfs")
    one.add_argument("repos", nargs="+")
    cron = commands.add_parser("cron", help="the startd cron job: STARTD_CRON output")
    cron.add_argument("--root", default="/cvmfs")
    cron.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_SECONDS)
    cron.add_argument("--require", action="append", default=[], help="a repo the node needs")
    cron.add_argument("--probe", action="append", default=[], help="a repo only reported")
    cron.add_argument("--publish", action="append", default=[], help="a repo only published")
    startup = commands.add_parser("startup", help="start-up check, as JSON")
    startup.add_argument("--root", default="/cvmfs")
    startup.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_SECONDS)
    startup.add_argument("--apptainer", action="append", default=[], help="candidate binary")
    startup.add_argument("--no-pid", action="store_true", help="test without a PID namespace")
    startup.add_argument("repos", nargs="*")
    args = parser.parse_args(argv)

    if args.command == "repo":
        for repo in args.repos:
            print(json.dumps(asdict(check_repo(args.root, repo))), flush=True)
    elif args.command == "cron":
        repos = list(dict.fromkeys([*args.require, *args.probe]))
        published = [repo for repo in dict.fromkeys(args.publish) if repo not in repos]
        results = probe_many(repos, root=args.root, timeout=args.timeout, batched=published)
        print("\n".join(cron_ad(results, required=args.require, published=args.publish)))
    else:
        from ospool_ep.detect import apptainer  # noqa: PLC0415 - only this command needs it

        results = probe_many(args.repos, root=args.root, timeout=args.timeout)
        broken = [f"{args.root.rstrip('/')}/{r.repo}/" for r in results if not r.healthy]
        # Never touch a path in a repo that just failed: it may hang.
        usable = [b for b in args.apptainer if not b.startswith(tuple(broken))]
        tested = apptainer.find_working(usable, pid_namespace=not args.no_pid)
        document = {"repos": [asdict(r) for r in results], "apptainer": asdict(tested)}
        print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
