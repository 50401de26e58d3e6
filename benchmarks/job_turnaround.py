"""Job turnaround of SPEC 14, measured in one run against a real local pool (podman).

Prints figures; asserts nothing. Needs the image (`make image`; another one with
``OSPOOL_EP_IMAGE=...``). Run: ``python3 benchmarks/job_turnaround.py [--jobs N]
[--rounds N] [--pilot-env NAME=VALUE] [--security-opt OPT] [--require-contained]``.

The same N one-second jobs (``/bin/sleep 1``, one CPU each, one cluster) go through
two execution points in turn, in the same pool, against the same central manager:

- the product: one pilot container running ``ospool-ep run`` with ``NUM_CPUS=2``
  (its jobs contained in Apptainer when the image and the pilot's environment make
  it so: the figures say whether the slot advertised ``OSPOOL_EP_JOBS_CONTAINED``),
  run with ``--security-opt unmask=/proc/*`` (what Apptainer needs; SPEC 7.6) plus
  any ``--pilot-env``;
- the reference: a bare ``condor_startd`` (``condor_master -f`` with the pool
  harness's hand-written minimal EP config, ``Pool.start_bare_pilot``: HTCondor's
  defaults but for one partitionable slot and no start-up benchmarks) given the
  same ``NUM_CPUS = 2`` and ``MEMORY``.

Only one of them is in the pool at a time, and each job is pinned to it by its
hostname (``TARGET.UtsnameNodename``): that one requirement is the only difference
between the two submit descriptions. With ``--rounds`` > 1 the order alternates
(product first in even rounds, reference first in odd ones) and medians are printed.

Counted, from the job's own event log (written by the CM's schedd and shadows, with
sub-second timestamps): from the first submit event to the last job-terminated
event (the figure whose ratio has the target), and per job from its submit to its
termination (waiting in the queue included) and from its start (the first input
transfer or execute event, once the claim is activated) to its termination (input
transfer, starter set-up, the Apptainer test and start, the second of sleep, output
transfer). That covers negotiation, claiming and claim reuse, file transfer, and
containment. ``--save-logs DIR`` keeps the event logs the figures came from.

Not counted: starting the pilot container and its slot reaching the collector
(``benchmarks/pilot_figures.py`` measures that), the pool's own start-up, and the
time for the harness to notice completion. Every job must terminate normally with
exit code 0, or the run fails with the events it saw instead of printing a figure.
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

import pool  # noqa: E402 - the test pool harness

TARGET_RATIO = 1.3
PRODUCT, REFERENCE = "ospool-ep", "bare startd"

# Sub-second, UTC, ISO timestamps in the jobs' event logs (HTCondor manual,
# EVENT_LOG_FORMAT_OPTIONS / DEFAULT_USERLOG_FORMAT_OPTIONS): the default has whole
# seconds only, too coarse for one-second jobs.
USERLOG_CONFIG = "DEFAULT_USERLOG_FORMAT_OPTIONS = ISO_DATE, UTC, SUB_SECOND"

# `NNN (cluster.proc.subproc) YYYY-MM-DD HH:MM:SS[.mmm][Z] text` (ULogEvent::formatHeader).
_HEADER = re.compile(
    r"^(?P<code>\d{3}) \((?P<cluster>\d+)\.(?P<proc>\d+)\.\d+\) "
    r"(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?)Z? "
)
_NORMAL_EXIT = re.compile(r"\(1\) Normal termination \(return value (?P<code>-?\d+)\)")
# Event numbers (ULogEventNumber): a run starts with input transfer (040) or execution (001).
SUBMIT, EXECUTE, TERMINATED, FILE_TRANSFER = 0, 1, 5, 40


@dataclass(frozen=True)
class Event:
    code: int
    cluster: int
    proc: int
    seconds: float
    """Seconds since the epoch, as written (timezone: the log's; only differences matter)."""
    exit_code: int | None = None
    """For a terminated event: the return value of a normal termination, else None."""


def parse_user_log(text: str) -> list[Event]:
    """The events of an HTCondor job event log in its classic text format."""
    events: list[Event] = []
    for block in text.split("\n...\n"):
        match = _HEADER.match(block.lstrip("\n"))
        if match is None:
            continue
        stamp = datetime.datetime.fromisoformat(f"{match['date']}T{match['time']}")
        exit_match = _NORMAL_EXIT.search(block)
        events.append(
            Event(
                code=int(match["code"]),
                cluster=int(match["cluster"]),
                proc=int(match["proc"]),
                seconds=stamp.replace(tzinfo=datetime.UTC).timestamp(),
                exit_code=int(exit_match["code"]) if exit_match else None,
            )
        )
    return events


class BenchError(RuntimeError):
    """The run did not give a figure; the message says what went wrong."""


@dataclass(frozen=True)
class Turnaround:
    makespan: float
    """First submit event to the last terminated event, seconds."""
    per_job: list[float]
    """Per job: its submit to its termination."""
    in_slot: list[float]
    """Per job: its first start (input transfer or execute event) to its termination."""


def turnaround(events: Iterable[Event], jobs: int) -> Turnaround:
    """Figures of one cluster of ``jobs`` procs; BenchError unless each proc was
    submitted, started and terminated normally with exit code 0."""
    submitted: dict[int, float] = {}
    started: dict[int, float] = {}
    terminated: dict[int, Event] = {}
    for event in events:
        if event.code == SUBMIT:
            submitted.setdefault(event.proc, event.seconds)
        elif event.code in (EXECUTE, FILE_TRANSFER):
            started.setdefault(event.proc, event.seconds)
        elif event.code == TERMINATED:
            terminated[event.proc] = event
    expected = set(range(jobs))
    problems = [
        f"{what}: procs {sorted(expected - set(seen))}"
        for what, seen in (
            ("not submitted", submitted),
            ("never started", started),
            ("not terminated", terminated),
        )
        if expected - set(seen)
    ]
    failed = sorted(p for p, e in terminated.items() if e.exit_code != 0)
    if failed:
        problems.append(f"no normal exit with code 0: procs {failed}")
    if problems:
        raise BenchError("; ".join(problems))
    return Turnaround(
        makespan=max(e.seconds for e in terminated.values()) - min(submitted.values()),
        per_job=[terminated[p].seconds - submitted[p] for p in sorted(expected)],
        in_slot=[terminated[p].seconds - started[p] for p in sorted(expected)],
    )


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--pilot-env``) as a mapping; BenchError naming a bad one."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise BenchError(
                f"--pilot-env {pair!r}: expected NAME=VALUE,"
                " e.g. --pilot-env JOB_CONTAINMENT=required"
            )
        env[key] = value
    return env


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50, help="jobs per execution point")
    parser.add_argument("--job-seconds", type=int, default=1, help="each job sleeps this long")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of each execution point")
    parser.add_argument("--memory", type=int, default=2048, help="MB of each execution point")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (medians)")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds one phase may take before failing"
    )
    parser.add_argument(
        "--pilot-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the ospool-ep pilot (repeatable), e.g. JOB_CONTAINMENT=required",
    )
    parser.add_argument(
        "--security-opt",
        action="append",
        metavar="OPT",
        help="security option of the ospool-ep pilot container (repeatable; "
        "default: unmask=/proc/*, what Apptainer needs)",
    )
    parser.add_argument(
        "--require-contained",
        action="store_true",
        help="no figure unless the pilot's slot advertises OSPOOL_EP_JOBS_CONTAINED = True",
    )
    parser.add_argument(
        "--save-logs",
        type=Path,
        metavar="DIR",
        help="write each phase's job event log to DIR/<pilot>.log (to check the figures)",
    )
    args = parser.parse_args(argv)
    for name in ("jobs", "job_seconds", "cpus", "memory", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        args.pilot_env = parse_env(args.pilot_env)
    except BenchError as exc:
        parser.error(str(exc))
    if args.security_opt is None:
        args.security_opt = ["unmask=/proc/*"]
    return args


def figures(
    results: Mapping[str, Sequence[Turnaround]], contained: Sequence[object], jobs: int
) -> dict[str, Any]:
    """The printed figures: medians over the rounds of each execution point."""

    def makespan(label: str) -> float:
        return statistics.median(t.makespan for t in results[label])

    def per_job(label: str) -> float:
        return statistics.median(statistics.median(t.per_job) for t in results[label])

    def in_slot(label: str) -> float:
        return statistics.median(statistics.median(t.in_slot) for t in results[label])

    product, reference = makespan(PRODUCT), makespan(REFERENCE)
    return {
        f"{jobs} jobs, ospool-ep run: submit -> all completed (s)": product,
        f"{jobs} jobs, bare condor_startd: submit -> all completed (s)": reference,
        f"job turnaround ratio (target <= {TARGET_RATIO})": product / reference,
        "per job, ospool-ep run: submit -> completed, median (s)": per_job(PRODUCT),
        "per job, bare condor_startd: submit -> completed, median (s)": per_job(REFERENCE),
        "per job, ospool-ep run: started -> completed, median (s)": in_slot(PRODUCT),
        "per job, bare condor_startd: started -> completed, median (s)": in_slot(REFERENCE),
        "ospool-ep slot: OSPOOL_EP_JOBS_CONTAINED (each round)": ", ".join(map(str, contained)),
        "rounds": len(results[PRODUCT]),
    }


def format_figures(values: Mapping[str, Any]) -> list[str]:
    """One line per figure, as benchmarks/pilot_figures.py prints them."""
    return [
        f"{label:80s} {f'{value:.2f}' if isinstance(value, float) else value}"
        for label, value in values.items()
    ]


# ---------------------------------------------------------------------------
# Against the pool


def job(target: str, seconds: int) -> dict[str, str]:
    """The submit description; only the target hostname differs between the two."""
    return {
        "executable": "/bin/sleep",
        "arguments": str(seconds),
        "transfer_executable": "false",
        "requirements": f'TARGET.UtsnameNodename == "{target}"',
    }


def slot_ad(p: pool.Pool, target: str, timeout: float = 120) -> dict[str, Any]:
    """The target's partitionable slot ad, once the collector has it; BenchError at
    once if its container exits first (e.g. JOB_CONTAINMENT=required where
    Apptainer cannot work: exit 69)."""
    constraint = f'UtsnameNodename == "{target}" && PartitionableSlot =?= true'
    container = p.pilots[target].get_wrapped_container()

    def ads_or_exit() -> list[dict[str, Any]]:
        container.reload()
        state = container.attrs["State"]
        if not state.get("Running"):
            raise BenchError(
                f"{target} exited {state.get('ExitCode')} before its slot appeared:\n"
                f"{container.logs(tail=40).decode(errors='replace')}"
            )
        return p.collector_ads("slot", constraint)

    ads = pool.wait_until(
        ads_or_exit,
        timeout=timeout,
        interval=0.5,
        what=f"slot of {target}",
    )
    return dict(ads[0])


def wait_for_cluster(p: pool.Pool, cluster: int, log: str, timeout: float) -> None:
    """Until every job in the cluster's event log has completed (``condor_wait``, in
    rounds of a few seconds); BenchError at once for a held job, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waited = p.exec_cm(["condor_wait", "-wait", "5", log], user=pool.SUBMIT_USER, timeout=30)
        if waited.exit_code == 0:
            return
        held = p.exec_cm(
            [
                "condor_q",
                str(cluster),
                "-constraint",
                "JobStatus == 5",
                "-af",
                "ProcId",
                "HoldReason",
            ],
            user=pool.SUBMIT_USER,
        ).stdout.strip()
        if held:
            raise BenchError(f"jobs held: {held.splitlines()[:5]}")
    raise BenchError(f"not all completed within {timeout:.0f} s")


def run_jobs(p: pool.Pool, target: str, args: argparse.Namespace) -> Turnaround:
    cluster = p.submit(job(target, args.job_seconds), count=args.jobs)
    log = f"{p.job_dir(cluster)}/job.log"
    try:
        wait_for_cluster(p, cluster, log, args.timeout)
        text = p.exec_cm(["cat", log], user=pool.SUBMIT_USER).check(f"cat {log}").stdout
        if args.save_logs is not None:
            args.save_logs.mkdir(parents=True, exist_ok=True)
            (args.save_logs / f"{target}.log").write_text(text)
        return turnaround((e for e in parse_user_log(text) if e.cluster == cluster), args.jobs)
    except BenchError as exc:
        p.exec_cm(["condor_rm", str(cluster)], user=pool.SUBMIT_USER)
        raise BenchError(
            f"{target}: {exc}\n--- {target} ---\n{p.pilot_logs(target)[-4000:]}"
        ) from None


def product_phase(p: pool.Pool, token: str, name: str, args: argparse.Namespace) -> object:
    env = {
        "GLIDEIN_Site": "Bench",
        "GLIDEIN_ResourceName": name,
        "CONDOR_HOST": p.cm_host,
        "TOKEN": token,
        "NUM_CPUS": str(args.cpus),
        "MEMORY": str(args.memory),
        "MIN_DISK_GB": "0",
        **args.pilot_env,
    }
    p.run_container(name, command=["run"], env=env, security_opt=list(args.security_opt))
    contained = slot_ad(p, name).get("OSPOOL_EP_JOBS_CONTAINED", "undefined")
    if args.require_contained and contained is not True:
        raise BenchError(
            f"{name}: its slot says OSPOOL_EP_JOBS_CONTAINED = {contained}, and"
            " --require-contained asks for the contained figure only"
        )
    return contained


def reference_phase(p: pool.Pool, token: str, name: str, args: argparse.Namespace) -> None:
    p.start_bare_pilot(
        name, token, extra_config=f"NUM_CPUS = {args.cpus}\nMEMORY = {args.memory}\n"
    )
    slot_ad(p, name)


def measure(
    p: pool.Pool, args: argparse.Namespace
) -> tuple[dict[str, list[Turnaround]], list[object]]:
    token = p.mint_token()
    results: dict[str, list[Turnaround]] = {PRODUCT: [], REFERENCE: []}
    contained: list[object] = []
    for round_ in range(args.rounds):
        order = (PRODUCT, REFERENCE) if round_ % 2 == 0 else (REFERENCE, PRODUCT)
        for label in order:
            name = f"{'prod' if label == PRODUCT else 'bare'}{round_}"
            if label == PRODUCT:
                contained.append(product_phase(p, token, name, args))
            else:
                reference_phase(p, token, name, args)
            try:
                results[label].append(run_jobs(p, name, args))
            finally:
                p.remove_pilot(name)
    return results, contained


def configure_cm(p: pool.Pool) -> None:
    """Sub-second event-log timestamps for the jobs the CM's schedd and shadows log."""
    config_dir = p.exec_cm(["condor_config_val", "LOCAL_CONFIG_DIR"]).check("config dir")
    # A list (Debian: /usr/share/condor/config.d,/etc/condor/config.d); the last is read last.
    path = f"{config_dir.stdout.strip().split(',')[-1].strip()}/99-bench-userlog.conf"
    p.exec_cm(["sh", "-c", f"echo '{USERLOG_CONFIG}' > {path}"]).check(f"write {path}")
    p.exec_cm(["condor_reconfig"]).check("condor_reconfig")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    service = pool.ensure_podman_service()
    the_pool = pool.Pool.start()
    try:
        configure_cm(the_pool)
        results, contained = measure(the_pool, args)
    except (BenchError, TimeoutError, pool.PoolError) as exc:
        print(f"job turnaround: no figure: {exc}", file=sys.stderr)
        return 1
    finally:
        the_pool.stop()
        service.stop()
    for line in format_figures(figures(results, contained, args.jobs)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
