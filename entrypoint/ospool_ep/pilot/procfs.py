"""Procfs: the processes of this PID namespace as /proc shows them (pid, name, state, parent).

Read with plain file reads: no process is signalled or waited for here. Only
files that proc(5) lets any uid read (``stat``, ``status``, ``cmdline``), so
this works on the supervisor too, which is not dumpable (ospool_ep.pilot.hardening).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    name: str
    """The command name (``comm``), at most 15 characters."""
    state: str
    """R, S, D, Z (zombie), T, ..."""
    ppid: int


def read(pid: int, *, proc: Path = PROC) -> Process | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name (field 2) is in parentheses and may itself contain spaces or ')'.
    name = stat[stat.find("(") + 1 : stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2 :].split()
    return Process(pid=pid, name=name, state=fields[0], ppid=int(fields[1]))


def processes(*, proc: Path = PROC) -> Iterator[Process]:
    for entry in proc.iterdir():
        if entry.name.isdigit():
            found = read(int(entry.name), proc=proc)
            if found is not None:
                yield found


def alive(pid: int | None, *, proc: Path = PROC) -> bool:
    """Running and not a zombie."""
    found = read(pid, proc=proc) if pid else None
    return found is not None and found.state != "Z"


def child_named(parent: int, name: str, *, proc: Path = PROC) -> int | None:
    for found in processes(proc=proc):
        if found.ppid == parent and found.name == name and found.state != "Z":
            return found.pid
    return None


def descendants(root: int, *, proc: Path = PROC) -> list[int]:
    """Every process below ``root`` (starters, jobs), from the parent links."""
    parents = {found.pid: found.ppid for found in processes(proc=proc)}
    result: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        result += children
        frontier += children
    return result


def start_time(pid: int, *, proc: Path = PROC) -> int | None:
    """Field 22 of ``stat``: when the process started, in clock ticks after boot."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def uids(pid: int, *, proc: Path = PROC) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid (``status``); () when unknown."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return ()
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return tuple(int(value) for value in line.split()[1:])
    return ()


def cmdline(pid: int, *, proc: Path = PROC) -> tuple[str, ...]:
    """The process's argv as it was exec'd; () for a kernel thread, a zombie or a gone pid."""
    try:
        data = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(arg.decode(errors="replace") for arg in data.split(b"\0")[:-1])


def named_below(root: int, name: str, *, proc: Path = PROC) -> list[int]:
    """The live processes called ``name`` anywhere below ``root``."""
    below = set(descendants(root, proc=proc))
    return [
        found.pid
        for found in processes(proc=proc)
        if found.pid in below and found.name == name and found.state != "Z"
    ]


def descends_from(pid: int, ancestor: int, *, proc: Path = PROC) -> bool | None:
    """Whether ``ancestor`` is on ``pid``'s parent chain (``pid`` itself included).

    None when the chain cannot be read to its end (a process on it is gone). A
    process whose parent chain ends at 0 without passing ``ancestor`` was started
    from outside: by the kernel's init of another namespace, or by the container
    engine for an ``exec`` session (whose parent lives outside the namespace).
    """
    seen: set[int] = set()
    while pid not in seen:
        if pid == ancestor:
            return True
        if pid == 0:
            return False
        seen.add(pid)
        found = read(pid, proc=proc)
        if found is None:
            return None
        pid = found.ppid
    return None  # a loop: /proc changed under the walk
