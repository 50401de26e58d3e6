"""The bad-input corpus (SPEC 3, 5, 7.4, 13): ``ospool-ep check`` on one bad input at a time.

Each case starts from a valid minimal pilot environment (site, resource, a
token file good for 30 days, a scratch directory, no extra-attributes file,
``MIN_DISK_GB=0``) built from a clean base (``PATH`` and ``HOME`` only), then
changes exactly one thing. Every case must end in exit 78 with the culprit
(variable, file, or ``file:line``) on a FAIL line, no traceback, and no token
text or signature anywhere in the output.

The CLI runs in this process with exactly the pilot's environment
(``cli_runner.run_in_process``); a few cases at the end run the installed
console script as a site does, one per kind of ending.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_runner import TRACEBACK, Result, run_as_process, run_in_process
from jwt_factory import DAY, DROP, STARTD_SCOPE, header, make_jwt, payload

CANONICAL = "flock.opensciencegrid.org"
CONFIG_ERROR = 78
UNAVAILABLE = 69
USAGE = 2


def _htcondor_daemons_installed() -> bool:
    """Whether ``check`` will find HTCondor here (the same places the product looks)."""
    sbin = "/usr/sbin:/sbin:/usr/local/sbin"
    return all(
        shutil.which(name) or shutil.which(name, path=sbin)
        for name in ("condor_master", "condor_startd")
    )


@dataclass
class Pilot:
    """A valid minimal pilot: its files under ``root`` and the environment pointing at them."""

    root: Path
    now: int = field(default_factory=lambda: int(time.time()))
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.token_dir = self.root / "tokens-orig.d"
        self.pilot_dir = self.root / "pilot"
        self.attributes = self.root / "extra-attributes.cfg"
        self.token_dir.mkdir()
        self.pilot_dir.mkdir()
        self.write_token(CANONICAL, self.token())
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "GLIDEIN_Site": "Example Site",
            "GLIDEIN_ResourceName": "Example_CE",
            "TOKEN_DIR": str(self.token_dir),
            "PILOT_DIR": str(self.pilot_dir),
            "EXTRA_ATTRIBUTES_FILE": str(self.attributes),
            "MIN_DISK_GB": "0",
        }

    def token(self, *, head: dict[str, object] | None = None, **claims: object) -> str:
        """A JWT issued now, valid 30 days unless ``claims`` say otherwise; remembered as secret."""
        defaults: dict[str, object] = {"iat": self.now, "exp": self.now + 30 * DAY}
        text = make_jwt(claims=payload(**{**defaults, **claims}), head=head)
        self.remember(text)
        return text

    def remember(self, text: str) -> None:
        """Treat each line of ``text`` as token text no output may contain (if long enough)."""
        for line in text.splitlines():
            secret = line.strip().strip("\"'")
            if len(secret) >= 20:
                self.secrets.append(secret)

    def write_token(self, name: str, text: str) -> Path:
        path = self.token_dir / name
        path.write_text(text + "\n")
        path.chmod(0o600)
        return path

    def write_attributes(self, text: str) -> None:
        self.attributes.write_text(text)

    def run(self, *args: str) -> Result:
        """``ospool-ep ARGS`` in this process, in ``root`` with exactly ``env``."""
        return run_in_process(args, env=self.env, cwd=self.root)

    def run_process(self, *args: str) -> Result:
        """``ospool-ep ARGS`` as the installed console script, in ``root`` with exactly ``env``."""
        return run_as_process(args, env=self.env, cwd=self.root)

    def assert_no_secret_in(self, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text
            segments = secret.split(".")
            if len(segments) == 3 and len(segments[2]) >= 16:
                assert segments[2] not in text, "a token signature was printed"


@pytest.fixture
def pilot(tmp_path: Path) -> Pilot:
    return Pilot(tmp_path)


# ------------------------------------------------------------------ the corpus

Change = Callable[[Pilot], None]


def env(**values: str | None) -> Change:
    """Set (or with None, unset) environment variables."""

    def change(pilot: Pilot) -> None:
        for name, value in values.items():
            if value is None:
                pilot.env.pop(name, None)
            else:
                pilot.env[name] = value

    return change


def token_env(make: Callable[[Pilot], str]) -> Change:
    """Set TOKEN to a (secret) text built from the pilot."""

    def change(pilot: Pilot) -> None:
        text = make(pilot)
        pilot.remember(text)
        pilot.env["TOKEN"] = text

    return change


def token_file(make: Callable[[Pilot], str], name: str = CANONICAL) -> Change:
    """Replace (or add) a token file with the text built from the pilot."""

    def change(pilot: Pilot) -> None:
        text = make(pilot)
        pilot.remember(text)
        pilot.write_token(name, text)

    return change


def attributes(text: str) -> Change:
    def change(pilot: Pilot) -> None:
        pilot.write_attributes(text)

    return change


def _empty_token_dir(pilot: Pilot) -> None:
    (pilot.token_dir / CANONICAL).unlink()


def _missing_token_dir(pilot: Pilot) -> None:
    shutil.rmtree(pilot.token_dir)


def _token_dir_is_a_file(pilot: Pilot) -> None:
    shutil.rmtree(pilot.token_dir)
    pilot.token_dir.write_text(pilot.token() + "\n")


def _dangling_token_link(pilot: Pilot) -> None:
    (pilot.token_dir / CANONICAL).unlink()
    (pilot.token_dir / CANONICAL).symlink_to(pilot.root / "gone" / CANONICAL)


def _attributes_is_a_directory(pilot: Pilot) -> None:
    pilot.attributes.mkdir()


def _dangling_attributes_link(pilot: Pilot) -> None:
    pilot.attributes.symlink_to(pilot.root / "gone.cfg")


def _attributes_not_utf8(pilot: Pilot) -> None:
    pilot.attributes.write_bytes(b'Foo = "caf\xe9"\n')


def _without_jti_or_sub(p: Pilot) -> str:
    return p.token(sub=DROP, jti=DROP)


def _truncated(p: Pilot) -> str:
    return p.token().rsplit(".", 1)[0]


def both(*changes: Change) -> Change:
    def change(pilot: Pilot) -> None:
        for each in changes:
            each(pilot)

    return change


_never_expiring = token_file(lambda p: p.token(exp=DROP))


def case(case_id: str, culprit: str, change: Change, *marks: pytest.MarkDecorator) -> object:
    """One corpus entry: ``culprit`` (formatted with the pilot's paths) must be on a FAIL line."""
    return pytest.param(culprit, change, id=case_id, marks=marks)


CORPUS = [
    # --- SPEC 4.1, first table
    case("GLIDEIN_Site-unset", "GLIDEIN_Site", env(GLIDEIN_Site=None)),
    case("GLIDEIN_Site-blank", "GLIDEIN_Site", env(GLIDEIN_Site="   ")),
    case("GLIDEIN_Site-quote", "GLIDEIN_Site", env(GLIDEIN_Site='My"Site')),
    case("GLIDEIN_Site-macro", "GLIDEIN_Site", env(GLIDEIN_Site="Site$(HOSTNAME)")),
    case("GLIDEIN_Site-129-chars", "GLIDEIN_Site", env(GLIDEIN_Site="s" * 129)),
    case("GLIDEIN_ResourceName-unset", "GLIDEIN_ResourceName", env(GLIDEIN_ResourceName=None)),
    case(
        "GLIDEIN_ResourceName-newline",
        "GLIDEIN_ResourceName",
        env(GLIDEIN_ResourceName="CE\nSTART = True"),
    ),
    case(
        "GLIDEIN_ResourceName-backslash",
        "GLIDEIN_ResourceName",
        env(GLIDEIN_ResourceName="CE\\"),
    ),
    case(
        "GLIDEIN_Start_Extra-trailing-garbage",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra="1; b = 2"),
    ),
    case(
        "GLIDEIN_Start_Extra-unbalanced",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra="(TARGET.RequestCpus <= 4"),
    ),
    case(
        "GLIDEIN_Start_Extra-macro",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra="TARGET.RequestCpus <= $(NUM_CPUS)"),
    ),
    case(
        "GLIDEIN_Start_Extra-two-lines",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra="True\nSTART = True"),
    ),
    case(
        "GLIDEIN_Start_Extra-string-not-boolean",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra='"yes"'),
    ),
    case(
        "GLIDEIN_Start_Extra-600-and-terms",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra=" && ".join(["True"] * 600)),
    ),
    case(
        "GLIDEIN_Start_Extra-150-parentheses",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra="(" * 150 + "True" + ")" * 150),
    ),
    case(
        "GLIDEIN_Start_Extra-too-long",
        "GLIDEIN_Start_Extra",
        env(GLIDEIN_Start_Extra='TARGET.Owner != "' + "x" * 9000 + '"'),
    ),
    case("OSG_PROJECT_NAME-space", "OSG_PROJECT_NAME", env(OSG_PROJECT_NAME="My Project")),
    case(
        "OSG_PROJECT_NAME-quote-escape",
        "OSG_PROJECT_NAME",
        env(OSG_PROJECT_NAME='x" || true || "'),
    ),
    case(
        "OSG_SQUID_LOCATION-credentials",
        "OSG_SQUID_LOCATION",
        env(OSG_SQUID_LOCATION="user:pw@squid.example.edu"),
    ),
    case(
        "OSG_SQUID_LOCATION-https",
        "OSG_SQUID_LOCATION",
        env(OSG_SQUID_LOCATION="https://squid.example.edu:3128"),
    ),
    case(
        "OSG_SQUID_LOCATION-newline-in-host",
        "OSG_SQUID_LOCATION",
        env(OSG_SQUID_LOCATION="squid\n.example.edu:3128"),
    ),
    case("POOL-near-miss", "POOL", env(POOL="prod-ospol")),
    case("POOL-transposed", "POOL", env(POOL="osppol")),
    case("POOL-no-host", "POOL", env(POOL="no such pool")),
    case("POOL-port-out-of-range", "POOL", env(POOL="cm.example.org:99999")),
    case("POOL-newline-in-host", "POOL", env(POOL="cm\n.example.org")),
    case("POOL-ipv6-zone-macro", "POOL", env(POOL="[fe80::1%$(X)]:9618")),
    case("POOL-ipv6-zone-space", "POOL", env(POOL="[fe80::1%eth 0]:9618")),
    case("CONDOR_HOST-ipv6-zone-uri-escape", "CONDOR_HOST", env(CONDOR_HOST="[fe80::1%25eth0]")),
    case("NUM_CPUS-fullwidth-digit", "NUM_CPUS", env(NUM_CPUS="\uff18")),
    case("CONDOR_HOST-no-host", "CONDOR_HOST", env(CONDOR_HOST=" , ")),
    case("CONDOR_HOST-bad-port", "CONDOR_HOST", env(CONDOR_HOST="cm.example.org:port")),
    case("ITB-not-boolean", "ITB", env(ITB="maybe")),
    case("ACCEPT_JOBS_FOR_HOURS-abc", "ACCEPT_JOBS_FOR_HOURS", env(ACCEPT_JOBS_FOR_HOURS="abc")),
    case("ACCEPT_JOBS_FOR_HOURS-zero", "ACCEPT_JOBS_FOR_HOURS", env(ACCEPT_JOBS_FOR_HOURS="0")),
    case(
        "ACCEPT_JOBS_FOR_HOURS-absurd-with-never-expiring-token",
        "ACCEPT_JOBS_FOR_HOURS",
        both(_never_expiring, env(ACCEPT_JOBS_FOR_HOURS="99999999999999999999")),
    ),
    case(
        "RETIREMENT_HOURS-absurd-with-never-expiring-token",
        "RETIREMENT_HOURS",
        both(_never_expiring, env(RETIREMENT_HOURS="9999999999999")),
    ),
    case("RETIREMENT_HOURS-negative", "RETIREMENT_HOURS", env(RETIREMENT_HOURS="-1")),
    case("ACCEPT_IDLE_MINUTES-negative", "ACCEPT_IDLE_MINUTES", env(ACCEPT_IDLE_MINUTES="-5")),
    case("ACCEPT_IDLE_MINUTES-fraction", "ACCEPT_IDLE_MINUTES", env(ACCEPT_IDLE_MINUTES="1.5")),
    case("NUM_CPUS-zero", "NUM_CPUS", env(NUM_CPUS="0")),
    case("NUM_CPUS-word", "NUM_CPUS", env(NUM_CPUS="four")),
    case("MEMORY-negative", "MEMORY", env(MEMORY="-100")),
    case("MEMORY-with-unit", "MEMORY", env(MEMORY="8GB")),
    case("CVMFSEXEC_REPOS-no-repo", "CVMFSEXEC_REPOS", env(CVMFSEXEC_REPOS=", ,")),
    case("CVMFSEXEC_REPOS-short-name", "CVMFSEXEC_REPOS", env(CVMFSEXEC_REPOS="oasis")),
    case(
        "CVMFS_HTTP_PROXY-space",
        "CVMFS_HTTP_PROXY",
        env(CVMFS_HTTP_PROXY="http://squid:3128 DIRECT"),
    ),
    case("CVMFS_QUOTA_LIMIT-zero", "CVMFS_QUOTA_LIMIT", env(CVMFS_QUOTA_LIMIT="0")),
    case("CVMFS_QUOTA_LIMIT-word", "CVMFS_QUOTA_LIMIT", env(CVMFS_QUOTA_LIMIT="lots")),
    case("CVMFSEXEC_DEBUG-not-boolean", "CVMFSEXEC_DEBUG", env(CVMFSEXEC_DEBUG="verbose")),
    case("CVMFS_MODE-unknown", "CVMFS_MODE", env(CVMFS_MODE="host")),
    case("CVMFS_CHECK_SECONDS-zero", "CVMFS_CHECK_SECONDS", env(CVMFS_CHECK_SECONDS="0")),
    case("CVMFS_CHECK_SECONDS-word", "CVMFS_CHECK_SECONDS", env(CVMFS_CHECK_SECONDS="often")),
    case("OSDF_CHECK_SECONDS-too-often", "OSDF_CHECK_SECONDS", env(OSDF_CHECK_SECONDS="5")),
    case("OSDF_CHECK_SECONDS-word", "OSDF_CHECK_SECONDS", env(OSDF_CHECK_SECONDS="hourly")),
    case(
        "GLIDEIN_RANDOMIZE_NAME-not-boolean",
        "GLIDEIN_RANDOMIZE_NAME",
        env(GLIDEIN_RANDOMIZE_NAME="sometimes"),
    ),
    case(
        "SINGULARITY_DISABLE_PID_NAMESPACES-not-boolean",
        "SINGULARITY_DISABLE_PID_NAMESPACES",
        env(SINGULARITY_DISABLE_PID_NAMESPACES="2"),
    ),
    case(
        "SINGULARITY_BIND_EXTRA-relative",
        "SINGULARITY_BIND_EXTRA",
        env(SINGULARITY_BIND_EXTRA="data:/data"),
    ),
    case(
        "SINGULARITY_BIND_EXTRA-bad-option",
        "SINGULARITY_BIND_EXTRA",
        env(SINGULARITY_BIND_EXTRA="/data:/data:rx"),
    ),
    case("EXTRA_JOB_ENV-no-equals", "EXTRA_JOB_ENV", env(EXTRA_JOB_ENV="FOO")),
    case("EXTRA_JOB_ENV-quote", "EXTRA_JOB_ENV", env(EXTRA_JOB_ENV='FOO="bar baz"')),
    case("EXTRA_JOB_ENV-condor-knob", "EXTRA_JOB_ENV", env(EXTRA_JOB_ENV="_CONDOR_START=True")),
    case("EXTRA_JOB_ENV-macro", "EXTRA_JOB_ENV", env(EXTRA_JOB_ENV="FOO=$(HOME)")),
    case("EXTRA_JOB_ENV-open-quote", "EXTRA_JOB_ENV", env(EXTRA_JOB_ENV="FOO='bar baz")),
    case(
        "EXTRA_JOB_ENV-macro-in-quotes",
        "EXTRA_JOB_ENV",
        env(EXTRA_JOB_ENV="FOO='$(START) x'"),
    ),
    case(
        "APPTAINER_REGISTRY_MIRROR-ftp",
        "APPTAINER_REGISTRY_MIRROR",
        env(APPTAINER_REGISTRY_MIRROR="ftp://mirror.example.org"),
    ),
    case(
        "APPTAINER_REGISTRY_MIRROR-not-a-host",
        "APPTAINER_REGISTRY_MIRROR",
        env(APPTAINER_REGISTRY_MIRROR="mirror example org"),
    ),
    case("ENABLE_REMOTE_SYSLOG-not-boolean", "ENABLE_REMOTE_SYSLOG", env(ENABLE_REMOTE_SYSLOG="2")),
    case("SYSLOG_HOST-url", "SYSLOG_HOST", env(SYSLOG_HOST="tls://syslog.example.org:6514")),
    case("SYSLOG_HOST-port-out-of-range", "SYSLOG_HOST", env(SYSLOG_HOST="syslog.example.org:0")),
    # read by OSG's container, accepted and checked (not acted on here)
    case("REGISTRY_HOST-space", "REGISTRY_HOST", env(REGISTRY_HOST="os registry")),
    case("CCB_RANGE_LOW-word", "CCB_RANGE_LOW", env(CCB_RANGE_LOW="low")),
    case("CCB_RANGE_HIGH-out-of-range", "CCB_RANGE_HIGH", env(CCB_RANGE_HIGH="65536")),
    case("GARBAGE_COLLECTION-not-boolean", "GARBAGE_COLLECTION", env(GARBAGE_COLLECTION="yes!")),
    case("OSG_INSTITUTION_ID-quote", "OSG_INSTITUTION_ID", env(OSG_INSTITUTION_ID='a"b')),
    case(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION-no-weight",
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION="htc/rocky:9"),
    ),
    case(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU-zero-weight",
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU",
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION_GPU="0%__htc/rocky:9-cuda-12.6.0"),
    ),
    case(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION-absolute-image",
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION="100%__/etc/condor"),
    ),
    case(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION-parent",
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION="50%__htc/../../pilot 50%__htc/rocky:9"),
    ),
    case(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION-weight-over-100",
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION="101%__htc/rocky:9"),
    ),
    case(
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION-quote",
        "OSG_DEFAULT_CONTAINER_DISTRIBUTION",
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION='100%__htc/rocky:9"'),
    ),
    case(
        "SUPERVISORD_RESTART_POLICY-unknown",
        "SUPERVISORD_RESTART_POLICY",
        env(SUPERVISORD_RESTART_POLICY="always"),
    ),
    case(
        "ALLOW_CPUJOB_ON_GPUSLOT-two-lines",
        "ALLOW_CPUJOB_ON_GPUSLOT",
        env(ALLOW_CPUJOB_ON_GPUSLOT="false\nSTART = True"),
    ),
    case(
        "CONTAINER_PILOT_USE_JOB_HOOK-control",
        "CONTAINER_PILOT_USE_JOB_HOOK",
        env(CONTAINER_PILOT_USE_JOB_HOOK="true\x1b"),
    ),
    # --- SPEC 4.1, second table
    case(
        "SHUTDOWN_GRACE_SECONDS-zero",
        "SHUTDOWN_GRACE_SECONDS",
        env(SHUTDOWN_GRACE_SECONDS="0"),
    ),
    case(
        "SHUTDOWN_GRACE_SECONDS-with-unit",
        "SHUTDOWN_GRACE_SECONDS",
        env(SHUTDOWN_GRACE_SECONDS="30s"),
    ),
    case("PILOT_WALLTIME-zero", "PILOT_WALLTIME", env(PILOT_WALLTIME="0")),
    case(
        "PILOT_WALLTIME-shorter-than-the-grace-period",
        "PILOT_WALLTIME",
        env(PILOT_WALLTIME="10", SHUTDOWN_GRACE_SECONDS="25"),
    ),
    case("PILOT_WALLTIME-words", "PILOT_WALLTIME", env(PILOT_WALLTIME="2 days")),
    case("MEMORY_OVERHEAD_MB-negative", "MEMORY_OVERHEAD_MB", env(MEMORY_OVERHEAD_MB="-1")),
    case("MIN_DISK_GB-negative", "MIN_DISK_GB", env(MIN_DISK_GB="-1")),
    case("MIN_DISK_GB-word", "MIN_DISK_GB", env(MIN_DISK_GB="five")),
    case("LOG_FORMAT-unknown", "LOG_FORMAT", env(LOG_FORMAT="xml")),
    case("JOB_CONTAINMENT-unknown", "JOB_CONTAINMENT", env(JOB_CONTAINMENT="always")),
    case("JOB_CONTAINMENT-boolean", "JOB_CONTAINMENT", env(JOB_CONTAINMENT="true")),
    case("JOB_CONTAINMENT-empty-word", "JOB_CONTAINMENT", env(JOB_CONTAINMENT="'none'")),
    case("METRICS_PORT-out-of-range", "METRICS_PORT", env(METRICS_PORT="70000")),
    case("METRICS_PORT-word", "METRICS_PORT", env(METRICS_PORT="http")),
    case(
        "NOTIFY_START_URL-ftp",
        "NOTIFY_START_URL",
        env(NOTIFY_START_URL="ftp://hooks.example.org/start"),
    ),
    case(
        "NOTIFY_STOP_URL-no-scheme",
        "NOTIFY_STOP_URL",
        env(NOTIFY_STOP_URL="hooks.example.org/stop"),
    ),
    case("TOPOLOGY_CHECK-not-boolean", "TOPOLOGY_CHECK", env(TOPOLOGY_CHECK="on-ish")),
    case("PILOT_DIR-relative", "PILOT_DIR", env(PILOT_DIR="pilot")),
    case("PILOT_DIR-macro", "PILOT_DIR", env(PILOT_DIR="/pilot/$(HOSTNAME)")),
    case("TOKEN_DIR-relative", "TOKEN_DIR", env(TOKEN_DIR="tokens")),
    case("TOKEN_DIR-space", "TOKEN_DIR", env(TOKEN_DIR="/etc/condor/my tokens")),
    case("EXTRA_ATTRIBUTES_FILE-relative", "EXTRA_ATTRIBUTES_FILE", env(EXTRA_ATTRIBUTES_FILE="x")),
    # --- SPEC 5.1, tokens
    case(
        "token-expired",
        CANONICAL,
        token_file(lambda p: p.token(iat=p.now - 60 * DAY, exp=p.now - DAY)),
    ),
    case("token-malformed-two-segments", CANONICAL, token_file(_truncated)),
    case("token-malformed-not-base64", CANONICAL, token_file(lambda p: "not a token at all")),
    case(
        "token-missing-kid",
        CANONICAL,
        token_file(lambda p: p.token(head=header(kid=DROP))),
    ),
    case("token-missing-alg", CANONICAL, token_file(lambda p: p.token(head=header(alg=DROP)))),
    case("token-missing-iss", CANONICAL, token_file(lambda p: p.token(iss=DROP))),
    case("token-missing-iat", CANONICAL, token_file(lambda p: p.token(iat=DROP))),
    case("token-no-sub-nor-jti", CANONICAL, token_file(_without_jti_or_sub)),
    case(
        "token-scope-without-ADVERTISE_STARTD",
        CANONICAL,
        token_file(lambda p: p.token(scope="condor:/READ condor:/ADVERTISE_MASTER")),
    ),
    case(
        "token-scope-for-a-schedd",
        CANONICAL,
        token_file(lambda p: p.token(scope="condor:/READ condor:/WRITE")),
    ),
    case(
        "token-quoted",
        CANONICAL,
        token_file(lambda p: f'"{p.token()}"'),
    ),
    case("token-file-empty", CANONICAL, token_file(lambda p: "")),
    case(
        "token-file-second-line-bad",
        f"{CANONICAL} line 2",
        token_file(lambda p: f"{p.token(scope=STARTD_SCOPE)}\n{_truncated(p)}"),
    ),
    case(
        "token-second-file-expired",
        "backup-token",
        token_file(lambda p: p.token(exp=p.now - 1), name="backup-token"),
    ),
    case("token-dir-empty", "{token_dir}", _empty_token_dir),
    case("token-dir-missing", "{token_dir}", _missing_token_dir),
    case("token-dir-is-a-file", "{token_dir}", _token_dir_is_a_file),
    case("token-file-dangling-symlink", CANONICAL, _dangling_token_link),
    case("TOKEN-env-malformed", "TOKEN", token_env(_truncated)),
    case("TOKEN-env-garbage", "TOKEN", token_env(lambda p: "hunter2-not-a-jwt")),
    case(
        "TOKEN-env-expired",
        "TOKEN",
        token_env(lambda p: p.token(exp=p.now - DAY)),
    ),
    # --- SPEC 5.4, extra attributes
    case("attribute-bad-name", "{attributes}:2", attributes("# site\n1Bad = 1\n")),
    case("attribute-name-with-dash", "{attributes}:1", attributes("My-Attr = 1\n")),
    case("attribute-reserved-word", "{attributes}:1", attributes("Target = 1\n")),
    case("attribute-START", "{attributes}:1", attributes("START = True\n")),
    case("attribute-SEC_-prefix", "{attributes}:1", attributes('SEC_TOKEN_DIRECTORY = "/tmp"\n')),
    case("attribute-pilot-published", "{attributes}:1", attributes("GLIDEIN_ToDie = 1\n")),
    case("attribute-untabled-knob", "{attributes}:1", attributes("WANT_HOLD = False\n")),
    case("attribute-slot-knob", "{attributes}:1", attributes("SLOT1_START = True\n")),
    case(
        "attribute-600-and-terms",
        "{attributes}:1",
        attributes("Foo = " + " && ".join(["True"] * 600) + "\n"),
    ),
    case("attribute-leading-zero", "{attributes}:1", attributes("Foo = 0x1F\n")),
    case("attribute-published-by-startd", "{attributes}:1", attributes("Cpus = 64\n")),
    case("attribute-duplicate", "{attributes}:3", attributes("Foo = 1\n\nfoo = 2\n")),
    case("attribute-bad-expression", "{attributes}:1", attributes("Foo = (1 +\n")),
    case("attribute-macro", "{attributes}:1", attributes("Foo = $(HOSTNAME)\n")),
    case("attribute-env-macro", "{attributes}:1", attributes("Foo = $ENV(HOME)\n")),
    case("attribute-trailing-garbage", "{attributes}:1", attributes("Foo = 1; b = 2\n")),
    case(
        "attribute-inline-comment",
        "{attributes}:1",
        attributes('Foo = "x" # the site\'s tag\n'),
    ),
    case("attribute-continuation", "{attributes}:1", attributes("Foo = 1 \\\nBar = 2\n")),
    case("attribute-no-equals", "{attributes}:1", attributes("Foo\n")),
    case("attribute-empty-value", "{attributes}:1", attributes("Foo =\n")),
    case("attribute-file-is-a-directory", "{attributes}", _attributes_is_a_directory),
    case("attribute-file-dangling-symlink", "{attributes}", _dangling_attributes_link),
    case("attribute-file-not-utf8", "{attributes}", _attributes_not_utf8),
    case("GLIDEIN_Start_Extra-record", "GLIDEIN_Start_Extra", env(GLIDEIN_Start_Extra="[a = 1]")),
    case("attribute-config-keyword-use", "{attributes}:1", attributes("use = 1\n")),
    case("attribute-knob-HOSTNAME", "{attributes}:1", attributes('HostName = "x"\n')),
]


@pytest.mark.parametrize(("culprit", "change"), CORPUS)
def test_each_bad_input_makes_check_exit_78_naming_the_culprit(
    pilot: Pilot, culprit: str, change: Change
) -> None:
    """One bad input: exit 78, the culprit on a FAIL line, no traceback, no token text."""
    change(pilot)
    culprit = culprit.format(token_dir=pilot.token_dir, attributes=pilot.attributes)
    result = pilot.run("check")
    assert result.returncode == CONFIG_ERROR, result.output
    assert any(culprit in line for line in result.fail_lines), (
        f"{culprit!r} is on no FAIL line:\n{result.output}"
    )
    assert "Traceback" not in result.output
    pilot.assert_no_secret_in(result.output)


# ------------------------------------------------------------------ what OSG's container accepts

# (id, the change, the variables that must get a WARN because the pilot does not act on them)
UPSTREAM_FORMS = [
    pytest.param(env(ITB="on", POOL="prod-ospool"), (), id="ITB-on-with-prod-ospool"),
    pytest.param(env(ITB="Y"), (), id="ITB-Y"),
    pytest.param(env(GLIDEIN_RANDOMIZE_NAME="T", CVMFSEXEC_DEBUG="off"), (), id="booleans-T-off"),
    pytest.param(env(OSG_SQUID_LOCATION="squid.example.edu"), (), id="OSG_SQUID_LOCATION-no-port"),
    pytest.param(env(POOL="cm"), (), id="POOL-kubernetes-service"),
    pytest.param(env(POOL="htcondor-cm:9618"), (), id="POOL-single-label-with-port"),
    pytest.param(env(CONDOR_HOST="cm"), (), id="CONDOR_HOST-single-label"),
    pytest.param(
        env(EXTRA_JOB_ENV="MODE=XL GREETING='hello world' Q=\"\"x\"\" 'N=it''s'"),
        (),
        id="EXTRA_JOB_ENV-htcondor-quoted-syntax",
    ),
    pytest.param(
        env(SINGULARITY_BIND_EXTRA="/data:/data:ro /scratch,/opt:/opt"),
        (),
        id="SINGULARITY_BIND_EXTRA-blank-separated",
    ),
    pytest.param(
        env(APPTAINER_REGISTRY_MIRROR="mirror.example.org/dockerhub"),
        ("APPTAINER_REGISTRY_MIRROR",),
        id="APPTAINER_REGISTRY_MIRROR-with-namespace",
    ),
    pytest.param(
        env(http_proxy="http://proxy:3128", https_proxy="http://proxy:3128", OSG_HOSTNAME="wn1"),
        (),
        id="proxy-settings-for-jobs",
    ),
    pytest.param(env(https_proxy="http://u:$x@proxy:3128"), ("https_proxy",), id="bad-https_proxy"),
    pytest.param(env(ENABLE_REMOTE_SYSLOG="false"), (), id="ENABLE_REMOTE_SYSLOG-false"),
    pytest.param(
        env(ENABLE_REMOTE_SYSLOG="true", SYSLOG_HOST="syslog.example.org:514"),
        (),
        id="ENABLE_REMOTE_SYSLOG-true",
    ),
    pytest.param(
        env(SYSLOG_HOST="syslog.osg.chtc.io"), ("remote syslog",), id="SYSLOG_HOST-osg-central"
    ),
    pytest.param(
        env(CCB_RANGE_LOW="10576", CCB_RANGE_HIGH="10599"),
        ("CCB_RANGE_LOW", "CCB_RANGE_HIGH"),
        id="CCB_RANGE",
    ),
    pytest.param(env(GARBAGE_COLLECTION="1"), (), id="GARBAGE_COLLECTION-on"),
    pytest.param(env(GARBAGE_COLLECTION="0"), ("GARBAGE_COLLECTION",), id="GARBAGE_COLLECTION-off"),
    pytest.param(
        env(OSG_INSTITUTION_ID="https://osg-htc.org/iid/05ejpqr48"),
        ("OSG_INSTITUTION_ID",),
        id="OSG_INSTITUTION_ID",
    ),
    pytest.param(
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION="10%__htc/rocky:8 90%__htc/rocky:9"),
        (),
        id="OSG_DEFAULT_CONTAINER_DISTRIBUTION",
    ),
    pytest.param(
        env(OSG_DEFAULT_CONTAINER_DISTRIBUTION="1%__htc/rocky:8 2%__htc/rocky:9"),
        ("OSG_DEFAULT_CONTAINER_DISTRIBUTION",),
        id="OSG_DEFAULT_CONTAINER_DISTRIBUTION-relative-weights",
    ),
    pytest.param(
        env(ALLOW_CPUJOB_ON_GPUSLOT="false", CONTAINER_PILOT_USE_JOB_HOOK="true"),
        ("ALLOW_CPUJOB_ON_GPUSLOT", "CONTAINER_PILOT_USE_JOB_HOOK"),
        id="keys-upstreams-rpm-still-ships",
    ),
    pytest.param(
        attributes(
            '# as OSG\'s guide shows\nKUBERNETES_NAMESPACE = "path-osgdev"\n'
            'KUBERNETES_DEPLOYMENT = "osgvo-docker-pilot-gpu"\nGLIDEIN_Country = "US"\n'
        ),
        (),
        id="extra-attributes-as-osgs-guide-invites",
    ),
]


@pytest.mark.parametrize(("change", "unheeded"), UPSTREAM_FORMS)
def test_what_osgs_container_accepts_passes_check_with_a_warn_for_what_is_not_acted_on(
    pilot: Pilot, change: Change, unheeded: tuple[str, ...]
) -> None:
    """A form OSG's container accepts is no configuration error here (SPEC 1, 4.1); a
    variable the pilot does not act on is a WARN naming it, never silently dropped."""
    change(pilot)
    result = pilot.run("check", "--json")
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert [c for c in report["checks"] if c["status"] == "FAIL" and c["kind"] == "config"] == []
    assert result.returncode in (0, UNAVAILABLE), result.output
    warned = {c["subject"] for c in report["checks"] if c["status"] == "WARN"}
    assert warned & {*unheeded, *pilot.env} == set(unheeded)


def test_the_corpus_has_at_least_fifty_cases() -> None:
    """SPEC 13 asks for a bad-input corpus of at least 50 cases."""
    assert len(CORPUS) >= 50


def test_the_corpus_covers_every_variable_of_spec_4_1() -> None:
    """Each variable of both tables of SPEC 4.1 has at least one bad-value case."""
    from ospool_ep.inputs.variables import VARIABLES

    covered = {param.values[0] for param in CORPUS}  # type: ignore[attr-defined]
    # A lenient variable (proxy settings for jobs) is never an error: see UPSTREAM_FORMS.
    missing = {variable.name for variable in VARIABLES if not variable.lenient} - covered
    assert not missing


# ------------------------------------------------------------------ good input, several problems


def test_a_valid_environment_has_no_config_fail_and_exits_for_missing_htcondor_only(
    pilot: Pilot,
) -> None:
    """The baseline is valid: no configuration FAIL; exit 69 where HTCondor is absent, else 0."""
    result = pilot.run("check", "--json")
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    fails = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert [c for c in fails if c["kind"] == "config"] == [], result.output
    # Where HTCondor or a working Apptainer is missing (JOB_CONTAINMENT=required).
    assert {c["subject"] for c in fails} <= {"HTCondor", "Job containment"}, result.output
    assert ("HTCondor" in {c["subject"] for c in fails}) is not _htcondor_daemons_installed()
    assert result.returncode == (UNAVAILABLE if fails else 0), result.output
    assert report["exit_code"] == result.returncode
    pilot.assert_no_secret_in(result.output)


def test_the_text_report_of_a_valid_environment_shows_the_token_claims_not_the_token(
    pilot: Pilot,
) -> None:
    """The token is reported by its claims (issuer, subject, kid, expiry), never its text."""
    result = pilot.run("check")
    assert result.returncode in (0, UNAVAILABLE), result.output
    assert not [
        line
        for line in result.fail_lines
        if "HTCondor:" not in line and "Job containment:" not in line
    ]
    [token_line] = [line for line in result.output.splitlines() if CANONICAL in line]
    assert token_line.startswith("PASS")
    assert "iss=flock.opensciencegrid.org" in token_line
    assert "kid=POOL" in token_line
    pilot.assert_no_secret_in(result.output)


def test_a_condor_override_of_a_pilot_knob_is_a_warning_not_a_config_error(
    pilot: Pilot,
) -> None:
    """``_CONDOR_<KNOB>`` is HTCondor's own override (SPEC 4.1): passed through with a WARN
    naming it when it touches what the pilot configures; it is never a configuration FAIL."""
    env(_CONDOR_START="False")(pilot)
    result = pilot.run("check", "--json")
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert result.returncode != CONFIG_ERROR, result.output
    assert any(c["status"] == "WARN" and c["subject"] == "_CONDOR_START" for c in report["checks"])
    assert not [c for c in report["checks"] if c["status"] == "FAIL" and c["kind"] == "config"]


def test_several_problems_in_the_environment_are_all_reported_in_one_run(pilot: Pilot) -> None:
    """Every bad variable is its own FAIL line, all in one run (SPEC 5)."""
    env(NUM_CPUS="0", POOL="no such pool", LOG_FORMAT="xml", GLIDEIN_Site=None)(pilot)
    result = pilot.run("check")
    assert result.returncode == CONFIG_ERROR
    for culprit in ("NUM_CPUS", "POOL", "LOG_FORMAT", "GLIDEIN_Site"):
        assert any(culprit in line for line in result.fail_lines), culprit


def test_token_and_attribute_problems_are_all_reported_in_one_run(pilot: Pilot) -> None:
    """An expired token, a bad second token and two bad attribute lines: four FAILs, one run."""
    token_file(lambda p: p.token(exp=p.now - DAY))(pilot)
    token_file(_truncated, name="second")(pilot)
    attributes("START = True\nFoo = $(HOME)\n")(pilot)
    result = pilot.run("check")
    assert result.returncode == CONFIG_ERROR
    for culprit in (CANONICAL, "second", f"{pilot.attributes}:1", f"{pilot.attributes}:2"):
        assert any(culprit in line for line in result.fail_lines), culprit
    pilot.assert_no_secret_in(result.output)


def test_environment_token_and_attribute_problems_are_all_reported_in_one_run(
    pilot: Pilot,
) -> None:
    """A bad variable, an expired token and a forbidden attribute: three FAILs, one run."""
    env(NUM_CPUS="0")(pilot)
    token_file(lambda p: p.token(exp=p.now - DAY))(pilot)
    attributes("START = True\n")(pilot)
    result = pilot.run("check")
    assert result.returncode == CONFIG_ERROR
    for culprit in ("NUM_CPUS", CANONICAL, f"{pilot.attributes}:1"):
        assert any(culprit in line for line in result.fail_lines), culprit


# ------------------------------------------------------------------ --json


def test_json_output_of_bad_input_parses_has_exit_78_and_no_token(pilot: Pilot) -> None:
    """``check --json`` is one JSON document with the process's exit code and no secret."""
    token_env(lambda p: p.token(exp=p.now - DAY))(pilot)
    env(NUM_CPUS="0")(pilot)
    text = pilot.run("check")
    result = pilot.run("check", "--json")
    assert result.returncode == text.returncode == CONFIG_ERROR
    report = json.loads(result.stdout)
    assert report["exit_code"] == CONFIG_ERROR
    assert any(
        c["status"] == "FAIL" and c["subject"] == "NUM_CPUS" and c["kind"] == "config"
        for c in report["checks"]
    )
    pilot.assert_no_secret_in(result.output)


def test_json_output_of_a_bad_token_names_the_file_and_no_token(pilot: Pilot) -> None:
    """A token FAIL in ``--json`` names the file; neither the token nor its signature appear."""
    token_file(lambda p: p.token(scope="condor:/READ"))(pilot)
    result = pilot.run("check", "--json")
    assert result.returncode == CONFIG_ERROR
    report = json.loads(result.stdout)
    assert report["exit_code"] == CONFIG_ERROR
    assert any(c["status"] == "FAIL" and CANONICAL in c["subject"] for c in report["checks"])
    pilot.assert_no_secret_in(result.output)


def test_json_output_of_good_input_has_the_same_exit_code_as_the_text_report(
    pilot: Pilot,
) -> None:
    """Text and ``--json`` agree on the exit code for a valid pilot."""
    text = pilot.run("check")
    result = pilot.run("check", "--json")
    assert result.returncode == text.returncode
    assert json.loads(result.stdout)["exit_code"] == result.returncode
    pilot.assert_no_secret_in(result.output)


# ------------------------------------------------------------------ render, usage


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(env(NUM_CPUS="0"), id="bad-variable"),
        pytest.param(token_file(lambda p: p.token(exp=p.now - DAY)), id="expired-token"),
        pytest.param(attributes("START = True\n"), id="bad-attribute"),
    ],
)
def test_render_with_bad_input_exits_78_and_writes_nothing(pilot: Pilot, change: Change) -> None:
    """``render --output DIR`` on bad input: exit 78, DIR untouched, no traceback, no token."""
    change(pilot)
    output = pilot.root / "rendered"
    output.mkdir()
    result = pilot.run("render", "--output", str(output))
    assert result.returncode == CONFIG_ERROR, result.output
    assert list(output.iterdir()) == []
    assert "Traceback" not in result.output
    pilot.assert_no_secret_in(result.output)


def test_render_with_bad_input_does_not_create_the_output_directory(pilot: Pilot) -> None:
    """A DIR that did not exist is not created when the input is bad."""
    env(POOL="no such pool")(pilot)
    output = pilot.root / "not-yet"
    result = pilot.run("render", "--output", str(output))
    assert result.returncode == CONFIG_ERROR
    assert not output.exists()


def test_render_with_good_input_exits_0_and_writes_condor_config(pilot: Pilot) -> None:
    """``render --output DIR`` on the valid pilot writes ``DIR/condor_config``, no token."""
    output = pilot.root / "rendered"
    result = pilot.run("render", "--output", str(output))
    assert result.returncode == 0, result.output
    assert (output / "condor_config").is_file()
    written = "".join(path.read_text() for path in output.rglob("*") if path.is_file())
    pilot.assert_no_secret_in(result.output + written)


def test_the_rendered_condor_config_is_self_contained_for_htcondor(pilot: Pilot) -> None:
    """``CONDOR_CONFIG=DIR/condor_config`` alone lets HTCondor read the pilot's knobs (SPEC 3)."""
    output = pilot.root / "rendered"
    assert pilot.run("render", "--output", str(output)).returncode == 0
    reader = (
        "import json, htcondor2; "
        "print(json.dumps({k: htcondor2.param.get(k) for k in ('DAEMON_LIST', 'GLIDEIN_Site')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", reader],
        env={"PATH": pilot.env["PATH"], "CONDOR_CONFIG": str(output / "condor_config")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "DAEMON_LIST": "MASTER, STARTD",
        "GLIDEIN_Site": '"Example Site"',
    }


def test_the_token_variable_alone_is_enough_without_a_token_directory(pilot: Pilot) -> None:
    """TOKEN is the alternative to the mount (SPEC 4.1): no token directory, no config FAIL."""
    _missing_token_dir(pilot)
    token_env(lambda p: p.token())(pilot)
    result = pilot.run("check", "--json")
    report = json.loads(result.stdout)
    assert result.returncode != CONFIG_ERROR, result.output
    assert not [c for c in report["checks"] if c["status"] == "FAIL" and c["kind"] == "config"]
    pilot.assert_no_secret_in(result.output)


@pytest.mark.parametrize(
    "args",
    [["bogus"], [], ["render"], ["check", "--bogus"]],
    ids=["unknown-command", "no-command", "render-without-output", "unknown-option"],
)
def test_a_usage_error_exits_2(pilot: Pilot, args: list[str]) -> None:
    """Command-line mistakes exit 2 with argparse's usage message, not a traceback."""
    result = pilot.run(*args)
    assert result.returncode == USAGE
    assert "usage:" in result.stderr
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ the installed command


def _valid_check_code() -> int:
    return 0 if _htcondor_daemons_installed() else UNAVAILABLE


@pytest.mark.parametrize(
    ("args", "change", "expected"),
    [
        pytest.param(["check", "--json"], env(), _valid_check_code(), id="check-valid"),
        pytest.param(["check"], env(NUM_CPUS="0"), CONFIG_ERROR, id="check-bad-variable"),
        pytest.param(
            ["check"],
            token_file(lambda p: p.token(exp=p.now - DAY)),
            CONFIG_ERROR,
            id="check-expired-token-file",
        ),
        pytest.param(
            ["check"], token_env(_truncated), CONFIG_ERROR, id="check-malformed-TOKEN-variable"
        ),
        pytest.param(
            ["check"], attributes("START = True\n"), CONFIG_ERROR, id="check-bad-attribute"
        ),
        pytest.param(["render", "--output", "rendered"], env(), 0, id="render-valid"),
        pytest.param(["bogus"], env(), USAGE, id="usage-error"),
    ],
)
def test_the_installed_command_ends_with_its_exit_code_and_no_traceback(
    pilot: Pilot, args: list[str], change: Change, expected: int
) -> None:
    """The console script a site runs: the right exit code for each kind of ending, no
    traceback, no token text; the in-process runner of the corpus above agrees with it."""
    change(pilot)
    result = pilot.run_process(*args)
    assert result.returncode == expected, result.output
    assert TRACEBACK not in result.output
    pilot.assert_no_secret_in(result.output)
    in_process = pilot.run(*args)
    assert (in_process.returncode, in_process.fail_lines) == (result.returncode, result.fail_lines)


# ------------------------------------------------------------------ job containment (SPEC 7.6)


@pytest.mark.parametrize(
    ("policy", "status"),
    [("required", "FAIL"), ("preferred", "WARN"), ("none", "WARN")],
)
def test_check_gives_the_containment_verdict_of_run_where_no_apptainer_is_there(
    pilot: Pilot, policy: str, status: str
) -> None:
    """No Apptainer on PATH and no CVMFS: ``required`` is an environment FAIL (exit 69,
    as run would end) naming the fix; ``preferred`` and ``none`` are WARNs, jobs bare."""
    empty = pilot.root / "bin"
    empty.mkdir()
    env(PATH=str(empty), CVMFS_MODE="none", JOB_CONTAINMENT=policy)(pilot)
    result = pilot.run("check", "--json")
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    [line] = [c for c in report["checks"] if c["subject"] == "Job containment"]
    assert line["status"] == status, result.output
    fails = {c["subject"] for c in report["checks"] if c["status"] == "FAIL"}
    if policy == "required":
        assert line["kind"] == "environment"
        assert "no apptainer in the image or in CVMFS" in line["message"]
        assert "JOB_CONTAINMENT=none" in line["fix"]
        assert result.returncode == UNAVAILABLE
    else:
        assert "Job containment" not in fails
        assert "bare" in line["message"]
        assert result.returncode == (UNAVAILABLE if fails else 0), result.output
