"""``ospool-ep launch``: the command built for docker and podman, and the host checks (SPEC 3, 11).

The command is a pure function of the config and a few host facts, so each
option combination is checked for both engines without either; where the
docker or podman client is installed, the exact argv is also put through its
option parser (no daemon needed for that). The host checks (token readable
by the container's uid 1000, scratch writable, CVMFS, GPUs) run against real
files made here. Running the command for real: ``tests/e2e/test_launch.py``.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ospool_ep import cli
from ospool_ep.findings import Finding
from ospool_ep.host import checks as launch_host
from ospool_ep.host import command as lc
from ospool_ep.host import config as lcfg
from ospool_ep.host import launch

ENGINES = ("docker", "podman")
BASE = "GLIDEIN_Site=TestSite\nGLIDEIN_ResourceName=Test Resource\nIMAGE=example.org/ospool-ep:1\n"

PROC_UNMASK = {"docker": "systempaths=unconfined", "podman": "unmask=/proc/*"}
"""Each engine's spelling of "leave /proc unmasked" (Apptainer in the pilot needs it)."""


def security(engine: str) -> list[str]:
    return [
        "--device",
        "/dev/fuse",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        PROC_UNMASK[engine],
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
    ]


LOGGING = {
    "docker": [
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=50m",
        "--log-opt",
        "max-file=4",
    ],
    "podman": ["--log-opt", "max-size=200m"],
}


def build(
    text: str, engine: str, *, facts: lc.HostFacts | None = None, name: str = "ospool-ep-container"
) -> lc.Command:
    config = lcfg.parse_config((BASE + text).encode(), source="/etc/osg/ospool-ep.cfg")
    assert not config.failed, config.problems
    return lc.run_command(config, engine=engine, name=name, facts=facts or lc.HostFacts())


def options(argv: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(option, value)`` pairs of the argv between ``run`` and the image."""
    words = list(argv[2:-1])
    pairs = []
    while words:
        word = words.pop(0)
        if word in ("--rm",):
            pairs.append((word, ""))
        else:
            pairs.append((word, words.pop(0)))
    return pairs


def values(argv: tuple[str, ...], option: str) -> list[str]:
    return [value for opt, value in options(argv) if opt == option]


# ---------------------------------------------------------------------------
# The command: golden for the defaults, then one option at a time


@pytest.mark.parametrize("engine", ENGINES)
def test_the_default_command_in_full(engine: str) -> None:
    """A minimal file: the whole argv, option by option (a golden line)."""
    command = build("", engine)
    assert command.argv == (
        engine,
        "run",
        "--rm",
        "--name",
        "ospool-ep-container",
        "--user",
        "1000:1000",
        "--pull",
        "always",
        "--stop-timeout",
        "125",  # upstream's RPM: docker container stop -t 120; the grace + 5 s
        "--label",
        "org.ospool-ep.config=/etc/osg/ospool-ep.cfg",
        "--pids-limit",
        "16384",
        "--ulimit",
        "nofile=2048:2048",
        *LOGGING[engine],
        *security(engine),
        "-v",
        "/etc/osg/ospool-ep.tkn:/etc/condor/tokens-orig.d/flock.opensciencegrid.org:ro",
        "-e",
        "SHUTDOWN_GRACE_SECONDS=120",
        "-e",
        "GLIDEIN_Site=TestSite",
        "-e",
        "GLIDEIN_ResourceName=Test Resource",
        "example.org/ospool-ep:1",
    )
    assert command.env == {}
    assert command.stop_timeout == 125
    assert "--privileged" not in command.argv


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "PROVIDE_NVIDIA_GPU=true\nBIND_MOUNT_CVMFS=true\n",
        "CVMFSEXEC_REPOS=oasis.opensciencegrid.org\nAPPARMOR_PROFILE=unconfined\n",
    ],
)
def test_every_command_leaves_proc_unmasked_for_apptainer_and_is_never_privileged(
    engine: str, text: str
) -> None:
    """Jobs run in Apptainer inside the pilot, which mounts a fresh /proc: the
    engine's own spelling of the unmask (docker ``systempaths=unconfined``,
    podman ``unmask=/proc/*``, narrower than podman's reading of docker's
    spelling, which unmasks /sys too), once, and never ``--privileged`` or an
    added capability, whatever else the file turns on."""
    argv = build(text, engine).argv
    unmasks = [
        value
        for value in values(argv, "--security-opt")
        if value.startswith(("systempaths=", "unmask="))
    ]
    assert unmasks == [PROC_UNMASK[engine]], shlex.join(argv)
    assert "--privileged" not in argv
    assert "--cap-add" not in argv
    assert values(argv, "--cap-drop") == ["ALL"]


@pytest.mark.parametrize("engine", ENGINES)
def test_job_containment_reaches_the_pilot_and_changes_no_engine_option(engine: str) -> None:
    """JOB_CONTAINMENT is the pilot's (``-e``); the engine options stay the same for
    every value: bare jobs need nothing, and the unmask costs them nothing."""
    default = build("", engine).argv
    for value in ("required", "preferred", "none"):
        argv = build(f"JOB_CONTAINMENT={value}\n", engine).argv
        assert ("-e", f"JOB_CONTAINMENT={value}") in options(argv)
        assert [w for w in argv if w not in (f"JOB_CONTAINMENT={value}", "-e")] == [
            w for w in default if w != "-e"
        ]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        ("NUM_CPUS=4\n", [("--cpus", "4"), ("-e", "NUM_CPUS=4")], []),
        ("MEMORY=8192\n", [("--memory", "8292m"), ("-e", "MEMORY=8192")], []),
        ("MEMORY=8192\nMEMORY_OVERHEAD_MB=500\n", [("--memory", "8692m")], []),
        ("MEMORY_OVERHEAD_MB=500\n", [("-e", "MEMORY_OVERHEAD_MB=500")], [("--memory", "*")]),
        ("SHUTDOWN_GRACE_SECONDS=120\n", [("--stop-timeout", "125")], []),
        (
            "CONTAINER_PIDS_LIMIT=0\nCONTAINER_NOFILE_LIMIT=0\n",
            [],
            [("--pids-limit", "*"), ("--ulimit", "*")],
        ),
        ("CONTAINER_NOFILE_LIMIT=65536\n", [("--ulimit", "nofile=65536:65536")], []),
        ("PULL_POLICY=never\n", [("--pull", "never")], []),
        (
            "TOKEN_LOCATION=/srv/t.tkn\n",
            [("-v", "/srv/t.tkn:/etc/condor/tokens-orig.d/flock.opensciencegrid.org:ro")],
            [],
        ),
        (
            "WORKER_TEMP_DIR=/scratch\n",
            [("-v", "/scratch:/pilot")],
            [("-e", "WORKER_TEMP_DIR=/scratch")],
        ),
        (
            "EXTRA_ATTRIBUTES_FILE=/etc/x.cfg\n",
            [("-v", "/etc/x.cfg:/etc/osg/extra-attributes.cfg:ro")],
            [("-e", "EXTRA_ATTRIBUTES_FILE=/etc/x.cfg")],
        ),
        ("BIND_MOUNT_CVMFS=true\n", [("-v", "/cvmfs:/cvmfs:shared")], []),
        ("BIND_MOUNT_CVMFS=false\n", [], [("-v", "/cvmfs:/cvmfs:shared")]),
        (
            "CVMFSEXEC_REPOS=oasis.opensciencegrid.org\nCVMFS_QUOTA_LIMIT=4000\nCVMFSEXEC_CACHE_DIR=/var/cache/cvmfs\nCVMFSEXEC_LOGS_DIR=/var/log/cvmfs\nCVMFSEXEC_LOCAL_CONFIG=/etc/cvmfs/x.local\n",
            [
                ("-e", "CVMFSEXEC_REPOS=oasis.opensciencegrid.org"),
                ("-e", "CVMFS_QUOTA_LIMIT=4000"),
                ("-v", "/var/cache/cvmfs:/cvmfs-cache"),
                ("-v", "/var/log/cvmfs:/cvmfs-logs"),
                ("-v", "/etc/cvmfs/x.local:/cvmfsexec/default.local:ro"),
            ],
            [("-v", "/cvmfs:/cvmfs:shared")],
        ),
        ("APPARMOR_PROFILE=docker-ep\n", [("--security-opt", "apparmor=docker-ep")], []),
        ("CONTAINER_ENGINE=docker\nPULL_POLICY=missing\nCONTAINER_NAME=n\n", [], [("-e", "*")]),
        ("_CONDOR_STARTD_DEBUG=D_FULLDEBUG\n", [("-e", "_CONDOR_STARTD_DEBUG=D_FULLDEBUG")], []),
        (
            "GLIDEIN_Start_Extra='RequestCpus < 4'\n",
            [("-e", "GLIDEIN_Start_Extra=RequestCpus < 4")],
            [],
        ),
    ],
)
def test_each_setting_adds_its_options(
    engine: str, text: str, present: list[tuple[str, str]], absent: list[tuple[str, str]]
) -> None:
    argv = build(text, engine).argv
    pairs = options(argv)
    for pair in present:
        assert pair in pairs, f"{pair} missing from {shlex.join(argv)}"
    for option, value in absent:
        if value == "*":
            got = [v for o, v in pairs if o == option]
            if option == "-e":
                got = [v for v in got if not v.startswith(("GLIDEIN_", "SHUTDOWN_GRACE_"))]
            assert not got, f"{option} {got} in {shlex.join(argv)}"
        else:
            assert (option, value) not in pairs


def test_gpus_for_docker_and_for_podman() -> None:
    """docker: the NVIDIA toolkit's --gpus; podman: the CDI device; both the
    OpenCL vendor files when the host has them, and Apptainer's PID
    namespaces off unless the file says otherwise (upstream)."""
    facts = lc.HostFacts(opencl_vendors=True)
    docker = options(build("PROVIDE_NVIDIA_GPU=true\n", "docker", facts=facts).argv)
    podman = options(build("PROVIDE_NVIDIA_GPU=true\n", "podman", facts=facts).argv)
    assert ("--gpus", "all") in docker and ("--device", "nvidia.com/gpu=all") not in docker
    assert ("--device", "nvidia.com/gpu=all") in podman and ("--gpus", "all") not in podman
    for pairs in (docker, podman):
        assert ("-v", "/etc/OpenCL/vendors:/etc/OpenCL/vendors:ro") in pairs
        assert ("-e", "SINGULARITY_DISABLE_PID_NAMESPACES=true") in pairs
    told = options(
        build("PROVIDE_NVIDIA_GPU=yes\nSINGULARITY_DISABLE_PID_NAMESPACES=false\n", "podman").argv
    )
    assert ("-e", "SINGULARITY_DISABLE_PID_NAMESPACES=false") in told
    assert ("-e", "SINGULARITY_DISABLE_PID_NAMESPACES=true") not in told
    assert ("-v", "/etc/OpenCL/vendors:/etc/OpenCL/vendors:ro") not in told  # not on this host
    assert ("--gpus", "all") not in options(build("PROVIDE_NVIDIA_GPU=false\n", "docker").argv)


@pytest.mark.parametrize("engine", ENGINES)
def test_selinux_hosts_run_the_container_unlabelled(engine: str) -> None:
    argv = build("", engine, facts=lc.HostFacts(selinux=True)).argv
    assert ("--security-opt", "label=disable") in options(argv)
    assert ("--security-opt", "label=disable") not in options(build("", engine).argv)


def test_secrets_go_through_the_environment_never_the_command_line() -> None:
    """Webhook URLs and proxy lists may carry credentials: ``-e NAME`` only,
    the value in the engine's environment (not in ps, not in --print)."""
    command = build(
        "NOTIFY_START_URL=https://hooks.example/T0KEN-start\n"
        "NOTIFY_STOP_URL=https://hooks.example/T0KEN-stop\n"
        "CVMFS_HTTP_PROXY=http://user:pa55@squid:3128;DIRECT\n",
        "docker",
    )
    line = shlex.join(command.argv)
    for secret in ("T0KEN", "pa55"):
        assert secret not in line
    assert values(command.argv, "-e")[-3:] == [
        "NOTIFY_START_URL",
        "NOTIFY_STOP_URL",
        "CVMFS_HTTP_PROXY",
    ]
    assert command.env == {
        "NOTIFY_START_URL": "https://hooks.example/T0KEN-start",
        "NOTIFY_STOP_URL": "https://hooks.example/T0KEN-stop",
        "CVMFS_HTTP_PROXY": "http://user:pa55@squid:3128;DIRECT",
    }


def test_only_the_pilots_variables_reach_the_container() -> None:
    """Host keys and unknown keys are never ``-e``; no --env-file, ever."""
    argv = build(
        "TOKEN_LOCATION=/t\nWORKER_TEMP_DIR=/s\nPROVIDE_NVIDIA_GPU=false\nBIND_MOUNT_CVMFS=false\n"
        "CONTAINER_ENGINE=podman\nPULL_POLICY=missing\nUNKNOWN_KEY=1\nNUM_CPUS=2\n",
        "podman",
    ).argv
    names = {value.split("=", 1)[0] for value in values(argv, "-e")}
    # SHUTDOWN_GRACE_SECONDS: the host's default grace, which the pilot must know.
    assert names == {"GLIDEIN_Site", "GLIDEIN_ResourceName", "NUM_CPUS", "SHUTDOWN_GRACE_SECONDS"}
    assert "--env-file" not in argv


def test_the_engines_log_of_the_pilot_is_capped_in_size() -> None:
    """The pilot streams its daemons' logs to stdout: the engine's copy must not fill the disk.

    docker: json-file named explicitly (its journald driver refuses a size),
    at most 4 files of 50 MB; podman: max-size for k8s-file, the driver left
    as the host chose (journald has its own bounds).
    """
    docker = options(build("", "docker").argv)
    podman = options(build("", "podman").argv)
    assert [p for p in docker if p[0].startswith("--log")] == [
        ("--log-driver", "json-file"),
        ("--log-opt", "max-size=50m"),
        ("--log-opt", "max-file=4"),
    ]
    assert [p for p in podman if p[0].startswith("--log")] == [("--log-opt", "max-size=200m")]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "extra",
    ["--log-driver journald", "--log-driver=fluentd", "--log-opt tag=ep", "--log-opt=max-size=1g"],
)
def test_a_site_that_chooses_its_own_logging_gets_none_of_ours(engine: str, extra: str) -> None:
    """A log driver or option in CONTAINER_EXTRA_ARGS replaces ours: ours might not be
    valid for that driver (docker: "unknown log opt 'max-size' for journald")."""
    argv = build(f"CONTAINER_EXTRA_ARGS={extra}\n", engine).argv
    ours = [w for w in argv[: -1 - len(extra.split())] if w.startswith("--log")]
    assert ours == []
    assert argv[-1 - len(extra.split()) : -1] == tuple(extra.split())


def test_extra_args_go_just_before_the_image() -> None:
    argv = build("CONTAINER_EXTRA_ARGS=--network host --add-host cm:10.0.0.2\n", "podman").argv
    assert argv[-5:] == (
        "--network",
        "host",
        "--add-host",
        "cm:10.0.0.2",
        "example.org/ospool-ep:1",
    )


def test_the_stop_commands() -> None:
    assert lc.stop_command(engine="docker", name="ospool-ep-a", timeout=30) == (
        "docker",
        "stop",
        "-t",
        "30",
        "ospool-ep-a",
    )
    assert lc.remove_command(engine="podman", name="x") == ("podman", "rm", "--force", "x")


# ---------------------------------------------------------------------------
# The engines' own option parsers accept every combination


COMBINATIONS = [
    "",
    "NUM_CPUS=4\nMEMORY=8192\nWORKER_TEMP_DIR=/scratch\n",
    "BIND_MOUNT_CVMFS=true\nEXTRA_ATTRIBUTES_FILE=/etc/x\n",
    "CVMFSEXEC_REPOS=a.b\nCVMFSEXEC_CACHE_DIR=/c\nCVMFSEXEC_LOGS_DIR=/l\nCVMFSEXEC_LOCAL_CONFIG=/d\n",
    "PROVIDE_NVIDIA_GPU=true\nAPPARMOR_PROFILE=docker-ep\nCONTAINER_NOFILE_LIMIT=0\n",
    "NOTIFY_STOP_URL=https://h/x\nPULL_POLICY=never\nCONTAINER_PIDS_LIMIT=0\nSHUTDOWN_GRACE_SECONDS=600\n",
]


DOCKER = shutil.which(
    "docker", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/bin", "/usr/bin"])
)
"""The docker client, also where the caller's PATH leaves out /usr/local/bin (where this
machine kind has it: a client only, no engine, which is all this test needs)."""


@pytest.mark.skipif(DOCKER is None, reason="no docker client on this machine")
@pytest.mark.parametrize("text", COMBINATIONS)
def test_the_docker_client_parses_every_combination(text: str, tmp_path: Path) -> None:
    """docker parses all options before it contacts the daemon: pointed at a
    socket that does not exist, a good command fails only for the daemon."""
    command = build(text, "docker", facts=lc.HostFacts(selinux=True, opencl_vendors=True))
    assert DOCKER is not None
    env = {
        "PATH": os.pathsep.join([str(Path(DOCKER).parent), os.environ.get("PATH", "")]),
        "HOME": str(tmp_path),
        "DOCKER_HOST": f"unix://{tmp_path}/none.sock",
        **command.env,
    }
    result = subprocess.run(
        command.argv, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    for complaint in ("unknown flag", "invalid argument", "Usage:", "unknown shorthand"):
        assert complaint not in result.stderr, result.stderr
    stop = subprocess.run(
        lc.stop_command(engine="docker", name="n", timeout=30),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Usage:" not in stop.stderr and "unknown" not in stop.stderr


@pytest.mark.skipif(shutil.which("podman") is None, reason="no podman on this machine")
@pytest.mark.parametrize("text", COMBINATIONS)
def test_podman_parses_every_combination(text: str) -> None:
    """``podman create`` with the same options and an image that does not exist
    (and no pull): podman parses the options first, then fails for the image."""
    command = build(text, "podman", facts=lc.HostFacts(selinux=True, opencl_vendors=True))
    argv = ["podman", "create", *command.argv[2:-1], "localhost/ospool-ep-no-such-image:0"]
    argv[argv.index("--pull") + 1] = "never"
    result = subprocess.run(
        argv,
        env={**os.environ, **command.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ospool-ep-no-such-image" in result.stderr, result.stderr
    assert "unknown flag" not in result.stderr, result.stderr


# ---------------------------------------------------------------------------
# The host checks and the command line, in-process


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PATH with fake docker and podman (never run here), and a valid token and scratch."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for engine in ENGINES:
        (bin_dir / engine).write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / engine).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    token = tmp_path / "token"
    token.write_text("a.b.c\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if os.geteuid() == 0:
        os.chown(token, 1000, 1000)
        os.chown(scratch, 1000, 1000)
    else:
        token.chmod(0o644)
        scratch.chmod(0o777)
    token.chmod(0o600 if os.geteuid() == 0 else 0o644)
    yield tmp_path


def write_config(host: Path, text: str, *, name: str = "ospool-ep.cfg") -> Path:
    path = host / name
    path.write_text(
        BASE + f"TOKEN_LOCATION={host / 'token'}\nWORKER_TEMP_DIR={host / 'scratch'}\n" + text
    )
    return path


def run_launch(path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = launch.launch(
        config_path=str(path),
        engine=args[0] if args else None,
        print_only=True,
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown test files")


def test_print_shows_the_command_shell_quoted(host: Path) -> None:
    code, out, err = run_launch(write_config(host, "NOTIFY_STOP_URL=https://h/secret\n"), "podman")
    assert code == 0, err
    argv = shlex.split(out)
    assert argv[:5] == ["podman", "run", "--rm", "--name", "ospool-ep-container"]
    assert "GLIDEIN_ResourceName=Test Resource" in argv
    assert "secret" not in out and "secret" not in err
    assert "NOTIFY_STOP_URL: value passed in the engine's environment" in err


def test_every_problem_is_printed_and_the_exit_is_78(host: Path) -> None:
    """File errors and host errors together, like ``ospool-ep check``."""
    (host / "token").unlink()
    path = write_config(host, "NUM_CPUS=0\nMEMORY=$(free)\nWORKER_TEMP_DIR2=/x\n")
    code, out, err = run_launch(path, "docker")
    assert code == 78
    assert out == ""
    assert f"FAIL  {path}:6: NUM_CPUS: 0 is out of range" in err
    assert f"FAIL  {path}:7: MEMORY: '$(' is shell syntax" in err
    assert f"WARN  {path}:8: WORKER_TEMP_DIR2 is not a known key" in err
    assert f"FAIL  {path}:4: TOKEN_LOCATION: {host / 'token'} does not exist" in err
    assert err.startswith("ospool-ep launch: 3 FAIL")
    assert "Result: configuration errors" in err


def test_a_missing_config_file_is_78(host: Path) -> None:
    code, _, err = run_launch(host / "nope.cfg", "docker")
    assert code == 78
    assert "nope.cfg: does not exist" in err


def test_a_missing_engine_is_69(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(host / "empty"))
    code, _, err = run_launch(write_config(host, ""))
    assert code == 69
    assert "neither docker nor podman is installed" in err


def test_the_engine_comes_from_the_flag_then_the_file_then_what_is_installed(
    host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(host, "CONTAINER_ENGINE=podman\n")
    assert shlex.split(run_launch(path, "docker")[1])[0] == "docker"
    assert shlex.split(run_launch(path)[1])[0] == "podman"
    assert shlex.split(run_launch(write_config(host, "", name="b.cfg"))[1])[0] == "docker"
    (host / "bin" / "docker").write_text('#!/bin/sh\nexec /usr/bin/podman "$@"\n')
    assert shlex.split(run_launch(write_config(host, "", name="c.cfg"))[1])[0] == "podman"
    (host / "bin" / "docker").unlink()
    assert shlex.split(run_launch(write_config(host, "", name="d.cfg"))[1])[0] == "podman"
    code, _, err = run_launch(write_config(host, "", name="e.cfg"), "docker")
    assert code == 69 and "docker is not installed" in err


@needs_root
@pytest.mark.parametrize(
    ("owner", "mode", "verdict"),
    [
        ((1000, 1000), 0o600, "PASS"),
        ((0, 1000), 0o640, "PASS"),
        ((0, 0), 0o644, "WARN"),  # readable by every user of the host
        ((0, 0), 0o600, "FAIL"),
        ((1001, 1000), 0o600, "FAIL"),
        ((1000, 0), 0o000, "FAIL"),
    ],
)
def test_the_token_must_be_readable_by_uid_1000(
    host: Path, owner: tuple[int, int], mode: int, verdict: str
) -> None:
    token = host / "token"
    os.chown(token, *owner)
    token.chmod(mode)
    code, _, err = run_launch(write_config(host, ""), "docker")
    token_lines = [line for line in err.splitlines() if "TOKEN_LOCATION" in line]
    if verdict == "PASS":
        assert code == 0 and not token_lines, err
    elif verdict == "WARN":
        assert code == 0 and token_lines[0].startswith("WARN"), err
        assert "readable by every user" in token_lines[0]
    else:
        assert code == 78, err
        assert token_lines[0].startswith("FAIL")
        assert f"chown 1000:1000 {token}" in token_lines[0]


@needs_root
def test_an_empty_token_file_fails(host: Path) -> None:
    (host / "token").write_text("")
    code, _, err = run_launch(write_config(host, ""), "docker")
    assert code == 78 and "is empty" in err


@needs_root
def test_scratch_must_be_a_directory_writable_by_uid_1000(host: Path) -> None:
    scratch = host / "scratch"
    os.chown(scratch, 0, 0)
    scratch.chmod(0o755)
    code, _, err = run_launch(write_config(host, ""), "docker")
    assert code == 78 and f"WORKER_TEMP_DIR: {scratch} is not writable" in err
    scratch.chmod(0o777)
    assert run_launch(write_config(host, "", name="b.cfg"), "docker")[0] == 0
    code, _, err = run_launch(
        write_config(host, f"EXTRA_ATTRIBUTES_FILE={scratch}\n", name="c.cfg"), "docker"
    )
    assert code == 78 and "is not a file" in err


def test_no_scratch_is_a_warning(host: Path) -> None:
    path = host / "x.cfg"
    path.write_text(BASE + f"TOKEN_LOCATION={host / 'token'}\n")
    code, _, err = run_launch(path, "docker")
    assert code == 0
    assert "WARN  WORKER_TEMP_DIR: is not set" in err


def test_bind_mount_without_cvmfs_on_the_host_is_69(host: Path) -> None:
    if Path("/cvmfs").is_dir():
        pytest.skip("this host has /cvmfs")
    code, _, err = run_launch(write_config(host, "BIND_MOUNT_CVMFS=true\n"), "docker")
    assert code == 69 and "/cvmfs does not exist" in err


def test_podman_gpus_need_a_cdi_spec(host: Path) -> None:
    if any(Path(d).glob("*") for d in ("/etc/cdi", "/var/run/cdi") if Path(d).is_dir()):
        pytest.skip("this host has CDI specifications")
    code, _, err = run_launch(write_config(host, "PROVIDE_NVIDIA_GPU=true\n"), "podman")
    assert code == 69 and "nvidia-ctk cdi generate" in err


def test_a_big_grace_warns_about_the_units_stop_timeout(host: Path) -> None:
    code, out, err = run_launch(write_config(host, "SHUTDOWN_GRACE_SECONDS=600\n"), "docker")
    assert code == 0
    assert ("--stop-timeout", "605") in options(tuple(shlex.split(out)))
    assert "TimeoutStopSec=635" in err


def test_rootless_podman_checks_against_the_subordinate_uid(tmp_path: Path) -> None:
    """Rootless podman maps container uid 1000 to the user's 1000th subordinate uid."""
    subuid = tmp_path / "subuid"
    subuid.write_text("other:200000:65536\nalice:100000:65536\n1234:300000:999\n")
    assert launch_host.subordinate_base(subuid, "alice", 1001) == 100000
    assert launch_host.subordinate_base(subuid, "nobody", 1234) is None  # range too small
    assert launch_host.subordinate_base(subuid, "bob", 1002) is None
    assert launch_host.subordinate_base(tmp_path / "missing", "alice", 1001) is None


def test_rootless_mapping_as_an_unprivileged_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text(f"{os.geteuid()}:100000:65536\n")
    monkeypatch.setattr(launch_host, "SUBUID", subuid)
    monkeypatch.setattr(launch_host, "SUBGID", subuid)
    monkeypatch.setattr(launch_host.os, "geteuid", lambda: 4242)
    subuid.write_text("4242:100000:65536\n")
    ids = launch_host.id_mapping("podman")
    assert ids == launch_host.IdMapping(100999, 100999, rootless=True)
    assert launch_host.id_mapping("docker") == launch_host.IdMapping(1000, 1000)
    subuid.write_text("")
    problem = launch_host.id_mapping("podman")
    assert isinstance(problem, Finding) and "usermod --add-subuids" in problem.fix


# ---------------------------------------------------------------------------
# The command line


def test_the_full_cli_and_the_rpm_entry_point_take_the_same_options() -> None:
    """cli.py defines ``launch``'s options without importing the launcher;
    the RPM's /usr/bin/ospool-ep uses launch.add_arguments: they must agree."""
    import argparse

    def launch_options(parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {
            (*a.option_strings, str(a.default), str(a.choices))
            for a in sub.choices["launch"]._actions
        }

    host_parser = argparse.ArgumentParser()
    launch.add_arguments(host_parser.add_subparsers().add_parser("launch"))
    assert launch_options(cli.build_parser()) == launch_options(host_parser)


def test_ospool_ep_launch_runs_from_the_command_line(host: Path) -> None:
    path = write_config(host, "NUM_CPUS=2\n")
    argv = [sys.executable, "-m", "ospool_ep"]
    result = subprocess.run(
        [*argv, "launch", "--config", str(path), "--engine", "podman", "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    assert shlex.split(result.stdout)[:2] == ["podman", "run"]
    stop = subprocess.run(
        [*argv, "launch", "--config", str(path), "--engine", "podman", "--print", "--stop"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stop.stdout.splitlines() == [
        "podman stop -t 125 ospool-ep-container",
        "podman rm --force ospool-ep-container",
    ]
