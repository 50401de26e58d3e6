"""Logs: the one output stream of the pilot, its own events and its daemons' log lines (SPEC 7.3).

:class:`Emitter` writes one line per event, as text or as one JSON object, after
:func:`redact` has removed anything token-shaped; :mod:`ospool_ep.pilot.logtail`
feeds it the daemons' lines. With a :class:`RemoteSink` attached
(:mod:`ospool_ep.pilot.remotelog`), each redacted line also goes to a syslog
receiver. Nothing here raises for a broken output stream, and nothing blocks:
losing the log must never stop or freeze the pilot.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol, TextIO

Level = Literal["debug", "info", "warning", "error"]

SUPERVISOR_SOURCE = "supervisor"
"""The ``source`` of the supervisor's own events; daemon lines carry their log's file name."""

_RESERVED = frozenset({"ts", "level", "source", "msg"})

# IDTOKENs and SciTokens are JWTs: three base64url segments, the first being the
# JSON header, whose base64 always starts "eyJ" ('{"'). The third (the
# signature) may be empty for unsigned tokens.
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_TOKEN_ASSIGNMENT = re.compile(r"(TOKEN=)\S+", re.IGNORECASE)
# A line cut at max_line can end inside a token, where _JWT no longer matches.
_TOKEN_TAIL = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_.-]*\Z")


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


def redact_cut_token(text: str) -> str:
    """``text``, a line cut short, with a token it ends inside (no longer JWT-shaped) redacted."""
    return _TOKEN_TAIL.sub("[token redacted]", text)


def daemon_level(text: str) -> Level:
    """A daemon line's level, guessed: HTCondor writes ``ERROR``/``WARNING`` in the text."""
    if "ERROR" in text:
        return "error"
    if "WARNING" in text:
        return "warning"
    return "info"


class RemoteSink(Protocol):
    """Where lines also go (a :class:`~ospool_ep.pilot.remotelog.RemoteLog`): ``put`` must
    not block. ``text`` is redacted already; ``source`` is ``supervisor`` or a log's name."""

    def put(self, level: str, source: str, text: str, *, when: float) -> None: ...


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
        self.remote: RemoteSink | None = None
        """Set once, before any thread logs: the stream's copy to a syslog receiver."""

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
            line = body = json.dumps(record)
        else:
            parts = [_one_line(redact(msg))]
            parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
            body = " ".join(parts)
            line = f"{_iso_s(now)} {SUPERVISOR_SOURCE} {level}: {body}"
        self._write(line)
        self._send(level, SUPERVISOR_SOURCE, body, now)

    def local_event(self, level: Level, msg: str) -> None:
        """An event for stdout only: how sending to the syslog receiver goes."""
        now = self._clock()
        clean = _one_line(redact(msg))
        if self._json:
            record = {"ts": _iso_ms(now), "level": level, "source": SUPERVISOR_SOURCE}
            self._write(json.dumps({**record, "msg": clean}))
        else:
            self._write(f"{_iso_s(now)} {SUPERVISOR_SOURCE} {level}: {clean}")

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
            line = body = json.dumps(record)
        else:
            body = _one_line(clean)
            line = f"{_iso_s(now)} {source}: {body}"
        self._write(line)
        self._send(daemon_level(clean), source, body, now)

    def _send(self, level: Level, source: str, body: str, now: float) -> None:
        remote = self.remote
        if remote is not None:
            remote.put(level, source, body, when=now)

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
