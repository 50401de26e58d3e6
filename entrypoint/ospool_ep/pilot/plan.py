"""Plan: the start-up pipeline up to a renderable plan, shared by ``check``, ``render`` and ``run``.

inputs -> validated settings -> tokens and attributes -> detected resources ->
lifetime and START -> :class:`PilotPlan`. Each stage appends findings; the
pipeline goes as far as it can so one run reports every problem.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ospool_ep.cvmfs import cvmfsexec
from ospool_ep.cvmfs import plan as cvmfs
from ospool_ep.detect import apptainer, gpus, osrelease
from ospool_ep.detect.limits import detect_limits
from ospool_ep.detect.offer import decide_offer
from ospool_ep.findings import Findings, Kind
from ospool_ep.inputs import attributes, policy
from ospool_ep.inputs import tokens as tokens_mod
from ospool_ep.inputs.pools import resolve_pool
from ospool_ep.inputs.settings import Settings, input_files, load_settings
from ospool_ep.pilot import containment, osdf
from ospool_ep.pilot import workdir as pilotdir
from ospool_ep.pilot.render import PilotPlan

HTCONDOR_DAEMONS = ("condor_master", "condor_startd")
OSPOOL_HTCONDOR_SERIES = (25, 0)
"""The series the OSPool runs and the image's default build ships; older ones get a WARN."""
NEWER_BUILD = (
    "run the image built with HTCondor 25 and Apptainer (make image DEBIAN_SUITE=forky),"
    " or install HTCondor 25"
)
_CONDOR_VERSION = re.compile(r"\$CondorVersion: (\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, kw_only=True)
class Host:
    """Facts about where the pilot runs, gathered at the edge so the pipeline is testable."""

    environ: Mapping[str, str]
    now: float
    rng: random.Random
    hostname: str
    user: str
    root: Path = Path("/")
    """Where /sys and /proc are read from (a fixture tree in tests)."""
    cvmfs_root: Path = Path("/cvmfs")
    cvmfsexec_distribution: Path = cvmfsexec.DISTRIBUTION
    fuse_device: Path = Path("/dev/fuse")
    opencl_vendors: Path = gpus.OPENCL_VENDORS
    gpu_discovery: Path = gpus.DISCOVERY
    kernel: str = ""
    """The running kernel's release (``uname -r``), published as OSG_OS_KERNEL."""
    osdf_plugin: str | None = None
    """The OSDF plugin's path (:func:`ospool_ep.pilot.osdf.installed_plugin`)."""
    osdf_unavailable: str = "not looked for"

    @classmethod
    def current(cls) -> Host:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # an arbitrary --user uid without a passwd entry
            user = str(os.getuid())
        plugin, unavailable = osdf.installed_plugin()
        return cls(
            environ=dict(os.environ),
            now=time.time(),
            rng=random.Random(),  # noqa: S311 - spreading load, not security
            hostname=socket.gethostname(),
            user=user,
            kernel=os.uname().release,
            osdf_plugin=plugin,
            osdf_unavailable=unavailable,
        )


@dataclass(frozen=True, kw_only=True)
class Outcome:
    findings: Findings
    settings: Settings | None = None
    tokens: tuple[tokens_mod.Token, ...] = ()
    plan: PilotPlan | None = None


def check_htcondor_installed(findings: Findings) -> None:
    missing = [name for name in HTCONDOR_DAEMONS if not find_daemon(name)]
    if missing:
        findings.fail(
            "HTCondor",
            f"daemons not installed on this host: {', '.join(missing)}",
            "run the pilot from the ospool-ep image, or install HTCondor (condor package)",
            kind=Kind.ENVIRONMENT,
        )
        return
    tool = find_daemon("condor_version")
    version = parse_condor_version(version_output(tool)) if tool else None
    found = "condor_master and condor_startd found"
    if version is None:
        findings.passed("HTCondor", found, kind=Kind.ENVIRONMENT)
        return
    shown = ".".join(map(str, version))
    if version < OSPOOL_HTCONDOR_SERIES:
        findings.warn(
            "HTCondor",
            f"{shown}: older than {OSPOOL_HTCONDOR_SERIES[0]}, the series the OSPool runs",
            NEWER_BUILD,
            kind=Kind.ENVIRONMENT,
        )
    else:
        findings.passed("HTCondor", f"{shown}: {found}", kind=Kind.ENVIRONMENT)


def find_daemon(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def version_output(tool: str) -> str:
    """What HTCondor's ``condor_version`` prints (about 30 ms); '' if it fails. The tool,
    not ``condor_master -version``: asking a daemon risks starting one that ignores it."""
    try:
        result = subprocess.run([tool], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout


def parse_condor_version(text: str) -> tuple[int, int, int] | None:
    """(25, 14, 1) from ``$CondorVersion: 25.14.1 2026-10-16 PackageID: ... $``."""
    match = _CONDOR_VERSION.search(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def build_plan(host: Host, *, check_disk: bool = True) -> Outcome:
    """Run every validation and detection; a plan only when nothing FAILed in config."""
    findings = Findings()
    settings = load_settings(host.environ, findings=findings)
    # Token and attribute files are checked even when settings are bad, so one
    # run reports every problem.
    token_dir, attributes_file, token_text = input_files(host.environ)
    found_tokens = tokens_mod.load_tokens(
        token_dir=Path(token_dir), token_env=token_text, now=host.now, findings=findings
    )
    extra = attributes.load_extra_attributes_file(Path(attributes_file), findings=findings)
    if settings is None:
        # Resources and lifetime depend on valid settings; they would only add noise.
        return Outcome(findings=findings, tokens=tuple(found_tokens))
    limits = detect_limits(root=host.root, environ=host.environ)
    offer = decide_offer(
        limits=limits,
        num_cpus=settings.num_cpus,
        memory_mb=settings.memory_mb,
        overhead_mb=settings.memory_overhead_mb,
        findings=findings,
    )
    if check_disk:
        pilotdir.check_disk(
            path=Path(settings.pilot_dir), min_gb=settings.min_disk_gb, findings=findings
        )

    lifetime = policy.plan_lifetime(
        start=host.now,
        accept_jobs_for_hours=settings.accept_jobs_for_hours,
        retirement_hours=settings.retirement_hours,
        walltime_seconds=settings.pilot_walltime_seconds,
        job_end_time=limits.slurm_end_time,
        token_expiry=tokens_mod.earliest_expiry(found_tokens),
        grace_seconds=settings.shutdown_grace_seconds,
        rng=host.rng,
    )
    if lifetime.capped_by:
        findings.warn(
            "lifetime",
            f"shortened by {', '.join(lifetime.capped_by)}: accepting jobs for "
            f"{(lifetime.to_retire - lifetime.start) / 3600:.1f} h, gone after "
            f"{(lifetime.to_die - lifetime.start) / 3600:.1f} h",
        )
    else:
        findings.passed(
            "lifetime",
            f"accepting jobs for {(lifetime.to_retire - lifetime.start) / 3600:.1f} h, "
            f"then {settings.retirement_hours} h for running jobs",
        )

    facilities = plan_facilities(host, settings, findings)

    if findings.exit_code() == 78 or not found_tokens:
        return Outcome(findings=findings, settings=settings, tokens=tuple(found_tokens))

    pool = resolve_pool(
        pool=settings.pool, itb=settings.itb, condor_host=settings.condor_host, rng=host.rng
    )
    findings.passed("pool", f"{pool.name}: collectors {pool.collector_host}")
    name = policy.pilot_name(
        resource_name=settings.resource_name,
        hostname=host.hostname,
        randomize=settings.randomize_name,
        rng=host.rng,
    )
    uuid = policy.pilot_uuid(host.rng)
    # Drawn after the name and uuid: earlier draws stay what they were before containment.
    random_value = host.rng.random()
    job_image_os = None
    if facilities.cvmfs.mode == "cvmfsexec":
        # Apptainer and the images are only visible inside cvmfsexec: decided there at start.
        findings.passed(containment.SUBJECT, "decided inside cvmfsexec when the pilot starts")
        contained = containment.NOT_DECIDED
    else:
        contained = decide_containment(
            host,
            settings,
            facilities,
            findings,
            random_value=random_value,
        )
        job_image_os = job_os_of(host, contained)
    local_dir = PurePosixPath(settings.pilot_dir) / f"ospool-ep-{uuid}"
    plan = PilotPlan(
        settings=settings,
        offer=offer,
        lifetime=lifetime,
        pool=pool,
        start=policy.start_expression(),
        name=name,
        uuid=uuid,
        local_dir=local_dir,
        token_dir=local_dir / "tokens.d",
        user=host.user,
        extra_attributes=tuple(extra),
        cvmfs=facilities.cvmfs,
        node_validated=facilities.cvmfs.node_validated,
        gpus=facilities.gpus,
        apptainer=facilities.apptainer,
        containment=contained,
        random_value=random_value,
        job_os=job_image_os,
        osdf=plan_osdf(host, settings, findings),
    )
    return Outcome(findings=findings, settings=settings, tokens=tuple(found_tokens), plan=plan)


def plan_osdf(host: Host, settings: Settings, findings: Findings) -> osdf.OsdfPlan:
    if host.osdf_plugin is None:
        findings.warn(
            osdf.SUBJECT,
            f"not offered: {host.osdf_unavailable}; jobs with osdf://, pelican:// or stash://"
            " URLs will not match",
            "run the image built by this project (it ships the plugin and pelicanfs)",
        )
        return osdf.OsdfPlan(unavailable=host.osdf_unavailable)
    findings.passed(
        osdf.SUBJECT,
        f"plugin {host.osdf_plugin}: osdf, pelican and stash offered while its test passes"
        f" (at start, then every {settings.osdf_check_seconds} s)",
    )
    return osdf.OsdfPlan(
        plugin=host.osdf_plugin, unavailable="", check_seconds=settings.osdf_check_seconds
    )


@dataclass(frozen=True, kw_only=True)
class Facilities:
    cvmfs: cvmfs.CvmfsPlan
    gpus: gpus.GpuReport
    apptainer: apptainer.ApptainerTest


def plan_facilities(host: Host, settings: Settings, findings: Findings) -> Facilities:
    """CVMFS, GPUs and Apptainer (SPEC 8, 9): what the host offers jobs beyond CPUs and memory."""
    cvmfs_plan = cvmfs.plan_cvmfs(
        settings,
        root=host.cvmfs_root,
        distribution=host.cvmfsexec_distribution,
        fuse_device=host.fuse_device,
        python=sys.executable,
        findings=findings,
    )
    gpu_report = gpus.detect(
        tool=host.gpu_discovery,
        extra=host.environ.get("_CONDOR_GPU_DISCOVERY_EXTRA"),
        opencl=host.opencl_vendors,
    )
    gpus.report(gpu_report, findings)
    if cvmfs_plan.mode == "cvmfsexec":
        # Only visible inside cvmfsexec's namespace: tested there at start (run).
        tested = apptainer.ApptainerTest(detail="tested inside cvmfsexec at start")
        findings.passed("Apptainer", "tested inside cvmfsexec when the pilot starts")
    else:
        tested = test_apptainer(host, settings, cvmfs_plan)
        report_apptainer(tested, findings)
    return Facilities(cvmfs=cvmfs_plan, gpus=gpu_report, apptainer=tested)


def apptainer_candidates(host: Host, cvmfs_plan: cvmfs.CvmfsPlan) -> list[str]:
    """The image's apptainer, then CVMFS's when the oasis repo is healthy (never touch a
    path in a repo that may hang)."""
    healthy = cvmfs_plan.healthy_repos()
    usable_cvmfs = cvmfs_plan.mode == "cvmfsexec" or healthy.get("oasis.opensciencegrid.org")
    return apptainer.candidates(
        cvmfs_root=str(host.cvmfs_root) if usable_cvmfs else None,
        search_path=host.environ.get("PATH", os.defpath),
    )


def test_apptainer(
    host: Host, settings: Settings, cvmfs_plan: cvmfs.CvmfsPlan
) -> apptainer.ApptainerTest:
    return apptainer.find_working(
        apptainer_candidates(host, cvmfs_plan),
        pid_namespace=not settings.singularity_disable_pid_namespaces,
    )


def report_apptainer(tested: apptainer.ApptainerTest, findings: Findings) -> None:
    if tested.works:
        findings.passed("Apptainer", f"{tested.detail} ({tested.version}): HAS_SINGULARITY")
    else:
        findings.warn(
            "Apptainer",
            f"none works ({tested.detail}): HAS_SINGULARITY = False, container jobs will not match",
        )


def job_os_of(host: Host, decided: containment.Containment) -> osrelease.JobOs | None:
    """The OS a job without its own image runs in (OSG_OS_*): the default image's when it
    is a directory tree (CVMFS's unpacked images), the pilot's own for the built-in image
    and for bare jobs; None for an image file, which only Apptainer could look into."""
    if not decided.contained or decided.image == containment.BUILTIN_IMAGE:
        return osrelease.read_job_os(host.root, kernel=host.kernel)
    image = Path(decided.image)
    if not image.is_dir():
        return None
    return osrelease.read_job_os(image, kernel=host.kernel)


def decide_containment(
    host: Host,
    settings: Settings,
    facilities: Facilities,
    findings: Findings,
    *,
    random_value: float,
    exists: Callable[[str], bool] = os.path.exists,
) -> containment.Containment:
    """SPEC 7.6: the default image and whether jobs run in Apptainer (the same for
    ``check`` and ``run``; with cvmfsexec, ``run`` calls it inside, see prepare)."""
    cvmfs_plan = facilities.cvmfs
    has_cvmfs = cvmfs_plan.mode in ("bind", "cvmfsexec")
    # Never stat a path in a repo that may hang: only a healthy image repo is looked into.
    images_healthy = bool(cvmfs_plan.healthy_repos().get(containment.CVMFS_IMAGE_REPO))
    distribution = (
        settings.default_container_distribution_gpu
        if facilities.gpus.ids
        else settings.default_container_distribution
    )
    choice = containment.choose_default_image(
        distribution,
        cvmfs_root=str(host.cvmfs_root) if has_cvmfs and images_healthy else None,
        exists=exists,
        random_value=random_value,
    )
    binds = containment.job_binds(
        cvmfs_root=str(host.cvmfs_root) if has_cvmfs else None,
        extra=settings.singularity_bind_extra,
        opencl_vendors=facilities.gpus.opencl_vendors,
    )
    return containment.decide(
        settings.job_containment,
        tested=facilities.apptainer,
        choice=choice,
        binds=binds,
        findings=findings,
    )
