"""Every layer that guards against injection or leakage, tested on its own.

Each test goes around the layers in front (validation of settings, of attribute
files, of tokens) and hands the layer itself the hostile value: the layer must
still refuse, so switching it off fails a test even while an earlier layer
happens to catch today's inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
from jwt_factory import token
from render_plans import make_plan

from ospool_ep.findings import Findings, Status
from ospool_ep.inputs import tokens
from ospool_ep.inputs.attributes import ExtraAttribute, parse_extra_attributes
from ospool_ep.inputs.classad import config_unsafe_reason, expression_error, string_literal
from ospool_ep.pilot import render
from ospool_ep.pilot.logs import redact

OSPOOL_EP = Path(sys.executable).parent / "ospool-ep"

# (hostile text, the reason config_unsafe_reason gives)
HOSTILE = [
    ("x\nSTART = True", "contains a line break"),
    ("x\rSTART = True", "contains a line break"),
    ("x\tSTART", "contains a control character"),
    ("x\x00y", "contains a control character"),
    ("x\x1fy", "contains a control character"),
    ("x\x7fy", "contains a control character"),
    ("$(START)", "contains '$', which HTCondor would expand as a macro"),
    ("$ENV(HOME)", "contains '$', which HTCondor would expand as a macro"),
    ("x \\", "contains a backslash"),
]
HOSTILE_IDS = ["LF", "CR", "tab", "NUL", "US", "DEL", "macro", "env-macro", "backslash"]


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=HOSTILE_IDS)
def test_the_config_safety_rule_names_why_a_value_is_unsafe(text: str, reason: str) -> None:
    assert config_unsafe_reason(text) == reason


@pytest.mark.parametrize("text", ["plain", "with space", 'q"uote', "ünï", "a#b", "x" * 5000, ""])
def test_the_config_safety_rule_passes_single_line_text(text: str) -> None:
    assert config_unsafe_reason(text) is None


@pytest.mark.parametrize(
    ("text", "reason"), [*HOSTILE, ('a"b', "quote")], ids=[*HOSTILE_IDS, "quote"]
)
def test_string_escaping_refuses_what_could_leave_the_string(text: str, reason: str) -> None:
    """string_literal never escapes: it refuses, and says why."""
    with pytest.raises(ValueError, match="unsafe string") as raised:
        string_literal(text)
    assert str(raised.value).endswith(reason)


def test_string_escaping_quotes_safe_text_exactly() -> None:
    assert string_literal("Test Site") == '"Test Site"'
    assert string_literal("") == '""'


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=HOSTILE_IDS)
def test_renders_config_safety_filter_refuses_any_unsafe_value(text: str, reason: str) -> None:
    """render's finalize filter: every value written goes through it."""
    with pytest.raises(ValueError, match="unsafe value") as raised:
        render._checked(text)
    assert str(raised.value).endswith(reason)
    assert render._checked(42) == "42"


@pytest.mark.parametrize("evil", ["True\nSTART = True", "True $(FOO)", "True \\"])
def test_a_raw_expression_that_skipped_validation_is_not_rendered(evil: str) -> None:
    """START and extra attributes are written raw (no string quoting): the filter alone
    stands between them and a new config line."""
    with pytest.raises(ValueError, match="unsafe value"):
        render.render_files(make_plan(start=evil), config_dir=PurePosixPath("/c"))
    attribute = ExtraAttribute("SITE_ATTR", evil, 1)
    with pytest.raises(ValueError, match="unsafe value"):
        render.render_files(
            make_plan(extra_attributes=(attribute,)), config_dir=PurePosixPath("/c")
        )


@pytest.mark.parametrize("text", [*(t for t, _ in HOSTILE), "", "   ", "1; b = 2", "(1", "1)"])
def test_expression_checking_refuses_unsafe_or_more_than_one_expression(text: str) -> None:
    assert expression_error(text) is not None


@pytest.mark.parametrize(
    "line",
    [
        "START = True",
        "start = True",
        "SEC_DEFAULT_AUTHENTICATION = NEVER",
        'ALLOW_WRITE = "*"',
        "DAEMON_LIST = MASTER",
        "NUM_CPUS = 64",
        'TRUST_DOMAIN = "evil"',
        "Requirements = True",
    ],
)
def test_the_deny_list_refuses_real_htcondor_knobs_with_a_valid_value(line: str) -> None:
    """The value is a plain valid expression: only the name rule can refuse it."""
    findings = Findings()
    assert parse_extra_attributes(line + "\n", source="f", findings=findings) == []
    assert [f.status for f in findings] == [Status.FAIL]


def test_the_read_back_catches_a_knob_htcondor_reads_differently(tmp_path: Path) -> None:
    """A tree changed after rendering (here START, appended by a later file) fails the
    read-back even though nothing before it objected."""
    plan = make_plan()
    output = tmp_path / "cfg"
    files = render.render_files(plan, config_dir=PurePosixPath(output))
    render.write_tree(files, output=output)
    (output / "config.d" / "99-late.conf").write_text("START = True\n")
    findings = Findings()
    expected = {"START": render.start_of(plan), "NUM_CPUS": str(plan.offer.cpus)}
    assert not render.verify_tree(output=output, expected=expected, findings=findings, environ={})
    assert [f.message for f in findings.failures] == [
        "HTCondor reads different values for START than were rendered"
    ]


def test_the_read_back_excuses_only_the_knob_the_site_overrode(tmp_path: Path) -> None:
    plan = make_plan()
    output = tmp_path / "cfg"
    render.write_tree(render.render_files(plan, config_dir=PurePosixPath(output)), output=output)
    expected = {"START": render.start_of(plan), "NUM_CPUS": "999"}
    findings = Findings()
    environ = {"_CONDOR_START": "False", "PATH": os.environ.get("PATH", "")}
    assert not render.verify_tree(
        output=output, expected=expected, findings=findings, environ=environ
    )
    assert "NUM_CPUS" in findings.failures[0].message
    assert "START," not in findings.failures[0].message
    findings = Findings()
    expected["NUM_CPUS"] = str(plan.offer.cpus)
    assert render.verify_tree(output=output, expected=expected, findings=findings, environ=environ)
    assert findings[-1].message == "parsed by HTCondor, 2 knobs read back"


def test_the_token_file_reader_refuses_a_file_over_one_mib_on_its_own(tmp_path: Path) -> None:
    """tokens._read_text, called directly: the size limit holds without the directory scan."""
    path = tmp_path / "big"
    path.write_bytes(b"#" * ((1 << 20) + 1))
    findings = Findings()
    assert tokens._read_text(path, subject="token file big", findings=findings) is None
    assert "larger than 1048576 bytes" in findings.failures[0].message
    path.write_bytes(b"#" * (1 << 20))
    assert tokens._read_text(path, subject="s", findings=Findings()) == "#" * (1 << 20)


@pytest.mark.parametrize(
    "line",
    [
        f"auth with {token()} failed",
        f"TOKEN={token()}",
        "token=abc.def",
        f"x={token()}",
        f"({token()})",
    ],
)
def test_log_redaction_removes_tokens_on_its_own(line: str) -> None:
    redacted = redact(line)
    assert "eyJ" not in redacted
    assert "abc.def" not in redacted
    assert "redacted]" in redacted


def test_log_redaction_leaves_ordinary_text_alone() -> None:
    assert redact("NUM_CPUS=4 eyJust kidding") == "NUM_CPUS=4 eyJust kidding"


def test_the_master_gets_neither_the_token_nor_the_webhook_urls(tmp_path: Path) -> None:
    """`ospool-ep run` with stand-in daemons: condor_master writes down its environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for daemon in ("condor_master", "condor_startd"):
        script = bin_dir / daemon
        script.write_text('#!/bin/sh\nenv > "$ENV_DUMP"\n')
        script.chmod(0o755)
    token_dir = tmp_path / "tokens"
    token_dir.mkdir()
    now = int(time.time())
    text = token(iat=now, exp=now + 30 * 86400)
    (token_dir / "flock.opensciencegrid.org").write_text(text + "\n")
    (token_dir / "flock.opensciencegrid.org").chmod(0o600)
    (tmp_path / "pilot").mkdir()
    dump = tmp_path / "master-env"
    site = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "GLIDEIN_Site": "S",
        "GLIDEIN_ResourceName": "R",
        "TOKEN_DIR": str(token_dir),
        "TOKEN": text,
        "NOTIFY_START_URL": "https://127.0.0.1:9/start",
        "NOTIFY_STOP_URL": "https://127.0.0.1:9/stop",
        "PILOT_DIR": str(tmp_path / "pilot"),
        "EXTRA_ATTRIBUTES_FILE": str(tmp_path / "none.cfg"),
        "MIN_DISK_GB": "0",
        # Stub daemons and no Apptainer here: containment is the e2e tests' (tests/e2e).
        "JOB_CONTAINMENT": "preferred",
        "CVMFS_MODE": "none",
        "OSPOOL_EP_STATE_FILE": str(tmp_path / "state.json"),
        "ENV_DUMP": str(dump),
    }
    done = subprocess.run(
        [str(OSPOOL_EP), "run"], env=site, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert {"TOKEN", "NOTIFY_START_URL", "NOTIFY_STOP_URL"}.isdisjoint(seen)
    assert text not in dump.read_text()
    assert seen["GLIDEIN_Site"] == "S"
    assert seen["CONDOR_CONFIG"].endswith("/condor_config")


def test_the_config_parser_subprocess_never_gets_the_token(tmp_path: Path) -> None:
    """verify_tree runs HTCondor's parser without TOKEN in its environment."""
    plan = make_plan()
    output = tmp_path / "cfg"
    render.write_tree(render.render_files(plan, config_dir=PurePosixPath(output)), output=output)
    (output / "config.d" / "99-env.conf").write_text("LEAK = x$ENV(TOKEN)\n")
    findings = Findings()
    environ = {"TOKEN": "secret-value", "PATH": os.environ.get("PATH", "")}
    assert render.verify_tree(
        output=output, expected={"LEAK": "xUNDEFINED"}, findings=findings, environ=environ
    ), [f.as_line() for f in findings]
