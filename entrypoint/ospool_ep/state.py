"""State file: what the running supervisor publishes for `health` and `drain` (SPEC 7.5).

A small JSON document, replaced atomically, readable by any uid (it holds no
secrets). Default ``/tmp/ospool-ep/state.json`` (the container's own /tmp);
``OSPOOL_EP_STATE_FILE`` moves it, e.g. for several pilots on one batch node.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_PATH = Path("/tmp/ospool-ep/state.json")  # noqa: S108 - container-private, no secrets


def state_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("OSPOOL_EP_STATE_FILE") or DEFAULT_PATH)


@dataclass(frozen=True, kw_only=True)
class PublishedState:
    supervisor_pid: int
    master_pid: int | None
    state: str
    name: str
    ready: bool
    """This pilot's slot was seen in the collector at ``ready_checked``."""
    ready_checked: float | None
    updated: float


def publish(path: Path, published: PublishedState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(asdict(published), stream)
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: Path) -> PublishedState | None:
    try:
        data = json.loads(path.read_text())
        return PublishedState(**data)
    except (OSError, ValueError, TypeError):
        return None


def withdraw(path: Path, *, supervisor_pid: int) -> None:
    """Remove the file if it is still ours (another pilot may have replaced it)."""
    current = read(path)
    if current is not None and current.supervisor_pid == supervisor_pid:
        path.unlink(missing_ok=True)
