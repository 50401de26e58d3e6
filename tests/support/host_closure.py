"""What runs on a bare ``python3``: the import closures ``scripts/import_closure.py`` computes.

The RPM's launcher (``rpm/ospool-ep`` and the modules it imports) and the CVMFS
cron probe (``ospool_ep.cvmfs.probe``) must need nothing but the standard
library. Which modules that is, is read from their imports, never listed by hand:
``rpm/build-rpm.sh`` ships the same list.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from paths import REPO

ENTRYPOINT = REPO / "entrypoint"
TOOL = REPO / "scripts" / "import_closure.py"
LAUNCHER = REPO / "rpm" / "ospool-ep"
"""The RPM's /usr/bin/ospool-ep: its imports are what the package installs."""
CRON_PROBE = "ospool_ep.cvmfs.probe"


def import_closure(
    *entries: str | Path,
    path: Path = ENTRYPOINT,
    relative_to: Path = REPO,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """``scripts/import_closure.py`` run by ``python`` (isolated: no site's path leaks in)."""
    return subprocess.run(
        [
            python,
            "-I",
            str(TOOL),
            "--path",
            str(path),
            "--relative-to",
            str(relative_to),
            *map(str, entries),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@functools.cache
def closure_files(*entries: str) -> tuple[Path, ...]:
    """The repo's files that ``entries`` import (absolute); fails on a third-party import."""
    done = import_closure(*entries)
    assert done.returncode == 0, done.stderr
    return tuple(REPO / line for line in done.stdout.splitlines())


def launcher_files() -> tuple[Path, ...]:
    """The modules the RPM installs under /usr/share/ospool-ep."""
    return closure_files(str(LAUNCHER))


def module_name(file: Path) -> str:
    """``entrypoint/ospool_ep/host/__init__.py`` -> ``ospool_ep.host``."""
    parts = file.relative_to(ENTRYPOINT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def copy_modules(files: Iterable[Path], destination: Path) -> None:
    """Lay ``files`` out under ``destination`` as they are under ``entrypoint/``
    (``destination/ospool_ep/...``), sub-packages in their directories."""
    for file in files:
        target = destination / file.relative_to(ENTRYPOINT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
