"""The host's config file ``/etc/osg/ospool-ep.cfg``: strict KEY=VALUE -> :class:`LaunchConfig`.

What belongs here: the file's syntax, each value checked by its key's row
in :mod:`launch_keys`, and the checks between keys. Parsing is pure: text in,
config and problems out; every problem of the file is collected and reported
at once, each naming ``file:line`` (SPEC 11). Facts about the host (does the
token file exist, who can read it) are checked by :mod:`launch_host`.

The file is never read by a shell (upstream's was passed to ``docker
--env-file``, which expands nothing either): anything that only a shell would
give meaning to is an error rather than a silent literal.

Standard library only and Python 3.9 compatible (the host's ``python3``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ospool_ep.findings import Finding, Status
from ospool_ep.host.keys import (
    DEFAULT_CONTAINER_NAME,
    DEFAULT_GRACE_SECONDS,
    KEYS_BY_NAME,
    Role,
)
from ospool_ep.inputs import values
from ospool_ep.inputs.variables import VARIABLES, WALLTIME_FIX, walltime_conflict

DEFAULT_CONFIG = PurePosixPath("/etc/osg/ospool-ep.cfg")


_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONDOR_KNOB = re.compile(r"_CONDOR_[A-Za-z0-9_.]+")
# What only a shell would act on: command substitution, variable expansion.
_EXPANSION = re.compile(r"\$\(|\$\{|\$[A-Za-z_]|`")
# Shell control operators and redirections, meaningful only unquoted.
_OPERATOR = re.compile(r"[;&|<>]")
# extra args an admin may not override: the launcher owns them (identity,
# environment, naming, foreground supervision by systemd).
_OWNED_OPTIONS = frozenset(
    {"-e", "--env", "--env-file", "--name", "-u", "--user", "-d", "--detach", "--entrypoint"}
)


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class LaunchConfig:
    """The validated file. Host paths are as written; pilot values as written (stripped)."""

    source: str
    entries: Mapping[str, Entry]
    problems: tuple[Finding, ...] = ()
    invalid: frozenset[str] = frozenset()
    """Keys whose values failed their check (host checks skip them)."""

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        return entry.value if entry is not None else None

    def where(self, key: str) -> str:
        """``file:line`` of the key's line, for messages; the key when it is not set."""
        entry = self.entries.get(key)
        return f"{self.source}:{entry.line}" if entry is not None else key

    def flag(self, key: str) -> bool:
        """A boolean key (upstream's words: true, yes, on, 1, ...); unset is false."""
        return (self.get(key) or "").lower() in values.TRUE_WORDS

    def integer(self, key: str, default: int) -> int:
        """A whole-number key; ``default`` when unset or invalid (the latter is a FAIL already)."""
        value = self.get(key) or ""
        return int(value) if re.fullmatch(r"[+-]?\d+", value) else default

    @property
    def failed(self) -> bool:
        return any(p.status is Status.FAIL for p in self.problems)

    def pilot_variables(self) -> list[tuple[str, str, bool]]:
        """``(name, value, secret)`` for every pilot variable set, in file order."""
        out: list[tuple[str, str, bool]] = []
        for entry in sorted(self.entries.values(), key=lambda e: e.line):
            key = KEYS_BY_NAME.get(entry.key)
            if key is not None and key.role in (Role.PILOT, Role.PILOT_SECRET):
                out.append((entry.key, entry.value, key.role == Role.PILOT_SECRET))
            elif _CONDOR_KNOB.fullmatch(entry.key):
                out.append((entry.key, entry.value, False))
        return out

    def extra_args(self) -> list[str]:
        return (self.get("CONTAINER_EXTRA_ARGS") or "").split()


# ---------------------------------------------------------------------------
# The file's syntax


@dataclass
class _Reader:
    source: str
    problems: list[Finding] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)

    def fail(self, line: int | None, message: str, fix: str = "") -> None:
        where = f"{self.source}:{line}" if line else self.source
        self.problems.append(Finding(where, Status.FAIL, message, fix))

    def warn(self, line: int | None, message: str, fix: str = "") -> None:
        where = f"{self.source}:{line}" if line else self.source
        self.problems.append(Finding(where, Status.WARN, message, fix))


def parse_config(data: bytes | str, *, source: str) -> LaunchConfig:
    """Parse and validate the file's contents; ``source`` names it in messages."""
    reader = _Reader(source)
    entries: dict[str, Entry] = {}
    for number, raw in enumerate(_lines(data, reader), start=1):
        entry = _parse_line(raw, number, reader)
        if entry is None:
            continue
        first = entries.get(entry.key)
        if first is not None:
            reader.fail(
                number,
                f"{entry.key} is set again (first at line {first.line})",
                f"keep one of lines {first.line} and {number}",
            )
            continue
        entries[entry.key] = entry
    _check_keys(entries, reader)
    _check_combinations(entries, reader)
    # An empty value means "not set" (upstream's file ships empty placeholders).
    set_entries = {k: e for k, e in entries.items() if e.value != ""}
    return LaunchConfig(source, set_entries, tuple(reader.problems), frozenset(reader.invalid))


def _lines(data: bytes | str, reader: _Reader) -> Iterable[str | None]:
    """Each line's text, or None for one that could not be decoded (reported)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM some editors write; harmless
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]  # noqa: PLW2901 - a file edited on Windows
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            reader.fail(number, "is not valid UTF-8", "save the file as UTF-8 text")
            yield None


@dataclass(frozen=True)
class _Why:
    """What is wrong with a line, and the fix."""

    message: str
    fix: str


def _parse_line(raw: str | None, number: int, reader: _Reader) -> Entry | None:
    """One line -> an Entry; None for comments, blank and bad lines (the latter reported)."""
    text = (raw or "").strip()
    # '#' comments, and ';' ones as systemd's EnvironmentFile= reads them.
    if raw is None or not text or text.startswith(("#", ";")):
        return None
    split = _split(raw, text)
    if isinstance(split, _Why):
        reader.fail(number, split.message, split.fix)
        return None
    key, rest = split
    value = _unquote(rest.strip(), key)
    if isinstance(value, _Why):
        reader.fail(number, value.message, value.fix)
        return None
    return Entry(key, value, number)


def _split(raw: str, text: str) -> tuple[str, str] | _Why:
    """``(key, rest)``, or why the line is no ``KEY=VALUE``."""
    head, sep, rest = text.partition("=")
    key = head.strip()
    why: _Why | None = None
    if values.has_control(raw.replace("\t", " ")):
        why = _Why("contains a control character", "remove it")
    elif text.endswith("\\"):
        why = _Why("ends with '\\': continued lines are not supported", "join the lines")
    elif key.startswith("export ") or key == "export":
        fixed = key[len("export") :].strip() or "KEY"
        why = _Why("starts with 'export': this file is not a shell script", f"write {fixed}=VALUE")
    elif not sep:
        why = _Why(f"{values.shown(text)} is not KEY=VALUE", "write KEY=VALUE, or # a comment")
    elif not _KEY_NAME.fullmatch(key):
        why = _Why(
            f"{values.shown(key)} is not a key name",
            "keys are letters, digits and '_' (e.g. GLIDEIN_Site), with no spaces",
        )
    return why if why is not None else (key, rest)


def _unquote(text: str, key: str) -> str | _Why:
    """The value without one pair of matching outer quotes, or why it is malformed."""
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'"
    value = text[1:-1] if quoted else text
    why = _quoting_problem(text, value, key, quoted=quoted) or _shell_problem(
        value, key, quoted=quoted
    )
    return why if why is not None else value


def _quoting_problem(text: str, value: str, key: str, *, quoted: bool) -> _Why | None:
    if not quoted and text[:1] in ("'", '"'):
        return _Why(
            f"{key}: the opening quote does not close at the end of the value",
            f"quote the whole value, e.g. {key}='...'",
        )
    if quoted and text[0] in value:
        kind = "double" if text[0] == '"' else "single"
        return _Why(
            f"{key}: a {kind}-quoted value contains a {kind} quote",
            f"quote it with single quotes instead: {key}='...'"
            if kind == "double"
            else "remove it",
        )
    return None


def _shell_problem(value: str, key: str, *, quoted: bool) -> _Why | None:
    """Things only a shell gives meaning to; the file is never read by one."""
    knob = bool(_CONDOR_KNOB.fullmatch(key))
    spec = KEYS_BY_NAME.get(key)
    expansion = _EXPANSION.search(value)
    # $(MACRO) is HTCondor's own syntax in _CONDOR_ overrides, expanded by HTCondor.
    if expansion and not (knob and "`" not in value):
        return _Why(
            f"{key}: {expansion.group(0)!r} is shell syntax; this file is not read by a shell "
            "and nothing in it is expanded",
            "write the literal value",
        )
    if "\\" in value:
        return _Why(f"{key}: contains a backslash (no escapes are interpreted)", "remove it")
    shell_ok = knob or (spec is not None and spec.shell_chars_ok)
    operator = None if quoted or shell_ok else _OPERATOR.search(value)
    if operator:
        return _Why(
            f"{key}: {operator.group(0)!r} is a shell operator; this file is not run by a shell",
            "remove it, or quote the whole value if it is meant literally",
        )
    if not quoted and re.search(r"\s#", value):
        return _Why(
            f"{key}: ' #' starts no comment here; it would be part of the value",
            "put the comment on a line of its own",
        )
    return None


# ---------------------------------------------------------------------------
# Keys and their values


def _check_keys(entries: Mapping[str, Entry], reader: _Reader) -> None:
    for entry in sorted(entries.values(), key=lambda e: e.line):
        key = KEYS_BY_NAME.get(entry.key)
        if key is None:
            if _CONDOR_KNOB.fullmatch(entry.key):
                _check_value(entry, values.parse_condor_knob_value, reader)
            else:
                _unknown_key(entry, reader)
            continue
        if key.role == Role.REFUSED:
            reader.fail(entry.line, f"{entry.key} is not allowed in this file", key.refusal)
            continue
        if entry.value and key.check is not None:
            _check_value(entry, key.check, reader, lenient=key.lenient)
        if entry.value and key.unheeded is not None and entry.key not in reader.invalid:
            _warn_unheeded(entry, key.unheeded, reader)
    extra = entries.get("CONTAINER_EXTRA_ARGS")
    if extra is not None:
        _check_extra_args(extra, reader)


def _check_value(
    entry: Entry, check: Callable[[str], object], reader: _Reader, *, lenient: bool = False
) -> None:
    try:
        check(entry.value)
    except values.Invalid as problem:
        report = reader.warn if lenient else reader.fail
        report(entry.line, f"{entry.key}: {problem.message}", problem.fix)
        reader.invalid.add(entry.key)


def _warn_unheeded(entry: Entry, unheeded: Callable[[str], str | None], reader: _Reader) -> None:
    message = unheeded(entry.value)
    if message:
        reader.warn(
            entry.line,
            f"{entry.key} {message}",
            "nothing to fix if that is fine; remove the line to silence this",
        )


def _unknown_key(entry: Entry, reader: _Reader) -> None:
    names = sorted(KEYS_BY_NAME)
    by_upper = {name.upper(): name for name in names}
    guess = by_upper.get(entry.key.upper())
    if guess is None:
        close = difflib.get_close_matches(entry.key, names, n=1, cutoff=0.75)
        guess = close[0] if close else None
    hint = f"; did you mean {guess}?" if guess else ""
    reader.warn(
        entry.line,
        f"{entry.key} is not a known key and is ignored{hint}",
        f"rename it to {guess}" if guess else "remove it (see the comments in the shipped file)",
    )


def _check_extra_args(entry: Entry, reader: _Reader) -> None:
    for word in entry.value.split():
        option = word.split("=", 1)[0]
        if option in _OWNED_OPTIONS or (option.startswith("-e") and not option.startswith("--")):
            reader.fail(
                entry.line,
                f"CONTAINER_EXTRA_ARGS: {option} is set by the launcher",
                "put pilot variables in this file as KEY=VALUE; the launcher passes them",
            )
        elif option == "--privileged":
            reader.warn(
                entry.line,
                "CONTAINER_EXTRA_ARGS: --privileged gives jobs the host's devices and "
                "capabilities; the pilot does not need it",
                "remove it unless a site policy requires it",
            )


def _check_combinations(entries: Mapping[str, Entry], reader: _Reader) -> None:
    def value(name: str) -> str:
        entry = entries.get(name)
        return entry.value if entry is not None else ""

    def line(name: str) -> int | None:
        entry = entries.get(name)
        return entry.line if entry is not None else None

    for variable in VARIABLES:
        if variable.required and not value(variable.name):
            reader.fail(
                line(variable.name),
                f"{variable.name} is not set",
                f"set {variable.name}= to your {variable.meaning}",
            )
    bind = value("BIND_MOUNT_CVMFS").lower() in values.TRUE_WORDS
    if bind and value("CVMFSEXEC_REPOS"):
        reader.fail(
            line("CVMFSEXEC_REPOS"),
            f"CVMFSEXEC_REPOS conflicts with BIND_MOUNT_CVMFS=true "
            f"(line {line('BIND_MOUNT_CVMFS')}): CVMFS comes from the host or from "
            "cvmfsexec, not both",
            "unset one of them",
        )
    if bind:
        for name in ("CVMFS_HTTP_PROXY", "CVMFS_QUOTA_LIMIT", *_CVMFSEXEC_MOUNTS):
            if value(name):
                reader.warn(
                    line(name),
                    f"{name} has no effect with BIND_MOUNT_CVMFS=true (the host's CVMFS is used)",
                    "remove it",
                )
    grace = _int_or(value("SHUTDOWN_GRACE_SECONDS"), DEFAULT_GRACE_SECONDS)
    walltime = value("PILOT_WALLTIME")
    if walltime and grace is not None:
        try:
            seconds = values.parse_walltime(walltime)
        except values.Invalid:
            seconds = None
        conflict = walltime_conflict(seconds, grace) if seconds is not None else None
        if conflict:
            reader.fail(line("PILOT_WALLTIME"), f"PILOT_WALLTIME: {conflict}", WALLTIME_FIX)


_CVMFSEXEC_MOUNTS = ("CVMFSEXEC_CACHE_DIR", "CVMFSEXEC_LOGS_DIR", "CVMFSEXEC_LOCAL_CONFIG")


def _int_or(text: str, default: int) -> int | None:
    if not text:
        return default
    return int(text) if re.fullmatch(r"\+?\d+", text) else None


def default_container_name(config_path: str) -> str:
    """Upstream's ``ospool-ep-container`` for ``ospool-ep.cfg``, ``ospool-ep-<name>``
    for ``<name>.cfg``: the template unit's instances get distinct names without saying so."""
    stem = PurePosixPath(config_path).name
    stem = stem[: -len(".cfg")] if stem.endswith(".cfg") else stem
    return DEFAULT_CONTAINER_NAME if stem == "ospool-ep" else f"ospool-ep-{stem}"
