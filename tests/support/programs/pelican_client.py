#!/usr/bin/env python3
"""Runs pelicanfs operations and prints what happened: one JSON result per operation.

argv[1] is a JSON list of operations; each gets a fresh ``PelicanFileSystem`` (no
fsspec instance cache) built from its ``discovery`` URL and options:

``{"op": "get", "url": U, "local": PATH}``, ``{"op": "put", "local": PATH, "url": U}``,
``{"op": "cat_file", "url": U, "start": N, "end": N}``, ``{"op": "read", "url": U}``
(``open()`` then ``read()``), each with optional ``"headers"``, ``"direct_reads"`` and
``"timeout": {"total": S, "sock_connect": S, "sock_read": S}`` (an aiohttp
ClientTimeout for the filesystem's HTTP session).

A result: ``ok``, ``seconds``, ``sha256`` and ``size`` of what was read (get, cat_file,
read), and for a failure ``error_type``, ``error_mro`` (class names), ``error``
(message) and ``warnings`` (what pelicanfs logged at WARNING or above).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from pelicanfs.core import PelicanFileSystem  # type: ignore[import-untyped]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def filesystem(op: dict[str, Any], discovery: str) -> PelicanFileSystem:
    kwargs: dict[str, Any] = {"skip_instance_cache": True}
    if op.get("headers"):
        kwargs["headers"] = op["headers"]
    if op.get("timeout"):
        kwargs["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(**op["timeout"])}
    return PelicanFileSystem(discovery, direct_reads=bool(op.get("direct_reads")), **kwargs)


def discovery_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return "pelican://osg-htc.org" if scheme == "osdf" else f"{scheme}://{rest.split('/', 1)[0]}"


def perform(op: dict[str, Any]) -> dict[str, Any]:
    fs = filesystem(op, discovery_of(op["url"]))
    kind = op["op"]
    if kind == "get":
        fs.get(op["url"], op["local"])
        data = Path(op["local"]).read_bytes()
    elif kind == "put":
        fs.put(op["local"], op["url"])
        return {}
    elif kind == "cat_file":
        data = fs.cat_file(op["url"], start=op.get("start"), end=op.get("end"))
    elif kind == "read":
        with fs.open(op["url"], "rb") as handle:
            data = handle.read()
    else:
        raise ValueError(f"unknown op {kind!r}")
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def run(op: dict[str, Any]) -> dict[str, Any]:
    collect = Collect()
    logging.getLogger().addHandler(collect)
    start = time.monotonic()
    try:
        result = {"ok": True, **perform(op)}
    except Exception as err:  # reported, not raised: the caller asserts on it
        result = {
            "ok": False,
            "error_type": type(err).__name__,
            "error_mro": [cls.__name__ for cls in type(err).__mro__],
            "error": str(err),
        }
    finally:
        logging.getLogger().removeHandler(collect)
    result["seconds"] = round(time.monotonic() - start, 3)
    result["warnings"] = collect.messages
    return result


def main() -> int:
    ops = json.loads(sys.argv[1])
    json.dump([run(op) for op in ops], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
