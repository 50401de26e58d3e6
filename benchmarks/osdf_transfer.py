"""OSDF transfer speed of issue 13: the Pelican plugin against HTCondor's curl_plugin.

Prints figures; asserts nothing. Needs podman and the image (`make image`; another one
with ``OSPOOL_EP_IMAGE=...``). Run: ``python3 benchmarks/osdf_transfer.py [--runs N]
[--size-mb MB]``.

Everything runs inside one container of the image, on its loopback: the local
federation stand-in (``tests/support/federation_server.py``: discovery, director,
cache and origin over HTTPS with a test CA, trusted through the system bundle mounted
at ``/etc/ssl/certs/ca-certificates.crt``) serves one object of ``--size-mb`` MB, and
the same object is fetched N times by each of, alternating (plugin first in even
rounds, curl first in odd ones):

- the product: ``ospool-ep-pelican-plugin -infile IN -outfile OUT``, served by the pilot's
  transfer service as in a pilot (and, for comparison, alone: no service), with
  ``pelican://127.0.0.1:DISCOVERY/test/big`` (discovery, the director's redirect, then
  the cache, as a job's ``osdf://`` input goes);
- the reference: HTCondor's ``/usr/libexec/condor/curl_plugin -infile IN -outfile OUT``
  with ``https://127.0.0.1:CACHE/test/big``, the same cache, no federation steps.

Both write into a tmpfs; each copy is checked against the object's sha256 (not timed).
The figure with a target is the ratio curl time / plugin time (issue 13: >= 0.8). The
plugin's start-up per transfer is ``-classad`` (the interpreter and the protocol
module) and a 1 KiB object through the whole federation path, next to curl_plugin's
1 KiB fetch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

import federation  # noqa: E402 - the stand-in's host side
import pool  # noqa: E402 - the test pool harness (image name, podman set-up)

TARGET_RATIO = 0.8
BIG, TINY = "/test/big", "/test/tiny"
ROOT = "/federation"

# Runs inside the container with the image's python3 (standard library only).
DRIVER = r"""
import hashlib, json, os, subprocess, sys, time
runs, big_sum, tiny_sum = int(sys.argv[1]), sys.argv[2], sys.argv[3]
root, scratch = "/federation", "/scratch"
ready = f"{root}/state/ready.json"
server = subprocess.Popen(["python3", f"{root}/federation_server.py", "--config",
                           f"{root}/config.json"], stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 30
while not os.path.exists(ready):
    if server.poll() is not None or time.monotonic() > deadline:
        sys.exit(f"the stand-in did not start (exit {server.poll()})")
    time.sleep(0.05)
time.sleep(0.1)
ports = json.load(open(ready))["ports"]
discovery = f"pelican://127.0.0.1:{ports['discovery']}"
cache = f"https://127.0.0.1:{ports['cache']}"
env = {**os.environ, "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
socket = f"{scratch}/osdf.sock"
service = subprocess.Popen(["python3", "-I", "-m", "ospool_ep.transfer.service", "--socket",
                            socket], env=env, stdout=subprocess.DEVNULL)
while not os.path.exists(socket):
    if service.poll() is not None or time.monotonic() > deadline:
        sys.exit(f"the transfer service did not start (exit {service.poll()})")
    time.sleep(0.05)
served = {**env, "OSPOOL_EP_TRANSFER_SOCKET": socket}
PLUGIN = "ospool-ep-pelican-plugin"
CURL = "/usr/libexec/condor/curl_plugin"

def fetch(command, url, digest, env=env):
    dest = f"{scratch}/object"
    with open(f"{scratch}/in", "w") as f:
        f.write(f'[ Url = "{url}"; LocalFileName = "{dest}" ]\n')
    start = time.monotonic()
    done = subprocess.run([command, "-infile", f"{scratch}/in", "-outfile", f"{scratch}/out"],
                          env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    out = open(f"{scratch}/out").read() if os.path.exists(f"{scratch}/out") else ""
    if done.returncode != 0 or "TransferSuccess = true" not in out.replace("\n", " "):
        sys.exit(f"{command} {url}: exit {done.returncode}: {done.stderr.strip()} {out}")
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != digest:
        sys.exit(f"{command} {url}: the copy differs from the object")
    os.unlink(dest)
    return seconds

def timed(argv, env=env):
    start = time.monotonic()
    subprocess.run(argv, env=env, capture_output=True, check=True)
    return time.monotonic() - start

keys = ("plugin", "alone", "curl", "classad", "plugin_tiny", "alone_tiny", "curl_tiny")
result = {key: [] for key in keys}
fetch(PLUGIN, discovery + "/test/tiny", tiny_sum, served)  # as a pilot's first job
fetch(PLUGIN, discovery + "/test/tiny", tiny_sum)  # warm the page cache and the imports
fetch(CURL, cache + "/test/big", big_sum)
for i in range(runs):
    trio = [("plugin", discovery, served), ("alone", discovery, env), ("curl", cache, env)]
    for key, base, how in trio if i % 2 == 0 else trio[::-1]:
        command = CURL if key == "curl" else PLUGIN
        result[key].append(fetch(command, base + "/test/big", big_sum, how))
    result["classad"].append(timed([PLUGIN, "-classad"]))
    result["plugin_tiny"].append(fetch(PLUGIN, discovery + "/test/tiny", tiny_sum, served))
    result["alone_tiny"].append(fetch(PLUGIN, discovery + "/test/tiny", tiny_sum))
    result["curl_tiny"].append(fetch(CURL, cache + "/test/tiny", tiny_sum))
service.terminate()
server.terminate()
print("RESULT " + json.dumps(result))
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="fetches of each (default 3)")
    parser.add_argument("--size-mb", type=int, default=200, help="object size (default 200)")
    parser.add_argument("--image", default=pool.IMAGE)
    return parser.parse_args(argv)


def prepare(base: Path, size: int) -> tuple[federation.Federation, str, str]:
    """The stand-in's tree and configuration (ports chosen by the OS, on 127.0.0.1)."""
    fed = federation.Federation(base / "fed")
    big = fed.put_object(BIG, size)
    tiny = fed.put_object(TINY, 1024)
    fed.write_config()
    for path in [fed.base, *fed.base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return fed, big, tiny


def run_in_container(
    image: str, fed: federation.Federation, args: Sequence[str], size: int
) -> dict[str, list[float]]:
    conf = os.environ.get("CONTAINERS_CONF") or str(pool.CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": conf}
    tmpfs = f"/scratch:rw,size={2 * (size >> 20) + 64}m"
    argv = [
        "podman", "run", "--rm", "--network", "none", "--user", "0",
        "--tmpfs", tmpfs,
        "-v", f"{fed.base}:{ROOT}:rw",
        "-v", f"{federation.SERVER}:{ROOT}/federation_server.py:ro",
        "-v", f"{fed.ca().cert}:/etc/ssl/certs/ca-certificates.crt:ro",
        "--entrypoint", "python3", image, "-c", DRIVER, *args,
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"the benchmark container exited {done.returncode}: {done.stderr}")
    result: dict[str, list[float]] = json.loads(line[len("RESULT ") :])
    return result


def figures(result: Mapping[str, list[float]], size: int) -> dict[str, Any]:
    median = {key: statistics.median(values) for key, values in result.items()}
    mb = size / 1e6
    return {
        f"fetches of each ({mb:.0f} MB object)": len(result["plugin"]),
        "pelican plugin, pilot's service: median s (osdf path)": median["plugin"],
        "pelican plugin, alone (no service): median s": median["alone"],
        "curl_plugin: median s (straight from the cache)": median["curl"],
        "pelican plugin, pilot's service: MB/s": mb / median["plugin"],
        "curl_plugin: MB/s": mb / median["curl"],
        f"ratio curl time / plugin time, pilot's service (target >= {TARGET_RATIO})": median["curl"]
        / median["plugin"],
        "ratio curl time / plugin time, plugin alone": median["curl"] / median["alone"],
        "ratio of the data parts (each minus its 1 KiB fetch: fixed costs out)": (
            median["curl"] - median["curl_tiny"]
        )
        / (median["plugin"] - median["plugin_tiny"]),
        "pelican plugin: -classad wall s (start-up, no transfer)": median["classad"],
        "pelican plugin, pilot's service: 1 KiB object wall s": median["plugin_tiny"],
        "pelican plugin, alone: 1 KiB object wall s (start-up + federation)": median["alone_tiny"],
        "curl_plugin: 1 KiB object wall s": median["curl_tiny"],
        "all samples (s)": json.dumps({k: [round(v, 3) for v in vs] for k, vs in result.items()}),
    }


def format_figures(values: Mapping[str, Any]) -> list[str]:
    """One line per figure, as benchmarks/pilot_figures.py prints them."""
    return [
        f"{label:72s} {f'{value:.3f}' if isinstance(value, float) else value}"
        for label, value in values.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reason = pool.unavailable_reason(args.image)
    if reason is not None:
        print(f"osdf transfer: no figure: {reason}", file=sys.stderr)
        return 1
    size = args.size_mb * 1_000_000
    base = Path(tempfile.mkdtemp(prefix="ospool-ep-osdf-bench-"))
    try:
        fed, big, tiny = prepare(base, size)
        result = run_in_container(args.image, fed, [str(args.runs), big, tiny], size)
    except RuntimeError as exc:
        print(f"osdf transfer: no figure: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for line in format_figures(figures(result, size)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
