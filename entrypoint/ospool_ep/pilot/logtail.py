"""Log tail: HTCondor's daemon logs followed across rotation, a bounded pump at a time (SPEC 7.3).

:class:`LogTailer` follows the daemon logs in the ``LOG`` directory and hands
their complete lines to a :class:`LineSink` (an :class:`~ospool_ep.logs.Emitter`),
within a byte and a line budget per pump, skipping ahead of a file that falls
too far behind, and never opening anything but a regular file (SPEC 7.5).
Nothing here raises for a log file that comes and goes, and nothing blocks: the
pump runs in the PID-1 loop, which must stay free to answer signals.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ospool_ep.pilot.logs import Level, redact_cut_token

DEFAULT_PATTERNS = ("MasterLog", "StartLog", "StarterLog", "StarterLog.*")
"""The daemon logs SPEC 7.3 streams. The starter writes ``StarterLog.<slot>``, one per slot."""

TRUNCATED_MARK = " [truncated]"

# HTCondor keeps MAX_NUM_<SUBSYS>_LOG old copies, named <log>.old when it is 1
# (the default) and <log>.<YYYYMMDDTHHMMSS> above that (HTCondor manual,
# "Daemon Logging Configuration File Entries"). They are what was already read.
_ROTATED = re.compile(r"\.(?:old|\d{8}T\d{6})\Z")

_CHUNK = 64 * 1024
"""The most one read asks for."""
_MIN_READ = 4096
"""The least a file's share of a round asks for, however many files share it."""

# The supervisor pumps once a second (supervise.LOOP_SECONDS), and a pump runs
# in the PID-1 loop, which must stay free to answer signals (SPEC 7.5). At the
# default debug levels a pilot's daemons write a few lines a second, with
# D_FULLDEBUG everywhere a few hundred; HTCondor's lines are about 100-150
# bytes. Emitting a line (redaction, JSON, a flushed write) costs ~35 us
# (measured on a busy 2-core VM), so 1000 lines a pump keeps a flooded pump
# near 35 ms while staying far above any healthy pilot. Reading is cheap next
# to emitting; the byte budget bounds what is read for cut or dropped lines
# (a 16 KiB line is emitted once, a runaway line not at all) and the zeros of
# a file system without holes, at 256 KiB (~2000 ordinary lines). At most ~30
# GB a day thus reach the container engine's log, which the launcher caps by
# size (launch_command.LOG_OPTIONS).
MAX_PUMP_BYTES = 256 * 1024
"""Bytes one pump reads at most, across all files."""
MAX_PUMP_LINES = 1000
"""Lines one pump emits at most, across all files."""
# HTCondor rotates a log at MAX_<SUBSYS>_LOG, 10 MiB by default (manual,
# "Daemon Logging Configuration File Entries"): a daemon's log can be that far
# behind after a burst, and is then caught up at the budget's pace (100-250
# KiB a second: about a minute for 10 MiB), nothing lost. Being further behind
# than this means a writer that outruns the budget for good, or a file that is
# not a daemon's log at all: the tailer then jumps ahead, with a warning,
# rather than show lines ever further in the past while its backlog grows.
MAX_LAG_BYTES = 16 * 1024 * 1024
"""How far a file may be behind before the tailer skips ahead to its end."""
LAG_WARNING_SECONDS = 60.0
"""At most one warning about skipped lines per file in this many seconds."""


@dataclass(slots=True)
class _Budget:
    """What one pump may still do: bytes to read and lines to emit, across all files."""

    bytes: int
    lines: int

    def spent(self) -> bool:
        return self.bytes <= 0 or self.lines <= 0


@dataclass(slots=True, kw_only=True)
class _Followed:
    """One log file being followed, by inode: the name may move on, the inode does not."""

    path: Path
    identity: tuple[int, int]
    """``(st_dev, st_ino)`` of the file whose bytes up to ``offset`` were read."""
    offset: int
    size: int = 0
    """Where reading stops for now: the size the last ``lstat`` (or ``fstat``) saw."""
    fd: int | None = None
    """Open while the file is active, so its end can be read after a rename or unlink."""
    pending: bytes = b""
    """A last line whose newline has not been written yet; never over max_line bytes."""
    discarding: bool = False
    """The current line passed max_line and was emitted cut (or began in a skipped
    gap): drop up to its newline."""
    retired: bool = False
    """Renamed away, deleted or truncated: only its unread end is left to emit."""
    last_active: int = 0
    """The pump that last read from this file, to close the idlest fds first."""
    stalled: int = -1
    """The pump in which it could not be read (open or read failed): skip it until the next."""
    readahead: bytes = b""
    """Bytes at ``offset`` read this pump but left for a later round by the line share."""

    @property
    def source(self) -> str:
        return self.path.name


class LineSink(Protocol):
    """Where the tailer sends lines: an :class:`~ospool_ep.logs.Emitter`, or one that also
    watches them."""

    def event(self, level: Level, msg: str, /, **fields: object) -> None: ...

    def daemon_line(self, source: str, text: str) -> None: ...


class LogTailer:
    """Follows HTCondor's daemon logs in a directory and hands new complete lines to an Emitter.

    A pump never blocks and its work is bounded: only regular files are opened
    (non-blocking, not through a link), it reads at most ``max_bytes`` and emits
    at most ``max_lines`` lines in all, shared round-robin between the files so
    a flooding log cannot starve the others, and what it leaves is read on the
    next pump. A file more than ``max_lag`` bytes behind (a writer that outruns
    the budget, a sparse or runaway file) is skipped ahead to its last
    ``max_bytes``, with a warning that says how much was skipped. Lines over
    ``max_line`` bytes are cut and marked, their rest dropped unbuffered.
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        emitter: LineSink,
        patterns: tuple[str, ...] = DEFAULT_PATTERNS,
        max_line: int = 16384,
        from_end: bool = False,
        max_open: int = 32,
        max_bytes: int = MAX_PUMP_BYTES,
        max_lines: int = MAX_PUMP_LINES,
        max_lag: int = MAX_LAG_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Follow files in ``log_dir`` whose names match ``patterns`` (``fnmatch``).

        ``max_line``, ``max_bytes`` and ``max_lag`` are in bytes. ``from_end``
        skips what the files already hold now; by default they are read whole
        (the pilot's ``LOG`` starts empty, so whatever is there was written by
        this pilot's daemons). ``max_open`` bounds the descriptors kept open on
        live files (and, separately, on rotated files still being read); the
        idlest are closed first and reopened when they grow. ``clock`` (seconds)
        rate-limits the warnings about skipped gaps.
        """
        self._dir = log_dir
        self._emitter = emitter
        self._match = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
        self._max_line = max_line
        self._max_open = max_open
        self._max_bytes = max_bytes
        self._max_lines = max_lines
        self._max_lag = max_lag
        self._clock = clock
        self._files: dict[str, _Followed] = {}
        self._retired: list[_Followed] = []
        """Older files of a name, oldest first, read to their end before the current one."""
        self._warned: set[tuple[str, str, int, int]] = set()
        """(name, what, st_dev, st_ino) already warned about: one warning per bad file."""
        self._gap_warned: dict[str, float] = {}
        self._gap_skipped: dict[str, int] = {}
        self._pumps = 0
        if from_end:
            for name, st in self._scan():
                if st is not None and stat.S_ISREG(st.st_mode):
                    self._files[name] = _Followed(
                        path=log_dir / name,
                        identity=(st.st_dev, st.st_ino),
                        offset=st.st_size,
                        size=st.st_size,
                    )

    def pump(self) -> int:
        """Emit lines written since the last pump, within the budgets; how many. Never blocks.

        An idle pump costs one directory listing and one ``lstat`` per file.
        """
        self._pumps += 1
        budget = _Budget(bytes=self._max_bytes, lines=self._max_lines)
        try:
            self._refresh()
            self._read_round_robin(budget)
            self._skip_laggards()
            self._bound_open_files()
        except OSError:
            # Every file operation already handles its own errors; this is the
            # module's promise kept against whatever was missed.
            pass
        finally:
            for followed in [*self._retired, *self._files.values()]:
                followed.readahead = b""  # re-read next pump: memory is not held between pumps
        return self._max_lines - budget.lines

    def close(self) -> int:
        """The last pump, which also emits partial last lines and closes every file.

        Called once, at exit, so the daemons' last words are not lost.
        """
        emitted = self.pump()
        for followed in [*self._retired, *self._files.values()]:
            if followed.pending:
                self._emitter.daemon_line(followed.source, self._decode(followed.pending))
                followed.pending = b""
                emitted += 1
            _close(followed)
        self._retired.clear()
        return emitted

    # -- what is there ------------------------------------------------------

    def _scan(self) -> Iterator[tuple[str, os.stat_result | None]]:
        """Matching names in the directory with their ``lstat``, or None where it failed for now."""
        try:
            with os.scandir(self._dir) as listing:
                entries = list(listing)
        except OSError:
            return  # LOG not created yet by condor_master, or gone at exit
        for entry in sorted(entries, key=lambda e: e.name):
            if not self._match(entry.name) or _ROTATED.search(entry.name):
                continue
            try:
                st: os.stat_result | None = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished since the listing: finished like any vanished file
            except OSError:
                # Not gone, only unreadable for now: keep following from where
                # we are rather than restart it at 0 when it is readable again.
                st = None
            yield entry.name, st

    def _refresh(self) -> None:
        """Match the followed files to what the directory holds now; read nothing."""
        listed: set[str] = set()
        kept: set[str] = set()
        for name, st in self._scan():
            listed.add(name)
            if st is not None and not stat.S_ISREG(st.st_mode):
                # Opening a FIFO blocks until a writer comes, a device may do
                # anything on open and read forever, a link may lead anywhere.
                self._warn_once(name, "not-regular", st, f"{_kind(st.st_mode)}, not a regular file")
                continue
            kept.add(name)
            if st is not None:
                self._update(name, st)
        for name in [n for n in self._files if n not in kept]:
            self._retire(self._files.pop(name))
        self._warned = {w for w in self._warned if w[0] in listed}
        for gone in [n for n in self._gap_warned if n not in listed]:
            del self._gap_warned[gone]
            self._gap_skipped.pop(gone, None)

    def _update(self, name: str, st: os.stat_result) -> None:
        identity = (st.st_dev, st.st_ino)
        followed = self._files.get(name)
        if followed is not None and followed.identity != identity:
            # Rotated: HTCondor renamed the file to .old and created a new one.
            # The old one is read to its end before the new one is started.
            self._retire(followed)
            followed = None
        if followed is None:
            followed = _Followed(path=self._dir / name, identity=identity, offset=0)
            self._files[name] = followed
        elif st.st_size < followed.offset:
            # Truncated in place (TRUNC_<SUBSYS>_LOG_ON_OPEN, or copytruncate):
            # the rest of the old content is gone; the new starts at 0, after
            # the old partial line.
            if followed.pending:
                self._retired.append(
                    _Followed(
                        path=followed.path,
                        identity=identity,
                        offset=0,
                        pending=followed.pending,
                        retired=True,
                    )
                )
            followed.offset = 0
            followed.pending = b""
            followed.discarding = False
        followed.size = st.st_size

    def _retire(self, followed: _Followed) -> None:
        """A file renamed away or deleted: its unread end is read before the name's next file."""
        followed.retired = True
        if followed.fd is None:
            # Closed while idle: its rotated copy still has the unread end.
            followed.fd = self._open(followed.path.with_name(followed.source + ".old"), followed)
        followed.size = followed.offset
        if followed.fd is not None:
            with contextlib.suppress(OSError):
                followed.size = os.fstat(followed.fd).st_size
        if followed.size <= followed.offset and not followed.pending:
            _close(followed)
            return
        self._retired.append(followed)
        while len(self._retired) > self._max_open:
            # Rotated again and again faster than it could be read: the oldest goes.
            dropped = self._retired.pop(0)
            _close(dropped)
            self._emitter.event(
                "warning",
                f"log {dropped.source} was rotated away before it was read: lines skipped",
                file=str(dropped.path),
                skipped_bytes=max(0, dropped.size - dropped.offset),
            )

    # -- reading ------------------------------------------------------------

    def _read_round_robin(self, budget: _Budget) -> None:
        """Rounds of one step per file, each file's step at most its share of what is left.

        A round gives every file with something to read an equal part of the
        remaining budget, so one flooding log cannot starve a quiet one.
        """
        while not budget.spent():
            readers = self._readers()
            if not readers:
                return
            share = _Budget(
                bytes=max(_MIN_READ, budget.bytes // len(readers)),
                lines=max(1, budget.lines // len(readers)),
            )
            for followed in readers:
                if budget.spent():
                    return
                self._step(followed, budget, share)

    def _readers(self) -> list[_Followed]:
        """Per name, its oldest unfinished file, if it has something to do this pump."""
        heads: dict[str, _Followed] = {}
        for followed in self._retired:
            heads.setdefault(followed.source, followed)
        for name, followed in self._files.items():
            heads.setdefault(name, followed)
        return [
            f
            for f in heads.values()
            if f.stalled != self._pumps and (f.retired or f.offset < f.size)
        ]

    def _step(self, followed: _Followed, budget: _Budget, share: _Budget) -> None:
        if followed.offset >= followed.size:
            self._end_retired(followed, budget)
            return
        chunk = followed.readahead
        if not chunk:
            chunk = self._read_chunk(followed, min(share.bytes, budget.bytes))
            budget.bytes -= len(chunk)
        if not chunk:
            return
        lines = _Budget(bytes=0, lines=min(share.lines, budget.lines))
        used = self._consume(followed, chunk, lines)
        budget.lines -= min(share.lines, budget.lines) - lines.lines
        followed.offset += used
        followed.readahead = chunk[used:]

    def _read_chunk(self, followed: _Followed, most: int) -> bytes:
        """Up to ``most`` bytes of data at ``offset`` (holes skipped); b"" when none now."""
        fd = followed.fd
        if fd is None and not followed.retired:
            fd = followed.fd = self._open(followed.path, followed)
        if fd is None:
            followed.stalled = self._pumps
            if followed.retired:
                followed.size = followed.offset  # unreadable: only its partial line is left
            return b""
        followed.last_active = self._pumps
        start, stop = _data_extent(fd, followed.offset, followed.size)
        followed.offset = max(followed.offset, start)
        want = min(_CHUNK, most, stop - followed.offset, followed.size - followed.offset)
        if want <= 0:
            return b""
        try:
            chunk = os.pread(fd, want, followed.offset)
        except OSError as error:
            self._warn_once(followed.source, "read", followed, f"unreadable: {error.strerror}")
            followed.stalled = self._pumps
            return b""
        if not chunk:
            followed.stalled = self._pumps  # truncated since the stat: the next pump sees it
        return chunk

    def _end_retired(self, followed: _Followed, budget: _Budget) -> None:
        """A retired file read to where it ended: done, unless it grew meanwhile."""
        if followed.fd is not None:
            try:
                size = os.fstat(followed.fd).st_size
            except OSError:
                size = followed.size
            if size > followed.size:
                # A daemon's last write before it reopened its log by name.
                followed.size = size
                return
        if followed.pending:
            self._emit(followed, followed.pending, budget)
            followed.pending = b""
        _close(followed)
        self._retired.remove(followed)

    def _consume(self, followed: _Followed, chunk: bytes, budget: _Budget) -> int:
        """Emit the lines ``chunk`` completes, within the budget; how many of its bytes were used.

        A partial line is kept only up to ``max_line`` bytes: past that it is
        emitted cut and the rest of it is dropped as it is read, so a line of
        any length costs bounded memory. NUL bytes (a sparse file's holes read
        as zeros, blocks a crash left zeroed) are no text: they are dropped.
        """
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            if budget.lines <= 0:
                return start
            segment = _without_nul(chunk[start:newline])
            if followed.discarding:
                followed.discarding = False
            elif segment or followed.pending or newline == start:
                self._emit(followed, followed.pending + segment, budget)
            followed.pending = b""
            start = newline + 1
        if not followed.discarding:
            rest = _without_nul(chunk[start:])
            if len(followed.pending) + len(rest) <= self._max_line:
                followed.pending += rest
            elif budget.lines <= 0:
                return start
            else:
                # Emit the cut line now rather than buffer a runaway one.
                self._emit(followed, (followed.pending + rest)[: self._max_line + 1], budget)
                followed.pending = b""
                followed.discarding = True
        return len(chunk)

    def _emit(self, followed: _Followed, raw: bytes, budget: _Budget) -> None:
        budget.lines -= 1
        self._emitter.daemon_line(followed.source, self._decode(raw))

    def _decode(self, raw: bytes) -> str:
        if len(raw) > self._max_line:
            # Cutting may split a UTF-8 sequence: one replacement character.
            text = raw[: self._max_line].decode("utf-8", errors="replace")
            return redact_cut_token(text) + TRUNCATED_MARK
        return raw.decode("utf-8", errors="replace").removesuffix("\r")

    # -- bounds -------------------------------------------------------------

    def _skip_laggards(self) -> None:
        """Jump a file that is over ``max_lag`` behind to its last ``max_bytes``: a marked gap.

        Following such a file at the budget's pace would show ever older lines
        (an endless writer is never caught up) while the gap grew without end.
        """
        for followed in [*self._retired, *self._files.values()]:
            behind = followed.size - followed.offset
            if behind <= self._max_lag:
                continue
            target = followed.size - min(self._max_bytes, self._max_lag)
            skipped = target - followed.offset
            followed.offset = target
            followed.pending = b""
            followed.discarding = True  # the line the jump lands in is part of the gap
            self._report_gap(followed, skipped)

    def _report_gap(self, followed: _Followed, skipped: int) -> None:
        """One warning per file per LAG_WARNING_SECONDS, with the bytes skipped since the last."""
        name = followed.source
        total = self._gap_skipped.get(name, 0) + skipped
        now = self._clock()
        last = self._gap_warned.get(name)
        if last is not None and now - last < LAG_WARNING_SECONDS:
            self._gap_skipped[name] = total
            return
        self._gap_skipped[name] = 0
        self._gap_warned[name] = now
        self._emitter.event(
            "warning",
            f"log {name} is too far ahead of the stream: skipped to its end, lines lost",
            file=str(followed.path),
            skipped_bytes=total,
            max_lag_bytes=self._max_lag,
        )

    def _bound_open_files(self) -> None:
        open_files = [f for f in self._files.values() if f.fd is not None]
        if len(open_files) <= self._max_open:
            return
        open_files.sort(key=lambda f: f.last_active)
        for followed in open_files[: len(open_files) - self._max_open]:
            _close(followed)

    # -- opening ------------------------------------------------------------

    def _open(self, path: Path, followed: _Followed) -> int | None:
        """An fd on ``path`` if it is still the regular file ``followed`` was reading, else None."""
        try:
            return open_regular(path, followed.identity)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                # ENOENT, ELOOP: replaced since the scan, which sees it next time.
                self._warn_once(
                    followed.source, "open", followed, f"cannot be opened: {error.strerror}"
                )
            return None

    def _warn_once(
        self, name: str, what: str, of: os.stat_result | _Followed, problem: str
    ) -> None:
        identity = of.identity if isinstance(of, _Followed) else (of.st_dev, of.st_ino)
        key = (name, what, *identity)
        if key in self._warned:
            return
        self._warned.add(key)
        self._emitter.event(
            "warning", f"log {name} is not followed: {problem}", file=str(self._dir / name)
        )


def open_regular(path: Path, identity: tuple[int, int] | None = None) -> int | None:
    """A read-only fd on ``path`` if it is a regular file (and the inode ``identity``), else None.

    Never blocks and never follows a link: ``O_NONBLOCK`` makes opening a FIFO
    return at once (regular files ignore the flag), ``O_NOFOLLOW`` fails with
    ELOOP on a symbolic link. Raises OSError when the open itself fails.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode) or (
        identity is not None and (st.st_dev, st.st_ino) != identity
    ):
        # Swapped between the scan and the open: the next pump sees what is there now.
        os.close(fd)
        return None
    return fd


def _data_extent(fd: int, offset: int, end: int) -> tuple[int, int]:
    """Where the data at or after ``offset`` starts and where the next hole begins.

    ``SEEK_DATA``/``SEEK_HOLE`` (lseek(2)) find a sparse file's holes without
    reading them on ext4, xfs, btrfs and tmpfs. Where a file system does not
    know holes, the whole file is data: its zeros are read, within the byte
    budget, and dropped as NULs.
    """
    try:
        start = os.lseek(fd, offset, os.SEEK_DATA)
        return start, os.lseek(fd, start, os.SEEK_HOLE)
    except OSError as error:
        if error.errno == errno.ENXIO:
            return max(offset, end), max(offset, end)  # a hole from here to the end
        return offset, end


def _without_nul(raw: bytes) -> bytes:
    return raw.replace(b"\0", b"") if b"\0" in raw else raw


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "of an unknown type"


def _close(followed: _Followed) -> None:
    if followed.fd is not None:
        with contextlib.suppress(OSError):
            os.close(followed.fd)
        followed.fd = None
