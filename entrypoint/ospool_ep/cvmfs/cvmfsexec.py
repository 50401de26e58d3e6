"""cvmfsexec: the distribution in the image, its ``default.local``, its command lines, and
finding ``condor_master`` inside its PID namespace (SPEC 7.1, 9.4).

cvmfsexec (github.com/cvmfs/cvmfsexec) mounts repos in new user, mount and PID
namespaces and runs a command there. Its inner shell stays PID 1 of that
namespace and ignores SIGTERM (``trap "" 1 2 3 15``), and its outer shell dies
of it without passing it on: signals for the master must go to the master
itself, found below the cvmfsexec process in ``/proc`` (:class:`MasterFinder`).

The image carries a read-only distribution (``cvmfsexec`` plus ``dist/``, built
by ``cvmfsexec/build-dist.sh`` with ``--build-arg CVMFSEXEC_VERSION``). cvmfsexec
writes next to itself (mount points, cache, logs), so each pilot runs a copy in
its own directory (:func:`prepare`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospool_ep.pilot import procfs

if TYPE_CHECKING:
    from ospool_ep.inputs.settings import Settings

DISTRIBUTION = Path("/usr/lib/ospool-ep/cvmfsexec")
"""Where the image build puts the distribution (absent in the default build)."""
SITE_DEFAULT_LOCAL = Path("/cvmfsexec/default.local")
"""A site's extra client configuration, mounted (SPEC 4.2; upstream's path)."""
CACHE_MOUNT = Path("/cvmfs-cache")
LOG_MOUNT = Path("/cvmfs-logs")
PREFLIGHT_TIMEOUT_SECONDS = 300
"""Mounting the config repo and the asked-for repos over the network, then probing them."""
DEFAULT_PROXY = "auto;DIRECT"
"""cvmfs needs CVMFS_HTTP_PROXY to mount; ``auto`` asks WPAD (FACTS, cvmfsexec)."""
LOG_LINES = 40


def distribution_problem(distribution: Path) -> str | None:
    """Why ``distribution`` cannot be used, or None. Cheap: two stats of image files."""
    script = distribution / "cvmfsexec"
    if not script.is_file():
        return f"this image has no cvmfsexec distribution ({script} is missing)"
    if not (distribution / "dist").is_dir():
        return f"the cvmfsexec distribution in {distribution} has no dist/ (makedist not run)"
    return None


# -- default.local -------------------------------------------------------------------------


def _assignments(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.isidentifier():
            found[name] = value
    return found


def default_local(
    settings: Settings,
    *,
    site_text: str | None,
    cache_dir: str | None,
    log_dir: str,
) -> str:
    """The client configuration: the site's file, then the environment (which wins).

    Values from the environment are validated plain words (settings.py), quoted
    for the shell that sources this file.
    """
    ours: dict[str, str] = {}
    site = _assignments(site_text or "")
    if settings.cvmfs_http_proxy:
        ours["CVMFS_HTTP_PROXY"] = settings.cvmfs_http_proxy
    elif "CVMFS_HTTP_PROXY" not in site:
        ours["CVMFS_HTTP_PROXY"] = DEFAULT_PROXY
    if settings.cvmfs_quota_limit_mb is not None:
        ours["CVMFS_QUOTA_LIMIT"] = str(settings.cvmfs_quota_limit_mb)
    if settings.cvmfsexec_debug:
        ours["CVMFS_DEBUGLOG"] = f"{log_dir}/debuglog"
    if cache_dir and "CVMFS_CACHE_BASE" not in site:
        ours["CVMFS_CACHE_BASE"] = cache_dir
    lines = ["# Written by ospool-ep at pilot start (SPEC 9.4)."]
    if site_text:
        lines += [f"# From {SITE_DEFAULT_LOCAL}:", *site_text.rstrip("\n").splitlines()]
    if ours:
        lines.append("# From the pilot's environment (wins over the lines above):")
        lines += [f'{name}="{value}"' for name, value in ours.items()]
    return "\n".join(lines) + "\n"


# -- the per-pilot copy --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Prepared:
    directory: Path
    """The pilot's copy: ``directory/cvmfsexec`` is what runs."""
    log_dir: Path


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def prepare(
    settings: Settings,
    *,
    distribution: Path,
    pilot_dir: Path,
    site_file: Path = SITE_DEFAULT_LOCAL,
    cache_mount: Path = CACHE_MOUNT,
    log_mount: Path = LOG_MOUNT,
) -> Prepared:
    """Copy the distribution into the pilot's directory and write its default.local."""
    directory = pilot_dir / "cvmfsexec"
    shutil.copytree(distribution, directory, symlinks=True)
    log_dir = directory / "log"
    if _writable_dir(log_mount):
        # cvmfsexec logs to <its dir>/log/<repo>.log: keep them where the site looks.
        shutil.rmtree(log_dir, ignore_errors=True)
        if log_dir.is_symlink():
            log_dir.unlink()
        log_dir.symlink_to(log_mount)
    else:
        log_dir.mkdir(exist_ok=True)
    try:
        site_text = site_file.read_text(errors="replace") if site_file.is_file() else None
    except OSError:
        site_text = None
    text = default_local(
        settings,
        site_text=site_text,
        cache_dir=str(cache_mount) if _writable_dir(cache_mount) else None,
        log_dir=str(log_mount if log_dir.is_symlink() else log_dir),
    )
    local = directory / "dist" / "etc" / "cvmfs" / "default.local"
    local.parent.mkdir(parents=True, exist_ok=True)
    if local.is_symlink() or local.exists():
        local.unlink()
    local.write_text(text)
    return Prepared(directory=directory, log_dir=log_dir)


def command(directory: Path, repos: Sequence[str], inner: Sequence[str]) -> list[str]:
    """``cvmfsexec -N REPO... -- COMMAND``: -N, no nested mounts from inside (jobs run
    there and must not ask the fakeroot process for anything); the config repo is
    added by cvmfsexec itself."""
    return [str(directory / "cvmfsexec"), "-N", *repos, "--", *inner]


def log_lines(log_dir: Path, *, limit: int = LOG_LINES) -> list[str]:
    """The tail of each of cvmfsexec's log files, each line prefixed with its file name."""
    lines: list[str] = []
    try:
        files = sorted(p for p in log_dir.iterdir() if p.is_file())
    except OSError:
        return lines
    for path in files:
        try:
            tail = path.read_text(errors="replace").splitlines()[-limit:]
        except OSError:
            continue
        lines += [f"{path.name}: {line}" for line in tail if line.strip()]
    return lines


@dataclass(frozen=True, kw_only=True)
class Preflight:
    """What a start-up run of the probe under cvmfsexec said."""

    document: dict[str, Any] | None
    """The probe's JSON (repos, apptainer) when cvmfsexec mounted and ran it."""
    problem: str = ""
    output: tuple[str, ...] = ()
    """cvmfsexec's own output and log lines, shown when it failed."""


def preflight(
    prepared: Prepared,
    *,
    repos: Sequence[str],
    probe: Sequence[str],
    environ: Mapping[str, str],
    timeout: float = PREFLIGHT_TIMEOUT_SECONDS,
) -> Preflight:
    """Mount the repos with cvmfsexec and run ``probe`` inside (as upstream's smoke test
    does): a failure here is the pilot's exit 69 with cvmfsexec's own words."""
    argv = command(prepared.directory, repos, probe)
    try:
        result = subprocess.run(
            argv,
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        said = _text(expired.stdout) + _text(expired.stderr)
        return Preflight(
            document=None,
            problem=f"cvmfsexec did not mount and answer within {timeout:g} s",
            output=_shown(said, prepared.log_dir),
        )
    except OSError as error:
        return Preflight(document=None, problem=f"cannot run cvmfsexec: {error}")
    lines = result.stdout.strip().splitlines()
    if result.returncode == 0 and lines:
        try:
            return Preflight(document=json.loads(lines[-1]))
        except ValueError:
            pass
    return Preflight(
        document=None,
        problem=f"cvmfsexec failed (exit {result.returncode}) mounting {' '.join(repos)}",
        output=_shown(result.stdout + result.stderr, prepared.log_dir),
    )


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _shown(said: str, log_dir: Path) -> tuple[str, ...]:
    own = [f"cvmfsexec: {line}" for line in said.splitlines() if line.strip()][-LOG_LINES:]
    return (*own, *log_lines(log_dir))


# -- the master inside cvmfsexec's PID namespace -------------------------------------------


def nspid(pid: int, *, proc: Path = procfs.PROC) -> tuple[int, ...]:
    """``NSpid`` of ``/proc/<pid>/status``: the pid in this namespace, then in each nested one."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return tuple(int(word) for word in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


class MasterFinder:
    """Finds ``condor_master`` below the cvmfsexec process, as a pid of *our* namespace.

    The supervisor calls this for every signal and state update: a found pid is
    re-checked with one read of its ``stat`` and the tree is walked again only
    when it is gone.
    """

    def __init__(self, *, name: str = "condor_master", proc: Path = procfs.PROC) -> None:
        self.name = name
        self.proc = proc
        self.found: int | None = None
        self.inner_pid: int | None = None
        """Its pid inside cvmfsexec's PID namespace (from NSpid), for messages."""
        self.ever_found = False

    def _is_master(self, pid: int) -> bool:
        process = procfs.read(pid, proc=self.proc)
        return process is not None and process.name == self.name and process.state != "Z"

    def __call__(self, launcher: int) -> int | None:
        if self.found is not None and self._is_master(self.found):
            return self.found
        self.found = None
        below = procfs.descendants(launcher, proc=self.proc)
        masters = [pid for pid in below if self._is_master(pid)]
        # The master forks children that keep its name for a moment: the one whose
        # parent is no master is the master.
        for pid in masters:
            process = procfs.read(pid, proc=self.proc)
            if process is not None and process.ppid not in masters:
                self.found = pid
                ids = nspid(pid, proc=self.proc)
                self.inner_pid = ids[-1] if len(ids) > 1 else None
                self.ever_found = True
                break
        return self.found
