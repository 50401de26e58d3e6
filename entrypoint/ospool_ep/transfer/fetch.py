"""An object's bytes from the server the director chose, into a file, in a worker thread.

pelicanfs finds the server (discovery, the director, the namespace's caches); the bytes
then come over one plain HTTPS GET, and this does it with the standard library's blocking
client in a thread rather than on the event loop: OpenSSL then decrypts on the socket
itself, off the interpreter lock, so the pilot's concurrent transfers (one per slot) use
as many cores as there are, and one transfer keeps up with curl_plugin on the same link
(benchmarks/osdf_transfer.py), where asyncio's TLS on one thread did not.

Bounded as the rest: ``connect_seconds`` to connect, ``stall_seconds`` without data ends
it (the socket's timeout); redirects (a cache handing the request on) are followed, five
at most; the proxy is the environment's ``https_proxy``/``http_proxy`` and ``no_proxy``,
as for HTCondor's own plugins. A cancelled fetch stops at its next read and removes the
file it wrote.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ospool_ep import __version__

MAX_REDIRECTS = 5
FIRST_READ_BYTES = 64 << 10
READ_BYTES = 1 << 20
USER_AGENT = f"ospool-ep-pelican-plugin/{__version__}"


class Progress(Protocol):
    def set_size(self, size: int | None) -> None: ...
    def relative_update(self, inc: int = 1) -> None: ...


class HttpStatus(Exception):
    """The server answered, but not with the object."""

    def __init__(self, status: int, reason: str, url: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.url = url


class ShortBody(Exception):
    """The connection ended before the Content-Length the server announced."""

    def __init__(self, received: int, expected: int) -> None:
        super().__init__(f"received {received} of {expected} bytes")
        self.received = received
        self.expected = expected


class Cancelled(Exception):
    """The transfer was called off (the plugin that asked for it is gone)."""


@dataclass
class Fetch:
    url: str
    destination: Path
    headers: Mapping[str, str]
    connect_seconds: float
    stall_seconds: float
    progress: Progress
    cancelled: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        complete = False
        try:
            self._follow()
            complete = True
        finally:
            if not complete or self.cancelled.is_set():
                self.destination.unlink(missing_ok=True)
        if self.cancelled.is_set():
            raise Cancelled

    def _follow(self) -> None:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            location = self._get(url)
            if location is None:
                return
            url = urllib.parse.urljoin(url, location)
        raise HttpStatus(310, f"more than {MAX_REDIRECTS} redirects", url)

    def _get(self, url: str) -> str | None:
        """GET ``url`` into the destination; the next URL when redirected."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise HttpStatus(400, f"the director named {url!r}, not an HTTP(S) URL", url)
        conn, target = self._connection(parts)
        try:
            conn.request("GET", target, headers={"User-Agent": USER_AGENT, **self.headers})
            if conn.sock is not None:
                conn.sock.settimeout(self.stall_seconds)
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                return response.getheader("Location") or ""
            if response.status == 404:
                raise FileNotFoundError(url)
            if response.status >= 300:
                raise HttpStatus(response.status, response.reason, url)
            length = response.getheader("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            self.progress.set_size(expected)
            self._copy(response, expected)
        finally:
            conn.close()
        return None

    def _copy(self, response: http.client.HTTPResponse, expected: int | None) -> None:
        # readinto fills the window it is given before it returns (its reads loop in C,
        # fast for wide windows); windows start at FIRST_READ_BYTES and double, so that a
        # server stalling early still has what it sent counted, and a long object moves
        # in READ_BYTES steps.
        buffer = bytearray(READ_BYTES)
        view = memoryview(buffer)
        window = FIRST_READ_BYTES
        received = 0
        with self.destination.open("wb") as out:
            while not self.cancelled.is_set():
                try:
                    count = response.readinto(view[:window])
                except http.client.IncompleteRead as short:
                    received += len(short.partial)
                    break
                if not count:
                    break
                out.write(view[:count])
                received += count
                self.progress.relative_update(count)
                window = min(READ_BYTES, window * 2)
        if expected is not None and received != expected and not self.cancelled.is_set():
            raise ShortBody(received, expected)

    def _connection(
        self, parts: urllib.parse.SplitResult
    ) -> tuple[http.client.HTTPConnection, str]:
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        proxy = None if urllib.request.proxy_bypass(host) else proxy_for(parts.scheme)
        timeout = self.connect_seconds
        if parts.scheme == "https":
            context = default_context()
            if proxy is None:
                return http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=context
                ), target
            conn = http.client.HTTPSConnection(proxy[0], proxy[1], timeout=timeout, context=context)
            conn.set_tunnel(host, port)
            return conn, target
        if proxy is None:
            return http.client.HTTPConnection(host, port, timeout=timeout), target
        # A plain-HTTP proxy takes the whole URL as the request target.
        whole = urllib.parse.urlunsplit(("http", f"{host}:{port}", target, "", ""))
        return http.client.HTTPConnection(proxy[0], proxy[1], timeout=timeout), whole


def proxy_for(scheme: str) -> tuple[str, int] | None:
    value = urllib.request.getproxies().get(scheme)
    if not value:
        return None
    parts = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 3128


_context: ssl.SSLContext | None = None
_context_lock = threading.Lock()


def default_context() -> ssl.SSLContext:
    """One verifying context for the process (loading the CA bundle costs ~10 ms)."""
    global _context  # noqa: PLW0603 - a cache, filled once
    with _context_lock:
        if _context is None:
            _context = ssl.create_default_context()
        return _context
