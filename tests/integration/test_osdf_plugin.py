"""The installed ``ospool-ep-pelican-plugin`` moves objects of a Pelican federation as
HTCondor's starter asks, and says why when it cannot.

Each test runs the console script (from this interpreter's ``bin/``) the way the starter
does: a request file of ads (``Url``, ``LocalFileName``), ``-infile IN -outfile OUT``
(``-upload`` for output files), the job's credentials as ``<name>.use`` files in
``$_CONDOR_CREDS``. The federation is the local stand-in (``tests/support/federation.py``)
with the real pelicanfs client inside the plugin. What the plugin promises: objects arrive
intact through discovery, director and cache, a refused cache is skipped; every failure is
a result ad with a reason naming what went wrong and an ``ErrorType``, within a bound;
no partial file is ever left under the name the starter asked for; the exit status is
0 (all done), 1 (some failed) or 2 (refresh the credentials).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import classad2
import pytest
from federation import READ_TOKEN, WRITE_TOKEN, Federation, RunningFederation, serve
from plugin_runs import (
    PLUGIN,
    Run,
    assert_nothing_left,
    credentials,
    plugin_env,
    run_plugin,
    sha256,
    transfer,
)

BIG = 20 << 20
BOUND = 30.0
"""Seconds any one plugin run may take, the slowest failure (3 tries of 2 s) included."""
STALL_ENV = {"PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT": "2s"}
HELLO = b"hello from the stand-in\n"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return Federation(tmp_path_factory.mktemp("federation"))


@pytest.fixture(scope="module")
def digests(fed: Federation) -> dict[str, str]:
    return {
        "hello": fed.put_bytes("/test/hello.txt", HELLO),
        "big": fed.put_object("/test/big.bin", BIG),
        "small": fed.put_bytes("/test/small.txt", b"a second file\n"),
        "fallback": fed.put_bytes("/test/fallback.txt", b"from the second cache\n"),
        "stall": fed.put_object("/test/stall/object.bin", 1 << 20),
        "truncated": fed.put_object("/test/truncated/object.bin", 1 << 20),
        "private": fed.put_bytes("/private/secret.txt", b"for token holders\n"),
    }


@pytest.fixture(scope="module")
def running(fed: Federation, digests: dict[str, str]) -> Iterator[RunningFederation]:
    with serve(fed) as running:
        yield running


@dataclass(frozen=True)
class Case:
    target: str
    """An object's path in the stand-in's ``federation``, or a whole URL."""
    local: str
    extra: Mapping[str, str] = field(default_factory=dict)
    federation: str = "main"


SLOW_CASES: Mapping[str, Case] = {
    "stall": Case("/test/stall/object.bin", "stalled.bin", STALL_ENV),
    "truncated": Case("/test/truncated/object.bin", "truncated.bin"),
    "silent": Case("/test/hello.txt", "hello.txt", STALL_ENV, federation="silent"),
    "nothing-listens": Case("pelican://127.0.0.1:1/test/x", "x"),
}
"""The failures that wait out timeouts or retry pauses (seconds each): run side by side."""


@pytest.fixture(scope="module")
def slow(
    running: RunningFederation, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Run, Path]]:
    def one(case: Case) -> tuple[Run, Path]:
        work = tmp_path_factory.mktemp("slow")
        target = case.target
        url = running.url(target, case.federation) if target.startswith("/") else target
        local = work / case.local
        return transfer(work, [(url, local)], env=plugin_env(running, extra=case.extra)), local

    with concurrent.futures.ThreadPoolExecutor(len(SLOW_CASES)) as pool:
        futures = {name: pool.submit(one, case) for name, case in SLOW_CASES.items()}
        return {name: future.result() for name, future in futures.items()}


def error_data(ad: Mapping[str, Any]) -> dict[str, Any]:
    data = ad["TransferErrorData"]
    assert len(data) == 1, data
    return dict(data[0])


def assert_failed(ad: Mapping[str, Any], kind: str, *words: str) -> str:
    """The ad reports a failure of ``kind`` whose reason holds every one of ``words``."""
    assert ad["TransferSuccess"] is False, ad
    reason = str(ad["TransferError"])
    data = error_data(ad)
    assert data["ErrorType"] == kind, reason
    assert data["ErrorString"] == reason
    for word in words:
        assert word in reason, reason
    return reason


def roles(running: RunningFederation, path: str) -> list[tuple[str, str, int]]:
    return [(r["role"], r["method"], r["status"]) for r in running.requests(path)]


# ---------------------------------------------------------------------------
# Downloads that work


def test_a_batch_of_two_objects_arrives_intact_through_director_and_cache(
    running: RunningFederation, digests: dict[str, str], tmp_path: Path
) -> None:
    """Both files land whole (sha256), each ad says so with the object's size, exit 0; the
    director is asked before the cache is read."""
    big, small = tmp_path / "big.bin", tmp_path / "small.txt"
    run = transfer(
        tmp_path,
        [(running.url("/test/big.bin"), big), (running.url("/test/small.txt"), small)],
        env=plugin_env(running),
    )
    assert run.code == 0, run.stderr
    assert run.seconds < BOUND
    assert (sha256(big), sha256(small)) == (digests["big"], digests["small"])
    for ad, local, size in zip(run.ads, (big, small), (BIG, small.stat().st_size), strict=True):
        assert ad["TransferSuccess"] is True, ad
        assert (ad["TransferFileName"], ad["TransferType"]) == (str(local), "download")
        assert (ad["TransferFileBytes"], ad["TransferTotalBytes"]) == (size, size)
        assert ad["TransferProtocol"] == "pelican"
        assert "TransferError" not in ad
    assert run.ads[0]["TransferHostName"] == running.urls["cache"].removeprefix("https://")
    hops = roles(running, "/test/big.bin")
    assert hops.index(("director", "GET", 307)) < hops.index(("cache", "GET", 200))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "big.bin",
        "in.ads",
        "out.ads",
        "small.txt",
    ]


def test_a_cache_that_refuses_connections_is_skipped_for_the_next_one(
    running: RunningFederation, digests: dict[str, str], tmp_path: Path
) -> None:
    """The "fallback" federation's director lists a dead cache first."""
    local = tmp_path / "fallback.txt"
    run = transfer(
        tmp_path, [(running.url("/test/fallback.txt", "fallback"), local)], env=plugin_env(running)
    )
    assert run.code == 0, run.stderr
    assert run.ads[0]["TransferSuccess"] is True, run.ads[0]
    assert sha256(local) == digests["fallback"]
    assert ("cache", "GET", 200) in roles(running, "/test/fallback.txt")


def test_a_namespace_that_needs_a_token_is_read_with_the_jobs_scitokens_credential(
    running: RunningFederation, digests: dict[str, str], tmp_path: Path
) -> None:
    creds = credentials(tmp_path / "creds", {"scitokens": READ_TOKEN})
    local = tmp_path / "secret.txt"
    run = transfer(
        tmp_path, [(running.url("/private/secret.txt"), local)], env=plugin_env(running, creds)
    )
    assert run.code == 0, run.stderr
    assert run.ads[0]["TransferSuccess"] is True, run.ads[0]
    assert sha256(local) == digests["private"]


# ---------------------------------------------------------------------------
# Downloads that fail, each with its reason, nothing left behind


def test_a_missing_object_fails_as_a_specification_error_and_the_rest_of_the_batch_arrives(
    running: RunningFederation, digests: dict[str, str], tmp_path: Path
) -> None:
    missing, hello = tmp_path / "missing.bin", tmp_path / "hello.txt"
    run = transfer(
        tmp_path,
        [(running.url("/test/no-such-object"), missing), (running.url("/test/hello.txt"), hello)],
        env=plugin_env(running),
    )
    assert run.code == 1
    assert run.seconds < BOUND
    assert_failed(run.ads[0], "Specification", "/test/no-such-object", "no such object")
    assert run.ads[0]["TransferFileBytes"] == 0
    assert_nothing_left(missing)
    assert run.ads[1]["TransferSuccess"] is True, run.ads[1]
    assert sha256(hello) == digests["hello"]
    assert "no such object" in run.stderr  # the starter keeps the plugin's stderr


def assert_slow_failure(
    slow: dict[str, tuple[Run, Path]], case: str, kind: str, *words: str
) -> tuple[Run, str]:
    """The case's run failed (exit 1) within the bound, for that reason, leaving nothing."""
    run, local = slow[case]
    assert run.code == 1, run.stderr
    assert run.seconds < BOUND
    reason = assert_failed(run.ads[0], kind, *words)
    assert_nothing_left(local)
    return run, reason


def test_a_stalled_body_fails_within_three_tries_of_the_stall_timeout_and_leaves_no_part(
    slow: dict[str, tuple[Run, Path]],
) -> None:
    """64 KiB, then silence: each try ends after PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT."""
    run, _ = assert_slow_failure(slow, "stall", "Contact", "stalled", "no data for 2 s")
    assert run.seconds > 3 * 2  # three tries of 2 s (not the 100 s default)
    assert run.ads[0]["TransferRetryable"] is True
    assert run.ads[0]["DeveloperData"]["Attempts"] == 3


def test_a_body_cut_short_is_a_transfer_error_not_a_short_file(
    slow: dict[str, tuple[Run, Path]],
) -> None:
    _, reason = assert_slow_failure(slow, "truncated", "Transfer", "connection closed after")
    assert reason.endswith(" bytes"), reason


def test_a_director_that_never_answers_fails_with_no_answer_within_the_bound(
    slow: dict[str, tuple[Run, Path]],
) -> None:
    assert_slow_failure(slow, "silent", "Contact", "no answer within 2 s")


def test_a_federation_where_nothing_listens_is_a_contact_error(
    slow: dict[str, tuple[Run, Path]],
) -> None:
    assert_slow_failure(slow, "nothing-listens", "Contact", "finding the federation", "127.0.0.1:1")


def test_a_malformed_url_is_a_specification_error_without_any_request(
    running: RunningFederation, tmp_path: Path
) -> None:
    before = len(running.requests())
    local = tmp_path / "b"
    run = transfer(tmp_path, [("osdf:///a/../b", local)], env=plugin_env(running))
    assert run.code == 1
    assert_failed(run.ads[0], "Specification", "'..'", "osdf:///a/../b")
    assert_nothing_left(local)
    assert len(running.requests()) == before


def test_a_refused_token_is_an_authorization_error_that_asks_for_fresh_credentials(
    running: RunningFederation, tmp_path: Path
) -> None:
    """Exit 2 and ShouldRefresh: HTCondor renews the job's credentials and tries again."""
    creds = credentials(tmp_path / "creds", {"scitokens": "not-the-read-token"})
    local = tmp_path / "secret.txt"
    run = transfer(
        tmp_path, [(running.url("/private/secret.txt"), local)], env=plugin_env(running, creds)
    )
    assert run.code == 2, run.stderr
    assert_failed(run.ads[0], "Authorization", "refused the job's token")
    assert error_data(run.ads[0])["ShouldRefresh"] is True
    assert_nothing_left(local)
    assert "not-the-read-token" not in run.stderr + run.stdout + str(run.ads)


def test_a_read_that_needs_a_token_the_job_lacks_says_so_without_asking_for_a_refresh(
    running: RunningFederation, tmp_path: Path
) -> None:
    local = tmp_path / "secret.txt"
    run = transfer(tmp_path, [(running.url("/private/secret.txt"), local)], env=plugin_env(running))
    assert run.code == 1, run.stderr
    assert_failed(run.ads[0], "Authorization", "HTTP 403", "needs a token")
    assert error_data(run.ads[0])["ShouldRefresh"] is False
    assert_nothing_left(local)


# ---------------------------------------------------------------------------
# Uploads


def test_an_upload_with_the_named_write_credential_lands_on_the_origin(
    fed: Federation, running: RunningFederation, tmp_path: Path
) -> None:
    source = tmp_path / "out.dat"
    source.write_bytes(b"the job's output\n" * 1000)
    creds = credentials(tmp_path / "creds", {"w": WRITE_TOKEN})
    url = "w+" + running.url("/test/out.dat")
    run = transfer(tmp_path, [(url, source)], env=plugin_env(running, creds), upload=True)
    assert run.code == 0, run.stderr
    ad = run.ads[0]
    assert ad["TransferSuccess"] is True, ad
    assert (ad["TransferType"], ad["TransferUrl"]) == ("upload", url)
    assert ad["TransferFileBytes"] == source.stat().st_size
    assert fed.local_path("/test/out.dat").read_bytes() == source.read_bytes()
    assert ("origin", "PUT", 201) in roles(running, "/test/out.dat")


def test_an_upload_without_a_token_is_refused_and_stores_nothing(
    fed: Federation, running: RunningFederation, tmp_path: Path
) -> None:
    source = tmp_path / "anonymous.dat"
    source.write_bytes(b"no token\n")
    url = running.url("/test/anonymous.dat")
    run = transfer(tmp_path, [(url, source)], env=plugin_env(running), upload=True)
    assert run.code == 1
    assert run.seconds < BOUND
    assert_failed(run.ads[0], "Authorization", "HTTP 403", "needs a token")
    assert error_data(run.ads[0])["ShouldRefresh"] is False
    assert not fed.local_path("/test/anonymous.dat").exists()
    assert source.read_bytes() == b"no token\n"


# ---------------------------------------------------------------------------
# The pilot's self-test and the starter's capability query


def test_the_selftest_prints_ok_and_exits_0_when_the_object_arrives(
    running: RunningFederation, tmp_path: Path
) -> None:
    url = running.url("/test/hello.txt")
    result = run_plugin(["-selftest", url], env=plugin_env(running), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"ok: {url}: {len(HELLO)} bytes from "), last


def test_the_selftest_prints_the_reason_and_exits_1_when_the_object_is_missing(
    running: RunningFederation, tmp_path: Path
) -> None:
    url = running.url("/test/no-such-object")
    result = run_plugin(["-selftest", url], env=plugin_env(running), cwd=tmp_path)
    assert result.returncode == 1
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"{url}: "), last
    assert "no such object" in last
    assert list(tmp_path.iterdir()) == []


def test_the_capability_ad_offers_osdf_pelican_and_stash(
    running: RunningFederation, tmp_path: Path
) -> None:
    result = run_plugin(["-classad"], env=plugin_env(running), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ads = [dict(ad) for ad in classad2.parseAds(result.stdout)]
    assert len(ads) == 1
    ad = ads[0]
    assert ad["SupportedMethods"] == "osdf,pelican,stash"
    assert (ad["PluginType"], ad["MultipleFileSupport"]) == ("FileTransfer", True)


def check_env(running: RunningFederation, root: Path) -> dict[str, str]:
    """What ``ospool-ep check`` needs to get as far as the plugin: a token, the names."""
    tokens = root / "tokens"
    tokens.mkdir()
    token = tokens / "flock.opensciencegrid.org"

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": "pool.example", "sub": "ep", "iat": int(time.time()), "exp": 4102444800}
    token.write_text(f"{part({'alg': 'HS256', 'kid': 'POOL'})}.{part(claims)}.c2lnbmF0dXJl\n")
    token.chmod(0o600)
    return {
        **plugin_env(running),
        "HOME": str(root),
        "GLIDEIN_Site": "Example",
        "GLIDEIN_ResourceName": "Example_CE",
        "TOKEN_DIR": str(tokens),
        "PILOT_DIR": str(root),
        "EXTRA_ATTRIBUTES_FILE": str(root / "none"),
        "MIN_DISK_GB": "0",
        "JOB_CONTAINMENT": "none",
    }


def test_check_osdf_runs_the_pilots_test_and_prints_its_verdict(
    running: RunningFederation, tmp_path: Path
) -> None:
    """``ospool-ep check --osdf URL``: the same test the pilot runs, its line in the report;
    a failing test is a WARN (jobs without OSDF URLs run as ever), never a FAIL."""
    ospool_ep = PLUGIN.parent / "ospool-ep"
    env = check_env(running, tmp_path)

    def check(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ospool_ep), "check", "--osdf", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=BOUND * 2,
            check=False,
        )

    passed = check(running.url("/test/hello.txt"))
    line = next(line for line in passed.stdout.splitlines() if "plugin test" in line)
    assert "PASS" in line and f"{len(HELLO)} bytes" in line, passed.stdout
    failed = check(running.url("/test/no-such-object"))
    line = next(line for line in failed.stdout.splitlines() if "plugin test" in line)
    assert "WARN" in line and "no such object" in line, failed.stdout
    assert failed.returncode == passed.returncode
