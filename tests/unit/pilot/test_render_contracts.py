"""render's filters and its read-back, pinned by value (SPEC 6, 7.2).

The filters produce knob values HTCondor evaluates (retirement time, update
interval, the drain drop-in, the jobs' environment): pinned exactly, at the
boundaries of the update interval. The read-back's failures are lines a site
reads: pinned with ``Finding.as_line()``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import classad2
import pytest
from render_plans import make_plan

from ospool_ep.findings import Findings, Kind
from ospool_ep.inputs import values as ev
from ospool_ep.inputs.settings import Settings
from ospool_ep.pilot import dropin, render

DEADLINE = 1_700_000_000


def test_retirement_counts_from_the_jobs_start_to_the_whole_second_deadline() -> None:
    assert render.retirement_until(DEADLINE + 0.9) == (
        f"ifThenElse({dropin.OVER_ITS_REQUEST}, -1,"
        f" ifThenElse(MY.JobStart =?= undefined, 0, {DEADLINE} - MY.JobStart))"
    )


@pytest.mark.parametrize(
    ("job", "retirement"),
    [
        pytest.param({"MemoryUsage": 64, "DiskUsage": 10}, DEADLINE - 1000, id="within"),
        pytest.param({}, DEADLINE - 1000, id="not-measured-yet"),
        pytest.param({"MemoryUsage": 65, "DiskUsage": 10}, -1, id="over-its-memory"),
        pytest.param({"MemoryUsage": 64, "DiskUsage": 11}, -1, id="over-its-disk"),
    ],
)
def test_a_job_over_its_request_gets_no_retirement_so_the_hold_policy_holds_it(
    job: dict[str, int], retirement: int
) -> None:
    """Evaluated in the slot ad, where the startd has the job's usage. (``MY.`` is dropped:
    outside a match, classad2 gives ``MY.JobStart`` a value of its own, not the ad's.)"""
    slot = classad2.ClassAd({"JobUniverse": 5, "Memory": 64, "Disk": 10, "JobStart": 1000, **job})
    slot["MAXJOBRETIREMENTTIME"] = classad2.ExprTree(
        render.retirement_until(DEADLINE).replace("MY.", "")
    )
    assert slot.eval("MAXJOBRETIREMENTTIME") == retirement


def test_the_drain_drop_in_stops_matching_and_retires_by_the_deadline() -> None:
    assert render.drain_config(deadline=DEADLINE) == (
        "# Written by the supervisor when asked to stop (SPEC 7.2).\n"
        "START = False\n"
        f"MAXJOBRETIREMENTTIME = {dropin.retirement_until(DEADLINE)}\n"
    )


def test_times_are_rendered_as_utc_iso_8601() -> None:
    assert render._isotime(0) == "1970-01-01T00:00:00Z"
    assert render._isotime(DEADLINE) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(
    ("idle_seconds", "interval"),
    [(0, None), (1, 30), (61, 30), (62, 31), (599, 299), (600, None), (1800, None)],
)
def test_the_update_interval_is_half_the_idle_time_between_30_s_and_htcondors_default(
    idle_seconds: int, interval: int | None
) -> None:
    assert render.update_interval(idle_seconds) == interval


def test_every_value_written_is_text_and_an_unsafe_one_is_refused_with_its_reason() -> None:
    assert render._checked(4) == "4"
    assert render._checked("a b") == "a b"
    with pytest.raises(ValueError) as raised:
        render._checked("x\\")
    assert str(raised.value) == (
        "refusing to render an unsafe value into HTCondor config: contains a backslash"
    )


def test_the_jobs_environment_names_the_site_the_squid_and_the_extra_variables() -> None:
    settings = Settings(
        site="My Site",
        resource_name="CE_1",
        squid_url="http://squid.example.edu:3128",
        extra_job_env=(("FOO", "bar"), ("N", "4")),
    )
    assert render.job_environment(settings) == [
        "GLIDEIN_Site='My Site'",
        "GLIDEIN_ResourceName=CE_1",
        "OSG_SITE_NAME=CE_1",
        "OSG_SQUID_LOCATION=http://squid.example.edu:3128",
        "http_proxy=http://squid.example.edu:3128",
        "FOO=bar",
        "N=4",
    ]
    assert render.job_environment(Settings(site="S", resource_name="R")) == [
        "GLIDEIN_Site=S",
        "GLIDEIN_ResourceName=R",
        "OSG_SITE_NAME=R",
    ]


def written(tmp_path: Path) -> Path:
    output = tmp_path / "cfg"
    render.write_tree(
        render.render_files(make_plan(), config_dir=PurePosixPath(output)), output=output
    )
    return output


def test_the_read_back_reports_each_way_it_can_fail_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = written(tmp_path)
    expected = {"NUM_CPUS": "4", "MEMORY": "1"}
    findings = Findings()
    assert not render.verify_tree(output=output, expected=expected, findings=findings, environ={})
    # A site's own override (any case) excuses that knob.
    overridden = {"_condor_memory": "1"}
    assert render.verify_tree(
        output=output, expected=expected, findings=findings, environ=overridden
    )
    assert [f.as_line() for f in findings] == [
        "FAIL  HTCondor config: HTCondor reads different values for MEMORY than were rendered "
        "-- a _CONDOR_* override or a bug changed them; remove overrides of pilot knobs",
        "PASS  HTCondor config: parsed by HTCondor, 2 knobs read back",
    ]

    (output / "config.d" / "99-broken.conf").write_text("if true\n")
    findings = Findings()
    assert not render.verify_tree(output=output, expected=expected, findings=findings, environ={})
    (line,) = [f.as_line() for f in findings]
    assert line.startswith(
        "FAIL  HTCondor config: HTCondor's parser rejected the rendered configuration: "
    )
    assert line.endswith(" -- check _CONDOR_* overrides; otherwise this is a bug, please report it")

    monkeypatch.setattr(render, "PARSER_TIMEOUT_SECONDS", 0.001)
    findings = Findings()
    assert not render.verify_tree(output=output, expected=expected, findings=findings, environ={})
    assert [f.as_line() for f in findings] == [
        "FAIL  HTCondor config: the parser did not finish in 0.001 s (a macro cycle?) -- "
        "check _CONDOR_* overrides for self-references"
    ]

    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    findings = Findings()
    assert not render.verify_tree(output=output, expected=expected, findings=findings, environ={})
    (failure,) = findings
    assert failure.as_line() == (
        "FAIL  HTCondor config: could not run the parser: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'no-python'}'"
    )
    assert failure.kind is Kind.ENVIRONMENT


def fake_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """Stand in for the Python that runs HTCondor's parser: records its arguments and
    environment in ``tmp_path`` and answers as ``script`` says (a real subprocess)."""
    parser = tmp_path / "parser"
    parser.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{tmp_path}/args'\nenv > '{tmp_path}/env'\n" + script
    )
    parser.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(parser))
    return parser


def test_the_parser_reads_the_trees_root_with_the_sites_environment_but_never_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token stays out of the parser's environment; the rest of it (a site's
    ``_CONDOR_*`` overrides) reaches it, and the knobs are asked for by name."""
    fake_parser(tmp_path, monkeypatch, """echo '{"NUM_CPUS": "4", "MEMORY": "1"}'\n""")
    findings = Findings()
    environ = {"TOKEN": "secret-token", "SITE_VARIABLE": "kept"}
    output = tmp_path / "cfg"
    expected = {"NUM_CPUS": "4", "MEMORY": "1"}
    assert render.verify_tree(output=output, expected=expected, findings=findings, environ=environ)
    arguments = (tmp_path / "args").read_text().splitlines()
    assert arguments[0] == "-c"
    assert arguments[-2:] == ["NUM_CPUS", "MEMORY"]
    environment = (tmp_path / "env").read_text().splitlines()
    assert f"CONDOR_CONFIG={output / 'condor_config'}" in environment
    assert "SITE_VARIABLE=kept" in environment
    assert not [line for line in environment if line.startswith("TOKEN=")]
    assert "secret-token" not in (tmp_path / "env").read_text()


def test_only_the_parsers_last_line_is_read_and_every_differing_knob_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_parser(
        tmp_path,
        monkeypatch,
        """echo 'a warning the bindings printed'\n"""
        """echo '{"NUM_CPUS": "8", "MEMORY": null, "START": "True"}'\n""",
    )
    findings = Findings()
    expected = {"NUM_CPUS": "4", "MEMORY": "1", "START": "True"}
    assert not render.verify_tree(output=tmp_path, expected=expected, findings=findings, environ={})
    assert [f.as_line() for f in findings] == [
        "FAIL  HTCondor config: HTCondor reads different values for NUM_CPUS, MEMORY than were "
        "rendered -- a _CONDOR_* override or a bug changed them; remove overrides of pilot knobs"
    ]


@pytest.mark.parametrize(
    ("script", "detail"),
    [
        (
            "printf 'Traceback:\\n  ERROR  in\\tfile\\n' >&2; echo ignored; exit 1\n",
            "Traceback: ERROR in file",
        ),
        ("printf 'only on\\n stdout\\n'; exit 3\n", "only on stdout"),
        (f"printf '{'x' * 399}  yz' >&2; exit 1\n", "x" * 399 + " "),
    ],
    ids=["stderr", "stdout-when-stderr-is-empty", "cut-at-400"],
)
def test_a_rejection_quotes_the_parsers_words_on_one_line_at_most_400_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, detail: str
) -> None:
    fake_parser(tmp_path, monkeypatch, script)
    findings = Findings()
    assert not render.verify_tree(
        output=tmp_path, expected={"NUM_CPUS": "4"}, findings=findings, environ={}
    )
    assert [f.as_line() for f in findings] == [
        f"FAIL  HTCondor config: HTCondor's parser rejected the rendered configuration: {detail} "
        "-- check _CONDOR_* overrides; otherwise this is a bug, please report it"
    ]


def test_a_spaced_value_is_quoted_from_its_names_equals_sign_even_if_it_holds_another() -> None:
    """Only the first ``=`` separates name and value: a site named ``Lab = Main`` is
    one quoted value."""
    assert render.job_environment(Settings(site="Lab = Main", resource_name="R"))[0] == (
        "GLIDEIN_Site='Lab = Main'"
    )


def test_the_pilots_proxy_settings_reach_jobs_and_the_squid_wins_http_proxy() -> None:
    """As OSG's pilot: http_proxy, https_proxy, FTP_PROXY and OSG_HOSTNAME from the
    pilot's environment are passed on; OSG_SQUID_LOCATION, when set, is http_proxy."""
    proxies = {
        "job_http_proxy": "http://corp:8080",
        "job_https_proxy": "http://corp:8443",
        "job_ftp_proxy": "corp:2121",
        "osg_hostname": "wn1.example.edu",
    }
    assert render.job_environment(Settings(site="S", resource_name="R", **proxies))[3:] == [
        "http_proxy=http://corp:8080",
        "https_proxy=http://corp:8443",
        "FTP_PROXY=corp:2121",
        "OSG_HOSTNAME=wn1.example.edu",
    ]
    with_squid = Settings(site="S", resource_name="R", squid_url="http://sq:3128", **proxies)
    assert render.job_environment(with_squid)[3:6] == [
        "OSG_SQUID_LOCATION=http://sq:3128",
        "http_proxy=http://sq:3128",
        "https_proxy=http://corp:8443",
    ]


def test_quoted_job_environment_values_are_written_in_htcondors_syntax() -> None:
    """EXTRA_JOB_ENV values with blanks, single and double quotes (accepted in HTCondor's
    quoted syntax, SPEC 4.1) are written back in that syntax, each one entry."""
    settings = Settings(
        site="S",
        resource_name="R",
        extra_job_env=(("A", "x y"), ("B", "it's"), ("C", '"q"'), ("D", ""), ("E", "a;b")),
    )
    assert render.job_environment(settings)[3:] == [
        "A='x y'",
        "B='it''s'",
        'C=""q""',
        "D=",
        "E=a;b",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "one=1 two=\"\"2\"\" three='spacey ''quoted'' value'",
        "'A=1 B=2' C='\"\"x\"\" y'",
        "X='START = True' Y='a\"\" b' Z=",
    ],
)
def test_every_accepted_job_environment_reads_back_as_the_same_entries(raw: str) -> None:
    """What the pilot writes into STARTER_JOB_ENVIRONMENT's quotes parses back, by the
    same rules, to exactly the entries the site gave: no value can split into two or
    swallow the next (values with '$', backslashes or line breaks never get here)."""
    pairs = ev.parse_job_env(raw)
    written = " ".join(
        render.job_environment(Settings(site="S", resource_name="R", extra_job_env=pairs))
    )
    assert ev.parse_job_env(written)[3:] == pairs


@pytest.fixture
def eastern_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's local zone is five hours behind UTC (a POSIX TZ rule: no tz database)."""
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("eastern_host")
def test_times_are_rendered_in_utc_whatever_the_hosts_zone() -> None:
    assert time.localtime(0).tm_hour == 19
    assert render._isotime(0) == "1970-01-01T00:00:00Z"
