"""CVMFS: the mode choice, repo probes on real directory trees, the cron job's output, and
what the templates make of it, read back by HTCondor's own parser (SPEC 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from render_plans import make_plan, read_knobs

from ospool_ep.cvmfs import plan as cvmfs
from ospool_ep.cvmfs import probe as cvmfs_probe
from ospool_ep.cvmfs.probe import RepoHealth, check_repo, cron_ad, mount_kind, probe_many
from ospool_ep.findings import Findings, Kind, Status
from ospool_ep.inputs.settings import Settings
from ospool_ep.pilot import render

CONFIG = cvmfs.CONFIG_REPO
OASIS = "oasis.opensciencegrid.org"
SINGULARITY = "singularity.opensciencegrid.org"
HEALTHY = RepoHealth(repo=CONFIG, healthy=True, mount="fuse", fqrn=CONFIG, revision=7)
BROKEN = RepoHealth(repo=CONFIG, healthy=False, problem="/cvmfs/x is empty")


def tree(root: Path, *repos: str, empty: tuple[str, ...] = ()) -> Path:
    """A /cvmfs of plain directories, as a bind of the host's would look."""
    for repo in repos:
        (root / repo / "etc").mkdir(parents=True)
    for repo in empty:
        (root / repo).mkdir(parents=True)
    return root


# -- mode choice (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "config_repo", "repos", "dist_problem", "mode", "fails"),
    [
        ("auto", HEALTHY, (), None, "bind", False),
        ("auto", HEALTHY, ("a.b.org",), None, "bind", False),
        ("auto", BROKEN, ("a.b.org",), None, "cvmfsexec", False),
        ("auto", None, ("a.b.org",), "no dist", "cvmfsexec", True),
        ("auto", BROKEN, (), None, "none", False),
        ("bind", HEALTHY, (), None, "bind", False),
        ("bind", BROKEN, (), None, "bind", True),
        ("cvmfsexec", HEALTHY, (), None, "cvmfsexec", False),
        ("cvmfsexec", None, (), "no dist", "cvmfsexec", True),
        ("none", HEALTHY, ("a.b.org",), None, "none", False),
    ],
)
def test_the_mode_follows_spec_9_1(  # noqa: PLR0917 - one parameter per column
    setting: str,
    config_repo: RepoHealth | None,
    repos: tuple[str, ...],
    dist_problem: str | None,
    mode: str,
    fails: bool,
) -> None:
    """auto: bind on a healthy host config repo, else cvmfsexec when repos are asked for,
    else none; an explicit mode that cannot work here is a problem, never a silent switch."""
    choice = cvmfs.choose_mode(
        setting=setting,
        config_repo=config_repo,
        cvmfsexec_repos=repos,
        distribution_problem=dist_problem,
    )
    assert choice.mode == mode
    assert bool(choice.problem) is fails
    assert choice.reason


def plan(
    settings: Settings, root: Path, tmp_path: Path, **kwargs: object
) -> tuple[cvmfs.CvmfsPlan, Findings]:
    findings = Findings()
    result = cvmfs.plan_cvmfs(
        settings,
        root=root,
        distribution=kwargs.get("distribution", tmp_path / "no-dist"),  # type: ignore[arg-type]
        fuse_device=kwargs.get("fuse", tmp_path / "no-fuse"),  # type: ignore[arg-type]
        python=sys.executable,
        findings=findings,
    )
    return result, findings


def lines(findings: Findings) -> list[str]:
    return [f.as_line() for f in findings]


def test_a_healthy_host_tree_is_bind_mode_with_a_check_line_per_repo(tmp_path: Path) -> None:
    root = tree(tmp_path / "cvmfs", CONFIG, OASIS, SINGULARITY)
    result, findings = plan(Settings(site="S", resource_name="R"), root, tmp_path)
    assert result.mode == "bind"
    assert [h.repo for h in result.health] == [CONFIG, OASIS, SINGULARITY]
    assert all(h.healthy and h.mount == "directory" for h in result.health)
    assert result.required == (CONFIG, OASIS, SINGULARITY)
    assert result.node_validated
    assert findings[0].subject == "CVMFS" and "bind" in findings[0].message
    assert [f.subject for f in findings[1:-1]] == [f"CVMFS {r}" for r in result.repos]
    assert findings[-1].subject == "CVMFS other repos"
    assert findings[-1].message == f"0 of {len(result.published)} of OSG's list available"


def test_the_rest_of_osgs_repos_are_probed_and_published_never_required(tmp_path: Path) -> None:
    """A job that needs HAS_CVMFS_cms_cern_ch matches where the host has cms.cern.ch; a
    host without it is no less validated (osg-flock's advertise-base list)."""
    root = tree(tmp_path / "cvmfs", CONFIG, OASIS, SINGULARITY, "cms.cern.ch")
    result, findings = plan(Settings(site="S", resource_name="R"), root, tmp_path)
    assert set(result.published) == set(cvmfs.UPSTREAM_REPOS) - {OASIS, SINGULARITY}
    assert len(cvmfs.UPSTREAM_REPOS) == 31
    found = dict(result.published_at_start())
    assert found["cms.cern.ch"] is not None and found["cms.cern.ch"].healthy
    assert found["atlas.cern.ch"] is not None and not found["atlas.cern.ch"].healthy
    assert "cms.cern.ch" not in result.required and result.node_validated
    assert not [f for f in findings if f.status is not Status.PASS]
    assert findings[-1].message.endswith("available: cms.cern.ch")
    arguments = " ".join(result.cron_arguments())
    assert "--publish cms.cern.ch" in arguments and "--publish atlas.cern.ch" in arguments
    tree_dir = tmp_path / "cfg"
    files = render.render_files(make_plan(cvmfs=result), config_dir=tree_dir)
    render.write_tree(files, output=tree_dir)
    knobs = read_knobs(tree_dir, "HAS_CVMFS_cms_cern_ch", "HAS_CVMFS_atlas_cern_ch", "STARTD_ATTRS")
    assert (knobs["HAS_CVMFS_cms_cern_ch"], knobs["HAS_CVMFS_atlas_cern_ch"]) == ("True", "False")
    published = knobs["STARTD_ATTRS"].split()
    assert {cvmfs_probe.has_attribute(repo) for repo in cvmfs.UPSTREAM_REPOS} <= set(published)


def test_without_cvmfs_every_repo_of_osgs_list_is_published_false(tmp_path: Path) -> None:
    result, _ = plan(Settings(site="S", resource_name="R"), tmp_path / "none", tmp_path)
    tree_dir = tmp_path / "cfg"
    render.write_tree(
        render.render_files(make_plan(cvmfs=result), config_dir=tree_dir), output=tree_dir
    )
    names = [cvmfs_probe.has_attribute(repo) for repo in cvmfs.UPSTREAM_REPOS]
    knobs = read_knobs(tree_dir, *names, "STARTD_ATTRS")
    assert {knobs[name] for name in names} == {"False"}
    assert set(names) <= set(knobs["STARTD_ATTRS"].split())


def test_an_empty_repo_is_not_healthy_and_not_required(tmp_path: Path) -> None:
    """An empty listing: WARN, HAS_CVMFS false; the node stays validated (the repo was
    never good here, so jobs needing it simply do not match)."""
    root = tree(tmp_path / "cvmfs", CONFIG, SINGULARITY, empty=(OASIS,))
    settings = Settings(site="S", resource_name="R", cvmfsexec_repos=("extra.example.org",))
    result, findings = plan(settings, root, tmp_path)
    health = {h.repo: h for h in result.health}
    assert not health[OASIS].healthy and "is empty" in health[OASIS].problem
    assert not health["extra.example.org"].healthy
    assert "does not exist" in health["extra.example.org"].problem
    assert OASIS not in result.required
    assert result.node_validated
    warned = [f for f in findings if f.status is Status.WARN]
    assert [f.subject for f in warned] == [f"CVMFS {OASIS}", "CVMFS extra.example.org"]


def test_no_host_cvmfs_and_no_repos_runs_without_cvmfs_and_says_so(tmp_path: Path) -> None:
    result, findings = plan(Settings(site="S", resource_name="R"), tmp_path / "none", tmp_path)
    assert (result.mode, result.health) == ("none", ())
    assert [(f.status, f.subject) for f in findings] == [(Status.WARN, "CVMFS")]
    assert "CVMFSEXEC_REPOS is empty" in findings[0].message


def test_cvmfsexec_without_a_distribution_is_an_environment_failure(tmp_path: Path) -> None:
    """Exit 69 (not 78), naming the missing distribution and how to get one."""
    settings = Settings(site="S", resource_name="R", cvmfsexec_repos=(OASIS,))
    _, findings = plan(settings, tmp_path / "none", tmp_path)
    (fail,) = findings.failures
    assert fail.kind is Kind.ENVIRONMENT
    assert "no cvmfsexec distribution" in fail.message
    assert "CVMFSEXEC_VERSION" in fail.fix
    assert findings.exit_code() == 69


def test_cvmfsexec_with_a_distribution_but_no_fuse_device_fails(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "dist").mkdir(parents=True)
    (dist / "cvmfsexec").write_text("#!/bin/sh\n")
    settings = Settings(site="S", resource_name="R", cvmfs_mode="cvmfsexec")
    result, findings = plan(settings, tmp_path / "none", tmp_path, distribution=dist)
    assert result.mode == "cvmfsexec"
    assert ["/dev/fuse" in f.fix for f in findings.failures] == [True]
    fuse = tmp_path / "fuse"
    fuse.touch()
    _, findings = plan(settings, tmp_path / "none", tmp_path, distribution=dist, fuse=fuse)
    assert not findings.has_failures(), lines(findings)


def test_bind_asked_for_without_host_cvmfs_fails(tmp_path: Path) -> None:
    settings = Settings(site="S", resource_name="R", cvmfs_mode="bind")
    _, findings = plan(settings, tmp_path / "none", tmp_path)
    assert [(f.kind, "CVMFS_MODE=bind" in f.message) for f in findings.failures] == [
        (Kind.ENVIRONMENT, True)
    ]


# -- probes ------------------------------------------------------------------------------------


def test_mountinfo_tells_fuse_from_other_mounts_and_decodes_blanks() -> None:
    info = (
        "36 25 0:32 / /cvmfs rw - ext4 /dev/vda rw\n"
        "40 36 0:50 / /cvmfs/oasis.opensciencegrid.org ro - fuse cvmfs2 ro\n"
        "41 36 0:51 / /cvmfs/a\\040b ro - fuse.squashfuse squashfuse ro\n"
    )
    assert mount_kind(info, "/cvmfs") == "mount"
    assert mount_kind(info, "/cvmfs/oasis.opensciencegrid.org") == "fuse"
    assert mount_kind(info, "/cvmfs/a b") == "fuse"
    assert mount_kind(info, "/cvmfs/other") is None


def test_xattrs_are_read_when_present_and_unknown_when_absent(tmp_path: Path) -> None:
    """user.fqrn/user.revision/user.nioerr as cvmfs sets them; a plain directory has none,
    which is unknown, not failed (SPEC 9.2)."""
    root = tree(tmp_path, CONFIG, OASIS)
    try:
        os.setxattr(root / CONFIG, "user.fqrn", CONFIG.encode())
        os.setxattr(root / CONFIG, "user.revision", b"1234")
        os.setxattr(root / CONFIG, "user.nioerr", b"2")
        os.setxattr(root / CONFIG, "user.timestamp_last_ioerr", b"1790000000")
    except OSError as error:
        pytest.skip(f"no user xattrs on {tmp_path}: {error}")
    with_xattrs = check_repo(str(root), CONFIG)
    assert with_xattrs.last_ioerr == 1_790_000_000
    assert (with_xattrs.healthy, with_xattrs.fqrn, with_xattrs.revision, with_xattrs.nioerr) == (
        True,
        CONFIG,
        1234,
        2,
    )
    plain = check_repo(str(root), OASIS)
    assert (plain.healthy, plain.fqrn, plain.revision) == (True, None, None)
    assert "unknown revision" in plain.summary()


def test_a_repo_serving_another_name_is_not_healthy(tmp_path: Path) -> None:
    root = tree(tmp_path, OASIS)
    try:
        os.setxattr(root / OASIS, "user.fqrn", b"other.example.org")
    except OSError as error:
        pytest.skip(f"no user xattrs: {error}")
    result = check_repo(str(root), OASIS)
    assert not result.healthy and "serves other.example.org" in result.problem


def test_every_repo_is_probed_in_its_own_subprocess(tmp_path: Path) -> None:
    root = tree(tmp_path, CONFIG, empty=(OASIS,))
    results = probe_many([CONFIG, OASIS, "missing.example.org"], root=str(root), timeout=20)
    assert [(r.repo, r.healthy) for r in results] == [
        (CONFIG, True),
        (OASIS, False),
        ("missing.example.org", False),
    ]


def test_a_probe_that_hangs_is_given_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken FUSE mount hangs stat: the probe's process is killed at the deadline and
    the repo counts as broken, while the other repos are still answered."""
    real = cvmfs_probe.probe_command

    def hanging(root: str, *repos: str) -> list[str]:
        if repos == (OASIS,):
            return [sys.executable, "-c", "import time; time.sleep(60)"]
        return real(root, *repos)

    monkeypatch.setattr(cvmfs_probe, "probe_command", hanging)
    root = tree(tmp_path, CONFIG, OASIS)
    results = probe_many([CONFIG, OASIS], root=str(root), timeout=2)
    assert results[0].healthy
    assert not results[1].healthy and "no answer within 2 s" in results[1].problem


def test_nothing_mounted_and_nothing_there_needs_no_subprocess(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n")
    assert cvmfs.nothing_mounted_under("/cvmfs", mountinfo=mountinfo)
    mountinfo.write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n30 22 0:5 / /cvmfs rw - autofs x\n")
    assert not cvmfs.nothing_mounted_under("/cvmfs", mountinfo=mountinfo)


# -- the cron job ------------------------------------------------------------------------------


def test_the_cron_ad_publishes_each_repo_and_validation_of_the_required_ones() -> None:
    results = [
        RepoHealth(repo=CONFIG, healthy=True, revision=12, nioerr=0),
        RepoHealth(repo=OASIS, healthy=False, problem='"/cvmfs/oasis" is empty\\'),
        RepoHealth(repo="extra.example.org", healthy=False, problem="gone"),
    ]
    ad = cron_ad(results, required=[CONFIG, "extra.example.org"])
    assert ad == [
        "HAS_CVMFS_config_osg_opensciencegrid_org = true",
        "CVMFS_config_osg_opensciencegrid_org_REVISION = 12",
        "CVMFS_config_osg_opensciencegrid_org_NIOERR = 0",
        "HAS_CVMFS_oasis_opensciencegrid_org = false",
        "HAS_CVMFS_extra_example_org = false",
        "OSG_NODE_VALIDATED = false",
        'OSPOOL_EP_CVMFS_PROBLEMS = "oasis.opensciencegrid.org: /cvmfs/oasis is empty; '
        'extra.example.org: gone"',
    ]
    assert "OSG_NODE_VALIDATED = true" in cron_ad(results, required=[CONFIG])


def test_the_cron_ad_publishes_the_age_of_the_last_io_error_as_upstream() -> None:
    """osg-flock: CVMFS_<repo>_LAST_IOERR is seconds since the last error, -1 for none."""
    results = [
        RepoHealth(repo=CONFIG, healthy=True, nioerr=3, last_ioerr=1_000),
        RepoHealth(repo=OASIS, healthy=True, nioerr=0, last_ioerr=0),
    ]
    ad = cron_ad(results, required=[CONFIG], now=1_600)
    assert "CVMFS_config_osg_opensciencegrid_org_LAST_IOERR = 600" in ad
    assert "CVMFS_oasis_opensciencegrid_org_LAST_IOERR = -1" in ad


def test_published_only_repos_are_never_counted_as_problems() -> None:
    results = [
        RepoHealth(repo=CONFIG, healthy=True),
        RepoHealth(repo="cms.cern.ch", healthy=False, problem="/cvmfs/cms.cern.ch does not exist"),
    ]
    ad = cron_ad(results, required=[CONFIG], published=["cms.cern.ch"])
    assert "HAS_CVMFS_cms_cern_ch = false" in ad
    assert 'OSPOOL_EP_CVMFS_PROBLEMS = ""' in ad
    assert "OSG_NODE_VALIDATED = true" in ad


def test_the_cron_job_output_is_read_by_htcondors_classad_parser(tmp_path: Path) -> None:
    """What the startd reads: one `Attr = value` line each, parsed by classad2."""
    classad2 = pytest.importorskip("classad2")
    root = tree(tmp_path, CONFIG, empty=(OASIS,))
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-m",
            "ospool_ep.cvmfs.probe",
            "cron",
            "--root",
            str(root),
            "--require",
            CONFIG,
            "--probe",
            OASIS,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    ad = classad2.parseOne(out)
    assert ad["HAS_CVMFS_config_osg_opensciencegrid_org"] is True
    assert ad["HAS_CVMFS_oasis_opensciencegrid_org"] is False
    assert ad["OSG_NODE_VALIDATED"] is True
    assert "is empty" in ad["OSPOOL_EP_CVMFS_PROBLEMS"]
    # The repo that was required goes bad: the node is no longer validated.
    (root / CONFIG / "etc").rmdir()
    again = subprocess.run(
        [sys.executable, "-I", "-m", "ospool_ep.cvmfs.probe", "cron", "--root", str(root),
         "--require", CONFIG],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert classad2.parseOne(again)["OSG_NODE_VALIDATED"] is False


# -- rendering -----------------------------------------------------------------------------


def bind_plan(tmp_path: Path, *, seconds: int = 240) -> cvmfs.CvmfsPlan:
    health = (
        RepoHealth(repo=CONFIG, healthy=True, revision=5),
        RepoHealth(repo=OASIS, healthy=True),
        RepoHealth(repo=SINGULARITY, healthy=False, problem="empty"),
    )
    return cvmfs.CvmfsPlan(
        mode="bind",
        reason="host CVMFS",
        root="/cvmfs",
        repos=(CONFIG, OASIS, SINGULARITY),
        health=health,
        check_seconds=seconds,
        python="/usr/bin/python3",
    )


def test_bind_mode_renders_the_start_values_and_the_cron_job(tmp_path: Path) -> None:
    cvmfs_plan = bind_plan(tmp_path, seconds=5)
    pilot = make_plan(cvmfs=cvmfs_plan, node_validated=cvmfs_plan.node_validated)
    findings = Findings()
    assert render.write_and_verify(pilot, output=tmp_path / "cfg", findings=findings, environ={})
    knobs = read_knobs(
        tmp_path / "cfg",
        "HAS_CVMFS_config_osg_opensciencegrid_org",
        "CVMFS_config_osg_opensciencegrid_org_REVISION",
        "HAS_CVMFS_singularity_opensciencegrid_org",
        "STARTD_ATTRS",
        "STARTD_CRON_JOBLIST",
        "STARTD_CRON_OSPOOL_EP_CVMFS_EXECUTABLE",
        "STARTD_CRON_OSPOOL_EP_CVMFS_ARGS",
        "STARTD_CRON_OSPOOL_EP_CVMFS_PERIOD",
        "STARTD_CRON_AUTOPUBLISH",
        "OSPOOL_EP_CVMFS_MODE",
    )
    assert knobs["HAS_CVMFS_config_osg_opensciencegrid_org"] == "True"
    assert knobs["CVMFS_config_osg_opensciencegrid_org_REVISION"] == "5"
    assert knobs["HAS_CVMFS_singularity_opensciencegrid_org"] == "False"
    assert "HAS_CVMFS_oasis_opensciencegrid_org" in knobs["STARTD_ATTRS"].split()
    # use FEATURE : GPUs adds its own GPUs_MONITOR job.
    assert "OSPOOL_EP_CVMFS" in knobs["STARTD_CRON_JOBLIST"].split()
    assert knobs["STARTD_CRON_OSPOOL_EP_CVMFS_EXECUTABLE"] == "/usr/bin/python3"
    args = knobs["STARTD_CRON_OSPOOL_EP_CVMFS_ARGS"].split()
    assert args[:4] == ["-I", "-m", "ospool_ep.cvmfs.probe", "cron"]
    # Healthy at start: required; bad at start: only reported.
    assert " ".join(args).endswith(f"--require {CONFIG} --require {OASIS} --probe {SINGULARITY}")
    assert "--timeout 2.5" in " ".join(args)
    assert knobs["STARTD_CRON_OSPOOL_EP_CVMFS_PERIOD"] == "5"
    assert knobs["STARTD_CRON_AUTOPUBLISH"] == "If_Changed"
    assert knobs["OSPOOL_EP_CVMFS_MODE"] == '"bind"'


def test_none_mode_publishes_every_repo_false_and_runs_no_cron_job(tmp_path: Path) -> None:
    cvmfs_plan = replace(bind_plan(tmp_path), mode="none", health=())
    pilot = make_plan(cvmfs=cvmfs_plan)
    findings = Findings()
    assert render.write_and_verify(pilot, output=tmp_path / "cfg", findings=findings, environ={})
    knobs = read_knobs(
        tmp_path / "cfg", "HAS_CVMFS_oasis_opensciencegrid_org", "STARTD_CRON_JOBLIST"
    )
    assert knobs["HAS_CVMFS_oasis_opensciencegrid_org"] == "False"
    assert "OSPOOL_EP_CVMFS" not in knobs["STARTD_CRON_JOBLIST"].split()


def test_the_problems_summary_is_rendered_at_start_as_the_cron_job_publishes_it() -> None:
    """The first ad the startd sends carries OSPOOL_EP_CVMFS_PROBLEMS (rendered from the
    start-up probe); the cron job's later value has the same form."""
    from ospool_ep.cvmfs.probe import RepoHealth, cron_ad, problems_summary

    results = [
        RepoHealth(repo="a.example.org", healthy=True),
        RepoHealth(repo="b.example.org", healthy=False, problem='/cvmfs/b is "empty" $x'),
    ]
    summary = problems_summary(results)
    assert summary == "b.example.org: /cvmfs/b is empty x"
    assert f'OSPOOL_EP_CVMFS_PROBLEMS = "{summary}"' in cron_ad(results, required=())


def test_published_repos_share_one_probe_and_each_gets_its_result(tmp_path: Path) -> None:
    """OSG's long list (published only) is probed in one process, in turn: a healthy
    repo, an empty one and a missing one each get their own result, after the others'."""
    root = tree(tmp_path, CONFIG, OASIS, empty=("empty.example.org",))

    results = probe_many(
        [CONFIG],
        root=str(root),
        timeout=20,
        batched=[OASIS, "empty.example.org", "missing.example.org"],
    )

    assert [(r.repo, r.healthy) for r in results] == [
        (CONFIG, True),
        (OASIS, True),
        ("empty.example.org", False),
        ("missing.example.org", False),
    ]
    assert "does not exist" in results[3].problem


def test_a_batch_that_hangs_keeps_what_it_answered_and_marks_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung mount in the batch: the repos probed before it keep their results, it and
    the ones after it count as not answering; the separately probed repos are unaffected."""
    real = cvmfs_probe.probe_command
    answered = json.dumps({"repo": OASIS, "healthy": True})

    def hanging(root: str, *repos: str) -> list[str]:
        if len(repos) > 1:
            code = f"import time; print({answered!r}, flush=True); time.sleep(60)"
            return [sys.executable, "-c", code]
        return real(root, *repos)

    monkeypatch.setattr(cvmfs_probe, "probe_command", hanging)
    root = tree(tmp_path, CONFIG, OASIS)

    results = probe_many([CONFIG], root=str(root), timeout=2, batched=[OASIS, "hung.example.org"])

    assert [(r.repo, r.healthy) for r in results] == [
        (CONFIG, True),
        (OASIS, True),
        ("hung.example.org", False),
    ]
    assert "no answer within 2 s" in results[2].problem
