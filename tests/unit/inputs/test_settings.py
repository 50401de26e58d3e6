"""Contracts of settings and values: the environment -> one Settings (SPEC 4.1, 5.2).

Pure code, no I/O: each test hands ``load_settings`` a plain mapping and reads
back the frozen ``Settings`` and the PASS/WARN/FAIL findings. The minimal
environment is the two required variables; every other variable has the
default SPEC 4.1 gives it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import PurePosixPath

import pytest
from jwt_factory import DAY, NOW, make_jwt, payload

from ospool_ep.findings import Finding, Findings, Status
from ospool_ep.inputs import values as ev
from ospool_ep.inputs.settings import Settings, load_settings
from ospool_ep.inputs.variables import NAMES as VARIABLE_NAMES

MINIMAL = {"GLIDEIN_Site": "Example Site", "GLIDEIN_ResourceName": "Example_CE"}

SECRET_TOKEN = make_jwt(claims=payload(iat=NOW, exp=NOW + 30 * DAY))
SIGNATURE = SECRET_TOKEN.rsplit(".", 1)[1]


def load(
    environ: Mapping[str, str] | None = None, **extra: str
) -> tuple[Settings | None, Findings]:
    """``load_settings`` on MINIMAL plus ``environ``/``extra``; a value of None is left out."""
    merged = {**MINIMAL, **(environ or {}), **extra}
    findings = Findings()
    settings = load_settings({k: v for k, v in merged.items() if v is not None}, findings=findings)
    return settings, findings


def of(findings: Findings, status: Status, subject: str | None = None) -> list[Finding]:
    return [f for f in findings if f.status is status and (subject is None or f.subject == subject)]


def all_text(findings: Findings) -> str:
    """Everything a report would print: subjects, messages and fixes, one line each."""
    return "\n".join(f.as_line() for f in findings) + "\n" + repr(list(findings))


# ------------------------------------------------------------------ defaults


SPEC_DEFAULTS = {
    "start_extra": "True",
    "project_name": None,
    "squid_url": None,
    "pool": "ospool",
    "condor_host": None,
    "itb": False,
    "accept_jobs_for_hours": 336,
    "retirement_hours": 24,
    "accept_idle_minutes": 30,
    "num_cpus": None,
    "memory_mb": None,
    "cvmfsexec_repos": (),
    "cvmfs_http_proxy": None,
    "cvmfs_quota_limit_mb": None,
    "cvmfsexec_debug": False,
    "cvmfs_mode": "auto",
    "cvmfs_check_seconds": 240,
    "osdf_check_seconds": 1800,
    "token_text": None,
    "randomize_name": False,
    "singularity_disable_pid_namespaces": False,
    "singularity_bind_extra": (),
    "extra_job_env": (),
    "apptainer_registry_mirror": None,
    "shutdown_grace_seconds": 25,
    "pilot_walltime_seconds": None,
    "memory_overhead_mb": 100,
    "min_disk_gb": 5.0,
    "log_format": "text",
    "job_containment": "required",
    "metrics_port": None,
    "notify_start_url": None,
    "notify_stop_url": None,
    "topology_check": False,
    "pilot_dir": PurePosixPath("/pilot"),
    "token_dir": PurePosixPath("/etc/condor/tokens-orig.d"),
    "extra_attributes_file": PurePosixPath("/etc/osg/extra-attributes.cfg"),
    "job_http_proxy": None,
    "job_https_proxy": None,
    "job_ftp_proxy": None,
    "osg_hostname": None,
    "enable_remote_syslog": True,
    "syslog_host": None,  # the pool's own receiver (pilot.remotelog.decide)
    "registry_host": None,
    "ccb_range_low": None,
    "ccb_range_high": None,
    "garbage_collection": True,
    "institution_id": None,
    "default_container_distribution": ((10, "htc/rocky:8"), (90, "htc/rocky:9")),
    "default_container_distribution_gpu": ((100, "htc/rocky:9-cuda-12.6.0"),),
    "supervisord_restart_policy": None,
    "allow_cpujob_on_gpuslot": None,
    "container_pilot_use_job_hook": None,
    "condor_overrides": (),
}


def test_a_minimal_environment_gives_every_spec_default() -> None:
    """With only GLIDEIN_Site and GLIDEIN_ResourceName set, every field has its SPEC 4.1 default."""
    settings, findings = load()
    assert settings is not None, all_text(findings)
    assert settings.site == "Example Site"
    assert settings.resource_name == "Example_CE"
    actual = {name: getattr(settings, name) for name in SPEC_DEFAULTS}
    assert actual == SPEC_DEFAULTS
    assert not of(findings, Status.FAIL)
    assert not of(findings, Status.WARN)


def test_the_defaults_table_covers_every_settings_field() -> None:
    """No field of Settings escapes the defaults check above."""
    fields = {f.name for f in dataclasses.fields(Settings)} - {"site", "resource_name"}
    assert fields == set(SPEC_DEFAULTS)


def test_the_minimal_environment_reports_a_pass_for_each_required_variable() -> None:
    """The report names the site and resource it found, as PASS lines."""
    _, findings = load()
    assert [f.message for f in of(findings, Status.PASS, "GLIDEIN_Site")] == ["Example Site"]
    assert [f.message for f in of(findings, Status.PASS, "GLIDEIN_ResourceName")] == ["Example_CE"]


@pytest.mark.parametrize("name", ["GLIDEIN_Site", "GLIDEIN_ResourceName"])
@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_a_required_variable_that_is_missing_or_blank_fails_by_name(
    name: str, value: str | None
) -> None:
    """GLIDEIN_Site and GLIDEIN_ResourceName are required: absent or blank is a FAIL naming it."""
    settings, findings = load({name: value})
    assert settings is None
    fails = of(findings, Status.FAIL, name)
    assert len(fails) == 1
    assert "not set" in fails[0].message
    assert name in fails[0].fix


def test_empty_optional_variables_mean_their_defaults() -> None:
    """An optional variable set to an empty or blank string is the same as unset."""
    blank = {name: " " for name in VARIABLE_NAMES if name not in MINIMAL}
    settings, findings = load(blank)
    assert settings is not None, all_text(findings)
    assert {name: getattr(settings, name) for name in SPEC_DEFAULTS} == SPEC_DEFAULTS


# ------------------------------------------------------------------ good forms

GOOD_FORMS = [
    # (variable, raw value, Settings field, parsed value)
    ("GLIDEIN_Site", "  Example Site  ", "site", "Example Site"),
    ("GLIDEIN_Site", "Zürich-ETH_1", "site", "Zürich-ETH_1"),
    ("GLIDEIN_ResourceName", "x" * 128, "resource_name", "x" * 128),
    (
        "GLIDEIN_Start_Extra",
        'TARGET.Owner == "alice" && TARGET.RequestCpus <= 4',
        "start_extra",
        'TARGET.Owner == "alice" && TARGET.RequestCpus <= 4',
    ),
    ("OSG_PROJECT_NAME", "My.Project_1-a", "project_name", "My.Project_1-a"),
    ("OSG_SQUID_LOCATION", "squid.example.edu:3128", "squid_url", "http://squid.example.edu:3128"),
    (
        "OSG_SQUID_LOCATION",
        "http://squid.example.edu:3128",
        "squid_url",
        "http://squid.example.edu:3128",
    ),
    (
        "OSG_SQUID_LOCATION",
        "HTTP://squid.example.edu:3128/",
        "squid_url",
        "http://squid.example.edu:3128",
    ),
    ("OSG_SQUID_LOCATION", "10.0.0.5:8080", "squid_url", "http://10.0.0.5:8080"),
    # No port: OSG's convention, squid's port 3128 (osg-configure appends it).
    ("OSG_SQUID_LOCATION", "squid.example.edu", "squid_url", "http://squid.example.edu:3128"),
    ("OSG_SQUID_LOCATION", "http://squid", "squid_url", "http://squid:3128"),
    ("OSG_SQUID_LOCATION", "[2001:db8::1]:3128", "squid_url", "http://[2001:db8::1]:3128"),
    ("POOL", "ospool", "pool", "ospool"),
    ("POOL", "OSPool", "pool", "ospool"),
    ("POOL", "prod-ospool", "pool", "prod-ospool"),
    ("POOL", "itb-ospool", "pool", "itb-ospool"),
    ("POOL", "prod-path-facility", "pool", "prod-path-facility"),
    ("POOL", "dev-path-facility", "pool", "dev-path-facility"),
    ("POOL", "cm.example.org", "pool", "cm.example.org"),
    ("POOL", "cm.example.org:9618", "pool", "cm.example.org:9618"),
    ("POOL", "192.168.1.10:9618", "pool", "192.168.1.10:9618"),
    # A single-label host, e.g. a Kubernetes service in the pilot's namespace.
    ("POOL", "cm", "pool", "cm"),
    ("POOL", "htcondor-cm:9618", "pool", "htcondor-cm:9618"),
    ("POOL", "ospool-cm", "pool", "ospool-cm"),
    ("CONDOR_HOST", "cm.example.org", "condor_host", "cm.example.org"),
    (
        "CONDOR_HOST",
        "cm-1.example.org:9618, cm-2.example.org",
        "condor_host",
        "cm-1.example.org:9618,cm-2.example.org",
    ),
    ("CONDOR_HOST", "cm1 cm2:9619", "condor_host", "cm1,cm2:9619"),
    ("CONDOR_HOST", "htcondor-cm", "condor_host", "htcondor-cm"),
    ("ITB", "true", "itb", True),
    ("ITB", "TRUE", "itb", True),
    ("ITB", "Yes", "itb", True),
    ("ITB", "1", "itb", True),
    ("ITB", " no ", "itb", False),
    ("ITB", "False", "itb", False),
    ("ITB", "0", "itb", False),
    # The rest of OSG's boolean words (its is_true: y, t, on; and their opposites).
    ("ITB", "Y", "itb", True),
    ("ITB", "t", "itb", True),
    ("ITB", "ON", "itb", True),
    ("ITB", "n", "itb", False),
    ("ITB", "F", "itb", False),
    ("ITB", "off", "itb", False),
    ("CVMFSEXEC_DEBUG", "YES", "cvmfsexec_debug", True),
    ("CVMFS_MODE", " CVMFSexec ", "cvmfs_mode", "cvmfsexec"),
    ("CVMFS_CHECK_SECONDS", "5", "cvmfs_check_seconds", 5),
    ("OSDF_CHECK_SECONDS", " 600 ", "osdf_check_seconds", 600),
    ("GLIDEIN_RANDOMIZE_NAME", "True", "randomize_name", True),
    ("SINGULARITY_DISABLE_PID_NAMESPACES", "tRuE", "singularity_disable_pid_namespaces", True),
    ("TOPOLOGY_CHECK", "yes", "topology_check", True),
    ("ACCEPT_JOBS_FOR_HOURS", "48", "accept_jobs_for_hours", 48),
    ("ACCEPT_JOBS_FOR_HOURS", " 1 ", "accept_jobs_for_hours", 1),
    ("RETIREMENT_HOURS", "72", "retirement_hours", 72),
    ("ACCEPT_IDLE_MINUTES", "0", "accept_idle_minutes", 0),
    ("NUM_CPUS", "8", "num_cpus", 8),
    ("MEMORY", "16000", "memory_mb", 16000),
    (
        "CVMFSEXEC_REPOS",
        "oasis.opensciencegrid.org singularity.opensciencegrid.org",
        "cvmfsexec_repos",
        ("oasis.opensciencegrid.org", "singularity.opensciencegrid.org"),
    ),
    (
        "CVMFSEXEC_REPOS",
        "oasis.opensciencegrid.org,singularity.opensciencegrid.org",
        "cvmfsexec_repos",
        ("oasis.opensciencegrid.org", "singularity.opensciencegrid.org"),
    ),
    (
        "CVMFSEXEC_REPOS",
        '"oasis.opensciencegrid.org, singularity.opensciencegrid.org"',
        "cvmfsexec_repos",
        ("oasis.opensciencegrid.org", "singularity.opensciencegrid.org"),
    ),
    (
        "CVMFSEXEC_REPOS",
        "'oasis.opensciencegrid.org' ,\t'atlas.cern.ch'",
        "cvmfsexec_repos",
        ("oasis.opensciencegrid.org", "atlas.cern.ch"),
    ),
    (
        "CVMFSEXEC_REPOS",
        "oasis.opensciencegrid.org oasis.opensciencegrid.org,atlas.cern.ch",
        "cvmfsexec_repos",
        ("oasis.opensciencegrid.org", "atlas.cern.ch"),
    ),
    (
        "CVMFS_HTTP_PROXY",
        "http://squid.example.edu:3128;DIRECT",
        "cvmfs_http_proxy",
        "http://squid.example.edu:3128;DIRECT",
    ),
    ("CVMFS_QUOTA_LIMIT", "4000", "cvmfs_quota_limit_mb", 4000),
    ("CVMFS_QUOTA_LIMIT", "-1", "cvmfs_quota_limit_mb", -1),
    (
        "SINGULARITY_BIND_EXTRA",
        "/data:/data:ro,/scratch",
        "singularity_bind_extra",
        ("/data:/data:ro", "/scratch"),
    ),
    (
        "SINGULARITY_BIND_EXTRA",
        " /a:/b:rw , /c:/d ",
        "singularity_bind_extra",
        ("/a:/b:rw", "/c:/d"),
    ),
    (
        "SINGULARITY_BIND_EXTRA",
        "/data:/data:ro /scratch",
        "singularity_bind_extra",
        ("/data:/data:ro", "/scratch"),
    ),
    (
        "EXTRA_JOB_ENV",
        "FOO=bar  BAZ=1",
        "extra_job_env",
        (("FOO", "bar"), ("BAZ", "1")),
    ),
    ("EXTRA_JOB_ENV", "EMPTY= URL=a=b", "extra_job_env", (("EMPTY", ""), ("URL", "a=b"))),
    # HTCondor's quoted environment syntax, as OSG's container takes it.
    (
        "EXTRA_JOB_ENV",
        "A=1 B='x y' 'C=it''s' D=\"\"q\"\"",
        "extra_job_env",
        (("A", "1"), ("B", "x y"), ("C", "it's"), ("D", '"q"')),
    ),
    ("EXTRA_JOB_ENV", "\"A=1 B='x y'\"", "extra_job_env", (("A", "1"), ("B", "x y"))),
    (
        "APPTAINER_REGISTRY_MIRROR",
        "mirror.example.org:5000",
        "apptainer_registry_mirror",
        "mirror.example.org:5000",
    ),
    (
        "APPTAINER_REGISTRY_MIRROR",
        "https://mirror.example.org",
        "apptainer_registry_mirror",
        "https://mirror.example.org",
    ),
    (
        "APPTAINER_REGISTRY_MIRROR",
        "mirror.example.org/dockerhub",
        "apptainer_registry_mirror",
        "mirror.example.org/dockerhub",
    ),
    (
        "http_proxy",
        "http://proxy.example.org:3128",
        "job_http_proxy",
        "http://proxy.example.org:3128",
    ),
    ("https_proxy", "http://u:pw@proxy:3128", "job_https_proxy", "http://u:pw@proxy:3128"),
    ("FTP_PROXY", "proxy.example.org:2121", "job_ftp_proxy", "proxy.example.org:2121"),
    ("OSG_HOSTNAME", "wn-01.example.edu", "osg_hostname", "wn-01.example.edu"),
    ("ENABLE_REMOTE_SYSLOG", "false", "enable_remote_syslog", False),
    ("ENABLE_REMOTE_SYSLOG", "on", "enable_remote_syslog", True),
    ("SYSLOG_HOST", "syslog.example.org", "syslog_host", "syslog.example.org"),
    ("REGISTRY_HOST", "os-registry.example.org", "registry_host", "os-registry.example.org"),
    ("CCB_RANGE_LOW", "10576", "ccb_range_low", 10576),
    ("CCB_RANGE_HIGH", "10599", "ccb_range_high", 10599),
    ("GARBAGE_COLLECTION", "1", "garbage_collection", True),
    ("GARBAGE_COLLECTION", "0", "garbage_collection", False),
    (
        "OSG_INSTITUTION_ID",
        "https://osg-htc.org/iid/05ejpqr48",
        "institution_id",
        "https://osg-htc.org/iid/05ejpqr48",
    ),
    (
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        "30%__htc/rocky:8 70%__htc/rocky:9",
        "default_container_distribution",
        ((30, "htc/rocky:8"), (70, "htc/rocky:9")),
    ),
    (
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU",
        "100%__htc/rocky:9-cuda-12.6.0",
        "default_container_distribution_gpu",
        ((100, "htc/rocky:9-cuda-12.6.0"),),
    ),
    ("SUPERVISORD_RESTART_POLICY", "unexpected", "supervisord_restart_policy", "unexpected"),
    ("ALLOW_CPUJOB_ON_GPUSLOT", "false", "allow_cpujob_on_gpuslot", "false"),
    ("CONTAINER_PILOT_USE_JOB_HOOK", "true", "container_pilot_use_job_hook", "true"),
    ("SHUTDOWN_GRACE_SECONDS", "120", "shutdown_grace_seconds", 120),
    ("PILOT_WALLTIME", "3600", "pilot_walltime_seconds", 3600),
    ("PILOT_WALLTIME", "1-12:00:00", "pilot_walltime_seconds", 36 * 3600),
    ("PILOT_WALLTIME", "02:00:00", "pilot_walltime_seconds", 7200),
    ("PILOT_WALLTIME", "30:00", "pilot_walltime_seconds", 1800),
    ("PILOT_WALLTIME", "0-00:01:00", "pilot_walltime_seconds", 60),
    ("MEMORY_OVERHEAD_MB", "0", "memory_overhead_mb", 0),
    ("MIN_DISK_GB", "0", "min_disk_gb", 0.0),
    ("MIN_DISK_GB", "2.5", "min_disk_gb", 2.5),
    ("LOG_FORMAT", "JSON", "log_format", "json"),
    ("JOB_CONTAINMENT", "Preferred", "job_containment", "preferred"),
    ("JOB_CONTAINMENT", "none", "job_containment", "none"),
    ("LOG_FORMAT", "text", "log_format", "text"),
    ("METRICS_PORT", "9100", "metrics_port", 9100),
    (
        "NOTIFY_START_URL",
        "https://hooks.example.org/start",
        "notify_start_url",
        "https://hooks.example.org/start",
    ),
    (
        "NOTIFY_STOP_URL",
        "http://10.0.0.1:8080/stop?x=1",
        "notify_stop_url",
        "http://10.0.0.1:8080/stop?x=1",
    ),
    ("PILOT_DIR", "/scratch/pilot", "pilot_dir", PurePosixPath("/scratch/pilot")),
    ("TOKEN_DIR", "/run/secrets/tokens", "token_dir", PurePosixPath("/run/secrets/tokens")),
    (
        "EXTRA_ATTRIBUTES_FILE",
        "/etc/osg/attrs.cfg",
        "extra_attributes_file",
        PurePosixPath("/etc/osg/attrs.cfg"),
    ),
    ("TOKEN", f"  {SECRET_TOKEN}\n", "token_text", SECRET_TOKEN),
]


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    GOOD_FORMS,
    ids=[f"{name}={raw.strip()[:40]!r}" for name, raw, _, _ in GOOD_FORMS],
)
def test_every_good_form_is_accepted_and_normalized(
    name: str, raw: str, field: str, expected: object
) -> None:
    """Each documented form of each variable parses to its typed value, with one line naming
    it: a PASS, or a WARN where this pilot does not act on that value (SPEC 4.1)."""
    settings, findings = load({name: raw})
    assert settings is not None, all_text(findings)
    assert getattr(settings, field) == expected
    unheeded = [f for f in of(findings, Status.WARN, name) if "not acted on" in f.message]
    assert len(of(findings, Status.PASS, name) + unheeded) == 1
    assert not of(findings, Status.FAIL)


def test_every_variable_of_spec_4_1_has_a_good_form_case() -> None:
    """The good-forms table exercises every variable the pilot reads."""
    assert {name for name, *_ in GOOD_FORMS} == set(VARIABLE_NAMES)


def test_the_squid_pass_line_shows_the_normalized_url() -> None:
    """OSG_SQUID_LOCATION in host:port form is reported as the http:// URL jobs get."""
    _, findings = load(OSG_SQUID_LOCATION="squid.example.edu:3128")
    [passed] = of(findings, Status.PASS, "OSG_SQUID_LOCATION")
    assert passed.message == "http://squid.example.edu:3128"


def test_cvmfs_repos_are_reported_deduplicated_in_order() -> None:
    """The PASS line lists each repository once, in the order given."""
    _, findings = load(CVMFSEXEC_REPOS="'b.example.org',a.example.org b.example.org")
    [passed] = of(findings, Status.PASS, "CVMFSEXEC_REPOS")
    assert passed.message == "b.example.org a.example.org"


def test_extra_job_env_pass_line_names_the_variables_not_their_values() -> None:
    """Job environment values may be credentials of the site: the report shows the names only."""
    _, findings = load(EXTRA_JOB_ENV="S3_KEY=hunter2secret REGION=us")
    [passed] = of(findings, Status.PASS, "EXTRA_JOB_ENV")
    assert passed.message == "S3_KEY REGION"
    assert "hunter2secret" not in all_text(findings)


@pytest.mark.parametrize("name", ["NOTIFY_START_URL", "NOTIFY_STOP_URL"])
def test_notify_urls_are_redacted_to_scheme_and_host_in_the_pass_text(name: str) -> None:
    """Webhook paths and queries often embed secrets: only scheme, host and port are shown."""
    url = "https://hooks.example.org:8443/services/T000/B000/XyZsecretPath?token=qwerty"
    settings, findings = load({name: url})
    assert settings is not None
    [passed] = of(findings, Status.PASS, name)
    assert passed.message == "https://hooks.example.org:8443/..."
    text = all_text(findings) + repr(settings)
    for secret in ("XyZsecretPath", "qwerty", "/services/"):
        assert secret not in text


def test_a_notify_url_without_a_path_is_shown_whole() -> None:
    """Nothing is hidden when there is nothing to hide."""
    _, findings = load(NOTIFY_START_URL="http://hooks.example.org")
    [passed] = of(findings, Status.PASS, "NOTIFY_START_URL")
    assert passed.message == "http://hooks.example.org"


# ------------------------------------------------------------------ bad forms

BAD_FORMS = [
    ("GLIDEIN_Site", 'My"Site'),
    ("GLIDEIN_Site", "x" * 129),
    ("GLIDEIN_ResourceName", "CE\tone"),
    ("GLIDEIN_Start_Extra", "1; b = 2"),
    ("GLIDEIN_Start_Extra", "(True"),
    ("OSG_PROJECT_NAME", "My Project"),
    ("OSG_SQUID_LOCATION", "https://squid.example.edu:3128"),
    ("OSG_SQUID_LOCATION", "squid.example.edu:99999"),
    ("POOL", "prod-ospol"),
    ("POOL", "no such pool"),
    ("POOL", "cm.example.org:0"),
    ("CONDOR_HOST", " , "),
    ("CONDOR_HOST", "cm_1.example.org"),
    ("ITB", "maybe"),
    ("ACCEPT_JOBS_FOR_HOURS", "abc"),
    ("ACCEPT_JOBS_FOR_HOURS", "0"),
    ("RETIREMENT_HOURS", "-1"),
    ("ACCEPT_IDLE_MINUTES", "-1"),
    ("ACCEPT_IDLE_MINUTES", "1.5"),
    ("NUM_CPUS", "0"),
    ("MEMORY", "8GB"),
    ("CVMFSEXEC_REPOS", ",,"),
    ("CVMFSEXEC_REPOS", "oasis"),
    ("CVMFS_HTTP_PROXY", "http://squid:3128 DIRECT"),
    ("CVMFS_QUOTA_LIMIT", "0"),
    ("CVMFSEXEC_DEBUG", "verbose"),
    ("GLIDEIN_RANDOMIZE_NAME", "sometimes"),
    ("SINGULARITY_DISABLE_PID_NAMESPACES", "2"),
    ("SINGULARITY_BIND_EXTRA", "data:/data"),
    ("SINGULARITY_BIND_EXTRA", "/data:/data:rx"),
    ("EXTRA_JOB_ENV", "FOO"),
    ("EXTRA_JOB_ENV", "_CONDOR_START=True"),
    ("EXTRA_JOB_ENV", "TOKEN=abc"),
    ("APPTAINER_REGISTRY_MIRROR", "ftp://mirror.example.org"),
    ("SHUTDOWN_GRACE_SECONDS", "0"),
    ("PILOT_WALLTIME", "0"),
    ("PILOT_WALLTIME", "2 days"),
    ("MEMORY_OVERHEAD_MB", "-1"),
    ("MIN_DISK_GB", "-1"),
    ("LOG_FORMAT", "xml"),
    ("JOB_CONTAINMENT", "yes"),
    ("METRICS_PORT", "65536"),
    ("NOTIFY_START_URL", "ftp://hooks.example.org/x"),
    ("NOTIFY_STOP_URL", "hooks.example.org/stop"),
    ("TOPOLOGY_CHECK", "on-ish"),
    ("PILOT_DIR", "pilot"),
    ("TOKEN_DIR", "/etc/condor/my tokens"),
    ("EXTRA_ATTRIBUTES_FILE", "extra.cfg"),
    ("EXTRA_JOB_ENV", "A='x y"),
    ("EXTRA_JOB_ENV", 'A="x"'),
    ("ENABLE_REMOTE_SYSLOG", "maybe"),
    ("SYSLOG_HOST", "syslog.example.org:65536"),
    ("REGISTRY_HOST", "registry example"),
    ("CCB_RANGE_LOW", "0"),
    ("CCB_RANGE_HIGH", "65536"),
    ("GARBAGE_COLLECTION", "sometimes"),
    ("OSG_INSTITUTION_ID", 'iid"x'),
    ("OSG_DEFAULT_CONTAINER_DISTRIBUTION", "htc/rocky:9"),
    ("OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU", "0%__a"),
    ("OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU", "100%__/abs"),
    ("SUPERVISORD_RESTART_POLICY", "always"),
    ("ALLOW_CPUJOB_ON_GPUSLOT", "a\nb"),
    ("CONTAINER_PILOT_USE_JOB_HOOK", "a\rb"),
]


@pytest.mark.parametrize(
    ("name", "raw"), BAD_FORMS, ids=[f"{name}={raw[:30]!r}" for name, raw in BAD_FORMS]
)
def test_a_bad_value_is_one_fail_naming_the_variable_with_a_fix(name: str, raw: str) -> None:
    """A bad value: no Settings, one single-line FAIL whose subject is the variable, with a fix."""
    settings, findings = load({name: raw})
    assert settings is None
    fails = of(findings, Status.FAIL)
    assert [f.subject for f in fails] == [name]
    assert fails[0].fix
    assert "\n" not in fails[0].as_line()
    assert "\r" not in fails[0].as_line()


def test_every_bad_value_is_reported_in_one_pass() -> None:
    """Several bad variables give one FAIL each, all from a single call (SPEC 5)."""
    settings, findings = load(NUM_CPUS="0", POOL="itb-ospol", ITB="maybe", LOG_FORMAT="xml")
    assert settings is None
    assert {f.subject for f in of(findings, Status.FAIL)} == {
        "NUM_CPUS",
        "POOL",
        "ITB",
        "LOG_FORMAT",
    }


# ------------------------------------------------------------------ combinations


@pytest.mark.parametrize("itb", ["true", "YES", "1", "on"])
@pytest.mark.parametrize("pool", ["prod-ospool", "PROD-OSPOOL", "prod-path-facility"])
def test_itb_true_with_a_production_pool_joins_that_pool(itb: str, pool: str) -> None:
    """ITB=true with a production pool's name is accepted: OSG's container joins the named
    pool (ITB turns only POOL=ospool into the ITB pool) and so does the pilot."""
    settings, findings = load(ITB=itb, POOL=pool)
    assert settings is not None, all_text(findings)
    assert (settings.itb, settings.pool) == (True, pool.lower())
    assert not of(findings, Status.FAIL) + of(findings, Status.WARN)


@pytest.mark.parametrize("pool", [None, "ospool", "itb-ospool"])
def test_itb_true_with_ospool_or_the_itb_pool_is_fine(pool: str | None) -> None:
    """POOL=ospool (the default) with ITB=true means the ITB pool: no conflict."""
    settings, findings = load(ITB="true", POOL=pool)
    assert settings is not None, all_text(findings)
    assert settings.itb is True
    assert not of(findings, Status.WARN)


def test_condor_host_together_with_pool_warns() -> None:
    """CONDOR_HOST overrides the pool's central managers; setting both is a WARN on CONDOR_HOST."""
    settings, findings = load(CONDOR_HOST="cm.example.org", POOL="itb-ospool")
    assert settings is not None
    assert settings.condor_host == "cm.example.org"
    [warn] = of(findings, Status.WARN)
    assert warn.subject == "CONDOR_HOST"
    assert "itb-ospool" in warn.message


def test_condor_host_with_an_invalid_pool_names_no_pool_in_a_warning() -> None:
    """A bad POOL is its own FAIL; CONDOR_HOST does not warn about a pool that is not there
    (it once named POOL=ospool, the default, whatever POOL said)."""
    _, findings = load(CONDOR_HOST="cm.example.org", POOL="no such pool")
    assert [f.subject for f in of(findings, Status.FAIL)] == ["POOL"]
    assert not of(findings, Status.WARN)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("http_proxy", "http://u:pa$$@proxy:3128"),
        ("https_proxy", "http://proxy:3128 # corp"),
        ("FTP_PROXY", "ftp\\proxy"),
        ("OSG_HOSTNAME", "wn 01"),
    ],
)
def test_a_bad_proxy_setting_is_a_warning_and_not_passed_on(name: str, raw: str) -> None:
    """Proxy settings are often injected by the container engine for other programs: a
    value that cannot reach jobs safely is a WARN (the pilot still starts), not a FAIL."""
    settings, findings = load({name: raw})
    assert settings is not None, all_text(findings)
    [warn] = of(findings, Status.WARN, name)
    assert warn.message.endswith("; not passed on to jobs")
    assert not of(findings, Status.FAIL)
    assert "pa$$" not in all_text(findings)


@pytest.mark.parametrize("name", ["HTTP_PROXY", "HTTPS_PROXY", "ftp_proxy", "NO_PROXY"])
def test_the_other_spelling_of_a_proxy_variable_is_no_case_slip(name: str) -> None:
    """HTTP_PROXY and http_proxy are both conventional: no "did you mean" for either."""
    _, findings = load({name: "http://proxy:3128"})
    assert not of(findings, Status.WARN)


def test_condor_host_alone_does_not_warn() -> None:
    """CONDOR_HOST without POOL is the documented way to point at a private pool."""
    settings, findings = load(CONDOR_HOST="cm.example.org")
    assert settings is not None
    assert not of(findings, Status.WARN)


@pytest.mark.parametrize(
    "expression",
    ['TARGET.ProjectName == "Proj"', 'stringListMember(projectname, "a,b")'],
)
def test_a_project_restriction_in_start_extra_warns_towards_osg_project_name(
    expression: str,
) -> None:
    """Restricting ProjectName by hand is a WARN pointing at OSG_PROJECT_NAME (any case)."""
    settings, findings = load(GLIDEIN_Start_Extra=expression)
    assert settings is not None
    [warn] = of(findings, Status.WARN)
    assert warn.subject == "GLIDEIN_Start_Extra"
    assert "OSG_PROJECT_NAME" in warn.fix


@pytest.mark.parametrize("grace", ["1", "5"])
def test_a_shutdown_grace_of_five_seconds_or_less_warns(grace: str) -> None:
    """With <= 5 s of grace there is no time to drain jobs: a WARN, not a FAIL."""
    settings, findings = load(SHUTDOWN_GRACE_SECONDS=grace)
    assert settings is not None
    assert settings.drain_seconds == 0
    [warn] = of(findings, Status.WARN)
    assert warn.subject == "SHUTDOWN_GRACE_SECONDS"


def test_a_shutdown_grace_of_six_seconds_does_not_warn() -> None:
    """The warning threshold is exactly the 5 s safety margin."""
    settings, findings = load(SHUTDOWN_GRACE_SECONDS="6")
    assert settings is not None
    assert settings.drain_seconds == 1
    assert not of(findings, Status.WARN)


def test_a_cvmfs_proxy_without_cvmfsexec_repos_warns() -> None:
    """cvmfs settings do nothing without CVMFSEXEC_REPOS: a WARN naming the setting."""
    settings, findings = load(CVMFS_HTTP_PROXY="http://squid.example.edu:3128")
    assert settings is not None
    [warn] = of(findings, Status.WARN)
    assert warn.subject == "CVMFS_HTTP_PROXY"
    assert "CVMFSEXEC_REPOS" in warn.message


def test_a_cvmfs_quota_without_cvmfsexec_repos_warns_naming_the_quota() -> None:
    """The WARN names the variable that was actually set."""
    settings, findings = load(CVMFS_QUOTA_LIMIT="4000")
    assert settings is not None
    [warn] = of(findings, Status.WARN)
    assert warn.subject == "CVMFS_QUOTA_LIMIT"


def test_cvmfs_settings_with_cvmfsexec_repos_do_not_warn() -> None:
    """With repositories to mount, the cvmfs settings are used: no WARN."""
    settings, findings = load(
        CVMFS_HTTP_PROXY="DIRECT",
        CVMFS_QUOTA_LIMIT="4000",
        CVMFSEXEC_REPOS="oasis.opensciencegrid.org",
    )
    assert settings is not None
    assert not of(findings, Status.WARN)


# ------------------------------------------------------------------ _CONDOR_ overrides


@pytest.mark.parametrize(
    "name",
    ["_CONDOR_START", "_CONDOR_SEC_DEFAULT_AUTHENTICATION", "_CONDOR_NUM_CPUS", "_condor_start"],
)
def test_a_condor_override_of_a_pilot_knob_warns_and_is_passed_through(name: str) -> None:
    """An HTCondor override of what the pilot configures is allowed, with a WARN naming it."""
    settings, findings = load({name: "False"})
    assert settings is not None
    assert settings.condor_overrides == (name,)
    [warn] = of(findings, Status.WARN)
    assert warn.subject == name


def test_a_harmless_condor_override_passes_through_silently() -> None:
    """``_CONDOR_<KNOB>`` for a knob the pilot does not own is HTCondor's business: no WARN."""
    settings, findings = load(_CONDOR_ALL_DEBUG="D_FULLDEBUG", _CONDOR_TOOL_DEBUG="D_ALL")
    assert settings is not None
    assert settings.condor_overrides == ("_CONDOR_ALL_DEBUG", "_CONDOR_TOOL_DEBUG")
    assert not of(findings, Status.WARN)
    assert "2 HTCondor overrides" in of(findings, Status.PASS, "_CONDOR_*")[0].message


# ------------------------------------------------------------------ misspellings


@pytest.mark.parametrize(
    ("misspelled", "meant"),
    [
        ("GLIDEIN_SITE", "GLIDEIN_Site"),
        ("Glidein_site", "GLIDEIN_Site"),
        ("GLIDEIN_RESOURCENAME", "GLIDEIN_ResourceName"),
        ("GLIDEIN_ResourceNme", "GLIDEIN_ResourceName"),
        ("OSG_SQUID_LOCATON", "OSG_SQUID_LOCATION"),
        ("CVMFSEXEC_REPO", "CVMFSEXEC_REPOS"),
        ("ACCEPT_JOB_FOR_HOURS", "ACCEPT_JOBS_FOR_HOURS"),
        ("pool", "POOL"),
    ],
)
def test_a_misspelled_variable_warns_with_did_you_mean(misspelled: str, meant: str) -> None:
    """A near miss of a variable name is a WARN naming it and suggesting the right spelling."""
    settings, findings = load({misspelled: "x"})
    assert settings is not None
    [warn] = of(findings, Status.WARN)
    assert warn.subject == misspelled
    assert f"did you mean {meant}?" in warn.message


def test_a_misspelled_required_variable_fails_the_missing_one_and_warns_the_near_miss() -> None:
    """GLIDEIN_SITE instead of GLIDEIN_Site: the FAIL says it is not set, the WARN says why."""
    settings, findings = load(GLIDEIN_Site=None, GLIDEIN_SITE="Example Site")
    assert settings is None
    assert [f.subject for f in of(findings, Status.FAIL)] == ["GLIDEIN_Site"]
    [warn] = of(findings, Status.WARN)
    assert warn.subject == "GLIDEIN_SITE"
    assert "did you mean GLIDEIN_Site?" in warn.message


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "HOSTNAME", "KUBERNETES_SERVICE_HOST", "SLURM_JOB_ID", "LANG"]
)
def test_ordinary_environment_variables_are_not_taken_for_misspellings(name: str) -> None:
    """The container's usual variables pass silently."""
    _, findings = load({name: "x"})
    assert not of(findings, Status.WARN)


# ------------------------------------------------------------------ secrets and immutability


def test_the_token_text_is_in_no_finding_and_not_in_the_settings_repr() -> None:
    """TOKEN is a secret: the PASS says it is set, nothing prints its text or signature."""
    settings, findings = load(TOKEN=SECRET_TOKEN)
    assert settings is not None
    assert settings.token_text == SECRET_TOKEN
    [passed] = of(findings, Status.PASS, "TOKEN")
    assert passed.message == "set (hidden)"
    for text in (all_text(findings), repr(settings), str(settings)):
        assert SECRET_TOKEN not in text
        assert SIGNATURE not in text


def test_the_token_stays_secret_when_other_variables_fail() -> None:
    """A failing run reports its FAILs without the token."""
    settings, findings = load(TOKEN=SECRET_TOKEN, NUM_CPUS="0", token=SECRET_TOKEN)
    assert settings is None
    assert of(findings, Status.WARN, "token")  # the lower-case twin is a near miss of TOKEN
    text = all_text(findings)
    assert SECRET_TOKEN not in text
    assert SIGNATURE not in text


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after validation."""
    settings, _ = load()
    assert settings is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.site = "Elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.num_cpus = 4  # type: ignore[misc]


# ------------------------------------------------------------------ config injection

PAYLOADS = {
    "newline": "\n",
    "carriage-return": "\r",
    "macro": "$(HOSTNAME)",
    "env-macro": "$ENV(HOME)",
    "backslash": "\\",
    "double-quote": '"',
}

# Variables whose value is written into the rendered HTCondor configuration,
# with a valid prefix and suffix: the payload goes between them, inside one
# item (not where a list variable's whitespace separator would be harmless).
CONFIG_VARIABLES = {
    "GLIDEIN_Site": ("Example", "Site"),
    "GLIDEIN_ResourceName": ("Example", "CE"),
    "GLIDEIN_Start_Extra": ("TARGET.RequestCpus <= 4", " || False"),
    "OSG_PROJECT_NAME": ("My", "Project"),
    "OSG_SQUID_LOCATION": ("squid", ".example.edu:3128"),
    "POOL": ("cm", ".example.org"),
    "CONDOR_HOST": ("cm", ".example.org:9618"),
    "EXTRA_JOB_ENV": ("FOO=a", "b"),
    "SINGULARITY_BIND_EXTRA": ("/data", "x:/data:ro"),
    "APPTAINER_REGISTRY_MIRROR": ("mirror", ".example.org:5000"),
    "PILOT_DIR": ("/pilot", "x"),
    "TOKEN_DIR": ("/etc/condor/tokens", "x"),
    "EXTRA_ATTRIBUTES_FILE": ("/etc/osg/extra", "x.cfg"),
}

KNOWN_BUGS: dict[tuple[str, str], pytest.MarkDecorator] = {}


def _injection_cases() -> list[object]:
    cases = []
    for name, (prefix, suffix) in CONFIG_VARIABLES.items():
        for payload_id, payload_text in PAYLOADS.items():
            marks = KNOWN_BUGS.get((name, payload_id), ())
            cases.append(
                pytest.param(
                    name, prefix + payload_text + suffix, id=f"{name}-{payload_id}", marks=marks
                )
            )
    return cases


@pytest.mark.parametrize(("name", "value"), _injection_cases())
def test_a_value_that_could_alter_htcondor_config_is_rejected(name: str, value: str) -> None:
    """Newline, CR, ``$(``, ``$ENV(``, backslash or quote inside a config-bound value is a FAIL
    naming the variable, on one line; nothing reaches Settings (SPEC 5.2)."""
    prefix, suffix = CONFIG_VARIABLES[name]
    good, _ = load({name: prefix + suffix})
    assert good is not None  # the value without the payload is valid
    settings, findings = load({name: value})
    assert settings is None
    fails = of(findings, Status.FAIL)
    assert [f.subject for f in fails] == [name]
    line = fails[0].as_line()
    assert "\n" not in line
    assert "\r" not in line


def test_the_injection_table_covers_the_variables_the_templates_render() -> None:
    """Every variable the renderer writes into HTCondor configuration is in the injection test."""
    rendered = {
        "GLIDEIN_Site",
        "GLIDEIN_ResourceName",
        "GLIDEIN_Start_Extra",
        "OSG_PROJECT_NAME",
        "OSG_SQUID_LOCATION",
        "POOL",
        "CONDOR_HOST",
        "EXTRA_JOB_ENV",
        "SINGULARITY_BIND_EXTRA",
        "PILOT_DIR",
        "EXTRA_ATTRIBUTES_FILE",
    }
    assert rendered <= set(CONFIG_VARIABLES)


@pytest.mark.parametrize("payload_id", ["macro", "env-macro"])
def test_a_registry_mirror_url_with_a_macro_is_rejected(payload_id: str) -> None:
    """The URL form of APPTAINER_REGISTRY_MIRROR refuses ``$(`` just as the host form does."""
    value = f"https://mirror.example.org/v2/{PAYLOADS[payload_id]}"
    settings, findings = load(APPTAINER_REGISTRY_MIRROR=value)
    assert settings is None
    assert [f.subject for f in of(findings, Status.FAIL)] == ["APPTAINER_REGISTRY_MIRROR"]


# ------------------------------------------------------------------ single parsers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(w, True) for w in ("true", "TRUE", "True", "1", "yes", "YES", " yEs ", "y", "T", "On")]
    + [(w, False) for w in ("false", "FALSE", "False", "0", "no", "NO", "\tNo\n", "N", "f", "OFF")],
)
def test_parse_bool_takes_upstreams_words_in_any_case(raw: str, expected: bool) -> None:
    """Booleans are what OSG's container takes as true (y, yes, t, true, on, 1) and their
    opposites (n, no, f, false, off, 0), any case, blanks ignored (SPEC 4.1)."""
    assert ev.parse_bool(raw) is expected


@pytest.mark.parametrize("raw", ["2", "", "truee", "enabled", "yes!", "-1", "o"])
def test_parse_bool_refuses_anything_else(raw: str) -> None:
    """Anything but those twelve words is an error with a fix, not a silent False
    (OSG's container read every other word as false)."""
    with pytest.raises(ev.Invalid) as caught:
        ev.parse_bool(raw)
    assert "true or false" in caught.value.fix


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("1", 1),
        ("86400", 86400),
        ("00:01", 1),
        ("10:00", 600),
        ("01:00:00", 3600),
        ("2-00:00:00", 2 * 86400),
        ("1-01:01:01", 86400 + 3661),
    ],
)
def test_parse_walltime_reads_seconds_and_slurm_durations(raw: str, seconds: int) -> None:
    """PILOT_WALLTIME: seconds, or Slurm's ``[[D-]HH:]MM:SS``."""
    assert ev.parse_walltime(raw) == seconds


@pytest.mark.parametrize("raw", ["0", "00:00", "0-00:00:00", "-5", "1h", "1:2:3:4", "1-", ":30"])
def test_parse_walltime_refuses_zero_and_other_forms(raw: str) -> None:
    """A walltime must be positive and in one of the two forms."""
    with pytest.raises(ev.Invalid):
        ev.parse_walltime(raw)


def test_redact_url_keeps_only_scheme_host_and_port() -> None:
    """``redact_url`` hides the path and query but says that there was one."""
    assert ev.redact_url("https://h.example.org/a/b?c=d") == "https://h.example.org/..."
    assert ev.redact_url("http://h.example.org:81") == "http://h.example.org:81"
    assert ev.redact_url("http://h.example.org/?q=1") == "http://h.example.org/..."


def test_shown_quotes_and_cuts_values_for_messages() -> None:
    """``shown`` makes control characters visible and cuts long values."""
    assert ev.shown("a\nb") == "'a\\nb'"
    assert ev.shown("x" * 100) == repr("x" * 60 + "...")
