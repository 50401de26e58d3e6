"""The project's own tools, found where the test run's interpreter installed them.

Tests never look tools up on the caller's ``PATH``: under ``.venv/bin/pytest``
the venv's ``bin/`` is not on it, and a tool installed globally on a
developer's machine would hide a missing dependency (issue 9). The console
script and the test extra's tools (``vermin``, ``kubectl``, ...) live next to
``sys.executable``.
"""

from __future__ import annotations

import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """The absolute path of ``name`` in this interpreter's ``bin/``; fails loudly if absent."""
    path = VENV_BIN / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not installed next to {sys.executable}: run `make dev` "
            "(pip install -e '.[test]') in this interpreter's environment"
        )
    return str(path)


def ospool_ep_command() -> list[str]:
    """The installed console script: what a site runs, not ``python -m``."""
    return [venv_tool("ospool-ep")]
