"""The pilot's transfer service: the plugin's work done in one long-lived process.

``python3 -I -m ospool_ep.transfer.service --socket PATH``, started and restarted by the
supervisor. Each plugin run (:mod:`.client`) becomes a task here: pelicanfs and aiohttp
are imported once, not per job, and transfers without a job's credential share one
session, so the federation's discovery document, the director's cache list for a
namespace (pelicanfs keeps it 15 minutes) and the TLS connections to the caches are
reused from one job to the next. A request that carries a job's credential gets a
session of its own, closed after it, so no token is ever left where another job's
transfer could send it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ospool_ep.transfer import commands, engine, protocol
from ospool_ep.transfer.client import MAX_ANSWER_BYTES

MAX_REQUEST_BYTES = 4 << 20
"""A request is the plugin's argv, environment and cwd: far below this."""


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, shared: engine.Session
) -> None:
    try:
        line = await reader.readline()
        answer = await answer_for(line, reader, shared)
        if answer is not None:
            writer.write(encode(answer))
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answer_for(
    line: bytes, reader: asyncio.StreamReader, shared: engine.Session
) -> commands.Answer | None:
    try:
        request = json.loads(line)
        argv = [str(a) for a in request["argv"]]
        environ = {str(k): str(v) for k, v in dict(request["env"]).items()}
        cwd = Path(str(request["cwd"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return commands.Answer(int(protocol.Exit.FAILURE), stderr="bad request to the service\n")
    try:
        invocation = protocol.parse_arguments(argv)
    except protocol.UsageError as error:
        message = f"ospool-ep-pelican-plugin: {error}\n"
        return commands.Answer(int(protocol.Exit.FAILURE), stderr=message)
    if isinstance(invocation, protocol.Capabilities) or not cwd.is_absolute():
        return commands.Answer(int(protocol.Exit.FAILURE), stderr="not a request for the service\n")
    work = asyncio.ensure_future(
        commands.execute(invocation, environ=environ, cwd=cwd, shared=shared)
    )
    gone = asyncio.ensure_future(reader.read(1))  # b"": the plugin went away
    done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()  # the transfer's own clean-up removes its partial file
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return None
    gone.cancel()
    return work.result()


def encode(answer: commands.Answer) -> bytes:
    document: dict[str, Any] = {
        "exit": answer.exit,
        "stdout": answer.stdout[: MAX_ANSWER_BYTES // 4],
        "stderr": answer.stderr[: MAX_ANSWER_BYTES // 4],
    }
    return (json.dumps(document) + "\n").encode()


async def serve(path: Path) -> None:
    logging.getLogger().addHandler(logging.NullHandler())
    shared = engine.Session(limits=engine.Limits.from_environment(os.environ), environ={})
    path.unlink(missing_ok=True)
    os.umask(0o077)  # the socket: the pilot's uid only

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle(reader, writer, shared)

    server = await asyncio.start_unix_server(on_connect, path=str(path), limit=MAX_REQUEST_BYTES)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signo, stop.set)
    async with server:
        await stop.wait()
    path.unlink(missing_ok=True)
    await shared.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ospool_ep.transfer.service", description=__doc__)
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.socket))
    except OSError as error:
        print(f"transfer service: {args.socket}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
