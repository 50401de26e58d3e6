"""What the extra-attributes check tells a site, pinned by value (SPEC 4.2, 5.4).

A site reads ``FAIL  <file>:<line>: <what is wrong> -- <fix>``: each distinct line
is pinned once with ``Finding.as_line()``, one per rule of the name policy and
per kind of bad value, together with the limits (message cut, file size) at
their boundaries and the file-level findings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ospool_ep.findings import Findings
from ospool_ep.inputs import attributes
from ospool_ep.inputs.attributes import (
    ExtraAttribute,
    load_extra_attributes_file,
    parse_extra_attributes,
)

FIX_FORMAT = (
    'write one attribute per line as NAME = expression, e.g. KUBERNETES_NAMESPACE = "default"; '
    "comments are lines that start with '#'"
)
FIX_NAME = "use only letters, digits and '_' in the name, starting with a letter or '_'"
FIX_POLICY = (
    "choose a name of your own, e.g. with your site or project as prefix; "
    "these names belong to ClassAds, HTCondor or the pilot"
)
FIX_CHARACTERS = (
    "remove control characters, tabs, backslashes and invisible characters from the value"
)
FIX_ONE_EXPRESSION = (
    'write exactly one ClassAd expression; quote text with double quotes, e.g. "text"'
)
MUST_MATCH = "it must match [A-Za-z_][A-Za-z0-9_]*"
WITHHELD = "(withheld: contains control or invisible characters)"
BACKSLASH_END = (
    "the value ends in a backslash; multi-line values are not supported -- "
    "put the whole expression on one line, without a trailing backslash"
)


def denied(name: str, *reasons: str) -> str:
    return f"FAIL  f:1: attribute name {name!r} is not allowed: it {'; it '.join(reasons)} -- " + (
        FIX_POLICY
    )


SETTING = "is an HTCondor configuration setting"
STARTD = "is an attribute the startd publishes itself"
PILOT = "is an attribute or setting the pilot publishes itself"

# (id, file text, the lines printed)
REPORTS: list[tuple[str, str, list[str]]] = [
    (
        "no-equals",
        "JUST A NAME",
        [f"FAIL  f:1: line 'JUST A NAME' has no '=': expected NAME = expression -- {FIX_FORMAT}"],
    ),
    (
        "no-equals-withheld",
        "JUST\x1bNAME",
        [f"FAIL  f:1: line {WITHHELD} has no '=': expected NAME = expression -- {FIX_FORMAT}"],
    ),
    ("name-empty", "= 1", [f"FAIL  f:1: the attribute name is empty: {MUST_MATCH} -- {FIX_NAME}"]),
    (
        "name-malformed",
        "1FOO = 1",
        [f"FAIL  f:1: the attribute name '1FOO' is not a valid name: {MUST_MATCH} -- {FIX_NAME}"],
    ),
    (
        "name-invisible",
        "A\u200b = 1",
        [
            f"FAIL  f:1: the attribute name {WITHHELD} is not a valid name: {MUST_MATCH} "
            f"-- {FIX_NAME}"
        ],
    ),
    ("reserved", "true = 1", [denied("true", "is a ClassAd reserved word or scope name")]),
    (
        "keyword",
        "endif = 1",
        [denied("endif", "is a statement keyword of HTCondor's configuration language")],
    ),
    ("knob-and-published", "START = True", [denied("START", SETTING, STARTD)]),
    ("untabled-knob", "CONDOR_HOST = 1", [denied("CONDOR_HOST", SETTING)]),
    (
        "composed-knob",
        "allow_write = 1",
        [denied("allow_write", f"{SETTING} (a security setting per permission level)")],
    ),
    ("startd", "Cpus = 1", [denied("Cpus", STARTD)]),
    ("startd-family", "TotalFoo = 1", [denied("TotalFoo", STARTD)]),
    ("pilot", "GLIDEIN_ToDie = 1", [denied("GLIDEIN_ToDie", PILOT)]),
    ("pilot-family", "OSPOOL_EP_X = 1", [denied("OSPOOL_EP_X", PILOT)]),
    (
        "duplicate",
        "A = 1\na = 2",
        [
            "FAIL  f:2: attribute 'a' is a duplicate: line 1 already defines it (names are "
            "case-insensitive) -- keep one definition of a and delete the other"
        ],
    ),
    ("backslash-end", "A = 1 \\", [f"FAIL  f:1: attribute 'A': {BACKSLASH_END}"]),
    (
        "backslash-end-bad-name",
        "1A = 1 \\",
        [
            f"FAIL  f:1: the attribute name '1A' is not a valid name: {MUST_MATCH} -- {FIX_NAME}",
            f"FAIL  f:1: the attribute on this line: {BACKSLASH_END}",
        ],
    ),
    (
        "hash",
        'A = "x#" # note',
        [
            "FAIL  f:1: attribute 'A': the value '\"x#\" # note' contains '#', which is not a "
            "comment in HTCondor configuration ('#' only starts a comment at the beginning of a "
            "line), so it is not a valid ClassAd expression -- move the comment to its own line "
            "starting with '#'"
        ],
    ),
    (
        "hash-after-an-escaped-quote",
        'A = "a\\"#"',
        [
            f"FAIL  f:1: attribute 'A': the value '\"a\\\\\"#\"' contains a backslash -- "
            f"{FIX_CHARACTERS}"
        ],
    ),
    (
        "empty-value",
        "A =",
        [
            "FAIL  f:1: attribute 'A': the value is empty -- give A a value, e.g. A = True, "
            "or delete the line"
        ],
    ),
    (
        "empty-value-bad-name",
        "1A =",
        [
            f"FAIL  f:1: the attribute name '1A' is not a valid name: {MUST_MATCH} -- {FIX_NAME}",
            "FAIL  f:1: the attribute on this line: the value is empty -- give NAME a value, "
            "e.g. NAME = True, or delete the line",
        ],
    ),
    (
        "macro",
        "A = $(B)",
        [
            "FAIL  f:1: attribute 'A': the value '$(B)' contains '$', which HTCondor would expand "
            "as a macro -- write the value out literally; macros are not expanded in extra "
            "attributes"
        ],
    ),
    (
        "too-deep",
        "A = " + "(" * 150 + "1" + ")" * 150,
        [
            "FAIL  f:1: attribute 'A': the value '" + "(" * 60 + "'... is nested too deeply for "
            "HTCondor's ClassAd parser (it must leave 32 levels of parentheses to spare) -- "
            "simplify the expression: fewer terms and less nesting, e.g. "
            'member(TARGET.ProjectName, {"A", "B"}) instead of a long chain of ||'
        ],
    ),
    (
        "control",
        "A = 1\tB",
        [
            f"FAIL  f:1: attribute 'A': the value {WITHHELD} contains a control character -- "
            f"{FIX_CHARACTERS}"
        ],
    ),
    (
        "invalid",
        "A = 1 2",
        [
            f"FAIL  f:1: attribute 'A': the value '1 2' is not a valid ClassAd expression -- "
            f"{FIX_ONE_EXPRESSION}"
        ],
    ),
    (
        "invisible",
        'A = "a\u200bb"',
        [
            f"FAIL  f:1: attribute 'A': the value {WITHHELD} contains an invisible or "
            f"line-breaking Unicode character -- {FIX_CHARACTERS}"
        ],
    ),
    (
        "surrogate-withheld",
        'A = "a\ud800b"',
        [
            f"FAIL  f:1: attribute 'A': the value {WITHHELD} is not a valid ClassAd expression -- "
            f"{FIX_ONE_EXPRESSION}"
        ],
    ),
    (
        "value-of-60-shown-whole",
        "A = " + "x" * 58 + " 2",
        [
            f"FAIL  f:1: attribute 'A': the value '{'x' * 58} 2' is not a valid ClassAd expression "
            f"-- {FIX_ONE_EXPRESSION}"
        ],
    ),
    (
        "value-of-61-cut",
        "A = " + "x" * 59 + " 2",
        [
            f"FAIL  f:1: attribute 'A': the value '{'x' * 59} '... is not a valid ClassAd "
            f"expression -- {FIX_ONE_EXPRESSION}"
        ],
    ),
    (
        "hash-after-a-reference",
        "A = X # note",
        [
            "FAIL  f:1: attribute 'A': the value 'X # note' contains '#', which is not a "
            "comment in HTCondor configuration ('#' only starts a comment at the beginning of a "
            "line), so it is not a valid ClassAd expression -- move the comment to its own line "
            "starting with '#'"
        ],
    ),
    (
        "hash-after-an-empty-string",
        'A = "" # note',
        [
            "FAIL  f:1: attribute 'A': the value '\"\" # note' contains '#', which is not a "
            "comment in HTCondor configuration ('#' only starts a comment at the beginning of a "
            "line), so it is not a valid ClassAd expression -- move the comment to its own line "
            "starting with '#'"
        ],
    ),
    (
        "hash-after-a-string-with-an-escape",
        'A = "a\\"b" # note',
        [
            "FAIL  f:1: attribute 'A': the value '\"a\\\\\"b\" # note' contains '#', which is "
            "not a comment in HTCondor configuration ('#' only starts a comment at the beginning "
            "of a line), so it is not a valid ClassAd expression -- move the comment to its own "
            "line starting with '#'"
        ],
    ),
    # Only blanks and tabs are trimmed, as HTCondor does: other white space is refused.
    (
        "stray-word",
        "X",
        [f"FAIL  f:1: line 'X' has no '=': expected NAME = expression -- {FIX_FORMAT}"],
    ),
    (
        "form-feed-line",
        "\x0c",
        [f"FAIL  f:1: line {WITHHELD} has no '=': expected NAME = expression -- {FIX_FORMAT}"],
    ),
    (
        "no-break-space-after-a-word",
        "X\xa0",
        [f"FAIL  f:1: line 'X\\xa0' has no '=': expected NAME = expression -- {FIX_FORMAT}"],
    ),
    (
        "no-break-space-after-a-name",
        "A\xa0= 1",
        [f"FAIL  f:1: the attribute name 'A\\xa0' is not a valid name: {MUST_MATCH} -- {FIX_NAME}"],
    ),
    (
        "no-break-space-after-a-value",
        "A = 1\xa0",
        [
            "FAIL  f:1: attribute 'A': the value '1\\xa0' is not a valid ClassAd expression -- "
            f"{FIX_ONE_EXPRESSION}"
        ],
    ),
    ("accepted", "A = 1\n# B = 2\n\nC = 'x#y' == \"#\"", ["PASS  f: 2 extra attributes: A, C"]),
    ("one", 'GLIDEIN_Country = "US"', ["PASS  f: 1 extra attribute: GLIDEIN_Country"]),
    # What OSG's guide invites and a site may publish (SPEC 5.4).
    (
        "invited",
        'KUBERNETES_NAMESPACE = "osg"\nKUBERNETES_DEPLOYMENT = "ep"\nGLIDEIN_Country = "US"\n'
        'WorkerGroupName = "rack-7"',
        [
            "PASS  f: 4 extra attributes: KUBERNETES_NAMESPACE, KUBERNETES_DEPLOYMENT, "
            "GLIDEIN_Country, WorkerGroupName"
        ],
    ),
    ("nothing", "# only a comment\n", ["PASS  f: no extra attributes"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [r[1:] for r in REPORTS], ids=[r[0] for r in REPORTS]
)
def test_each_report_line_names_the_line_the_problem_and_the_fix(
    text: str, expected: list[str]
) -> None:
    findings = Findings()
    parse_extra_attributes(text + "\n", source="f", findings=findings)
    assert [f.as_line() for f in findings] == expected


@pytest.mark.parametrize(
    "character",
    ["\x85", "\u200b", "\ue000", "\u0378", "\u2028", "\u2029"],
    ids=["C1-control", "format", "private-use", "unassigned", "line-separator", "para-separator"],
)
def test_every_kind_of_invisible_character_is_refused_in_a_value(character: str) -> None:
    findings = Findings()
    assert parse_extra_attributes(f'A = "a{character}b"', source="f", findings=findings) == []
    assert [f.message for f in findings] == [
        f"attribute 'A': the value {WITHHELD} contains an invisible or line-breaking "
        "Unicode character"
    ]


def lines_for(path: Path) -> list[str]:
    findings = Findings()
    load_extra_attributes_file(path, findings=findings)
    return [f.as_line().replace(str(path), "P") for f in findings]


def test_the_file_level_findings_name_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing.cfg"
    dangling = tmp_path / "dangling.cfg"
    dangling.symlink_to(tmp_path / "nowhere")
    fifo = tmp_path / "fifo.cfg"
    os.mkfifo(fifo)
    latin1 = tmp_path / "latin1.cfg"
    latin1.write_bytes(b'A = 1\nB = "caf\xe9"\n')
    mount = "mount a single file of NAME = expression lines at this path"
    assert [lines_for(p) for p in (missing, dangling, tmp_path, fifo, latin1)] == [
        ["PASS  P: not present, no extra attributes"],
        [
            "FAIL  P: is a symbolic link to a file that does not exist -- mount the "
            "extra-attributes file itself, or remove the link"
        ],
        [f"FAIL  P: is a directory -- {mount}"],
        [f"FAIL  P: is not a regular file -- {mount}"],
        [
            "FAIL  P: is not UTF-8 text (byte 0xe9 on line 2) -- save the file as UTF-8 "
            "(or plain ASCII) text"
        ],
    ]


def test_a_file_of_exactly_one_mib_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "extra.cfg"
    path.write_bytes(b"A = 1\n" + b"#" * (1024 * 1024 - 7) + b"\n")
    assert lines_for(path) == ["PASS  P: 1 extra attribute: A"]
    path.write_bytes(b"A = 1\n" + b"#" * (1024 * 1024 - 6) + b"\n")
    assert lines_for(path) == [
        "FAIL  P: is larger than 1024 KiB; an extra-attributes file has a few lines -- "
        "check that the right file is mounted at this path"
    ]


def test_accepted_lines_keep_their_names_and_expressions_trimmed_of_blanks_and_tabs() -> None:
    findings = Findings()
    text = " \tA\t=\tX \t\nB=MY.Cpus > 1\n"
    assert parse_extra_attributes(text, source="f", findings=findings) == [
        ExtraAttribute("A", "X", 1),
        ExtraAttribute("B", "MY.Cpus > 1", 2),
    ]


def test_a_file_that_cannot_be_opened_or_read_is_a_failure_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading /proc/self/mem from its start fails with EIO: a real read error. Opening is
    refused by a stand-in for the kernel (tests may run as root, who may open anything)."""
    access = "mount the file readable by the pilot's user (uid 1000 in the image)"
    assert lines_for(Path("/proc/self/mem")) == [
        f"FAIL  P: cannot be read: Input/output error -- {access}"
    ]

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    assert lines_for(tmp_path / "extra.cfg") == [
        f"FAIL  P: cannot be opened: Permission denied -- {access}"
    ]


def test_the_knob_table_is_htcondors_list_upper_cased_without_comments() -> None:
    """Built once at import; rebuilt here so a change to how it is built is seen."""
    table = attributes._knob_table()
    assert table == attributes.HTCONDOR_KNOBS
    assert {"START", "NUM_CPUS", "DAEMON_LIST", "TRUST_DOMAIN"} <= table
    assert all(name and name == name.upper() and "#" not in name for name in table)
    shipped = (Path(attributes.__file__).parent / "htcondor_knobs.txt").read_text().splitlines()
    assert len(table) == len({n.upper() for n in shipped if n.strip() and n[0] != "#"}) > 1000


def test_the_word_tables_split_on_any_blank() -> None:
    assert attributes._words(" a\tb\n  c ") == frozenset({"a", "b", "c"})
