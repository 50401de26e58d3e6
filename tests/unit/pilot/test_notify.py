"""Contracts of ospool_ep.pilot.notify: the start/stop notice, best effort and bounded (SPEC 7.5).

Real servers on 127.0.0.1 and ephemeral ports: an http.server that records what
it receives, and raw sockets that misbehave (never answer, drip bytes). Every
webhook URL here has a secret in its path and query, and no log line may show it.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from ospool_ep import __version__
from ospool_ep.pilot.notify import NOTIFY_TIMEOUT_SECONDS, Notice, post_notice, send_async

SECRET_PATH = "/hooks/T000SECRETPATH/B000"
SECRET_QUERY = "?sig=QUERYSECRET"

NOTICE = Notice(
    event="start",
    name="slot1@pilot-1.example.org",
    site="Example Site",
    resource="Example_CE",
    reason="started",
    time=1_700_000_000.25,
)


@dataclass
class Log:
    """A ``log(level, message)`` callable that keeps what it was given."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    @property
    def text(self) -> str:
        return "\n".join(f"{level}: {message}" for level, message in self.lines)

    def assert_no_secret(self) -> None:
        for secret in ("SECRET", "hooks", "sig="):
            assert secret not in self.text


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder(http.server.ThreadingHTTPServer):
    """Answers every POST with ``status`` and records it."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[Received] = []
        super().__init__(("127.0.0.1", 0), RecordingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{SECRET_PATH}{SECRET_QUERY}"


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.received.append(Received(self.path, dict(self.headers.items()), body))
        self.send_response(self.server.status)
        if self.server.status in (301, 302, 307, 308):
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows what matters."""


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    server = Recorder(getattr(request, "param", 200))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


Behaviour = Callable[[socket.socket, threading.Event], None]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Behaviour], str]]:
    """``start(behaviour)`` -> URL of a TCP server that runs ``behaviour(conn, stop)``
    on each connection it accepts; everything is closed at teardown."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def serve(listener: socket.socket, behaviour: Behaviour) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                behaviour(conn, stop)

    def start(behaviour: Behaviour) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)
        listeners.append(listener)
        thread = threading.Thread(target=serve, args=(listener, behaviour), daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}{SECRET_PATH}{SECRET_QUERY}"

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)
    for listener in listeners:
        listener.close()


def never_answer(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait()


def drip(conn: socket.socket, stop: threading.Event) -> None:
    """A status line, then one header byte every 0.1 s: each read succeeds, none ends."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.wait(0.1):
        try:
            conn.sendall(b"X")
        except OSError:
            return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def timed_post(url: str, *, timeout: float = 1) -> tuple[bool, float, Log]:
    log = Log()
    began = time.monotonic()
    delivered = post_notice(url, NOTICE, log=log, timeout=timeout)
    return delivered, time.monotonic() - began, log


def test_the_timeout_is_five_seconds() -> None:
    assert NOTIFY_TIMEOUT_SECONDS == 5


def test_importing_notify_does_not_import_requests() -> None:
    """requests costs ~13 MiB of the 30 MB RSS budget (SPEC 14): paid only when a notice is sent."""
    code = "import sys, ospool_ep.pilot.notify; print('requests' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_a_notice_arrives_as_json_with_exactly_the_six_fields(recorder: Recorder) -> None:
    """{event, name, site, resource, reason, time}, time in ISO 8601 UTC; nothing else."""
    log = Log()
    assert post_notice(recorder.url, NOTICE, log=log) is True
    [got] = recorder.received
    assert got.path == SECRET_PATH + SECRET_QUERY
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == f"ospool-ep/{__version__}"
    assert json.loads(got.body) == {
        "event": "start",
        "name": "slot1@pilot-1.example.org",
        "site": "Example Site",
        "resource": "Example_CE",
        "reason": "started",
        "time": "2023-11-14T22:13:20Z",
    }
    assert log.lines[0][0] == "info"
    assert "delivered" in log.text
    log.assert_no_secret()


def test_a_notice_has_no_field_that_could_carry_the_token() -> None:
    """SPEC 4.1: notices never carry the token; there is nowhere to put it."""
    assert {f.name for f in dataclasses.fields(Notice)} == {
        "event",
        "name",
        "site",
        "resource",
        "reason",
        "time",
    }
    assert "token" not in NOTICE.as_json().decode().lower()


@pytest.mark.parametrize("recorder", [500, 404, 302], indirect=True)
def test_a_non_2xx_answer_returns_false_and_is_logged(recorder: Recorder) -> None:
    """Redirects count as failures: following one would drop the POST body and post elsewhere."""
    log = Log()
    assert post_notice(recorder.url, NOTICE, log=log) is False
    assert len(recorder.received) == 1
    [(level, message)] = log.lines
    assert level == "warning"
    assert f"HTTP {recorder.status}" in message
    assert f"start notice to http://127.0.0.1:{recorder.server_address[1]}/..." in message
    log.assert_no_secret()


@pytest.mark.parametrize("userinfo", ["", "user:PASSWORDSECRET@"])
def test_connection_refused_returns_false_fast_and_is_logged(userinfo: str) -> None:
    port = free_port()
    url = f"http://{userinfo}127.0.0.1:{port}{SECRET_PATH}{SECRET_QUERY}"
    delivered, took, log = timed_post(url, timeout=NOTIFY_TIMEOUT_SECONDS)
    assert delivered is False
    assert took < 1
    [(level, message)] = log.lines
    assert level == "warning"
    assert f"to http://127.0.0.1:{port}/... failed: cannot connect (Connection refused)" in message
    log.assert_no_secret()


def test_a_server_that_never_answers_is_given_up_after_the_timeout(
    raw_server: Callable[[Behaviour], str],
) -> None:
    delivered, took, log = timed_post(raw_server(never_answer), timeout=1)
    assert delivered is False
    assert 0.9 < took < 2
    assert log.lines[0][0] == "warning"
    log.assert_no_secret()


def test_a_server_dripping_bytes_cannot_hold_the_caller_past_the_timeout(
    raw_server: Callable[[Behaviour], str],
) -> None:
    """Each read gets a byte before requests' read timeout, so only the wall-time bound stops it."""
    delivered, took, log = timed_post(raw_server(drip), timeout=1)
    assert delivered is False
    assert 0.9 < took < 2
    assert "no answer within 1 s" in log.text
    log.assert_no_secret()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "127.0.0.1/hooks/SECRET",
        "ftp://127.0.0.1/hooks/SECRET",
        "http://127.0.0.1:99999/hooks/SECRET",
        "http://127.0.0.1:port/hooks/SECRET",
        "http:///hooks/SECRET",
        "http://[::1/hooks/SECRET",
    ],
)
def test_an_invalid_url_returns_false_is_logged_and_never_raises(url: str) -> None:
    delivered, took, log = timed_post(url)
    assert delivered is False
    assert took < 1
    [(level, _)] = log.lines
    assert level == "warning"
    log.assert_no_secret()


def test_a_time_that_cannot_be_written_returns_false_instead_of_raising(
    recorder: Recorder,
) -> None:
    log = Log()
    bad = dataclasses.replace(NOTICE, time=float("nan"))
    assert post_notice(recorder.url, bad, log=log) is False
    assert recorder.received == []
    assert "not sent" in log.text


def test_send_async_delivers_from_a_daemon_thread(recorder: Recorder) -> None:
    log = Log()
    stop = dataclasses.replace(NOTICE, event="stop", reason="retired")
    thread = send_async(recorder.url, stop, log=log)
    assert thread.daemon
    thread.join(NOTIFY_TIMEOUT_SECONDS + 1)
    assert not thread.is_alive()
    [got] = recorder.received
    assert json.loads(got.body)["event"] == "stop"
    assert "stop notice" in log.text
    assert "delivered" in log.text
