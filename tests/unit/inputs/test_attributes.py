"""The extra-attributes file (SPEC 5.4): what is accepted, what is refused, and why it is safe.

The last part hands validated attributes to HTCondor's own configuration parser
(PyPI ``htcondor``, in a subprocess, because a config error makes the import
call ``exit(1)``) and shows that what passes validation reads back unchanged
and cannot add or alter any other knob.
"""

from __future__ import annotations

import builtins
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import unprivileged
from paths import REPO

from ospool_ep.findings import Finding, Findings, Status
from ospool_ep.inputs import attributes
from ospool_ep.inputs.attributes import (
    CONFIG_KEYWORDS,
    HTCONDOR_KNOBS,
    PILOT_CONFIG,
    PILOT_PUBLISHED,
    RESERVED_WORDS,
    STARTD_PUBLISHED,
    STARTD_PUBLISHED_FAMILIES,
    UNTABLED_KNOBS,
    ExtraAttribute,
    load_extra_attributes_file,
    parse_extra_attributes,
)
from ospool_ep.inputs.classad import expression_error

SOURCE = "/etc/osg/extra-attributes.cfg"

UPSTREAM_EXAMPLE = """\
# The Kubernetes namespace this pod is running under
KUBERNETES_NAMESPACE = "path-osgdev"
# The deployment for this pilot
KUBERNETES_DEPLOYMENT = "osgvo-docker-pilot-gpu"
"""


def parse(text: str) -> tuple[list[ExtraAttribute], Findings]:
    findings = Findings()
    return parse_extra_attributes(text, source=SOURCE, findings=findings), findings


def fails_on(findings: Findings, line: int) -> list[Finding]:
    return [f for f in findings.failures if f.subject == f"{SOURCE}:{line}"]


# --- accepted files ---------------------------------------------------------------------------


def test_the_upstream_example_file_is_accepted_as_written() -> None:
    """The example from OSG's backfill-container docs validates unchanged, one PASS naming both."""
    result, findings = parse(UPSTREAM_EXAMPLE)
    assert result == [
        ExtraAttribute("KUBERNETES_NAMESPACE", '"path-osgdev"', 2),
        ExtraAttribute("KUBERNETES_DEPLOYMENT", '"osgvo-docker-pilot-gpu"', 4),
    ]
    assert [(f.status, f.subject) for f in findings] == [(Status.PASS, SOURCE)]
    assert findings[0].message == "2 extra attributes: KUBERNETES_NAMESPACE, KUBERNETES_DEPLOYMENT"


GOOD_VALUES = [
    '"path-osgdev"',
    '""',
    '"text with # inside a string"',
    '"ünïcödé text"',
    "42",
    "-1.5e3",
    "-0",
    "1e309",
    "True",
    "false",
    "undefined",
    "error",
    "MY.Cpus > 2",
    "TARGET.RequestMemory <= 2048 && MY.Memory >= 1024",
    'ifThenElse(isUndefined(GPUs), 0, GPUs) * 2 + strcat("a", "b") == "ab"',
    "{1, 2}",
    '{"a", "b", 3}',
    "[a = 1; b = 2]",
    "size({1,2,3}) == 3",
    "'quoted attribute name'",
    "1 /* a ClassAd comment inside the expression */",
]


@pytest.mark.parametrize("value", GOOD_VALUES)
def test_a_single_classad_expression_is_accepted_verbatim(value: str) -> None:
    """Strings, numbers, booleans, literals, expressions, lists and records pass, text unchanged."""
    result, findings = parse(f"SITE_ATTR = {value}\n")
    assert result == [ExtraAttribute("SITE_ATTR", value, 1)]
    assert not findings.failures


@pytest.mark.parametrize(
    "line", ["TAG=1", "TAG =1", "TAG= 1", "  TAG = 1", "\tTAG\t=\t1\t", "TAG = 1   "]
)
def test_spacing_around_the_equals_sign_does_not_matter(line: str) -> None:
    """`NAME=expression` without spaces, indentation and trailing blanks are all accepted."""
    result, findings = parse(line)
    assert result == [ExtraAttribute("TAG", "1", 1)]
    assert not findings.failures


def test_comment_and_blank_lines_are_skipped_and_line_numbers_still_count_them() -> None:
    """'#' lines (indented too) and blank lines produce nothing, but line numbers stay true."""
    text = "# header\n\n   # indented comment\n\t\nA = 1\n#B = 2\n   \nC = 2\n"
    result, findings = parse(text)
    assert [(a.name, a.line) for a in result] == [("A", 5), ("C", 8)]
    assert not findings.failures


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "\ufeff", "  \n\t\n# x\n"])
def test_a_file_without_attributes_passes_with_no_extra_attributes(text: str) -> None:
    """An empty or comment-only file is fine: one PASS, "no extra attributes"."""
    result, findings = parse(text)
    assert result == []
    assert [(f.status, f.subject, f.message) for f in findings] == [
        (Status.PASS, SOURCE, "no extra attributes")
    ]


def test_crlf_line_endings_are_accepted_and_the_carriage_return_is_dropped() -> None:
    """A file saved on Windows works: HTCondor strips a trailing CR too; no CR reaches the value."""
    result, findings = parse(UPSTREAM_EXAMPLE.replace("\n", "\r\n"))
    assert [a.expression for a in result] == ['"path-osgdev"', '"osgvo-docker-pilot-gpu"']
    assert all(expression_error(a.expression) is None for a in result)
    assert not findings.failures


def test_a_utf8_byte_order_mark_at_the_start_is_tolerated() -> None:
    """Editors that write a BOM do not break the first line's name."""
    result, findings = parse("\ufeffFIRST = 1\nSECOND = 2\n")
    assert [a.name for a in result] == ["FIRST", "SECOND"]
    assert not findings.failures


def test_the_last_line_needs_no_newline() -> None:
    """A file whose last line lacks a newline still yields that attribute."""
    result, _ = parse("A = 1\nB = 2")
    assert [a.name for a in result] == ["A", "B"]


# --- refused lines ---------------------------------------------------------------------------

# (bad line, a fragment of the message that names the rule it breaks)
BAD_LINES: list[tuple[str, str]] = [
    # no '='
    ("JUST_A_NAME", "expected NAME = expression"),
    ("include : /etc/passwd", "expected NAME = expression"),
    ("use ROLE : Execute", "expected NAME = expression"),
    ("[section]", "expected NAME = expression"),
    # malformed names
    ("FOO BAR = 1", "must match"),
    ("FOO-BAR = 1", "must match"),
    ("1FOO = 1", "must match"),
    ("FOO.BAR = 1", "must match"),
    ("STARTD.START = True", "must match"),
    ("+FOO = 1", "must match"),
    ("FOO @= END", "must match"),
    ("NAMÉ = 1", "must match"),
    ("= 1", "name is empty"),
    # ClassAd reserved words and scopes, HTCondor config statements
    ("true = 1", "reserved word"),
    ("MY = 1", "reserved word"),
    ("Target = 1", "reserved word"),
    ("toplevel = 1", "reserved word"),
    ("if = 1", "configuration language"),
    ("endif = 1", "configuration language"),
    ("Include = 1", "configuration language"),
    # attributes the startd or the pilot publishes
    ("Cpus = 64", "startd publishes"),
    ("requirements = True", "startd publishes"),
    ('Name = "fake"', "startd publishes"),
    ("TotalSlotCpus = 1", "startd publishes"),
    ("GLIDEIN_ToDie = 0", "pilot publishes"),
    ("OSG_NODE_VALIDATED = True", "pilot publishes"),
    ("HAS_CVMFS_oasis_opensciencegrid_org = True", "pilot publishes"),
    ("OSPOOL_EP_PILOT_UUID = 1", "pilot publishes"),
    ('GLIDEIN_SINGULARITY_BINDPATH = "/"', "pilot publishes"),
    # HTCondor's own settings: its param table (case-insensitive) ...
    ("START = True", "configuration setting"),
    ("start = true", "configuration setting"),
    ("NUM_CPUS = 64", "configuration setting"),
    ("DAEMON_LIST = MASTER", "configuration setting"),
    ('TRUST_DOMAIN = "evil"', "configuration setting"),
    ("USE_PID_NAMESPACES = False", "configuration setting"),
    ("MAX_STARTD_LOG = 1", "configuration setting"),
    ('CCB_ADDRESS = "x"', "configuration setting"),
    ('EVENT_LOG = "x"', "configuration setting"),
    ('ALL_DEBUG = "D_ALL"', "configuration setting"),
    ("RunBenchmarks = True", "configuration setting"),
    ("STARTD_ATTRS = START", "configuration setting"),
    # ... the ones it reads without listing them ...
    ("Memory = 1000000", "configuration setting"),
    ('CONDOR_HOST = "evil"', "configuration setting"),
    ("WANT_HOLD = False", "configuration setting"),
    ("MEMORY_EXCEEDED = False", "configuration setting"),
    ("DAEMON_SHUTDOWN = True", "configuration setting"),
    # ... and the families it composes
    ('SEC_DEFAULT_AUTHENTICATION = "NEVER"', "permission level"),
    ('allow_write = "*"', "permission level"),
    ('STARTD_ENVIRONMENT = "X=1"', "pilot's daemons"),
    ("STARTD_CRON_OSPOOL_EP_CVMFS_EXECUTABLE = 1", "pilot's daemons"),
    ('SLOT_TYPE_1 = "cpus=1"', "slot layout"),
    ("SLOT1_START = True", "slot layout"),
    ("NUM_SLOTS_TYPE_1 = 8", "slot layout"),
    ("MACHINE_RESOURCE_GPUs = 8", "custom machine resource"),
    ('SINGULARITY_BIND_EXPR = "/etc"', "Apptainer"),
    ('Singularity_Target_Dir = "/"', "Apptainer"),
    # values
    ("FOO = 1 # a note", "'#'"),
    ('FOO = "x" # a note', "'#'"),
    ("FOO = 1; START = True", "not a valid ClassAd expression"),
    ("FOO = 1 2", "not a valid ClassAd expression"),
    ("FOO = (1", "not a valid ClassAd expression"),
    ("FOO = 1)", "not a valid ClassAd expression"),
    ('FOO = "unterminated', "not a valid ClassAd expression"),
    ("FOO = [a = 1", "not a valid ClassAd expression"),
    ("FOO == 1", "not a valid ClassAd expression"),
    ("FOO = 0x1F", "leading zero"),
    ("FOO = 007", "leading zero"),
    ("FOO = " + " && ".join(["True"] * 600), "too long or deeply nested"),
    ("FOO = " + "(" * 150 + "1" + ")" * 150, "nested too deeply"),
    ("FOO = " + '"' + "x" * 9000 + '"', "characters allowed"),
    ("FOO = $(START)", "'$'"),
    ("FOO = $ENV(HOME)", "'$'"),
    ('FOO = "$RANDOM_INTEGER(1,9)"', "'$'"),
    ("FOO = 1 \\", "backslash"),
    ('FOO = "a\\"b"', "backslash"),
    ("FOO =", "value is empty"),
    ("FOO = \t", "value is empty"),
    ("FOO = 1\tSTART = True", "control character"),
    ("FOO = 1\rSTART = True", "line break"),
    ("FOO = 1\x0bSTART = True", "control character"),
    ('FOO = "a\x00b"', "control character"),
    ('FOO = "a\u2028b"', "invisible"),
    ('FOO = "zero\u200bwidth"', "invisible"),
    ('FOO = "a\x85b"', "invisible"),
]


@pytest.mark.parametrize(("line", "rule"), BAD_LINES, ids=[repr(line) for line, _ in BAD_LINES])
def test_a_bad_line_fails_naming_its_line_and_the_rule(line: str, rule: str) -> None:
    """Every refused line is a FAIL on `file:line` that names the broken rule and a fix.

    The good lines around it still come through, and no PASS claims the file is fine.
    """
    result, findings = parse(f"# header\nGOOD_BEFORE = 1\n{line}\nGOOD_AFTER = 2\n")
    on_line = fails_on(findings, 3)
    assert on_line, findings
    assert any(rule in f.message for f in on_line), [f.message for f in on_line]
    assert all(f.fix for f in on_line)
    assert findings.failures == on_line
    assert [a.name for a in result] == ["GOOD_BEFORE", "GOOD_AFTER"]
    assert not [f for f in findings if f.status is Status.PASS]


def test_the_bad_line_corpus_is_large_enough() -> None:
    """SPEC 13 asks for a bad-input corpus; this file alone brings at least 30 cases."""
    assert len(BAD_LINES) >= 30


def test_name_rules_ignore_case() -> None:
    """HTCondor knob and ClassAd attribute names are case-insensitive, so the rules are too."""
    for name in ["start", "Start", "sTaRt", "num_cpus", "sec_password_file", "currenttime"]:
        _, findings = parse(f"{name} = 1")
        assert findings.failures, name


def test_a_duplicate_name_fails_and_says_which_line_had_it_first() -> None:
    """A second definition (in any case) is refused, pointing at the first."""
    result, findings = parse("SITE_TAG = 1\n# c\nsite_tag = 2\nSite_Tag = 3\n")
    assert [a.line for a in result] == [1]
    for line in (3, 4):
        (failure,) = fails_on(findings, line)
        assert "duplicate" in failure.message
        assert "line 1" in failure.message


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    """Validation does not stop at the first error: each bad line gets its own FAIL(s)."""
    text = "A = 1\nSTART = True\nB = 2\nbad-name = $(X)\nA = 3\nno equals here\nC = 1 # note\n"
    result, findings = parse(text)
    assert [a.name for a in result] == ["A", "B"]
    by_line = {line: fails_on(findings, line) for line in range(1, 8)}
    assert [len(by_line[n]) for n in range(1, 8)] == [0, 1, 0, 2, 1, 1, 1]
    # A line with a bad name and a bad value reports both.
    messages = " / ".join(f.message for f in by_line[4])
    assert "must match" in messages
    assert "'$'" in messages


def test_a_name_breaking_several_rules_names_all_of_them_in_one_failure() -> None:
    """START is both a published attribute and an HTCondor setting: one FAIL says both."""
    _, findings = parse("START = True")
    (failure,) = findings.failures
    assert "publishes itself" in failure.message
    assert "configuration setting" in failure.message


def test_a_continuation_line_is_not_joined_to_the_next_line() -> None:
    """HTCondor would glue the next line on; here both lines are judged, and both fail."""
    _, findings = parse("FOO = 1 \\\nSTART = True\n")
    assert "backslash" in fails_on(findings, 1)[0].message
    assert "configuration setting" in fails_on(findings, 2)[0].message


def test_a_multi_line_string_is_refused_on_each_of_its_lines() -> None:
    """Upstream documents that multi-line strings are unsupported; neither half passes."""
    _, findings = parse('FOO = "first half\nsecond half"\n')
    assert fails_on(findings, 1)
    assert fails_on(findings, 2)


def test_control_characters_never_appear_in_messages() -> None:
    """A value with control characters is withheld from the report, not echoed."""
    _, findings = parse('FOO = "a\x1b[31mred\x07"\n')
    (failure,) = findings.failures
    assert "withheld" in failure.message
    assert "\x1b" not in failure.as_line()
    assert "red" not in failure.as_line()


def test_long_values_are_shortened_in_messages() -> None:
    """A long bad value is shown at most ~60 characters long."""
    value = "x " * 200
    _, findings = parse(f"FOO = {value}\n")
    (failure,) = findings.failures
    assert len(failure.message) < 250
    assert "..." in failure.message


def test_a_bom_in_the_middle_of_the_file_is_not_tolerated() -> None:
    """Only a BOM at the very start is an encoding marker; elsewhere it is an invisible char."""
    _, findings = parse('A = 1\nB = "x\ufeffy"\n')
    assert "invisible" in fails_on(findings, 2)[0].message


def test_unicode_line_separators_do_not_split_lines() -> None:
    """Lines split on '\\n' only, as HTCondor does; a U+2028 stays inside and fails the line."""
    _, findings = parse("FOO = 1\u2028START = True\n")
    assert fails_on(findings, 1)
    assert not fails_on(findings, 2)


def test_the_parser_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_extra_attributes is pure (SPEC 2): the caller passes the text."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parse_extra_attributes did I/O")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(os, "stat", refuse)
    result, findings = parse(UPSTREAM_EXAMPLE + "START = True\n")
    assert len(result) == 2
    assert findings.failures


# --- the tables themselves -------------------------------------------------------------------


def test_the_reserved_words_are_exactly_the_ones_spec_5_4_lists() -> None:
    """The ClassAd reserved words and scope names from SPEC 5.4, no more, no fewer."""
    spec = "true false undefined error is isnt parent my target self root toplevel currenttime"
    assert set(spec.split(" ")) == RESERVED_WORDS


def test_every_denied_name_is_itself_a_well_formed_name() -> None:
    """A misspelled table entry (space, dot) would never match anything: none exist."""
    tables = RESERVED_WORDS | CONFIG_KEYWORDS | STARTD_PUBLISHED | UNTABLED_KNOBS
    for name in tables | PILOT_PUBLISHED | PILOT_CONFIG | HTCONDOR_KNOBS:
        assert attributes._NAME.fullmatch(name), name
    for fragment in STARTD_PUBLISHED_FAMILIES:
        assert attributes._NAME.fullmatch(fragment.strip("_")), fragment


@pytest.mark.parametrize(
    "name",
    ["Cpus", "Memory", "Disk", "GPUs", "Start", "Requirements", "Rank", "Name", "State",
     "Activity", "Machine", "MyType", "SlotID", "TotalCpus", "LoadAvg", "KeyboardIdle",
     "GLIDEIN_Site", "GLIDEIN_ResourceName", "GLIDEIN_ToRetire", "GLIDEIN_ToDie",
     "ACCEPT_JOBS_FOR_HOURS", "ACCEPT_IDLE_MINUTES", "IsOsgVoContainer", "OSG_NODE_VALIDATED",
     "START", "NUM_CPUS", "MEMORY", "LOCAL_DIR", "DAEMON_LIST", "CONDOR_HOST", "COLLECTOR_HOST",
     "LOG", "EXECUTE", "SPOOL", "LOCK", "RUN", "CONDOR_ADMIN", "PREEMPT", "SUSPEND", "CONTINUE",
     "KILL", "WANT_HOLD", "WANT_VACATE", "PERIODIC_CHECKPOINT", "MAXJOBRETIREMENTTIME",
     "IS_OWNER", "TRUST_DOMAIN", "UID_DOMAIN", "FILESYSTEM_DOMAIN", "NETWORK_HOSTNAME",
     "NETWORK_INTERFACE", "STARTER_JOB_ENVIRONMENT", "USER_JOB_WRAPPER",
     "SHARED_PORT_PORT", "STARTD_NOCLAIM_SHUTDOWN", "MASTER_DAEMON_SHUTDOWN", "DAEMON_SHUTDOWN",
     "SEC_TOKEN_DIRECTORY", "START_EXTRA", "OSPOOL_EP_UUID", "GPU_DISCOVERY_EXTRA",
     "MACHINE_RESOURCE_GPUs", "UPDATE_INTERVAL", "START_DAEMONS", "INCLUDE", "if"],
)  # fmt: skip
def test_what_the_spec_and_the_pilot_name_is_denied(name: str) -> None:
    """Every name SPEC 5.4/6.2 lists, and the knobs the pilot renders, is refused."""
    assert attributes._name_policy_reasons(name), name


@pytest.mark.parametrize(
    "name",
    ["KUBERNETES_NAMESPACE", "KUBERNETES_DEPLOYMENT", "KUBERNETES_POD_NAME", "SITE_RACK",
     "Institution", "HasInfiniband", "OSG_INSTITUTION_ID", "NodePool", "_private", "x",
     "GLIDEIN_Country", "GLIDEIN_Foo", "glidein_extra", "GLIDEIN_Site_Zone", "Country",
     "StartdFlavor", "SlotOwner", "MaxWallTime_Site", "USE_MY_GPU", "NUM_RACKS"],
)  # fmt: skip
def test_ordinary_site_names_are_not_denied(name: str) -> None:
    """The denylist leaves room for what sites advertise: OSG's guide's own examples,
    ``GLIDEIN_Country`` and other ``GLIDEIN_*`` names the pilot does not set, and names
    that merely start like an HTCondor setting (SPEC 5.4: no guessing by prefix)."""
    assert attributes._name_policy_reasons(name) == []


def test_every_name_the_pilot_renders_is_denied() -> None:
    """Each knob the templates in condor_config.d/ assign and each attribute the pilot
    publishes is refused, so an extra attribute can never override the pilot's own config.

    Guards against drift: a new template line with a new knob makes this fail until the
    denylist covers it.
    """
    from ospool_ep.pilot.render import BASE_PUBLISHED

    templates = REPO / "condor_config.d"
    assigned = set()
    for template in templates.glob("*.j2"):
        for line in template.read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=", line)
            if match:
                # SUBSYS.KNOB sets KNOB for one daemon: the knob name is what matters.
                assigned.add(match.group(1).rsplit(".", 1)[-1])
    assert len(assigned) > 20, "the templates should be found"
    names = assigned | set(BASE_PUBLISHED) | {"Is_ITB_Site", "OSG_PROJECT_NAME"}
    assert sorted(n for n in names if not attributes._name_policy_reasons(n)) == []


# --- the file ----------------------------------------------------------------------------------


def test_a_missing_file_passes_because_the_mount_is_optional(tmp_path: Path) -> None:
    """No file at the path: PASS "not present, no extra attributes"."""
    findings = Findings()
    path = tmp_path / "extra-attributes.cfg"
    assert load_extra_attributes_file(path, findings=findings) == []
    assert [(f.status, f.subject, f.message) for f in findings] == [
        (Status.PASS, str(path), "not present, no extra attributes")
    ]


def test_a_readable_file_is_parsed_with_its_path_as_the_source(tmp_path: Path) -> None:
    """Findings name the real path and line, e.g. `<path>:3`."""
    path = tmp_path / "extra-attributes.cfg"
    path.write_text(UPSTREAM_EXAMPLE + "BAD NAME = 1\n", encoding="utf-8")
    findings = Findings()
    result = load_extra_attributes_file(path, findings=findings)
    assert [a.name for a in result] == ["KUBERNETES_NAMESPACE", "KUBERNETES_DEPLOYMENT"]
    assert [f.subject for f in findings.failures] == [f"{path}:5"]


def test_a_directory_at_the_path_fails_naming_it(tmp_path: Path) -> None:
    """A directory mounted where the file belongs (a common -v mistake) is a FAIL, not a crash."""
    findings = Findings()
    assert load_extra_attributes_file(tmp_path, findings=findings) == []
    (failure,) = findings.failures
    assert failure.subject == str(tmp_path)
    assert "directory" in failure.message
    assert failure.fix


def test_a_fifo_at_the_path_fails_without_hanging(tmp_path: Path) -> None:
    """A named pipe is refused at once instead of blocking the pilot on a read."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    findings = Findings()
    assert load_extra_attributes_file(path, findings=findings) == []
    assert "not a regular file" in findings.failures[0].message


def test_a_dangling_symlink_fails_instead_of_passing_as_missing(tmp_path: Path) -> None:
    """A link to nowhere (a broken ConfigMap mount) is a mistake, not an absent mount."""
    path = tmp_path / "extra-attributes.cfg"
    path.symlink_to(tmp_path / "nowhere")
    findings = Findings()
    assert load_extra_attributes_file(path, findings=findings) == []
    assert "symbolic link" in findings.failures[0].message


def test_a_non_utf8_file_fails_naming_the_file_and_the_line(tmp_path: Path) -> None:
    """Latin-1 text is refused with the line of the first bad byte, never decoded by guesswork."""
    path = tmp_path / "extra-attributes.cfg"
    path.write_bytes(b'A = 1\nB = "caf\xe9"\n')
    findings = Findings()
    assert load_extra_attributes_file(path, findings=findings) == []
    (failure,) = findings.failures
    assert failure.subject == str(path)
    assert "UTF-8" in failure.message
    assert "line 2" in failure.message
    assert "UTF-8" in failure.fix


UNREADABLE = """
import json, sys
from pathlib import Path
from ospool_ep.findings import Findings
from ospool_ep.inputs.attributes import load_extra_attributes_file
findings = Findings()
loaded = load_extra_attributes_file(Path(sys.argv[1]), findings=findings)
print(json.dumps([len(loaded), [(f.subject, f.message, f.fix) for f in findings.failures]]))
"""


def test_an_unreadable_file_fails_naming_the_file(tmp_path: Path) -> None:
    """A file the pilot's user may not read is a FAIL with a fix, not a traceback. Read by
    a process without capabilities (root's would open it whatever its mode)."""
    path = tmp_path / "extra-attributes.cfg"
    path.write_text("A = 1\n", encoding="utf-8")
    path.chmod(0)
    loaded, failures = unprivileged.python_json(UNREADABLE, str(path))
    assert loaded == 0
    ((subject, message, fix),) = failures
    assert subject == str(path)
    assert "cannot be opened" in message
    assert fix


def test_a_permission_error_is_a_failure_even_when_tests_run_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EACCES path, simulated: root would read any file, the pilot's uid 1000 would not."""
    path = tmp_path / "extra-attributes.cfg"
    path.write_text("A = 1\n", encoding="utf-8")

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    findings = Findings()
    assert load_extra_attributes_file(path, findings=findings) == []
    (failure,) = findings.failures
    assert failure.message == "cannot be opened: Permission denied"
    assert "uid 1000" in failure.fix


def test_a_huge_file_is_refused_as_a_wrong_mount(tmp_path: Path) -> None:
    """More than 1 MiB is not an attribute file; it is refused before parsing."""
    path = tmp_path / "extra-attributes.cfg"
    path.write_bytes(b"# padding\n" * 200_000)
    findings = Findings()
    assert load_extra_attributes_file(path, findings=findings) == []
    assert "larger than" in findings.failures[0].message


# --- end to end through HTCondor's configuration parser ----------------------------------------

PILOT_START = "(MY.Cpus > 0) && False"
"""Stands in for the pilot's START policy; written before the attributes, the worst order."""


def render(attrs: Iterable[ExtraAttribute]) -> str:
    """The config lines a renderer writes for validated attributes (SPEC 6.2)."""
    attrs = list(attrs)
    lines = [f"START = {PILOT_START}", "NUM_CPUS = 2", 'OSPOOL_EP_UUID = "pilot-1"']
    lines += [f"{a.name} = {a.expression}" for a in attrs]
    names = " ".join(["OSPOOL_EP_UUID", *(a.name for a in attrs)])
    lines.append(f"STARTD_ATTRS = $(STARTD_ATTRS) {names}")
    return "\n".join(lines) + "\n"


def htcondor_params(config_text: str, tmp_path: Path) -> dict[str, str]:
    """All parameters as HTCondor itself reads ``config_text``, names upper-cased."""
    pytest.importorskip("htcondor2")
    config = tmp_path / "condor_config"
    config.write_text(config_text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("_CONDOR_")}
    env["CONDOR_CONFIG"] = str(config)
    # Typed knobs (NUM_CPUS) come back as int or bool: compare everything as text.
    script = (
        "import htcondor2, json, sys; "
        "json.dump({k: str(v) for k, v in htcondor2.param.items()}, sys.stdout)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    params: dict[str, str] = json.loads(done.stdout)
    return {k.upper(): v for k, v in params.items()}


GOOD_FILE = UPSTREAM_EXAMPLE + "\n".join(
    f"SITE_ATTR_{i} = {value}" for i, value in enumerate(GOOD_VALUES)
)


def test_validated_attributes_read_back_from_htcondor_config_exactly_as_written(
    tmp_path: Path,
) -> None:
    """Each attribute is one knob whose text HTCondor returns unchanged, listed in STARTD_ATTRS.

    Includes a string with '#', non-ASCII text and a ClassAd comment: none is cut or altered.
    """
    result, findings = parse(GOOD_FILE)
    assert not findings.failures
    baseline = htcondor_params(render([]), tmp_path)
    params = htcondor_params(render(result), tmp_path)
    for attribute in result:
        assert params[attribute.name.upper()] == attribute.expression
    assert params["STARTD_ATTRS"].split() == ["OSPOOL_EP_UUID", *(a.name for a in result)]
    assert set(params) - set(baseline) == {a.name.upper() for a in result}
    assert params["START"] == PILOT_START


EVIL_FILES = [
    "FOO = 1\nSTART = True\n",
    "FOO = 1\nstart=True\n",
    "FOO = 1\n   START = True\n",
    "FOO = 1\r\nSTART = True\r\n",
    "FOO = 1\rSTART = True\n",
    "FOO = 1 \\\nSTART = True\n",
    "FOO = 1; START = True\n",
    'FOO = "x"\nSTART = "y"\n',
    'FOO = "a\nSTART = True"\n',
    "FOO = $(START) || True\n",
    "FOO = 1\x0bSTART = True\n",
    "FOO = 1\u2028START = True\n",
    "FOO = 1\u0085START = True\n",
    "FOO = True\nSTARTD.START = True\n",
    "FOO = True\nSLOT1.START = True\n",
    "FOO = True\nSTART_EXTRA = True\n",
    "FOO = True\nNUM_CPUS = 64\n",
    "FOO = True\nuse POLICY : ALWAYS_RUN_JOBS\n",
    "FOO = True\ninclude : /etc/passwd\n",
    "FOO = True\nif = 1\n",
    "FOO = True\nFOO @= END\nSTART = True\nEND\n",
    "FOO = True\nSTARTD_ATTRS = START\n",
    "FOO = True\n\ufeffSTART = True\n",
    "FOO = 1 # \nSTART = True\n",
]


HARMLESS_LOOKALIKES = [
    "FOO = [START = True]\n",
    'FOO = "START = True"\n',
    "FOO = START == True\n",
]
"""Valid on purpose: START inside a record, a string or a comparison sets nothing."""

ATTACKS = EVIL_FILES + HARMLESS_LOOKALIKES


@pytest.mark.parametrize("evil", ATTACKS, ids=[repr(e) for e in ATTACKS])
def test_a_file_trying_to_set_a_knob_fails_and_what_passes_cannot_change_start(
    evil: str, tmp_path: Path
) -> None:
    """Whatever survives validation, rendered after the pilot's START, leaves START alone.

    HTCondor reads exactly the surviving attributes as new parameters and nothing else;
    START and NUM_CPUS keep the pilot's values.
    """
    result, findings = parse(evil)
    assert bool(findings.failures) == (evil in EVIL_FILES), "an attack must not pass silently"
    baseline = htcondor_params(render([]), tmp_path)
    params = htcondor_params(render(result), tmp_path)
    assert params["START"] == PILOT_START
    assert params["NUM_CPUS"] == "2"
    assert set(params) - set(baseline) == {a.name.upper() for a in result}
    for attribute in result:
        assert params[attribute.name.upper()] == attribute.expression


@pytest.mark.parametrize(
    "raw", ["FOO = 1\nSTART = True\n", "FOO = 1\n   start=True\n", "FOO = 1\r\nSTART = True\r\n"]
)
def test_the_same_attack_unvalidated_does_change_start(raw: str, tmp_path: Path) -> None:
    """Control: written raw (upstream's way), these files do override START in HTCondor."""
    params = htcondor_params(render([]) + raw, tmp_path)
    assert params["START"] == "True"


def test_random_lines_from_dangerous_pieces_never_get_past_into_other_knobs(
    tmp_path: Path,
) -> None:
    """A seeded fuzz of 4000 lines built from config-breaking pieces, checked by HTCondor.

    Everything that validates reads back verbatim; nothing else appears; START is untouched.
    """
    rng = random.Random(54)  # reproducible on purpose
    names = ["FOO", "Foo_2", "START", "start", "SEC_X", "if", "MY", "A.B", "X Y", "", "_Z"]
    separators = [" = ", "=", " == ", " @= ", " : ", "\t=\t", " "]
    pieces = ["1", "True", '"s"', "$(START)", "\\", "#", ";", "START = True", "[a=1]",
              "{1,2}", "\r", "\x0b", "(", ")", '"', "'", " ", "&&", "\u2028", "=", "MY.Cpus",
              "\n"]  # fmt: skip
    lines = []
    for i in range(4000):
        name = rng.choice(names) + rng.choice(["", f"_{i}", str(i)])
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
        lines.append(name + rng.choice(separators) + value)
    result, _ = parse("\n".join(lines))
    assert len(result) > 30, "the fuzz should let some lines through"
    baseline = htcondor_params(render([]), tmp_path)
    params = htcondor_params(render(result), tmp_path)
    assert params["START"] == PILOT_START
    assert set(params) - set(baseline) == {a.name.upper() for a in result}
    for attribute in result:
        assert params[attribute.name.upper()] == attribute.expression


# --- the deny list against HTCondor itself --------------------------------------------------

KNOB_SCRIPT = REPO / "scripts" / "htcondor_knobs.py"
KNOB_FILE = Path(attributes.__file__).with_name("htcondor_knobs.txt")


def test_the_shipped_knob_list_holds_every_setting_of_the_installed_htcondor() -> None:
    """``htcondor_knobs.txt`` lists every name of the installed HTCondor's param table and
    its own macros (read through its library, in a subprocess); regenerate it with
    ``scripts/htcondor_knobs.py --write`` when an HTCondor upgrade adds names."""
    pytest.importorskip("htcondor2")
    done = subprocess.run(
        [sys.executable, str(KNOB_SCRIPT), "--check", str(KNOB_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_name_htcondor_reads_from_the_pilots_rendered_config_is_denied(
    tmp_path: Path,
) -> None:
    """Every setting HTCondor sees in the pilot's own trees (metaknobs such as
    ``use POLICY : Hold_If_Memory_Exceeded`` expanded, each template branch rendered) is
    denied, so no accepted attribute can redefine one. HTCondor reads ``STARTD.X`` for
    the startd before ``X``, and an attribute name cannot contain '.', so the part after
    the dot is what must be denied."""
    pytest.importorskip("htcondor2")
    from render_plans import make_plan

    from ospool_ep.detect.apptainer import ApptainerTest
    from ospool_ep.detect.gpus import GpuReport
    from ospool_ep.inputs.settings import Settings
    from ospool_ep.pilot import render as render_module

    settings = Settings(
        site="S", resource_name="R", project_name="P", itb=True, singularity_bind_extra=("/a",)
    )
    plans = [
        make_plan(settings),
        make_plan(
            settings,
            gpus=GpuReport(ids=("GPU-0",), opencl_vendors="/etc/OpenCL/vendors"),
            apptainer=ApptainerTest(path="/usr/bin/apptainer", version="1.4", detail="d"),
        ),
    ]
    seen: set[str] = set()
    for index, plan in enumerate(plans):
        tree = tmp_path / f"tree{index}"
        files = render_module.render_files(plan, config_dir=tree)
        render_module.write_tree(files, output=tree)
        seen |= set(htcondor_params((tree / "condor_config").read_text(), tree))
    names = {name.rsplit(".", 1)[-1] for name in seen}
    assert len(names) > 1000, "HTCondor's own defaults come back too"
    assert sorted(n for n in names if not attributes._name_policy_reasons(n)) == []
