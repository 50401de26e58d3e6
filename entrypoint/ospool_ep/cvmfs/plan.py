"""CVMFS: how the pilot gets CVMFS (SPEC 9.1), the repos it checks (9.2), what it publishes (9.3).

:func:`choose_mode` is pure; :func:`plan_cvmfs` is the pipeline stage: it
probes the host's ``/cvmfs`` (each repo in a subprocess, see
:mod:`ospool_ep.cvmfs.probe`), reports one ``check`` line per decision and per
repo, and returns the frozen :class:`CvmfsPlan` the templates render from:
``HAS_CVMFS_<repo>`` as found at start, and the startd cron job that keeps
re-checking them (a repo healthy at start that goes bad makes
``OSG_NODE_VALIDATED`` false, and so START, without touching running jobs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ospool_ep.cvmfs import cvmfsexec
from ospool_ep.cvmfs.probe import MOUNTINFO, RepoHealth, check_repo, mount_kind, probe_many
from ospool_ep.findings import Findings, Kind
from ospool_ep.inputs.settings import Settings

CONFIG_REPO = "config-osg.opensciencegrid.org"
OSG_REPOS = (CONFIG_REPO, "oasis.opensciencegrid.org", "singularity.opensciencegrid.org")
"""Probed in every mode that has CVMFS, with the repos of ``CVMFSEXEC_REPOS``."""

UPSTREAM_REPOS = (
    "ams.cern.ch",
    "atlas.cern.ch",
    "belle.cern.ch",
    "clicdp.cern.ch",
    "cms.cern.ch",
    "ara.opensciencegrid.org",
    "connect.opensciencegrid.org",
    "eic.opensciencegrid.org",
    "gluex.osgstorage.org",
    "gwosc.osgstorage.org",
    "icecube.opensciencegrid.org",
    "icecube.osgstorage.org",
    "larsoft-ib.opensciencegrid.org",
    "larsoft.opensciencegrid.org",
    "muoncollider.cern.ch",
    "nexo.opensciencegrid.org",
    "oasis.opensciencegrid.org",
    "public-uc.osgstorage.org",
    "rnog.opensciencegrid.org",
    "sft.cern.ch",
    "singularity.opensciencegrid.org",
    "snoplus.egi.eu",
    "software.igwn.org",
    "sphenix.opensciencegrid.org",
    "spt.opensciencegrid.org",
    "stash.osgstorage.org",
    "sw.hsf.org",
    "sw.lsst.eu",
    "unpacked.cern.ch",
    "veritas.opensciencegrid.org",
    "xenon.opensciencegrid.org",
)
"""The repositories OSG's pilot publishes HAS_CVMFS_* for (osg-flock's advertise-base):
those not probed above are probed and published too, but only jobs that need one
depend on it: none of them makes the node unvalidated or is reported as a problem."""

PROBE_MODULE = ("-I", "-m", "ospool_ep.cvmfs.probe")
"""How the interpreter runs the probe: isolated from the daemons' PYTHON* variables."""

Mode = Literal["bind", "cvmfsexec", "none"]


@dataclass(frozen=True, kw_only=True)
class ModeChoice:
    mode: Mode
    reason: str
    problem: str = ""
    """Non-empty: the asked-for mode cannot work here (an environment FAIL, exit 69)."""
    fix: str = ""


@dataclass(frozen=True, kw_only=True)
class CvmfsPlan:
    """How CVMFS is provided and what was found at start; the templates render from this."""

    mode: Mode
    reason: str
    root: str = "/cvmfs"
    repos: tuple[str, ...] = ()
    """Probed at start and by the cron job, in order."""
    health: tuple[RepoHealth, ...] = ()
    """At start (for cvmfsexec: from inside its namespace, filled in by ``run``)."""
    published: tuple[str, ...] = ()
    """The rest of OSG's list (:data:`UPSTREAM_REPOS`): probed and published only."""
    published_health: tuple[RepoHealth, ...] = ()
    """At start, with host CVMFS; for cvmfsexec the cron job's first run finds them."""
    check_seconds: int = 240
    python: str = "/usr/bin/python3"
    """Interpreter for the cron job (the one running the supervisor)."""

    @property
    def required(self) -> tuple[str, ...]:
        """Repos healthy at start: one of these going bad means the node is not validated."""
        return tuple(h.repo for h in self.health if h.healthy)

    @property
    def node_validated(self) -> bool:
        return all(h.healthy for h in self.health if h.repo in self.required)

    @property
    def probe_timeout(self) -> float:
        """Each cron run must finish well inside its period (it is killed at the next)."""
        return max(1.0, min(10.0, self.check_seconds / 2))

    def startup_command(self, *, apptainer: Sequence[str], pid_namespace: bool) -> list[str]:
        """The start-up check run inside cvmfsexec: every repo, then Apptainer, as JSON."""
        words = [self.python, *PROBE_MODULE, "startup", "--root", self.root]
        words += ["--timeout", f"{self.probe_timeout:g}"]
        words += [] if pid_namespace else ["--no-pid"]
        for binary in apptainer:
            words += ["--apptainer", binary]
        return [*words, *self.repos]

    def cron_arguments(self) -> list[str]:
        words = [*PROBE_MODULE, "cron", "--root", self.root]
        words += ["--timeout", f"{self.probe_timeout:g}"]
        for repo in self.repos:
            words += ["--require" if repo in self.required else "--probe", repo]
        for repo in self.published:
            words += ["--publish", repo]
        return words

    def published_at_start(self) -> list[tuple[str, RepoHealth | None]]:
        """Each published repo with what the start-up probe found (None: not probed)."""
        found = {h.repo: h for h in self.published_health}
        return [(repo, found.get(repo)) for repo in self.published]

    def healthy_repos(self) -> dict[str, bool]:
        return {h.repo: h.healthy for h in self.health}


def repos_for(settings: Settings) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*OSG_REPOS, *settings.cvmfsexec_repos]))


def published_for(repos: Sequence[str]) -> tuple[str, ...]:
    return tuple(repo for repo in UPSTREAM_REPOS if repo not in repos)


_FIX_BIND = "bind-mount the host's CVMFS: -v /cvmfs:/cvmfs:shared"
_FIX_DIST = (
    "use an image built with --build-arg CVMFSEXEC_VERSION=<tag> (it carries cvmfsexec), "
    "or bind-mount the host's CVMFS at /cvmfs"
)


def choose_mode(
    *,
    setting: str,
    config_repo: RepoHealth | None,
    cvmfsexec_repos: Sequence[str],
    distribution_problem: str | None,
) -> ModeChoice:
    """SPEC 9.1: bind when the host's config repo is healthy, else cvmfsexec when
    repos are asked for, else none. ``config_repo`` is None when not probed."""
    host_ok = config_repo is not None and config_repo.healthy
    host_said = config_repo.problem if config_repo and not config_repo.healthy else "not checked"
    if setting == "none":
        return ModeChoice(mode="none", reason="CVMFS_MODE=none: running without CVMFS")
    if setting == "bind" or (setting == "auto" and host_ok):
        if host_ok:
            return ModeChoice(mode="bind", reason=f"host CVMFS at /cvmfs ({CONFIG_REPO} healthy)")
        return ModeChoice(
            mode="bind",
            reason="CVMFS_MODE=bind",
            problem=f"CVMFS_MODE=bind, but {host_said}",
            fix=_FIX_BIND,
        )
    if setting == "cvmfsexec" or cvmfsexec_repos:
        why = "CVMFS_MODE=cvmfsexec" if setting == "cvmfsexec" else "CVMFSEXEC_REPOS is set"
        reason = f"{why} and there is no healthy host CVMFS ({host_said})"
        if setting == "cvmfsexec":
            reason = why
        if distribution_problem:
            return ModeChoice(
                mode="cvmfsexec",
                reason=reason,
                problem=f"cvmfsexec asked for ({why}), but {distribution_problem}",
                fix=_FIX_DIST,
            )
        return ModeChoice(mode="cvmfsexec", reason=f"{reason}: cvmfsexec mounts the repos")
    return ModeChoice(
        mode="none",
        reason=f"no host CVMFS ({host_said}) and CVMFSEXEC_REPOS is empty: "
        "running without CVMFS, HAS_CVMFS_* are false",
    )


def nothing_mounted_under(root: str, *, mountinfo: Path = MOUNTINFO) -> bool:
    """True when no mount sits at or below ``root``: then nothing there can hang."""
    try:
        text = mountinfo.read_text(errors="replace")
    except OSError:
        return False
    prefix = root.rstrip("/") + "/"
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4 and (parts[4] == root or parts[4].startswith(prefix)):
            return False
    return mount_kind(text, root) is None


def probe(
    repos: Sequence[str],
    *,
    root: str,
    timeout: float,
    mountinfo: Path = MOUNTINFO,
    batched: Sequence[str] = (),
) -> list[RepoHealth]:
    """Each repo in a subprocess (the ``batched`` ones together in one); without any
    subprocess when ``root`` is not there at all and nothing is mounted under it (the
    common case of a pilot without CVMFS). Results of ``repos``, then ``batched``."""
    if nothing_mounted_under(root, mountinfo=mountinfo) and not os.path.lexists(root):
        return [check_repo(root, repo, mountinfo=mountinfo) for repo in (*repos, *batched)]
    return probe_many(repos, root=root, timeout=timeout, batched=batched)


def plan_cvmfs(
    settings: Settings,
    *,
    root: Path,
    distribution: Path,
    fuse_device: Path,
    python: str,
    findings: Findings,
    mountinfo: Path = MOUNTINFO,
) -> CvmfsPlan:
    """The pipeline stage: choose the mode, probe host CVMFS, one finding per decision."""
    repos = repos_for(settings)
    timeout = max(1.0, min(10.0, settings.cvmfs_check_seconds / 2))
    config_repo = None
    if settings.cvmfs_mode in ("auto", "bind"):
        (config_repo,) = probe([CONFIG_REPO], root=str(root), timeout=timeout, mountinfo=mountinfo)
    problem = cvmfsexec.distribution_problem(distribution)
    choice = choose_mode(
        setting=settings.cvmfs_mode,
        config_repo=config_repo,
        cvmfsexec_repos=settings.cvmfsexec_repos,
        distribution_problem=problem,
    )
    plan = CvmfsPlan(
        mode=choice.mode,
        reason=choice.reason,
        root=str(root),
        repos=repos,
        published=published_for(repos),
        check_seconds=settings.cvmfs_check_seconds,
        python=python,
    )
    if choice.problem:
        findings.fail("CVMFS", choice.problem, choice.fix, kind=Kind.ENVIRONMENT)
        return plan
    if choice.mode == "none":
        if settings.cvmfs_mode == "none":
            findings.passed("CVMFS", choice.reason)
        else:
            findings.warn("CVMFS", choice.reason, _FIX_BIND + ", or set CVMFSEXEC_REPOS")
        return plan
    findings.passed("CVMFS", f"{choice.mode}: {choice.reason}")
    if choice.mode == "cvmfsexec":
        if not fuse_device.exists():
            findings.fail(
                "CVMFS",
                f"cvmfsexec needs {fuse_device}, which is not there",
                "run the container with --device /dev/fuse (and the security options "
                "cvmfsexec documents: seccomp and systempaths unconfined)",
                kind=Kind.ENVIRONMENT,
            )
        findings.passed(
            "CVMFS repos",
            f"cvmfsexec mounts {', '.join(repos)}; they are checked inside it at start",
        )
        return plan
    # bind is chosen only with a healthy config repo: no need to probe it twice.
    rest = [repo for repo in repos if config_repo is None or repo != CONFIG_REPO]
    everything = probe(
        rest, root=str(root), timeout=timeout, mountinfo=mountinfo, batched=plan.published
    )
    health = [*([config_repo] if config_repo else []), *everything[: len(rest)]]
    published = tuple(everything[len(rest) :])
    report_health(health, findings)
    report_published(published, findings)
    return replace(plan, health=tuple(health), published_health=published)


def report_published(health: Sequence[RepoHealth], findings: Findings) -> None:
    """One line for the rest of OSG's list: which are there (jobs needing others do
    not match here; nothing else depends on them)."""
    if not health:
        return
    there = [h.repo for h in health if h.healthy]
    findings.passed(
        "CVMFS other repos",
        f"{len(there)} of {len(health)} of OSG's list available"
        + (f": {', '.join(there)}" if there else ""),
    )


def report_health(health: Sequence[RepoHealth], findings: Findings) -> None:
    for result in health:
        subject = f"CVMFS {result.repo}"
        if result.healthy:
            findings.passed(subject, result.summary())
        else:
            findings.warn(
                subject,
                f"not usable: {result.summary()}; jobs that need it will not match here",
                "check the CVMFS client (cvmfs_config probe) on the host",
            )
