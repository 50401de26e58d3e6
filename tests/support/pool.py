"""A real HTCondor test pool in containers, for end-to-end tests (SPEC §13).

One central manager (collector, negotiator, schedd) runs in a container of the
ospool-ep image as root, with the config in ``tests/support/pool/cm/``; each pilot runs
in a container of its own on the same podman network and joins with a real
IDTOKEN minted by that central manager. Everything goes through podman's
Docker API socket with ``testcontainers`` (no Docker engine on these machines;
see ``tests/support/pool/NOTES.md`` for the podman details this relies on).

Typical use::

    docker_host = pool.ensure_podman_service()      # DOCKER_HOST for testcontainers
    with pool.Pool.start() as p:
        token = p.mint_token()
        ep = p.start_bare_pilot("ep1", token)       # hand-written minimal EP config
        p.wait_for_slot('Machine == "ep1"', timeout=60)
        cluster = p.submit({"executable": "/bin/echo", "arguments": "hello"})
        p.wait_for_job(cluster, timeout=60)
        assert p.job_output(cluster) == "hello\\n"

Every wait polls against a deadline; none sleeps a fixed time. Durations are
recorded in ``Pool.timings`` (seconds) so tests and benchmarks can print them.

This module holds no tests; it is plain code imported by tests under
``tests/e2e``.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from paths import REPO

POOL_DIR = REPO / "tests" / "support" / "pool"
WORK = Path(os.environ.get("OSPOOL_EP_WORK", REPO / ".work"))

IMAGE = os.environ.get("OSPOOL_EP_IMAGE", "localhost/ospool-ep:dev")
"""The image under test; the central manager runs from it too (it has HTCondor)."""

CONTAINERS_CONF = WORK / "containers" / "containers.conf"
"""Written by scripts/setup-host.sh: runtime=runc, default_ulimits=[] (FACTS.md)."""

PODMAN_SOCKET = Path(
    os.environ.get("OSPOOL_EP_PODMAN_SOCKET", WORK / "podman" / f"podman-{os.getpid()}.sock")
)
"""One service per test process by default: a session that stops its service
cannot pull it from under another session running at the same time."""

TRUST_DOMAIN = "ospool-ep.test"
"""The CM's TRUST_DOMAIN (tests/support/pool/cm/condor_config.local); tokens' ``iss``."""

CM_ALIAS = "cm"
"""The CM's hostname and network alias: what pilots put in CONDOR_HOST."""

SUBMIT_USER = "osg"
"""Non-root user that submits jobs inside the CM (uid 1000 in the image)."""

LABEL = "org.ospool-ep.test-pool"
"""Label on every network and container a Pool makes (value: the pool id)."""

PILOT_SECURITY_OPT: tuple[str, ...] = ("unmask=/proc/*",)
"""What the README's ``podman run`` line gives a pilot: Apptainer needs an unmasked
/proc to mount the job's own (SPEC 7.6). ``run_container(security_opt=())`` opts out."""

T = TypeVar("T")


class PoolError(RuntimeError):
    """A pool operation failed; the message carries the command's output."""


class JobStatus(enum.IntEnum):
    """HTCondor's JobStatus attribute values (manual: Job ClassAd attributes)."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


# ---------------------------------------------------------------------------
# Deadlines


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call ``check`` until it returns something other than None/False/empty.

    Raises TimeoutError naming ``what`` after ``timeout`` seconds. The last
    exception raised by ``check`` (if any) is chained, to say why it never held.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
        except (PoolError, OSError) as exc:
            last_error = exc
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s") from last_error
        time.sleep(interval)


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[key] = round(time.monotonic() - start, 3)


# ---------------------------------------------------------------------------
# podman and its Docker API socket


def unavailable_reason(image: str = IMAGE) -> str | None:
    """Why the container tests cannot run here, or None when they can.

    Checked without starting anything but ``podman image exists``, so that a
    test module can skip with the reason at collection time.
    """
    if shutil.which("podman") is None:
        return "podman is not installed (run scripts/setup-host.sh)"
    for module in ("docker", "testcontainers"):
        try:
            __import__(module)
        except ImportError:
            return f"python package {module!r} missing (pip install -e '.[test]')"
    conf = os.environ.get("CONTAINERS_CONF") or str(CONTAINERS_CONF)
    if not Path(conf).is_file():
        return f"{conf} missing (run scripts/setup-host.sh)"
    env = {**os.environ, "CONTAINERS_CONF": conf}
    try:
        exists = subprocess.run(
            ["podman", "image", "exists", image], env=env, timeout=30, check=False
        ).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman does not answer: {exc}"
    if exists != 0:
        return f"image {image} not built (run scripts/build-image.sh)"
    return None


def _socket_answers(path: Path) -> bool:
    """True when a Docker-API server answers ``GET /_ping`` on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            status_line = s.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.") and b" 200" in status_line
    except OSError:
        return False


@dataclass
class PodmanService:
    """A ``podman system service`` serving the Docker API on a unix socket."""

    socket: Path
    process: subprocess.Popen[bytes] | None
    """The service process when this object started it, else None."""

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        """Stop the service if this object started it (its containers live on)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        if os.environ.get("DOCKER_HOST") == self.docker_host:
            del os.environ["DOCKER_HOST"]


def ensure_podman_service(sock: Path = PODMAN_SOCKET, *, timeout: float = 30) -> PodmanService:
    """Start ``podman system service`` on ``sock`` unless one answers there.

    A ``DOCKER_HOST=unix://...`` already set in the environment that answers
    (a Docker engine, or a podman service someone else runs) is used as it is.
    Also sets, in this process's environment, what testcontainers and podman
    need: ``DOCKER_HOST=unix://<sock>``, ``TESTCONTAINERS_RYUK_DISABLED=true``
    (the Ryuk image cannot be pulled: no registry) and ``CONTAINERS_CONF``
    (default: the file scripts/setup-host.sh writes), which the service
    inherits. Returns the service; ``.docker_host`` is the DOCKER_HOST value.
    """
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    preset = os.environ.get("DOCKER_HOST", "")
    if preset.startswith("unix://") and _socket_answers(Path(preset.removeprefix("unix://"))):
        return PodmanService(socket=Path(preset.removeprefix("unix://")), process=None)
    process = None
    if not _socket_answers(sock):
        sock.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        log = (sock.parent / "podman-service.log").open("ab")
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not killed with the test's process group
        )
        log.close()

        def up() -> bool:
            if process.poll() is not None:
                raise PoolError(f"podman system service exited {process.returncode}")
            return _socket_answers(sock)

        wait_until(up, timeout=timeout, interval=0.1, what=f"podman service on {sock}")
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    return PodmanService(socket=sock, process=process)


# ---------------------------------------------------------------------------
# The pool


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str

    def check(self, what: str) -> ExecResult:
        if self.exit_code != 0:
            raise PoolError(
                f"{what} exited {self.exit_code}\nstdout: {self.stdout}\nstderr: {self.stderr}"
            )
        return self


def _exec(
    container: Any,
    argv: Sequence[str],
    *,
    user: str = "",
    workdir: str | None = None,
    timeout: float = 60,
) -> ExecResult:
    """Run argv in a running container (docker-py exec_run), bounded by coreutils timeout."""
    cmd = ["timeout", "-k", "5", str(int(timeout)), *argv]
    code, (out, err) = container.get_wrapped_container().exec_run(
        cmd, user=user, workdir=workdir, demux=True
    )
    return ExecResult(
        exit_code=code if code is not None else -1,
        stdout=(out or b"").decode(errors="replace"),
        stderr=(err or b"").decode(errors="replace"),
    )


_POLLER = """
import subprocess, sys, time
timeout, interval, argv = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
deadline = time.monotonic() + timeout
while True:
    p = subprocess.run(argv, capture_output=True, text=True)
    out = p.stdout.strip()
    if p.returncode == 0 and out not in ("", "[]"):
        print(out)
        sys.exit(0)
    if time.monotonic() >= deadline:
        sys.stderr.write(p.stderr[-2000:])
        sys.exit(124)
    time.sleep(interval)
"""
"""Runs inside the CM (python3 is in the image): argv until it prints something."""


def _json_list(text: str) -> list[dict[str, Any]]:
    """condor_* -json output: a JSON array, or nothing at all when no ads match."""
    text = text.strip()
    return json.loads(text) if text else []


def _submit_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


DEFAULT_JOB: Mapping[str, str] = {
    "universe": "vanilla",
    "should_transfer_files": "YES",
    "when_to_transfer_output": "ON_EXIT",
    "output": "job.$(Process).out",
    "error": "job.$(Process).err",
    "log": "job.log",
    "request_cpus": "1",
    "request_memory": "64",
    "request_disk": "1024",
}
"""Submit-description defaults; the pilots share no filesystem with the CM."""


@dataclass
class Pool:
    """A running central manager on its own podman network, plus its pilots.

    Make one with :meth:`Pool.start` (a context manager); :meth:`stop`
    removes every container and the network it made.
    """

    id: str
    image: str
    network: Any  # testcontainers.core.network.Network
    cm: Any  # testcontainers.core.container.DockerContainer
    cm_ip: str
    subnet: str
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)
    pilots: dict[str, Any] = field(default_factory=dict)
    _jobs: int = 0

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def start(cls, image: str = IMAGE, *, ready_timeout: float = 90) -> Pool:
        """Create a network and a central manager on it; return when it is ready.

        Ready means the collector lists a Collector, Negotiator and Scheduler ad.
        """
        from testcontainers.core.network import Network

        timings: dict[str, float] = {}
        pool_id = uuid.uuid4().hex[:8]
        network = Network(docker_network_kw={"labels": {LABEL: pool_id}})
        network.name = f"ospool-ep-test-{pool_id}"
        with _timed(timings, "network_create"):
            network.create()
        cm = None
        try:
            subnet = network._unwrap_network.attrs["IPAM"]["Config"][0]["Subnet"]
            cm = _cm_container(
                image, pool_id, network, subnet, suffix="cm", hostname=CM_ALIAS, aliases=[CM_ALIAS]
            )
            with _timed(timings, "cm_container_start"):
                cm.start()
            cm_ip = _container_ip(cm, network.name)
            workdir = WORK / "pool" / pool_id
            workdir.mkdir(parents=True, exist_ok=True)
            pool = cls(
                id=pool_id,
                image=image,
                network=network,
                cm=cm,
                cm_ip=cm_ip,
                subnet=subnet,
                workdir=workdir,
                timings=timings,
            )
            with _timed(timings, "cm_ready"):
                pool._wait_cm_ready(ready_timeout)
        except BaseException:
            if cm is not None:
                _remove(cm)
            with contextlib.suppress(Exception):
                network.remove()
            raise
        return pool

    def _wait_cm_ready(self, timeout: float, on: Any = None) -> None:
        deadline = time.monotonic() + timeout
        # The collector answering at all is the first condition; then the
        # negotiator's and the schedd's ads.
        for ad_type in ("negotiator", "schedd"):
            remaining = max(1.0, deadline - time.monotonic())
            try:
                self._poll_cm(
                    ["condor_status", f"-{ad_type}", "-json"],
                    timeout=remaining,
                    what=f"central manager: {ad_type} ad",
                    on=on,
                )
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n{self.cm_logs(on=on)}") from None

    def stop(self) -> None:
        """Remove the pilots, the CM (with their anonymous /pilot volumes) and the network."""
        for container in list(self.pilots.values()):
            _remove(container)
        self.pilots.clear()
        _remove(self.cm)
        with contextlib.suppress(Exception):
            self.network.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def cm_host(self) -> str:
        """The CM's name on the pool network: the pilots' CONDOR_HOST."""
        return CM_ALIAS

    @property
    def collector_address(self) -> str:
        return f"{self.cm_ip}:9618"

    # -- inside the CM -----------------------------------------------------

    def exec_cm(
        self,
        argv: Sequence[str],
        *,
        user: str = "root",
        workdir: str | None = None,
        timeout: float = 60,
        on: Any = None,
    ) -> ExecResult:
        """Run argv in the CM (or in the CM container ``on``, for a pool of several)."""
        return _exec(on or self.cm, argv, user=user, workdir=workdir, timeout=timeout)

    def _poll_cm(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        interval: float = 0.2,
        what: str,
        on: Any = None,
    ) -> str:
        """Run argv inside the CM every ``interval`` s until it prints something
        (other than an empty JSON list); return that output.

        The loop runs inside the container (one exec per wait, not per poll:
        each exec through podman's API leaves a conmon behind for minutes).
        """
        result = self.exec_cm(
            ["python3", "-c", _POLLER, str(timeout), str(interval), *argv],
            timeout=timeout + 10,
            on=on,
        )
        if result.exit_code == 124:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s ({result.stderr})")
        return result.check(what).stdout

    def cm_logs(self, tail: int = 50, *, on: Any = None) -> str:
        """The tail of the CM's daemon logs (for failure messages)."""
        script = f'for f in /var/log/condor/*Log; do echo "== $f"; tail -n {int(tail)} "$f"; done'
        return self.exec_cm(["bash", "-c", script], on=on).stdout

    def mint_token(
        self,
        lifetime: int | None = None,
        scopes: Sequence[str] | None = None,
        *,
        identity: str = f"condor_pool@{TRUST_DOMAIN}",
    ) -> str:
        """A fresh IDTOKEN signed with the CM's POOL key (condor_token_create).

        ``lifetime``: seconds until ``exp`` (None: no expiry). ``scopes``:
        authorizations such as ``"ADVERTISE_STARTD"`` (None: unrestricted).
        The token never goes into logs or exceptions.
        """
        argv = ["condor_token_create", "-identity", identity, "-key", "POOL"]
        if lifetime is not None:
            argv += ["-lifetime", str(int(lifetime))]
        for scope in scopes or ():
            argv += ["-authz", scope]
        start = time.monotonic()
        result = self.exec_cm(argv)
        if result.exit_code != 0:
            raise PoolError(f"condor_token_create exited {result.exit_code}: {result.stderr}")
        self.timings["token_mint"] = round(time.monotonic() - start, 3)
        token = result.stdout.strip()
        if token.count(".") != 2:
            raise PoolError("condor_token_create printed no JWT")
        return token

    def submit(self, job_description: Mapping[str, object], *, count: int = 1) -> int:
        """Submit ``count`` procs as the non-root submit user; return the cluster id.

        Keys are submit-description commands (``executable``, ``arguments``,
        ``requirements``, ...), merged over :data:`DEFAULT_JOB`. Each submit
        gets its own directory in the CM (``job_dir``), where output lands.
        """
        self._jobs += 1
        jobdir = f"/home/{SUBMIT_USER}/jobs/{self._jobs}"
        lines = [f"{k} = {_submit_value(v)}" for k, v in {**DEFAULT_JOB, **job_description}.items()]
        text = "\n".join([*lines, f"queue {int(count)}", ""])
        encoded = base64.b64encode(text.encode()).decode()
        script = (
            f"mkdir -p {jobdir} && cd {jobdir} && echo {encoded} | base64 -d > job.sub"
            " && condor_submit -terse job.sub"
        )
        result = self.exec_cm(["bash", "-c", script], user=SUBMIT_USER).check("condor_submit")
        # -terse prints "<cluster>.<first proc> - <cluster>.<last proc>"
        cluster = int(result.stdout.split(".", 1)[0])
        self.exec_cm(
            ["ln", "-sfn", jobdir, f"/home/{SUBMIT_USER}/jobs/c{cluster}"], user=SUBMIT_USER
        )
        return cluster

    def job_dir(self, cluster: int) -> str:
        return f"/home/{SUBMIT_USER}/jobs/c{cluster}"

    def job_ads(
        self, cluster: int, attrs: Sequence[str] = ("ProcId", "JobStatus")
    ) -> list[dict[str, Any]]:
        """The cluster's job ads, from the queue and from the history."""
        projection = ",".join(attrs)
        ads = _json_list(
            self.exec_cm(["condor_q", str(cluster), "-json", "-attributes", projection])
            .check("condor_q")
            .stdout
        )
        seen = {ad.get("ProcId") for ad in ads}
        history = _json_list(
            self.exec_cm(["condor_history", str(cluster), "-json", "-attributes", projection])
            .check("condor_history")
            .stdout
        )
        return ads + [ad for ad in history if ad.get("ProcId") not in seen]

    def job_status(self, cluster: int) -> dict[int, JobStatus]:
        """ProcId -> JobStatus for every proc of the cluster (queue, then history)."""
        return {int(ad["ProcId"]): JobStatus(int(ad["JobStatus"])) for ad in self.job_ads(cluster)}

    def wait_for_job(
        self, cluster: int, status: JobStatus = JobStatus.COMPLETED, *, timeout: float = 120
    ) -> dict[int, JobStatus]:
        """Poll until every proc of ``cluster`` has ``status``; a held job fails at once."""
        start = time.monotonic()

        def done() -> dict[int, JobStatus] | None:
            states = self.job_status(cluster)
            if status != JobStatus.HELD and JobStatus.HELD in states.values():
                reason = self.job_ads(cluster, ("ProcId", "HoldReason"))
                raise AssertionError(f"job {cluster} held: {reason}")
            if states and all(s == status for s in states.values()):
                return states
            return None

        states = wait_until(
            done, timeout=timeout, interval=0.5, what=f"job {cluster} {status.name}"
        )
        self.timings[f"job_{cluster}_{status.name.lower()}"] = round(time.monotonic() - start, 3)
        return states

    def job_output(self, cluster: int, proc: int = 0, stream: str = "out") -> str:
        """The job's stdout (``stream="out"``) or stderr (``"err"``) as transferred back."""
        path = f"{self.job_dir(cluster)}/job.{int(proc)}.{stream}"
        return self.exec_cm(["cat", path], user=SUBMIT_USER).check(f"cat {path}").stdout

    def collector_ads(
        self,
        ad_type: str = "startd",
        constraint: str | None = None,
        *,
        projection: Sequence[str] = (),
        pool: str | None = None,
        on: Any = None,
    ) -> list[dict[str, Any]]:
        """Ads in the CM's collector (condor_status -json): ``ad_type`` is a
        condor_status type option without the dash: startd, master, schedd, any, ...
        ``pool``: ask that collector instead (``-pool``, e.g. ``host:9618?sock=collector3``);
        ``on``: from that CM container (a pool of several)."""
        argv = ["condor_status", f"-{ad_type}", "-json"]
        if pool:
            argv += ["-pool", pool]
        if constraint:
            argv += ["-constraint", constraint]
        if projection:
            argv += ["-attributes", ",".join(projection)]
        return _json_list(self.exec_cm(argv, timeout=30, on=on).check("condor_status").stdout)

    def wait_for_slot(self, constraint: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Poll the collector until a startd (slot) ad matches ``constraint``.

        ``constraint`` is a ClassAd expression, e.g. ``'Machine == "ep1"'`` or
        ``'regexp("^slot1@ep", Name)'``. Returns the matching ads. The time it
        took is recorded in ``timings["slot_wait <constraint>"]``.
        """
        start = time.monotonic()
        out = self._poll_cm(
            ["condor_status", "-startd", "-json", "-constraint", constraint],
            timeout=timeout,
            what=f"slot matching {constraint}",
        )
        self.timings[f"slot_wait {constraint}"] = round(time.monotonic() - start, 3)
        return _json_list(out)

    # -- pilots ------------------------------------------------------------

    def run_container(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        user: str = "1000:1000",
        env: Mapping[str, str] | None = None,
        volumes: Sequence[tuple[str | Path, str, str]] = (),
        image: str | None = None,
        security_opt: Sequence[str] = PILOT_SECURITY_OPT,
        **kwargs: Any,
    ) -> Any:
        """Start a container on the pool network (hostname ``name``), as a pilot.

        It gets an /etc/hosts entry for the CM (see NOTES.md: reverse DNS on
        podman's aardvark-dns can stall HTCondor for 20 s), no healthcheck
        (podman runs healthchecks with systemd timers, absent here), and is
        removed by :meth:`stop`. It runs with ``security_opt`` (default: the README's
        ``unmask=/proc/*``; ``()`` for podman's default mask). ``kwargs`` go to
        docker-py's containers.create. Returns the testcontainers DockerContainer.
        """
        from testcontainers.core.container import DockerContainer

        if name in self.pilots:
            raise PoolError(f"pilot {name} exists")
        kwargs = {**self._pilot_network_kwargs(), **kwargs}
        container = (
            DockerContainer(image or self.image)
            .with_name(f"ospool-ep-test-{self.id}-{name}")
            .with_network(self.network)
            .with_kwargs(
                hostname=name,
                user=user,
                labels={LABEL: self.id},
                healthcheck={"test": ["NONE"]},
                **({"security_opt": list(security_opt)} if security_opt else {}),
                **({"entrypoint": list(entrypoint)} if entrypoint is not None else {}),
                **kwargs,
            )
        )
        if command is not None:
            container.with_command(list(command))
        for key, value in (env or {}).items():
            container.with_env(key, value)
        for host, path, mode in volumes:
            container.with_volume_mapping(str(host), path, mode)
        self.pilots[name] = container
        with _timed(self.timings, f"pilot_{name}_start"):
            container.start()
        return container

    def _pilot_network_kwargs(self) -> dict[str, Any]:
        """Name resolution for a pilot: the CM's name in its /etc/hosts (NOTES.md)."""
        return {"extra_hosts": {CM_ALIAS: self.cm_ip}}

    def start_bare_pilot(
        self, name: str, token: str, *, trust_domain: str | None = None, extra_config: str = ""
    ) -> Any:
        """A pilot without the supervisor: ``condor_master -f`` with
        ``tests/support/pool/ep-minimal.conf`` as its whole config, as uid 1000.

        ``trust_domain``: written as the EP's TRUST_DOMAIN when given (the EP
        joins without it; NOTES.md). ``extra_config`` is appended verbatim.
        """
        pilot_dir = self.workdir / name
        pilot_dir.mkdir(parents=True, exist_ok=True)
        conf = (POOL_DIR / "ep-minimal.conf").read_text()
        conf = conf.replace("@CONDOR_HOST@", self.cm_host)
        conf = conf.replace(
            "@TRUST_DOMAIN_LINE@", f"TRUST_DOMAIN = {trust_domain}" if trust_domain else ""
        )
        (pilot_dir / "ep.conf").write_text(conf + "\n" + extra_config + "\n")
        token_file = pilot_dir / "pool.token"
        token_file.write_text(token + "\n")
        # The bind-mounted source only needs to be readable by uid 1000;
        # ep-start.sh copies it into /pilot/tokens.d with mode 0600.
        token_file.chmod(0o644)
        return self.run_container(
            name,
            entrypoint=["/usr/local/bin/ep-start.sh"],
            env={"CONDOR_CONFIG": "/etc/ospool-ep-test/ep.conf"},
            volumes=[
                (pilot_dir / "ep.conf", "/etc/ospool-ep-test/ep.conf", "ro"),
                (token_file, "/etc/condor/tokens-orig.d/pool.token", "ro"),
                (POOL_DIR / "ep-start.sh", "/usr/local/bin/ep-start.sh", "ro"),
            ],
        )

    def exec_pilot(
        self, name: str, argv: Sequence[str], *, user: str = "", timeout: float = 60
    ) -> ExecResult:
        return _exec(self.pilots[name], argv, user=user, timeout=timeout)

    def pilot_logs(self, name: str, tail: int = 50) -> str:
        """Container output plus the tail of the pilot's HTCondor logs under /pilot."""
        container = self.pilots[name].get_wrapped_container()
        out = container.logs(tail=tail).decode(errors="replace")
        script = (
            "for f in $(find /pilot -name '*Log' -type f 2>/dev/null); do"
            f' echo "== $f"; tail -n {int(tail)} "$f"; done'
        )
        with contextlib.suppress(Exception):
            out += self.exec_pilot(name, ["bash", "-c", script]).stdout
        return out

    def remove_pilot(self, name: str) -> None:
        _remove(self.pilots.pop(name))


# ---------------------------------------------------------------------------
# A pool shaped like a production one (SPEC 6.1, 13)


@dataclass(frozen=True)
class PoolShape:
    """What a production pool looks like to a pilot that names it in ``POOL``
    (SPEC 6.1, written here independently of the pilot's own table)."""

    central_managers: tuple[str, ...]
    """The CMs' production names; each is one CM container with that hostname."""
    ccb_hosts: tuple[str, ...] = ()
    """CCB names, mapped onto the CM of the same position (its collectors are CCB servers)."""
    sockets: tuple[str, ...] = ()
    """Shared-port ids of the sub-collectors every CM runs (``?sock=<id>``)."""


OSPOOL_SHAPE = PoolShape(
    central_managers=("cm-1.ospool.osg-htc.org", "cm-2.ospool.osg-htc.org"),
    ccb_hosts=("ccb-1.ospool.osg-htc.org", "ccb-2.ospool.osg-htc.org"),
    sockets=tuple(f"collector{n}" for n in range(1, 11)),
)
ITB_SHAPE = PoolShape(
    central_managers=("cm-1.ospool-itb.osg-htc.org", "cm-2.ospool-itb.osg-htc.org"),
    ccb_hosts=("ccb-1.ospool-itb.osg-htc.org", "ccb-2.ospool-itb.osg-htc.org"),
    sockets=tuple(f"collector{n}" for n in range(1, 11)),
)
PATH_SHAPE = PoolShape(
    central_managers=("cm-1.facility.path-cc.io", "cm-2.facility.path-cc.io"),
    sockets=tuple(f"collector{n}" for n in range(9620, 9625)),
)

NO_DNS = "127.0.0.1"
"""Every container of a shaped pool gets this as its only nameserver, where nothing
listens: a name outside /etc/hosts fails at once and never reaches a real host."""

_PREPEND_HOSTS = """
import sys
with open("/etc/hosts") as f:
    old = f.read()
with open("/etc/hosts", "w") as f:  # in place: podman bind-mounts /etc/hosts
    f.write("".join(line + "\\n" for line in sys.argv[1:]) + old)
"""
"""Put host entries first (before start-cm.sh's pilot-<ip> names for the subnet)."""


def sub_collector_config(sockets: Sequence[str]) -> str:
    """HTCondor config for one sub-collector per shared-port id (cm/ospool-shape.conf)."""
    names = [f"COLLECTOR_{sock.upper()}" for sock in sockets]
    lines = [f"OSPOOL_SHAPE_SUB_COLLECTORS = {' '.join(names)}"]
    for name, sock in zip(names, sockets, strict=True):
        lines += [
            f"{name} = $(COLLECTOR)",
            f"{name}_ARGS = -sock {sock} -local-name {sock}",
            f"{sock}.COLLECTOR_LOG = $(LOG)/Collector-{sock}.log",
            f"{sock}.COLLECTOR_NAME = {sock}@$(FULL_HOSTNAME)",
            f"{sock}.CONDOR_VIEW_HOST = $(CONDOR_HOST):9618?sock=collector",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class ShapedPool(Pool):
    """Several central managers answering to a production pool's names (SPEC 13).

    Each CM is the single-CM pool's container (collector, negotiator, schedd) with
    ``cm/ospool-shape.conf`` added: the production hostname, and a sub-collector per
    ``?sock=`` id behind the shared port. They share one POOL signing key and trust
    domain, so one minted token joins them all. Every container's /etc/hosts maps
    the CM and CCB names onto the CMs' addresses on the test network, and its only
    nameserver is :data:`NO_DNS`. ``cm`` is the first CM; jobs are submitted there.
    """

    shape: PoolShape = OSPOOL_SHAPE
    cms: dict[str, Any] = field(default_factory=dict)
    """CM name -> container, in the shape's order."""
    hosts: dict[str, str] = field(default_factory=dict)
    """Name -> address: what every container of the pool resolves."""

    @classmethod
    def start(
        cls, image: str = IMAGE, *, ready_timeout: float = 90, shape: PoolShape = OSPOOL_SHAPE
    ) -> ShapedPool:
        """Create the network and the CMs one after another (the first makes the
        signing key, the others get a copy); return when every CM is ready."""
        from testcontainers.core.network import Network

        timings: dict[str, float] = {}
        pool_id = uuid.uuid4().hex[:8]
        network = Network(docker_network_kw={"labels": {LABEL: pool_id}})
        network.name = f"ospool-ep-test-{pool_id}"
        with _timed(timings, "network_create"):
            network.create()
        workdir = WORK / "pool" / pool_id
        workdir.mkdir(parents=True, exist_ok=True)
        socks = workdir / "socks.conf"
        socks.write_text(sub_collector_config(shape.sockets))
        socks.chmod(0o644)
        started: dict[str, Any] = {}
        hosts: dict[str, str] = {}
        try:
            subnet = network._unwrap_network.attrs["IPAM"]["Config"][0]["Subnet"]
            pool: ShapedPool | None = None
            for index, name in enumerate(shape.central_managers):
                volumes: list[tuple[str | Path, str, str]] = [
                    (
                        POOL_DIR / "cm" / "ospool-shape.conf",
                        "/etc/condor/condor_config.shape",
                        "ro",
                    ),
                    (socks, "/etc/condor/condor_config.socks", "ro"),
                ]
                if pool is not None:
                    volumes.append((workdir / "POOL", "/etc/condor/passwords.d/POOL", "ro"))
                cm = _cm_container(
                    image,
                    pool_id,
                    network,
                    subnet,
                    suffix=f"cm{index + 1}",
                    hostname=name,
                    volumes=volumes,
                    extra_hosts=dict(hosts),
                    dns=[NO_DNS],
                )
                with _timed(timings, f"cm{index + 1}_container_start"):
                    cm.start()
                started[name] = cm
                ip = _container_ip(cm, network.name)
                hosts[name] = ip
                if index < len(shape.ccb_hosts):
                    hosts[shape.ccb_hosts[index]] = ip
                if pool is None:
                    pool = cls(
                        id=pool_id,
                        image=image,
                        network=network,
                        cm=cm,
                        cm_ip=ip,
                        subnet=subnet,
                        workdir=workdir,
                        timings=timings,
                        shape=shape,
                        cms=started,
                        hosts=hosts,
                    )
                with _timed(timings, f"cm{index + 1}_ready"):
                    pool._wait_cm_ready(ready_timeout, on=cm)
                    pool._wait_sub_collectors(name, ready_timeout, on=cm)
                if index == 0:
                    pool._copy_signing_key(workdir / "POOL")
            assert pool is not None, "a shape names at least one CM"
            lines = [
                f"{ip} {' '.join(n for n, a in hosts.items() if a == ip)}"
                for ip in set(hosts.values())
            ]
            for cm in started.values():
                pool.exec_cm(["python3", "-c", _PREPEND_HOSTS, *lines], on=cm).check("/etc/hosts")
        except BaseException:
            for cm in started.values():
                _remove(cm)
            with contextlib.suppress(Exception):
                network.remove()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return pool

    def _wait_sub_collectors(self, name: str, timeout: float, *, on: Any) -> None:
        """Until every sub-collector of CM ``name`` answers a query at its ``?sock=``."""
        script = " && ".join(
            f"condor_status -pool '{name}:9618?sock={sock}' -collector -af Name >/dev/null"
            for sock in self.shape.sockets
        )
        try:
            self._poll_cm(
                ["bash", "-c", f"{script} && echo up"],
                timeout=timeout,
                what=f"{name}: sub-collectors",
                on=on,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.cm_logs(on=on)}") from None

    def _copy_signing_key(self, dest: Path) -> None:
        """The first CM's POOL signing key into ``dest`` (0600), for the other CMs."""
        out = self.exec_cm(["base64", "-w0", "/etc/condor/passwords.d/POOL"]).check("read key")
        dest.write_bytes(base64.b64decode(out.stdout))
        dest.chmod(0o600)

    def stop(self) -> None:
        """Remove the pilots, every CM and the network."""
        for cm in self.cms.values():
            if cm is not self.cm:
                _remove(cm)
        super().stop()

    @property
    def cm_host(self) -> str:
        return self.shape.central_managers[0]

    def cm_named(self, name: str) -> Any:
        """The CM container answering to ``name`` (a CM or CCB name)."""
        address = self.hosts[name]
        return next(c for n, c in self.cms.items() if self.hosts[n] == address)

    def _pilot_network_kwargs(self) -> dict[str, Any]:
        return {"extra_hosts": dict(self.hosts), "dns": [NO_DNS]}


# ---------------------------------------------------------------------------
# helpers


def _container_ip(container: Any, network: str) -> str:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    ip = wrapped.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    ipaddress.ip_address(ip)  # fail loudly on an empty answer
    return str(ip)


def _cm_container(
    image: str,
    pool_id: str,
    network: Any,
    subnet: str,
    *,
    suffix: str,
    hostname: str,
    aliases: Sequence[str] = (),
    volumes: Sequence[tuple[str | Path, str, str]] = (),
    **kwargs: Any,
) -> Any:
    """A central manager's container (not started): the image as root, with
    ``cm/condor_config.local`` and ``cm/start-cm.sh``, plus ``volumes``; ``kwargs``
    go to docker-py's containers.create."""
    from testcontainers.core.container import DockerContainer

    cm = (
        DockerContainer(image)
        .with_name(f"ospool-ep-test-{pool_id}-{suffix}")
        .with_network(network)
        .with_volume_mapping(
            str(POOL_DIR / "cm" / "condor_config.local"), "/etc/condor/condor_config.local", "ro"
        )
        .with_volume_mapping(
            str(POOL_DIR / "cm" / "start-cm.sh"), "/usr/local/sbin/start-cm.sh", "ro"
        )
        .with_env("PILOT_SUBNET", subnet)
        .with_kwargs(
            entrypoint=["/usr/local/sbin/start-cm.sh"],
            user="0",
            hostname=hostname,
            labels={LABEL: pool_id},
            healthcheck={"test": ["NONE"]},
            **kwargs,
        )
    )
    if aliases:
        cm.with_network_aliases(*aliases)
    for host, path, mode in volumes:
        cm.with_volume_mapping(str(host), path, mode)
    return cm


def _remove(container: Any) -> None:
    """Kill and remove a container with its anonymous volumes.

    Kill first: podman's forced removal otherwise sends the stop signal and
    waits out the stop timeout (10 s) before killing.
    """
    wrapped = container._container
    if wrapped is None:
        return
    with contextlib.suppress(Exception):
        wrapped.kill()
    with contextlib.suppress(Exception):
        wrapped.remove(force=True, v=True)


def remove_leftovers() -> int:
    """Remove every container and network any Pool made (by label); return the count.

    For a crashed run; do not call while another test session uses a pool.
    """
    import docker

    client = docker.from_env()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed += 1
    for network in client.networks.list(filters={"label": LABEL}):
        with contextlib.suppress(Exception):
            network.remove()
            removed += 1
    return removed


def describe_timings(timings: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.2f}s" for k, v in timings.items())
