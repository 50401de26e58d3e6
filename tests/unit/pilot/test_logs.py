"""Contracts of ospool_ep.pilot.logs: one output stream of events and daemon log lines (SPEC 7.3).

The emitter writes into a real text stream (``io.StringIO``, or a real pipe for
the broken-stream case) with a fixed clock; each test reads back what it wrote.
The tailer that feeds it the daemons' lines is tested in tests/unit/pilot/test_logtail.py.
"""

from __future__ import annotations

import contextlib
import io
import os

from jwt_factory import token
from log_records import clock, json_emitter, records

from ospool_ep.pilot.logs import Emitter, redact

# --- Emitter -----------------------------------------------------------------


def test_text_events_are_one_line_with_time_source_level_message_and_fields() -> None:
    """Text: ``<UTC second>Z supervisor <level>: <msg> key=value``; spaced values are quoted."""
    stream = io.StringIO()
    emitter = Emitter(fmt="text", stream=stream, clock=clock)
    emitter.event("info", "pilot started", slots=4, name="slot one", drain=False, site="UW")
    assert stream.getvalue() == (
        '2026-11-21T05:00:00Z supervisor info: pilot started slots=4 name="slot one" '
        "drain=false site=UW\n"
    )


def test_text_daemon_lines_are_tagged_with_their_log_name() -> None:
    """Text: ``<UTC second>Z <log name>: <the line as HTCondor wrote it>``."""
    stream = io.StringIO()
    emitter = Emitter(fmt="text", stream=stream, clock=clock)
    emitter.daemon_line("StartLog", "11/21/26 05:00:00 (pid:42) slot1: state Unclaimed")
    assert stream.getvalue() == (
        "2026-11-21T05:00:00Z StartLog: 11/21/26 05:00:00 (pid:42) slot1: state Unclaimed\n"
    )


def test_a_multi_line_message_stays_one_text_line() -> None:
    """A newline inside a message is escaped: one event is always one line."""
    stream = io.StringIO()
    Emitter(fmt="text", stream=stream, clock=clock).event("error", "failed:\nTraceback")
    assert stream.getvalue() == "2026-11-21T05:00:00Z supervisor error: failed:\\nTraceback\n"


def test_json_events_carry_ts_level_source_msg_and_their_fields() -> None:
    """JSON: one object per line with ``ts`` (UTC, milliseconds), level, source, msg and fields."""
    emitter, stream = json_emitter()
    emitter.event("warning", "memory capped", requested_mb=8000, limit_mb=4096, repos=["a", "b"])
    emitter.event("debug", "tick")
    assert records(stream) == [
        {
            "ts": "2026-11-21T05:00:00.250Z",
            "level": "warning",
            "source": "supervisor",
            "msg": "memory capped",
            "requested_mb": 8000,
            "limit_mb": 4096,
            "repos": ["a", "b"],
        },
        {"ts": "2026-11-21T05:00:00.250Z", "level": "debug", "source": "supervisor", "msg": "tick"},
    ]


def test_a_field_named_like_a_json_key_does_not_replace_it() -> None:
    """A field called ``ts``/``level``/``source``/``msg`` is kept as ``field_<name>``."""
    emitter, stream = json_emitter()
    emitter.event("info", "m", source="cvmfs", msg="other", level=3)
    [record] = records(stream)
    assert record["source"] == "supervisor"
    assert record["msg"] == "m"
    assert record["level"] == "info"
    assert (record["field_source"], record["field_msg"], record["field_level"]) == (
        "cvmfs",
        "other",
        3,
    )


def test_json_daemon_lines_get_a_level_guessed_from_htcondor_words() -> None:
    """HTCondor's ``ERROR`` and ``WARNING`` become levels; every other line is info."""
    emitter, stream = json_emitter()
    emitter.daemon_line("MasterLog", "05:00:00 ERROR: Can't open config")
    emitter.daemon_line("StartLog", "05:00:00 WARNING: low disk")
    emitter.daemon_line("StarterLog.slot1_1", "05:00:00 Job 12.0 started")
    assert [(r["source"], r["level"]) for r in records(stream)] == [
        ("MasterLog", "error"),
        ("StartLog", "warning"),
        ("StarterLog.slot1_1", "info"),
    ]


def test_a_jwt_in_a_daemon_line_is_redacted_in_both_formats() -> None:
    """No IDTOKEN reaches the output, whichever format."""
    secret = token()
    line = f"05:00:00 Trying token {secret} for pool"
    text = io.StringIO()
    Emitter(fmt="text", stream=text, clock=clock).daemon_line("StartLog", line)
    emitter, stream = json_emitter()
    emitter.daemon_line("StartLog", line)
    for output in (text.getvalue(), stream.getvalue()):
        assert secret.split(".")[2] not in output
        assert "Trying token [token redacted] for pool" in output


def test_a_jwt_in_an_event_field_is_redacted_in_both_formats() -> None:
    """Fields are redacted too, nested ones included, and the JSON stays valid."""
    secret = token()
    text = io.StringIO()
    Emitter(fmt="text", stream=text, clock=clock).event("info", "m", auth=f"Bearer {secret}")
    emitter, stream = json_emitter()
    emitter.event("info", "m", auth=f"Bearer {secret}", env={"IDTOKEN": f"TOKEN={secret}"})
    assert secret not in text.getvalue()
    assert 'auth="Bearer [token redacted]"' in text.getvalue()
    [record] = records(stream)
    assert record["auth"] == "Bearer [token redacted]"
    assert record["env"] == {"IDTOKEN": "TOKEN=[redacted]"}


def test_redact_hides_token_assignments_and_leaves_ordinary_lines_alone() -> None:
    """``TOKEN=<value>`` loses its value; HTCondor's own words are untouched."""
    assert redact("env IDTOKEN=abc.def ok") == "env IDTOKEN=[redacted] ok"
    assert redact("x token=s3cr3t") == "x token=[redacted]"
    assert redact(f"TOKEN={token()}") == "TOKEN=[redacted]"
    ordinary = "11/21/26 05:00:00 (pid:7) AUTHENTICATE: methods TOKEN,SSL; eyJ alone"
    assert redact(ordinary) == ordinary


def test_a_broken_pipe_on_the_output_is_tolerated() -> None:
    """Nobody reads stdout any more: lines are dropped and the emitter never raises."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: PTH123, SIM115 - a pipe's fd
    try:
        emitter = Emitter(fmt="text", stream=stream, clock=clock)
        for _ in range(3):
            emitter.event("info", "still here")
            emitter.daemon_line("StartLog", "a line")
    finally:
        # Closing flushes what the emitter could not write: the test's own error.
        with contextlib.suppress(BrokenPipeError):
            stream.close()


def test_a_closed_output_stream_is_tolerated() -> None:
    """Writing after the stream was closed drops the line instead of raising."""
    stream = io.StringIO()
    stream.close()
    emitter = Emitter(fmt="json", stream=stream, clock=clock)
    emitter.event("info", "after close")
    emitter.daemon_line("MasterLog", "after close")


def test_a_stream_that_cannot_encode_a_character_still_gets_the_line() -> None:
    """A non-UTF-8 stdout (LANG=C) gets the line with the character escaped, not dropped."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    Emitter(fmt="text", stream=stream, clock=clock).daemon_line("StartLog", "bad byte \ufffd")
    assert raw.getvalue() == b"2026-11-21T05:00:00Z StartLog: bad byte \\ufffd\n"
