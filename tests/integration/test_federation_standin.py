"""The local Pelican federation stand-in is faithful enough for the real pelicanfs client.

``tests/support/federation_server.py`` runs on 127.0.0.1 with a test CA; the Pelican
project's own client (pelicanfs 1.5) drives it from a process of its own that trusts
the CA through SSL_CERT_FILE, as the transfer plugin will. What the stand-in promises:
objects arrive intact through discovery, director and cache; a refused first cache is
skipped; uploads need the write token and never appear half-written; a missing object,
a stalled body and a silent director surface as the errors pelicanfs gives for the
real thing, within the client's own timeouts.

The client operations run once per module, in a few interpreters side by side
(importing pelicanfs takes about a second, the fault cases wait out their timeouts);
each test reads its operation's result and the server's request log.
"""

from __future__ import annotations

import ast
import concurrent.futures
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from federation import (
    CONTAINER_ENDPOINTS,
    READ_TOKEN,
    SERVER,
    WRITE_TOKEN,
    Federation,
    RunningFederation,
    container_spec,
    run_client,
    serve,
)

BIG = 50 << 20
TIMEOUT = {"total": None, "sock_connect": 3, "sock_read": 2}
"""The aiohttp ClientTimeout the fault cases run under (seconds)."""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return Federation(tmp_path_factory.mktemp("federation"))


@pytest.fixture(scope="module")
def running(fed: Federation) -> Iterator[RunningFederation]:
    with serve(fed) as running:
        yield running


@pytest.fixture(scope="module")
def digests(fed: Federation) -> dict[str, str]:
    return {
        "hello": fed.put_bytes("/test/hello.txt", b"hello from the stand-in\n"),
        "fallback": fed.put_bytes("/test/fallback.txt", b"from the second cache\n"),
        "big": fed.put_object("/test/big.bin", BIG),
        "ranged": fed.put_object("/test/ranged.bin", 3 << 20),
        "stall": fed.put_object("/test/stall/object.bin", 1 << 20),
        "truncated": fed.put_object("/test/truncated/object.bin", 1 << 20),
        "private": fed.put_bytes("/private/secret.txt", b"for token holders\n"),
    }


def client_env(running: RunningFederation) -> dict[str, str]:
    """The test CA trusted, and no token for pelicanfs to discover on this machine."""
    env = running.client_env()
    for name in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "XDG_RUNTIME_DIR", "_CONDOR_CREDS"):
        env.pop(name, None)
    env["PATH"] = str(Path(sys.executable).parent)  # no `pelican` binary: no OIDC device flow
    return env


@pytest.fixture(scope="module")
def outcomes(
    running: RunningFederation, digests: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("client")
    upload = out / "upload.txt"
    upload.write_bytes(b"written by pelicanfs\n")
    write = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    ops: dict[str, dict[str, Any]] = {
        "hello": {"op": "get", "url": running.url("/test/hello.txt")},
        "big": {"op": "get", "url": running.url("/test/big.bin")},
        "fallback": {"op": "get", "url": running.url("/test/fallback.txt", "fallback")},
        "open": {"op": "read", "url": running.url("/test/ranged.bin")},
        "slice": {"op": "cat_file", "url": running.url("/test/ranged.bin"), "start": 10, "end": 20},
        "missing": {"op": "get", "url": running.url("/test/no-such-object")},
        "no-namespace": {"op": "get", "url": running.url("/elsewhere/object")},
        "put": {"op": "put", "url": running.url("/test/up/new.txt"), "headers": write},
        "put-no-token": {"op": "put", "url": running.url("/test/up/anonymous.txt")},
        "put-bad-token": {
            "op": "put",
            "url": running.url("/test/up/forged.txt"),
            "headers": {"Authorization": "Bearer not-the-write-token"},
        },
        "private": {
            "op": "get",
            "url": running.url("/private/secret.txt"),
            "headers": {"Authorization": f"Bearer {READ_TOKEN}"},
        },
        "private-no-token": {"op": "get", "url": running.url("/private/secret.txt")},
        "discovery-refused": {
            "op": "cat_file",
            "url": f"pelican://127.0.0.1:{running.ports['cache_dead']}/test/hello.txt",
        },
        "stall": {"op": "get", "url": running.url("/test/stall/object.bin"), "timeout": TIMEOUT},
        "truncated": {"op": "get", "url": running.url("/test/truncated/object.bin")},
        "silent": {
            "op": "cat_file",
            "url": running.url("/test/hello.txt", "silent"),
            "timeout": TIMEOUT,
        },
        "silent-tls": {
            "op": "cat_file",
            "url": running.url("/test/hello.txt", "silent_tls"),
            "timeout": {**TIMEOUT, "sock_connect": 2},
        },
    }
    for name, op in ops.items():
        op.setdefault("local", str(upload if op["op"] == "put" else out / name))
    # The cases that wait out a timeout run beside the rest, each in its own client.
    alone = ("stall", "silent", "silent-tls")
    groups = [[n for n in ops if n not in alone], *([n] for n in alone)]
    env = client_env(running)
    with concurrent.futures.ThreadPoolExecutor(len(groups)) as pool:
        runs = [pool.submit(run_client, [ops[n] for n in g], env=env, timeout=120) for g in groups]
        return {
            name: result
            for group, run in zip(groups, runs, strict=True)
            for name, result in zip(group, run.result(), strict=True)
        }


def route(running: RunningFederation, path: str) -> list[tuple[str, str, int]]:
    return [(r["role"], r["method"], r["status"]) for r in running.requests(path)]


def test_an_object_is_fetched_through_discovery_director_and_cache(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]], digests: dict[str, str]
) -> None:
    """get() asks the director (307), checks the cache with HEAD, then GETs the object."""
    result = outcomes["hello"]
    assert result["ok"], result
    assert result["sha256"] == digests["hello"]
    hops = route(running, "/test/hello.txt")
    assert ("director", "GET", 307) in hops
    assert hops.index(("cache", "HEAD", 200)) < hops.index(("cache", "GET", 200))
    assert not [hop for hop in hops if hop[0] == "origin" and hop[1] == "GET"]


def test_a_50_mb_object_arrives_intact(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]], digests: dict[str, str]
) -> None:
    """The whole body arrives (sha256 of what was written), and fast enough to benchmark."""
    result = outcomes["big"]
    assert result["ok"], result
    assert (result["size"], result["sha256"]) == (BIG, digests["big"])
    gets = [r for r in running.requests("/test/big.bin") if r["method"] == "GET"]
    assert [(r["role"], r["bytes"]) for r in gets if r["role"] == "cache"] == [("cache", BIG)]
    assert result["seconds"] < 4


def test_the_client_falls_back_to_the_second_cache_when_the_first_refuses_connections(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]], digests: dict[str, str]
) -> None:
    """The director lists the dead cache first (pri=1); the client reads from pri=2."""
    result = outcomes["fallback"]
    assert result["ok"], result
    assert result["sha256"] == digests["fallback"]
    context = ssl.create_default_context(cafile=str(running.ca_file))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", running.ports["director_fallback"], context=context, timeout=5
    )
    connection.request("GET", "/test/fallback.txt")
    response = connection.getresponse()
    link = response.getheader("Link") or ""
    connection.close()
    assert response.status == 307
    dead, live = running.urls["cache_dead"], running.urls["cache"]
    assert link.index(f'<{dead}/test/fallback.txt>; rel="duplicate"; pri=1') < link.index(
        f'<{live}/test/fallback.txt>; rel="duplicate"; pri=2'
    )
    assert ("cache", "GET", 200) in route(running, "/test/fallback.txt")


def test_open_reads_with_byte_ranges_and_cat_file_returns_exactly_the_slice(
    fed: Federation, outcomes: dict[str, dict[str, Any]], digests: dict[str, str]
) -> None:
    """fsspec's open() reads in Range requests (206); a slice is those bytes, no more."""
    assert outcomes["open"]["ok"], outcomes["open"]
    assert outcomes["open"]["sha256"] == digests["ranged"]
    expected = fed.local_path("/test/ranged.bin").read_bytes()[10:20]
    assert outcomes["slice"]["ok"], outcomes["slice"]
    assert outcomes["slice"]["sha256"] == hashlib.sha256(expected).hexdigest()


def test_an_upload_with_the_write_token_lands_on_the_origin(
    fed: Federation, running: RunningFederation, outcomes: dict[str, dict[str, Any]]
) -> None:
    """put() asks the director for the origin and PUTs there with the bearer token."""
    assert outcomes["put"]["ok"], outcomes["put"]
    target = fed.local_path("/test/up/new.txt")
    assert target.read_bytes() == b"written by pelicanfs\n"
    hops = route(running, "/test/up/new.txt")
    assert ("director", "GET", 307) in hops  # /api/v1.0/director/origin/test/up/new.txt
    assert ("origin", "PUT", 201) in hops
    assert [p.name for p in target.parent.iterdir()] == ["new.txt"]


@pytest.mark.parametrize("case", ["put-no-token", "put-bad-token"])
def test_an_upload_without_the_write_token_is_refused_and_stores_nothing(
    fed: Federation, outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    """The origin answers 403; pelicanfs raises aiohttp's ClientResponseError for it."""
    result = outcomes[case]
    assert not result["ok"]
    assert result["error_type"] == "ClientResponseError"
    assert result["error"].startswith("403")
    name = "anonymous.txt" if case == "put-no-token" else "forged.txt"
    assert not fed.local_path(f"/test/up/{name}").exists()


def test_a_missing_object_is_a_file_not_found_error(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]]
) -> None:
    """The cache's 404 reaches the caller as FileNotFoundError (message: the cache URL)."""
    result = outcomes["missing"]
    assert result["error_type"] == "FileNotFoundError", result
    assert result["error"] == f"{running.urls['cache']}/test/no-such-object"


def test_a_path_in_no_namespace_is_a_bad_director_response(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]]
) -> None:
    """The director answers 404 without a Link header. get() first asks (GET) for a
    cache and swallows the NoAvailableSource; its collection probe (PROPFIND) then
    raises BadDirectorResponse, which is what the caller sees."""
    result = outcomes["no-namespace"]
    assert result["error_type"] == "BadDirectorResponse", result
    assert [hop for hop in route(running, "/elsewhere/object") if hop[0] == "director"] == [
        ("director", "GET", 404),
        ("director", "PROPFIND", 404),
    ]


def test_a_namespace_that_requires_a_token_is_read_with_one_and_refused_without(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]], digests: dict[str, str]
) -> None:
    """With the read token the object arrives. Without one, get()'s collection probe
    (PROPFIND at the origin) is refused first: aiowebdav2's AccessDeniedError."""
    assert outcomes["private"]["ok"], outcomes["private"]
    assert outcomes["private"]["sha256"] == digests["private"]
    result = outcomes["private-no-token"]
    assert result["error_type"] == "AccessDeniedError", result
    hops = route(running, "/private/secret.txt/")
    assert ("origin", "PROPFIND", 403) in hops


def test_a_discovery_endpoint_that_refuses_connections_is_a_client_connector_error(
    outcomes: dict[str, dict[str, Any]],
) -> None:
    """What a plugin sees for a federation that is down (or a wrong port)."""
    result = outcomes["discovery-refused"]
    assert "ClientConnectorError" in result["error_mro"], result
    assert result["seconds"] < 2


def test_a_stalled_body_fails_the_read_within_the_socket_read_timeout(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]]
) -> None:
    """Headers with the full Content-Length, 64 KiB, then silence: sock_read=2 ends it
    with fsspec's FSTimeoutError (a TimeoutError, with an empty message)."""
    result = outcomes["stall"]
    assert not result["ok"]
    assert "TimeoutError" in result["error_mro"], result
    assert 2 <= result["seconds"] < 4.5
    stalls = [r for r in running.requests("/test/stall/object.bin") if r.get("fault") == "stall"]
    assert [(r["role"], r["bytes"]) for r in stalls] == [("cache", 65536)]


def test_a_truncated_body_is_an_error_not_a_short_file(
    outcomes: dict[str, dict[str, Any]],
) -> None:
    """The cache closes the connection 64 KiB into a 1 MiB body: aiohttp's payload error."""
    result = outcomes["truncated"]
    assert not result["ok"]
    assert "ClientPayloadError" in result["error_mro"], result


@pytest.mark.parametrize("case", ["silent", "silent-tls"])
def test_a_silent_director_times_out_within_the_clients_timeout(
    running: RunningFederation, outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    """A director that reads the request and never answers ends at sock_read (2 s); one
    that never completes the TLS handshake at sock_connect (2 s). Discovery answered."""
    result = outcomes[case]
    assert not result["ok"]
    assert "TimeoutError" in result["error_mro"], result
    assert 2 <= result["seconds"] < 4.5
    role = "discovery_silent" if case == "silent" else "discovery_silent_tls"
    assert (role, "GET", 200) in route(running, "/.well-known/pelican-configuration")


# ---------------------------------------------------------------------------
# The server itself: uploads are atomic, configuration errors are named


def test_an_upload_cut_off_midway_never_appears(
    fed: Federation, running: RunningFederation
) -> None:
    """A PUT whose client goes away after 100 of 1000 bytes leaves neither the object nor
    a temporary file behind."""
    context = ssl.create_default_context(cafile=str(running.ca_file))
    with (
        socket.create_connection(("127.0.0.1", running.ports["origin"]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            b"PUT /test/cut/off.bin HTTP/1.1\r\nHost: origin\r\n"
            + f"Authorization: Bearer {WRITE_TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b"x" * 100
        )
    deadline = time.monotonic() + 5
    while not (puts := [r for r in running.requests("/test/cut/off.bin") if r["method"] == "PUT"]):
        assert time.monotonic() < deadline, "the origin never logged the cut-off upload"
        time.sleep(0.02)
    assert puts[0]["status"] == 0  # logged as abandoned, never answered
    assert list(fed.local_path("/test/cut/off.bin").parent.iterdir()) == []


def test_the_server_program_needs_only_the_standard_library() -> None:
    """It runs in the image's python3 too, where no third-party package is installed."""
    tree = ast.parse(SERVER.read_text())
    imported = {
        alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    imported |= {
        n.module.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and not n.level
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names


def test_a_configuration_error_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "tls": {"cert": "c.pem", "key": "c.key"},
                "log": "log.jsonl",
                "namespaces": [],
                "roles": [{"name": "d", "kind": "director", "caches": ["nowhere"], "origin": "o"}],
            }
        )
    )
    result = subprocess.run(
        [sys.executable, str(SERVER), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert (
        "roles (d): 'nowhere' must name a role of kind cache or refused or silent" in result.stderr
    )


def test_the_container_layout_mounts_program_config_and_tree_and_names_every_host(
    fed: Federation,
) -> None:
    """Discovery on osg-htc.org:443 (osdf:// URLs), the certificate valid for every name."""
    from cryptography import x509

    spec = container_spec(fed)
    assert spec.command[-2:] == ("--config", "/federation/config.json")
    for host_path, inside, _mode in spec.volumes:
        assert host_path.exists(), host_path
        assert inside.startswith("/federation/")
    config = json.loads(
        next(h for h, i, _ in spec.volumes if i.endswith("config.json")).read_text()
    )
    assert config["listen"] == "0.0.0.0"  # noqa: S104
    discovery = next(r for r in config["roles"] if r["name"] == "discovery")
    assert (discovery["port"], discovery["url"]) == (443, "https://osg-htc.org:443")
    assert "osg-htc.org" in spec.hostnames
    assert spec.url("/test/x") == "osdf:///test/x"
    cert = x509.load_pem_x509_certificate((fed.tls_dir / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {e.host for e in CONTAINER_ENDPOINTS.values()} <= set(
        names.get_values_for_type(x509.DNSName)
    )
