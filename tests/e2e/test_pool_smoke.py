"""Smoke test of the container test pool (tests/support/pool.py): a real central
manager mints a real IDTOKEN, a bare ``condor_master`` pilot from the ospool-ep
image joins with it, and a real job runs there.

Needs podman and the built image (``scripts/build-image.sh``); skipped with
the reason otherwise. Run: ``python -m pytest -m container tests/e2e -v``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pool  # tests/support/pool.py (tests/ is not a package)
import pytest

_reason = pool.unavailable_reason()
pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(_reason is not None, reason=f"container pool unavailable: {_reason}"),
]


@pytest.fixture(scope="module")
def test_pool() -> Iterator[pool.Pool]:
    service = pool.ensure_podman_service()
    try:
        with pool.Pool.start() as p:
            yield p
            print(f"\npool timings: {pool.describe_timings(p.timings)}")
    finally:
        service.stop()


@pytest.fixture(scope="module")
def token(test_pool: pool.Pool) -> str:
    return test_pool.mint_token()


def _claims(jwt: str) -> dict[str, object]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_central_manager_mints_a_pool_token(token: str) -> None:
    """The token is a JWT signed with the POOL key for condor_pool@<trust domain>."""
    header = json.loads(base64.urlsafe_b64decode(token.split(".", maxsplit=1)[0] + "=="))
    claims = _claims(token)
    assert header == {"alg": "HS256", "kid": "POOL"}
    assert claims["iss"] == pool.TRUST_DOMAIN
    assert claims["sub"] == f"condor_pool@{pool.TRUST_DOMAIN}"


def test_a_bare_pilot_joins_with_the_token_and_no_trust_domain(
    test_pool: pool.Pool, token: str
) -> None:
    """A bare condor_master EP (uid 1000, ep-minimal.conf, no TRUST_DOMAIN)
    advertises its slot, authenticated by IDTOKENS as condor_pool."""
    start = time.monotonic()
    test_pool.start_bare_pilot("ep1", token)
    try:
        ads = test_pool.wait_for_slot('Machine == "ep1"', timeout=60)
    except TimeoutError:
        pytest.fail(f"slot never appeared:\n{test_pool.pilot_logs('ep1')}")
    test_pool.timings["ep1_slot_visible"] = round(time.monotonic() - start, 3)
    assert ads[0]["AuthenticationMethod"] == "IDTOKENS"
    assert ads[0]["AuthenticatedIdentity"] == f"condor_pool@{pool.TRUST_DOMAIN}"


def test_a_job_runs_on_the_bare_pilot(test_pool: pool.Pool, token: str) -> None:
    """/bin/echo submitted by a non-root user in the CM completes on ep1."""
    if "ep1" not in test_pool.pilots:
        test_pool.start_bare_pilot("ep1", token)
    test_pool.wait_for_slot('Machine == "ep1"', timeout=60)
    cluster = test_pool.submit(
        {"executable": "/bin/echo", "arguments": "hello", "requirements": 'Machine == "ep1"'}
    )
    test_pool.wait_for_job(cluster, timeout=120)
    assert test_pool.job_output(cluster) == "hello\n"
    ads = test_pool.job_ads(cluster, ("ProcId", "ExitCode", "LastRemoteHost", "Owner"))
    assert ads[0]["ExitCode"] == 0
    assert ads[0]["LastRemoteHost"].endswith("@ep1")
    assert ads[0]["Owner"] == pool.SUBMIT_USER
