"""Job containment (SPEC 7.6): the default job image, and whether jobs run in Apptainer.

Pure: the Apptainer test (:mod:`ospool_ep.detect.apptainer`), which images exist
and the random number come in; the decision and its findings come out. ``run``
and ``check`` take the same decision (:func:`ospool_ep.pilot.plan.build_plan`), so
``check`` gives the verdict and exit code ``run`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ospool_ep.detect.apptainer import ApptainerTest, known_fix
from ospool_ep.findings import Findings, Kind

BUILTIN_IMAGE = "/usr/lib/ospool-ep/job-image"
"""The job image the pilot image provides: a skeleton that gets the pilot's own
``/usr`` bound read-only (:data:`BUILTIN_BINDS`), for pilots without CVMFS images."""
BUILTIN_BINDS = ("/usr:/usr:ro",)
CVMFS_IMAGE_REPO = "singularity.opensciencegrid.org"
"""Where OSG publishes job images; distribution entries are relative to it."""
SUBJECT = "Job containment"

Policy = Literal["required", "preferred", "none"]


@dataclass(frozen=True, kw_only=True)
class ImageChoice:
    image: str | None
    """Absolute path of the default job image; None: no listed image and no built-in one."""
    missing: tuple[str, ...] = ()
    """Listed images that are not there (each gets a WARN)."""


def choose_default_image(
    distribution: Sequence[tuple[int, str]],
    *,
    cvmfs_root: str | None,
    exists: Callable[[str], bool],
    random_value: float,
) -> ImageChoice:
    """One image of ``distribution`` by weight, among those that exist under
    ``cvmfs_root``/singularity.opensciencegrid.org (``random_value`` in [0, 1) picks);
    else the built-in image if it exists. ``cvmfs_root`` None: no CVMFS."""
    present: list[tuple[int, str]] = []
    missing: list[str] = []
    if cvmfs_root is not None:
        base = f"{cvmfs_root.rstrip('/')}/{CVMFS_IMAGE_REPO}"
        for weight, image in distribution:
            path = f"{base}/{image}"
            if exists(path):
                present.append((weight, path))
            else:
                missing.append(path)
    if present:
        return ImageChoice(image=pick(present, random_value), missing=tuple(missing))
    return ImageChoice(
        image=BUILTIN_IMAGE if exists(BUILTIN_IMAGE) else None, missing=tuple(missing)
    )


def pick(weighted: Sequence[tuple[int, str]], random_value: float) -> str:
    """The entry whose share of the total weight holds ``random_value`` (in [0, 1))."""
    point = random_value * sum(weight for weight, _ in weighted)
    for weight, item in weighted:
        if point < weight:
            return item
        point -= weight
    return weighted[-1][1]  # random_value == 1.0 or rounding: the last entry


@dataclass(frozen=True, kw_only=True)
class Containment:
    """What the templates render: jobs in Apptainer (``contained``) or bare."""

    contained: bool = False
    policy: Policy = "required"
    apptainer: str = ""
    version: str = ""
    image: str = ""
    """The default image of jobs that name none (contained only)."""
    binds: tuple[str, ...] = ()
    """``src[:dst[:ro|rw]]`` for every job; the built-in image's binds come on top."""


NOT_DECIDED = Containment()

NONE_MESSAGE = (
    "JOB_CONTAINMENT=none: jobs run bare, as the pilot's user, and can read the pilot's "
    "token, configuration and processes"
)
NONE_FIX = "set JOB_CONTAINMENT=required (the default) where Apptainer works"
NO_IMAGE_FIX = (
    f"bind-mount CVMFS (with {CVMFS_IMAGE_REPO}) or run the ospool-ep image, which "
    f"provides {BUILTIN_IMAGE}; or set JOB_CONTAINMENT=none"
)
GENERIC_FIX = (
    "see Apptainer's reason above; run the pilot with --security-opt unmask=/proc/* "
    "(podman) or --security-opt systempaths=unconfined (docker), or set JOB_CONTAINMENT=none"
)


def job_binds(
    *, cvmfs_root: str | None, extra: Sequence[str], opencl_vendors: str | None
) -> tuple[str, ...]:
    """Binds of every contained job: CVMFS read-only where the pilot has it, the site's
    SINGULARITY_BIND_EXTRA, the OpenCL ICDs mounted for GPUs."""
    binds = [f"{cvmfs_root.rstrip('/')}:/cvmfs:ro"] if cvmfs_root else []
    binds += extra
    if opencl_vendors:
        binds.append(f"{opencl_vendors}:{opencl_vendors}:ro")
    return tuple(dict.fromkeys(binds))


def decide(
    policy: Policy,
    *,
    tested: ApptainerTest,
    choice: ImageChoice,
    binds: tuple[str, ...],
    findings: Findings,
) -> Containment:
    """SPEC 7.6 / JOB_CONTAINMENT: contained when Apptainer passed and there is an
    image; else a FAIL (required: exit 69), a WARN (preferred: bare), and for ``none``
    a WARN that jobs run bare."""
    if policy == "none":
        findings.warn(SUBJECT, NONE_MESSAGE, NONE_FIX)
        return Containment(policy=policy)
    for path in choice.missing:
        findings.warn(
            SUBJECT,
            f"default image {path} is not there; not chosen",
            "fix OSG_DEFAULT_CONTAINER_DISTRIBUTION(_GPU), or check CVMFS",
        )
    problem, fix = _problem(tested, choice)
    if problem is None and tested.path is not None and choice.image is not None:
        findings.passed(
            SUBJECT,
            f"every job runs in Apptainer ({tested.version or tested.path}); "
            f"default image {choice.image}",
        )
        return Containment(
            contained=True,
            policy=policy,
            apptainer=tested.path,
            version=tested.version,
            image=choice.image,
            binds=binds,
        )
    if policy == "required":
        findings.fail(
            SUBJECT,
            f"JOB_CONTAINMENT=required, but jobs cannot run in Apptainer here: {problem}",
            fix,
            kind=Kind.ENVIRONMENT,
        )
    else:
        findings.warn(
            SUBJECT,
            f"JOB_CONTAINMENT=preferred: jobs run bare (OSPOOL_EP_JOBS_CONTAINED = False), "
            f"Apptainer cannot contain them here: {problem}",
            fix,
        )
    return Containment(policy=policy)


def _problem(tested: ApptainerTest, choice: ImageChoice) -> tuple[str | None, str]:
    if not tested.works:
        fix = known_fix(tested.detail) or GENERIC_FIX
        return tested.detail.replace(f" -- {fix}", "") or "Apptainer was not tested", fix
    if choice.image is None:
        return f"no job image: no listed default image and no {BUILTIN_IMAGE}", NO_IMAGE_FIX
    return None, ""
