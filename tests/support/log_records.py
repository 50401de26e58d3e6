"""An Emitter writing JSON lines into memory at a fixed clock, and the records it wrote."""

from __future__ import annotations

import io
import json

from ospool_ep.pilot.logs import Emitter

T0 = 1_795_237_200.25
"""The tests' clock: 2026-11-21T05:00:00.250Z."""


def clock() -> float:
    return T0


def json_emitter() -> tuple[Emitter, io.StringIO]:
    stream = io.StringIO()
    return Emitter(fmt="json", stream=stream, clock=clock), stream


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]
