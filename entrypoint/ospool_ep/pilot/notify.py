"""Notify: the JSON POST on pilot start and stop to ``NOTIFY_*_URL`` (SPEC 4.1, 7.5).

A notice is best effort: bounded in wall time, every failure logged, never
raised, never fatal. It carries no secret (a :class:`Notice` has no field
for one), and no message shows the URL's path or query, which in webhook URLs
is often the secret itself.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from ospool_ep import __version__

NOTIFY_TIMEOUT_SECONDS = 5
"""Wall-time bound of one notice, connecting and answering together (SPEC 7.5)."""

Log = Callable[[Literal["info", "warning"], str], None]
"""``log(level, message)``. Only the two levels used here, so both a plain
``(str, str)`` function and the supervisor's ``Emitter.event`` (which takes
``logs.Level``, a wider Literal) type-check as one."""


@dataclass(frozen=True, slots=True)
class Notice:
    event: Literal["start", "stop"]
    name: str
    """The pilot's name (the startd's Name)."""
    site: str
    """``GLIDEIN_Site``."""
    resource: str
    """``GLIDEIN_ResourceName``."""
    reason: str
    """Why it starts or stops, in words (``"retired"``, ``"SIGTERM"``...)."""
    time: float
    """When, in seconds since the epoch; sent as ISO 8601 UTC."""

    def as_json(self) -> bytes:
        body = asdict(self)
        body["time"] = datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps(body).encode()


def post_notice(
    url: str, notice: Notice, *, log: Log, timeout: float = NOTIFY_TIMEOUT_SECONDS
) -> bool:
    """POST ``notice`` to ``url`` as JSON; True when it answered 2xx within ``timeout`` seconds.

    Never raises. The request runs in a daemon thread joined with ``timeout``:
    requests' own timeouts bound each connect and each read, not their sum, so a
    server dripping a byte a second would otherwise hold the caller for ever.
    Redirects are not followed: requests would turn the POST into a GET without
    the body, and the notice would go to a host nobody configured.
    """
    what = f"{notice.event} notice to {_shown(url)}"
    try:
        body = notice.as_json()
    except (TypeError, ValueError, OverflowError, OSError) as exc:  # a bad time or field type
        log("warning", f"{what} not sent: {type(exc).__name__} building it; carrying on without it")
        return False
    outcome: list[int | BaseException] = []
    worker = threading.Thread(
        target=_post,
        args=(url, body, timeout, outcome),
        name=f"ospool-ep-notify-{notice.event}-post",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or not outcome:
        # The worker goes on until the server lets go or the process exits; it
        # reports to nobody, so nothing is logged late.
        log("warning", f"{what} failed: no answer within {timeout:g} s; carrying on without it")
        return False
    result = outcome[0]
    if isinstance(result, BaseException):
        log("warning", f"{what} failed: {_reason(result)}; carrying on without it")
        return False
    if 200 <= result < 300:
        log("info", f"{what} delivered (HTTP {result})")
        return True
    log("warning", f"{what} failed: the server answered HTTP {result}; carrying on without it")
    return False


def send_async(url: str, notice: Notice, *, log: Log) -> threading.Thread:
    """Start :func:`post_notice` in a daemon thread and return it; the caller may join it.

    ``log`` is then called from that thread.
    """
    thread = threading.Thread(
        target=post_notice,
        args=(url, notice),
        kwargs={"log": log},
        name=f"ospool-ep-notify-{notice.event}",
        daemon=True,
    )
    thread.start()
    return thread


def _post(url: str, body: bytes, timeout: float, outcome: list[int | BaseException]) -> None:
    """The request itself: appends the status code, or the exception, to ``outcome``."""
    # requests and urllib3 take about 13 MiB of the supervisor's 30 MB (SPEC 14):
    # imported only when a notice is sent, not by every pilot that sends none.
    import requests  # noqa: PLC0415

    headers = {"Content-Type": "application/json", "User-Agent": f"ospool-ep/{__version__}"}
    try:
        with (
            requests.Session() as session,
            # stream: the status line and headers are all we need; a large or
            # endless body is never read.
            session.post(
                url,
                data=body,
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            ) as response,
        ):
            outcome.append(response.status_code)
    except Exception as exc:  # any failure at all: a notice must never take the pilot down
        outcome.append(exc)


def _shown(url: str) -> str:
    """The URL as messages may show it: scheme, host and port only."""
    # Imported here: the value parsers load the ClassAd library, which the long-lived
    # supervisor otherwise never needs (its memory, SPEC 14).
    from ospool_ep.inputs.values import redact_url  # noqa: PLC0415

    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme and parts.hostname:
            return redact_url(url)
    except ValueError:  # urlsplit and .port reject malformed hosts and ports
        pass
    return "an invalid URL (not shown)"


def _reason(exc: BaseException) -> str:
    """Why a request failed, in words, without the URL.

    requests' messages quote the whole URL, path and query included, so they are
    never logged; only the exception's kind and the system's error text are.
    """
    import requests  # noqa: PLC0415 - imported already: exc came from _post

    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "the URL is not a valid http(s) URL"
    if isinstance(exc, requests.exceptions.InvalidSchema):
        return "only http and https URLs are supported"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed"
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = _os_error(exc)
        return f"cannot connect ({cause})" if cause else "cannot connect"
    return type(exc).__name__


def _os_error(exc: BaseException) -> str:
    """The system error text (``Connection refused``) found in an exception's causes."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno and item.errno > 0:
            return os.strerror(item.errno)
        # urllib3 wraps the socket error in MaxRetryError.reason, requests in args.
        todo.extend((item.__cause__, item.__context__, getattr(item, "reason", None), *item.args))
    return ""
