#!/usr/bin/env python3
"""A local Pelican federation stand-in: discovery, director, caches and origin over HTTPS.

One process serves every role, each on its own port, so the same program works on
the host (everything on 127.0.0.1) and in a container where many hostnames
(osg-htc.org, director.osdf.test, cache.osdf.test, ...) resolve to its one address.
It speaks what the Pelican client ``pelicanfs`` uses (read from its 1.5.0 source):

* discovery: ``GET /.well-known/pelican-configuration`` -> JSON with ``director_endpoint``;
* director: ``GET``/``HEAD <path>`` -> 307 to the first cache, every cache in ``Link``
  (``pri`` = order), the namespace in ``X-Pelican-Namespace``;
  ``GET /api/v1.0/director/origin/<path>`` -> 307 to the origin (uploads, direct reads);
  ``PROPFIND <path>`` -> 307 to the origin with the same headers (listings);
* cache and origin: ``GET`` (one byte range at most), ``HEAD``; the origin also takes
  ``PUT`` (bearer token required, written to a temporary file and renamed, so a
  half-received upload never appears) and ``PROPFIND`` (WebDAV depth 0 and 1).

Faults: a role of kind ``silent`` accepts connections and never answers; one of
kind ``refused`` holds its port bound without listening (connections are refused);
per-path faults on any role stall a body after some bytes, truncate it, hold the
request unanswered, or answer a fixed status.

Every request is logged as one JSON line (role, method, path, status, bytes).
Standard library only: it runs on the host's Python and in the image's python3.
Usage: ``federation_server.py --config CONFIG.json`` (schema: :func:`load_config`).
"""

from __future__ import annotations

import argparse
import email.utils
import io
import json
import os
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

CHUNK = 1 << 20
"""Bytes per read and write when moving object data (a 200 MB pull is 200 writes)."""

KINDS = ("discovery", "director", "cache", "origin", "silent", "refused")
FAULTS = ("stall", "truncate", "silent", "status")
ORIGIN_API = "/api/v1.0/director/origin/"
WELL_KNOWN = "/.well-known/pelican-configuration"
UPLOAD_PREFIX = ".standin-upload-"
"""Temporary upload files; never served or listed."""

DRAIN_LIMIT = 16 << 20
"""A refused upload's body is read and dropped up to this size, so the client sees the
status instead of a reset connection; a bigger one gets the status and a closed socket."""


class ConfigError(Exception):
    """The configuration file is wrong; the message names the key and the fix."""


# ---------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Namespace:
    prefix: str
    """Leading path, e.g. ``/test``; an object path belongs to the longest matching one."""
    root: Path
    """Directory holding the namespace's objects (``<root>/<path below prefix>``)."""
    require_token: bool
    """Reads need a bearer token from ``read_tokens`` or ``write_tokens``."""
    read_tokens: frozenset[str]
    write_tokens: frozenset[str]
    """Bearer tokens an origin accepts for PUT (uploads always need one)."""
    issuer: str
    """Advertised in X-Pelican-Token-Generation when ``require_token``."""

    def contains(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")

    def local(self, path: str) -> Path:
        rest = path[len(self.prefix.rstrip("/")) :].lstrip("/")
        return self.root / rest if rest else self.root


@dataclass(frozen=True)
class Fault:
    prefix: str
    kind: str
    methods: frozenset[str]
    after_bytes: int
    """stall/truncate: body bytes sent before stalling or closing."""
    status: int
    """status: the status answered."""

    def applies(self, method: str, path: str) -> bool:
        return method in self.methods and path.startswith(self.prefix)


@dataclass(frozen=True)
class Role:
    name: str
    kind: str
    port: int
    """0: the OS chooses; the chosen port goes into the ready file and into URLs."""
    url: str
    """Advertised base URL; ``{role-name}`` stands for that role's port."""
    director: str
    """discovery: the director role it names."""
    caches: tuple[str, ...]
    """director: cache (or refused) roles, in preference order (Link ``pri`` 1, 2, ...)."""
    origin: str
    """director: the origin role for uploads, direct reads and listings."""
    faults: tuple[Fault, ...]
    tls_handshake: bool
    """silent: complete the TLS handshake and read the request before going quiet."""


@dataclass(frozen=True)
class Config:
    listen: str
    cert: Path
    key: Path
    log: Path
    ready_file: Path | None
    hold_seconds: float
    """How long a stalled or silent connection is held open (or until the server stops)."""
    namespaces: tuple[Namespace, ...]
    roles: tuple[Role, ...]


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in obj:
        if default is None:
            raise ConfigError(f"{where}: {key!r} is missing")
        return default
    value = obj[key]
    # bool is an int subclass: a port of true is a mistake, not port 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key!r} must be a {kind.__name__}, not {value!r}")
    return value


def _tokens(obj: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    values = _get(obj, key, list, where, [])
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where}: {key!r} must be a list of non-empty strings")
    return frozenset(values)


def _path(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base / path


def _fault(obj: Any, where: str) -> Fault:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: each fault must be an object")
    kind = _get(obj, "kind", str, where)
    if kind not in FAULTS:
        raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(FAULTS)}")
    default_methods = (
        ["GET"] if kind in ("stall", "truncate") else ["GET", "HEAD", "PUT", "PROPFIND"]
    )
    methods = _get(obj, "methods", list, where, default_methods)
    return Fault(
        prefix=_get(obj, "prefix", str, where),
        kind=kind,
        methods=frozenset(str(m).upper() for m in methods),
        after_bytes=_get(obj, "after_bytes", int, where, 65536),
        status=_get(obj, "status", int, where, 503),
    )


def _role(obj: Any, where: str) -> Role:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: each role must be an object")
    name = _get(obj, "name", str, where)
    where = f"{where} ({name})"
    kind = _get(obj, "kind", str, where)
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    faults = _get(obj, "faults", list, where, [])
    return Role(
        name=name,
        kind=kind,
        port=_get(obj, "port", int, where, 0),
        url=_get(obj, "url", str, where, ""),
        director=_get(obj, "director", str, where, "") if kind == "discovery" else "",
        caches=tuple(_get(obj, "caches", list, where, [])),
        origin=_get(obj, "origin", str, where, ""),
        faults=tuple(_fault(f, f"{where} fault {i}") for i, f in enumerate(faults)),
        tls_handshake=_get(obj, "tls_handshake", bool, where, True),
    )


def _check_references(roles: Sequence[Role]) -> None:
    by_name = {r.name: r for r in roles}
    if len(by_name) != len(roles):
        raise ConfigError("roles: two roles have the same name")
    for role in roles:
        wanted: list[tuple[str, tuple[str, ...]]] = []
        if role.kind == "discovery":
            wanted.append((role.director, ("director", "silent")))
        if role.kind == "director":
            wanted += [(c, ("cache", "refused", "silent")) for c in role.caches]
            wanted.append((role.origin, ("origin",)))
        for name, kinds in wanted:
            if by_name.get(name) is None or by_name[name].kind not in kinds:
                raise ConfigError(
                    f"roles ({role.name}): {name!r} must name a role of kind {' or '.join(kinds)}"
                )
        if role.kind == "director" and not role.caches:
            raise ConfigError(f"roles ({role.name}): a director needs at least one cache")


def _hold_seconds(raw: Mapping[str, Any]) -> float:
    value = raw.get("hold_seconds", 600)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"config: 'hold_seconds' must be a positive number, not {value!r}")
    return float(value)


def load_config(path: Path) -> Config:
    """Read the JSON configuration; relative paths are relative to its directory.

    Schema::

        {"listen": "127.0.0.1",                # bind address (0.0.0.0 in a container)
         "tls": {"cert": "tls/server.pem", "key": "tls/server.key"},
         "log": "state/requests.jsonl",        # one JSON line per request
         "ready_file": "state/ready.json",     # optional: {"pid", "ports", "urls"} once up
         "hold_seconds": 600,                  # optional: how long stalls and silences last
         "namespaces": [{"prefix": "/test", "root": "tree/test",
                         "require_token": false, "read_tokens": [], "write_tokens": ["w"],
                         "issuer": "https://issuer.test"}],
         "roles": [
           {"name": "discovery", "kind": "discovery", "port": 0,
            "url": "https://127.0.0.1:{discovery}", "director": "director"},
           {"name": "director", "kind": "director", "port": 0,
            "url": "https://127.0.0.1:{director}", "caches": ["cache"], "origin": "origin"},
           {"name": "cache", "kind": "cache", "port": 0, "url": "https://127.0.0.1:{cache}",
            "faults": [{"prefix": "/test/stall/", "kind": "stall", "after_bytes": 65536}]},
           {"name": "origin", "kind": "origin", "port": 0, "url": "https://127.0.0.1:{origin}"},
           {"name": "dead", "kind": "refused", "port": 0, "url": "https://127.0.0.1:{dead}"},
           {"name": "hush", "kind": "silent", "port": 0, "tls_handshake": true}]}

    Fault kinds: ``stall`` (headers with the full Content-Length, ``after_bytes`` of the
    body, then nothing while the socket stays open), ``truncate`` (the same, then the
    connection is closed), ``silent`` (the request is read and never answered),
    ``status`` (answers ``status``). ``methods`` limits a fault (stall and truncate:
    GET only by default).
    """
    base = path.parent
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the configuration: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the configuration must be a JSON object")
    tls = _get(raw, "tls", dict, "config")
    namespaces = []
    for i, ns in enumerate(_get(raw, "namespaces", list, "config")):
        where = f"namespaces[{i}]"
        if not isinstance(ns, dict):
            raise ConfigError(f"{where}: each namespace must be an object")
        prefix = _get(ns, "prefix", str, where)
        if not prefix.startswith("/"):
            raise ConfigError(f"{where}: prefix {prefix!r} must start with /")
        namespaces.append(
            Namespace(
                prefix=prefix,
                root=_path(base, _get(ns, "root", str, where)),
                require_token=_get(ns, "require_token", bool, where, False),
                read_tokens=_tokens(ns, "read_tokens", where),
                write_tokens=_tokens(ns, "write_tokens", where),
                issuer=_get(ns, "issuer", str, where, "https://issuer.test"),
            )
        )
    roles = tuple(_role(r, f"roles[{i}]") for i, r in enumerate(_get(raw, "roles", list, "config")))
    _check_references(roles)
    ready = raw.get("ready_file")
    return Config(
        listen=_get(raw, "listen", str, "config", "127.0.0.1"),
        cert=_path(base, _get(tls, "cert", str, "tls")),
        key=_path(base, _get(tls, "key", str, "tls")),
        log=_path(base, _get(raw, "log", str, "config")),
        ready_file=_path(base, ready) if isinstance(ready, str) else None,
        hold_seconds=_hold_seconds(raw),
        namespaces=tuple(sorted(namespaces, key=lambda n: len(n.prefix), reverse=True)),
        roles=roles,
    )


# ---------------------------------------------------------------------------
# The running federation: every role's URL once its port is known, the log, the stop flag


class Site:
    def __init__(self, config: Config, urls: Mapping[str, str]) -> None:
        self.config = config
        self.urls = dict(urls)
        self.roles = {r.name: r for r in config.roles}
        self.stopping = threading.Event()
        self._log_lock = threading.Lock()
        config.log.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = config.log.open("a", encoding="utf-8")

    def namespace(self, path: str) -> Namespace | None:
        return next((ns for ns in self.config.namespaces if ns.contains(path)), None)

    def log(self, **record: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True)
        with self._log_lock:
            self._log.write(line + "\n")
            self._log.flush()

    def hold(self) -> None:
        """Keep a connection open and quiet until the hold ends or the server stops."""
        self.stopping.wait(self.config.hold_seconds)


def namespace_header(site: Site, ns: Namespace, origin: str) -> str:
    # pelicanfs splits this header on ", " (dir_header_parser.parse_director_response).
    return ", ".join(
        (
            f"namespace={ns.prefix}",
            f"require-token={'true' if ns.require_token else 'false'}",
            f"collections-url={site.urls[origin]}",
        )
    )


def link_header(servers: Sequence[str], path: str, depth: int) -> str:
    return ", ".join(
        f'<{base}{quote(path)}>; rel="duplicate"; pri={i}; depth={depth}'
        for i, base in enumerate(servers, start=1)
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(first, last)`` for one satisfiable range, None to send everything, "416" if none fits.

    Several ranges, or a malformed header, are answered with the whole object, which
    RFC 9110 section 14.2 allows a server to do.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, sep, last_text = header[len("bytes=") :].strip().partition("-")
    if not sep:
        return None
    try:
        if not first_text:  # suffix: the last N bytes
            count = int(last_text)
            return (max(size - count, 0), size - 1) if count > 0 and size else "416"
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return "416"
    return first, min(last, size - 1)


def http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def propfind_entry(href: str, path: Path) -> str:
    stat = path.stat()
    is_dir = path.is_dir()
    props = [
        f"<D:displayname>{escape(path.name)}</D:displayname>",
        "<D:resourcetype><D:collection/></D:resourcetype>" if is_dir else "<D:resourcetype/>",
        f"<D:getcontentlength>{0 if is_dir else stat.st_size}</D:getcontentlength>",
        f"<D:getlastmodified>{http_date(stat.st_mtime)}</D:getlastmodified>",
        f'<D:getetag>"{stat.st_ino:x}-{stat.st_size:x}-{int(stat.st_mtime):x}"</D:getetag>',
    ]
    if not is_dir:
        props.append("<D:getcontenttype>application/octet-stream</D:getcontenttype>")
    return (
        f"<D:response><D:href>{escape(href)}</D:href><D:propstat><D:prop>{''.join(props)}"
        "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )


def visible_children(directory: Path) -> Iterator[Path]:
    for child in sorted(directory.iterdir()):
        if not child.name.startswith(UPLOAD_PREFIX):
            yield child


# ---------------------------------------------------------------------------
# HTTP


class RoleServer(ThreadingHTTPServer):
    """One role's listening socket; TLS is negotiated in the request's own thread."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], role: Role, context: ssl.SSLContext) -> None:
        super().__init__(address, RoleHandler)
        self.role = role
        self.context = context
        self.site: Site | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the resolver for the bind address's FQDN: a DNS
        # query (slow, or leaving the machine) that nothing here needs.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        site = self.site
        assert site is not None and isinstance(request, socket.socket)
        if self.role.kind == "silent" and not self.role.tls_handshake:
            site.log(role=self.role.name, method="", path="", status=0, bytes=0, fault="silent")
            site.hold()
            return
        request.settimeout(30)
        try:
            # In this thread, not in accept(): a client that never speaks TLS must not
            # block the accept loop for every other client.
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError:
            return
        try:
            RoleHandler(tls, client_address, self)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up mid-response (a timed-out test) is not a server error.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class RoleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pelican-standin/1"
    timeout = 60
    server: RoleServer

    # -- plumbing

    @property
    def site(self) -> Site:
        assert self.server.site is not None
        return self.server.site

    @property
    def role(self) -> Role:
        return self.server.role

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every request goes to the JSON log instead."""

    def record(self, status: int, sent: int = 0, **extra: Any) -> None:
        self.site.log(
            role=self.role.name,
            kind=self.role.kind,
            method=self.command,
            path=self.path,
            status=status,
            bytes=sent,
            auth=bool(self.headers.get("Authorization")),
            **extra,
        )

    def answer(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.record(status, len(body))

    def text(self, status: int, message: str) -> None:
        self.answer(status, message.encode() + b"\n", {"Content-Type": "text/plain"})

    def do_GET(self) -> None:
        self.dispatch()

    def do_HEAD(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_PROPFIND(self) -> None:
        self.dispatch()

    def object_path(self) -> str | None:
        """The request's path, decoded; None for one that climbs out with ``..``."""
        path = unquote(urlsplit(self.path).path)
        parts = PurePosixPath(path).parts
        return None if ".." in parts or not path.startswith("/") else path

    def bearer(self) -> str:
        value = self.headers.get("Authorization", "")
        return value[len("Bearer ") :].strip() if value.startswith("Bearer ") else ""

    def dispatch(self) -> None:
        path = self.object_path()
        if self.role.kind == "silent":
            self.record(0, fault="silent")
            self.close_connection = True
            self.site.hold()
            return
        if path is None:
            self.text(400, f"bad path {self.path!r}")
            return
        fault = next((f for f in self.role.faults if f.applies(self.command, path)), None)
        if fault is not None and fault.kind == "silent":
            self.record(0, fault="silent")
            self.close_connection = True
            self.site.hold()
            return
        if fault is not None and fault.kind == "status":
            self.discard_body()
            self.text(fault.status, f"injected fault: status {fault.status}")
            return
        if self.role.kind == "discovery":
            self.discovery(path)
        elif self.role.kind == "director":
            self.director(path)
        elif self.command in ("GET", "HEAD"):
            self.serve_object(path, fault)
        elif self.command == "PUT" and self.role.kind == "origin":
            self.upload(path)
        elif self.command == "PROPFIND" and self.role.kind == "origin":
            self.propfind(path)
        else:
            self.discard_body()
            self.text(405, f"{self.command} is not supported by a {self.role.kind}")

    # -- discovery and director

    def discovery(self, path: str) -> None:
        if path != WELL_KNOWN or self.command not in ("GET", "HEAD"):
            self.text(404, f"nothing at {path}")
            return
        director = self.site.urls[self.role.director]
        body = {
            "director_endpoint": director,
            "namespace_registration_endpoint": director,
            "jwks_uri": f"{director}/.well-known/issuer.jwks",
        }
        self.answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def director(self, path: str) -> None:
        to_origin = path.startswith(ORIGIN_API) or self.command == "PROPFIND"
        if path.startswith(ORIGIN_API):
            path = "/" + path[len(ORIGIN_API) :].lstrip("/")
        ns = self.site.namespace(path)
        if ns is None:
            self.discard_body()
            self.text(404, f"No namespace found for path {path}")
            return
        servers = (
            [self.site.urls[self.role.origin]]
            if to_origin
            else [self.site.urls[c] for c in self.role.caches]
        )
        headers = {
            "Location": servers[0] + quote(path),
            "Link": link_header(servers, path, len(PurePosixPath(ns.prefix).parts) - 1),
            "X-Pelican-Namespace": namespace_header(self.site, ns, self.role.origin),
        }
        if ns.require_token:
            headers["X-Pelican-Authorization"] = f"issuer={ns.issuer}"
            headers["X-Pelican-Token-Generation"] = (
                f"issuer={ns.issuer}, max-scope-depth=3, strategy=OAuth2, base-path={ns.prefix}"
            )
        self.discard_body()
        self.answer(307, b"", headers)

    # -- cache and origin

    def authorised(self, ns: Namespace, *, write: bool) -> bool:
        token = self.bearer()
        if write:
            return token in ns.write_tokens
        return not ns.require_token or token in ns.read_tokens | ns.write_tokens

    def serve_object(self, path: str, fault: Fault | None) -> None:
        ns = self.site.namespace(path)
        if ns is None:
            self.text(404, f"no namespace holds {path}")
            return
        if not self.authorised(ns, write=False):
            self.text(403, f"a valid bearer token is required to read {ns.prefix}")
            return
        local = ns.local(path)
        if local.name.startswith(UPLOAD_PREFIX) or not local.is_file():
            self.text(404, f"no object {path}")
            return
        try:
            source = local.open("rb")
        except OSError:
            self.text(404, f"no object {path}")
            return
        with source:
            self.send_object(source, path, fault)

    def send_object(self, source: io.BufferedReader, path: str, fault: Fault | None) -> None:
        stat = os.fstat(source.fileno())
        size = stat.st_size
        wanted = byte_range(self.headers.get("Range"), size)
        if wanted == "416":
            self.answer(416, b"", {"Content-Range": f"bytes */{size}"})
            return
        first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
        status = 206 if isinstance(wanted, tuple) else 200
        length = last - first + 1
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", http_date(stat.st_mtime))
        self.send_header("ETag", f'"{stat.st_ino:x}-{size:x}-{int(stat.st_mtime):x}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            self.record(status, 0)
            return
        limit = length if fault is None else min(length, fault.after_bytes)
        source.seek(first)
        sent = self.copy_out(source, limit)
        if fault is None:
            self.record(status, sent)
            return
        self.wfile.flush()
        self.record(status, sent, fault=fault.kind)
        self.close_connection = True
        if fault.kind == "stall":
            self.site.hold()

    def copy_out(self, source: io.BufferedReader, limit: int) -> int:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        sent = 0
        while sent < limit:
            count = source.readinto(view[: min(CHUNK, limit - sent)])
            if not count:
                break
            self.wfile.write(view[:count])
            sent += count
        return sent

    def body_chunks(self) -> Iterator[bytes]:
        """The request body, from Content-Length or chunked transfer coding (fsspec's PUT)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("the client closed the connection mid-upload")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self.read_exactly(size)
                self.rfile.readline(16)
        else:
            yield from self.read_exactly(int(self.headers.get("Content-Length") or 0))

    def read_exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            data = self.rfile.read(min(CHUNK, size))
            if not data:
                raise ConnectionError("the client closed the connection mid-upload")
            size -= len(data)
            yield data

    def has_body(self) -> bool:
        return bool(self.headers.get("Content-Length", "0") != "0") or (
            "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        )

    def discard_body(self) -> None:
        if not self.has_body():
            return
        declared = int(self.headers.get("Content-Length") or 0)
        if declared > DRAIN_LIMIT:
            self.close_connection = True
            return
        dropped = 0
        try:
            for chunk in self.body_chunks():
                dropped += len(chunk)
                if dropped > DRAIN_LIMIT:
                    self.close_connection = True
                    return
        except (OSError, ValueError):
            self.close_connection = True

    def upload(self, path: str) -> None:
        ns = self.site.namespace(path)
        if ns is None:
            self.discard_body()
            self.text(404, f"no namespace holds {path}")
            return
        if not self.authorised(ns, write=True):
            self.discard_body()
            self.text(403, f"a bearer token with write access to {ns.prefix} is required")
            return
        if not self.has_body() and "Content-Length" not in self.headers:
            self.text(411, "a PUT needs Content-Length or chunked transfer coding")
            return
        target = ns.local(path)
        if target == ns.root or target.name.startswith(UPLOAD_PREFIX) or target.is_dir():
            self.discard_body()
            self.text(409, f"{path} is a collection")
            return
        existed = target.exists()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=target.parent)
        except OSError as err:
            self.discard_body()
            self.text(507, f"cannot store {path}: {err.strerror}")
            return
        temp = Path(temp_name)
        received = 0
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in self.body_chunks():
                    out.write(chunk)
                    received += len(chunk)
            temp.chmod(0o644)
            temp.replace(target)
        except (OSError, ValueError) as err:
            temp.unlink(missing_ok=True)
            self.close_connection = True
            self.record(0, received, error=str(err))
            return
        self.send_response(204 if existed else 201)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.record(204 if existed else 201, received)

    def propfind(self, path: str) -> None:
        self.discard_body()
        ns = self.site.namespace(path.rstrip("/") or "/")
        if ns is None:
            self.text(404, f"no namespace holds {path}")
            return
        if not self.authorised(ns, write=False):
            self.text(403, f"a valid bearer token is required to list {ns.prefix}")
            return
        local = ns.local(path.rstrip("/"))
        if not local.exists() or local.name.startswith(UPLOAD_PREFIX):
            self.text(404, f"no object or collection {path}")
            return
        if path.endswith("/") and not local.is_dir():
            # What origins answer for an object's slash form; pelicanfs relies on it
            # to tell objects from collections (core.PelicanFileSystem._is_collection).
            self.text(500, f"{path} is not a collection")
            return
        base = path.rstrip("/")
        entries = [propfind_entry(quote(base + "/" if local.is_dir() else base), local)]
        if local.is_dir() and self.headers.get("Depth", "1") != "0":
            entries += [
                propfind_entry(
                    quote(f"{base}/{child.name}" + ("/" if child.is_dir() else "")), child
                )
                for child in visible_children(local)
            ]
        body = (
            '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
            + "".join(entries)
            + "</D:multistatus>"
        ).encode()
        self.answer(207, body, {"Content-Type": 'application/xml; charset="utf-8"'})


# ---------------------------------------------------------------------------
# Start-up


def tls_context(config: Config) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(config.cert), str(config.key))
    return context


def bind(config: Config) -> tuple[list[RoleServer], list[socket.socket], dict[str, int]]:
    """Every role's socket, bound before any URL is resolved (ports may be OS-chosen)."""
    context = tls_context(config)
    servers: list[RoleServer] = []
    holders: list[socket.socket] = []
    ports: dict[str, int] = {}
    for role in config.roles:
        if role.kind == "refused":
            # Bound but not listening: the port stays ours, and every connection to it is
            # refused, as to a cache that is down.
            holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holder.bind((config.listen, role.port))
            holders.append(holder)
            ports[role.name] = holder.getsockname()[1]
            continue
        server = RoleServer((config.listen, role.port), role, context)
        servers.append(server)
        ports[role.name] = server.server_address[1]
    return servers, holders, ports


def resolve_urls(config: Config, ports: Mapping[str, int]) -> dict[str, str]:
    urls = {}
    for role in config.roles:
        template = role.url or f"https://{config.listen}:{{{role.name}}}"
        try:
            urls[role.name] = template.format_map(ports).rstrip("/")
        except (KeyError, ValueError) as err:
            raise ConfigError(
                f"roles ({role.name}): url {template!r} names no known role: {err}"
            ) from err
    return urls


def write_ready(path: Path, ports: Mapping[str, int], urls: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps({"pid": os.getpid(), "ports": ports, "urls": urls}, indent=1))
    temp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, required=True, help="the JSON configuration")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        servers, holders, ports = bind(config)
        site = Site(config, resolve_urls(config, ports))
    except (ConfigError, OSError, ssl.SSLError) as err:
        print(f"federation_server: {err}", file=sys.stderr)
        return 2
    for server in servers:
        server.site = site
        threading.Thread(target=server.serve_forever, name=server.role.name, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: site.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: site.stopping.set())
    if config.ready_file is not None:
        write_ready(config.ready_file, ports, site.urls)
    print(json.dumps({"ports": ports, "urls": site.urls}), flush=True)
    while not site.stopping.wait(0.1):
        pass
    # Every request thread is a daemon: leaving main() ends them, held connections too.
    for holder in holders:
        holder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
