"""Atomic file replacement for what the supervisor writes while others can touch it (SPEC 7.5).

``Path.write_text`` opens the existing name: a FIFO put there blocks the PID-1
loop forever, a symlink redirects the write. A new file made with ``mkstemp`` in
the same directory and renamed over the name never opens what was there; the
rename replaces a FIFO, a symlink or a file whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def replace_file(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Make ``path`` hold ``text``, whatever ``path`` was (file, FIFO, symlink). Raises OSError."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def replace_directory(path: Path, files: dict[str, str], *, mode: int = 0o644) -> None:
    """Make directory ``path`` hold exactly ``files`` (name -> text), swapped in by rename.

    The new directory is complete before it takes the name; whatever held the
    name before (a directory, a symlink, a FIFO) is moved aside and removed
    without following links.
    """
    fresh = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        for name, text in files.items():
            replace_file(fresh / name, text, mode=mode)
        fresh.chmod(0o755)  # as mkdir would have made it: tools of any uid read the tree
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(path):
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
        path.replace(old / "previous")
    fresh.replace(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
