"""Test helpers shared by several test modules (from test_workdir.py)."""

from __future__ import annotations

import os
from pathlib import Path

from ospool_ep.pilot import workdir as pilotdir


def job_leftovers(directory: Path, *, depth: int = pilotdir.MAX_DEPTH * 2 + 3) -> None:
    """What jobs can leave: directories of mode 000 and 0500 with files in them, an
    unreadable file, a tree deeper than the fd budget ending in 000, a symlink out."""
    execute = directory / "execute"
    execute.mkdir()
    slot = execute / "dir_1234"
    (slot / "sub").mkdir(parents=True)
    (slot / "sub" / "out.txt").write_text("job output")
    (slot / "sub").chmod(0)
    slot.chmod(0)
    readonly = execute / "readonly"
    readonly.mkdir()
    (readonly / "data").write_text("x")
    readonly.chmod(0o500)
    (execute / "secret").write_text("y")
    (execute / "secret").chmod(0)
    deep = execute / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):  # relative steps: deeper than PATH_MAX allows in one name
        os.mkdir("d", 0o700, dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.fchmod(fd, 0)
    os.close(fd)
    execute.chmod(0o500)
