"""The pilot's transfer service does the plugin's work: the same answers, the federation's
answers reused from one job to the next, no job's token ever left for another's, and
a plugin that goes away takes its transfer with it.

The service runs as the supervisor starts it (``python3 -I -m ospool_ep.transfer.service``)
on a socket the plugin finds in ``$OSPOOL_EP_TRANSFER_SOCKET``; the federation is the
local stand-in (``tests/support/federation.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from federation import READ_TOKEN, Federation, RunningFederation, serve
from plugin_runs import PLUGIN, assert_nothing_left, credentials, plugin_env, sha256, transfer

from ospool_ep.transfer.client import SOCKET_VARIABLE

HELLO = b"hello through the service\n"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    fed = Federation(tmp_path_factory.mktemp("federation"))
    fed.put_bytes("/test/hello.txt", HELLO)
    fed.put_object("/test/big.bin", 8 << 20)
    fed.put_object("/test/stall/object.bin", 1 << 20)
    fed.put_bytes("/private/secret.txt", b"for token holders\n")
    with serve(fed) as running:
        yield running


@pytest.fixture(scope="module")
def service(running: RunningFederation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    socket = tmp_path_factory.mktemp("run") / "osdf.sock"
    env = {**plugin_env(running), "PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT": "3s"}
    process = subprocess.Popen(
        [sys.executable, "-I", "-m", "ospool_ep.transfer.service", "--socket", str(socket)],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not socket.exists():
        assert process.poll() is None, "the service ended at start"
        assert time.monotonic() < deadline, "the service never made its socket"
        time.sleep(0.05)
    yield socket
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert not socket.exists(), "the service leaves no socket behind"


def via(running: RunningFederation, socket: Path, **extra: str) -> dict[str, str]:
    return {
        **plugin_env(running),
        "PELICAN_CLIENT_STOPPEDTRANSFERTIMEOUT": "3s",
        SOCKET_VARIABLE: str(socket),
        **extra,
    }


def discoveries(running: RunningFederation) -> int:
    return sum(1 for r in running.requests() if r["path"].startswith("/.well-known/"))


def test_the_service_answers_as_the_plugin_would_and_reuses_the_federations_answers(
    running: RunningFederation, service: Path, tmp_path: Path
) -> None:
    """Two plugin runs (two jobs): both objects intact; the federation is discovered once."""
    before = discoveries(running)
    first = transfer(
        tmp_path / "a",
        [(running.url("/test/big.bin"), tmp_path / "a" / "big.bin")],
        env=via(running, service),
    )
    second = transfer(
        tmp_path / "b",
        [(running.url("/test/hello.txt"), tmp_path / "b" / "hello.txt")],
        env=via(running, service),
    )
    assert (first.code, second.code) == (0, 0), first.stderr + second.stderr
    assert sha256(tmp_path / "a" / "big.bin") == sha256(
        running.federation.local_path("/test/big.bin")
    )
    assert (tmp_path / "b" / "hello.txt").read_bytes() == HELLO
    assert discoveries(running) - before == 1


def test_a_jobs_token_is_never_sent_with_another_jobs_transfer(
    running: RunningFederation, service: Path, tmp_path: Path
) -> None:
    """A job with credentials gets a session of its own: the next job's (public) read goes
    out without any Authorization."""
    creds = credentials(tmp_path / "creds", {"scitokens": READ_TOKEN})
    private = transfer(
        tmp_path / "p",
        [(running.url("/private/secret.txt"), tmp_path / "p" / "s.txt")],
        env=via(running, service, _CONDOR_CREDS=str(creds)),
    )
    assert private.code == 0, private.stderr
    mark = len(running.requests())
    public = transfer(
        tmp_path / "q",
        [(running.url("/test/hello.txt"), tmp_path / "q" / "h.txt")],
        env=via(running, service),
    )
    assert public.code == 0, public.stderr
    later = running.requests()[mark:]
    assert later and not any(r["auth"] for r in later), later


def test_a_plugin_killed_mid_transfer_takes_its_transfer_with_it(
    running: RunningFederation, service: Path, tmp_path: Path
) -> None:
    """The starter kills a plugin past its lifetime: the service cancels that transfer (no
    part file is left) and serves the next plugin as ever."""
    work = tmp_path / "k"
    work.mkdir()
    infile, local = work / "in.ads", work / "object.bin"
    infile.write_text(
        f'[ Url = "{running.url("/test/stall/object.bin")}"; LocalFileName = "{local}" ]\n'
    )
    plugin = subprocess.Popen(
        [str(PLUGIN), "-infile", str(infile), "-outfile", str(work / "out.ads")],
        env=via(running, service),
        cwd=work,
    )
    deadline = time.monotonic() + 20
    while not list(work.glob("*.ospool-ep-part")):
        assert time.monotonic() < deadline, "the transfer never started"
        time.sleep(0.05)
    plugin.kill()
    plugin.wait(timeout=10)
    deadline = time.monotonic() + 10
    while list(work.glob("*.ospool-ep-part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_nothing_left(local)
    after = transfer(
        tmp_path / "n",
        [(running.url("/test/hello.txt"), tmp_path / "n" / "h.txt")],
        env=via(running, service),
    )
    assert after.code == 0, after.stderr


def test_without_the_service_the_plugin_does_the_work_itself(
    running: RunningFederation, tmp_path: Path
) -> None:
    """A socket nobody serves (the service is restarting) only makes the plugin slower."""
    alone = transfer(
        tmp_path / "x",
        [(running.url("/test/hello.txt"), tmp_path / "x" / "h.txt")],
        env=via(running, tmp_path / "nobody.sock"),
    )
    assert alone.code == 0, alone.stderr
    assert (tmp_path / "x" / "h.txt").read_bytes() == HELLO
