"""End-to-end: the units' own command lines start a pilot with podman in a real pool (SPEC 11).

What systemd would run is run here as written (``tests/deploy/test_launch_units.py``
reads the unit files; systemd is not PID 1 on these machines): ExecStartPre,
then ExecStart (``ospool-ep launch`` execs ``podman run`` in the foreground),
then, once the pilot's slot is in the pool's collector and a job has run on
it, ExecStop (``ospool-ep launch --stop``: podman stop, the pilot drains).
The launcher is the RPM's layout (``/usr/bin/ospool-ep`` and its modules),
run by Python 3.9 where this machine has one, else by this interpreter.

The config points the pilot at the pool: ``CONDOR_HOST=cm`` and, in
CONTAINER_EXTRA_ARGS, the pool's network and an /etc/hosts entry for the CM
(tests/support/pool/NOTES.md: reverse DNS through aardvark-dns stalls HTCondor).
``CONTAINER_NOFILE_LIMIT=0``: these hosts refuse setrlimit inside containers
(NOTES.md, podman gotcha 1), so no --ulimit here.

Needs podman and the built image; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pool  # tests/support/pool.py (tests/ is not a package)
import pytest
from units import (
    SERVICE,
    TEMPLATE,
    Relocation,
    Unit,
    install_tree,
    python39,
)

_reason = pool.unavailable_reason()
pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(_reason is not None, reason=f"container pool unavailable: {_reason}"),
]

CONFIG_ERROR = 78
TIMINGS: dict[str, float] = {}

CONTAINER = "ospool-ep-container"
"""The container the main /etc/osg/ospool-ep.cfg starts: upstream's name, so an upgraded
unit stops the container the old one started."""


@pytest.fixture(scope="module")
def test_pool() -> Iterator[pool.Pool]:
    service = pool.ensure_podman_service()
    try:
        with pool.Pool.start() as p:
            yield p
            print(f"\npool timings: {pool.describe_timings(p.timings)}")
            if TIMINGS:
                print("launch timings: " + ", ".join(f"{k}={v:.2f}s" for k, v in TIMINGS.items()))
    finally:
        service.stop()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """The packaged /usr/bin/ospool-ep, under Python 3.9 when there is one."""
    root = install_tree(tmp_path_factory.mktemp("rpmroot"))
    return (python39() or sys.executable, "-I", str(root / "usr/bin/ospool-ep"))


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Site:
    """One host's /etc/osg, token and scratch, for pilots joining ``pool``."""

    pool: pool.Pool
    root: Path
    token: str

    def __post_init__(self) -> None:
        self.etc = self.root / "etc-osg"
        self.etc.mkdir(parents=True, exist_ok=True)
        self.scratch = self.root / "scratch"
        self.scratch.mkdir(exist_ok=True)
        token = self.root / "ospool-ep.tkn"
        token.write_text(self.token + "\n")
        # What the install guide asks of a site: the pilot's uid owns both.
        for path in (token, self.scratch):
            os.chown(path, 1000, 1000)
        token.chmod(0o600)
        self.token_file = token
        self.resource = f"Launch {uuid.uuid4().hex[:8]}"

    def config(self, name: str = "ospool-ep.cfg", *, resource: str = "", **extra: str) -> Path:
        lines = {
            "GLIDEIN_Site": "LaunchTestSite",
            "GLIDEIN_ResourceName": resource or self.resource,
            "CONDOR_HOST": self.pool.cm_host,
            "TOKEN_LOCATION": str(self.token_file),
            "WORKER_TEMP_DIR": str(self.scratch),
            "CONTAINER_ENGINE": "podman",
            "IMAGE": self.pool.image,
            "PULL_POLICY": "never",
            "NUM_CPUS": "1",
            "MEMORY": "1000",
            "MIN_DISK_GB": "0",
            "SHUTDOWN_GRACE_SECONDS": "15",
            "CONTAINER_NOFILE_LIMIT": "0",
            "CONTAINER_EXTRA_ARGS": (
                f"--network {self.pool.network.name} --add-host {pool.CM_ALIAS}:{self.pool.cm_ip}"
                f" --label {pool.LABEL}={self.pool.id} --no-healthcheck"
            ),
            **extra,
        }
        path = self.etc / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        return path


@dataclass
class Service:
    """A unit's lines run by hand: ExecStartPre, ExecStart in the background, ExecStop."""

    unit: Unit
    where: Relocation
    log: Path
    main: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for line in self.unit.exec_lines("ExecStartPre"):
            result = subprocess.run(
                self.where.argv(line), capture_output=True, text=True, timeout=120, check=False
            )
            assert result.returncode == 0 or line.ignore_failure, result.stderr
        (start,) = self.unit.exec_lines("ExecStart")
        with self.log.open("wb") as out:
            self.main = subprocess.Popen(
                self.where.argv(start), stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> tuple[int, float]:
        """Run ExecStop; (its exit status, seconds it took)."""
        (stop,) = self.unit.exec_lines("ExecStop")
        started = time.monotonic()
        result = subprocess.run(
            self.where.argv(stop),
            capture_output=True,
            text=True,
            timeout=self.unit.seconds("TimeoutStopSec"),
            check=False,
        )
        return result.returncode, round(time.monotonic() - started, 2)

    def main_exit(self, timeout: float) -> int:
        assert self.main is not None
        return self.main.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for_slot(
    test_pool: pool.Pool, resource: str, service: Service, timeout: float = 90
) -> list[dict[str, Any]]:
    constraint = f'GLIDEIN_ResourceName == "{resource}" && PartitionableSlot =?= true'
    deadline = time.monotonic() + timeout
    while True:
        if service.main is not None and service.main.poll() is not None:
            raise AssertionError(
                f"the pilot exited {service.main.returncode}\n{service.output()[-4000:]}"
            )
        try:
            out = test_pool._poll_cm(
                ["condor_status", "-slot", "-json", "-constraint", constraint],
                timeout=min(5.0, max(1.0, deadline - time.monotonic())),
                what=f"slot of {resource}",
            )
            return pool._json_list(out)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no slot for {resource}\n{service.output()[-4000:]}"
                ) from None


def run_job(test_pool: pool.Pool, resource: str, text: str) -> None:
    cluster = test_pool.submit(
        {
            "executable": "/bin/echo",
            "arguments": text,
            "requirements": f'TARGET.GLIDEIN_ResourceName == "{resource}"',
        }
    )
    test_pool.wait_for_job(cluster, timeout=90)
    assert test_pool.job_output(cluster) == f"{text}\n"


@contextlib.contextmanager
def removed_afterwards(*names: str) -> Iterator[None]:
    try:
        yield
    finally:
        for name in names:
            podman("rm", "--force", "--time", "0", name)


def test_the_service_starts_a_pilot_that_joins_runs_a_job_and_drains_on_stop(
    test_pool: pool.Pool, launcher: tuple[str, ...], tmp_path: Path
) -> None:
    """ospool-ep.service as written: the pilot's slot appears, a job runs and
    its output comes back; ExecStop stops it within TimeoutStopSec and the
    unit's main process (the engine client) exits 0; the container is gone."""
    site = Site(test_pool, tmp_path, test_pool.mint_token())
    site.config()
    unit = Unit.load(SERVICE)
    service = Service(unit, Relocation(launcher, site.etc), tmp_path / "pilot.log")
    printed = subprocess.run(
        [*launcher, "launch", "--config", str(site.etc / "ospool-ep.cfg"), "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    print(f"\n{printed.stdout}")
    with removed_afterwards(CONTAINER):
        started = time.monotonic()
        service.start()
        ads = wait_for_slot(test_pool, site.resource, service)
        TIMINGS["start_to_slot"] = round(time.monotonic() - started, 2)
        assert ads[0]["GLIDEIN_Site"] == "LaunchTestSite"
        assert ads[0]["Cpus"] == 1
        _check_what_podman_applied(CONTAINER, site)
        run_job(test_pool, site.resource, "launched by systemd's lines")
        code, seconds = service.stop()
        TIMINGS["exec_stop"] = seconds
        assert code == 0, service.output()[-3000:]
        assert seconds < unit.seconds("TimeoutStopSec")
        assert service.main_exit(timeout=30) == 0, service.output()[-3000:]
        assert podman("container", "exists", CONTAINER).returncode == 1
        assert not list(site.scratch.glob("ospool-ep-*")), "the pilot left its directory"
        assert f"ospool-ep launch: starting {CONTAINER} with podman" in service.output()


def _check_what_podman_applied(name: str, site: Site) -> None:
    """The options as podman recorded them for the running container."""
    inspected = json.loads(podman("container", "inspect", name).stdout)[0]
    host = inspected["HostConfig"]
    assert inspected["Config"]["User"] == "1000:1000"
    assert host["Memory"] == 1100 * 1024 * 1024
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 16384
    assert host["CapDrop"] and not host.get("CapAdd")
    assert not host.get("Privileged")
    assert "seccomp=unconfined" in host["SecurityOpt"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert any(d["PathOnHost"] == "/dev/fuse" for d in host["Devices"])
    mounts = {m["Destination"]: m for m in inspected["Mounts"]}
    token = mounts["/etc/condor/tokens-orig.d/flock.opensciencegrid.org"]
    assert token["Source"] == str(site.token_file) and token["RW"] is False
    assert mounts["/pilot"]["Source"] == str(site.scratch)
    env = {e.split("=", 1)[0] for e in inspected["Config"]["Env"]}
    assert {"GLIDEIN_Site", "CONDOR_HOST", "SHUTDOWN_GRACE_SECONDS"} <= env
    for host_key in ("TOKEN_LOCATION", "WORKER_TEMP_DIR", "CONTAINER_EXTRA_ARGS", "TOKEN"):
        assert host_key not in env


def test_two_template_instances_run_side_by_side_with_their_own_names(
    test_pool: pool.Pool, launcher: tuple[str, ...], tmp_path: Path
) -> None:
    """ospool-ep@a and ospool-ep@b: /etc/osg/ospool-ep.d/{a,b}.cfg, containers
    ospool-ep-a and ospool-ep-b, one shared scratch directory (each pilot
    locks its own subdirectory), two distinct slots; both stop cleanly."""
    site = Site(test_pool, tmp_path, test_pool.mint_token())
    services = {}
    for instance in ("a", "b"):
        site.config(f"ospool-ep.d/{instance}.cfg", resource=f"{site.resource}-{instance}")
        services[instance] = Service(
            Unit.load(TEMPLATE, instance=instance),
            Relocation(launcher, site.etc),
            tmp_path / f"{instance}.log",
        )
    with removed_afterwards("ospool-ep-a", "ospool-ep-b"):
        for service in services.values():
            service.start()
        names = set()
        for instance, service in services.items():
            (ad,) = wait_for_slot(test_pool, f"{site.resource}-{instance}", service)
            names.add(ad["Name"])
            running = podman(
                "container", "inspect", "--format", "{{.State.Running}}", f"ospool-ep-{instance}"
            )
            assert running.stdout.strip() == "true"
        assert len(names) == 2
        assert len(list(site.scratch.glob("ospool-ep-*"))) == 2
        run_job(test_pool, f"{site.resource}-b", "instance b")
        for service in services.values():
            code, seconds = service.stop()
            assert code == 0 and seconds < service.unit.seconds("TimeoutStopSec")
            assert service.main_exit(timeout=30) == 0, service.output()[-3000:]
        assert not list(site.scratch.glob("ospool-ep-*"))


def test_a_configuration_error_inside_the_container_ends_the_unit_with_78(
    test_pool: pool.Pool, launcher: tuple[str, ...], tmp_path: Path
) -> None:
    """What only the pilot judges (the token's content: the launcher checks the
    file, never reads it) passes the launcher; the pilot exits 78, podman
    passes that on as the unit's status, and it is the one status systemd
    does not restart (RestartPreventExitStatus=78)."""
    site = Site(test_pool, tmp_path, "this-is-not-a-jwt")
    site.config()
    unit = Unit.load(SERVICE)
    service = Service(unit, Relocation(launcher, site.etc), tmp_path / "bad.log")
    with removed_afterwards(CONTAINER):
        service.start()
        code = service.main_exit(timeout=120)
        assert code == CONFIG_ERROR, service.output()[-3000:]
        assert "malformed token" in service.output()
        assert "this-is-not-a-jwt" not in service.output()
        assert not unit.restarts_after(code)
        assert podman("container", "exists", CONTAINER).returncode == 1  # --rm


# ---------------------------------------------------------------------------
# Rootless podman, as an unprivileged user

ROOTLESS_USER = "ospool-ep-rootless"


def _rootless_user() -> pwd.struct_passwd:
    """The test's unprivileged user, made (with subordinate ids) when missing."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("newuidmap"):
        pytest.skip("needs root, useradd and newuidmap to make an unprivileged podman user")
    try:
        return pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", ROOTLESS_USER], check=True
        )
        return pwd.getpwnam(ROOTLESS_USER)


def _as_user(
    user: pwd.struct_passwd, argv: Sequence[str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    runtime = Path(f"/tmp/ospool-ep-xdg-{user.pw_uid}")  # the user's XDG_RUNTIME_DIR
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.chown(runtime, user.pw_uid, user.pw_gid)
    env = [
        f"HOME={user.pw_dir}",
        f"XDG_RUNTIME_DIR={runtime}",
        f"CONTAINERS_CONF={os.environ.get('CONTAINERS_CONF', pool.CONTAINERS_CONF)}",
        "PATH=/usr/bin:/bin",
    ]
    return subprocess.run(
        ["runuser", "-u", user.pw_name, "--", "env", "-i", *env, *argv],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


def test_rootless_podman_as_an_unprivileged_user(test_pool: pool.Pool) -> None:
    """The launcher run by a user without privileges, with the system python3
    and the packaged modules only: rootless podman maps the container's uid
    1000 to the user's 1000th subordinate uid, which the launcher checks the
    token and scratch against. These hosts cannot give rootless containers a
    network of their own (slirp4netns: /dev/net/tun denied), so the pilot uses
    the host's network (CONTAINER_EXTRA_ARGS=--network host) and reaches the
    central manager by its address."""
    user = _rootless_user()
    if _as_user(user, ["podman", "image", "exists", test_pool.image], timeout=120).returncode:
        save = subprocess.Popen(["podman", "save", test_pool.image], stdout=subprocess.PIPE)
        loaded = _as_user(user, ["podman", "load"], stdin=save.stdout, timeout=600)
        save.wait(timeout=600)
        assert loaded.returncode == 0, loaded.stderr
    info = _as_user(
        user, ["podman", "info", "--format", "{{.Host.Security.Rootless}}"], timeout=120
    )
    assert info.stdout.strip() == "true", info.stderr
    subuid = next(
        int(line.split(":")[1])
        for line in Path("/etc/subuid").read_text().splitlines()
        if line.split(":")[0] in (user.pw_name, str(user.pw_uid))
    )
    mapped = subuid + 999
    root = Path(tempfile.mkdtemp(prefix="ospool-ep-rootless-"))
    try:
        root.chmod(0o755)
        tree = install_tree(root / "pkg")
        token = root / "ospool-ep.tkn"
        token.write_text(test_pool.mint_token() + "\n")
        scratch = root / "scratch"
        scratch.mkdir()
        cfg = root / "ospool-ep.cfg"
        resource = f"Rootless {uuid.uuid4().hex[:8]}"
        cfg.write_text(
            f"GLIDEIN_Site=LaunchTestSite\nGLIDEIN_ResourceName={resource}\n"
            f"CONDOR_HOST={test_pool.cm_ip}\nTOKEN_LOCATION={token}\nWORKER_TEMP_DIR={scratch}\n"
            f"CONTAINER_ENGINE=podman\nIMAGE={test_pool.image}\nPULL_POLICY=never\n"
            "NUM_CPUS=1\nMEMORY=1000\nMIN_DISK_GB=0\nSHUTDOWN_GRACE_SECONDS=15\n"
            "CONTAINER_NOFILE_LIMIT=0\nCONTAINER_PIDS_LIMIT=0\n"
            "CONTAINER_EXTRA_ARGS=--network host --no-healthcheck"
            f" --label {pool.LABEL}={test_pool.id}\n"
        )
        cfg.chmod(0o644)
        launcher = [
            "/usr/bin/python3",
            "-I",
            str(tree / "usr/bin/ospool-ep"),
            "launch",
            "--config",
            str(cfg),
        ]
        token.chmod(0o600)
        refused = _as_user(user, [*launcher, "--print"], timeout=60)
        assert refused.returncode == CONFIG_ERROR
        assert f"podman unshare chown 1000:1000 {token}" in refused.stderr
        assert f"host uid {mapped}" in refused.stderr
        os.chown(token, mapped, mapped)  # what `podman unshare chown 1000:1000` does
        os.chown(scratch, mapped, mapped)
        printed = _as_user(user, [*launcher, "--print"], timeout=60)
        assert printed.returncode == 0, printed.stderr
        log = (root / "pilot.log").open("wb")
        runtime = f"/tmp/ospool-ep-xdg-{user.pw_uid}"
        main = subprocess.Popen(
            [
                "runuser",
                "-u",
                user.pw_name,
                "--",
                "env",
                "-i",
                f"HOME={user.pw_dir}",
                f"XDG_RUNTIME_DIR={runtime}",
                f"CONTAINERS_CONF={os.environ.get('CONTAINERS_CONF', pool.CONTAINERS_CONF)}",
                "PATH=/usr/bin:/bin",
                *launcher,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        service = Service(
            Unit.load(SERVICE), Relocation(tuple(launcher[:3]), root), root / "pilot.log", main
        )
        try:
            wait_for_slot(test_pool, resource, service, timeout=120)
            run_job(test_pool, resource, "rootless")
            stop = _as_user(user, [*launcher, "--stop"], timeout=120)
            assert stop.returncode == 0, stop.stdout + stop.stderr
            assert main.wait(timeout=60) == 0, service.output()[-3000:]
        finally:
            if main.poll() is None:
                _as_user(user, ["podman", "rm", "--force", "--time", "0", CONTAINER], timeout=60)
                main.kill()
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _end_user_processes(user)


def _end_user_processes(user: pwd.struct_passwd) -> None:
    """Rootless podman leaves a pause process holding the user's namespace; the
    user exists only for this test, so every process of it is this test's."""
    listed = subprocess.run(
        ["ps", "-o", "pid=", "-u", str(user.pw_uid)], capture_output=True, text=True, check=False
    )
    for pid in (int(word) for word in listed.stdout.split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
