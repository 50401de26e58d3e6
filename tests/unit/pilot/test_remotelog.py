"""Contracts of ospool_ep.pilot.remotelog: the log stream, also sent to syslog (SPEC 7.3).

Every receiver is a real socket on 127.0.0.1 run by the test: one that reads and
parses the octet-counted RFC 5424 messages, one that accepts and never reads,
a port nobody listens on, and a listener whose backlog is full (its SYNs are
dropped: a black hole on loopback). Timing is printed, never asserted: the
assertions are on what arrived, on drop counts, and that every call returned.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from jwt_factory import token

from ospool_ep.findings import Findings, Status
from ospool_ep.inputs.settings import load_settings
from ospool_ep.pilot import remotelog
from ospool_ep.pilot.logs import Emitter
from ospool_ep.pilot.remotelog import Decision, RemoteLog, Target, decide

# RFC 5424 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
RFC5424 = re.compile(
    r"<(?P<pri>[0-9]{1,3})>1 (?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z) "
    r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    r"(?P<msgid>[!-~]{1,32}) - (?P<msg>.*)",
    re.DOTALL,
)


def unframe(data: bytes) -> list[bytes]:
    """Split RFC 6587 octet-counted frames; fails the test on anything else."""
    messages = []
    while data:
        length, space, rest = data.partition(b" ")
        assert space and length.isdigit(), data[:40]
        size = int(length)
        assert len(rest) >= size
        messages.append(rest[:size])
        data = rest[size:]
    return messages


class Receiver:
    """A TCP syslog receiver on 127.0.0.1: accepts connections and keeps every byte."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.data = bytearray()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while chunk := conn.recv(65536):
                with self.lock:
                    self.data += chunk

    def messages(self, count: int, *, within: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                data = bytes(self.data)
            try:
                found = unframe(data)
            except AssertionError:
                found = []  # a frame still arriving
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"receiver got {bytes(self.data)[:200]!r}")

    def close(self) -> None:
        self.server.close()


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def plain(port: int) -> Target:
    return Target(host="127.0.0.1", port=port, tls=False)


def remote_emitter(target: Target, **options: float) -> tuple[Emitter, RemoteLog, io.StringIO]:
    stream = io.StringIO()
    emitter = Emitter(fmt="text", stream=stream)
    sender = RemoteLog(target, report=emitter.local_event, hostname="pilot-host", **options)  # type: ignore[arg-type]
    sender.start()
    emitter.remote = sender
    return emitter, sender, stream


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed: connects are refused)."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flood(emitter: Emitter, lines: int, *, width: int = 1000) -> float:
    """Emit ``lines`` daemon lines; the mean seconds per line, printed by the caller."""
    text = "x" * width
    start = time.perf_counter()
    for n in range(lines):
        emitter.daemon_line("StartLog", f"{n} {text}")
    return (time.perf_counter() - start) / lines


# --- where the stream goes ----------------------------------------------------


def test_by_default_the_pools_central_receiver_is_named_but_never_contacted() -> None:
    """OSG's central syslog needs a registry certificate bought with the token: nothing is sent."""
    prod = decide({})
    itb = decide({"POOL": "ospool", "ITB": "yes"})
    path = decide({"POOL": "prod-path-facility"})
    assert (prod.target, itb.target, path.target) == (None, None, None)
    assert "syslog.osg.chtc.io" in prod.message and "prod-ospool" in prod.message
    assert "syslog.osgdev.chtc.io" in itb.message
    assert "syslog.osg.chtc.io" in path.message
    assert "token" in prod.message and not prod.warn


def test_a_pool_given_as_a_host_sends_nothing_unless_syslog_host_is_set() -> None:
    """As OSG's container for ``POOL=host:port``; a receiver the site names works with any pool."""
    assert decide({"POOL": "cm.example.org:9618"}).target is None
    chosen = decide({"POOL": "cm.example.org:9618", "SYSLOG_HOST": "logs.example.org:1514"})
    assert chosen.target == Target("logs.example.org", 1514, tls=False)
    assert chosen.message == "the log stream also goes to logs.example.org:1514 (plain TCP)"


def test_syslog_host_without_a_port_is_tls_on_6514_as_upstream() -> None:
    assert decide({"SYSLOG_HOST": "logs.example.org"}).target == Target(
        "logs.example.org", 6514, tls=True
    )
    assert decide({"SYSLOG_HOST": "[2001:db8::5]:514"}).target == Target(
        "2001:db8::5", 514, tls=False
    )


def test_enable_remote_syslog_false_sends_nothing() -> None:
    decision = decide({"ENABLE_REMOTE_SYSLOG": "off", "SYSLOG_HOST": "logs.example.org"})
    assert decision == Decision(
        None, "not sent: ENABLE_REMOTE_SYSLOG is false; logs go to stdout only"
    )


def test_naming_osgs_central_receiver_explicitly_is_a_warning_with_the_fix() -> None:
    decision = decide({"SYSLOG_HOST": "SYSLOG.OSG.CHTC.IO."})
    assert decision.target is None and decision.warn
    assert "ENABLE_REMOTE_SYSLOG=false" in decision.fix


@pytest.mark.parametrize(
    ("environ", "name", "expected"),
    [
        ({"ENABLE_REMOTE_SYSLOG": "sometimes"}, "ENABLE_REMOTE_SYSLOG", "is not a boolean"),
        ({"SYSLOG_HOST": "logs.example.org:70000"}, "SYSLOG_HOST", "port 70000 is out of range"),
        ({"SYSLOG_HOST": "tcp://logs.example.org"}, "SYSLOG_HOST", "is not host[:port]"),
        ({"SYSLOG_HOST": "logs example org"}, "SYSLOG_HOST", "is not a valid host name"),
        ({"SYSLOG_HOST": "::1"}, "SYSLOG_HOST", "is not host[:port]"),
    ],
)
def test_bad_remote_syslog_settings_fail_naming_the_variable_and_send_nothing(
    environ: dict[str, str], name: str, expected: str
) -> None:
    findings = Findings()
    site = {"GLIDEIN_Site": "S", "GLIDEIN_ResourceName": "R", **environ}
    assert load_settings(site, findings=findings) is None
    failure = next(f for f in findings if f.status is Status.FAIL)
    assert failure.subject == name and expected in failure.message
    assert "host" in failure.fix or "true or false" in failure.fix
    assert decide(site).target is None


# --- messages -----------------------------------------------------------------


def test_a_receiver_gets_every_line_as_an_octet_counted_rfc5424_message() -> None:
    """Supervisor events (severity by level) and daemon lines (MSGID: the log's name)."""
    with receiver() as server:
        emitter, sender, _ = remote_emitter(plain(server.port))
        emitter.event("warning", "pilot started", slots=4)
        emitter.daemon_line("StartLog", "11/21/26 05:00:00 (pid:42) ERROR something")
        emitter.daemon_line("StarterLog.slot1_1", "ünïcode line")
        got = [RFC5424.fullmatch(m.decode()) for m in server.messages(3)]
        sender.close(timeout=2)
    assert all(got), got
    first, second, third = (m.groupdict() for m in got if m)
    assert (first["pri"], first["msgid"]) == ("132", "supervisor")  # local0.warning
    assert first["msg"] == "pilot started slots=4"
    assert (second["pri"], second["msgid"]) == ("131", "StartLog")  # local0.err
    assert second["msg"] == "11/21/26 05:00:00 (pid:42) ERROR something"
    assert (third["pri"], third["msgid"]) == ("134", "StarterLog.slot1_1")
    assert third["msg"] == "ünïcode line"
    assert {m["host"] for m in (first, second, third)} == {"pilot-host"}
    assert {m["app"] for m in (first, second, third)} == {"ospool-ep"}


def test_what_is_sent_is_redacted_as_stdout_is() -> None:
    jwt = token(iat=1, exp=2, jti="secret-id")
    with receiver() as server:
        emitter, sender, stream = remote_emitter(plain(server.port))
        emitter.event("info", f"read {jwt}", header=f"TOKEN={jwt}")
        emitter.daemon_line("MasterLog", f"bearer {jwt}")
        got = b"".join(server.messages(2))
        sender.close(timeout=2)
    assert jwt.encode() not in got and jwt.split(".")[1].encode() not in got
    assert got.count(b"redacted]") == 3
    assert jwt not in stream.getvalue()


def test_a_long_line_is_cut_to_8192_octets_on_a_character_boundary() -> None:
    message = remotelog.rfc5424(
        level="info", source="StartLog", text="é" * 10_000, when=0.0, hostname="h", procid=1
    )
    assert len(message) <= remotelog.MAX_MESSAGE_BYTES
    message.decode()  # still UTF-8


def test_header_fields_are_printable_ascii_without_spaces() -> None:
    message = remotelog.rfc5424(
        level="info", source="bad name\n", text="a\nb", when=0.0, hostname="my host", procid=7
    ).decode()
    assert message == "<134>1 1970-01-01T00:00:00.000Z my_host ospool-ep 7 bad_name_ - a\\nb"


# --- receivers that do not take the lines -------------------------------------


def test_a_receiver_that_accepts_and_never_reads_costs_the_loop_nothing_but_drops() -> None:
    """Its window fills; sendall times out; the queue fills and lines are dropped, counted."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    emitter, sender, stream = remote_emitter(
        plain(server.getsockname()[1]), max_lines=500, send_timeout=0.5, backoff_first=0.2
    )
    per_line = flood(emitter, 20_000)
    start = time.perf_counter()
    counts = sender.close(timeout=0.5)
    print(
        f"\nnever-read receiver: {per_line * 1e6:.1f} us per line, "
        f"close {time.perf_counter() - start:.3f} s, {counts}"
    )
    assert counts.dropped > 10_000
    assert counts.sent + counts.dropped <= 20_000
    assert "remote syslog" in stream.getvalue()
    server.close()
    for conn in accepted:
        conn.close()


def test_a_refused_port_drops_lines_and_says_so_once() -> None:
    emitter, sender, stream = remote_emitter(plain(free_port()), max_lines=100, backoff_first=0.05)
    per_line = flood(emitter, 5_000, width=100)
    time.sleep(0.3)  # a few retries
    counts = sender.close(timeout=1)
    print(f"\nrefused port: {per_line * 1e6:.1f} us per line, {counts}")
    assert counts.failures >= 1 and counts.sent == 0
    assert counts.dropped == 5_000 and not counts.connected
    warnings = [line for line in stream.getvalue().splitlines() if "cannot connect" in line]
    assert len(warnings) == 1 and "Connection refused" in warnings[0]


def test_a_black_holed_receiver_times_out_in_the_sender_never_in_the_loop() -> None:
    """A listener with a full backlog drops new SYNs: connect() hangs until its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue (listen(0) still admits one or two)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    emitter, sender, _ = remote_emitter(plain(port), max_lines=100, connect_timeout=0.5)
    per_line = flood(emitter, 5_000, width=100)
    start = time.perf_counter()
    counts = sender.close(timeout=1)
    closed = time.perf_counter() - start
    print(f"\nblack-holed: {per_line * 1e6:.1f} us per line, close {closed:.3f} s, {counts}")
    assert counts.sent == 0 and not counts.connected
    assert counts.dropped >= 4_900
    for sock in (*fillers, server):
        sock.close()


def test_tls_to_a_receiver_without_a_trusted_certificate_sends_no_plain_text() -> None:
    """Port 6514's TLS: a server that cannot complete the handshake gets only a ClientHello."""
    with receiver() as server:
        target = Target(host="127.0.0.1", port=server.port, tls=True)
        emitter, sender, _ = remote_emitter(target, connect_timeout=1.0)
        emitter.event("info", "a line that must not travel in the clear")
        deadline = time.monotonic() + 10
        while sender.counts().failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = sender.close(timeout=1)
        with server.lock:
            data = bytes(server.data)
    assert counts.failures >= 1 and counts.sent == 0
    assert data[:2] == b"\x16\x03"  # a TLS handshake record
    assert b"must not travel" not in data


def test_closing_while_the_receiver_is_dead_waits_for_nothing() -> None:
    emitter, sender, _ = remote_emitter(plain(free_port()), backoff_first=30)
    emitter.event("info", "one")
    time.sleep(0.2)
    start = time.perf_counter()
    counts = sender.close(timeout=30)
    print(f"\nclose with a dead receiver: {time.perf_counter() - start:.4f} s")
    assert not counts.connected and counts.dropped == 1


def test_the_sender_thread_inherits_the_supervisors_blocked_signals(tmp_path: Path) -> None:
    """Started after block_signals (run.attach_remote), SIGTERM stays blocked in its thread."""
    script = tmp_path / "mask.py"
    port = free_port()
    script.write_text(
        "import io, sys, threading\n"
        "from ospool_ep.pilot import run\n"
        "from ospool_ep.pilot.logs import Emitter\n"
        "emitter = Emitter(fmt='text', stream=io.StringIO())\n"
        f"run.attach_remote(emitter, {{'POOL': 'cm:9618', 'SYSLOG_HOST': '127.0.0.1:{port}'}})\n"
        "thread = next(t for t in threading.enumerate() if t.name == 'remote-syslog')\n"
        "status = open(f'/proc/self/task/{thread.native_id}/status').read()\n"
        "print(next(l for l in status.splitlines() if l.startswith('SigBlk')))\n"
        "run.detach_remote(emitter)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    blocked = int(out.split()[1], 16)
    assert blocked & (1 << (15 - 1)), out  # SIGTERM is 15
