"""Contracts of ospool_ep.pilot.logtail: the daemons' logs followed, a bounded pump at a time.

The tailer follows real files under tmp_path, written, renamed, truncated and
deleted the way HTCondor's dprintf does it, into a real emitter with a fixed
clock; each test reads back what the emitter wrote.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
import threading
import traceback
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jwt_factory import token
from log_records import json_emitter, records

from ospool_ep.pilot.logtail import (
    LAG_WARNING_SECONDS,
    MAX_PUMP_BYTES,
    TRUNCATED_MARK,
    LogTailer,
    open_regular,
)


class Logs:
    """A LOG directory with a tailer on it; ``lines()`` is what came out so far."""

    def __init__(self, log_dir: Path, **tailer: Any) -> None:
        self.dir = log_dir
        self.dir.mkdir(exist_ok=True)
        self.emitter, self.stream = json_emitter()
        self.tailer = LogTailer(log_dir=log_dir, emitter=self.emitter, **tailer)

    def write(self, name: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        with (self.dir / name).open("ab") as f:
            f.write(raw)

    def lines(self, source: str | None = None) -> list[str]:
        """What the daemons' logs said (all of them, or ``source``'s), in order."""
        return [
            str(r["msg"])
            for r in records(self.stream)
            if r["source"] == source or (source is None and r["source"] != "supervisor")
        ]

    def warnings(self) -> list[dict[str, object]]:
        """The tailer's own warnings (supervisor events)."""
        return [r for r in records(self.stream) if r["source"] == "supervisor"]

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
    assert logs.sources() == {"MasterLog", "supervisor"}
    [warning] = logs.warnings()
    assert "StarterLog.dir" in warning["file"] and "directory" in warning["msg"]


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


# --- LogTailer: bounded work, whatever is in the log directory (SPEC 7.3, 7.5) ----------
#
# Work is measured, not time: the kernel's count of bytes this process read
# (/proc/self/io rchar, which pytest does not touch during a pump), the lines a
# pump returns, tracemalloc's peak. A FIFO that a blocking open would wait on
# forever gets a watchdog that opens its other end, so a regression fails the
# test instead of hanging it.

MiB = 1024 * 1024
SLACK = 4096
"""Bytes read outside the tailer during a pump: reading /proc/self/io itself."""


def bytes_read() -> int:
    """What this process has read so far, by the kernel's count."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def measured_pump(tailer: LogTailer) -> tuple[int, int]:
    """One pump: (lines it emitted, bytes read during it)."""
    before = bytes_read()
    lines = tailer.pump()
    return lines, bytes_read() - before


@contextlib.contextmanager
def fifo_watchdog(*fifos: Path, seconds: float = 20.0) -> Iterator[list[Path]]:
    """Free a reader blocked on opening one of ``fifos``; the yielded list names any freed."""
    freed: list[Path] = []
    done = threading.Event()

    def release() -> None:
        if done.wait(seconds):
            return
        for fifo in fifos:
            try:
                # Succeeds only if someone has the FIFO open for reading.
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                freed.append(fifo)
            except OSError:
                pass

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield freed
    finally:
        done.set()
        watchdog.join()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_big_line(path: Path, size: int, *, after: bytes = b"\nafter\n") -> None:
    """``size`` bytes of one line, written for real in 1 MiB blocks (no holes)."""
    block = b"x" * MiB
    with path.open("ab") as f:
        for _ in range(size // MiB):
            f.write(block)
        f.write(after)


@pytest.fixture(scope="module")
def line_300mb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 300 MiB single line then ``after``: written once (~0.2 s), shared read-only."""
    path = tmp_path_factory.mktemp("big") / "line"
    write_big_line(path, 300 * MiB)
    yield path
    path.unlink()


def test_a_fifo_named_like_a_log_is_skipped_with_one_warning_and_never_blocks(logs: Logs) -> None:
    """A FIFO matching ``StarterLog.*`` is never opened; one warning names it, other logs flow."""
    fifo = logs.dir / "StarterLog.slot1_1"
    os.mkfifo(fifo)
    logs.write("StartLog", "claimed\n")
    with fifo_watchdog(fifo) as freed:
        pumped = [logs.tailer.pump() for _ in range(3)]
    assert freed == []
    assert pumped == [1, 0, 0]
    assert logs.lines("StartLog") == ["claimed"]
    [warning] = logs.warnings()
    assert warning["level"] == "warning"
    assert warning["file"] == str(fifo)
    assert "FIFO" in str(warning["msg"])


def test_links_and_special_files_named_like_logs_are_skipped_with_one_warning_each(
    tmp_path: Path,
) -> None:
    """Links (to /dev/zero, a FIFO, a regular file), a device, a socket: never read, one warning.

    A link is not followed even to a regular file: LOG is written by the
    daemons, so a link there was put by someone else.
    """
    logs = Logs(tmp_path / "log")
    outside = tmp_path / "outside"
    outside.write_text("not ours\n")
    os.mkfifo(tmp_path / "fifo")
    (logs.dir / "StartLog").symlink_to("/dev/zero")
    (logs.dir / "MasterLog").symlink_to(tmp_path / "fifo")
    (logs.dir / "StarterLog").symlink_to(outside)
    bad = ["MasterLog", "StartLog", "StarterLog"]
    try:
        os.mknod(logs.dir / "StarterLog.zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        bad.append("StarterLog.zero")
    except PermissionError:
        pass  # no CAP_MKNOD here: the link to /dev/zero stands for it
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(logs.dir / "StarterLog.sock"))
        bad.append("StarterLog.sock")
        logs.write("StarterLog.slot1_1", "fine\n")
        with fifo_watchdog(tmp_path / "fifo") as freed:
            work = [measured_pump(logs.tailer) for _ in range(3)]
    assert freed == []
    assert [lines for lines, _ in work] == [1, 0, 0]
    assert all(read <= SLACK for _, read in work), work
    assert logs.lines() == ["fine"]
    warned = {Path(str(w["file"])).name: str(w["msg"]) for w in logs.warnings()}
    assert len(logs.warnings()) == len(bad)
    assert sorted(warned) == sorted(bad)
    assert "symbolic link" in warned["StartLog"]
    assert "socket" in warned["StarterLog.sock"]
    if "StarterLog.zero" in warned:
        assert "character device" in warned["StarterLog.zero"]


def test_a_log_swapped_for_a_link_between_pumps_is_drained_then_dropped_with_a_warning(
    tmp_path: Path,
) -> None:
    """StartLog replaced by a link to /dev/zero, then to a FIFO, then by a new file.

    The unread end of the old file still comes out (it is read through the
    descriptor already open); each link gets one warning however many pumps
    see it; nothing is read from /dev/zero; a regular file again is followed
    from its first line.
    """
    logs = Logs(tmp_path / "log")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def swap_in_link(target: str | Path) -> None:
        temporary = logs.dir / ".swap"
        temporary.symlink_to(target)
        temporary.replace(logs.dir / "StartLog")

    logs.write("StartLog", numbered(1, 2))
    logs.tailer.pump()
    logs.write("StartLog", numbered(3, 4))
    with fifo_watchdog(fifo) as freed:
        swap_in_link("/dev/zero")
        assert measured_pump(logs.tailer)[0] == 2
        assert measured_pump(logs.tailer) == (0, pytest.approx(0, abs=SLACK))
        swap_in_link(fifo)
        assert measured_pump(logs.tailer) == (0, pytest.approx(0, abs=SLACK))
        logs.tailer.pump()
    assert freed == []
    assert len(logs.warnings()) == 2
    assert all("symbolic link" in str(w["msg"]) for w in logs.warnings())
    (logs.dir / "StartLog").unlink()
    logs.write("StartLog", numbered(5, 5))
    logs.tailer.pump()
    assert logs.lines("StartLog") == expected(1, 5)


def test_open_regular_opens_only_the_regular_file_it_was_told_and_never_blocks(
    tmp_path: Path,
) -> None:
    """The race guard: whatever was swapped in between the scan and the open is refused."""
    regular = tmp_path / "regular"
    regular.write_text("x\n")
    st = regular.stat()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(regular)
    with fifo_watchdog(fifo) as freed:
        assert open_regular(fifo) is None
    assert freed == []
    assert open_regular(tmp_path / "dir") is None
    assert open_regular(Path("/dev/zero")) is None
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        open_regular(tmp_path / "link")
    assert open_regular(regular, (st.st_dev, st.st_ino + 1)) is None
    fd = open_regular(regular, (st.st_dev, st.st_ino))
    assert fd is not None
    try:
        assert os.get_inheritable(fd) is False
        assert os.read(fd, 10) == b"x\n"
    finally:
        os.close(fd)


def test_a_big_backlog_is_read_over_several_pumps_within_both_budgets_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """Each pump reads at most ``max_bytes`` and emits at most ``max_lines``; the rest waits."""
    logs = Logs(tmp_path / "log", max_bytes=64 * 1024, max_lines=500)
    logs.write("StartLog", numbered(1, 30000))  # ~320 KB
    work = []
    while sum(lines for lines, _ in work) < 30000 and len(work) < 200:
        work.append(measured_pump(logs.tailer))
    assert logs.lines("StartLog") == expected(1, 30000)
    assert len(work) >= 30000 // 500
    assert all(lines <= 500 for lines, _ in work)
    assert all(read <= 64 * 1024 + SLACK for _, read in work), max(read for _, read in work)
    assert logs.warnings() == []


def test_a_flooding_log_does_not_starve_the_others(tmp_path: Path) -> None:
    """The budget is shared round-robin: a quiet log's new line comes out in the very next pump."""
    logs = Logs(tmp_path / "log", max_bytes=128 * 1024, max_lines=1000)
    logs.write("MasterLog", "A" * 4 * MiB)
    logs.write("StartLog", numbered(1, 5000))
    logs.write("StarterLog.slot1_1", "job started\n")
    logs.tailer.pump()
    assert logs.lines("StarterLog.slot1_1") == ["job started"]
    assert logs.lines("StartLog")[:3] == expected(1, 3)
    logs.write("StarterLog.slot1_1", "job done\n")
    logs.tailer.pump()
    assert logs.lines("StarterLog.slot1_1") == ["job started", "job done"]


def test_a_300_mb_line_is_cut_once_and_its_rest_dropped_in_bounded_memory(
    tmp_path: Path, line_300mb: Path
) -> None:
    """Read whole (a budget big enough, no skipping), the line is emitted once, cut and marked.

    The 300 MB that follow its first 16 KiB are read and dropped as they come:
    the tailer's memory stays under 2 MB throughout, and the next line is intact.
    """
    logs = Logs(tmp_path / "log", max_bytes=64 * MiB, max_lag=1024 * MiB)
    (logs.dir / "StartLog").symlink_to(line_300mb)  # a link is refused ...
    logs.tailer.pump()
    (logs.dir / "StartLog").unlink()
    os.link(line_300mb, logs.dir / "StartLog")  # ... a hard link is the file itself
    tracemalloc.start()
    try:
        pumps = 0
        while "after" not in logs.lines() and pumps < 20:
            logs.tailer.pump()
            pumps += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert logs.lines() == ["x" * 16384 + TRUNCATED_MARK, "after"]
    assert pumps == 5  # 300 MiB at 64 MiB a pump
    assert peak < 2 * MiB, peak


def test_with_the_default_budgets_a_300_mb_line_costs_two_bounded_pumps_and_one_warning(
    tmp_path: Path, line_300mb: Path
) -> None:
    """SPEC 7.5's 300 MB line: the first pump reads 256 KiB and emits the line cut, then
    skips ahead (a marked gap) to the last 256 KiB, which the second pump reads."""
    logs = Logs(tmp_path / "log")
    os.link(line_300mb, logs.dir / "StartLog")
    logs.write("MasterLog", "master\n")
    work = [measured_pump(logs.tailer) for _ in range(3)]
    assert [lines for lines, _ in work] == [2, 1, 0]
    assert all(read <= MAX_PUMP_BYTES + SLACK for _, read in work), work
    assert logs.lines() == ["master", "x" * 16384 + TRUNCATED_MARK, "after"]
    [warning] = logs.warnings()
    assert warning["file"] == str(logs.dir / "StartLog")
    assert "skipped" in str(warning["msg"])
    # The first pump shared its budget with MasterLog's 7 bytes.
    assert warning["skipped_bytes"] == 300 * MiB + 7 - MAX_PUMP_BYTES - (MAX_PUMP_BYTES - 7)


def test_a_sparse_file_is_read_without_its_holes(logs: Logs) -> None:
    """A 4 GiB file that is all hole but two lines: one pump, a block or two read, no zeros."""
    path = logs.dir / "StartLog"
    with path.open("wb") as f:
        f.write(b"first\n")
        f.seek(4 * 1024 * MiB)
        f.write(b"last\n")
    lines, read = measured_pump(logs.tailer)
    assert (lines, logs.lines()) == (2, ["first", "last"])
    assert read <= 2 * 4096 + SLACK  # what SEEK_HOLE reports comes in whole blocks
    assert logs.warnings() == []


def test_zeros_written_for_real_are_no_lines_and_cost_only_the_byte_budget(
    tmp_path: Path,
) -> None:
    """Where holes cannot be skipped (zeros on disk, a file system without SEEK_DATA), the
    zeros are read within the byte budget and dropped: they make no line."""
    logs = Logs(tmp_path / "log", max_bytes=64 * 1024)
    logs.write("StartLog", b"a\n" + b"\0" * MiB + b"b\n" + b"\0" * 1000 + b"\nc\0d\n")
    work = []
    while len(logs.lines()) < 3 and len(work) < 40:
        work.append(measured_pump(logs.tailer))
    assert logs.lines() == ["a", "b", "cd"]
    assert all(read <= 64 * 1024 + SLACK for _, read in work)


def test_an_endless_writer_is_followed_at_the_budgets_pace_with_marked_gaps(
    tmp_path: Path,
) -> None:
    """A writer far ahead and still writing: every pump stays in its budgets, lines come
    out in order (gaps, no duplicates), the other logs still flow, and the gaps are
    warned about once per LAG_WARNING_SECONDS, with the bytes skipped."""
    clock = Clock()
    logs = Logs(tmp_path / "log", max_bytes=64 * 1024, max_lines=200, max_lag=1 * MiB, clock=clock)
    path = logs.dir / "StartLog"
    logs.write("StartLog", numbered(1, 200_000))  # ~2.3 MB ahead already
    stop = threading.Event()

    def writer() -> None:
        first = 200_001
        with path.open("ab") as f:
            while not stop.is_set() and first < 5_000_000:
                f.write(numbered(first, first + 4999).encode())
                f.flush()
                first += 5000

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        work = []
        for i in range(60):
            if i == 30:
                logs.write("MasterLog", "still here\n")
            work.append(measured_pump(logs.tailer))
    finally:
        stop.set()
        thread.join()
    assert all(lines <= 200 for lines, _ in work)
    assert all(read <= 64 * 1024 + SLACK for _, read in work), max(r for _, r in work)
    assert logs.lines("MasterLog") == ["still here"]
    numbers = [int(line.split()[1]) for line in logs.lines("StartLog")]
    assert numbers == sorted(set(numbers))
    assert numbers[:3] == [1, 2, 3]
    [gap] = logs.warnings()
    assert gap["file"] == str(path) and int(str(gap["skipped_bytes"])) > 0

    clock.now += LAG_WARNING_SECONDS
    logs.write("StartLog", "y" * 2 * MiB + "\n")
    logs.tailer.pump()
    assert len(logs.warnings()) == 2


def test_logs_rotated_again_and_again_before_they_were_read_are_dropped_with_a_warning(
    tmp_path: Path,
) -> None:
    """Old files waiting to be read hold descriptors: past ``max_open`` the oldest is dropped
    (with a warning) rather than the descriptors grow without bound."""
    logs = Logs(tmp_path / "log", max_bytes=1024, max_open=2)
    before = open_fds()
    for rotation in range(4):
        logs.write("StartLog", numbered(rotation * 1000 + 1, rotation * 1000 + 1000))
        logs.tailer.pump()
        (logs.dir / "StartLog").rename(logs.dir / "StartLog.old")
    logs.tailer.pump()
    assert open_fds() - before <= 2 * 2
    dropped = [w for w in logs.warnings() if "rotated away" in str(w["msg"])]
    assert len(dropped) == 2
    numbers = [int(line.split()[1]) for line in logs.lines("StartLog")]
    assert numbers == sorted(set(numbers))


def test_an_unreadable_log_is_warned_about_once_and_retried() -> None:
    """EACCES: one warning naming the file; when it is readable again it is followed.

    Root reads a file whatever its mode, so as root this runs in a child
    process that has become ``nobody``, in a directory of its own.
    """

    def check() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            logs = Logs(Path(scratch) / "log")
            logs.write("StartLog", "hello\n")
            (logs.dir / "StartLog").chmod(0)
            assert [logs.tailer.pump() for _ in range(3)] == [0, 0, 0]
            [warning] = logs.warnings()
            assert warning["file"] == str(logs.dir / "StartLog")
            assert "Permission denied" in str(warning["msg"])
            (logs.dir / "StartLog").chmod(0o644)
            assert logs.tailer.pump() == 1
            assert logs.lines() == ["hello"]

    if os.geteuid() != 0:
        check()
        return
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        code = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            check()
        except BaseException:  # everything is reported, then the child ends
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the check failed as nobody (stderr above)"


def test_a_log_directory_that_is_itself_a_fifo_or_a_file_is_not_an_error(tmp_path: Path) -> None:
    """LOG replaced by something that is not a directory: pumps emit nothing and never raise."""
    emitter, _ = json_emitter()
    os.mkfifo(tmp_path / "log")
    with fifo_watchdog(tmp_path / "log") as freed:
        tailer = LogTailer(log_dir=tmp_path / "log", emitter=emitter)
        assert tailer.pump() == 0
        (tmp_path / "log").unlink()
        (tmp_path / "log").write_text("a file\n")
        assert tailer.pump() == 0
        assert tailer.close() == 0
    assert freed == []
