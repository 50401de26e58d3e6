"""``ospool-ep-pelican-plugin``: the command HTCondor's starter runs for osdf/pelican/stash URLs.

Never a traceback: a bad command line is exit 1 with one line on stderr; every transfer
problem is a result ad with ``TransferSuccess = false`` and its reason. A request file
that cannot be read still gets an outfile (empty), so the starter reports our stderr line.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ospool_ep.transfer import engine, protocol
from ospool_ep.transfer.protocol import Exit, UsageError

SELFTEST_URL = "osdf:///pelicanplatform/test/hello-world.txt"
"""The object OSG's pilot fetches to test its plugin (osg-flock's pelican-setup)."""
SELFTEST_SECONDS = 120.0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        invocation = protocol.parse_arguments(args)
    except UsageError as error:
        print(f"ospool-ep-pelican-plugin: {error}", file=sys.stderr)
        return int(Exit.FAILURE)
    if getattr(invocation, "diagnostic", False):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        # pelicanfs warns through logging's last-resort handler (stderr, which the
        # starter puts in its log) about things the result ad already says.
        logging.getLogger().addHandler(logging.NullHandler())
    if isinstance(invocation, protocol.Capabilities):
        sys.stdout.write(_ads([protocol.capabilities()]))
        return int(Exit.SUCCESS)
    if isinstance(invocation, protocol.SelfTest):
        return selftest(invocation)
    limits = engine.Limits.from_environment(os.environ)
    if isinstance(invocation, protocol.Single):
        requests = [protocol.Request(invocation.url, invocation.destination)]
        outcomes = _run(requests, upload=False, limits=limits)
        for outcome in outcomes:
            _say(outcome)
        return int(protocol.exit_status(outcomes))
    return batch(invocation, limits)


def batch(invocation: protocol.Batch, limits: engine.Limits) -> int:
    outfile = Path(invocation.outfile)
    try:
        requests = protocol.requests_from_ads(_read_ads(Path(invocation.infile)))
    except (OSError, UsageError, ValueError) as error:
        print(f"ospool-ep-pelican-plugin: {invocation.infile}: {error}", file=sys.stderr)
        _write(outfile, "")
        return int(Exit.FAILURE)
    outcomes = _run(requests, upload=invocation.upload, limits=limits)
    _write(outfile, _result_ads([protocol.result_ad(o) for o in outcomes]))
    for outcome in outcomes:
        if outcome.failure is not None:
            print(f"{outcome.request.url}: {outcome.failure.message}", file=sys.stderr)
    return int(protocol.exit_status(outcomes))


def selftest(invocation: protocol.SelfTest) -> int:
    """One download of the test object into a scratch file: ``ok ...`` or the reason."""
    url = invocation.url or SELFTEST_URL
    limits = engine.Limits.from_environment(os.environ)
    with tempfile.TemporaryDirectory(prefix="ospool-ep-osdf-test-") as scratch:
        request = protocol.Request(url, str(Path(scratch) / "object"))
        outcome = _run([request], upload=False, limits=limits, timeout=invocation.timeout)[0]
    if outcome.failure is not None:
        print(f"{url}: {outcome.failure.message}")
        return int(Exit.FAILURE)
    if outcome.total_bytes == 0:
        print(f"{url}: the test object arrived empty")
        return int(Exit.FAILURE)
    seconds = outcome.ended - outcome.started
    print(f"ok: {url}: {outcome.total_bytes} bytes from {outcome.host} in {seconds:.2f} s")
    return int(Exit.SUCCESS)


def _run(
    requests: list[protocol.Request],
    *,
    upload: bool,
    limits: engine.Limits,
    timeout: float | None = None,
) -> list[protocol.Outcome]:
    import asyncio  # noqa: PLC0415

    async def transfers() -> list[protocol.Outcome]:
        work = engine.run_all(requests, upload=upload, limits=limits, environ=os.environ)
        if timeout is None:
            return await work
        try:
            return await asyncio.wait_for(work, timeout)
        except TimeoutError:
            failure = protocol.Failure(
                protocol.ErrorType.CONTACT, f"no result within {timeout:g} s", retryable=True
            )
            return [protocol.Outcome(r, upload, 0.0, 0.0, failure=failure) for r in requests]

    return engine.run(transfers)


def _say(outcome: protocol.Outcome) -> None:
    if outcome.failure is None:
        print(f"{outcome.request.url}: {outcome.total_bytes} bytes", file=sys.stderr)
    else:
        print(f"{outcome.request.url}: {outcome.failure.message}", file=sys.stderr)


def _read_ads(path: Path) -> list[dict[str, object]]:
    import classad2  # noqa: PLC0415

    text = path.read_text(encoding="utf-8", errors="replace")
    return [dict(ad) for ad in classad2.parseAds(text)]


def _ads(ads: Sequence[dict[str, object]]) -> str:
    import classad2  # noqa: PLC0415

    return "".join(classad2.ClassAd(ad).printOld() + "\n" for ad in ads)


def _result_ads(ads: Sequence[dict[str, object]]) -> str:
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


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"ospool-ep-pelican-plugin: cannot write {path}: {error.strerror}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
