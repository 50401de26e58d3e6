"""Helpers for the end-to-end tests: one real pool per module, product pilots in it.

The pool is ``tests/support/pool.py``'s (a real central manager in a container, tokens
it mints, jobs submitted by a non-root user); a :class:`Pilot` is a container
of the image under test running ``ospool-ep run`` on the pool's network.
Everything here polls against deadlines (``pool.wait_until``); nothing sleeps
a fixed time. Container state comes from the podman API (``reload``), which
is cheap; commands inside containers are execs, each of which leaves podman
processes behind for minutes (tests/support/pool/NOTES.md, gotcha 4), so helpers
prefer one exec that loops inside the container over many short ones.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pool  # tests/support/pool.py (tests/ is not a package)
import pytest

UNAVAILABLE = pool.unavailable_reason()
"""Why the container tests cannot run here (None when they can); checked once."""

TOKEN_FILE = "/etc/condor/tokens-orig.d/flock.opensciencegrid.org"
"""Where a site mounts its token (SPEC 4.2)."""

DEFAULT_ENV: Mapping[str, str] = {
    "GLIDEIN_Site": "TestSite",
    "GLIDEIN_ResourceName": "Test Resource",
    "MIN_DISK_GB": "0",
    "NUM_CPUS": "1",
    "MEMORY": "1000",
}
"""A pilot's environment unless a test says otherwise (CONDOR_HOST and TOKEN are added)."""


def container_marks() -> list[pytest.MarkDecorator]:
    """``pytestmark`` for a module of container tests: marked, and skipped with the reason."""
    return [
        pytest.mark.container,
        pytest.mark.skipif(
            UNAVAILABLE is not None, reason=f"container pool unavailable: {UNAVAILABLE}"
        ),
    ]


# ---------------------------------------------------------------------------
# Inside a container: processes, read from /proc by the image's python3 (no ps there)

_PROCESSES = r"""
import hashlib, json, os, sys
want_env = set(sys.argv[1:])
out = []
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            stat = f.read()
        with open(f"/proc/{d}/status") as f:
            uid = next(l.split()[1] for l in f if l.startswith("Uid:"))
        with open(f"/proc/{d}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (OSError, StopIteration):
        continue
    rest = stat[stat.rfind(")") + 2 :].split()
    entry = {"pid": int(d), "ppid": int(rest[1]), "state": rest[0],
             "comm": stat[stat.find("(") + 1 : stat.rfind(")")], "uid": int(uid), "argv": argv}
    if entry["comm"] in want_env:
        # Names, and digests of the values: the test compares without seeing secrets.
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                pairs = [p.split(b"=", 1) for p in f.read().split(b"\0") if b"=" in p]
            entry["environ"] = {k.decode(errors="replace"): hashlib.sha256(v).hexdigest()
                                for k, v in pairs}
        except OSError as e:
            entry["environ_error"] = str(e)
    out.append(entry)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    state: str
    comm: str
    uid: int
    argv: tuple[str, ...]
    environ: Mapping[str, str] | None = None
    """Variable name -> sha256 of its value (only when asked for this command)."""


def digest(text: str) -> str:
    """What :class:`Process.environ` holds for a value ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------
# A product pilot


@dataclass
class Pilot:
    """One ``ospool-ep run`` container in the pool (hostname ``name``)."""

    pool: pool.Pool
    name: str
    container: Any  # testcontainers DockerContainer
    token: str
    env: Mapping[str, str]
    started: float = field(default_factory=time.monotonic)
    uuid: str | None = None
    """OSPOOL_EP_PILOT_UUID from its slot ad, once seen."""
    slot_seconds: float | None = None

    @property
    def wrapped(self) -> Any:
        return self.container.get_wrapped_container()

    # -- the slot -----------------------------------------------------------

    def wait_for_slot(self, timeout: float = 60, extra: str = "") -> list[dict[str, Any]]:
        """The pilot's partitionable slot ad, once the collector has it; records the
        pilot's UUID and, the first time, how long it took.

        Slot ads are ``condor_status -slot``: in HTCondor 23 ``-startd`` lists
        the startd's own daemon ad (``MyType == "StartD"``), which carries the
        pilot's attributes too and appears before the slot ad, but is no slot
        (``pool.wait_for_slot`` queries those). The pilot's ``Machine`` is its
        sanitized resource name plus hostname, so the container is found by
        ``UtsnameNodename`` (its hostname).
        """
        constraint = f'UtsnameNodename == "{self.name}"'
        if self.uuid is not None:
            constraint = f'OSPOOL_EP_PILOT_UUID == "{self.uuid}"'
        constraint += " && PartitionableSlot =?= true && OSPOOL_EP_PILOT_UUID =!= undefined"
        if extra:
            constraint = f"({constraint}) && ({extra})"
        # In rounds of a few seconds (one exec each), to fail at once when the
        # pilot has exited instead of waiting out the deadline.
        deadline = time.monotonic() + timeout
        while True:
            round_seconds = max(1.0, min(5.0, deadline - time.monotonic()))
            try:
                out = self.pool._poll_cm(
                    ["condor_status", "-slot", "-json", "-constraint", constraint],
                    timeout=round_seconds,
                    what=f"slot matching {constraint}",
                )
                ads = pool._json_list(out)
                break
            except TimeoutError as exc:
                gone = not self.running()
                if gone or time.monotonic() >= deadline:
                    why = f"pilot exited {self.state().get('ExitCode')}" if gone else str(exc)
                    raise AssertionError(
                        f"no slot matching {constraint}: {why}\n"
                        f"--- pilot {self.name} logs ---\n{self.logs()}"
                    ) from None
        if self.uuid is None:
            self.uuid = str(ads[0]["OSPOOL_EP_PILOT_UUID"])
        if self.slot_seconds is None:
            self.slot_seconds = round(time.monotonic() - self.started, 2)
        return ads

    def slot_ads(self, projection: Sequence[str] = ()) -> list[dict[str, Any]]:
        """This pilot's slot ads in the collector (partitionable and dynamic)."""
        assert self.uuid, "wait_for_slot first"
        return self.pool.collector_ads(
            "slot", f'OSPOOL_EP_PILOT_UUID == "{self.uuid}"', projection=projection
        )

    def pslot(self) -> dict[str, Any]:
        """The partitionable slot's ad."""
        ads = [ad for ad in self.slot_ads() if ad.get("PartitionableSlot") is True]
        assert len(ads) == 1, ads
        return ads[0]

    def requirements(self) -> str:
        """A job requirement that matches this pilot only."""
        assert self.uuid, "wait_for_slot first"
        return f'TARGET.OSPOOL_EP_PILOT_UUID == "{self.uuid}"'

    def submit(self, job: Mapping[str, object], *, count: int = 1) -> int:
        """Submit ``job`` pinned to this pilot."""
        return self.pool.submit({"requirements": self.requirements(), **job}, count=count)

    # -- the container ------------------------------------------------------

    def state(self) -> dict[str, Any]:
        self.wrapped.reload()
        return dict(self.wrapped.attrs["State"])

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def wait_exit(self, timeout: float) -> int:
        """Poll until the container has exited; its exit code."""

        def exited() -> dict[str, Any] | None:
            state = self.state()
            return None if state.get("Running") else state

        try:
            state = pool.wait_until(
                exited, timeout=timeout, interval=0.1, what=f"pilot {self.name} exits"
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- pilot {self.name} logs ---\n{self.logs()}") from None
        return int(state["ExitCode"])

    def signal(self, signo: str = "SIGTERM") -> float:
        """Send ``signo`` to the container's PID 1 (the supervisor); monotonic time sent."""
        self.wrapped.kill(signal=signo)
        return time.monotonic()

    def logs(self, *, stdout: bool = True, stderr: bool = True) -> str:
        """The container's whole output (the supervisor's log stream)."""
        try:
            return self.wrapped.logs(stdout=stdout, stderr=stderr).decode(errors="replace")
        except Exception as exc:  # only ever used in messages
            return f"(no logs: {exc})"

    def wait_log(self, text: str, timeout: float = 30) -> str:
        """Poll the container's output until it contains ``text``; the output."""

        def seen() -> str | None:
            out = self.logs()
            return out if text in out else None

        try:
            return pool.wait_until(seen, timeout=timeout, interval=0.2, what=f"log {text!r}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- pilot {self.name} logs ---\n{self.logs()}") from None

    def exec(self, argv: Sequence[str], *, user: str = "", timeout: float = 60) -> pool.ExecResult:
        return self.pool.exec_pilot(self.name, argv, user=user, timeout=timeout)

    def ip(self) -> str:
        return pool._container_ip(self.container, self.pool.network.name)

    # -- processes inside ------------------------------------------------------

    def processes(self, *, environ_of: Sequence[str] = ()) -> list[Process]:
        result = self.exec(["python3", "-c", _PROCESSES, *environ_of]).check("list processes")
        return [
            Process(
                pid=p["pid"],
                ppid=p["ppid"],
                state=p["state"],
                comm=p["comm"],
                uid=p["uid"],
                argv=tuple(p["argv"]),
                environ=p.get("environ"),
            )
            for p in json.loads(result.stdout)
        ]

    def process(self, comm: str, *, environ: bool = False) -> Process:
        """The one live process whose command name is ``comm`` (e.g. ``condor_startd``)."""
        found = [
            p
            for p in self.processes(environ_of=[comm] if environ else [])
            if p.comm == comm and p.state != "Z"
        ]
        assert len(found) == 1, f"expected one {comm}, found {found}"
        return found[0]

    def kill_process(self, comm: str, signo: int = 9) -> int:
        """``kill -<signo>`` the process named ``comm`` inside the container; its pid."""
        pid = self.process(comm).pid
        self.exec(["sh", "-c", f"kill -{int(signo)} {pid}"]).check(f"kill {comm}")
        return pid


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


class Pilots:
    """Starts product pilots in a pool and removes them after the test."""

    def __init__(self, test_pool: pool.Pool) -> None:
        self.pool = test_pool
        self.started: list[Pilot] = []

    def start(
        self,
        name: str,
        env: Mapping[str, str | None] | None = None,
        *,
        token: str | None = None,
        token_env: bool = True,
        volumes: Sequence[tuple[str | Path, str, str]] = (),
        wait_slot: bool = True,
        slot_timeout: float = 60,
        **kwargs: Any,
    ) -> Pilot:
        """Run ``ospool-ep run`` as ``name`` with :data:`DEFAULT_ENV` plus ``env``
        (a None value drops a default), a freshly minted token in ``TOKEN`` (or
        none when ``token_env`` is false: mount one instead), and wait for its
        slot unless ``wait_slot`` is false."""
        token = token if token is not None else self.pool.mint_token()
        merged: dict[str, str | None] = {**DEFAULT_ENV, "CONDOR_HOST": self.pool.cm_host}
        if token_env:
            merged["TOKEN"] = token
        merged.update(env or {})
        final = {k: v for k, v in merged.items() if v is not None}
        started = time.monotonic()
        container = self.pool.run_container(
            name, command=["run"], env=final, volumes=volumes, **kwargs
        )
        pilot = Pilot(
            pool=self.pool,
            name=name,
            container=container,
            token=token,
            env=final,
            started=started,
        )
        self.started.append(pilot)
        if wait_slot:
            pilot.wait_for_slot(timeout=slot_timeout)
            print(f"\n{name}: slot visible {pilot.slot_seconds:.2f} s after container create")
        return pilot

    def remove_all(self) -> None:
        for pilot in self.started:
            if pilot.name in self.pool.pilots:
                self.pool.remove_pilot(pilot.name)
        self.started.clear()


def remove_jobs(test_pool: pool.Pool, *clusters: int) -> None:
    """condor_rm what a test left in the queue (idle jobs pinned to a gone pilot)."""
    if clusters:
        with contextlib.suppress(Exception):
            test_pool.exec_cm(["condor_rm", *map(str, clusters)], user=pool.SUBMIT_USER)


def wait_status(
    test_pool: pool.Pool, cluster: int, status: pool.JobStatus, *, timeout: float
) -> float:
    """Poll until proc 0 of ``cluster`` has ``status`` (held fails unless asked); seconds taken."""
    start = time.monotonic()
    test_pool.wait_for_job(cluster, status, timeout=timeout)
    return round(time.monotonic() - start, 2)


def stays(
    test_pool: pool.Pool, cluster: int, status: pool.JobStatus, *, seconds: float
) -> dict[int, pool.JobStatus]:
    """Check for ``seconds`` that every proc of ``cluster`` keeps ``status``.

    A deadline, not a sleep: it polls the queue all along and fails at the
    first change.
    """
    deadline = time.monotonic() + seconds
    states: dict[int, pool.JobStatus] = {}
    while time.monotonic() < deadline:
        states = test_pool.job_status(cluster)
        assert states and all(s == status for s in states.values()), (
            f"job {cluster} left {status.name}: {states}"
        )
        time.sleep(1)
    return states


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def podman_service() -> Iterator[pool.PodmanService]:
    if UNAVAILABLE is not None:
        pytest.skip(f"container pool unavailable: {UNAVAILABLE}")
    service = pool.ensure_podman_service()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def live_pool(podman_service: pool.PodmanService) -> Iterator[pool.Pool]:
    """One real pool (central manager, submit node) shared by a module's tests."""
    del podman_service
    with pool.Pool.start() as p:
        yield p
        print(f"\npool timings: {pool.describe_timings(p.timings)}")


@pytest.fixture
def pilots(live_pool: pool.Pool, request: pytest.FixtureRequest) -> Iterator[Pilots]:
    """Start pilots with ``pilots.start(...)``; they are removed after the test
    (their output printed first when the test failed)."""
    made = Pilots(live_pool)
    yield made
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for pilot in made.started:
            print(f"\n--- pilot {pilot.name} output ---\n{pilot.logs()[-6000:]}")
    made.remove_all()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
