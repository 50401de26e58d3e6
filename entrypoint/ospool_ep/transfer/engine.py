"""Moving objects with pelicanfs: discovery, the director's choice of caches (or the origin),
then the bytes over HTTPS, every step bounded, a failed try retried at the next cache.

pelicanfs (the Pelican project's fsspec client) does federation discovery, asks the
director, keeps the namespace's cache list and marks bad caches; a download's bytes then
come over one HTTPS GET in a worker thread (:mod:`.fetch`), an upload's with the fsspec
HTTP filesystem pelicanfs wraps. We call those steps one by one rather than ``get()`` so
that a credential is used only for a namespace that needs one (then, as pelicanfs does,
for the rest of that run's requests to the federation: its director, caches and origin),
each step has its own bound, and each failure names the step and the server.

A download is written to a hidden file beside ``LocalFileName`` and renamed only once
complete (and as long as the server said it would be): the starter never finds a partial
file under the name it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospool_ep.transfer import tokens
from ospool_ep.transfer.fetch import Fetch, HttpStatus, ShortBody
from ospool_ep.transfer.protocol import ErrorType, Failure, Outcome, Request
from ospool_ep.transfer.urls import BadUrl, ObjectUrl, parse

if TYPE_CHECKING:
    from pelicanfs.core import PelicanFileSystem


STALL_VARIABLE = "PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT"
"""The Pelican client's own knob (Client.StoppedTransferTimeout): no data for this long
ends a try. Read here too, so a site that set it for OSG's plugin gets the same bound."""
DEFAULT_STALL_SECONDS = 100.0
CONNECT_SECONDS = 30.0
"""Name lookup plus TCP and TLS set-up, per connection."""
ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 1.0
PART_SUFFIX = ".ospool-ep-part"


class TransferFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class Limits:
    stall_seconds: float = DEFAULT_STALL_SECONDS
    connect_seconds: float = CONNECT_SECONDS
    attempts: int = ATTEMPTS
    retry_pause: float = RETRY_PAUSE_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Limits:
        raw = environ.get(STALL_VARIABLE, "").strip()
        stall = parse_duration(raw) if raw else None
        return cls(stall_seconds=stall or DEFAULT_STALL_SECONDS)


def parse_duration(text: str) -> float | None:
    """``100``, ``100s``, ``2m``, ``1h``, ``1m30s`` (Go's duration words); None if not one."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    with contextlib.suppress(ValueError):
        value = float(text)
        return value if value > 0 else None
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else c
        if unit not in units or not number:
            return None
        try:
            total += float(number) * units[unit]
        except ValueError:
            return None
        number = ""
        i += len(unit)
    return total if total > 0 and not number else None


@dataclass
class Progress:
    """fsspec's callback protocol: the size the server announced, the bytes so far."""

    size: int | None = None
    value: int = 0

    def set_size(self, size: int | None) -> None:
        self.size = size

    def relative_update(self, inc: int = 1) -> None:
        self.value += inc


@dataclass
class Session:
    """One plugin run: a pelicanfs filesystem per federation, shared by its files."""

    limits: Limits
    environ: Mapping[str, str]
    filesystems: dict[str, PelicanFileSystem] = field(default_factory=dict)

    async def filesystem(self, federation: str) -> PelicanFileSystem:
        fs = self.filesystems.get(federation)
        if fs is None:
            import aiohttp  # noqa: PLC0415 - 0.3 s; only when a transfer runs
            import fsspec.implementations.http as fshttp  # noqa: PLC0415
            from pelicanfs.core import PelicanFileSystem  # noqa: PLC0415

            # fsspec hands out one cached HTTPFileSystem per set of arguments, and
            # pelicanfs puts a token it uses on that one's HTTP session: a session of
            # ours must never share it (the service runs many jobs' transfers at once).
            fshttp.HTTPFileSystem.cachable = False

            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.limits.connect_seconds,
                sock_read=self.limits.stall_seconds,
            )
            fs = PelicanFileSystem(
                federation,
                asynchronous=True,
                loop=asyncio.get_running_loop(),
                # trust_env: http(s)_proxy and no_proxy, as HTCondor's own plugins honour
                # them (the pilot sets http_proxy from OSG_SQUID_LOCATION, as OSG's does).
                client_kwargs={"timeout": timeout, "trust_env": True},
                oidc_timeout_seconds=1,
                skip_instance_cache=True,
            )
            self.filesystems[federation] = fs
        return fs

    async def close(self) -> None:
        for fs in self.filesystems.values():
            session = getattr(fs.http_file_system, "_session", None)
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.close()
        self.filesystems.clear()

    async def transfer(self, request: Request, *, upload: bool) -> Outcome:
        started = time.time()
        clock = time.monotonic()
        errors: list[str] = []
        host = ""
        total = moved = 0
        method = ""
        connect = 0.0
        failure: Failure | None = None
        attempts = 0
        try:
            obj = parse(request.url)
            method = obj.method
            token = tokens.find(self.environ, name=obj.token_name, path=obj.path, write=upload)
        except BadUrl as error:
            failure = Failure(ErrorType.SPECIFICATION, f"bad URL {request.url!r}: {error}")
        except tokens.TokenProblem as error:
            failure = Failure(ErrorType.AUTHORIZATION, str(error))
        else:
            for attempts in range(1, self.limits.attempts + 1):
                step = Step()
                try:
                    if upload:
                        total = await self.upload(obj, Path(request.local_file), token, step)
                    else:
                        total = await self.download(obj, Path(request.local_file), token, step)
                    moved, failure = total, None
                    break
                except TransferFailed as error:
                    failure = error.failure
                except Exception as error:  # every cause becomes a reason
                    failure = classify(error, step=step, obj=obj, token=token, limits=self.limits)
                finally:
                    host, connect = step.server or host, step.connect_seconds or connect
                    moved = max(moved, step.progress.value)
                errors.append(failure.message)
                if not failure.retryable or attempts == self.limits.attempts:
                    break
                await asyncio.sleep(self.limits.retry_pause * attempts)
        return Outcome(
            request=request,
            upload=upload,
            started=started,
            ended=started + (time.monotonic() - clock),
            method=method,
            total_bytes=total,
            moved_bytes=moved if failure is None else 0,
            host=host,
            local_machine=socket.gethostname(),
            attempts=max(attempts, 1),
            errors=tuple(errors),
            failure=failure,
            connect_seconds=connect,
        )

    async def download(
        self, obj: ObjectUrl, local: Path, token: tokens.Token | None, step: Step
    ) -> int:
        fs = await self.filesystem(obj.federation)
        await discover(fs)
        if token is not None:
            # Sent only where the director marks the namespace as needing one.
            fs.token = f"Bearer {token.text}"
        step.name = "asking the director"
        if obj.direct_read:
            url, director = await fs.get_origin_url(obj.path)
        else:
            url, director = await working_cache(fs, obj.path)
        step.mark_server(url)
        headers = auth_headers(director, token)
        if local.is_dir():
            raise TransferFailed(
                Failure(ErrorType.PARAMETER, f"{local} is a directory: name a file to write")
            )
        part = local.with_name(f".{local.name}.{os.getpid()}{PART_SUFFIX}")
        step.name = "reading the object"
        try:
            fetch = Fetch(
                url=url,
                destination=part,
                headers=headers,
                connect_seconds=self.limits.connect_seconds,
                stall_seconds=self.limits.stall_seconds,
                progress=step.progress,
            )
            try:
                await asyncio.to_thread(fetch.run)
            except asyncio.CancelledError:
                fetch.cancelled.set()  # the thread stops at its next read, removing the file
                raise
            size = part.stat().st_size
            if step.progress.size is not None and size != step.progress.size:
                raise TransferFailed(
                    Failure(
                        ErrorType.TRANSFER,
                        f"{step.server} sent {size} of {step.progress.size} bytes",
                        retryable=True,
                        server=step.server,
                    )
                )
            part.replace(local)
        except BaseException as error:
            part.unlink(missing_ok=True)
            if not obj.direct_read and not isinstance(error, FileNotFoundError):
                # The next try (and the batch's next file) goes to another cache; a
                # missing object is missing everywhere and says nothing of this cache.
                fs._bad_cache(url, RuntimeError(step.name))
            raise
        return size

    async def upload(
        self, obj: ObjectUrl, local: Path, token: tokens.Token | None, step: Step
    ) -> int:
        try:
            size = local.stat().st_size
        except OSError as error:
            raise TransferFailed(
                Failure(ErrorType.PARAMETER, f"cannot read {local}: {error.strerror}")
            ) from None
        if not local.is_file():
            raise TransferFailed(Failure(ErrorType.PARAMETER, f"{local} is not a regular file"))
        fs = await self.filesystem(obj.federation)
        await discover(fs)
        step.name = "asking the director for the origin"
        url, _ = await fs.get_origin_url(obj.path)
        step.mark_server(url)
        step.name = "writing the object"
        headers = {"headers": {"Authorization": f"Bearer {token.text}"}} if token else {}
        await fs.http_file_system._put_file(
            str(local), url, method="put", callback=step.progress, **headers
        )
        return size


async def discover(fs: PelicanFileSystem) -> None:
    """The federation's discovery, once per filesystem, while the step is still "finding the
    federation": pelicanfs would do it inside the director lookup, and a federation that is
    down would read as a director that is."""
    await fs._set_director_url()


async def working_cache(fs: PelicanFileSystem, path: str) -> tuple[str, Any]:
    """pelicanfs's choice of cache; in a namespace that needs a token, the director's first
    cache when pelicanfs finds none working.

    pelicanfs probes caches with HEAD and takes any answer but 2xx, 3xx or 404 for a broken
    cache, a 401/403 for a refused or missing token too: the job would be told "no working
    cache", retried, and its credential never refreshed. Reading from the first cache lets
    that cache's own answer (HTTP 403: Authorization, ShouldRefresh) be the reason.
    """
    from pelicanfs.dir_header_parser import parse_director_response  # noqa: PLC0415
    from pelicanfs.exceptions import NoAvailableSource  # noqa: PLC0415

    try:
        url, director = await fs.get_working_cache(path)
    except NoAvailableSource:
        director = parse_director_response(await fs.get_director_headers(path))
        namespace = director.x_pel_ns_hdr
        if namespace is None or not namespace.require_token or not director.object_servers:
            raise
        url = director.object_servers[0]
    return url, director


@dataclass
class Step:
    """Where a try is: what a failure's message names."""

    name: str = "finding the federation"
    server: str = ""
    started: float = field(default_factory=time.monotonic)
    connect_seconds: float = 0.0
    progress: Progress = field(default_factory=Progress)

    def mark_server(self, url: str) -> None:
        self.server = urllib.parse.urlsplit(url).netloc
        self.connect_seconds = time.monotonic() - self.started


def auth_headers(director: Any, token: tokens.Token | None) -> dict[str, str]:
    namespace = getattr(director, "x_pel_ns_hdr", None)
    if token is None or namespace is None or not namespace.require_token:
        return {}
    return {"Authorization": f"Bearer {token.text}"}


def classify(
    error: BaseException,
    *,
    step: Step,
    obj: ObjectUrl,
    token: tokens.Token | None,
    limits: Limits,
) -> Failure:
    """A reason a site admin or a user can act on, and whether another try may help."""
    server = step.server or obj.federation_host
    where = f"{step.name} ({server})"
    if isinstance(error, FileNotFoundError):
        return Failure(ErrorType.SPECIFICATION, f"{obj.path}: no such object in {obj.federation}")
    for judge in (_http_failure, _body_failure, _network_failure, _federation_failure):
        failure = judge(error, where=where, server=server, step=step, obj=obj, token=token)
        if failure is not None:
            return failure
    if isinstance(error, TimeoutError):
        return _timeout_failure(error, where=where, server=server, step=step, limits=limits)
    if isinstance(error, OSError):
        return Failure(ErrorType.TRANSFER, f"{where}: {error}")
    return Failure(ErrorType.TRANSFER, f"{where}: {type(error).__name__}: {error}")


def _http_failure(
    error: BaseException, *, where: str, server: str, token: tokens.Token | None, **_: object
) -> Failure | None:
    import aiohttp  # noqa: PLC0415

    if isinstance(error, HttpStatus):
        status, message = error.status, error.reason
    elif isinstance(error, aiohttp.ClientResponseError):
        status, message = error.status, error.message
    else:
        return None
    if status in (401, 403):
        hint = (
            "the federation refused the job's token"
            if token
            else "the object needs a token: name the job's credential as NAME+osdf://"
        )
        return Failure(
            ErrorType.AUTHORIZATION,
            f"{where}: HTTP {status}: {hint}",
            server=server,
            refresh=token is not None,
        )
    return Failure(
        ErrorType.TRANSFER if status < 500 else ErrorType.CONTACT,
        f"{where}: HTTP {status} {message}",
        retryable=status >= 500 or status == 429,
        server=server,
    )


def _body_failure(
    error: BaseException, *, where: str, server: str, step: Step, **_: object
) -> Failure | None:
    """The object's bytes stopped short or the answer was not HTTP."""
    import aiohttp  # noqa: PLC0415

    if isinstance(error, ShortBody):
        return Failure(
            ErrorType.TRANSFER,
            f"{where}: connection closed after {error.received} of {error.expected} bytes",
            retryable=True,
            server=server,
        )
    if isinstance(error, http.client.HTTPException):
        return Failure(
            ErrorType.CONTACT, f"{where}: bad answer: {error!r}", retryable=True, server=server
        )
    if isinstance(error, aiohttp.ClientPayloadError):
        size = f" of {step.progress.size}" if step.progress.size else ""
        return Failure(
            ErrorType.TRANSFER,
            f"{where}: connection closed after {step.progress.value}{size} bytes",
            retryable=True,
            server=server,
        )
    return None


def _network_failure(
    error: BaseException, *, where: str, server: str, step: Step, **_: object
) -> Failure | None:
    import aiohttp  # noqa: PLC0415

    if isinstance(error, aiohttp.ClientConnectorDNSError) or _is_dns(error):
        return Failure(
            ErrorType.RESOLUTION,
            f"cannot resolve {server}: no such federation or host (check the URL's host)",
            server=server,
        )
    if isinstance(error, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return Failure(
            ErrorType.CONTACT, f"{where}: TLS certificate not trusted: {error}", server=server
        )
    if isinstance(error, aiohttp.ClientConnectionError | ConnectionError) and not isinstance(
        error, TimeoutError
    ):
        return Failure(ErrorType.CONTACT, f"{where}: {error}", retryable=True, server=server)
    return None


def _federation_failure(
    error: BaseException, *, server: str, obj: ObjectUrl, **_: object
) -> Failure | None:
    from pelicanfs import exceptions as pelican  # noqa: PLC0415

    if isinstance(error, pelican.NoAvailableSource):
        return Failure(
            ErrorType.CONTACT,
            f"no working cache for {obj.path} in {obj.federation}",
            retryable=True,
            server=server,
        )
    if isinstance(error, pelican.InvalidMetadata | pelican.BadDirectorResponse):
        return Failure(
            ErrorType.RESOLUTION,
            f"{obj.federation_host} is not a Pelican federation (its discovery or director "
            "answer was not understood)",
            server=server,
        )
    return None


def _timeout_failure(
    error: TimeoutError, *, where: str, server: str, step: Step, limits: Limits
) -> Failure:
    import aiohttp  # noqa: PLC0415

    if isinstance(error, aiohttp.ConnectionTimeoutError):
        message = f"{where}: could not connect within {limits.connect_seconds:g} s"
    elif step.progress.value:
        message = (
            f"{where}: stalled: no data for {limits.stall_seconds:g} s after "
            f"{step.progress.value} bytes"
        )
    else:
        message = f"{where}: no answer within {limits.stall_seconds:g} s"
    return Failure(ErrorType.CONTACT, message, retryable=True, server=server)


def _is_dns(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def run_all(
    requests: Sequence[Request], *, upload: bool, limits: Limits, environ: Mapping[str, str]
) -> list[Outcome]:
    session = Session(limits=limits, environ=environ)
    try:
        return [await session.transfer(request, upload=upload) for request in requests]
    finally:
        await session.close()
