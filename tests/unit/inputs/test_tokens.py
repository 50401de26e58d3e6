"""Contracts of ospool_ep.inputs.tokens: reading, checking and installing IDTOKENs (SPEC 5.1).

Real files with real modes under tmp_path; tokens are HS256 JWTs signed with a
throwaway key by tests/jwt_factory.py. The clock is jwt_factory.NOW.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jwt_factory import (
    DAY,
    DROP,
    ISSUER,
    NOW,
    STARTD_SCOPE,
    header,
    json_segment,
    make_jwt,
    payload,
    segment,
    sign,
    token,
)

from ospool_ep.findings import Finding, Findings, Kind, Status
from ospool_ep.inputs.tokens import (
    EXPIRY_WARNING_SECONDS,
    REQUIRED_SCOPES,
    Token,
    TokenError,
    earliest_expiry,
    install_tokens,
    load_tokens,
    parse_token,
)

CANONICAL = "flock.opensciencegrid.org"


def write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(mode)
    return path


def load(
    token_dir: Path, *, env: str | None = None, now: float = NOW
) -> tuple[list[Token], Findings]:
    findings = Findings()
    tokens = load_tokens(token_dir=token_dir, token_env=env, now=now, findings=findings)
    return tokens, findings


def with_files(tmp_path: Path, **files: str | bytes) -> Path:
    token_dir = tmp_path / "tokens-orig.d"
    token_dir.mkdir()
    for name, text in files.items():
        write(token_dir / name, text)
    return token_dir


def canonical_dir(tmp_path: Path, text: str | bytes) -> Path:
    token_dir = tmp_path / "tokens-orig.d"
    token_dir.mkdir()
    write(token_dir / CANONICAL, text)
    return token_dir


def of(findings: Findings, status: Status) -> list[Finding]:
    return [f for f in findings if f.status is status]


def parsed(text: str, source: str = CANONICAL) -> Token:
    return parse_token(text, source=source)


# --- good tokens -------------------------------------------------------------------------


def test_a_good_token_file_passes_and_is_returned(tmp_path: Path) -> None:
    """A valid token at the canonical name is returned, with one PASS showing its claims."""
    jwt = token()
    tokens, findings = load(canonical_dir(tmp_path, jwt + "\n"))

    assert [t.text for t in tokens] == [jwt]
    only = tokens[0]
    assert (only.source, only.kid, only.iss) == (CANONICAL, "POOL", ISSUER)
    assert (only.iat, only.exp, only.scopes, only.from_env) == (
        NOW - DAY,
        NOW + 90 * DAY,
        None,
        False,
    )
    assert [(f.status, f.subject) for f in findings] == [(Status.PASS, f"token file {CANONICAL}")]
    assert "iss=flock.opensciencegrid.org" in findings[0].message
    assert "kid=POOL" in findings[0].message
    assert "exp=2026-12-20T14:13:20Z" in findings[0].message


def test_a_token_whose_scope_grants_the_startd_rights_passes(tmp_path: Path) -> None:
    """A scope claim holding READ, ADVERTISE_STARTD and ADVERTISE_MASTER (and more) is enough."""
    tokens, findings = load(canonical_dir(tmp_path, token(scope=STARTD_SCOPE + " condor:/WRITE")))

    assert tokens[0].scopes == (*REQUIRED_SCOPES, "condor:/WRITE")
    assert [f.status for f in findings] == [Status.PASS]


def test_a_token_without_exp_never_expires(tmp_path: Path) -> None:
    """No exp claim is valid; it reads as 'exp=never' and has no earliest expiry."""
    tokens, findings = load(canonical_dir(tmp_path, token(exp=DROP)))

    assert tokens[0].exp is None
    assert earliest_expiry(tokens) is None
    assert "exp=never" in findings[0].message
    assert findings[0].status is Status.PASS


def test_a_token_with_jti_but_no_sub_is_accepted(tmp_path: Path) -> None:
    """Either sub or jti identifies a token (SPEC 5.1); jti alone is shown instead of sub."""
    tokens, findings = load(canonical_dir(tmp_path, token(sub=DROP)))

    assert tokens[0].sub is None
    assert tokens[0].jti == "0123456789abcdef"
    assert "jti=0123456789abcdef" in findings[0].message


def test_every_token_line_of_a_multi_line_file_is_loaded(tmp_path: Path) -> None:
    """Each non-blank, non-comment line is its own token, named '<file> line <n>'."""
    first, second = token(sub="a@x"), token(sub="b@x")
    text = f"# tokens for this site\n{first}\n\n  {second}  \r\n"
    tokens, findings = load(canonical_dir(tmp_path, text))

    assert [t.text for t in tokens] == [first, second]
    assert [t.source for t in tokens] == [f"{CANONICAL} line 2", f"{CANONICAL} line 4"]
    assert [f.subject for f in findings] == [
        f"token file {CANONICAL} line 2",
        f"token file {CANONICAL} line 4",
    ]


def test_a_file_saved_by_a_windows_editor_still_loads(tmp_path: Path) -> None:
    """A UTF-8 byte order mark and CRLF line ends are not part of the token."""
    jwt = token()
    tokens, findings = load(canonical_dir(tmp_path, "\ufeff".encode() + jwt.encode() + b"\r\n"))

    assert [t.text for t in tokens] == [jwt]
    assert not findings.has_failures()


def test_every_file_in_the_directory_is_used_in_name_order(tmp_path: Path) -> None:
    """All files are read (SPEC 4.2), sorted by name, whatever the name."""
    token_dir = with_files(tmp_path, zz=token(sub="z@x"), aa=token(sub="a@x"))
    tokens, _ = load(token_dir)

    assert [(t.source, t.sub) for t in tokens] == [("aa", "a@x"), ("zz", "z@x")]


def test_the_token_variable_alone_is_enough(tmp_path: Path) -> None:
    """TOKEN without any mounted directory gives a token named TOKEN."""
    jwt = token()
    tokens, findings = load(tmp_path / "absent", env=jwt)

    assert [(t.source, t.from_env, t.text) for t in tokens] == [("TOKEN", True, jwt)]
    assert [(f.status, f.subject) for f in findings] == [(Status.PASS, "TOKEN")]
    assert tokens[0].describe().startswith("TOKEN: iss=")


def test_the_token_variable_may_hold_several_lines(tmp_path: Path) -> None:
    """Each line of TOKEN is a token, named 'TOKEN line <n>'."""
    tokens, findings = load(tmp_path / "absent", env=f"{token(sub='a@x')}\n{token(sub='b@x')}\n")

    assert [t.source for t in tokens] == ["TOKEN line 1", "TOKEN line 2"]
    assert [f.subject for f in findings] == ["TOKEN line 1", "TOKEN line 2"]


def test_tokens_from_the_directory_and_the_variable_are_both_used(tmp_path: Path) -> None:
    """The mounted files come first, then TOKEN."""
    from_file, from_env = token(sub="file@x"), token(sub="env@x")
    tokens, findings = load(canonical_dir(tmp_path, from_file), env=from_env)

    assert [(t.source, t.text) for t in tokens] == [(CANONICAL, from_file), ("TOKEN", from_env)]
    assert [f.status for f in findings] == [Status.PASS, Status.PASS]


def test_kubernetes_secret_symlinks_are_followed_and_hidden_entries_skipped(
    tmp_path: Path,
) -> None:
    """A Secret volume's visible names link through '..data' to a hidden directory: use them."""
    token_dir = tmp_path / "tokens-orig.d"
    revision = token_dir / "..2026_09_21_14_13_20.123456789"
    revision.mkdir(parents=True)
    jwt = token()
    write(revision / CANONICAL, jwt, mode=0o644)
    (token_dir / "..data").symlink_to(revision.name)
    (token_dir / CANONICAL).symlink_to(f"..data/{CANONICAL}")

    tokens, findings = load(token_dir)

    assert [(t.source, t.text) for t in tokens] == [(CANONICAL, jwt)]
    assert [(f.status, f.subject) for f in findings] == [(Status.PASS, f"token file {CANONICAL}")]


# --- expiry and scope ---------------------------------------------------------------------


def test_an_expired_token_fails_naming_when_it_expired(tmp_path: Path) -> None:
    """exp in the past is a FAIL 'expired at <UTC time>' with the registry as the fix."""
    tokens, findings = load(canonical_dir(tmp_path, token(exp=NOW - 60)))

    assert tokens == []
    (failure,) = findings
    assert failure.status is Status.FAIL
    assert failure.kind is Kind.CONFIG
    assert "expired at 2026-09-21T14:12:20Z" in failure.message
    assert "OSPool Token Registry" in failure.fix


def test_a_token_expiring_within_a_week_warns_but_is_used(tmp_path: Path) -> None:
    """Less than 7 days left is a WARN saying how long; the token is still returned."""
    exp = NOW + 2 * DAY + 3 * 3600
    tokens, findings = load(canonical_dir(tmp_path, token(exp=exp)))

    assert [t.exp for t in tokens] == [exp]
    (warning,) = findings
    assert warning.status is Status.WARN
    assert "expires in 2 days 3 hours" in warning.message
    assert "OSPool Token Registry" in warning.fix


def test_a_token_with_more_than_a_week_left_does_not_warn(tmp_path: Path) -> None:
    """The warning starts at exactly EXPIRY_WARNING_SECONDS before exp, not earlier."""
    _, findings = load(canonical_dir(tmp_path, token(exp=NOW + EXPIRY_WARNING_SECONDS)))

    assert [f.status for f in findings] == [Status.PASS]


def test_a_scope_without_advertise_startd_fails_naming_it(tmp_path: Path) -> None:
    """A scope claim missing a right the startd needs is a FAIL naming exactly the missing one."""
    scope = "condor:/READ condor:/ADVERTISE_MASTER"
    tokens, findings = load(canonical_dir(tmp_path, token(scope=scope)))

    assert tokens == []
    (failure,) = findings
    assert failure.status is Status.FAIL
    assert "condor:/ADVERTISE_STARTD" in failure.message
    assert "condor:/READ" not in failure.message.split("(")[0]


def test_an_empty_scope_fails_naming_every_required_right(tmp_path: Path) -> None:
    """scope="" grants nothing, unlike an absent scope claim."""
    _, findings = load(canonical_dir(tmp_path, token(scope="")))

    (failure,) = findings.failures
    assert all(scope in failure.message for scope in REQUIRED_SCOPES)


def test_earliest_expiry_is_the_soonest_exp() -> None:
    """Tokens without exp do not count; the pilot retires before the soonest one (SPEC 6.3)."""
    tokens = [
        parsed(token(exp=NOW + 30 * DAY)),
        parsed(token(exp=DROP)),
        parsed(token(exp=NOW + 10 * DAY)),
    ]

    assert earliest_expiry(tokens) == NOW + 10 * DAY
    assert earliest_expiry([]) is None


# --- malformed tokens ---------------------------------------------------------------------


def _truncated(part: str) -> str:
    """Cut to a length of 1 mod 4, which no base64 text can have (a truncated paste)."""
    return part[: (len(part) // 4 - 1) * 4 + 1]


def _with_segments(head: str, body: str) -> str:
    return f"{head}.{body}.{sign(head, body)}"


MALFORMED: dict[str, tuple[Callable[[], str], str]] = {
    "missing kid": (lambda: make_jwt(head=header(kid=DROP)), "header has no 'kid'"),
    "missing alg": (lambda: make_jwt(head=header(alg=DROP)), "header has no 'alg'"),
    "missing iss": (lambda: token(iss=DROP), "payload has no 'iss'"),
    "missing iat": (lambda: token(iat=DROP), "payload has no 'iat'"),
    "no sub and no jti": (lambda: token(sub=DROP, jti=DROP), "neither 'sub' nor 'jti'"),
    "two segments": (lambda: token().rsplit(".", 1)[0], "three base64url segments"),
    "four segments": (lambda: token() + ".AAAA", "found 4"),
    "bad base64 characters": (
        lambda: _with_segments(json_segment(header()), "eyJ!!!"),
        "payload segment is not valid base64url",
    ),
    "impossible base64 length": (
        lambda: _with_segments(json_segment(header()), _truncated(json_segment(payload()))),
        "payload segment is not valid base64url",
    ),
    "empty signature": (lambda: token().rsplit(".", 1)[0] + ".", "signature segment"),
    "payload not JSON": (
        lambda: _with_segments(json_segment(header()), segment(b"iss=me")),
        "payload is not valid JSON",
    ),
    "payload a JSON list": (
        lambda: make_jwt(claims=[payload()]),
        "payload is not a JSON object",
    ),
    "header not JSON": (
        lambda: _with_segments(segment(b"{"), json_segment(payload())),
        "header is not valid JSON",
    ),
    "iat a string": (lambda: token(iat="yesterday"), "'iat' is not an integer"),
    "iat a boolean": (lambda: token(iat=True), "'iat' is not an integer"),
    "exp a float": (lambda: token(exp=NOW + 0.5), "'exp' is not an integer"),
    "iss a number": (lambda: token(iss=42), "'iss' is not a non-empty string"),
    "sub a list": (lambda: token(sub=["a"]), "'sub' is not a string"),
    "scope a list": (lambda: token(scope=list(REQUIRED_SCOPES)), "'scope' is not a string"),
    "kid empty": (lambda: make_jwt(head=header(kid="")), "'kid' is not a non-empty string"),
    "wrapped in quotes": (lambda: f'"{token()}"', "enclosed in quotes"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_token_fails_saying_what_is_wrong(tmp_path: Path, case: str) -> None:
    """Each way a JWT can be malformed is one FAIL naming the defect; nothing is returned."""
    build, expected = MALFORMED[case]
    line = build()
    tokens, findings = load(canonical_dir(tmp_path, line + "\n"))

    assert tokens == []
    (failure,) = findings
    assert failure.status is Status.FAIL
    assert failure.subject == f"token file {CANONICAL}"
    assert expected in failure.message
    assert failure.message.startswith("malformed token: ")
    with pytest.raises(TokenError):
        parse_token(line, source=CANONICAL)


def test_one_bad_line_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    """Every line is checked: the valid token is returned, the bad line is a FAIL by line number."""
    good = token()
    tokens, findings = load(canonical_dir(tmp_path, f"{good}\nnot-a-token\n"))

    assert [t.text for t in tokens] == [good]
    assert [(f.status, f.subject) for f in findings] == [
        (Status.PASS, f"token file {CANONICAL} line 1"),
        (Status.FAIL, f"token file {CANONICAL} line 2"),
    ]


def test_a_malformed_token_variable_fails_under_its_name(tmp_path: Path) -> None:
    """A bad TOKEN is reported as TOKEN, also when a good file is mounted."""
    tokens, findings = load(canonical_dir(tmp_path, token()), env="abc.def")

    assert len(tokens) == 1
    assert [(f.status, f.subject) for f in findings.failures] == [(Status.FAIL, "TOKEN")]


# --- files and directories ----------------------------------------------------------------


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A directory another uid can reach (pytest's tmp_path sits under a 0700 directory)."""
    with tempfile.TemporaryDirectory(prefix="ospool-ep-token-test-") as name:
        base = Path(name)
        base.chmod(0o755)
        yield base


def _load_as_uid(uid: int, token_dir: Path) -> list[dict[str, str]]:
    """load_tokens run in a forked child that has dropped to ``uid``; its findings as dicts."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            findings = Findings()
            load_tokens(token_dir=token_dir, token_env=None, now=NOW, findings=findings)
            with os.fdopen(write_end, "w") as stream:
                json.dump([f.as_dict() for f in findings], stream)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        data = stream.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    result: list[dict[str, str]] = json.loads(data)
    return result


def test_an_unreadable_token_file_fails_naming_the_file_and_the_fix(traversable_dir: Path) -> None:
    """A file the pilot's uid cannot read is a FAIL naming it and telling whom to make it readable.

    Root reads a mode-000 file anyway, so under root the check runs in a forked child
    that has really become uid 1000 (the image's pilot uid) and really gets EACCES.
    """
    token_dir = traversable_dir / "tokens-orig.d"
    token_dir.mkdir(mode=0o755)
    token_dir.chmod(0o755)
    path = write(token_dir / CANONICAL, token(), mode=0o000)

    if os.geteuid() == 0:
        uid = 1000
        findings = _load_as_uid(uid, token_dir)
    else:
        uid = os.geteuid()
        _, in_process = load(token_dir)
        findings = [f.as_dict() for f in in_process]

    (failure,) = findings
    assert failure["status"] == "FAIL"
    assert failure["subject"] == f"token file {CANONICAL}"
    assert f"cannot read {path}: permission denied" in failure["message"]
    assert f"chown {uid} {path}" in failure["fix"]


def test_an_unlistable_token_directory_fails_naming_it(traversable_dir: Path) -> None:
    """A token directory the pilot's uid cannot list is one FAIL naming the directory.

    As above, under root the check runs in a forked child that has become uid 1000.
    """
    token_dir = traversable_dir / "tokens-orig.d"
    token_dir.mkdir()
    write(token_dir / CANONICAL, token())
    token_dir.chmod(0o300)

    if os.geteuid() == 0:
        findings = _load_as_uid(1000, token_dir)
    else:
        _, in_process = load(token_dir)
        findings = [f.as_dict() for f in in_process]
    token_dir.chmod(0o700)

    (failure,) = findings
    assert failure["status"] == "FAIL"
    assert f"cannot list {token_dir}: permission denied" in failure["message"]


def test_a_dangling_symlink_fails_naming_the_file(tmp_path: Path) -> None:
    """A token name that links to nothing (a broken mount) is a FAIL, not a silent skip."""
    token_dir = tmp_path / "tokens-orig.d"
    token_dir.mkdir()
    (token_dir / CANONICAL).symlink_to(tmp_path / "gone")

    tokens, findings = load(token_dir)

    assert tokens == []
    (failure,) = findings
    assert failure.status is Status.FAIL
    assert failure.subject == f"token file {CANONICAL}"
    assert "does not exist" in failure.message


def test_a_missing_directory_without_token_fails_saying_where_to_mount(tmp_path: Path) -> None:
    """No token directory and no TOKEN: one FAIL that names the canonical path and TOKEN."""
    token_dir = tmp_path / "tokens-orig.d"
    tokens, findings = load(token_dir)

    assert tokens == []
    (failure,) = findings
    assert failure.status is Status.FAIL
    assert failure.message.startswith("no token found")
    assert f"mount one at {token_dir}/{CANONICAL} or set TOKEN" in failure.fix


def test_an_empty_directory_without_token_fails(tmp_path: Path) -> None:
    """An existing token directory with no files (hidden ones do not count) is a FAIL."""
    token_dir = with_files(tmp_path)
    write(token_dir / ".keep", "")
    tokens, findings = load(token_dir, env="  \n")

    assert tokens == []
    (failure,) = findings
    assert failure.status is Status.FAIL
    assert f"no token found: {token_dir} has no token file" in failure.message


def test_a_directory_where_the_token_file_should_be_is_reported(tmp_path: Path) -> None:
    """docker -v with a missing host path mounts an empty directory: WARN on it, FAIL no token."""
    token_dir = tmp_path / "tokens-orig.d"
    (token_dir / CANONICAL).mkdir(parents=True)

    tokens, findings = load(token_dir)

    assert tokens == []
    assert [(f.status, f.subject) for f in findings] == [
        (Status.WARN, f"token file {CANONICAL}"),
        (Status.FAIL, "token"),
    ]
    assert "is a directory" in findings[0].message


def test_the_token_directory_being_a_file_fails(tmp_path: Path) -> None:
    """A token mounted at the directory's own path is named as such."""
    token_dir = write(tmp_path / "tokens-orig.d", token())

    tokens, findings = load(token_dir)

    assert tokens == []
    (failure,) = findings
    assert "is a file, not a directory" in failure.message


def test_a_binary_file_fails_as_not_text(tmp_path: Path) -> None:
    """A file that is not UTF-8 text (a wrong mount, a keytab) is a FAIL naming the file."""
    tokens, findings = load(canonical_dir(tmp_path, b"\x00\xff\xfe binary \x80"))

    assert tokens == []
    (failure,) = findings
    assert failure.subject == f"token file {CANONICAL}"
    assert "is not a text file" in failure.message


def test_a_file_with_only_comments_fails_as_holding_no_token(tmp_path: Path) -> None:
    """An empty or all-comment token file is a FAIL: it is certainly not what was meant."""
    tokens, findings = load(canonical_dir(tmp_path, "# paste the token here\n\n"))

    assert tokens == []
    (failure,) = findings
    assert (failure.status, failure.message) == (Status.FAIL, "contains no token")


def test_a_fifo_in_the_directory_is_skipped_without_blocking(tmp_path: Path) -> None:
    """Reading a FIFO would hang the pilot: it is a WARN and skipped."""
    token_dir = canonical_dir(tmp_path, token())
    os.mkfifo(token_dir / "pipe")

    tokens, findings = load(token_dir)

    assert len(tokens) == 1
    assert [(f.status, f.subject) for f in findings] == [
        (Status.PASS, f"token file {CANONICAL}"),
        (Status.WARN, "token file pipe"),
    ]


def test_tokens_for_different_issuers_warn(tmp_path: Path) -> None:
    """Tokens of two trust domains are both kept, with a WARN naming both issuers."""
    token_dir = with_files(tmp_path, a=token(iss="one.example"), b=token(iss="two.example"))
    tokens, findings = load(token_dir)

    assert len(tokens) == 2
    (warning,) = of(findings, Status.WARN)
    assert warning.subject == "tokens"
    assert "one.example, two.example" in warning.message


# --- installing ---------------------------------------------------------------------------


def test_install_creates_a_private_directory_and_private_files(tmp_path: Path) -> None:
    """dest is 0700, each token file 0600, owned by the running uid, holding exactly the token."""
    first, second = token(sub="a@x"), token(sub="b@x")
    tokens = [parsed(first, CANONICAL), parse_token(second, source="TOKEN", from_env=True)]
    dest = tmp_path / "pilot" / "tokens.d"

    paths = install_tokens(tokens, dest=dest)

    assert [p.name for p in paths] == [CANONICAL, "TOKEN"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for path, jwt in zip(paths, (first, second), strict=True):
        info = path.lstat()
        assert stat.S_ISREG(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.geteuid()
        assert path.read_text() == jwt + "\n"
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in paths)


def test_install_tightens_an_existing_directory_and_ignores_the_umask(tmp_path: Path) -> None:
    """A pre-existing 0755 dest becomes 0700, and files are 0600 even under umask 000."""
    dest = tmp_path / "tokens.d"
    dest.mkdir(mode=0o755)
    dest.chmod(0o755)
    previous = os.umask(0)
    try:
        (path,) = install_tokens([parsed(token())], dest=dest)
    finally:
        os.umask(previous)

    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reinstall_replaces_rotated_tokens_and_removes_stale_files(tmp_path: Path) -> None:
    """After rotation only the current tokens remain; old files and leftovers are removed."""
    dest = tmp_path / "tokens.d"
    install_tokens([parsed(token(jti="old"), CANONICAL), parsed(token(), "extra")], dest=dest)
    write(dest / ".tmp-leftover", "partial")
    (dest / "subdir").mkdir()

    rotated = token(jti="new")
    paths = install_tokens([parsed(rotated, CANONICAL)], dest=dest)

    assert sorted(p.name for p in dest.iterdir()) == [CANONICAL, "subdir"]
    assert paths == [dest / CANONICAL]
    assert paths[0].read_text() == rotated + "\n"


def test_install_names_are_safe_for_htcondor_and_unique() -> None:
    """Names keep [A-Za-z0-9._-], never start with '.', and never collide."""
    sources = [f"{CANONICAL} line 1", "TOKEN", "TOKEN", ".hidden", "a/b c~", "x.rpmnew"]
    dest_names = []
    with tempfile.TemporaryDirectory() as name:
        tokens = [parsed(token(), source) for source in sources]
        dest_names = [p.name for p in install_tokens(tokens, dest=Path(name) / "t")]

    assert dest_names == [
        f"{CANONICAL}_line_1",
        "TOKEN",
        "TOKEN-2",
        "_.hidden",
        "a_b_c_",
        "x.rpmnew_",
    ]


# --- secrets ------------------------------------------------------------------------------


def test_no_token_text_or_signature_leaks_into_reports_reprs_or_errors(tmp_path: Path) -> None:
    """No finding, repr, str, describe() or TokenError contains a token or any of its segments."""
    good, expiring, expired = token(), token(exp=NOW + DAY), token(exp=NOW - DAY)
    scoped = token(scope="condor:/READ")
    malformed = [build() for build, _ in MALFORMED.values()]
    token_dir = with_files(
        tmp_path,
        a=good,
        b=f"{expiring}\n{expired}\n",
        c=scoped,
        d="\n".join(malformed),
    )
    tokens, findings = load(token_dir, env=f"{good}\n{malformed[0]}")
    errors = []
    for line in malformed:
        with pytest.raises(TokenError) as raised:
            parse_token(line, source="x")
        errors.append(str(raised.value))

    shown = "\n".join(
        [f.as_line() for f in findings]
        + [json.dumps([f.as_dict() for f in findings])]
        + [repr(f) for f in findings]
        + [repr(t) + str(t) + t.describe() for t in tokens]
        + errors
    )
    assert len(tokens) == 3
    for jwt in [good, expiring, expired, scoped, *malformed]:
        assert jwt.strip('"') not in shown
        signature = jwt.strip('"').rsplit(".", 1)[-1]
        if len(signature) > 8:
            assert signature not in shown
        payload_part = jwt.strip('"').split(".")[1] if jwt.count(".") >= 1 else ""
        if len(payload_part) > 8:
            assert payload_part not in shown


def test_describe_shows_claims_but_no_secret() -> None:
    """describe() gives file, iss, sub, kid and exp: what SPEC 5.1 lets reports show."""
    jwt = token()
    described = parsed(jwt).describe()

    assert described == (
        f"file {CANONICAL}: iss={ISSUER}, sub=site-ep@{ISSUER}, kid=POOL, exp=2026-12-20T14:13:20Z"
    )
    assert "text" not in repr(parsed(jwt))
