"""Running the OSDF plugin the way HTCondor's starter does, for the tests.

A request file of ads (``Url``, ``LocalFileName``), ``-infile IN -outfile OUT`` (``-upload``
for output files), the job's credentials as ``<name>.use`` files in ``$_CONDOR_CREDS``,
the outfile read with the new-syntax parser the starter uses.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2
from federation import RunningFederation

PLUGIN = Path(sys.executable).parent / "ospool-ep-pelican-plugin"


@dataclass(frozen=True)
class Run:
    code: int
    ads: list[dict[str, Any]]
    stdout: str
    stderr: str
    seconds: float


def plugin_env(
    running: RunningFederation, creds: Path | None = None, extra: Mapping[str, str] = {}
) -> dict[str, str]:
    """The test CA trusted; no token but the job's (``creds``) for the client to find."""
    env = running.client_env()
    for name in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "TOKEN", "XDG_RUNTIME_DIR", "_CONDOR_CREDS"):
        env.pop(name, None)
    env.pop("PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT", None)
    env["PATH"] = str(PLUGIN.parent)  # no `pelican` binary: no OIDC device flow
    if creds is not None:
        env["_CONDOR_CREDS"] = str(creds)
    env.update(extra)
    return env


def credentials(directory: Path, tokens: Mapping[str, str]) -> Path:
    """A ``$_CONDOR_CREDS`` directory holding ``<name>.use`` for each token."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in tokens.items():
        (directory / f"{name}.use").write_text(text + "\n")
    return directory


def run_plugin(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def transfer(
    work: Path,
    requests: Sequence[tuple[str, Path]],
    *,
    env: Mapping[str, str],
    upload: bool = False,
) -> Run:
    """One plugin run over ``(Url, LocalFileName)`` requests, as the starter makes it."""
    work.mkdir(parents=True, exist_ok=True)
    infile, outfile = work / "in.ads", work / "out.ads"
    infile.write_text(
        "".join(
            f"[ Url = {classad2.quote(url)}; LocalFileName = {classad2.quote(str(local))} ]\n"
            for url, local in requests
        )
    )
    args = ["-infile", str(infile), "-outfile", str(outfile), *(["-upload"] if upload else [])]
    started = time.monotonic()
    result = run_plugin(args, env=env, cwd=work)
    seconds = time.monotonic() - started
    # The starter reads the outfile with the new-syntax parser only (HTCondor 25).
    ads = [dict(ad) for ad in classad2.parseAds(outfile.read_text(), classad2.ParserType.New)]
    assert len(ads) == len(requests), result.stderr
    return Run(result.returncode, ads, result.stdout, result.stderr, seconds)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_nothing_left(local: Path) -> None:
    """No file under the starter's name, no part file beside it."""
    assert not local.exists(), local
    leftovers = sorted(p.name for p in local.parent.glob("*.ospool-ep-part"))
    assert leftovers == [], leftovers
