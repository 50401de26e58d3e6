"""The plugin's side of the pilot's transfer service: hand the invocation over, get the answer.

Standard library only, so that a plugin run that the service serves costs an interpreter
start, not the ~1 s of importing pelicanfs and aiohttp. The protocol is one JSON line
each way on a Unix socket only the pilot's uid can open: ``{"argv", "env", "cwd"}`` then
``{"exit", "stdout", "stderr"}``. The service cancels the work if the plugin goes away
(the starter killed it), so a transfer never outlives the plugin that asked for it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence

SOCKET_VARIABLE = "OSPOOL_EP_TRANSFER_SOCKET"
"""Set by the pilot in its daemons' environment: the service's socket."""
CONNECT_SECONDS = 2.0
MAX_ANSWER_BYTES = 1 << 20


class Reply:
    """The service's answer (a plain class: dataclasses cost this start-up 14 ms)."""

    __slots__ = ("exit", "stderr", "stdout")

    def __init__(self, exit: int, stdout: str, stderr: str) -> None:
        self.exit = exit
        self.stdout = stdout
        self.stderr = stderr


def delegate(path: str, argv: Sequence[str], environ: Mapping[str, str], cwd: str) -> Reply | None:
    """The service's answer, or None when there is none to be had (no service, it died):
    then the plugin does the work itself."""
    request = json.dumps({"argv": list(argv), "env": dict(environ), "cwd": cwd}) + "\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(CONNECT_SECONDS)
            conn.connect(path)
            conn.settimeout(None)  # the service bounds the work; the starter bounds us
            conn.sendall(request.encode())
            data = _read_line(conn)
    except OSError:
        return None
    try:
        answer = json.loads(data)
        return Reply(int(answer["exit"]), str(answer["stdout"]), str(answer["stderr"]))
    except (ValueError, KeyError, TypeError):
        return None


def _read_line(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_ANSWER_BYTES:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def socket_path(environ: Mapping[str, str]) -> str | None:
    path = environ.get(SOCKET_VARIABLE, "")
    return path if path.startswith("/") else None
