"""The job's own credential for a transfer, from HTCondor's credential directory.

HTCondor hands a job's OAuth/SciTokens credentials to transfer plugins as files named
``<service>.use`` in the directory ``$_CONDOR_CREDS`` (the sandbox's ``.condor_creds``).
Which one a URL uses:

- ``NAME+osdf:///...``: ``NAME.use`` (or with ``.`` written as ``_``, as HTCondor stores
  dotted names), and nothing else: a URL that names a missing credential fails;
- otherwise ``scitokens.use`` when there is one, else the only ``*.use`` whose scopes
  (read from the token's unverified payload: the server verifies it) cover the object.

Only the job's credentials are looked at, never the pilot's token or environment.
A token is used only for a namespace whose director says it needs one (uploads: always).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CREDS_VARIABLE = "_CONDOR_CREDS"
DEFAULT_NAME = "scitokens"
MAX_TOKEN_BYTES = 64 * 1024
READ_SCOPES = ("storage.read:",)
WRITE_SCOPES = ("storage.create:", "storage.modify:")


class TokenProblem(Exception):
    """The URL names a credential the job does not have, or it cannot be read."""


@dataclass(frozen=True)
class Token:
    name: str
    text: str

    def __repr__(self) -> str:  # never the text, in logs or tracebacks
        return f"Token(name={self.name!r})"


def find(environ: Mapping[str, str], *, name: str | None, path: str, write: bool) -> Token | None:
    directory = environ.get(CREDS_VARIABLE)
    if not directory:
        if name:
            raise TokenProblem(
                f"the URL asks for credential {name!r} but HTCondor gave the plugin none "
                f"({CREDS_VARIABLE} is not set): add it to the job's use_oauth_services"
            )
        return None
    creds = Path(directory)
    if name:
        for candidate in (f"{name}.use", f"{name.replace('.', '_')}.use"):
            token = _read(creds / candidate, name)
            if token is not None:
                return token
        raise TokenProblem(f"the job has no credential {name!r} ({name}.use in {CREDS_VARIABLE})")
    default = _read(creds / f"{DEFAULT_NAME}.use", DEFAULT_NAME)
    if default is not None:
        return default
    fitting = [
        token
        for token in (_read(p, p.stem) for p in sorted(_use_files(creds)))
        if token is not None and covers(token.text, path, write=write)
    ]
    return fitting[0] if len(fitting) == 1 else None


def _use_files(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.suffix == ".use" and not p.name.startswith(".")]
    except OSError:
        return []


def _read(path: Path, name: str) -> Token | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TokenProblem(f"credential {name!r} cannot be read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_TOKEN_BYTES + 1)
    if len(data) > MAX_TOKEN_BYTES:
        raise TokenProblem(f"credential {name!r} is larger than {MAX_TOKEN_BYTES} bytes")
    text = _token_text(data.decode("utf-8", errors="replace"))
    return Token(name, text) if text else None


def _token_text(content: str) -> str:
    """A bare token, or the ``access_token`` of the JSON some credmons write."""
    content = content.strip()
    if content.startswith("{"):
        try:
            value = json.loads(content).get("access_token", "")
        except (ValueError, AttributeError):
            return ""
        return value.strip() if isinstance(value, str) else ""
    lines = [line for line in content.splitlines() if line and not line.startswith("#")]
    return lines[0].strip() if lines else ""


def covers(token: str, path: str, *, write: bool) -> bool:
    """Whether the token's ``scope`` grants the operation on ``path`` (no signature check)."""
    scopes = _claims(token).get("scope")
    if not isinstance(scopes, str):
        return False
    wanted = WRITE_SCOPES if write else READ_SCOPES
    for scope in scopes.split():
        for prefix in wanted:
            if scope.startswith(prefix):
                base = scope[len(prefix) :].rstrip("/") or ""
                if path == base or path.startswith(base + "/") or base == "":
                    return True
    return False


def _claims(token: str) -> dict[str, object]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
