"""The host config file (SPEC 11): a corpus of good and bad files, the key table, the shipped file.

Every bad file must be reported as a FAIL naming ``file:line`` (or the file,
for a key that is missing) with the culprit in the message; a good file must
parse without FAIL to the values written. The launcher's pilot keys are the
pilot's own variable table, checked with the same parsers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from paths import REPO

from ospool_ep.findings import Finding, Status
from ospool_ep.host import config as lcfg
from ospool_ep.host import keys as lkeys
from ospool_ep.inputs import settings, variables

SHIPPED = REPO / "rpm" / "ospool-ep.cfg"
SOURCE = "/etc/osg/ospool-ep.cfg"
MINIMAL = "GLIDEIN_Site=TestSite\nGLIDEIN_ResourceName=Test Resource\n"
"""Two lines every case starts from (lines 1 and 2), unless it says otherwise."""


def parse(text: str) -> lcfg.LaunchConfig:
    return lcfg.parse_config(text.encode("utf-8", "surrogateescape"), source=SOURCE)


def fails(config: lcfg.LaunchConfig) -> list[Finding]:
    return [p for p in config.problems if p.status is Status.FAIL]


def warns(config: lcfg.LaunchConfig) -> list[Finding]:
    return [p for p in config.problems if p.status is Status.WARN]


# ---------------------------------------------------------------------------
# Bad files: one FAIL at the line, saying what is wrong


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    """Appended after MINIMAL (so the first added line is line 3)."""
    line: int | None
    """The line the FAIL names; None: the file itself (a missing key)."""
    says: str
    base: str = MINIMAL


BAD = [
    Bad("command-substitution", "NUM_CPUS=$(nproc)\n", 3, "'$(' is shell syntax"),
    Bad("backticks", "MEMORY=`free -m`\n", 3, "'`' is shell syntax"),
    Bad("variable", "WORKER_TEMP_DIR=$HOME/scratch\n", 3, "'$H' is shell syntax"),
    Bad("braced-variable", 'IMAGE="${REGISTRY}/ospool-ep"\n', 3, "'${' is shell syntax"),
    Bad("quoted-substitution", "GLIDEIN_Start_Extra='$(cat x)'\n", 3, "shell syntax"),
    Bad("export", "export NUM_CPUS=4\n", 3, "starts with 'export'"),
    Bad("semicolon", "NUM_CPUS=4; MEMORY=8000\n", 3, "';' is a shell operator"),
    Bad("and-and", "POOL=ospool && rm -rf /\n", 3, "'&' is a shell operator"),
    Bad("pipe", "OSG_PROJECT_NAME=a | tee\n", 3, "'|' is a shell operator"),
    Bad("redirect", "WORKER_TEMP_DIR=/scratch > /dev/null\n", 3, "'>' is a shell operator"),
    Bad("continuation", "CVMFSEXEC_REPOS=oasis.opensciencegrid.org \\\n", 3, "continued lines"),
    Bad("backslash", "GLIDEIN_Start_Extra=a\\tb\n", 3, "backslash"),
    Bad("inline-comment", "NUM_CPUS=4  # four\n", 3, "' #' starts no comment"),
    Bad("no-equals", "NUM_CPUS 4\n", 3, "is not KEY=VALUE"),
    Bad("bad-key-name", "NUM CPUS=4\n", 3, "is not a key name"),
    Bad("key-with-dash", "NUM-CPUS=4\n", 3, "is not a key name"),
    Bad("unclosed-quote", 'GLIDEIN_Start_Extra="True\n', 3, "opening quote does not close"),
    Bad("mismatched-quotes", "IMAGE='x\"\n", 3, "opening quote does not close"),
    Bad("double-in-double", 'GLIDEIN_Start_Extra="a == "b""\n', 3, "contains a double quote"),
    Bad("duplicate", "NUM_CPUS=4\nMEMORY=8000\nNUM_CPUS=8\n", 5, "set again (first at line 3)"),
    Bad("duplicate-required", "GLIDEIN_Site=Other\n", 3, "set again (first at line 1)"),
    Bad("control-character", "GLIDEIN_Start_Extra=True\x07\n", 3, "control character"),
    Bad("not-utf8", "GLIDEIN_Start_Extra=caf\udce9\n", 3, "not valid UTF-8"),
    Bad("token-in-file", "TOKEN=eyJhbGciOi.eyJpc3Mi.c2ln\n", 3, "TOKEN is not allowed"),
    Bad("pilot-dir", "PILOT_DIR=/scratch\n", 3, "PILOT_DIR is not allowed"),
    Bad("token-dir", "TOKEN_DIR=/etc/tokens\n", 3, "TOKEN_DIR is not allowed"),
    Bad(
        "cvmfs-conflict",
        "BIND_MOUNT_CVMFS=true\nCVMFSEXEC_REPOS=oasis.opensciencegrid.org\n",
        4,
        "conflicts with BIND_MOUNT_CVMFS=true (line 3)",
    ),
    Bad("site-missing", "", None, "GLIDEIN_Site is not set", base="GLIDEIN_ResourceName=R\n"),
    Bad(
        "site-empty",
        "",
        1,
        "GLIDEIN_Site is not set",
        base="GLIDEIN_Site=\nGLIDEIN_ResourceName=R\n",
    ),
    Bad("num-cpus-zero", "NUM_CPUS=0\n", 3, "NUM_CPUS: 0 is out of range"),
    Bad("memory-word", "MEMORY=lots\n", 3, "MEMORY: 'lots' is not a whole number"),
    Bad("hours-negative", "ACCEPT_JOBS_FOR_HOURS=-1\n", 3, "out of range"),
    Bad("pool-unknown", "POOL=osppol\n", 3, "POOL: 'osppol' is not a known pool"),
    Bad("walltime-vs-grace", "PILOT_WALLTIME=20\n", 3, "not longer than SHUTDOWN_GRACE"),
    Bad(
        "site-dollar",
        "",
        1,
        "GLIDEIN_Site: contains '$'",
        base="GLIDEIN_Site=a$\nGLIDEIN_ResourceName=R\n",
    ),
    Bad("squid-credentials", "OSG_SQUID_LOCATION=http://u:p@squid:3128\n", 3, "credentials"),
    Bad("bad-repo", "CVMFSEXEC_REPOS=oasis\n", 3, "not a CVMFS repository name"),
    Bad("relative-token", "TOKEN_LOCATION=ospool-ep.tkn\n", 3, "not an absolute path"),
    Bad("colon-in-path", "WORKER_TEMP_DIR=/scratch:rw\n", 3, "contains ':'"),
    Bad("bad-bool", "PROVIDE_NVIDIA_GPU=maybe\n", 3, "'maybe' is not a boolean"),
    Bad("pilot-bool", "ITB=sometimes\n", 3, "ITB: 'sometimes' is not a boolean"),
    Bad("job-env-open-quote", 'EXTRA_JOB_ENV="A=\'x y"\n', 3, "not closed"),
    Bad("ccb-range-port", "CCB_RANGE_LOW=70000\n", 3, "CCB_RANGE_LOW: 70000 is out of range"),
    Bad("engine", "CONTAINER_ENGINE=lxc\n", 3, "not one of docker, podman"),
    Bad("image", "IMAGE=-v /:/host\n", 3, "not an image reference"),
    Bad(
        "extra-args-env", "CONTAINER_EXTRA_ARGS=--env-file /etc/shadow\n", 3, "--env-file is set by"
    ),
    Bad("extra-args-user", "CONTAINER_EXTRA_ARGS=--user=0\n", 3, "--user is set by"),
    Bad("extra-args-e", "CONTAINER_EXTRA_ARGS=-eTOKEN=x\n", 3, "-eTOKEN is set by"),
    Bad("job-env-token", "EXTRA_JOB_ENV=TOKEN=abc\n", 3, "TOKEN may not be set for jobs"),
    Bad("notify-not-url", "NOTIFY_STOP_URL=ftp://x/y\n", 3, "not an http(s) URL"),
    Bad("walltime-shape", "PILOT_WALLTIME=1:2:3:4\n", 3, "not a walltime"),
    Bad("pids-negative", "CONTAINER_PIDS_LIMIT=-5\n", 3, "out of range"),
]


@pytest.mark.parametrize("case", BAD, ids=[b.id for b in BAD])
def test_a_bad_file_fails_naming_the_line(case: Bad) -> None:
    config = parse(case.base + case.text)
    where = f"{SOURCE}:{case.line}" if case.line else SOURCE
    matching = [p for p in fails(config) if p.subject == where and case.says in p.message]
    assert matching, f"no FAIL at {where} saying {case.says!r}: {config.problems}"
    assert config.failed
    for problem in config.problems:
        assert "eyJ" not in problem.as_line(), "token text in a message"


def test_the_corpus_is_big_enough() -> None:
    assert len(BAD) >= 25


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    """Like ``check``: five broken lines, five FAILs, in line order."""
    config = parse(
        "GLIDEIN_Site=S\nGLIDEIN_ResourceName=R\nNUM_CPUS=0\nexport X=1\n"
        "MEMORY=$(x)\nFOO BAR=1\nNUM_CPUS=2\n"
    )
    lines = sorted(int(p.subject.rsplit(":", 1)[1]) for p in fails(config))
    assert lines == [3, 4, 5, 6, 7]


def test_a_file_of_unknown_keys_fails_for_the_two_required_ones() -> None:
    config = parse("GLIDEIN_Site2=x\nGLIDEIN_ResourceName2=y\n")
    assert {p.message for p in fails(config)} == {
        "GLIDEIN_Site is not set",
        "GLIDEIN_ResourceName is not set",
    }
    assert {p.subject for p in fails(config)} == {SOURCE}


# ---------------------------------------------------------------------------
# Good files


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("GLIDEIN_Site=Plain", "GLIDEIN_Site", "Plain"),
        ('GLIDEIN_Site="Double Quoted"', "GLIDEIN_Site", "Double Quoted"),
        ("GLIDEIN_Site='Single Quoted'", "GLIDEIN_Site", "Single Quoted"),
        ("  GLIDEIN_Site =  Spaced  ", "GLIDEIN_Site", "Spaced"),
        ("GLIDEIN_Site=Windows\r", "GLIDEIN_Site", "Windows"),
        ('GLIDEIN_Start_Extra=TARGET.ProjectName == "X"', "GLIDEIN_Start_Extra", None),
        ("GLIDEIN_Start_Extra='TARGET.ProjectName == \"X\"'", "GLIDEIN_Start_Extra", None),
        (
            "GLIDEIN_Start_Extra=RequestCpus < 4 && RequestMemory <= 8000",
            "GLIDEIN_Start_Extra",
            None,
        ),
        ("CVMFS_HTTP_PROXY=http://squid:3128;DIRECT", "CVMFS_HTTP_PROXY", None),
        ("CVMFS_HTTP_PROXY=http://a:3128|http://b:3128;DIRECT", "CVMFS_HTTP_PROXY", None),
        ("_CONDOR_STARTD_DEBUG=D_FULLDEBUG", "_CONDOR_STARTD_DEBUG", None),
        ("_CONDOR_SLOT_WEIGHT=$(Cpus)", "_CONDOR_SLOT_WEIGHT", "$(Cpus)"),
        ("_CONDOR_START_EXTRA=(x > 1) || (y < 2)", "_CONDOR_START_EXTRA", None),
        (
            "CONTAINER_EXTRA_ARGS=--network host --add-host cm:10.0.0.1",
            "CONTAINER_EXTRA_ARGS",
            None,
        ),
        ("NOTIFY_STOP_URL='https://h.example/a;b'", "NOTIFY_STOP_URL", "https://h.example/a;b"),
        ("PROVIDE_NVIDIA_GPU=on", "PROVIDE_NVIDIA_GPU", "on"),
        ("BIND_MOUNT_CVMFS=Yes", "BIND_MOUNT_CVMFS", "Yes"),
        ("PILOT_WALLTIME=1-12:00:00", "PILOT_WALLTIME", None),
        ("CONDOR_HOST=cm1.example.org:9618, cm2.example.org", "CONDOR_HOST", None),
        ("POOL=cm.example.org:9618", "POOL", None),
        # What OSG's container and RPM accept (SPEC 4.1, 11).
        ("POOL=htcondor-cm", "POOL", None),
        ("ITB=on", "ITB", None),
        ("OSG_SQUID_LOCATION=squid.example.edu", "OSG_SQUID_LOCATION", None),
        ("SINGULARITY_BIND_EXTRA=/data:/data:ro /scratch", "SINGULARITY_BIND_EXTRA", None),
        ("EXTRA_JOB_ENV=\"A=1 B='x y'\"", "EXTRA_JOB_ENV", "A=1 B='x y'"),
        ("EXTRA_JOB_ENV=A=1 B='x y'", "EXTRA_JOB_ENV", "A=1 B='x y'"),
        (
            "CVMFSEXEC_REPOS='oasis.opensciencegrid.org singularity.opensciencegrid.org'",
            "CVMFSEXEC_REPOS",
            None,
        ),
    ],
)
def test_a_good_line_gives_its_value(line: str, key: str, value: str | None) -> None:
    base = "" if key == "GLIDEIN_Site" else "GLIDEIN_Site=S\n"
    config = parse(base + line + "\nGLIDEIN_ResourceName=R\n")
    assert not fails(config), config.problems
    expected = value if value is not None else line.split("=", 1)[1].strip().strip("'")
    assert config.get(key) == expected


def test_comments_blank_lines_and_empty_values_are_nothing() -> None:
    config = parse(
        "\ufeff# a comment\n   # indented\n; systemd-style\n\n\t\n"
        + MINIMAL
        + "WORKER_TEMP_DIR=\nNUM_CPUS=''\n"
    )
    assert not config.problems
    assert config.get("WORKER_TEMP_DIR") is None and config.get("NUM_CPUS") is None


def test_an_unknown_key_is_a_warning_with_a_guess() -> None:
    config = parse(MINIMAL + "WORK_TEMP_DIR=/scratch\nglidein_site_x=1\nNUM_CPU=2\n")
    assert not fails(config)
    messages = [(p.subject, p.message) for p in warns(config)]
    assert (
        f"{SOURCE}:3",
        "WORK_TEMP_DIR is not a known key and is ignored; did you mean WORKER_TEMP_DIR?",
    ) in messages
    assert any(s == f"{SOURCE}:5" and "did you mean NUM_CPUS?" in m for s, m in messages)
    assert config.get("WORK_TEMP_DIR") == "/scratch"  # kept, but never passed on
    assert "WORK_TEMP_DIR" not in [name for name, _, _ in config.pilot_variables()]


def test_itb_with_a_production_pool_is_a_good_file() -> None:
    """ITB=true with POOL=prod-ospool joins production, as OSG's container does."""
    config = parse(MINIMAL + "ITB=true\nPOOL=prod-ospool\n")
    assert not config.problems


UPSTREAM_RPM_FILE = MINIMAL.join(
    (
        "# The shape of /etc/osg/ospool-ep.cfg from OSG's ospool-ep RPM, filled in\n"
        "WORKER_TEMP_DIR=\nPROVIDE_NVIDIA_GPU=false\nTOKEN_LOCATION=/etc/osg/ospool-ep.tkn\n",
        "BIND_MOUNT_CVMFS=false\nCVMFSEXEC_REPOS=\nCVMFS_HTTP_PROXY=\nCVMFS_QUOTA_LIMIT=\n"
        "CVMFSEXEC_DEBUG=false\nNUM_CPUS=\nMEMORY=\nACCEPT_JOBS_FOR_HOURS=62\n"
        "RETIREMENT_HOURS=10\nACCEPT_IDLE_MINUTES=30\nOSG_SQUID_LOCATION=\n"
        "SINGULARITY_BIND_EXTRA=\nOSG_PROJECT_NAME=\nGLIDEIN_Start_Extra=\n"
        "ALLOW_CPUJOB_ON_GPUSLOT=false\nCONTAINER_PILOT_USE_JOB_HOOK=true\n"
        "GLIDEIN_RANDOMIZE_NAME=false\nENABLE_REMOTE_SYSLOG=true\nITB=false\n",
    )
)


def test_upstreams_rpm_file_has_no_fail_and_warns_about_each_key_not_acted_on() -> None:
    """A site's file from OSG's RPM parses unchanged (SPEC 11); each key the pilot does
    not act on is a WARN naming it at its line, none is dropped silently."""
    config = parse(UPSTREAM_RPM_FILE)
    assert not fails(config), config.problems
    warned = {p.message.split(" ", 1)[0]: p.subject for p in warns(config)}
    where = {
        line.split("=", 1)[0]: f"{SOURCE}:{number}"
        for number, line in enumerate(UPSTREAM_RPM_FILE.split("\n"), start=1)
    }
    # ENABLE_REMOTE_SYSLOG is acted on (SPEC 7.3): where the stream goes is the pilot's line.
    unheeded = ("ALLOW_CPUJOB_ON_GPUSLOT", "CONTAINER_PILOT_USE_JOB_HOOK")
    assert warned == {key: where[key] for key in unheeded}
    assert all("is accepted but not acted on by this pilot" in p.message for p in warns(config))


def test_a_bad_proxy_for_jobs_is_a_warning_at_its_line_not_a_failure() -> None:
    config = parse(MINIMAL + "https_proxy='http://proxy:3128 corp'\n")
    assert not fails(config)
    [warn] = warns(config)
    assert (warn.subject, warn.message) == (
        f"{SOURCE}:3",
        "https_proxy: is not a plain proxy address: contains spaces or quotes",
    )


def test_a_key_not_acted_on_with_a_value_that_asks_nothing_is_not_a_warning() -> None:
    config = parse(MINIMAL + "ENABLE_REMOTE_SYSLOG=off\nGARBAGE_COLLECTION=1\n")
    assert not config.problems


def test_a_case_slip_is_guessed_by_name() -> None:
    config = parse(MINIMAL + "glidein_start_extra=True\n")
    assert "did you mean GLIDEIN_Start_Extra?" in warns(config)[0].message


def test_bind_mount_makes_the_cvmfsexec_settings_a_warning() -> None:
    config = parse(MINIMAL + "BIND_MOUNT_CVMFS=true\nCVMFS_QUOTA_LIMIT=4000\n")
    assert not fails(config)
    assert "has no effect with BIND_MOUNT_CVMFS=true" in warns(config)[0].message


def test_privileged_in_extra_args_is_allowed_with_a_warning() -> None:
    config = parse(MINIMAL + "CONTAINER_EXTRA_ARGS=--privileged\n")
    assert not fails(config)
    assert "--privileged" in warns(config)[0].message


def test_only_pilot_variables_are_listed_for_the_container() -> None:
    config = parse(
        MINIMAL
        + "TOKEN_LOCATION=/etc/osg/t\nWORKER_TEMP_DIR=/s\nNUM_CPUS=2\nIMAGE=x\n"
        + "NOTIFY_STOP_URL=https://h/secret\n_CONDOR_X=1\nUNKNOWN=1\n"
    )
    assert config.pilot_variables() == [
        ("GLIDEIN_Site", "TestSite", False),
        ("GLIDEIN_ResourceName", "Test Resource", False),
        ("NUM_CPUS", "2", False),
        ("NOTIFY_STOP_URL", "https://h/secret", True),
        ("_CONDOR_X", "1", False),
    ]


def test_container_names_follow_the_file_name() -> None:
    """Upstream's name for the main file (its users' ``docker exec ospool-ep-container``)."""
    assert lcfg.default_container_name("/etc/osg/ospool-ep.cfg") == "ospool-ep-container"
    assert lcfg.default_container_name("/etc/osg/ospool-ep.d/gpu.cfg") == "ospool-ep-gpu"


# ---------------------------------------------------------------------------
# The key table and the pilot's variables


def test_the_file_knows_every_variable_the_pilot_reads() -> None:
    """SPEC 11: every 4.1 variable is a key (passed on, or refused with the host
    key to use instead); nothing else is passed as a pilot variable."""
    assert lkeys.PILOT_VARIABLES == variables.NAMES
    passed = {k.name for k in lkeys.KEYS if k.role in (lkeys.Role.PILOT, lkeys.Role.PILOT_SECRET)}
    assert passed <= variables.NAMES
    assert {k.name for k in lkeys.KEYS if k.role == lkeys.Role.REFUSED} == {
        "TOKEN",
        "PILOT_DIR",
        "TOKEN_DIR",
    }


def test_the_upstream_rpm_keys_are_there() -> None:
    for key in (
        "TOKEN_LOCATION",
        "WORKER_TEMP_DIR",
        "PROVIDE_NVIDIA_GPU",
        "BIND_MOUNT_CVMFS",
        "CVMFSEXEC_REPOS",
        "CVMFS_HTTP_PROXY",
        "CVMFS_QUOTA_LIMIT",
        "CONTAINER_ENGINE",
        "IMAGE",
    ):
        assert key in lkeys.KEYS_BY_NAME


def test_the_launcher_checks_each_pilot_value_with_the_pilots_own_parser() -> None:
    """One rule per variable (issue 10): the launcher's check of a pilot key is the
    parser of the pilot's own row, and the pilot parses with that row's parser
    too, adding HTCondor's ClassAd checks only where a value is an expression
    (the launcher may accept what the pilot rejects at start, never the reverse)."""
    for variable in variables.VARIABLES:
        key = lkeys.KEYS_BY_NAME[variable.name]
        if key.role in (lkeys.Role.PILOT, lkeys.Role.PILOT_SECRET):
            assert key.check is variable.parse, variable.name
        stricter = settings.pilot_parser(variable) is not variable.parse
        assert stricter == (variable.name == "GLIDEIN_Start_Extra"), variable.name


def test_the_keys_whose_values_may_carry_credentials_are_passed_by_name() -> None:
    secret = {k.name for k in lkeys.KEYS if k.role == lkeys.Role.PILOT_SECRET}
    assert secret == {
        "CVMFS_HTTP_PROXY",
        "NOTIFY_START_URL",
        "NOTIFY_STOP_URL",
        "http_proxy",
        "https_proxy",
        "FTP_PROXY",
    }


# ---------------------------------------------------------------------------
# The shipped file


def test_the_shipped_file_documents_every_key() -> None:
    text = SHIPPED.read_text()
    for key in lkeys.KEYS:
        assert (
            f"\n{key.name}=" in text or f"\n#{key.name}=" in text or key.role == lkeys.Role.REFUSED
        ), key.name
        if key.role == lkeys.Role.REFUSED:
            assert key.name in text
    assert "_CONDOR_" in text


def test_the_shipped_file_as_installed_asks_only_for_site_and_resource() -> None:
    """Installed and not yet edited, the file fails on the two names a site must
    give, at their lines; with them filled in it is valid, and its commented
    example lines are valid lines too."""
    text = SHIPPED.read_text()
    config = lcfg.parse_config(text.encode(), source=str(SHIPPED))
    assert {p.message for p in fails(config)} == {
        "GLIDEIN_Site is not set",
        "GLIDEIN_ResourceName is not set",
    }
    assert not warns(config)
    filled = text.replace("\nGLIDEIN_Site=\n", "\nGLIDEIN_Site=S\n").replace(
        "\nGLIDEIN_ResourceName=\n", "\nGLIDEIN_ResourceName=R\n"
    )
    assert not lcfg.parse_config(filled.encode(), source="x").problems
    examples = "\n".join(
        line[1:]
        for line in text.splitlines()
        if re.match(r"#[A-Za-z_][A-Za-z0-9_]*=", line)  # "#KEY=value", not prose
    )
    uncommented = lcfg.parse_config((MINIMAL + examples).encode(), source="examples")
    # BIND_MOUNT_CVMFS=false and the example repos do not conflict; nothing fails.
    assert not fails(uncommented), uncommented.problems
