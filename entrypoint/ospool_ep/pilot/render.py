"""Render: a pilot plan -> an HTCondor configuration tree, checked by HTCondor's own parser.

``render_files`` is pure (plan in, file texts out); ``write_tree`` and
``verify_tree`` are the I/O edges. Templates are jinja2 files in the project's
top-level ``condor_config.d/`` (shipped in the package as ``templates/``).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from ospool_ep import __version__
from ospool_ep.cvmfs.plan import CvmfsPlan
from ospool_ep.cvmfs.probe import (
    has_attribute,
    nioerr_attribute,
    problems_summary,
    revision_attribute,
)
from ospool_ep.detect.apptainer import ApptainerTest
from ospool_ep.detect.gpus import GpuReport
from ospool_ep.detect.offer import Offer
from ospool_ep.detect.osrelease import JobOs
from ospool_ep.findings import Findings, Kind
from ospool_ep.inputs import policy
from ospool_ep.inputs.attributes import ExtraAttribute
from ospool_ep.inputs.classad import string_literal
from ospool_ep.inputs.policy import Lifetime
from ospool_ep.inputs.pools import PoolEndpoints
from ospool_ep.inputs.settings import Settings
from ospool_ep.inputs.values import config_unsafe_reason
from ospool_ep.pilot import atomic, dropin, osdf
from ospool_ep.pilot.containment import BUILTIN_BINDS, BUILTIN_IMAGE, NOT_DECIDED, Containment
from ospool_ep.pilot.osdf import OsdfPlan

ROOT_FILE = "condor_config"
PARSER_TIMEOUT_SECONDS = 20
"""A macro cycle makes HTCondor's config lookups hang; never wait forever."""

BASE_PUBLISHED = (
    "GLIDEIN_Site",
    "GLIDEIN_ResourceName",
    "GLIDECLIENT_Group",
    "OSPool",
    "START_EXTRA",
    "GLIDEIN_ToRetire",
    "GLIDEIN_ToDie",
    "ACCEPT_JOBS_FOR_HOURS",
    "ACCEPT_IDLE_MINUTES",
    "IsOsgVoContainer",
    "OSG_NODE_VALIDATED",
    "OSPOOL_EP_VERSION",
    "OSPOOL_EP_PILOT_UUID",
)


NO_GPUS = GpuReport()
APPTAINER_NOT_TESTED = ApptainerTest(detail="not tested")
NO_OSDF = OsdfPlan()


@dataclass(frozen=True, kw_only=True)
class PilotPlan:
    """Everything decided before rendering: the configuration is a function of this."""

    settings: Settings
    offer: Offer
    lifetime: Lifetime
    pool: PoolEndpoints
    start: str
    name: str
    uuid: str
    local_dir: PurePosixPath
    token_dir: PurePosixPath
    user: str
    extra_attributes: tuple[ExtraAttribute, ...] = ()
    node_validated: bool = True
    cvmfs: CvmfsPlan | None = None
    """None: CVMFS not planned (unit tests of other stages); run and check always plan it."""
    gpus: GpuReport = NO_GPUS
    apptainer: ApptainerTest = APPTAINER_NOT_TESTED
    containment: Containment = NOT_DECIDED
    random_value: float = 0.0
    """Drawn once per pilot start: picks the default job image (also when the choice
    is made later, inside cvmfsexec)."""
    job_os: JobOs | None = None
    """The OS of the default job image (OSG_OS_*); None: not known, not published."""
    osdf: OsdfPlan = NO_OSDF
    """The OSDF plugin: rendered off; the supervisor offers it once its test passes."""


def _checked(value: object) -> str:
    """Every value written goes through here: refuse what could alter config lines."""
    text = str(value)
    reason = config_unsafe_reason(text)
    if reason:
        raise ValueError(f"refusing to render an unsafe value into HTCondor config: {reason}")
    return text


def _isotime(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


VACATE_SECONDS = 3
"""MachineMaxVacateTime: soft kill to hard kill when a job is evicted. It must fit
in the drain's safety margin: the startd starts evicting this long before
retirement ends, and with HTCondor's default (600 s) a SIGTERM evicted jobs at
once. The startd fixes a job's vacate time when the job starts, so it is set
from the start, not in the drain drop-in."""

IDLE_UPDATE_MAX_SECONDS = 300
"""HTCondor's default UPDATE_INTERVAL. The startd acts on STARTD_NOCLAIM_SHUTDOWN
only when it updates the collector, so a short ACCEPT_IDLE_MINUTES gets more
frequent updates (half the idle time, at least 30 s); the default (30 min)
keeps HTCondor's own interval and the pool's load."""


def update_interval(idle_seconds: int) -> int | None:
    """UPDATE_INTERVAL to render, or None for HTCondor's default."""
    if not idle_seconds or idle_seconds // 2 >= IDLE_UPDATE_MAX_SECONDS:
        return None
    return max(30, idle_seconds // 2)


# The drain drop-in is written by the light supervisor (ospool_ep.pilot.dropin); the
# rendered tree and the drop-in are one configuration, so they are named here too.
CONFIG_SUBDIR = dropin.CONFIG_SUBDIR
DRAIN_FILE = dropin.DRAIN_FILE
drain_config = dropin.drain_config
retirement_until = dropin.retirement_until


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("ospool_ep") / "templates")),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - HTCondor config, not HTML; values are checked by _checked
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_checked,
    )
    env.filters["ad_string"] = string_literal
    env.filters["isotime"] = _isotime
    env.globals["retirement_until"] = retirement_until
    env.globals["has_cvmfs"] = has_attribute
    env.globals["cvmfs_revision"] = revision_attribute
    env.globals["cvmfs_nioerr"] = nioerr_attribute
    env.globals["cvmfs_problems"] = problems_summary
    return env


def _environment_entry(name: str, value: str) -> str:
    """``NAME=value`` in HTCondor's quoted environment syntax (condor_submit(1),
    ``environment``), for inside STARTER_JOB_ENVIRONMENT's double quotes: a double
    quote is doubled; a value with a blank or a single quote is put in single
    quotes, where a single quote is doubled. Names are plain; values hold no
    newline, ``$`` or backslash (checked on input and again by ``_checked``)."""
    if any(ch.isspace() or ch == "'" for ch in value):
        value = "'" + value.replace("'", "''") + "'"
    return f"{name}={value}".replace('"', '""')


def job_environment(settings: Settings) -> list[str]:
    """The entries of STARTER_JOB_ENVIRONMENT, quoted (:func:`_environment_entry`)."""
    pairs = [
        ("GLIDEIN_Site", settings.site),
        ("GLIDEIN_ResourceName", settings.resource_name),
        ("OSG_SITE_NAME", settings.resource_name),
    ]
    # As OSG's pilot: the squid is the jobs' http_proxy; else the pilot's own proxy
    # settings are passed on (its additional-htcondor-config).
    if settings.squid_url:
        pairs += [("OSG_SQUID_LOCATION", settings.squid_url), ("http_proxy", settings.squid_url)]
    elif settings.job_http_proxy:
        pairs.append(("http_proxy", settings.job_http_proxy))
    for name, value in (
        ("https_proxy", settings.job_https_proxy),
        ("FTP_PROXY", settings.job_ftp_proxy),
        ("OSG_HOSTNAME", settings.osg_hostname),
    ):
        if value:
            pairs.append((name, value))
    pairs += settings.extra_job_env
    return [_environment_entry(name, value) for name, value in pairs]


JOB_IMAGE = "TARGET.SingularityImage"


def job_image_allowed(image: str = JOB_IMAGE) -> str:
    """Whether a job's own image is one it may run in: a path under /cvmfs (what OSG
    publishes), a registry's ``docker://`` image, or the built-in image; never with a
    ``..`` in it (no image name has one; ``(/|$)`` cannot be written: ``$`` is a macro).
    Any other path would be a directory of the pilot's (``/pilot``, with the token)
    that Apptainer would take as the job's root file system."""
    places = f'regexp("^(/cvmfs/|docker://)", {image})'
    builtin = f"{image} == {string_literal(BUILTIN_IMAGE)}"
    return f'(({places} || {builtin}) && !regexp("[.][.]", {image}))'


def image_named_clause(image: str = JOB_IMAGE) -> str:
    return f"isString({image}) && size({image}) > 0"


def image_start_clause(*, contained: bool) -> str:
    """START's term on the job's image. Contained: a job that names an image names an
    allowed one. Bare: a job that names an image cannot have it, so it does not start."""
    named = image_named_clause()
    if not contained:
        return f"!({named})"
    return f"(!({named}) || {job_image_allowed()})"


def start_of(plan: PilotPlan) -> str:
    """The START rendered: the policy's terms and the job-image term of containment."""
    return f"{plan.start} && {image_start_clause(contained=plan.containment.contained)}"


def image_expression(default_image: str) -> str:
    """SINGULARITY_IMAGE_EXPR: the job's own +SingularityImage where allowed, else the
    default image (START keeps jobs naming another image off; this holds should one
    still arrive). The starter evaluates it with the slot ad as MY and the job ad as
    TARGET (condor_starter.V6.1/singularity.cpp, param_eval_string), hence TARGET."""
    own = f"{image_named_clause()} && {job_image_allowed()}"
    return f"ifThenElse({own}, {JOB_IMAGE}, {string_literal(default_image)})"


def bind_expression(binds: tuple[str, ...], default_image: str) -> str:
    """SINGULARITY_BIND_EXPR: a string of comma-separated binds (the starter splits it on
    commas and blanks and passes each to ``-B``, skipping missing sources). The job's
    own SingularityBind (HTCondor's default here) is not honoured: it would let a job
    bind any pilot path into its container. The built-in image's ``/usr`` only for jobs
    that run in the built-in image."""
    is_builtin = f"({image_expression(default_image)}) =?= {string_literal(BUILTIN_IMAGE)}"
    always = ",".join(binds)
    builtin = ",".join((*binds, *BUILTIN_BINDS))
    return f"ifThenElse({is_builtin}, {string_literal(builtin)}, {string_literal(always)})"


def render_files(plan: PilotPlan, *, config_dir: PurePosixPath) -> dict[str, str]:
    """File name (relative to ``config_dir``) -> text. Pure."""
    env = _environment()
    published = [*BASE_PUBLISHED]
    if plan.pool.itb:
        published.append("Is_ITB_Site")
    if plan.settings.project_name:
        published += ["OSG_PROJECT_NAME", "OSG_PROJECT_RESTRICTION"]
    job_os = plan.job_os.attributes() if plan.job_os else {}
    published += list(job_os)
    published += [attribute.name for attribute in plan.extra_attributes]
    ospool = policy.is_ospool(
        collector_host=plan.pool.collector_host,
        group=plan.pool.group,
        start_extra=plan.settings.start_extra,
        project_name=plan.settings.project_name,
    )
    context: dict[str, Any] = {
        "settings": plan.settings,
        "offer": plan.offer,
        "lifetime": plan.lifetime,
        "pool": plan.pool,
        "start": start_of(plan),
        "name": plan.name,
        "uuid": plan.uuid,
        "local_dir": plan.local_dir,
        "token_dir": plan.token_dir,
        "user": plan.user,
        "extra_attributes": plan.extra_attributes,
        "node_validated": plan.node_validated,
        "idle_seconds": plan.settings.accept_idle_minutes * 60,
        "update_interval": update_interval(plan.settings.accept_idle_minutes * 60),
        "vacate_seconds": VACATE_SECONDS,
        "published": published,
        "ospool": ospool,
        "start_extra": policy.start_extra(plan.settings.start_extra, itb_sites=plan.pool.itb_sites),
        "project_restriction": policy.PROJECT_RESTRICTION,
        "job_os": job_os,
        "job_environment": job_environment(plan.settings),
        "version": __version__,
        "config_dir": config_dir,
        "cvmfs": plan.cvmfs,
        "gpus": plan.gpus,
        "apptainer": plan.apptainer,
        "containment": plan.containment,
        "image_expression": image_expression(plan.containment.image),
        "bind_expression": bind_expression(plan.containment.binds, plan.containment.image),
    }
    files: dict[str, str] = {}
    for template_name in sorted(env.list_templates(filter_func=lambda n: n.endswith(".j2"))):
        target = template_name.removesuffix(".j2")
        relative = target if target == ROOT_FILE else f"{CONFIG_SUBDIR}/{target}"
        files[relative] = env.get_template(template_name).render(context)
    # Written by code, not a template: the supervisor rewrites this file with each
    # verdict of the plugin's test (ospool_ep.pilot.osdfcheck), in the same words.
    files[osdf.DROPIN_FILE] = osdf.config_text(plan.osdf, None)
    return files


def write_tree(files: Mapping[str, str], *, output: Path) -> None:
    """Write the tree; the config.d/ is replaced whole so no stale file lingers.

    Every file is replaced by rename (:mod:`ospool_ep.pilot.atomic`): on reload the tree
    is rewritten while the pilot runs, and what a job left at one of its names
    (a FIFO, a symlink) is replaced, never opened.
    """
    output.mkdir(parents=True, exist_ok=True)
    prefix = f"{CONFIG_SUBDIR}/"
    inside = {k[len(prefix) :]: v for k, v in files.items() if k.startswith(prefix)}
    atomic.replace_directory(output / CONFIG_SUBDIR, inside)
    for relative, text in files.items():
        if not relative.startswith(prefix):
            atomic.replace_file(output / relative, text)


# HTCondor's own parser: the Python bindings exit(1) on a bad configuration just
# like the daemons (they share the config code), so they run in a subprocess.
_BINDINGS_READER = (
    "import json, sys, htcondor2\n"
    "values = {k: htcondor2.param.get(k) for k in sys.argv[1:]}\n"
    "print(json.dumps({k: None if v is None else str(v) for k, v in values.items()}))\n"
)


def verify_tree(
    *, output: Path, expected: Mapping[str, str], findings: Findings, environ: Mapping[str, str]
) -> bool:
    """Parse the rendered tree with HTCondor in a subprocess and compare key knobs."""
    knobs = list(expected)
    env = {k: v for k, v in environ.items() if k != "TOKEN"}
    env["CONDOR_CONFIG"] = str(output / ROOT_FILE)
    command = [sys.executable, "-c", _BINDINGS_READER, *knobs]
    try:
        result = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=PARSER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        findings.fail(
            "HTCondor config",
            f"the parser did not finish in {PARSER_TIMEOUT_SECONDS} s (a macro cycle?)",
            "check _CONDOR_* overrides for self-references",
        )
        return False
    except OSError as error:
        findings.fail(
            "HTCondor config", f"could not run the parser: {error}", kind=Kind.ENVIRONMENT
        )
        return False
    if result.returncode != 0:
        detail = " ".join((result.stderr or result.stdout).split())[:400]
        findings.fail(
            "HTCondor config",
            f"HTCondor's parser rejected the rendered configuration: {detail}",
            "check _CONDOR_* overrides; otherwise this is a bug, please report it",
        )
        return False
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # A site's own _CONDOR_<KNOB> override is allowed (settings warn about it);
    # only differences nobody asked for are errors.
    overridden = {name.upper().removeprefix("_CONDOR_") for name in environ}
    wrong = [k for k, v in expected.items() if seen.get(k) != v and k.upper() not in overridden]
    if wrong:
        findings.fail(
            "HTCondor config",
            f"HTCondor reads different values for {', '.join(wrong)} than were rendered",
            "a _CONDOR_* override or a bug changed them; remove overrides of pilot knobs",
        )
        return False
    findings.passed("HTCondor config", f"parsed by HTCondor, {len(expected)} knobs read back")
    return True


def write_and_verify(
    plan: PilotPlan, *, output: Path, findings: Findings, environ: Mapping[str, str] = os.environ
) -> bool:
    """Render ``plan`` into ``output`` and check it; False (with a FAIL) if HTCondor objects."""
    output = output.absolute()
    files = render_files(plan, config_dir=PurePosixPath(output))
    write_tree(files, output=output)
    expected = {
        "DAEMON_LIST": "MASTER, STARTD",
        "NUM_CPUS": str(plan.offer.cpus),
        "MEMORY": str(plan.offer.memory_mb),
        "START": start_of(plan),
        "GLIDEIN_Site": string_literal(plan.settings.site),
        "LOCAL_DIR": str(plan.local_dir),
    }
    return verify_tree(output=output, expected=expected, findings=findings, environ=environ)
