"""Job containment (SPEC 7.6): default image choice, the JOB_CONTAINMENT decision table,
and the rendered SINGULARITY_* expressions as HTCondor's starter evaluates them."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import classad2
import pytest
from render_plans import APPTAINER_PASSED, CONTAINED, make_plan, read_knobs

from ospool_ep.detect.apptainer import (
    NO_APPTAINER,
    PROC_MOUNT_FIX,
    USERNS_FIX,
    ApptainerTest,
    failure_reason,
)
from ospool_ep.findings import Findings, Kind, Status
from ospool_ep.inputs.settings import Settings
from ospool_ep.pilot import containment as c
from ospool_ep.pilot import render

ROOT = "/cvmfs"
BASE = f"{ROOT}/{c.CVMFS_IMAGE_REPO}"
DEFAULT = ((10, "htc/rocky:8"), (90, "htc/rocky:9"))


def everything(_path: str) -> bool:
    return True


def test_the_weighted_choice_follows_the_weights_over_many_starts() -> None:
    """Seeded: 10 %/90 % over 10 000 draws lands within a point of each share."""
    rng = random.Random(7)
    picks = Counter(
        c.choose_default_image(
            DEFAULT, cvmfs_root=ROOT, exists=everything, random_value=rng.random()
        ).image
        for _ in range(10_000)
    )
    assert set(picks) == {f"{BASE}/htc/rocky:8", f"{BASE}/htc/rocky:9"}
    assert 900 <= picks[f"{BASE}/htc/rocky:8"] <= 1100


@pytest.mark.parametrize(
    ("value", "expected"), [(0.0, "a"), (0.0999, "a"), (0.1, "b"), (0.9999, "b"), (1.0, "b")]
)
def test_the_random_number_picks_the_entry_whose_share_holds_it(
    value: float, expected: str
) -> None:
    assert c.pick(((10, "a"), (90, "b")), value) == expected


def test_relative_weights_are_shares_of_their_sum() -> None:
    assert c.pick(((1, "a"), (3, "b")), 0.24) == "a"
    assert c.pick(((1, "a"), (3, "b")), 0.26) == "b"


def test_a_missing_image_is_skipped_and_named() -> None:
    """Only images that exist are chosen; the others are reported."""
    choice = c.choose_default_image(
        DEFAULT,
        cvmfs_root=ROOT,
        exists=lambda path: path.endswith("rocky:9"),
        random_value=0.0,
    )
    assert choice.image == f"{BASE}/htc/rocky:9"
    assert choice.missing == (f"{BASE}/htc/rocky:8",)


def test_without_cvmfs_or_listed_images_the_built_in_image_is_the_default() -> None:
    none_there = c.choose_default_image(
        DEFAULT, cvmfs_root=ROOT, exists=lambda path: path == c.BUILTIN_IMAGE, random_value=0.5
    )
    assert none_there.image == c.BUILTIN_IMAGE
    no_cvmfs = c.choose_default_image(DEFAULT, cvmfs_root=None, exists=everything, random_value=0.5)
    assert (no_cvmfs.image, no_cvmfs.missing) == (c.BUILTIN_IMAGE, ())


def test_without_any_image_there_is_no_default() -> None:
    choice = c.choose_default_image(
        DEFAULT, cvmfs_root=ROOT, exists=lambda _path: False, random_value=0.5
    )
    assert choice.image is None


def test_binds_hold_cvmfs_the_sites_extra_binds_and_opencl() -> None:
    assert c.job_binds(
        cvmfs_root="/cvmfs",
        extra=("/data:/data:ro", "/scratch"),
        opencl_vendors="/etc/OpenCL/vendors",
    ) == (
        "/cvmfs:/cvmfs:ro",
        "/data:/data:ro",
        "/scratch",
        "/etc/OpenCL/vendors:/etc/OpenCL/vendors:ro",
    )
    assert c.job_binds(cvmfs_root=None, extra=(), opencl_vendors=None) == ()


FAILED = ApptainerTest(detail=NO_APPTAINER)
PROC = ApptainerTest(
    detail="/usr/bin/apptainer test run exited 255, not 37: "
    + failure_reason("FATAL: container creation failed: can't mount proc filesystem to /proc")
)
IMAGE = c.ImageChoice(image=f"{BASE}/htc/rocky:9")
NO_IMAGE = c.ImageChoice(image=None)


@pytest.mark.parametrize(
    ("policy", "tested", "choice", "contained", "status", "kind"),
    [
        ("required", APPTAINER_PASSED, IMAGE, True, Status.PASS, Kind.CONFIG),
        ("required", FAILED, IMAGE, False, Status.FAIL, Kind.ENVIRONMENT),
        ("required", APPTAINER_PASSED, NO_IMAGE, False, Status.FAIL, Kind.ENVIRONMENT),
        ("preferred", APPTAINER_PASSED, IMAGE, True, Status.PASS, Kind.CONFIG),
        ("preferred", FAILED, IMAGE, False, Status.WARN, Kind.CONFIG),
        ("preferred", APPTAINER_PASSED, NO_IMAGE, False, Status.WARN, Kind.CONFIG),
        ("none", APPTAINER_PASSED, IMAGE, False, Status.WARN, Kind.CONFIG),
        ("none", FAILED, NO_IMAGE, False, Status.WARN, Kind.CONFIG),
    ],
)
def test_the_decision_table_of_job_containment(  # noqa: PLR0917 - one table row
    policy: c.Policy,
    tested: ApptainerTest,
    choice: c.ImageChoice,
    contained: bool,
    status: Status,
    kind: Kind,
) -> None:
    """required: contained or exit 69 (an environment FAIL); preferred: contained or bare
    with a WARN; none: bare with a WARN that jobs can read the token."""
    findings = Findings()
    decided = c.decide(
        policy, tested=tested, choice=choice, binds=("/cvmfs:/cvmfs:ro",), findings=findings
    )
    assert decided.contained is contained
    [line] = [f for f in findings if f.subject == c.SUBJECT]
    assert (line.status, line.kind) == (status, kind)
    if status is not Status.PASS:
        assert line.fix
    if contained:
        assert (decided.image, decided.apptainer) == (choice.image, tested.path)
    if status is Status.FAIL:
        assert int(findings.exit_code()) == 69


def test_the_fixes_name_the_missing_run_option() -> None:
    findings = Findings()
    c.decide("required", tested=PROC, choice=IMAGE, binds=(), findings=findings)
    [line] = findings.failures
    assert line.fix == PROC_MOUNT_FIX
    assert "--security-opt unmask=/proc/*" in line.fix
    assert "--security-opt systempaths=unconfined" in line.fix
    assert PROC_MOUNT_FIX not in line.message  # said once, as the fix
    findings = Findings()
    c.decide("required", tested=FAILED, choice=IMAGE, binds=(), findings=findings)
    assert "JOB_CONTAINMENT=none" in findings.failures[0].fix
    assert "default image" in findings.failures[0].fix


@pytest.mark.parametrize(
    "said",
    [
        "FATAL: Failed to create user namespace: user namespace disabled",
        "FATAL: Failed to create user namespace: not allowed to create user namespace",
        "FATAL: Failed to create user namespace: maximum number of user namespaces exceeded, "
        "check /proc/sys/user/max_user_namespaces",
        "FATAL: Failed to create user namespace: user namespace requires to set "
        "/proc/sys/kernel/unprivileged_userns_clone to 1",
    ],
)
def test_apptainers_user_namespace_refusals_get_the_host_fix(said: str) -> None:
    """The reasons Apptainer's starter gives (starter.c, nserror) name the sysctl."""
    reason = failure_reason(said)
    assert reason.endswith(USERNS_FIX)
    assert "user.max_user_namespaces" in USERNS_FIX


def test_missing_default_images_are_warned_one_by_one() -> None:
    findings = Findings()
    choice = c.ImageChoice(image=c.BUILTIN_IMAGE, missing=(f"{BASE}/a", f"{BASE}/b"))
    c.decide("required", tested=APPTAINER_PASSED, choice=choice, binds=(), findings=findings)
    assert [f.status for f in findings] == [Status.WARN, Status.WARN, Status.PASS]


# ------------------------------------------------------------------ rendered expressions


def _knobs(tmp_path: Path, plan: render.PilotPlan, *names: str) -> dict[str, str]:
    files = render.render_files(plan, config_dir=tmp_path)
    render.write_tree(files, output=tmp_path)
    findings = Findings()
    assert render.verify_tree(output=tmp_path, expected={}, findings=findings, environ={})
    return read_knobs(tmp_path, *names)


def _evaluate(expression: str, job: dict[str, str]) -> object:
    """As the starter does: the slot ad is MY, the job ad TARGET."""
    return classad2.ExprTree(expression).eval(classad2.ClassAd(), classad2.ClassAd(job))


def test_a_contained_pilot_renders_the_containment_knobs(tmp_path: Path) -> None:
    knobs = _knobs(
        tmp_path,
        make_plan(containment=CONTAINED, apptainer=APPTAINER_PASSED),
        "SINGULARITY",
        "SINGULARITY_JOB",
        "SINGULARITY_TARGET_DIR",
        "SINGULARITY_EXTRA_ARGUMENTS",
        "SINGULARITY_USE_PID_NAMESPACES",
        "HAS_SINGULARITY",
        "OSPOOL_EP_JOBS_CONTAINED",
        "OSG_SINGULARITY_IMAGE_DEFAULT",
        "STARTD_ATTRS",
    )
    assert knobs["SINGULARITY"] == "/usr/bin/apptainer"
    assert knobs["SINGULARITY_JOB"] == "True"
    assert knobs["SINGULARITY_TARGET_DIR"] == "/srv"
    assert knobs["SINGULARITY_EXTRA_ARGUMENTS"] == '"--contain --ipc --pid --unsquash"'
    assert knobs["SINGULARITY_USE_PID_NAMESPACES"] == "Auto"
    assert knobs["HAS_SINGULARITY"] == "True"
    assert knobs["OSPOOL_EP_JOBS_CONTAINED"] == "True"
    assert knobs["OSG_SINGULARITY_IMAGE_DEFAULT"] == f'"{BASE}/htc/rocky:9"'
    assert "OSPOOL_EP_JOBS_CONTAINED" in knobs["STARTD_ATTRS"]


def test_a_bare_pilot_renders_containment_off(tmp_path: Path) -> None:
    knobs = _knobs(
        tmp_path,
        make_plan(),
        "SINGULARITY_JOB",
        "HAS_SINGULARITY",
        "OSPOOL_EP_JOBS_CONTAINED",
        "SINGULARITY",
    )
    assert (knobs["SINGULARITY_JOB"], knobs["HAS_SINGULARITY"]) == ("False", "False")
    assert knobs["OSPOOL_EP_JOBS_CONTAINED"] == "False"
    assert knobs["SINGULARITY"] == "/bin/false"


def test_without_pid_namespaces_the_extra_arguments_drop_pid(tmp_path: Path) -> None:
    settings = Settings(site="S", resource_name="R", singularity_disable_pid_namespaces=True)
    knobs = _knobs(
        tmp_path,
        make_plan(settings, containment=CONTAINED),
        "SINGULARITY_EXTRA_ARGUMENTS",
        "SINGULARITY_USE_PID_NAMESPACES",
    )
    assert knobs == {
        "SINGULARITY_EXTRA_ARGUMENTS": '"--contain --ipc --unsquash"',
        "SINGULARITY_USE_PID_NAMESPACES": "False",
    }


@pytest.mark.parametrize(
    ("default", "job", "image", "binds"),
    [
        (f"{BASE}/htc/rocky:9", {}, f"{BASE}/htc/rocky:9", "/cvmfs:/cvmfs:ro,/data"),
        (
            f"{BASE}/htc/rocky:9",
            {"SingularityImage": ""},
            f"{BASE}/htc/rocky:9",
            "/cvmfs:/cvmfs:ro,/data",
        ),
        (
            f"{BASE}/htc/rocky:9",
            {"SingularityImage": "/cvmfs/x/img", "SingularityBind": "/pilot:/p"},
            "/cvmfs/x/img",
            "/cvmfs:/cvmfs:ro,/data",
        ),
        (c.BUILTIN_IMAGE, {}, c.BUILTIN_IMAGE, "/cvmfs:/cvmfs:ro,/data,/usr:/usr:ro"),
        (
            f"{BASE}/htc/rocky:9",
            {"SingularityImage": c.BUILTIN_IMAGE},
            c.BUILTIN_IMAGE,
            "/cvmfs:/cvmfs:ro,/data,/usr:/usr:ro",
        ),
        (
            c.BUILTIN_IMAGE,
            {"SingularityImage": "/cvmfs/x/img"},
            "/cvmfs/x/img",
            "/cvmfs:/cvmfs:ro,/data",
        ),
    ],
)
def test_the_image_and_bind_expressions_evaluate_per_job_as_the_starter_does(
    tmp_path: Path, default: str, job: dict[str, str], image: str, binds: str
) -> None:
    """Read back through HTCondor's parser, then evaluated with the job ad as TARGET: the
    job's own image wins, /usr is bound only into the built-in image, and a job's own
    SingularityBind is never honoured."""
    contained = c.Containment(
        contained=True,
        apptainer="/usr/bin/apptainer",
        image=default,
        binds=("/cvmfs:/cvmfs:ro", "/data"),
    )
    knobs = _knobs(
        tmp_path,
        make_plan(containment=contained),
        "SINGULARITY_IMAGE_EXPR",
        "SINGULARITY_BIND_EXPR",
    )
    assert _evaluate(knobs["SINGULARITY_IMAGE_EXPR"], job) == image
    assert _evaluate(knobs["SINGULARITY_BIND_EXPR"], job) == binds


def test_a_pilot_without_binds_binds_only_usr_into_the_built_in_image(tmp_path: Path) -> None:
    contained = c.Containment(contained=True, apptainer="/usr/bin/apptainer", image=c.BUILTIN_IMAGE)
    knobs = _knobs(tmp_path, make_plan(containment=contained), "SINGULARITY_BIND_EXPR")
    assert _evaluate(knobs["SINGULARITY_BIND_EXPR"], {}) == "/usr:/usr:ro"
    assert _evaluate(knobs["SINGULARITY_BIND_EXPR"], {"SingularityImage": "/cvmfs/i"}) == ""


ROCKY = f"{BASE}/htc/rocky:9"


@pytest.mark.parametrize(
    ("named", "starts", "runs_in"),
    [
        pytest.param(None, True, ROCKY, id="no-image-the-default"),
        pytest.param("", True, ROCKY, id="an-empty-image-the-default"),
        pytest.param("/cvmfs/singularity.opensciencegrid.org/htc/rocky:8", True, None, id="cvmfs"),
        pytest.param("docker://htc/rocky:9", True, None, id="a-registry-image"),
        pytest.param(c.BUILTIN_IMAGE, True, None, id="the-built-in-image"),
        pytest.param("/pilot", False, ROCKY, id="the-pilot-directory"),
        pytest.param("/etc/condor", False, ROCKY, id="the-pilots-configuration"),
        pytest.param("/", False, ROCKY, id="the-root"),
        pytest.param("/cvmfs/../pilot", False, ROCKY, id="a-way-out-of-cvmfs"),
        pytest.param("/cvmfs/x/..", False, ROCKY, id="a-way-up"),
        pytest.param("cvmfs/x", False, ROCKY, id="a-relative-path"),
        pytest.param(f"{c.BUILTIN_IMAGE}/../../..", False, ROCKY, id="a-way-out-of-the-built-in"),
    ],
)
def test_a_job_may_name_its_own_image_only_where_images_are_published(
    tmp_path: Path, named: str | None, starts: bool, runs_in: str | None
) -> None:
    """Any other path would be a directory of the pilot's (/pilot holds the token) that
    Apptainer takes as the job's root: START keeps such a job off, and should one
    arrive anyway, it runs in the default image, never in the path it named."""
    contained = c.Containment(contained=True, apptainer="/usr/bin/apptainer", image=ROCKY)
    plan = make_plan(containment=contained)
    knobs = _knobs(tmp_path, plan, "START", "SINGULARITY_IMAGE_EXPR")
    job = {} if named is None else {"SingularityImage": named}
    term = render.image_start_clause(contained=True)

    assert knobs["START"].endswith(f" && {term}")
    assert _evaluate(term, job) is starts
    assert _evaluate(knobs["SINGULARITY_IMAGE_EXPR"], job) == (runs_in or named)


@pytest.mark.parametrize(
    ("job", "starts"),
    [({}, True), ({"SingularityImage": ""}, True), ({"SingularityImage": ROCKY}, False)],
    ids=["no-image", "an-empty-image", "an-image"],
)
def test_a_bare_pilot_starts_no_job_that_needs_an_image(
    tmp_path: Path, job: dict[str, str], starts: bool
) -> None:
    knobs = _knobs(tmp_path, make_plan(containment=c.NOT_DECIDED), "START")
    term = render.image_start_clause(contained=False)

    assert knobs["START"].endswith(f" && {term}")
    assert _evaluate(term, job) is starts
