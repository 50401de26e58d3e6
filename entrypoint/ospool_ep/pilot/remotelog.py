"""Remote syslog: the pilot's log stream, also sent to a syslog receiver (SPEC 7.3).

:func:`decide` reads ``ENABLE_REMOTE_SYSLOG``, ``SYSLOG_HOST``, ``POOL`` and
``ITB`` into a :class:`Decision`: where the stream goes, in words for
``ospool-ep check``, and the :class:`Target` if anything is sent.

:class:`RemoteLog` sends. The emitter's :meth:`RemoteLog.put` only appends to a
bounded queue (a full queue drops the line and counts it); one daemon thread
connects, frames and writes, with timeouts on every socket operation and a
growing pause after each failure. A receiver that is dead, refuses, black-holes
or never reads costs the PID-1 loop nothing but the append.

Transport: RFC 5424 messages over TCP, octet-counted (RFC 6587 3.4.1, the
framing RFC 5425 prescribes for TLS). Port 6514, upstream's, is TLS: the
receiver must present a certificate the system trusts for its name; no client
certificate is offered. OSG's central receivers want a client certificate that
OSG's registry issues in exchange for the pilot's token, and present one from
OSG's private CA: this pilot never hands its token to a third service, so it
does not send to them at all (not even a DNS lookup) and says so.

What is sent was redacted by the :class:`~ospool_ep.pilot.logs.Emitter` first.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from ospool_ep.inputs import values
from ospool_ep.inputs.pools import POOL_NAMES, canonical_pool_name
from ospool_ep.inputs.variables import SYSLOG_TLS_PORT, parse_syslog_host

Level = Literal["debug", "info", "warning", "error"]

CENTRAL_SYSLOG = {
    "prod-ospool": "syslog.osg.chtc.io",
    "prod-path-facility": "syslog.osg.chtc.io",
    "itb-ospool": "syslog.osgdev.chtc.io",
    "dev-path-facility": "syslog.osgdev.chtc.io",
}
"""Each pool's default ``SYSLOG_HOST``, as OSG's container has them (10-setup-htcondor.sh)."""

CENTRAL_REFUSED = (
    "OSG's central syslog accepts only clients holding a certificate OSG's registry "
    "issues in exchange for the pilot's token, and this pilot never sends its token "
    "to another service"
)

# RFC 5424 6.2.1: facility local0, severities by level.
FACILITY_LOCAL0 = 16
SEVERITY: Mapping[str, int] = {"error": 3, "warning": 4, "info": 6, "debug": 7}
MAX_MESSAGE_BYTES = 8192
"""RFC 5425 4.3.1: receivers should take 8192 octets; a longer message is cut."""
APP_NAME = "ospool-ep"

QUEUE_LINES = 10_000
QUEUE_BYTES = 8 << 20
CONNECT_TIMEOUT_SECONDS = 5.0
SEND_TIMEOUT_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
BATCH_BYTES = 64 << 10


@dataclass(frozen=True)
class Target:
    host: str
    """A DNS name or an address (IPv6 without brackets)."""
    port: int
    tls: bool

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        how = "TLS" if self.tls else "plain TCP"
        return f"{host}:{self.port} ({how})"


@dataclass(frozen=True)
class Decision:
    target: Target | None
    """Where lines are sent; None: nowhere (stdout only)."""
    message: str
    """Where the stream goes, in words (``ospool-ep check``'s line)."""
    warn: bool = False
    """The site asked for something this pilot will not do."""
    fix: str = ""


def target_for(syslog_host: str) -> Target:
    """The target of a valid ``SYSLOG_HOST`` value: its port, or 6514 and TLS."""
    host, port = values.parse_host_port(syslog_host)
    if host.startswith("["):
        host = host[1:-1]
    port = port or SYSLOG_TLS_PORT
    return Target(host=host, port=port, tls=port == SYSLOG_TLS_PORT)


def decide(environ: Mapping[str, str]) -> Decision:
    """Where the log stream goes besides stdout, from the pilot's environment.

    As OSG's container: on by default, to the pool's central receiver, off for a
    ``POOL`` that is a central manager's host. Unlike it: a ``SYSLOG_HOST`` the
    site sets is used with any pool, and OSG's central receivers are never
    contacted (:data:`CENTRAL_REFUSED`). Bad values send nothing (their own FAIL
    comes from the settings).
    """
    try:
        enabled = values.parse_bool(environ.get("ENABLE_REMOTE_SYSLOG", "") or "true")
        explicit = environ.get("SYSLOG_HOST", "").strip()
        host = parse_syslog_host(explicit) if explicit else None
        pool = values.parse_pool(environ.get("POOL", "") or "ospool", known=POOL_NAMES)
        itb = values.parse_bool(environ.get("ITB", "") or "false")
    except values.Invalid:
        return Decision(None, "not sent: a remote syslog setting is invalid (see its line)")
    if not enabled:
        return Decision(None, "not sent: ENABLE_REMOTE_SYSLOG is false; logs go to stdout only")
    if host is None:
        name = canonical_pool_name(pool, itb=itb)
        if name is None:
            return Decision(
                None,
                "not sent: POOL is a central manager's host, which has no default syslog "
                "receiver (as OSG's container); set SYSLOG_HOST to send to yours",
            )
        return Decision(
            None,
            f"not sent to {CENTRAL_SYSLOG[name]}, {name}'s default: {CENTRAL_REFUSED}; "
            "logs go to stdout; set SYSLOG_HOST to send to your own receiver",
        )
    target = target_for(host)
    if target.host.rstrip(".").lower() in CENTRAL_SYSLOG.values():
        return Decision(
            None,
            f"not sent to {target.host}: {CENTRAL_REFUSED}",
            warn=True,
            fix="set SYSLOG_HOST to your own receiver, or ENABLE_REMOTE_SYSLOG=false",
        )
    return Decision(target, f"the log stream also goes to {target.shown}")


# -- messages -------------------------------------------------------------------


def _header_field(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most ``limit``."""
    clean = "".join(c if "!" <= c <= "~" else "_" for c in text)[:limit]
    return clean or "-"


def rfc5424(
    *, level: str, source: str, text: str, when: float, hostname: str, procid: int
) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``.

    MSGID is the stream's source (``supervisor``, ``StartLog``); no structured data.
    """
    pri = FACILITY_LOCAL0 * 8 + SEVERITY.get(level, 6)
    millis = int(when * 1000)
    seconds, ms = divmod(millis, 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
    header = (
        f"<{pri}>1 {stamp} {_header_field(hostname, 255)} {APP_NAME} {procid} "
        f"{_header_field(source, 32)} - "
    ).encode()
    body = text.replace("\r", "\\r").replace("\n", "\\n").encode("utf-8", "backslashreplace")
    room = MAX_MESSAGE_BYTES - len(header)
    if len(body) > room:
        # Cut on a character boundary; the text was redacted whole before.
        body = body[:room].decode("utf-8", "ignore").encode()
    return header + body


def frame(message: bytes) -> bytes:
    """RFC 6587 3.4.1 octet counting: ``LENGTH SP MESSAGE``."""
    return str(len(message)).encode() + b" " + message


# -- sending --------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    queued: int
    sent: int
    dropped: int
    """Lines lost: queue full, or written to a connection that then failed."""
    failures: int
    """Connections that could not be made or broke."""
    connected: bool


Report = Callable[[Level, str], None]
"""Where :class:`RemoteLog` says how sending goes (stdout only, never the receiver)."""

Connect = Callable[[Target, float], socket.socket]


def open_connection(target: Target, timeout: float) -> socket.socket:
    """A connected socket to ``target``, TLS-wrapped on the TLS port. Raises OSError.

    The timeout bounds the TCP connect and the TLS handshake each; a name
    lookup is the resolver's own (it runs in the sender thread only).
    """
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    if not target.tls:
        return sock
    context = ssl.create_default_context()
    try:
        return context.wrap_socket(sock, server_hostname=target.host)
    except (OSError, ssl.SSLError):
        sock.close()
        raise


class RemoteLog:
    """A bounded queue of messages and the one thread that sends them to ``target``."""

    def __init__(
        self,
        target: Target,
        *,
        report: Report,
        max_lines: int = QUEUE_LINES,
        max_bytes: int = QUEUE_BYTES,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
        backoff_first: float = BACKOFF_FIRST_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
        connect: Connect = open_connection,
        hostname: str | None = None,
    ) -> None:
        self.target = target
        self._report = report
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._connect = connect
        self._hostname = hostname or socket.gethostname()
        self._procid = os.getpid()
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._sent = 0
        self._dropped = 0
        self._failures = 0
        self._connected = False
        self._down_reported = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sender. Call after ``supervise.block_signals``: it inherits the mask."""
        self._thread = threading.Thread(target=self._run, name="remote-syslog", daemon=True)
        self._thread.start()

    def put(self, level: str, source: str, text: str, *, when: float) -> None:
        """Queue one line; never blocks on the network. A full queue drops it (counted)."""
        message = frame(
            rfc5424(
                level=level,
                source=source,
                text=text,
                when=when,
                hostname=self._hostname,
                procid=self._procid,
            )
        )
        with self._cond:
            if self._stopping:
                return
            if (
                len(self._queue) >= self._max_lines
                or self._queued_bytes + len(message) > self._max_bytes
            ):
                self._dropped += 1
                return
            self._queue.append(message)
            self._queued_bytes += len(message)
            self._cond.notify()

    def counts(self) -> Counts:
        with self._cond:
            return Counts(
                queued=len(self._queue),
                sent=self._sent,
                dropped=self._dropped,
                failures=self._failures,
                connected=self._connected,
            )

    def close(self, *, timeout: float) -> Counts:
        """Stop taking lines; while connected, give the queue up to ``timeout`` to go out.

        A sender that is not connected (dead receiver, backing off) is not waited for.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._queue and self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            left_behind = len(self._queue)
            self._dropped += left_behind
            self._queue.clear()
            self._queued_bytes = 0
        return self.counts()

    # -- the sender thread ------------------------------------------------------

    def _run(self) -> None:
        backoff = self._backoff_first
        sock: socket.socket | None = None
        while True:
            batch = self._take_batch()
            if batch is None:
                break
            if sock is None:
                try:
                    sock = self._connect(self.target, self._connect_timeout)
                    sock.settimeout(self._send_timeout)
                except OSError as error:
                    self._failed(batch, f"cannot connect to {self.target.shown}: {error}")
                    self._pause(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                    continue
                self._set_connected(True)
            try:
                sock.sendall(b"".join(batch))
            except OSError as error:
                with contextlib.suppress(OSError):
                    sock.close()
                sock = None
                self._set_connected(False)
                self._failed(batch, f"lost {self.target.shown}: {error}")
                self._pause(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            backoff = self._backoff_first
            with self._cond:
                self._sent += len(batch)
                self._cond.notify_all()  # close() may wait for the queue to empty
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._set_connected(False)

    def _take_batch(self) -> list[bytes] | None:
        """The next messages to send, up to BATCH_BYTES; None once stopping and empty."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            batch: list[bytes] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0]) <= BATCH_BYTES):
                message = self._queue.popleft()
                batch.append(message)
                size += len(message)
            self._queued_bytes -= size
            return batch

    def _set_connected(self, connected: bool) -> None:
        with self._cond:
            was = self._connected
            self._connected = connected
            if connected:
                self._down_reported = False
            dropped = self._dropped
            self._cond.notify_all()
        if connected and not was:
            self._report(
                "info",
                f"remote syslog: connected to {self.target.shown} ({dropped} lines dropped so far)",
            )

    def _failed(self, batch: list[bytes], why: str) -> None:
        with self._cond:
            self._failures += 1
            self._dropped += len(batch)
            first = not self._down_reported
            self._down_reported = True
            failures, dropped = self._failures, self._dropped
        # Said once per outage: a dead receiver is not worth a line per retry.
        if first:
            self._report(
                "warning",
                f"remote syslog: {why}; retrying with backoff "
                f"({failures} failures, {dropped} lines dropped so far)",
            )

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` before the next try, or until close() asks to stop."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)
