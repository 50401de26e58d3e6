"""Token checks at their exact boundaries: expiry at ``exp``, the 7-day warning, the
1 MiB file limit, name sanitising, what reports may show (SPEC 5.1).

Each boundary is tested on both sides with the injectable ``now``, so moving a
``<`` to ``<=`` or a limit by one fails a test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from jwt_factory import DAY, DROP, NOW, token

from ospool_ep.findings import Findings, Status
from ospool_ep.inputs import tokens as tokens_mod
from ospool_ep.inputs.tokens import (
    EXPIRY_WARNING_SECONDS,
    earliest_expiry,
    format_time,
    install_tokens,
    load_tokens,
    parse_token,
)

WEEK = 7 * DAY
MIB = 1 << 20


def check(text: str, now: float) -> tuple[list[tokens_mod.Token], Findings]:
    findings = Findings()
    found = load_tokens(token_dir=Path("/nonexistent"), token_env=text, now=now, findings=findings)
    return found, findings


def statuses(findings: Findings) -> list[Status]:
    return [f.status for f in findings]


@pytest.mark.parametrize(
    ("exp", "usable"),
    [(NOW - 1, False), (NOW, False), (NOW + 1, True)],
    ids=["a second before now", "exactly now", "a second after now"],
)
def test_a_token_is_expired_from_the_second_of_its_exp_on(exp: int, usable: bool) -> None:
    """RFC 7519 4.1.4: the token must not be accepted on or after ``exp``."""
    found, findings = check(token(exp=exp), now=NOW)
    assert bool(found) is usable
    if usable:
        assert statuses(findings) == [Status.WARN]
    else:
        assert statuses(findings) == [Status.FAIL]
        assert "expired at " + format_time(exp) in findings[0].message


def test_a_fractional_clock_just_past_exp_counts_as_expired() -> None:
    found, findings = check(token(exp=NOW), now=NOW - 0.5)
    assert found
    found, findings = check(token(exp=NOW), now=NOW + 0.5)
    assert not found
    assert statuses(findings) == [Status.FAIL]


@pytest.mark.parametrize(
    ("left", "status"),
    [(WEEK - 1, Status.WARN), (WEEK, Status.PASS), (WEEK + 1, Status.PASS)],
    ids=["a second under a week", "exactly a week", "a second over a week"],
)
def test_the_expiry_warning_starts_under_seven_days(left: int, status: Status) -> None:
    assert EXPIRY_WARNING_SECONDS == WEEK
    found, findings = check(token(exp=NOW + left), now=NOW)
    assert len(found) == 1
    assert statuses(findings) == [status]
    if status is Status.WARN:
        assert "the pilot retires before then" in findings[0].message
        assert findings[0].fix == "get a new token from the OSPool Token Registry before it expires"


@pytest.mark.parametrize(
    ("left", "shown"),
    [
        (WEEK - 1, "6 days 23 hours"),
        (DAY + 3600 + 59, "1 day 1 hour"),
        (2 * DAY, "2 days 0 hours"),
        (5 * 3600 + 60, "5 hours 1 minute"),
        (3600, "1 hour 0 minutes"),
        (3599, "59 minutes"),
        (60, "1 minute"),
        (59, "0 minutes"),
    ],
)
def test_the_warning_says_how_long_is_left_in_two_units_at_most(left: int, shown: str) -> None:
    _, findings = check(token(exp=NOW + left), now=NOW)
    assert f"expires in {shown} (" in findings[0].message


def test_an_expired_and_under_scoped_token_reports_both_and_is_not_used() -> None:
    found, findings = check(token(exp=NOW, scope="condor:/READ"), now=NOW)
    assert found == []
    assert statuses(findings) == [Status.FAIL, Status.FAIL]
    assert "expired" in findings[0].message
    assert "condor:/ADVERTISE_STARTD, condor:/ADVERTISE_MASTER" in findings[1].message
    assert "condor:/READ," not in findings[1].message


def test_a_scope_with_every_required_right_among_others_is_enough() -> None:
    scope = "condor:/WRITE condor:/ADVERTISE_MASTER condor:/READ condor:/ADVERTISE_STARTD"
    found, findings = check(token(scope=scope), now=NOW)
    assert len(found) == 1
    assert found[0].scopes == tuple(scope.split())
    assert statuses(findings) == [Status.PASS]


def test_earliest_expiry_is_the_soonest_exp_and_ignores_tokens_that_never_expire() -> None:
    soon = parse_token(token(exp=NOW + 2 * DAY), source="a")
    later = parse_token(token(exp=NOW + 9 * DAY), source="b")
    never = parse_token(token(exp=DROP), source="c")
    assert earliest_expiry([later, never, soon]) == NOW + 2 * DAY
    assert earliest_expiry([never]) is None
    assert earliest_expiry([]) is None


def test_format_time_is_utc_iso_8601_and_survives_absurd_values() -> None:
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(1_790_000_000) == "2026-09-21T14:13:20Z"
    assert format_time(10**20) == f"{10**20} (out of range)"


# --- the 1 MiB limit on token files -------------------------------------------------------


def padded_file(path: Path, size: int) -> Path:
    """A file of exactly ``size`` bytes: a valid token line, then comment padding."""
    line = token() + "\n"
    path.write_text(line + "#" * (size - len(line) - 1) + "\n")
    assert path.stat().st_size == size
    return path


@pytest.mark.parametrize(("size", "accepted"), [(MIB, True), (MIB + 1, False)])
def test_a_token_file_of_up_to_one_mib_is_read_and_one_byte_more_is_refused(
    tmp_path: Path, size: int, accepted: bool
) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir()
    padded_file(directory / "flock.opensciencegrid.org", size)
    findings = Findings()
    found = load_tokens(token_dir=directory, token_env=None, now=NOW, findings=findings)
    assert bool(found) is accepted
    if not accepted:
        assert [f.message for f in findings.failures] == [
            f"{directory / 'flock.opensciencegrid.org'} is larger than {MIB} bytes: "
            "not a token file"
        ]


# --- names of installed token files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "names"),
    [
        (["flock.opensciencegrid.org"], ["flock.opensciencegrid.org"]),
        (["my token (1)"], ["my_token__1_"]),
        (["TOKEN line 2"], ["TOKEN_line_2"]),
        ([".hidden"], ["_.hidden"]),
        (["x.rpmsave", "y.rpmnew"], ["x.rpmsave_", "y.rpmnew_"]),
        (["a", "a", "a"], ["a", "a-2", "a-3"]),
        (["a b", "a_b"], ["a_b", "a_b-2"]),
        ([""], ["token"]),
        (["é"], ["_"]),
        (["n" * 250], ["n" * 200]),
    ],
)
def test_install_names_are_sanitised_unique_and_never_skipped_by_htcondor(
    sources: list[str], names: list[str]
) -> None:
    assert tokens_mod._install_names(sources) == names


def test_installed_token_files_are_private_and_hold_the_token_and_a_newline(
    tmp_path: Path,
) -> None:
    text = token()
    installed = install_tokens([parse_token(text, source="my token")], dest=tmp_path / "d")
    assert installed == [tmp_path / "d" / "my_token"]
    assert installed[0].read_text() == text + "\n"
    assert stat.S_IMODE(installed[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert installed[0].stat().st_uid == os.geteuid()


def test_reinstalling_keeps_subdirectories_and_removes_only_stale_files(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    (dest / "subdir").mkdir(parents=True)
    (dest / "stale").write_text("old")
    install_tokens([parse_token(token(), source="t")], dest=dest)
    assert sorted(p.name for p in dest.iterdir()) == ["subdir", "t"]


# --- what reports may show -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("pool", "pool"),
        ("x" * 200, "x" * 200),
        ("x" * 201, "x" * 200 + "..."),
        ("a\nb", "a\\nb"),
        ("\x1b[31m" + "y" * 300, ("\\x1b[31m" + "y" * 300)[:200] + "..."),
    ],
    ids=["none", "plain", "200 chars", "201 chars", "newline", "escape sequence"],
)
def test_a_claim_is_shown_on_one_line_and_at_most_200_characters(
    value: str | None, shown: str
) -> None:
    assert tokens_mod._shown(value) == shown


def test_claims_show_sub_else_jti_and_never_as_expiry_none() -> None:
    with_sub = parse_token(token(sub="me@pool", exp=DROP), source="a")
    assert with_sub.claims() == ("iss=flock.opensciencegrid.org, sub=me@pool, kid=POOL, exp=never")
    only_jti = parse_token(token(sub=DROP, jti="abc", exp=NOW), source="b", from_env=True)
    assert only_jti.describe() == (
        "b: iss=flock.opensciencegrid.org, jti=abc, kid=POOL, exp=2026-09-21T14:13:20Z"
    )
    assert parse_token(token(), source="f").label == "file f"
