"""Logs: the one output stream of the pilot, its own events and its daemons' log lines (SPEC 7.3).

:class:`Emitter` writes one line per event, as text or as one JSON object, after
:func:`redact` has removed anything token-shaped. :class:`LogTailer` follows
HTCondor's daemon logs in the ``LOG`` directory across rotation and hands their
complete lines to an emitter. Nothing here raises for a broken output stream or
a log file that comes and goes: losing the log must never stop the pilot.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

Level = Literal["debug", "info", "warning", "error"]

SUPERVISOR_SOURCE = "supervisor"
"""The ``source`` of the supervisor's own events; daemon lines carry their log's file name."""

DEFAULT_PATTERNS = ("MasterLog", "StartLog", "StarterLog", "StarterLog.*")
"""The daemon logs SPEC 7.3 streams. The starter writes ``StarterLog.<slot>``, one per slot."""

TRUNCATED_MARK = " [truncated]"

_RESERVED = frozenset({"ts", "level", "source", "msg"})

# IDTOKENs and SciTokens are JWTs: three base64url segments, the first being the
# JSON header, whose base64 always starts "eyJ" ('{"'). The third (the
# signature) may be empty for unsigned tokens.
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_TOKEN_ASSIGNMENT = re.compile(r"(TOKEN=)\S+", re.IGNORECASE)
# A line cut at max_line can end inside a token, where _JWT no longer matches.
_TOKEN_TAIL = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_.-]*\Z")

# HTCondor keeps MAX_NUM_<SUBSYS>_LOG old copies, named <log>.old when it is 1
# (the default) and <log>.<YYYYMMDDTHHMMSS> above that (HTCondor manual,
# "Daemon Logging Configuration File Entries"). They are what was already read.
_ROTATED = re.compile(r"\.(?:old|\d{8}T\d{6})\Z")

_CHUNK = 64 * 1024


def redact(text: str) -> str:
    """``text`` with JWT-shaped tokens and ``TOKEN=<value>`` values replaced by markers.

    ``TOKEN=`` goes first: a JWT after it is then gone whole, and the JWT marker
    (which contains a space) is never cut in two by the ``TOKEN=`` rule.
    """
    if "=" in text:
        text = _TOKEN_ASSIGNMENT.sub(r"\1[redacted]", text)
    if "eyJ" in text:
        text = _JWT.sub("[token redacted]", text)
    return text


def daemon_level(text: str) -> Level:
    """A daemon line's level, guessed: HTCondor writes ``ERROR``/``WARNING`` in the text."""
    if "ERROR" in text:
        return "error"
    if "WARNING" in text:
        return "warning"
    return "info"


class Emitter:
    """Writes one line per event to a stream: supervisor events and daemon log lines."""

    def __init__(
        self,
        *,
        fmt: Literal["text", "json"],
        stream: TextIO,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._json = fmt == "json"
        self._stream = stream
        self._clock = clock
        # The supervisor, its metrics server and its notifier may all log; a
        # lock keeps their lines whole.
        self._lock = threading.Lock()

    def event(self, level: Level, msg: str, /, **fields: object) -> None:
        """A supervisor event: ``msg`` in words, ``fields`` as its structured details."""
        now = self._clock()
        if self._json:
            record: dict[str, object] = {
                "ts": _iso_ms(now),
                "level": level,
                "source": SUPERVISOR_SOURCE,
                "msg": redact(msg),
            }
            for key, value in fields.items():
                record[f"field_{key}" if key in _RESERVED else key] = _jsonable(value)
            self._write(json.dumps(record))
        else:
            parts = [_iso_s(now), f"{SUPERVISOR_SOURCE} {level}:", _one_line(redact(msg))]
            parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
            self._write(" ".join(parts))

    def daemon_line(self, source: str, text: str) -> None:
        """One line of a daemon log, ``source`` being the log's file name (``StartLog``)."""
        now = self._clock()
        clean = redact(text)
        if self._json:
            record = {
                "ts": _iso_ms(now),
                "level": daemon_level(clean),
                "source": source,
                "msg": clean,
            }
            self._write(json.dumps(record))
        else:
            self._write(f"{_iso_s(now)} {source}: {_one_line(clean)}")

    def _write(self, line: str) -> None:
        with self._lock:
            try:
                self._put(line)
            except UnicodeEncodeError:
                # A stream without UTF-8 (LANG=C without Python's UTF-8 mode)
                # still gets the line, its odd characters escaped.
                encoding = getattr(self._stream, "encoding", None) or "ascii"
                safe = line.encode(encoding, "backslashreplace").decode(encoding)
                try:
                    self._put(safe)
                except (OSError, ValueError):
                    return
            except (OSError, ValueError):
                # BrokenPipeError (nobody reads stdout any more) or ValueError
                # (closed stream): the line is lost, the pilot goes on.
                return

    def _put(self, line: str) -> None:
        self._stream.write(line + "\n")
        # Flushed at once: the container runtime must see a line when it is
        # written, not when a buffer fills, or a crash loses the last words.
        self._stream.flush()


def _iso_s(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _iso_ms(when: float) -> str:
    millis = int(when * 1000)
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        return text.replace("\r", "\\r").replace("\n", "\\n")
    return text


def _text_value(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        text = str(value)
    text = redact(text)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _jsonable(value: object) -> object:
    """``value`` as JSON can carry it, every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity are not JSON
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return redact(str(value))


@dataclass(slots=True, kw_only=True)
class _Followed:
    """One log file being followed, by inode: the name may move on, the inode does not."""

    path: Path
    identity: tuple[int, int]
    """``(st_dev, st_ino)`` of the file whose bytes up to ``offset`` were read."""
    offset: int
    fd: int | None = None
    """Open while the file is active, so its end can be read after a rename or unlink."""
    pending: bytes = b""
    """A last line whose newline has not been written yet."""
    discarding: bool = False
    """The current line passed max_line and was emitted cut: drop up to its newline."""
    last_active: int = 0
    """The pump that last read from this file, to close the idlest fds first."""

    @property
    def source(self) -> str:
        return self.path.name


class LogTailer:
    """Follows HTCondor's daemon logs in a directory and hands new complete lines to an Emitter."""

    def __init__(
        self,
        *,
        log_dir: Path,
        emitter: Emitter,
        patterns: tuple[str, ...] = DEFAULT_PATTERNS,
        max_line: int = 16384,
        from_end: bool = False,
        max_open: int = 32,
    ) -> None:
        """Follow files in ``log_dir`` whose names match ``patterns`` (``fnmatch``).

        ``max_line`` is in bytes. ``from_end`` skips what the files already hold
        now; by default they are read whole (the pilot's ``LOG`` starts empty,
        so whatever is there was written by this pilot's daemons). ``max_open``
        bounds the descriptors kept open; the idlest files are closed first and
        reopened when they grow.
        """
        self._dir = log_dir
        self._emitter = emitter
        self._match = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
        self._max_line = max_line
        self._max_open = max_open
        self._files: dict[str, _Followed] = {}
        self._pumps = 0
        if from_end:
            for name, st in self._scan():
                if st is None:
                    continue
                self._files[name] = _Followed(
                    path=log_dir / name, identity=(st.st_dev, st.st_ino), offset=st.st_size
                )

    def pump(self) -> int:
        """Emit the complete lines written since the last pump; how many. Never blocks.

        An idle pump costs one directory listing and one ``stat`` per file.
        """
        self._pumps += 1
        emitted = 0
        seen: set[str] = set()
        for name, st in self._scan():
            seen.add(name)
            if st is not None:
                emitted += self._follow(name, st)
        for name in [n for n in self._files if n not in seen]:
            emitted += self._finish(self._files.pop(name))
        self._bound_open_files()
        return emitted

    def close(self) -> int:
        """The last pump, which also emits partial last lines and closes every file.

        Called once, at exit, so the daemons' last words are not lost.
        """
        emitted = self.pump()
        for followed in self._files.values():
            emitted += self._flush_pending(followed)
            _close(followed)
        return emitted

    def _scan(self) -> Iterator[tuple[str, os.stat_result | None]]:
        """Matching files in the directory with their stat, or None where it failed for now."""
        try:
            with os.scandir(self._dir) as listing:
                entries = list(listing)
        except OSError:
            return  # LOG not created yet by condor_master, or gone at exit
        for entry in sorted(entries, key=lambda e: e.name):
            if not self._match(entry.name) or _ROTATED.search(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                st: os.stat_result | None = entry.stat()
            except FileNotFoundError:
                continue  # vanished since the listing: finished like any vanished file
            except OSError:
                # Not gone, only unreadable for now: keep following from where
                # we are rather than restart it at 0 when it is readable again.
                st = None
            yield entry.name, st

    def _follow(self, name: str, st: os.stat_result) -> int:
        identity = (st.st_dev, st.st_ino)
        followed = self._files.get(name)
        emitted = 0
        if followed is not None and followed.identity != identity:
            # Rotated: HTCondor renamed the file to .old and created a new one.
            # Read the old one to its end before starting on the new.
            emitted += self._finish(followed)
            followed = None
        if followed is None:
            followed = _Followed(path=self._dir / name, identity=identity, offset=0)
            self._files[name] = followed
        elif st.st_size < followed.offset:
            # Truncated in place (TRUNC_<SUBSYS>_LOG_ON_OPEN, or copytruncate):
            # the rest of the old content is gone; the new starts at 0.
            emitted += self._flush_pending(followed)
            followed.offset = 0
        if st.st_size > followed.offset:
            fd = self._open(followed)
            if fd is not None:
                emitted += self._read(followed, fd, until=st.st_size)
        return emitted

    def _finish(self, followed: _Followed) -> int:
        """Read a file that was renamed away or deleted to its end, then forget it."""
        fd = followed.fd
        if fd is None:
            # Closed while idle: its rotated copy still has the unread end.
            fd = _open_identity(followed.path.with_name(followed.source + ".old"), followed)
        emitted = 0
        if fd is not None:
            try:
                emitted += self._read(followed, fd, until=os.fstat(fd).st_size)
            finally:
                os.close(fd)
                followed.fd = None
        return emitted + self._flush_pending(followed)

    def _open(self, followed: _Followed) -> int | None:
        if followed.fd is None:
            followed.fd = _open_identity(followed.path, followed)
        return followed.fd

    def _read(self, followed: _Followed, fd: int, *, until: int) -> int:
        """Read from ``offset`` up to ``until``; a file that keeps growing is read next pump."""
        followed.last_active = self._pumps
        emitted = 0
        while followed.offset < until:
            try:
                chunk = os.pread(fd, min(_CHUNK, until - followed.offset), followed.offset)
            except OSError:
                break
            if not chunk:
                break  # truncated since the stat: the next pump sees it
            followed.offset += len(chunk)
            for line in self._lines(followed, chunk):
                self._emitter.daemon_line(followed.source, line)
                emitted += 1
        return emitted

    def _lines(self, followed: _Followed, chunk: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            if followed.discarding:
                followed.discarding = False
            else:
                lines.append(self._decode(followed.pending + chunk[start:newline]))
            followed.pending = b""
            start = newline + 1
        if not followed.discarding:
            followed.pending += chunk[start:]
            if len(followed.pending) > self._max_line:
                # Emit the cut line now rather than buffer a runaway one.
                lines.append(self._decode(followed.pending))
                followed.pending = b""
                followed.discarding = True
        return lines

    def _flush_pending(self, followed: _Followed) -> int:
        if not followed.pending:
            followed.discarding = False
            return 0
        line = self._decode(followed.pending)
        followed.pending = b""
        followed.discarding = False
        self._emitter.daemon_line(followed.source, line)
        return 1

    def _decode(self, raw: bytes) -> str:
        if len(raw) > self._max_line:
            # Cutting may split a UTF-8 sequence: one replacement character.
            text = raw[: self._max_line].decode("utf-8", errors="replace")
            return _TOKEN_TAIL.sub("[token redacted]", text) + TRUNCATED_MARK
        return raw.decode("utf-8", errors="replace").removesuffix("\r")

    def _bound_open_files(self) -> None:
        open_files = [f for f in self._files.values() if f.fd is not None]
        if len(open_files) <= self._max_open:
            return
        open_files.sort(key=lambda f: f.last_active)
        for followed in open_files[: len(open_files) - self._max_open]:
            _close(followed)


def _open_identity(path: Path, followed: _Followed) -> int | None:
    """An fd on ``path`` if it is still the inode ``followed`` was reading, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if (st.st_dev, st.st_ino) != followed.identity:
        # Replaced between the stat and the open: the next pump sees the rotation.
        os.close(fd)
        return None
    return fd


def _close(followed: _Followed) -> None:
    if followed.fd is not None:
        os.close(followed.fd)
        followed.fd = None
