"""Rendering: every tree is parsed by HTCondor's real config parser, never trusted blindly."""

from __future__ import annotations

import os
import random
from pathlib import Path, PurePosixPath

import pytest
from paths import GOLDEN
from render_plans import APPTAINER_PASSED, CONTAINED, make_plan, read_knobs

from ospool_ep.detect.osrelease import JobOs
from ospool_ep.findings import Findings, Status
from ospool_ep.inputs.attributes import ExtraAttribute
from ospool_ep.inputs.pools import POOL_NAMES, resolve_pool
from ospool_ep.inputs.settings import Settings
from ospool_ep.pilot import render


def rendered(plan: render.PilotPlan, tmp_path: Path) -> tuple[Path, Findings]:
    findings = Findings()
    ok = render.write_and_verify(plan, output=tmp_path / "cfg", findings=findings, environ={})
    assert ok, [f.as_line() for f in findings]
    return tmp_path / "cfg", findings


@pytest.mark.parametrize("pool", [*POOL_NAMES, "cm.example.edu", "cm.example.edu:9619"])
def test_every_pool_renders_a_tree_htcondor_accepts(pool: str, tmp_path: Path) -> None:
    plan = make_plan(Settings(site="S", resource_name="R", pool=pool))
    tree, _ = rendered(plan, tmp_path)
    knobs = read_knobs(tree, "CONDOR_HOST", "COLLECTOR_HOST", "CCB_ADDRESS", "DAEMON_LIST")
    assert knobs["DAEMON_LIST"] == "MASTER, STARTD"
    assert knobs["COLLECTOR_HOST"] == knobs["CONDOR_HOST"] == plan.pool.collector_host
    if "ospool" in pool:
        assert "?sock=collector" in knobs["CCB_ADDRESS"]
        assert "osg-htc.org" in knobs["CCB_ADDRESS"]
    elif "path-facility" in pool:
        # OSG's container: both PATh pools' CMs are their CCB, on a collector962N socket.
        assert ":9618?sock=collector962" in knobs["CCB_ADDRESS"]
    else:
        assert knobs["CCB_ADDRESS"] in ("None", "")


def test_ospool_uses_the_same_random_collector_socket_for_cms_and_ccbs() -> None:
    for seed in range(30):
        pool = resolve_pool(pool="ospool", itb=False, condor_host=None, rng=random.Random(seed))
        sockets = {part.split("?sock=")[1] for part in pool.ccb_address.split(",")}
        sockets |= {part.split("?sock=")[1] for part in pool.collector_host.split(",")}
        assert len(sockets) == 1
        assert 1 <= int(sockets.pop().removeprefix("collector")) <= 10


def test_itb_turns_ospool_into_the_itb_pool() -> None:
    pool = resolve_pool(pool="ospool", itb=True, condor_host=None, rng=random.Random(1))
    assert pool.name == "itb-ospool"
    assert "ospool-itb.osg-htc.org" in pool.collector_host


def test_condor_host_replaces_the_pools_central_managers() -> None:
    pool = resolve_pool(pool="ospool", itb=False, condor_host="a.b:9618,c.d", rng=random.Random())
    assert (pool.collector_host, pool.ccb_address) == ("a.b:9618,c.d", "")


def test_the_rendered_slot_start_and_lifetime_are_what_htcondor_reads(tmp_path: Path) -> None:
    plan = make_plan()
    tree, _ = rendered(plan, tmp_path)
    knobs = read_knobs(
        tree,
        "NUM_CPUS",
        "MEMORY",
        "START",
        "GLIDEIN_ToRetire",
        "GLIDEIN_ToDie",
        "STARTD_NOCLAIM_SHUTDOWN",
        "SLOT_TYPE_1_PARTITIONABLE",
        "SHARED_PORT_PORT",
        "SEC_TOKEN_DIRECTORY",
        "SEC_DEFAULT_AUTHENTICATION_METHODS",
        "NETWORK_HOSTNAME",
        "LOCAL_DIR",
        "EXECUTE",
        "STARTD_ATTRS",
        "IsOsgVoContainer",
        "OSPOOL_EP_PILOT_UUID",
        "WANT_HOLD",
    )
    assert knobs["NUM_CPUS"] == "4"
    assert knobs["MEMORY"] == "8000"
    assert knobs["START"] == render.start_of(plan)
    assert knobs["GLIDEIN_ToRetire"] == str(plan.lifetime.to_retire)
    assert knobs["GLIDEIN_ToDie"] == str(plan.lifetime.to_die)
    assert knobs["STARTD_NOCLAIM_SHUTDOWN"] == "1800"
    assert knobs["SLOT_TYPE_1_PARTITIONABLE"].lower() == "true"
    assert knobs["SHARED_PORT_PORT"] == "0"
    assert knobs["SEC_TOKEN_DIRECTORY"] == "/pilot/ospool-ep-test/tokens.d"
    assert knobs["SEC_DEFAULT_AUTHENTICATION_METHODS"].replace(" ", "") == "IDTOKENS,FS"
    assert knobs["NETWORK_HOSTNAME"] == "CHTC-Backfill.host1"
    assert knobs["EXECUTE"] == "/pilot/ospool-ep-test/execute"
    published = knobs["STARTD_ATTRS"].split()
    for name in render.BASE_PUBLISHED:
        assert name in published
    assert knobs["IsOsgVoContainer"] == "True"
    assert "MemoryUsage > Memory" in knobs["WANT_HOLD"]


def test_idle_shutdown_is_left_out_when_accept_idle_minutes_is_zero(tmp_path: Path) -> None:
    plan = make_plan(Settings(site="S", resource_name="R", accept_idle_minutes=0))
    tree, _ = rendered(plan, tmp_path)
    # 0 is HTCondor's own default: never shut down for want of a claim.
    assert read_knobs(tree, "STARTD_NOCLAIM_SHUTDOWN")["STARTD_NOCLAIM_SHUTDOWN"] == "0"


def test_extra_attributes_are_published_in_the_slot_ad(tmp_path: Path) -> None:
    extra = (
        ExtraAttribute(name="KUBERNETES_NAMESPACE", expression='"path-osgdev"', line=1),
        ExtraAttribute(name="FAST_DISK", expression="True", line=2),
    )
    tree, _ = rendered(make_plan(extra_attributes=extra), tmp_path)
    knobs = read_knobs(tree, "KUBERNETES_NAMESPACE", "FAST_DISK", "STARTD_ATTRS")
    assert knobs["KUBERNETES_NAMESPACE"] == '"path-osgdev"'
    assert knobs["FAST_DISK"] == "True"
    assert {"KUBERNETES_NAMESPACE", "FAST_DISK"} <= set(knobs["STARTD_ATTRS"].split())


def test_job_environment_carries_the_squid_and_extra_variables(tmp_path: Path) -> None:
    settings = Settings(
        site="My Site",
        resource_name="R",
        squid_url="http://squid.example.edu:3128",
        extra_job_env=(("FOO", "bar"),),
    )
    tree, _ = rendered(make_plan(settings), tmp_path)
    value = read_knobs(tree, "STARTER_JOB_ENVIRONMENT")["STARTER_JOB_ENVIRONMENT"]
    assert "http_proxy=http://squid.example.edu:3128" in value
    assert "GLIDEIN_Site='My Site'" in value
    assert "FOO=bar" in value


def test_a_quoted_extra_job_environment_reaches_htcondor_as_written(tmp_path: Path) -> None:
    """HTCondor's own config parser reads STARTER_JOB_ENVIRONMENT back with the quoted
    entries intact (a blank, a single quote and a double quote in values)."""
    settings = Settings(
        site="S", resource_name="R", extra_job_env=(("A", "x y"), ("B", "it's"), ("C", '"q"'))
    )
    tree, _ = rendered(make_plan(settings), tmp_path)
    value = read_knobs(tree, "STARTER_JOB_ENVIRONMENT")["STARTER_JOB_ENVIRONMENT"]
    assert (
        value
        == "\"GLIDEIN_Site=S GLIDEIN_ResourceName=R OSG_SITE_NAME=R A='x y' B='it''s' C=\"\"q\"\"\""
    )


def test_the_project_restriction_is_rendered_and_published(tmp_path: Path) -> None:
    tree, _ = rendered(
        make_plan(Settings(site="S", resource_name="R", project_name="Chem")), tmp_path
    )
    knobs = read_knobs(tree, "START", "OSG_PROJECT_NAME", "OSG_PROJECT_RESTRICTION", "OSPool")
    assert "(MY.OSG_PROJECT_RESTRICTION ?: true)" in knobs["START"]
    assert knobs["OSG_PROJECT_RESTRICTION"] == "TARGET.ProjectName =?= MY.OSG_PROJECT_NAME"
    assert knobs["OSG_PROJECT_NAME"] == '"Chem"'
    assert knobs["OSPool"] == "False"
    published = read_knobs(tree, "STARTD_ATTRS")["STARTD_ATTRS"].split()
    assert {"OSG_PROJECT_NAME", "OSG_PROJECT_RESTRICTION"} <= set(published)


PROD_EXTRA = "(True) && (TARGET.ITB_Sites =!= true)"


@pytest.mark.parametrize(
    ("pool", "condor_host", "expected"),
    [
        ("ospool", None, ("main-container", "True", PROD_EXTRA)),
        ("itb-ospool", None, ("itb-container", "False", "(True) && (TARGET.ITB_Sites =?= true)")),
        ("prod-path-facility", None, ("path-container", "False", "(True)")),
        ("dev-path-facility", None, ("path-container", "False", "(True)")),
        ("cm.example.edu", None, ("", "False", "(True)")),
        ("ospool", "cm.example.edu", ("main-container", "False", PROD_EXTRA)),
    ],
    ids=["prod", "itb", "path", "dev-path", "host", "condor-host"],
)
def test_the_pool_attributes_of_osgs_container_are_rendered_and_published(
    pool: str, condor_host: str | None, expected: tuple[str, str, str], tmp_path: Path
) -> None:
    """GLIDECLIENT_Group per pool, OSPool only for the production CMs, START_EXTRA
    with the pool's ITB clause; START requires START_EXTRA."""
    group, ospool, start_extra = expected
    settings = Settings(site="S", resource_name="R", pool=pool, condor_host=condor_host)
    tree, _ = rendered(make_plan(settings), tmp_path)
    knobs = read_knobs(tree, "GLIDECLIENT_Group", "OSPool", "START_EXTRA", "START", "STARTD_ATTRS")
    assert knobs["GLIDECLIENT_Group"] == f'"{group}"'
    assert knobs["OSPool"] == ospool
    assert knobs["START_EXTRA"] == start_extra
    assert "(MY.START_EXTRA)" in knobs["START"]
    assert {"GLIDECLIENT_Group", "OSPool", "START_EXTRA"} <= set(knobs["STARTD_ATTRS"].split())


def test_the_job_images_os_is_rendered_and_published(tmp_path: Path) -> None:
    job_os = JobOs(name="RHEL", version="9", kernel="6.8.0-31-generic")
    tree, _ = rendered(make_plan(job_os=job_os), tmp_path)
    names = [
        f"{prefix}_OS_{key}"
        for prefix in ("OSG", "OSGVO")
        for key in ("NAME", "VERSION", "STRING", "KERNEL")
    ]
    knobs = read_knobs(tree, *names, "STARTD_ATTRS")
    assert knobs["OSG_OS_NAME"] == knobs["OSGVO_OS_NAME"] == '"RHEL"'
    assert knobs["OSG_OS_VERSION"] == '"9"'
    assert knobs["OSG_OS_STRING"] == '"RHEL 9"'
    assert knobs["OSG_OS_KERNEL"] == '"6.8.0-31-generic"'
    assert set(names) <= set(knobs["STARTD_ATTRS"].split())


def test_an_unknown_job_image_os_is_not_published(tmp_path: Path) -> None:
    tree, _ = rendered(make_plan(job_os=None), tmp_path)
    assert "OSG_OS_" not in read_knobs(tree, "STARTD_ATTRS")["STARTD_ATTRS"]


@pytest.mark.parametrize(
    "evil",
    ['x"\nSTART = True', "x\nSTART = True", "x$(FOO)", "x\\", "a\rb"],
    ids=["quote-newline", "newline", "macro", "backslash", "carriage-return"],
)
def test_an_unvalidated_unsafe_value_is_refused_not_rendered(evil: str, tmp_path: Path) -> None:
    """Defence in depth: even a Settings built around validation cannot inject a line."""
    plan = make_plan(Settings(site=evil, resource_name="R"))
    with pytest.raises(ValueError, match="unsafe"):
        render.write_and_verify(plan, output=tmp_path / "cfg", findings=Findings(), environ={})


def test_a_tree_htcondor_rejects_fails_with_htcondors_own_words(tmp_path: Path) -> None:
    tree, _ = rendered(make_plan(), tmp_path)
    with (tree / "config.d" / "40-slot.conf").open("a") as broken:
        broken.write("if true\n")
    findings = Findings()
    ok = render.verify_tree(output=tree, expected={"NUM_CPUS": "4"}, findings=findings, environ={})
    assert not ok
    assert "rejected" in findings.failures[0].message
    assert "endif" in findings.failures[0].message


def test_a_site_override_of_a_pilot_knob_is_honoured_not_failed(tmp_path: Path) -> None:
    findings = Findings()
    ok = render.write_and_verify(
        make_plan(),
        output=tmp_path / "cfg",
        findings=findings,
        environ={"_CONDOR_START": "$(START) && (TARGET.RequestCpus < 3)"},
    )
    assert ok, [f.as_line() for f in findings]


def test_a_macro_cycle_times_out_with_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle makes HTCondor's lookups spin forever; the check gives up and says why."""
    monkeypatch.setattr(render, "PARSER_TIMEOUT_SECONDS", 3)
    findings = Findings()
    ok = render.write_and_verify(
        make_plan(),
        output=tmp_path / "cfg",
        findings=findings,
        environ={"_CONDOR_LOCAL_DIR": "$(CYCLE)", "_CONDOR_CYCLE": "$(LOCAL_DIR)"},
    )
    assert not ok
    assert findings.failures[0].status is Status.FAIL
    assert "did not finish" in findings.failures[0].message


def test_rerendering_replaces_stale_files(tmp_path: Path) -> None:
    tree, _ = rendered(make_plan(), tmp_path)
    stale = tree / "config.d" / "99-stale.conf"
    stale.write_text("START = True\n")
    rendered(make_plan(), tmp_path)
    assert not stale.exists()


def test_the_rendered_tree_matches_the_golden_files(tmp_path: Path) -> None:
    """Any change to the rendered configuration shows up here as a reviewable diff.

    Regenerate with ``OSPOOL_EP_UPDATE_GOLDEN=1 pytest tests/unit/pilot/test_render.py``.
    """
    settings = Settings(
        site="Wisconsin",
        resource_name="CHTC Backfill",
        project_name="Chemistry",
        squid_url="http://squid.example.edu:3128",
        start_extra='TARGET.Owner =!= "mallory"',
    )
    extra = (ExtraAttribute(name="KUBERNETES_NAMESPACE", expression='"osg"', line=1),)
    files = render.render_files(
        make_plan(
            settings,
            extra_attributes=extra,
            containment=CONTAINED,
            apptainer=APPTAINER_PASSED,
            job_os=JobOs(name="RHEL", version="9", kernel="6.8.0-31-generic"),
        ),
        config_dir=PurePosixPath("/etc/ospool-ep"),
    )
    if os.environ.get("OSPOOL_EP_UPDATE_GOLDEN"):
        for relative, text in files.items():
            target = GOLDEN / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    golden = {
        str(path.relative_to(GOLDEN)): path.read_text()
        for path in sorted(GOLDEN.rglob("*"))
        if path.is_file()
    }
    assert files == golden


@pytest.mark.parametrize(
    ("idle_minutes", "expected"),
    [(0, None), (1, 30), (2, 60), (9, 270), (10, None), (30, None)],
)
def test_a_short_idle_timeout_gets_updates_often_enough_to_act_on_it(
    idle_minutes: int, expected: int | None
) -> None:
    """The startd checks STARTD_NOCLAIM_SHUTDOWN when it updates the collector (300 s by
    default): short timeouts get half their length, long ones keep HTCondor's default."""
    assert render.update_interval(idle_minutes * 60) == expected


def test_the_update_interval_is_rendered_only_when_needed(tmp_path: Path) -> None:
    short = make_plan(Settings(site="S", resource_name="R", accept_idle_minutes=1))
    tree, _ = rendered(short, tmp_path / "short")
    assert read_knobs(tree, "UPDATE_INTERVAL")["UPDATE_INTERVAL"] == "30"
    default = make_plan(Settings(site="S", resource_name="R"))
    tree, _ = rendered(default, tmp_path / "default")
    assert read_knobs(tree, "UPDATE_INTERVAL")["UPDATE_INTERVAL"] == "300"
