"""IDTOKENs: reading, checking and privately installing the pilot's pool tokens (SPEC 5.1).

A token is a JWT the OSPool Token Registry signed with the pool's key. There is
no key here, so the signature is not verified: the checks catch what an admin
can get wrong (a truncated paste, a token for another pool, an expired or
under-scoped token, an unreadable mount) before HTCondor would fail silently.

The token text is a secret. It is kept only in :attr:`Token.text`, which no
repr, finding, exception message or log line ever contains.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ospool_ep.findings import Findings

REQUIRED_SCOPES = ("condor:/READ", "condor:/ADVERTISE_STARTD", "condor:/ADVERTISE_MASTER")
"""What a startd pilot must be allowed to do; a token without a ``scope`` claim may do all."""

EXPIRY_WARNING_SECONDS = 7 * 24 * 3600
"""A token expiring within this many seconds (7 days) is reported as a WARN."""

CANONICAL_FILE_NAME = "flock.opensciencegrid.org"
"""The file name OSG's documentation tells sites to mount the token under."""

ENV_NAME = "TOKEN"

_MAX_FILE_BYTES = 1 << 20
"""A token is about a kilobyte; anything past this is not a token file (a wrong mount)."""

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# HTCondor skips files in its credential directories that match
# LOCAL_CONFIG_DIR_EXCLUDE_REGEXP (default: dotfiles, *~, #*, *.rpmsave, *.rpmnew),
# so installed names must not look like that.
_EXCLUDED_SUFFIXES = (".rpmsave", ".rpmnew")
_MAX_NAME_LENGTH = 200
_MAX_SHOWN_LENGTH = 200

_REGISTRY_FIX = "get a new token from the OSPool Token Registry"
_MALFORMED_FIX = (
    "the file must hold the token exactly as the OSPool Token Registry issued it, "
    "one token per line; get a new one if it was truncated or edited"
)


class TokenError(ValueError):
    """A token is malformed. The message names the problem, never the token's text."""


@dataclass(frozen=True, slots=True)
class Token:
    """One parsed IDTOKEN and the claims the pilot reports and relies on."""

    source: str
    """Where it came from: the file name (``flock.opensciencegrid.org``), or ``TOKEN``;
    ``"<name> line <n>"`` when its file or the variable holds several tokens."""
    text: str = field(repr=False)
    """The JWT itself. Secret: only ever written into the private token directory."""
    kid: str
    """The signing key's name on the central manager (usually ``POOL``)."""
    iss: str
    """The issuer: the pool's trust domain."""
    sub: str | None
    """The identity the token authenticates as."""
    jti: str | None
    """The token's unique id, which the registry can revoke."""
    iat: int
    """Issued at, Unix seconds."""
    exp: int | None
    """Expires at, Unix seconds; None if it never expires."""
    scopes: tuple[str, ...] | None
    """The authorizations it is limited to; None when it has no ``scope`` claim (all rights)."""
    from_env: bool = False
    """True when it came from the ``TOKEN`` variable rather than a file."""

    @property
    def label(self) -> str:
        """``file <name>`` or ``TOKEN``: how reports name where the token came from."""
        return self.source if self.from_env else f"file {self.source}"

    def claims(self) -> str:
        """The claims an admin recognises a token by: ``iss=..., sub=..., kid=..., exp=...``."""
        identity = f"sub={_shown(self.sub)}" if self.sub is not None else f"jti={_shown(self.jti)}"
        expiry = format_time(self.exp) if self.exp is not None else "never"
        return f"iss={_shown(self.iss)}, {identity}, kid={_shown(self.kid)}, exp={expiry}"

    def describe(self) -> str:
        """``file flock.opensciencegrid.org: iss=..., sub=..., kid=..., exp=...Z``; no secret."""
        return f"{self.label}: {self.claims()}"


def format_time(timestamp: int) -> str:
    """Unix seconds as UTC ISO 8601, e.g. ``2026-11-21T04:47:00Z``."""
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{timestamp} (out of range)"


def parse_token(text: str, *, source: str, from_env: bool = False) -> Token:
    """Decode one JWT line into a :class:`Token`; raise :class:`TokenError` if malformed."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        # docker --env-file and systemd EnvironmentFile= keep quotes literally.
        raise TokenError("enclosed in quotes, which are not part of a token; remove them")
    segments = text.split(".")
    if len(segments) != 3:
        raise TokenError(
            f"not a JWT: expected three base64url segments separated by '.', found {len(segments)}"
        )
    header = _json_object(segments[0], "header")
    payload = _json_object(segments[1], "payload")
    _base64url_decode(segments[2], "signature")

    _required_str(header, "alg", "header")
    kid = _required_str(header, "kid", "header")
    iss = _required_str(payload, "iss", "payload")
    iat = _required_int(payload, "iat")
    sub = _optional_str(payload, "sub")
    jti = _optional_str(payload, "jti")
    if sub is None and jti is None:
        raise TokenError("the payload has neither 'sub' nor 'jti'")
    exp = _optional_int(payload, "exp")
    scope = _optional_str(payload, "scope")
    scopes = tuple(scope.split()) if scope is not None else None
    # The locals are named and ordered as Token's fields.
    return Token(source, text, kid, iss, sub, jti, iat, exp, scopes, from_env)


def load_tokens(
    *, token_dir: Path, token_env: str | None, now: float, findings: Findings
) -> list[Token]:
    """Read and check every token in ``token_dir`` and ``TOKEN``; return the valid ones.

    Every problem becomes a finding (SPEC 5.1); nothing is raised for bad input.
    """
    tokens: list[Token] = []
    env_text = token_env if token_env and token_env.strip() else None
    if token_dir.exists():
        files_seen = _load_dir(token_dir, now=now, findings=findings, tokens=tokens)
        if files_seen == 0 and env_text is None:
            findings.fail(
                "token",
                f"no token found: {token_dir} has no token file and {ENV_NAME} is not set",
                f"mount one at {token_dir / CANONICAL_FILE_NAME} or set {ENV_NAME}",
            )
    elif env_text is None:
        findings.fail(
            "token",
            f"no token found: {token_dir} does not exist and {ENV_NAME} is not set",
            f"mount one at {token_dir / CANONICAL_FILE_NAME} or set {ENV_NAME}",
        )
    if env_text is not None:
        _load_lines(env_text, name=ENV_NAME, from_env=True, now=now, findings=findings, into=tokens)

    issuers = sorted({t.iss for t in tokens})
    if len(issuers) > 1:
        findings.warn(
            "tokens",
            "the tokens name different issuers (trust domains): "
            + ", ".join(_shown(i) for i in issuers)
            + "; HTCondor presents a token only to a pool whose trust domain is its issuer",
            "keep only the tokens for the pool this pilot joins",
        )
    return tokens


def earliest_expiry(tokens: Sequence[Token]) -> int | None:
    """The soonest ``exp`` among ``tokens``, or None if none of them expires."""
    return min((t.exp for t in tokens if t.exp is not None), default=None)


def install_tokens(tokens: Sequence[Token], *, dest: Path) -> list[Path]:
    """Write each token into ``dest`` privately and remove files no longer installed.

    HTCondor silently skips token files that others can read or that another
    uid owns, so ``dest`` is made mode 0700 and each file is created 0600 by
    the running uid, then renamed into place: no moment exists where it is
    readable by others or half written. Raises OSError if that is impossible
    (``dest`` owned by another uid, disk full): the pilot cannot run then.
    """
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is masked by the umask and not applied to an existing directory.
    dest.chmod(0o700)
    names = _install_names([t.source for t in tokens])
    paths = []
    for token, name in zip(tokens, names, strict=True):
        path = dest / name
        _write_private(path, token.text + "\n")
        paths.append(path)
    keep = set(names)
    with os.scandir(dest) as entries:
        stale = [
            e.path for e in entries if e.name not in keep and not e.is_dir(follow_symlinks=False)
        ]
    for path_name in stale:
        Path(path_name).unlink(missing_ok=True)
    return paths


def _load_dir(
    token_dir: Path, *, now: float, findings: Findings, tokens: list[Token]
) -> int | None:
    """Load every token file of ``token_dir`` into ``tokens``.

    Returns how many candidate files it held, or None if the directory itself
    could not be read (already reported).
    """
    try:
        names = sorted(entry.name for entry in token_dir.iterdir())
    except NotADirectoryError:
        findings.fail(
            "token",
            f"{token_dir} is a file, not a directory",
            f"mount the token file at {token_dir / CANONICAL_FILE_NAME}, not at {token_dir}",
        )
        return None
    except OSError as error:
        findings.fail(
            "token",
            f"cannot list {token_dir}: {_reason(error)}",
            f"make it readable and searchable by uid {os.geteuid()}",
        )
        return None

    files_seen = 0
    for name in names:
        # Kubernetes Secret volumes add hidden "..data" and "..<timestamp>" entries;
        # the visible names are symlinks through them, which os.stat follows.
        if name.startswith("."):
            continue
        path = token_dir / name
        subject = f"token file {name}"
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            findings.fail(
                subject,
                f"{path} is a symbolic link to a file that does not exist",
                "mount the token file itself, or fix the link",
            )
            files_seen += 1
            continue
        except OSError as error:
            findings.fail(subject, f"cannot read {path}: {_reason(error)}", _read_fix(path))
            files_seen += 1
            continue
        if stat.S_ISDIR(mode):
            findings.warn(
                subject,
                f"{path} is a directory, not a token file; ignored",
                "mount the token file, not a directory (docker -v creates an empty "
                "directory when the host path does not exist)",
            )
            continue
        if not stat.S_ISREG(mode):
            findings.warn(subject, f"{path} is not a regular file; ignored")
            continue
        files_seen += 1
        content = _read_text(path, subject=subject, findings=findings)
        if content is not None:
            _load_lines(content, name=name, from_env=False, now=now, findings=findings, into=tokens)
    return files_seen


def _read_text(path: Path, *, subject: str, findings: Findings) -> str | None:
    """The file's text, or None after reporting why it cannot be a token file."""
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat must not hang the pilot.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        findings.fail(subject, f"cannot read {path}: {_reason(error)}", _read_fix(path))
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            findings.warn(subject, f"{path} is not a regular file; ignored")
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_FILE_BYTES:
            chunk = os.read(fd, _MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as error:
        findings.fail(subject, f"cannot read {path}: {_reason(error)}", _read_fix(path))
        return None
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE_BYTES:
        findings.fail(
            subject,
            f"{path} is larger than {_MAX_FILE_BYTES} bytes: not a token file",
            "mount the token file from the OSPool Token Registry here",
        )
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        findings.fail(
            subject,
            f"{path} is not a text file (binary or not UTF-8)",
            "mount the token file from the OSPool Token Registry here",
        )
        return None
    return text


def _load_lines(
    content: str,
    *,
    name: str,
    from_env: bool,
    now: float,
    findings: Findings,
    into: list[Token],
) -> None:
    """Parse and check each token line of one file or of ``TOKEN``."""
    lines = list(_token_lines(content))
    label = name if from_env else f"token file {name}"
    if not lines:
        findings.fail(label, "contains no token", _MALFORMED_FIX)
        return
    for number, line in lines:
        source = f"{name} line {number}" if len(lines) > 1 else name
        subject = f"{label} line {number}" if len(lines) > 1 else label
        try:
            token = parse_token(line, source=source, from_env=from_env)
        except TokenError as error:
            findings.fail(subject, f"malformed token: {error}", _MALFORMED_FIX)
            continue
        if _check(token, subject=subject, now=now, findings=findings):
            into.append(token)


def _token_lines(content: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that is neither blank nor a ``#`` comment."""
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _check(token: Token, *, subject: str, now: float, findings: Findings) -> bool:
    """Report the token's expiry and scopes; True if the pilot can use it."""
    usable = True
    if token.exp is not None and token.exp <= now:
        findings.fail(
            subject,
            f"expired at {format_time(token.exp)} ({token.claims()})",
            _REGISTRY_FIX,
        )
        usable = False
    if token.scopes is not None:
        missing = [s for s in REQUIRED_SCOPES if s not in token.scopes]
        if missing:
            findings.fail(
                subject,
                f"its scope lacks {', '.join(missing)}, which a startd pilot needs "
                f"({token.claims()})",
                f"{_REGISTRY_FIX}, issued for an execution point",
            )
            usable = False
    if not usable:
        return False
    if token.exp is not None and token.exp - now < EXPIRY_WARNING_SECONDS:
        findings.warn(
            subject,
            f"expires in {_duration(token.exp - now)} ({token.claims()}); "
            "the pilot retires before then",
            f"{_REGISTRY_FIX} before it expires",
        )
    else:
        findings.passed(subject, token.claims())
    return True


def _install_names(sources: Sequence[str]) -> list[str]:
    """A unique, HTCondor-safe file name for each source, in order."""
    names: list[str] = []
    used: set[str] = set()
    for source in sources:
        base = _UNSAFE_NAME_CHARS.sub("_", source)[:_MAX_NAME_LENGTH] or "token"
        if base.startswith("."):
            base = "_" + base
        if base.endswith(_EXCLUDED_SUFFIXES):
            base += "_"
        name = base
        counter = 2
        while name in used:
            name = f"{base}-{counter}"
            counter += 1
        used.add(name)
        names.append(name)
    return names


def _write_private(path: Path, content: str) -> None:
    """Atomically replace ``path`` with ``content``, mode 0600, owned by the running uid."""
    # The temporary name starts with '.', which HTCondor ignores if one is left behind.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json_object(segment: str, part: str) -> dict[str, object]:
    raw = _base64url_decode(segment, part)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenError(f"the {part} is not valid JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"the {part} is not a JSON object")
    return value


def _base64url_decode(segment: str, part: str) -> bytes:
    # JWTs drop base64's '=' padding (RFC 7515, section 2); a length of 1 mod 4
    # can never be valid base64.
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise TokenError(f"the {part} segment is not valid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(f"the {part} segment is not valid base64url") from None


def _required_str(claims: dict[str, object], key: str, part: str) -> str:
    value = claims.get(key)
    if value is None:
        raise TokenError(f"the {part} has no '{key}'")
    if not isinstance(value, str) or not value:
        raise TokenError(f"the {part}'s '{key}' is not a non-empty string")
    return value


def _optional_str(claims: dict[str, object], key: str) -> str | None:
    value = claims.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenError(f"the payload's '{key}' is not a string")
    return value


def _required_int(claims: dict[str, object], key: str) -> int:
    value = claims.get(key)
    if value is None:
        raise TokenError(f"the payload has no '{key}'")
    return _timestamp(value, key)


def _optional_int(claims: dict[str, object], key: str) -> int | None:
    value = claims.get(key)
    return None if value is None else _timestamp(value, key)


def _timestamp(value: object, key: str) -> int:
    # bool is an int subclass in Python; JSON true is not a timestamp.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(f"the payload's '{key}' is not an integer timestamp")
    return value


def _shown(value: str | None) -> str:
    """A claim value safe to print on one report line."""
    if value is None:
        return "-"
    if value.isprintable() and len(value) <= _MAX_SHOWN_LENGTH:
        return value
    escaped = value.encode("unicode_escape").decode("ascii")
    return escaped[:_MAX_SHOWN_LENGTH] + ("..." if len(escaped) > _MAX_SHOWN_LENGTH else "")


def _duration(seconds: float) -> str:
    """``2 days 3 hours``, ``5 hours 1 minute``, ``0 minutes``: two units at most."""
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{_count(days, 'day')} {_count(hours, 'hour')}"
    if hours:
        return f"{_count(hours, 'hour')} {_count(minutes, 'minute')}"
    return _count(minutes, "minute")


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def _reason(error: OSError) -> str:
    if error.errno == errno.EACCES:
        return "permission denied"
    return error.strerror or type(error).__name__


def _read_fix(path: Path) -> str:
    uid = os.geteuid()
    return f"make it readable by the pilot's uid {uid}, e.g. chown {uid} {path}; chmod 0400 {path}"
