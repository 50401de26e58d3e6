"""The exit-code contract by number (SPEC 7.4), and how findings choose one.

systemd and Kubernetes see numbers, not names: each row below pins a number, so
a renumbered symbol fails here even where every caller uses the symbol.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

from ospool_ep.exitcodes import ExitCode
from ospool_ep.findings import Finding, Findings, Kind, Status

OSPOOL_EP = Path(sys.executable).parent / "ospool-ep"

# SPEC 7.4, plus `health`'s 1 (SPEC 3): (symbol, number).
SPEC_EXIT_CODES = [
    ("OK", 0),
    ("NOT_HEALTHY", 1),
    ("USAGE", 2),
    ("UNAVAILABLE", 69),
    ("SOFTWARE", 70),
    ("CONFIG", 78),
]


@pytest.mark.parametrize(("name", "number"), SPEC_EXIT_CODES)
def test_each_exit_code_has_the_number_spec_7_4_gives_it(name: str, number: int) -> None:
    assert int(ExitCode[name]) == number


def test_there_are_no_exit_codes_beyond_the_specs_table() -> None:
    assert {(code.name, int(code)) for code in ExitCode} == set(SPEC_EXIT_CODES)


def fail(kind: Kind) -> Finding:
    return Finding("x", Status.FAIL, "broken", "fix it", kind)


@pytest.mark.parametrize(
    ("findings", "code"),
    [
        ([], 0),
        ([Finding("x", Status.PASS, "fine")], 0),
        ([Finding("x", Status.WARN, "hm", kind=Kind.CONFIG)], 0),
        ([Finding("x", Status.WARN, "hm", kind=Kind.ENVIRONMENT)], 0),
        ([fail(Kind.CONFIG)], 78),
        ([fail(Kind.ENVIRONMENT)], 69),
        ([fail(Kind.ENVIRONMENT), fail(Kind.CONFIG)], 78),
        ([fail(Kind.CONFIG), fail(Kind.ENVIRONMENT)], 78),
        ([Finding("x", Status.PASS, "fine", kind=Kind.CONFIG), fail(Kind.ENVIRONMENT)], 69),
    ],
    ids=[
        "nothing",
        "a pass",
        "a config warn",
        "an environment warn",
        "a config fail",
        "an environment fail",
        "environment then config",
        "config then environment",
        "a config pass and an environment fail",
    ],
)
def test_check_exits_78_over_69_over_0(findings: list[Finding], code: int) -> None:
    """SPEC 3: 78 for any configuration FAIL (it wins), 69 for environment FAILs only."""
    result = Findings(findings).exit_code()
    assert int(result) == code
    assert isinstance(result, ExitCode)


def test_the_shorthands_record_status_kind_and_fix() -> None:
    findings = Findings()
    findings.passed("a", "fine")
    findings.passed("b", "fine", kind=Kind.ENVIRONMENT)
    findings.warn("c", "hm")
    findings.warn("d", "hm", "do this", kind=Kind.ENVIRONMENT)
    findings.fail("e", "broken")
    findings.fail("f", "broken", "do that", kind=Kind.ENVIRONMENT)
    assert list(findings) == [
        Finding("a", Status.PASS, "fine", "", Kind.CONFIG),
        Finding("b", Status.PASS, "fine", "", Kind.ENVIRONMENT),
        Finding("c", Status.WARN, "hm", "", Kind.CONFIG),
        Finding("d", Status.WARN, "hm", "do this", Kind.ENVIRONMENT),
        Finding("e", Status.FAIL, "broken", "", Kind.CONFIG),
        Finding("f", Status.FAIL, "broken", "do that", Kind.ENVIRONMENT),
    ]
    assert findings.failures == [findings[4], findings[5]]
    assert findings.has_failures()
    assert not Findings(findings[:4]).has_failures()


def test_a_finding_prints_as_one_report_line_and_as_json_keys() -> None:
    """`check`'s line format and `check --json`'s keys are what admins' scripts read."""
    with_fix = Finding("TOKEN", Status.FAIL, "expired", "get a new one", Kind.ENVIRONMENT)
    assert with_fix.as_line() == "FAIL  TOKEN: expired -- get a new one"
    assert Finding("POOL", Status.PASS, "ospool").as_line() == "PASS  POOL: ospool"
    assert with_fix.as_dict() == {
        "status": "FAIL",
        "subject": "TOKEN",
        "message": "expired",
        "fix": "get a new one",
        "kind": "environment",
    }


@pytest.mark.parametrize("unit", ["ospool-ep.service", "ospool-ep@.service"])
def test_the_systemd_units_never_restart_on_the_config_exit_code(unit: str) -> None:
    """RestartPreventExitStatus= names the same number as ExitCode.CONFIG, and only it."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO / "systemd" / unit)
    assert parser["Service"]["RestartPreventExitStatus"].split() == [str(int(ExitCode.CONFIG))]
    assert parser["Service"]["Restart"] == "on-failure"


def test_command_line_usage_errors_exit_2() -> None:
    done = subprocess.run(
        [str(OSPOOL_EP), "no-such-command"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
