"""``ospool-ep-pelican-plugin``: the command HTCondor's starter runs for osdf/pelican/stash URLs.

Never a traceback: a bad command line is exit 1 with one line on stderr; every transfer
problem is a result ad with ``TransferSuccess = false`` and its reason. A request file
that cannot be read still gets an outfile (empty), so the starter reports our stderr line.

In a pilot, the work is handed to the pilot's transfer service (:mod:`.service`, named by
``$OSPOOL_EP_TRANSFER_SOCKET``) and done here only where there is none, or it is gone:
the same code either way (:mod:`.commands`). Only the standard library is imported before
that choice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ospool_ep.transfer import client

TYPE_CHECKING = False  # typing itself costs this start-up 16 ms
if TYPE_CHECKING:
    from ospool_ep.transfer import protocol

DIAGNOSTIC_FLAGS = frozenset({"-d", "-diagnostic"})
"""A diagnostic run logs to this process's stderr: never handed to the service."""


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["-classad"]:
        sys.stdout.write(capabilities_text())
        return 0
    # The service parses the command line itself: a served run imports nothing more.
    path = client.socket_path(os.environ)
    if path is not None and not DIAGNOSTIC_FLAGS.intersection(args):
        reply = client.delegate(path, args, os.environ, os.getcwd())  # noqa: PTH109 - no pathlib
        if reply is not None:
            sys.stdout.write(reply.stdout)
            sys.stderr.write(reply.stderr)
            return reply.exit
    from ospool_ep.transfer import protocol  # noqa: PLC0415

    try:
        invocation = protocol.parse_arguments(args)
    except protocol.UsageError as error:
        print(f"ospool-ep-pelican-plugin: {error}", file=sys.stderr)
        return int(protocol.Exit.FAILURE)
    if isinstance(invocation, protocol.Capabilities):  # pragma: no cover - handled above
        sys.stdout.write(capabilities_text())
        return 0
    return in_process(invocation, diagnostic=bool(getattr(invocation, "diagnostic", False)))


def in_process(
    invocation: protocol.Batch | protocol.Single | protocol.SelfTest, *, diagnostic: bool
) -> int:
    import asyncio  # noqa: PLC0415 - only for work done here
    import logging  # noqa: PLC0415 - 60 ms on Python 3.14: not for the service's clients
    from pathlib import Path  # noqa: PLC0415

    from ospool_ep.transfer import commands  # noqa: PLC0415

    if diagnostic:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        # pelicanfs warns through logging's last-resort handler (stderr, which the
        # starter puts in its log) about things the result ad already says.
        logging.getLogger().addHandler(logging.NullHandler())
    answer = asyncio.run(commands.execute(invocation, environ=os.environ, cwd=Path.cwd()))
    sys.stdout.write(answer.stdout)
    sys.stderr.write(answer.stderr)
    return answer.exit


def capabilities_text() -> str:
    """Old syntax, one attribute a line, as HTCondor's own plugins answer ``-classad``."""
    from ospool_ep.transfer import protocol  # noqa: PLC0415

    lines = []
    for name, value in protocol.capabilities().items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{name} = {text}\n")
    return "".join(lines)


if __name__ == "__main__":
    sys.exit(main())
