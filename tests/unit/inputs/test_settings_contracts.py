"""The lines ``ospool-ep check`` prints about the environment, pinned by value (SPEC 4.1, 5.2).

A site reads these lines: the variable named, what is wrong, the fix. Each
distinct one is pinned once with ``Finding.as_line()``; the rules that combine
variables at their boundaries (walltime against the grace period, the grace
period against the eviction margin); and :func:`input_files`, which finds the
token and attribute inputs even when other settings are bad.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

import pytest

from ospool_ep.findings import Findings, Status
from ospool_ep.inputs import values as ev
from ospool_ep.inputs import variables
from ospool_ep.inputs.settings import Settings, input_files, load_settings

MINIMAL = {"GLIDEIN_Site": "Example Site", "GLIDEIN_ResourceName": "Example_CE"}
OVERRIDE_FIX = "remove it unless you mean to change the pilot's behaviour"


def unheeded(name: str, what_upstream_does: str) -> str:
    """The WARN line for a variable OSG's container reads and this pilot does not act on."""
    return (
        f"WARN  {name}: is accepted but not acted on by this pilot: {what_upstream_does} -- "
        f"nothing to fix if that is fine; unset {name} to silence this"
    )


def lines(environ: Mapping[str, str | None]) -> tuple[Settings | None, list[str]]:
    """``load_settings`` on MINIMAL plus ``environ`` (None drops a variable): the result and
    every line that is not a plain PASS of one variable."""
    merged = {**MINIMAL, **environ}
    findings = Findings()
    result = load_settings({k: v for k, v in merged.items() if v is not None}, findings=findings)
    shown = [f.as_line() for f in findings if f.status is not Status.PASS or f.subject[0] == "_"]
    return result, shown


# (id, environment on top of MINIMAL, whether Settings come back, the lines printed)
REPORTS: list[tuple[str, dict[str, str | None], bool, list[str]]] = [
    (
        "required-missing",
        {"GLIDEIN_Site": None},
        False,
        [
            "FAIL  GLIDEIN_Site: is not set -- set GLIDEIN_Site to your OSG Topology site name "
            "(-e GLIDEIN_Site=...)"
        ],
    ),
    (
        "required-blank",
        {"GLIDEIN_ResourceName": " "},
        False,
        [
            "FAIL  GLIDEIN_ResourceName: is not set -- set GLIDEIN_ResourceName to your "
            "OSG Topology resource (-e GLIDEIN_ResourceName=...)"
        ],
    ),
    (
        "parser-message-and-fix",
        {"NUM_CPUS": "0"},
        False,
        ["FAIL  NUM_CPUS: 0 is out of range -- use an integer between 1 and 100000 CPUs"],
    ),
    (
        "log-format",
        {"LOG_FORMAT": "xml"},
        False,
        ["FAIL  LOG_FORMAT: 'xml' is not a log format -- use text or json"],
    ),
    (
        "cvmfs-mode",
        {"CVMFS_MODE": "fuse"},
        False,
        ["FAIL  CVMFS_MODE: 'fuse' is not a CVMFS mode -- use auto, bind, cvmfsexec or none"],
    ),
    # ITB with a production pool joins that pool, as OSG's container does (SPEC 4.1).
    ("itb-with-production", {"ITB": "yes", "POOL": "PROD-OSPOOL"}, True, []),
    (
        "condor-host-with-a-bad-pool",
        {"CONDOR_HOST": "cm.example.org", "POOL": "prod-ospol"},
        False,
        [
            "FAIL  POOL: 'prod-ospol' is not a known pool; did you mean prod-ospool? -- "
            "write POOL=prod-ospool, or host:port if 'prod-ospol' is a central manager"
        ],
    ),
    (
        "lenient-proxy",
        {"https_proxy": "http://proxy:3128 # corp"},
        True,
        [
            "WARN  https_proxy: is not a plain proxy address: contains spaces or quotes; not "
            "passed on to jobs -- write http://host:port (or host:port) without quotes to pass "
            "it on"
        ],
    ),
    # Read by OSG's container and not acted on here: a WARN naming each (SPEC 4.1).
    # Acted on (SPEC 7.3): a PASS line each; where the stream goes is remotelog's line.
    ("remote-syslog-on", {"ENABLE_REMOTE_SYSLOG": "true"}, True, []),
    ("remote-syslog-off", {"ENABLE_REMOTE_SYSLOG": "off"}, True, []),
    ("syslog-host", {"SYSLOG_HOST": "syslog.example.org:514"}, True, []),
    (
        "syslog-host-bad-port",
        {"SYSLOG_HOST": "syslog.example.org:0"},
        False,
        [
            "FAIL  SYSLOG_HOST: port 0 is out of range: SYSLOG_HOST names a syslog receiver -- "
            "write host or host:port, e.g. syslog.example.org:6514 (TLS) or "
            "loghost.example.org:514 (plain TCP)"
        ],
    ),
    (
        "registry-host",
        {"REGISTRY_HOST": "os-registry.example.org"},
        True,
        [
            unheeded(
                "REGISTRY_HOST",
                "the token registry OSG's container gets its syslog client certificate from",
            )
        ],
    ),
    (
        "ccb-range",
        {"CCB_RANGE_LOW": "10576", "CCB_RANGE_HIGH": "10599"},
        True,
        [
            unheeded(
                "CCB_RANGE_LOW",
                "with CCB_RANGE_HIGH, OSG's container uses a random port in that range on "
                "each central manager as CCB",
            ),
            unheeded(
                "CCB_RANGE_HIGH",
                "with CCB_RANGE_LOW, OSG's container uses a random port in that range on each"
                " central manager as CCB",
            ),
        ],
    ),
    ("garbage-collection-on", {"GARBAGE_COLLECTION": "1"}, True, []),
    (
        "garbage-collection-off",
        {"GARBAGE_COLLECTION": "0"},
        True,
        [
            "WARN  GARBAGE_COLLECTION: is accepted but not acted on by this pilot: this pilot"
            " always removes the directories of "
            "dead pilots under PILOT_DIR; that cannot be turned off -- "
            "nothing to fix if that is fine; unset GARBAGE_COLLECTION to silence this"
        ],
    ),
    (
        "institution-id",
        {"OSG_INSTITUTION_ID": "https://osg-htc.org/iid/05ejpqr48"},
        True,
        [
            unheeded(
                "OSG_INSTITUTION_ID",
                "OSG's container publishes it in the slot ad as OSG_INSTITUTION_ID",
            )
        ],
    ),
    (
        "default-images",
        {
            "OSG_DEFAULT_CONTAINER_DISTRIBUTION": "100%__htc/rocky:9",
            "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU": "100%__htc/rocky:9-cuda-12.6.0",
        },
        True,
        [],
    ),
    (
        "default-images-relative-weights",
        {"OSG_DEFAULT_CONTAINER_DISTRIBUTION": "1%__htc/rocky:8 3%__htc/rocky:9"},
        True,
        [
            "WARN  OSG_DEFAULT_CONTAINER_DISTRIBUTION: the weights add up to 4, not 100: "
            "they are taken as relative weights -- give weights that add up to 100 to make "
            "the shares plain",
        ],
    ),
    (
        "default-images-bad-weight",
        {"OSG_DEFAULT_CONTAINER_DISTRIBUTION": "0%__htc/rocky:8"},
        False,
        [
            "FAIL  OSG_DEFAULT_CONTAINER_DISTRIBUTION: '0%__htc/rocky:8' has the weight 0 -- "
            "use a weight from 1 to 100"
        ],
    ),
    (
        "job-containment",
        {"JOB_CONTAINMENT": "optional"},
        False,
        [
            "FAIL  JOB_CONTAINMENT: 'optional' is not a containment policy -- "
            "use required, preferred or none"
        ],
    ),
    (
        "supervisord-restart-policy",
        {"SUPERVISORD_RESTART_POLICY": "true"},
        True,
        [
            unheeded(
                "SUPERVISORD_RESTART_POLICY",
                "OSG's container restarts condor_master by this supervisord policy; this "
                "pilot ends when condor_master ends, and its orchestrator restarts it",
            )
        ],
    ),
    (
        "bind-extra",
        {"SINGULARITY_BIND_EXTRA": "/data:/data:ro /scratch"},
        True,
        [],
    ),
    (
        "registry-mirror",
        {"APPTAINER_REGISTRY_MIRROR": "mirror.example.org/dockerhub"},
        True,
        [
            unheeded(
                "APPTAINER_REGISTRY_MIRROR",
                "OSG's container makes Apptainer pull docker.io images through this mirror; "
                "this pilot does not configure Apptainer's registries",
            )
        ],
    ),
    (
        "rpm-keys-no-longer-read",
        {"ALLOW_CPUJOB_ON_GPUSLOT": "false", "CONTAINER_PILOT_USE_JOB_HOOK": "true"},
        True,
        [
            unheeded(
                "ALLOW_CPUJOB_ON_GPUSLOT",
                "OSG's container no longer reads it; CPU-only jobs run on a GPU slot only "
                "while 8 CPUs and 32 GB per free GPU stay free",
            ),
            unheeded(
                "CONTAINER_PILOT_USE_JOB_HOOK",
                "OSG's container no longer reads it; HTCondor runs container jobs itself",
            ),
        ],
    ),
    (
        "condor-host-and-pool",
        {"CONDOR_HOST": "cm.example.org", "POOL": "itb-ospool"},
        True,
        [
            "WARN  CONDOR_HOST: overrides the central managers of POOL=itb-ospool -- "
            "unset one of them to make the intent clear"
        ],
    ),
    (
        "project-in-start",
        {"GLIDEIN_Start_Extra": 'TARGET.ProjectName == "X"'},
        True,
        [
            "WARN  GLIDEIN_Start_Extra: restricts ProjectName -- use OSG_PROJECT_NAME for "
            "project restrictions; it is checked for you"
        ],
    ),
    (
        "grace-at-the-margin",
        {"SHUTDOWN_GRACE_SECONDS": "5"},
        True,
        [
            "WARN  SHUTDOWN_GRACE_SECONDS: 5 s leaves running jobs no time to finish on stop "
            "(5 s are kept for eviction) -- raise it, and the orchestrator's stop timeout "
            "with it (docker run --stop-timeout)"
        ],
    ),
    (
        "walltime-equal-to-grace",
        {"PILOT_WALLTIME": "25"},
        False,
        [
            "FAIL  PILOT_WALLTIME: 25 s is not longer than SHUTDOWN_GRACE_SECONDS=25: "
            "the pilot would have to stop before it starts -- give the pilot a longer "
            "walltime, or a shorter grace period"
        ],
    ),
    ("walltime-one-second-longer", {"PILOT_WALLTIME": "26"}, True, []),
    (
        "cvmfs-tuned-without-cvmfsexec",
        {"CVMFS_QUOTA_LIMIT": "100", "CVMFS_HTTP_PROXY": "DIRECT"},
        True,
        [
            "WARN  CVMFS_HTTP_PROXY: cvmfs settings are given but CVMFSEXEC_REPOS is empty, "
            "so cvmfsexec is not used -- set CVMFSEXEC_REPOS, or drop the cvmfs settings"
        ],
    ),
    (
        "cvmfs-tuned-with-cvmfs-mode",
        {"CVMFS_QUOTA_LIMIT": "100", "CVMFS_MODE": "cvmfsexec"},
        True,
        [],
    ),
    (
        "condor-overrides",
        {"_CONDOR_START": "True", "_condor_sec_foo": "x", "_CONDOR_FOO": "1"},
        True,
        [
            f"WARN  _CONDOR_START: overrides START, which the pilot configures itself -- "
            f"{OVERRIDE_FIX}",
            f"WARN  _condor_sec_foo: overrides SEC_FOO, which the pilot configures itself -- "
            f"{OVERRIDE_FIX}",
            "PASS  _CONDOR_*: 3 HTCondor overrides passed through",
        ],
    ),
    (
        "misspellings",
        {
            "GLIDEIN_site": "x",
            "OSG_PROJECTNAME": "x",
            # Near, but not near enough, to a setting: a factory's own variables.
            "GLIDEIN_CPUS": "4",
            "GLIDEIN_Entry_Name": "e",
            "CVMFS_FOO": "1",
        },
        True,
        [
            "WARN  GLIDEIN_site: is not a setting of the pilot; did you mean GLIDEIN_Site? "
            "-- rename it",
            "WARN  OSG_PROJECTNAME: is not a setting of the pilot; did you mean "
            "OSG_PROJECT_NAME? -- rename it",
        ],
    ),
]


@pytest.mark.parametrize(
    ("environ", "accepted", "expected"), [r[1:] for r in REPORTS], ids=[r[0] for r in REPORTS]
)
def test_each_report_line_names_the_variable_the_problem_and_the_fix(
    environ: dict[str, str | None], accepted: bool, expected: list[str]
) -> None:
    result, shown = lines(environ)
    assert (result is not None, shown) == (accepted, expected)


def test_the_integer_rule_of_a_variable_checks_both_bounds_and_names_the_unit() -> None:
    """The rows of VARIABLES are built at import; this is the rule they are built with."""
    rule = variables._int(1, 24, "hours")
    assert rule(" 24 ") == 24
    for bad in ("0", "25"):
        with pytest.raises(ev.Invalid) as raised:
            rule(bad)
        assert (raised.value.message, raised.value.fix) == (
            f"{bad} is out of range",
            "use an integer between 1 and 24 hours",
        )
    with pytest.raises(ev.Invalid) as raised:
        variables._int(1)("0")
    assert raised.value.fix == "use an integer >= 1"


def test_the_inputs_are_found_even_when_other_settings_are_bad() -> None:
    environ = {
        "NUM_CPUS": "zero",
        "TOKEN_DIR": " /srv/tokens ",
        "EXTRA_ATTRIBUTES_FILE": "/srv/extra.cfg",
        "TOKEN": "  abc.def.ghi \n",
    }
    assert input_files(environ) == (
        PurePosixPath("/srv/tokens"),
        PurePosixPath("/srv/extra.cfg"),
        "abc.def.ghi",
    )


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"TOKEN_DIR": " ", "EXTRA_ATTRIBUTES_FILE": "", "TOKEN": "  "},
        {"TOKEN_DIR": "tokens", "EXTRA_ATTRIBUTES_FILE": "/my extra.cfg"},
    ],
    ids=["unset", "blank", "invalid"],
)
def test_unset_or_invalid_input_paths_fall_back_to_the_defaults(environ: dict[str, str]) -> None:
    """An invalid path gets its own FAIL from load_settings; here it is only not used."""
    assert input_files(environ) == (
        PurePosixPath("/etc/condor/tokens-orig.d"),
        PurePosixPath("/etc/osg/extra-attributes.cfg"),
        None,
    )


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("POOL", "ITB-OSPool", "itb-ospool"),
        ("POOL", "cm.example.org:9618", "cm.example.org:9618 (a central manager's host)"),
        ("CVMFSEXEC_REPOS", "a.example.org, b.example.org", "a.example.org b.example.org"),
    ],
)
def test_a_valid_value_is_shown_in_its_pass_line_as_the_pilot_understood_it(
    name: str, value: str, shown: str
) -> None:
    """The PASS line says what the value means here: a pool by its name, anything
    else that is no pool name as a central manager's host; lists as parsed."""
    findings = Findings()
    load_settings({**MINIMAL, name: value}, findings=findings)
    assert [f.message for f in findings if f.subject == name] == [shown]
