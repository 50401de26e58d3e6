"""End-to-end: the pilot's log stream at a syslog receiver on the pool network (SPEC 7.3).

A receiver (python3 from the image under test, in its own container on the pool
network) takes octet-counted RFC 5424 messages over TCP and prints each one on
a line. The pilots name it with ``SYSLOG_HOST=<ip>:1514`` (plain TCP); a second
pilot names a port nobody listens on and must start and stop as ever.

Needs podman and the built image; skipped with the reason otherwise.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pool
from conftest import Pilots, container_marks

pytestmark = container_marks()

RFC5424 = re.compile(
    r"<[0-9]{1,3}>1 [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z [!-~]+ ospool-ep "
    r"[0-9]+ (?P<msgid>[!-~]+) - (?P<msg>.*)"
)

RECEIVER = """\
import socketserver, sys
class Syslog(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            length = b""
            while (c := self.rfile.read(1)) not in (b" ", b""):
                length += c
            if not length.isdigit():
                return
            message = self.rfile.read(int(length))
            sys.stdout.write("MSG " + message.decode(errors="replace") + "\\n")
            sys.stdout.flush()
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 1514), Syslog).serve_forever()
"""


def test_a_pilot_sends_its_log_stream_to_the_syslog_host_it_is_given(
    pilots: Pilots, tmp_path: Path
) -> None:
    """Supervisor events from both halves and the daemons' lines arrive, RFC 5424-shaped,
    the token nowhere in them."""
    test_pool = pilots.pool
    script = tmp_path / "syslog.py"
    script.write_text(RECEIVER)
    script.chmod(0o644)
    receiver = test_pool.run_container(
        "syslog", entrypoint=["python3", "/syslog.py"], volumes=[(script, "/syslog.py", "ro")]
    )
    try:
        address = f"{pool._container_ip(receiver, test_pool.network.name)}:1514"

        def received() -> list[str]:
            out = receiver.get_wrapped_container().logs(stderr=False).decode()
            return [line[4:] for line in out.splitlines() if line.startswith("MSG ")]

        pilot = pilots.start("ep-syslog", {"SYSLOG_HOST": address})
        assert f"the log stream also goes to {address} (plain TCP)" in pilot.logs()
        pool.wait_until(
            lambda: any(" StartLog " in m for m in received()), timeout=30, what="StartLog lines"
        )
        pilot.signal("SIGTERM")
        assert pilot.wait_exit(20) == 0, pilot.logs()

        def ended() -> list[str] | None:
            got = received()
            return got if any("pilot ended" in m for m in got) else None

        messages = pool.wait_until(ended, timeout=10, what="the pilot's last line")
        parsed = [RFC5424.fullmatch(m) for m in messages]
        assert all(parsed), [m for m, p in zip(messages, parsed, strict=True) if not p][:3]
        sources = {p["msgid"] for p in parsed if p}
        assert {"supervisor", "MasterLog", "StartLog"} <= sources, sources
        texts = "\n".join(messages)
        assert "pilot configured" in texts  # the preparing half, before the exec
        assert "pilot ended" in texts  # the supervising half, at its end
        assert pilot.token not in texts and pilot.token.split(".")[2] not in texts
        print(f"\nsyslog receiver: {len(messages)} messages from {sorted(sources)}")
    finally:
        test_pool.remove_pilot("syslog")


def test_a_dead_syslog_host_neither_delays_nor_stops_the_pilot(pilots: Pilots) -> None:
    """A port that refuses: one warning, the slot joins, SIGTERM still exits 0 at once."""
    dead = f"{pilots.pool.cm_ip}:1"
    pilot = pilots.start("ep-deadlog", {"SYSLOG_HOST": dead})
    print(f"\ndead syslog host: slot visible {pilot.slot_seconds:.2f} s after create")
    sent = pilot.signal("SIGTERM")
    code = pilot.wait_exit(20)
    latency = time.monotonic() - sent
    print(f"dead syslog host: SIGTERM -> exit {latency:.2f} s")
    logs = pilot.logs()
    assert code == 0, logs
    assert f"remote syslog: cannot connect to {dead} (plain TCP)" in logs
    assert "pilot ended" in logs
