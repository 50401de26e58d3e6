"""Contracts of ospool_ep.logs: one output stream of events and daemon log lines (SPEC 7.3).

The emitter writes into a real text stream (``io.StringIO``, or a real pipe for
the broken-stream case) with a fixed clock. The tailer follows real files under
tmp_path, written, renamed, truncated and deleted the way HTCondor's dprintf
does it; each test reads back what the emitter wrote.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from jwt_factory import token
from ospool_ep.logs import TRUNCATED_MARK, Emitter, LogTailer, redact

T0 = 1_795_237_200.25
"""The tests' clock: 2026-11-21T05:00:00.250Z."""


def clock() -> float:
    return T0


def json_emitter() -> tuple[Emitter, io.StringIO]:
    stream = io.StringIO()
    return Emitter(fmt="json", stream=stream, clock=clock), stream


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Logs:
    """A LOG directory with a tailer on it; ``lines()`` is what came out so far."""

    def __init__(
        self, log_dir: Path, *, max_line: int = 16384, max_open: int = 32, from_end: bool = False
    ) -> None:
        self.dir = log_dir
        self.dir.mkdir(exist_ok=True)
        self.emitter, self.stream = json_emitter()
        self.tailer = LogTailer(
            log_dir=log_dir,
            emitter=self.emitter,
            max_line=max_line,
            max_open=max_open,
            from_end=from_end,
        )

    def write(self, name: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        with (self.dir / name).open("ab") as f:
            f.write(raw)

    def lines(self, source: str | None = None) -> list[str]:
        return [
            str(r["msg"]) for r in records(self.stream) if source is None or r["source"] == source
        ]

    def sources(self) -> set[str]:
        return {str(r["source"]) for r in records(self.stream)}


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    return Logs(tmp_path / "log")


def numbered(first: int, last: int) -> str:
    return "".join(f"line {i}\n" for i in range(first, last + 1))


def expected(first: int, last: int) -> list[str]:
    return [f"line {i}" for i in range(first, last + 1)]


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


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


# --- LogTailer ---------------------------------------------------------------


def test_new_complete_lines_appear_and_a_partial_line_waits_for_its_newline(logs: Logs) -> None:
    """A pump emits every complete new line once; a line without its newline yet is held."""
    logs.write("StartLog", "first\nsecond\nthi")
    assert logs.tailer.pump() == 2
    assert logs.lines() == ["first", "second"]
    assert logs.tailer.pump() == 0
    logs.write("StartLog", "rd\nfourth\n")
    assert logs.tailer.pump() == 2
    assert logs.lines("StartLog") == ["first", "second", "third", "fourth"]


def test_close_flushes_a_partial_last_line(logs: Logs) -> None:
    """At exit the daemons' last words are emitted even without their newline."""
    logs.write("MasterLog", "done\nlast words")
    assert logs.tailer.pump() == 1
    assert logs.tailer.close() == 1
    assert logs.lines("MasterLog") == ["done", "last words"]


def test_files_present_at_start_are_read_from_the_beginning_unless_from_end(
    tmp_path: Path,
) -> None:
    """The pilot's LOG is fresh, so existing content is ours; ``from_end`` skips it."""
    whole = Logs(tmp_path / "whole")
    whole.write("StartLog", numbered(1, 3))
    skipping = Logs(tmp_path / "whole", from_end=True)
    assert whole.tailer.pump() == 3
    assert skipping.tailer.pump() == 0
    whole.write("StartLog", numbered(4, 4))
    skipping.tailer.pump()
    assert skipping.lines() == expected(4, 4)


def test_a_new_starter_log_is_discovered_on_a_later_pump(logs: Logs) -> None:
    """A slot's StarterLog appearing while the pilot runs is followed from its first line."""
    logs.write("StartLog", "claimed\n")
    logs.tailer.pump()
    logs.write("StarterLog.slot1_3", "starter 1\nstarter 2\n")
    assert logs.tailer.pump() == 2
    assert logs.lines("StarterLog.slot1_3") == ["starter 1", "starter 2"]


def test_old_copies_and_other_logs_are_ignored(logs: Logs) -> None:
    """Rotated copies (.old, timestamped) were read already; other daemons' logs are not ours."""
    for name in (
        "StartLog.old",
        "StarterLog.slot1_1.old",
        "MasterLog.20261121T050000",
        "ProcLog",
        "SharedPortLog",
        "InstanceLock",
    ):
        logs.write(name, "not streamed\n")
    (logs.dir / "StarterLog.dir").mkdir()
    logs.write("MasterLog", "streamed\n")
    assert logs.tailer.pump() == 1
    assert logs.sources() == {"MasterLog"}


def test_rotation_by_rename_and_recreate_loses_and_duplicates_nothing(logs: Logs) -> None:
    """StartLog -> StartLog.old, new StartLog: the old end, then the new file from its start."""
    logs.write("StartLog", numbered(1, 5))
    logs.tailer.pump()
    logs.write("StartLog", numbered(6, 8))  # written just before the rotation, not yet read
    (logs.dir / "StartLog").rename(logs.dir / "StartLog.old")
    logs.write("StartLog", numbered(9, 12))
    logs.tailer.pump()
    logs.write("StartLog", numbered(13, 13))
    logs.tailer.pump()
    assert logs.lines("StartLog") == expected(1, 13)


def test_rotation_seen_before_the_new_file_exists_loses_nothing(logs: Logs) -> None:
    """A pump between the rename and the new file's creation drains the old file first."""
    logs.write("StartLog", numbered(1, 2))
    logs.tailer.pump()
    logs.write("StartLog", numbered(3, 4))
    (logs.dir / "StartLog").rename(logs.dir / "StartLog.old")
    logs.tailer.pump()
    logs.write("StartLog", numbered(5, 6))
    logs.tailer.pump()
    assert logs.lines("StartLog") == expected(1, 6)


def test_rotation_of_a_file_closed_for_idleness_reads_the_end_from_old(tmp_path: Path) -> None:
    """With its descriptor closed to bound open files, the unread end is found in ``.old``."""
    logs = Logs(tmp_path / "log", max_open=1)
    logs.write("StarterLog.slot1_1", numbered(1, 2))
    logs.tailer.pump()
    logs.write("StartLog", "busy\n")  # the more recent file keeps the one descriptor
    logs.tailer.pump()
    logs.write("StarterLog.slot1_1", numbered(3, 4))
    (logs.dir / "StarterLog.slot1_1").rename(logs.dir / "StarterLog.slot1_1.old")
    logs.write("StarterLog.slot1_1", numbered(5, 5))
    logs.tailer.pump()
    assert logs.lines("StarterLog.slot1_1") == expected(1, 5)


def test_truncation_in_place_restarts_from_the_beginning(logs: Logs) -> None:
    """A file that shrank (TRUNC_*_LOG_ON_OPEN, copytruncate) is read again from offset 0."""
    logs.write("MasterLog", numbered(1, 5))
    logs.tailer.pump()
    (logs.dir / "MasterLog").write_text(numbered(6, 7))
    logs.tailer.pump()
    assert logs.lines("MasterLog") == expected(1, 7)


def test_a_vanished_file_is_not_an_error_and_its_last_lines_still_come_out(logs: Logs) -> None:
    """A starter log deleted with its slot: what it held unread is emitted, then it is dropped."""
    logs.write("StarterLog.slot1_2", numbered(1, 1))
    logs.tailer.pump()
    logs.write("StarterLog.slot1_2", numbered(2, 3))
    (logs.dir / "StarterLog.slot1_2").unlink()
    assert logs.tailer.pump() == 2
    assert logs.tailer.pump() == 0
    assert logs.lines("StarterLog.slot1_2") == expected(1, 3)


def test_a_missing_log_directory_is_not_an_error(tmp_path: Path) -> None:
    """Before condor_master creates LOG, and after it is gone, a pump emits nothing."""
    emitter, _ = json_emitter()
    tailer = LogTailer(log_dir=tmp_path / "not-yet", emitter=emitter)
    assert tailer.pump() == 0
    assert tailer.close() == 0


def test_open_descriptors_stay_bounded_however_many_logs_appear(tmp_path: Path) -> None:
    """Many starter logs over days: at most ``max_open`` descriptors, none for deleted files."""
    logs = Logs(tmp_path / "log", max_open=4)
    before = open_fds()
    for slot in range(40):
        logs.write(f"StarterLog.slot1_{slot}", "started\n")
        logs.tailer.pump()
    assert open_fds() - before <= 4
    for slot in range(40):
        (logs.dir / f"StarterLog.slot1_{slot}").unlink()
    logs.tailer.pump()
    assert open_fds() == before
    assert len(logs.lines()) == 40


def test_a_long_line_is_cut_at_max_line_with_a_marker(tmp_path: Path) -> None:
    """A line over ``max_line`` bytes is cut and marked; the lines after it are intact."""
    logs = Logs(tmp_path / "log", max_line=10)
    logs.write("StartLog", "0123456789\n" + "A" * 25 + "\nafter\n")
    logs.tailer.pump()
    assert logs.lines() == ["0123456789", "AAAAAAAAAA" + TRUNCATED_MARK, "after"]


def test_a_long_line_written_over_several_pumps_is_cut_once(tmp_path: Path) -> None:
    """A runaway line is emitted cut as soon as it passes the limit, and its rest is dropped."""
    logs = Logs(tmp_path / "log", max_line=10)
    logs.write("StartLog", "B" * 8)
    logs.tailer.pump()
    logs.write("StartLog", "B" * 8)
    logs.tailer.pump()
    logs.write("StartLog", "B" * 30 + "\nnext\n")
    logs.tailer.pump()
    assert logs.lines() == ["BBBBBBBBBB" + TRUNCATED_MARK, "next"]


def test_a_token_cut_by_truncation_is_still_redacted(tmp_path: Path) -> None:
    """Cutting inside a JWT leaves no readable part of it."""
    secret = token()
    logs = Logs(tmp_path / "log", max_line=60)
    logs.write("StartLog", f"x {secret}\n")
    logs.tailer.pump()
    assert logs.lines() == ["x [token redacted]" + TRUNCATED_MARK]


def test_undecodable_bytes_are_replaced(logs: Logs) -> None:
    """Bytes that are not UTF-8 become U+FFFD; the line and the ones after it survive."""
    logs.write("StartLog", b"caf\xe9 \xff\xfe ok\r\nnext\n")
    logs.tailer.pump()
    assert logs.lines() == ["caf\ufffd \ufffd\ufffd ok", "next"]


def test_lines_of_several_logs_carry_their_own_source(logs: Logs) -> None:
    """Each line is tagged with the file it came from."""
    logs.write("MasterLog", "m\n")
    logs.write("StartLog", "s\n")
    logs.write("StarterLog.slot1_1", "t\n")
    assert logs.tailer.pump() == 3
    assert [(r["source"], r["msg"]) for r in records(logs.stream)] == [
        ("MasterLog", "m"),
        ("StartLog", "s"),
        ("StarterLog.slot1_1", "t"),
    ]
