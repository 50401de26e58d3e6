"""What each plugin invocation does, as a coroutine that returns its answer.

The same code runs in the plugin's own process and in the pilot's transfer service
(:mod:`.service`): an :class:`Answer` carries what the plugin prints and its exit status,
so either can hand it back. Paths are taken relative to the plugin's working directory
(the starter's), wherever the work runs.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.transfer import engine, protocol, tokens
from ospool_ep.transfer.protocol import Exit, UsageError

SELFTEST_URL = "osdf:///pelicanplatform/test/hello-world.txt"
"""The object OSG's pilot fetches to test its plugin (osg-flock's pelican-setup)."""


@dataclass(frozen=True)
class Answer:
    exit: int
    stdout: str = ""
    stderr: str = ""


async def execute(
    invocation: protocol.Batch | protocol.Single | protocol.SelfTest,
    *,
    environ: Mapping[str, str],
    cwd: Path,
    shared: engine.Session | None = None,
) -> Answer:
    """``shared``: a long-lived session (the service's) this run may use if it carries no
    credential of a job's and wants the same limits; otherwise it gets its own."""
    limits = engine.Limits.from_environment(environ)
    if isinstance(invocation, protocol.SelfTest):
        return await selftest(invocation, environ=environ, limits=limits, shared=shared)
    if isinstance(invocation, protocol.Single):
        requests = [protocol.Request(invocation.url, str(cwd / invocation.destination))]
        outcomes = await transfer(
            requests, upload=False, environ=environ, limits=limits, shared=shared
        )
        lines = [_line(o) for o in outcomes]
        return Answer(int(protocol.exit_status(outcomes)), stderr="".join(lines))
    return await batch(invocation, environ=environ, cwd=cwd, limits=limits, shared=shared)


async def batch(
    invocation: protocol.Batch,
    *,
    environ: Mapping[str, str],
    cwd: Path,
    limits: engine.Limits,
    shared: engine.Session | None,
) -> Answer:
    outfile = cwd / invocation.outfile
    try:
        requests = protocol.requests_from_ads(read_ads(cwd / invocation.infile))
    except (OSError, UsageError, ValueError) as error:
        message = f"ospool-ep-pelican-plugin: {invocation.infile}: {error}\n"
        return Answer(int(Exit.FAILURE), stderr=message + write(outfile, ""))
    requests = [protocol.Request(r.url, str(cwd / r.local_file)) for r in requests]
    outcomes = await transfer(
        requests, upload=invocation.upload, environ=environ, limits=limits, shared=shared
    )
    stderr = write(outfile, result_ads([protocol.result_ad(o) for o in outcomes]))
    stderr += "".join(_line(o) for o in outcomes if o.failure is not None)
    return Answer(int(protocol.exit_status(outcomes)), stderr=stderr)


async def selftest(
    invocation: protocol.SelfTest,
    *,
    environ: Mapping[str, str],
    limits: engine.Limits,
    shared: engine.Session | None,
) -> Answer:
    """One download of the test object into a scratch file: ``ok ...`` or the reason."""
    url = invocation.url or SELFTEST_URL
    with tempfile.TemporaryDirectory(prefix="ospool-ep-osdf-test-") as scratch:
        request = protocol.Request(url, str(Path(scratch) / "object"))
        work = transfer([request], upload=False, environ=environ, limits=limits, shared=shared)
        try:
            (outcome,) = await asyncio.wait_for(work, invocation.timeout)
        except TimeoutError:
            return Answer(int(Exit.FAILURE), f"{url}: no result within {invocation.timeout:g} s\n")
    if outcome.failure is not None:
        return Answer(int(Exit.FAILURE), f"{url}: {outcome.failure.message}\n")
    if outcome.total_bytes == 0:
        return Answer(int(Exit.FAILURE), f"{url}: the test object arrived empty\n")
    seconds = outcome.ended - outcome.started
    said = f"ok: {url}: {outcome.total_bytes} bytes from {outcome.host} in {seconds:.2f} s\n"
    return Answer(int(Exit.SUCCESS), said)


async def transfer(
    requests: Sequence[protocol.Request],
    *,
    upload: bool,
    environ: Mapping[str, str],
    limits: engine.Limits,
    shared: engine.Session | None,
) -> list[protocol.Outcome]:
    if (
        shared is not None
        and shared.limits == limits
        and not carries_credentials(requests, environ)
    ):
        return [await shared.transfer(request, upload=upload) for request in requests]
    return await engine.run_all(requests, upload=upload, limits=limits, environ=environ)


def carries_credentials(requests: Sequence[protocol.Request], environ: Mapping[str, str]) -> bool:
    """A job's token must never be left on a session another job's transfers use."""
    if environ.get(tokens.CREDS_VARIABLE):
        return True
    return any("+" in request.url.partition("://")[0] for request in requests)


def _line(outcome: protocol.Outcome) -> str:
    if outcome.failure is None:
        return f"{outcome.request.url}: {outcome.total_bytes} bytes\n"
    return f"{outcome.request.url}: {outcome.failure.message}\n"


def read_ads(path: Path) -> list[dict[str, object]]:
    import classad2  # noqa: PLC0415

    text = path.read_text(encoding="utf-8", errors="replace")
    return [dict(ad) for ad in classad2.parseAds(text)]


def result_ads(ads: Sequence[dict[str, object]]) -> str:
    """The outfile: one new-syntax ad (``[ A = 1; ... ]``) per line. The starter reads it
    with the new-syntax parser only (HTCondor 25: an old-syntax file is "no valid classads
    in output file", the transfer failed though the plugin exited 0); -classad's answer
    on stdout stays old syntax, as HTCondor's own plugins print it."""
    import classad2  # noqa: PLC0415

    # str() is the new syntax over indented lines; a value holds no raw line break
    # (strings are escaped), so the lines join into one without changing the ad.
    return "".join(
        " ".join(part.strip() for part in str(classad2.ClassAd(ad)).splitlines() if part.strip())
        + "\n"
        for ad in ads
    )


def write(path: Path, text: str) -> str:
    """Write ``text``; the stderr line if it cannot be."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        return f"ospool-ep-pelican-plugin: cannot write {path}: {error.strerror}\n"
    return ""
