"""Pilot figures of SPEC 14, measured in one run against a real local pool (podman).

Prints figures; asserts nothing. Needs the image (`make image`). Run:
``python3 benchmarks/pilot_figures.py [--rounds N] [--fleet N] [--idle-seconds S]``.

- start-up: container start -> slot in the collector, `ospool-ep run` against a
  bare `condor_master -f` on the same rendered configuration, alternated in the
  same run (the ratio is the figure: this machine is noisy);
- supervisor RSS and CPU while idle (PID 1 of the container, from /proc);
- SIGTERM -> exit of an idle pilot;
- a fleet of N pilots joining one CM: time until all are visible, unique names,
  memory per pilot container; the same join with a CPU hog on every core;
- image size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

import pool  # noqa: E402 - the test pool harness

# The same rendered configuration, started without the supervisor.
BARE_SCRIPT = r"""
set -e
ospool-ep render -o /pilot/bare >/dev/null
d=$(sed -n 's/^LOCAL_DIR = //p' /pilot/bare/config.d/10-daemons.conf)
mkdir -p "$d/log" "$d/execute" "$d/spool" "$d/lock" "$d/run" "$d/tokens.d"
chmod 700 "$d/tokens.d"
printf '%s\n' "$TOKEN" > "$d/tokens.d/token"
chmod 600 "$d/tokens.d/token"
unset TOKEN
CONDOR_CONFIG=/pilot/bare/condor_config condor_master -f
"""


def pilot_env(p: pool.Pool, token: str, resource: str, **extra: str) -> dict[str, str]:
    return {
        "GLIDEIN_Site": "Bench",
        "GLIDEIN_ResourceName": resource,
        "CONDOR_HOST": p.cm_host,
        "TOKEN": token,
        "NUM_CPUS": "1",
        "MEMORY": "512",
        "MIN_DISK_GB": "0",
        **extra,
    }


def time_to_slot(p: pool.Pool, name: str, *, bare: bool, token: str) -> float:
    env = pilot_env(p, token, name)
    started = time.monotonic()
    if bare:
        p.run_container(name, entrypoint=["/bin/sh", "-c", BARE_SCRIPT], env=env)
    else:
        p.run_container(name, command=["run"], env=env)
    p.wait_for_slot(f'GLIDEIN_ResourceName == "{name}"', timeout=120)
    return time.monotonic() - started


def proc_figures(p: pool.Pool, name: str) -> dict[str, float]:
    """RSS (kB) and CPU ticks of PID 1, and the clock tick rate."""
    out = p.exec_pilot(
        name, ["sh", "-c", "grep VmRSS /proc/1/status; cat /proc/1/stat; getconf CLK_TCK"]
    ).stdout.split("\n")
    rss_kb = float(out[0].split()[1])
    stat = out[1]
    fields = stat[stat.rfind(")") + 2 :].split()
    ticks = float(fields[11]) + float(fields[12])  # utime + stime
    return {"rss_kb": rss_kb, "ticks": ticks, "hz": float(out[2])}


def container_memory_mb(p: pool.Pool, name: str) -> tuple[float, float]:
    """(PSS, RSS) of every process in the container, in MB. PSS splits shared pages
    (HTCondor's libraries, mapped by every daemon) among the processes mapping
    them; RSS counts them once per process."""
    script = "cat /proc/[0-9]*/smaps_rollup 2>/dev/null | grep -E '^(Pss|Rss):'"
    out = p.exec_pilot(name, ["sh", "-c", script]).stdout
    totals = {"Pss:": 0.0, "Rss:": 0.0}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in totals:
            totals[fields[0]] += float(fields[1]) / 1024
    return totals["Pss:"], totals["Rss:"]


def startup(p: pool.Pool, token: str, rounds: int) -> dict[str, Any]:
    product, bare = [], []
    for round_ in range(rounds):
        for is_bare, results in ((False, product), (True, bare)):
            name = f"{'bare' if is_bare else 'prod'}{round_}"
            results.append(time_to_slot(p, name, bare=is_bare, token=token))
            p.remove_pilot(name)
    ospool_ep, condor = statistics.median(product), statistics.median(bare)
    return {
        "start-up, ospool-ep run (median s)": ospool_ep,
        "start-up, bare condor_master, same config (median s)": condor,
        "start-up ratio (target <= 1.2)": ospool_ep / condor,
    }


def idle(p: pool.Pool, token: str, seconds: float) -> dict[str, Any]:
    time_to_slot(p, "idle", bare=False, token=token)
    before = proc_figures(p, "idle")
    time.sleep(seconds)
    after = proc_figures(p, "idle")
    cpu = (after["ticks"] - before["ticks"]) / after["hz"]
    container = p.pilots["idle"].get_wrapped_container()
    stopping = time.monotonic()
    container.kill(signal="SIGTERM")
    status = container.wait(timeout=60)["StatusCode"]
    stopped = time.monotonic() - stopping
    p.remove_pilot("idle")
    return {
        "supervisor RSS (MB, target <= 30)": after["rss_kb"] / 1024,
        "supervisor idle CPU per 10 min (s, target <= 0.5)": cpu * 600 / seconds,
        "SIGTERM -> exit, idle pilot (s, target <= 3)": stopped,
        "  its exit code": status,
    }


def join_fleet(p: pool.Pool, token: str, names: list[str]) -> tuple[float, list[dict[str, Any]]]:
    """Start one pilot per name at once; seconds until all are in the collector, and the ads."""
    started = time.monotonic()
    for name in names:
        p.run_container(name, command=["run"], env=pilot_env(p, token, name))
    ads: list[dict[str, Any]] = []
    prefix = names[0].rstrip("0123456789")
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and len(ads) < len(names):
        time.sleep(1)
        # Slot ads: in HTCondor 23 `-startd` lists the startd's own daemon ad, which
        # reaches the collector only with a later update (minutes), not the slot.
        ads = p.collector_ads(
            "slot",
            f'regexp("^{prefix}[0-9]", GLIDEIN_ResourceName) && PartitionableSlot =?= true',
            projection=["Name"],
        )
    return time.monotonic() - started, ads


def fleet(p: pool.Pool, token: str, size: int) -> dict[str, Any]:
    names = [f"fleet{i:02d}" for i in range(size)]
    visible_after, ads = join_fleet(p, token, names)
    memory = [container_memory_mb(p, name) for name in names]
    for name in names:
        p.remove_pilot(name)
    return {
        f"fleet of {size}: all visible after (s, target <= 60)": visible_after,
        f"fleet of {size}: slots visible": len(ads),
        f"fleet of {size}: unique names": len({ad["Name"] for ad in ads}),
        "fleet: PSS per pilot container, median MB (target <= 60)": statistics.median(
            pss for pss, _ in memory
        ),
        "fleet: RSS per pilot container (shared pages counted per process), median MB": (
            statistics.median(rss for _, rss in memory)
        ),
    }


HOG = "while True: pass"


def loaded_fleet(p: pool.Pool, token: str, size: int) -> dict[str, Any]:
    """The same join while every core of the host is kept busy by a CPU hog (SPEC 14)."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 1)]
    try:
        names = [f"loaded{i:02d}" for i in range(size)]
        visible_after, ads = join_fleet(p, token, names)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    for name in names:
        p.remove_pilot(name)
    return {
        f"loaded fleet of {size} (CPU hog on every core): all visible after (s, target <= 90)": (
            visible_after
        ),
        f"loaded fleet of {size}: slots visible": len(ads),
    }


def image_size_mb() -> float:
    inspect = ["podman", "image", "inspect", "--format", "{{.Size}}", pool.IMAGE]
    return int(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fleet", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--only", choices=("startup", "idle", "fleet", "loaded-fleet"), action="append"
    )
    args = parser.parse_args()
    wanted = set(args.only or ("startup", "idle", "fleet", "loaded-fleet"))

    service = pool.ensure_podman_service()
    the_pool = pool.Pool.start()
    try:
        token = the_pool.mint_token()
        figures: dict[str, Any] = {}
        if "startup" in wanted:
            figures |= startup(the_pool, token, args.rounds)
        if "idle" in wanted:
            figures |= idle(the_pool, token, args.idle_seconds)
        if "fleet" in wanted:
            figures |= fleet(the_pool, token, args.fleet)
        if "loaded-fleet" in wanted:
            figures |= loaded_fleet(the_pool, token, args.fleet)
    finally:
        the_pool.stop()
        service.stop()
    figures["image size (MB, target <= 450)"] = image_size_mb()
    for label, value in figures.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{label:80s} {shown}")


if __name__ == "__main__":
    main()
