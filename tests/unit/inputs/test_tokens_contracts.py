"""Every token finding by its exact report line, and the token file reader's own limits
(SPEC 5.1).

The report lines are what a site admin reads: each names the file or variable and says
how to fix it, so each distinct message is pinned once, as ``Finding.as_line()`` prints
it. The reader's defences (non-blocking open, the 1 MiB read bound, private writes) are
tested by calling the layer directly with what could get past the directory scan.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from jwt_factory import DAY, DROP, NOW, token

from ospool_ep.findings import Findings
from ospool_ep.inputs import tokens
from ospool_ep.inputs.tokens import Token, TokenError, install_tokens, load_tokens, parse_token

MIB = 1 << 20
PILOT_UID = 1000
"""The image's pilot uid: under root, permission checks run with this effective uid."""
MALFORMED_FIX = (
    "the file must hold the token exactly as the OSPool Token Registry issued it, "
    "one token per line; get a new one if it was truncated or edited"
)
MOUNT_FIX = "mount the token file from the OSPool Token Registry here"
CLAIMS = "iss=flock.opensciencegrid.org, sub=site-ep@flock.opensciencegrid.org, kid=POOL"


def lines(token_dir: Path, env: str | None = None) -> list[str]:
    findings = Findings()
    load_tokens(token_dir=token_dir, token_env=env, now=NOW, findings=findings)
    return [f.as_line() for f in findings]


def read_fix(path: Path) -> str:
    uid = os.geteuid()
    return f"make it readable by the pilot's uid {uid}, e.g. chown {uid} {path}; chmod 0400 {path}"


@contextmanager
def pilot_uid() -> Iterator[int]:
    """Run the block with an effective uid that file modes apply to (root reads anything)."""
    if os.geteuid() != 0:
        yield os.geteuid()
        return
    os.seteuid(PILOT_UID)
    try:
        yield PILOT_UID
    finally:
        os.seteuid(0)


@pytest.fixture
def traversable() -> Iterator[Path]:
    """A directory the pilot uid can reach (pytest's tmp_path sits under a 0700 directory)."""
    with tempfile.TemporaryDirectory(prefix="ospool-ep-token-contract-") as name:
        base = Path(name)
        base.chmod(0o755)
        yield base


# --- the directory scan: every kind of entry, in name order ------------------------------


@pytest.fixture
def every_kind(tmp_path: Path) -> Path:
    """One entry of each kind a token directory can hold, sorted before a good token."""
    d = tmp_path / "tokens-orig.d"
    d.mkdir()
    (d / "a-comments").write_text("# paste the token here\n")
    (d / "b-dir").mkdir()
    os.mkfifo(d / "c-fifo")
    (d / "d-loop").symlink_to("d-loop")
    (d / "e-broken").symlink_to(tmp_path / "gone")
    (d / "f-lines").write_text(f"not-a-token\n{token()}\n")
    (d / "g-binary").write_bytes(b"\xff\xfe binary")
    (d / "h-nul").write_bytes(b"abc\x00def")
    (d / "i-big").write_bytes(b"#" * (MIB + 1))
    (d / "j-expired").write_text(token(exp=NOW - DAY, scope="condor:/READ"))
    (d / "z-good").write_text(token(exp=NOW + 3 * DAY))
    return d


def test_every_kind_of_bad_entry_is_reported_on_its_own_line_and_the_scan_goes_on(
    every_kind: Path,
) -> None:
    """One finding per entry, naming the entry and its fix; no bad entry hides the next."""
    d = every_kind
    assert lines(d) == [
        f"FAIL  token file a-comments: contains no token -- {MALFORMED_FIX}",
        f"WARN  token file b-dir: {d}/b-dir is a directory, not a token file; ignored -- mount "
        "the token file, not a directory (docker -v creates an empty directory when the host "
        "path does not exist)",
        f"WARN  token file c-fifo: {d}/c-fifo is not a regular file; ignored",
        f"FAIL  token file d-loop: cannot read {d}/d-loop: {os.strerror(errno.ELOOP)} -- "
        + read_fix(d / "d-loop"),
        f"FAIL  token file e-broken: {d}/e-broken is a symbolic link to a file that does not "
        "exist -- mount the token file itself, or fix the link",
        "FAIL  token file f-lines line 1: malformed token: not a JWT: expected three base64url "
        f"segments separated by '.', found 1 -- {MALFORMED_FIX}",
        f"PASS  token file f-lines line 2: {CLAIMS}, exp=2026-12-20T14:13:20Z",
        f"FAIL  token file g-binary: {d}/g-binary is not a text file (binary or not UTF-8) -- "
        + MOUNT_FIX,
        f"FAIL  token file h-nul: {d}/h-nul is not a text file (binary or not UTF-8) -- "
        + MOUNT_FIX,
        f"FAIL  token file i-big: {d}/i-big is larger than 1048576 bytes: not a token file -- "
        + MOUNT_FIX,
        f"FAIL  token file j-expired: expired at 2026-09-20T14:13:20Z ({CLAIMS}, "
        "exp=2026-09-20T14:13:20Z) -- get a new token from the OSPool Token Registry",
        "FAIL  token file j-expired: its scope lacks condor:/ADVERTISE_STARTD, "
        f"condor:/ADVERTISE_MASTER, which a startd pilot needs ({CLAIMS}, "
        "exp=2026-09-20T14:13:20Z) -- get a new token from the OSPool Token Registry, issued "
        "for an execution point",
        f"WARN  token file z-good: expires in 3 days 0 hours ({CLAIMS}, "
        "exp=2026-09-24T14:13:20Z); the pilot retires before then -- get a new token from the "
        "OSPool Token Registry before it expires",
    ]


def test_the_scan_counts_every_candidate_file_but_not_directories_or_fifos(
    every_kind: Path,
) -> None:
    """``_load_dir`` returns how many candidate token files it saw (broken ones included);
    "no token found" is reported only when that is zero."""
    count = tokens._load_dir(every_kind, now=NOW, findings=Findings(), tokens=[])
    assert count == 9


def test_only_a_directory_with_no_candidate_file_and_no_variable_finds_no_token(
    tmp_path: Path,
) -> None:
    d = tmp_path / "tokens-orig.d"
    d.mkdir()
    (d / "a-broken").symlink_to(tmp_path / "gone")
    (d / "b-good").write_text(token())
    assert len(lines(d)) == 2  # the broken link and the PASS; no "no token found"
    (d / "a-broken").unlink()
    (d / "b-good").unlink()
    (d / "sub").mkdir()
    assert lines(d)[-1] == (
        f"FAIL  token: no token found: {d} has no token file and TOKEN is not set -- "
        f"mount one at {d}/flock.opensciencegrid.org or set TOKEN"
    )


def test_a_missing_token_directory_without_the_variable_says_where_to_mount(
    tmp_path: Path,
) -> None:
    d = tmp_path / "absent"
    assert lines(d) == [
        f"FAIL  token: no token found: {d} does not exist and TOKEN is not set -- "
        f"mount one at {d}/flock.opensciencegrid.org or set TOKEN"
    ]


def test_a_token_file_mounted_at_the_directory_path_says_where_it_belongs(tmp_path: Path) -> None:
    d = tmp_path / "tokens-orig.d"
    d.write_text(token())
    assert lines(d) == [
        f"FAIL  token: {d} is a file, not a directory -- mount the token file at "
        f"{d}/flock.opensciencegrid.org, not at {d}"
    ]


def test_tokens_of_two_issuers_warn_naming_both_and_what_to_keep(tmp_path: Path) -> None:
    d = tmp_path / "tokens-orig.d"
    d.mkdir()
    (d / "a").write_text(token(iss="one.example"))
    (d / "b").write_text(token(iss="two.example"))
    assert lines(d)[-1] == (
        "WARN  tokens: the tokens name different issuers (trust domains): one.example, "
        "two.example; HTCondor presents a token only to a pool whose trust domain is its "
        "issuer -- keep only the tokens for the pool this pilot joins"
    )


# --- permissions, with an effective uid that modes apply to ------------------------------


def test_an_unreadable_token_file_names_the_uid_and_the_commands_that_fix_it(
    traversable: Path,
) -> None:
    d = traversable / "tokens-orig.d"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    path = d / "flock.opensciencegrid.org"
    path.write_text(token())
    path.chmod(0o000)
    with pilot_uid() as uid:
        found = lines(d)
    assert found == [
        f"FAIL  token file flock.opensciencegrid.org: cannot read {path}: permission denied -- "
        f"make it readable by the pilot's uid {uid}, e.g. chown {uid} {path}; chmod 0400 {path}"
    ]


def test_an_unlistable_token_directory_names_the_uid_that_must_list_it(
    traversable: Path,
) -> None:
    d = traversable / "tokens-orig.d"
    d.mkdir()
    d.chmod(0o300)
    try:
        with pilot_uid() as uid:
            found = lines(d)
    finally:
        d.chmod(0o700)
    assert found == [
        f"FAIL  token: cannot list {d}: permission denied -- "
        f"make it readable and searchable by uid {uid}"
    ]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (OSError(), "OSError"),
    ],
)
def test_a_read_error_is_named_in_plain_words(error: OSError, reason: str) -> None:
    assert tokens._reason(error) == reason


# --- the file reader on its own ----------------------------------------------------------


def read(path: Path) -> tuple[str | None, list[str]]:
    findings = Findings()
    text = tokens._read_text(path, subject="token file x", findings=findings)
    return text, [f.as_line() for f in findings]


def test_the_reader_opens_a_fifo_without_blocking_and_ignores_it(tmp_path: Path) -> None:
    """A FIFO swapped in after the directory scan's stat must not hang the pilot."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Should the open block, a reader-and-writer open of the FIFO releases it after 2 s.
    release = threading.Timer(2.0, lambda: os.close(os.open(fifo, os.O_RDWR)))
    release.start()
    started = time.monotonic()
    try:
        text, found = read(fifo)
    finally:
        release.cancel()
        release.join()
    assert time.monotonic() - started < 1.5
    assert (text, found) == (None, [f"WARN  token file x: {fifo} is not a regular file; ignored"])


def test_the_reader_reports_a_file_it_cannot_open(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    assert read(loop) == (
        None,
        [f"FAIL  token file x: cannot read {loop}: {os.strerror(errno.ELOOP)} -- {read_fix(loop)}"],
    )


def test_the_reader_reports_a_file_it_opened_but_cannot_read() -> None:
    """``/proc/self/mem`` is a regular file whose offset 0 is unmapped: read fails (EIO)."""
    mem = Path("/proc/self/mem")
    assert read(mem) == (
        None,
        [f"FAIL  token file x: cannot read {mem}: {os.strerror(errno.EIO)} -- {read_fix(mem)}"],
    )


def bytes_read() -> int:
    """This process's ``rchar``: every byte its read calls returned (proc(5))."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_huge_file_is_read_only_to_one_byte_past_its_first_mib(tmp_path: Path) -> None:
    """A wrong mount (a disk image) is refused after 1 MiB + 1 byte, not read whole."""
    huge = tmp_path / "huge"
    with huge.open("wb") as stream:
        stream.truncate(64 * MIB)  # sparse: no disk space used
    before = bytes_read()
    text, found = read(huge)
    assert bytes_read() - before < MIB + 64 * 1024
    assert text is None
    assert found == [
        f"FAIL  token file x: {huge} is larger than 1048576 bytes: not a token file -- {MOUNT_FIX}"
    ]


def test_the_read_bound_holds_when_the_file_comes_in_short_pieces() -> None:
    """procfs returns a page per read, as network filesystems may: the bound still holds."""
    kallsyms = Path("/proc/kallsyms")
    if not os.access(kallsyms, os.R_OK) or len(kallsyms.read_bytes()) < 2 * MIB:
        pytest.skip("needs a readable /proc/kallsyms over 2 MiB to read in short pieces")
    before = bytes_read()
    text, _ = read(kallsyms)
    assert bytes_read() - before < MIB + 64 * 1024
    assert text is None


def test_a_file_read_in_short_pieces_is_put_back_together_unchanged() -> None:
    """``/proc/self/smaps`` comes one page per read; every line of it survives whole."""
    text, found = read(Path("/proc/self/smaps"))
    assert found == []
    assert text is not None
    assert len(text) > 3 * 4096, "smaps should span several reads"
    record = re.compile(r"[0-9a-f]+-[0-9a-f]+ |[A-Za-z_]+:")
    assert all(record.match(line) for line in text.splitlines())


# --- parsing: the messages a malformed token gets ----------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('""', "enclosed in quotes, which are not part of a token; remove them"),
        ("''", "enclosed in quotes, which are not part of a token; remove them"),
        ('"abc', "not a JWT: expected three base64url segments separated by '.', found 1"),
        ("XabcX", "not a JWT: expected three base64url segments separated by '.', found 1"),
        (token(sub=DROP, jti=DROP), "the payload has neither 'sub' nor 'jti'"),
    ],
    ids=["empty double quotes", "empty single quotes", "one quote", "X...X", "no sub, no jti"],
)
def test_a_malformed_token_gets_exactly_its_message(text: str, message: str) -> None:
    with pytest.raises(TokenError) as raised:
        parse_token(text, source="x")
    assert str(raised.value) == message


def test_a_four_character_signature_segment_is_valid_base64url() -> None:
    head, body, _ = token().split(".")
    assert parse_token(f"{head}.{body}.AAAA", source="x").kid == "POOL"


@pytest.mark.parametrize(
    ("value", "shown"),
    [("é" * 200, "é" * 200), ("\n" + "x" * 198, "\\n" + "x" * 198)],
    ids=["200 printable non-ASCII", "escaped to exactly 200"],
)
def test_printable_claims_are_shown_as_they_are_and_200_escaped_characters_need_no_dots(
    value: str, shown: str
) -> None:
    assert tokens._shown(value) == shown


def test_times_are_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    try:
        assert tokens.format_time(0) == "1970-01-01T00:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


# --- installing: no moment where a token is exposed ---------------------------------------


def test_a_token_being_written_shows_only_as_a_dot_file_in_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTCondor ignores dot-files: a pilot killed mid-write leaves nothing it would read."""
    dest = tmp_path / "tokens.d"
    seen: list[list[str]] = []
    real_fsync = os.fsync

    def fsync_seeing_dest(fd: int) -> None:
        seen.append(sorted(p.name for p in dest.iterdir()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_seeing_dest)
    install_tokens([parse_token(token(), source="a")], dest=dest)
    (during,) = seen
    assert len(during) == 1
    assert during[0].startswith(".tmp-")


def test_the_token_directory_is_private_from_the_moment_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created 0700 even under umask 000, before the chmod that fixes an existing one."""
    dest = tmp_path / "tokens.d"
    modes: list[int] = []
    real_chmod = os.chmod

    def chmod_seeing_mode(path: object, mode: int, **kwargs: object) -> None:
        if Path(str(path)) == dest:
            modes.append(stat.S_IMODE(dest.stat().st_mode))
        real_chmod(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chmod", chmod_seeing_mode)
    previous = os.umask(0)
    try:
        install_tokens([parse_token(token(), source="a")], dest=dest)
    finally:
        os.umask(previous)
    assert modes == [0o700]


def test_a_failed_write_leaves_no_file_behind_and_raises_its_own_error(tmp_path: Path) -> None:
    """Token text is ASCII; anything else fails the write, and the temporary is removed."""
    dest = tmp_path / "tokens.d"
    bad = Token(
        source="a", text="é", kid="POOL", iss="x", sub="s", jti=None, iat=0, exp=None, scopes=None
    )
    with pytest.raises(UnicodeEncodeError):
        install_tokens([bad], dest=dest)
    assert list(dest.iterdir()) == []


def test_a_stale_symlink_to_a_directory_is_removed_on_reinstall(tmp_path: Path) -> None:
    """Only real subdirectories are kept; a link is an entry like a file."""
    dest = tmp_path / "tokens.d"
    dest.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (dest / "link").symlink_to(tmp_path / "elsewhere")
    install_tokens([parse_token(token(), source="a")], dest=dest)
    assert [p.name for p in dest.iterdir()] == ["a"]
