"""A local demo pool: one central manager, one ospool-ep pilot, one job (`make demo`).

Runs everything in podman on this host and cleans up after itself:
1. a central manager (collector, negotiator, schedd) in a container;
2. an IDTOKEN minted by it, mounted into the pilot exactly as a site would
   mount the OSPool's (``-v token:/etc/condor/tokens-orig.d/flock.opensciencegrid.org:ro``);
3. the pilot (``ospool-ep run``, uid 1000) joining the pool;
4. a job that runs on the pilot and reports where it ran;
5. SIGTERM to the pilot, as ``docker stop`` sends it, and the time it took to end.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

import pool  # noqa: E402 - the test pool harness, shared with the end-to-end tests

SLOT_FIELDS = (
    "Name",
    "GLIDEIN_Site",
    "GLIDEIN_ResourceName",
    "TotalSlotCpus",
    "TotalSlotMemory",
    "GLIDEIN_ToRetire",
    "GLIDEIN_ToDie",
    "OSG_NODE_VALIDATED",
    "OSPOOL_EP_VERSION",
    "OSPOOL_EP_PILOT_UUID",
)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def partitionable_slot(the_pool: pool.Pool, timeout: float = 30) -> dict[str, Any]:
    """The pilot's slot ad (HTCondor 23's `condor_status -startd` lists the daemon ad)."""
    deadline = time.monotonic() + timeout
    while True:
        result = the_pool.exec_cm(
            ["condor_status", "-slot", "-json", "-constraint", 'GLIDEIN_Site == "Demo Site"']
        )
        ads = json.loads(result.stdout or "[]")
        if ads or time.monotonic() > deadline:
            return dict(ads[0]) if ads else {}
        time.sleep(1)


def main() -> int:
    service = pool.ensure_podman_service()
    with tempfile.TemporaryDirectory(prefix="ospool-ep-demo-") as scratch:
        the_pool = pool.Pool.start()
        try:
            say(f"central manager up ({the_pool.timings.get('cm_ready', '?')} s)")
            token_file = Path(scratch) / "token"
            token_file.write_text(the_pool.mint_token(lifetime=30 * 86400) + "\n")
            token_file.chmod(0o644)  # the pilot copies it into a private 0600 file itself
            started = time.monotonic()
            pilot = the_pool.run_container(
                "pilot1",
                command=["run"],
                env={
                    "GLIDEIN_Site": "Demo Site",
                    "GLIDEIN_ResourceName": "Demo Backfill",
                    "CONDOR_HOST": the_pool.cm_host,
                    "NUM_CPUS": "1",
                    "MEMORY": "1024",
                    "MIN_DISK_GB": "1",
                },
                volumes=[(token_file, "/etc/condor/tokens-orig.d/flock.opensciencegrid.org", "ro")],
            )
            the_pool.wait_for_slot('GLIDEIN_Site == "Demo Site"', timeout=90)
            joined = time.monotonic() - started
            say(f"pilot joined the pool: visible {joined:.1f} s after start")
            print("slot ad summary:")
            slot = partitionable_slot(the_pool)
            for field in SLOT_FIELDS:
                print(f"  {field:22} = {slot.get(field)}")
            cluster = the_pool.submit(
                {
                    "executable": "/bin/sh",
                    "arguments": "\"-c 'echo hello from $(uname -n) as uid $(id -u); uname -sr'\"",
                }
            )
            say(f"submitted job {cluster}.0")
            status = the_pool.wait_for_job(cluster, timeout=120)
            say(f"job {cluster}.0 finished: {status[0].name}")
            print("job output:")
            for line in the_pool.job_output(cluster).splitlines():
                print(f"  {line}")
            container = pilot.get_wrapped_container()
            stopping = time.monotonic()
            container.kill(signal="SIGTERM")
            result = container.wait(timeout=60)
            say(
                f"pilot stopped {time.monotonic() - stopping:.1f} s after SIGTERM, "
                f"exit code {result['StatusCode']}"
            )
            print("last lines of the pilot's log:")
            for line in container.logs(tail=4).decode(errors="replace").splitlines():
                print(f"  {line}")
            return 0 if result["StatusCode"] == 0 and status[0].name == "COMPLETED" else 1
        finally:
            the_pool.stop()
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
