"""A site's ``/etc/osg/ospool-ep.cfg`` from OSG's RPM parses and launches unchanged (SPEC 11).

Every file of the corpus (``tests/support/fixtures/upstream_rpm``: OSG's
shipped file with typical site edits) goes through the packaged launcher,
``/usr/bin/ospool-ep launch --print``, laid out as the RPM installs it, with
a docker that is never run; the command it prints must do what OSG's
``start_ospool_ep_container.sh`` did with the same file, as far as ours
keeps it (the differences are in the README's "What differs" list).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from units import install_tree, python39
from upstream_rpm import corpus, fill, token_and_scratch

from ospool_ep.host import command as lc
from ospool_ep.host import config as lcfg
from ospool_ep.host.keys import DEFAULT_CONTAINER_NAME, KEYS_BY_NAME, Role

HOST_KEYS = ("TOKEN_LOCATION", "WORKER_TEMP_DIR", "PROVIDE_NVIDIA_GPU", "BIND_MOUNT_CVMFS")
"""Upstream's RPM keys for the host: mounts and options, never the pilot's environment."""


def test_the_corpus_has_upstreams_shipped_file_and_its_variants() -> None:
    names = {path.name for path in corpus()}
    assert {"shipped.cfg", "gpu.cfg", "cvmfs-bind.cfg", "cvmfsexec.cfg", "quoted.cfg"} <= names


def _site(tmp_path: Path, source: Path) -> tuple[Path, Path]:
    """The packaged launcher under ``tmp_path/root``, the site's file filled in; (launcher, cfg)."""
    root = install_tree(tmp_path / "root")
    token, scratch = tmp_path / "token", tmp_path / "scratch"
    token_and_scratch(token, scratch)
    cfg = root / "etc/osg/ospool-ep.cfg"
    cfg.write_text(fill(source.read_text(), token=token, scratch=scratch))
    return root / "usr/bin/ospool-ep", cfg


def _print(launcher: Path, cfg: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "docker").write_text("#!/bin/sh\nexit 99\n")  # --print never runs it
    (fake / "docker").chmod(0o755)
    return subprocess.run(
        [python39() or sys.executable, str(launcher), "launch", "--config", str(cfg), "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": f"{fake}:/usr/bin:/bin"},
    )


def _environment(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, word in enumerate(argv) if word == "-e"]
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _mounts(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == "-v"]


@pytest.mark.parametrize("source", corpus(), ids=lambda path: path.name)
def test_a_site_file_from_osgs_rpm_has_no_error(source: Path, tmp_path: Path) -> None:
    """Parsed as it is: no FAIL; each WARN names a key the pilot does not act on."""
    _, cfg = _site(tmp_path, source)
    config = lcfg.parse_config(cfg.read_bytes(), source=str(cfg))
    assert not config.failed, config.problems
    for problem in config.problems:
        assert "is accepted but not acted on by this pilot" in problem.message, problem


@pytest.mark.parametrize("source", corpus(), ids=lambda path: path.name)
def test_a_site_file_from_osgs_rpm_launches_what_osgs_script_launched(
    source: Path, tmp_path: Path
) -> None:
    """``ospool-ep launch --print`` accepts the file and the command keeps
    upstream's name, uid, token mount, limits, mounts and the 120 s stop time;
    every value set in the file reaches the pilot as written (quotes removed),
    host keys do not, and nothing is passed wholesale (no --env-file)."""
    launcher, cfg = _site(tmp_path, source)
    text = cfg.read_text()
    config = lcfg.parse_config(text.encode(), source=str(cfg))
    done = _print(launcher, cfg, tmp_path)
    if config.flag("BIND_MOUNT_CVMFS") and not Path("/cvmfs").is_dir():
        # The one thing this machine lacks: said at the key's line, exit 69.
        assert done.returncode == 69, done.stderr
        assert "BIND_MOUNT_CVMFS is true but /cvmfs does not exist" in done.stderr
        assert done.stderr.count("FAIL  ") == 1, done.stderr
        # The command it would run, built by the same (pure) function.
        name = lcfg.default_container_name(str(cfg))
        argv = list(lc.run_command(config, engine="docker", name=name, facts=lc.HostFacts()).argv)
    else:
        assert done.returncode == 0, done.stderr
        argv = shlex.split(done.stdout)
    assert argv[:5] == ["docker", "run", "--rm", "--name", DEFAULT_CONTAINER_NAME]
    assert argv[argv.index("--user") + 1] == "1000:1000"
    assert argv[argv.index("--stop-timeout") + 1] == "125"
    assert argv[argv.index("--pull") + 1] == "always"
    assert "--env-file" not in argv
    assert "--privileged" not in argv
    mounts = _mounts(argv)
    assert (
        f"{config.get('TOKEN_LOCATION')}:/etc/condor/tokens-orig.d/flock.opensciencegrid.org:ro"
        in (mounts)
    )
    scratch = config.get("WORKER_TEMP_DIR")
    assert (f"{scratch}:/pilot" in mounts) == bool(scratch)
    assert ("/cvmfs:/cvmfs:shared" in mounts) == config.flag("BIND_MOUNT_CVMFS")
    assert ("--gpus" in argv) == config.flag("PROVIDE_NVIDIA_GPU")
    if config.get("NUM_CPUS"):
        assert argv[argv.index("--cpus") + 1] == config.get("NUM_CPUS")
    if config.get("MEMORY"):
        # Upstream: --memory=$(( (MEMORY + 100) * 1024 * 1024 )); ours the same in MiB.
        assert argv[argv.index("--memory") + 1] == f"{int(config.get('MEMORY') or 0) + 100}m"
    environment = _environment(argv)
    by_name = [
        argv[i + 1] for i, word in enumerate(argv) if word == "-e" and "=" not in argv[i + 1]
    ]
    for key, entry in config.entries.items():
        role = KEYS_BY_NAME[key].role if key in KEYS_BY_NAME else Role.PILOT  # _CONDOR_*
        if role == Role.HOST:
            assert key not in environment and key not in by_name, key
        elif role == Role.PILOT_SECRET:
            assert key in by_name, key  # its value in the engine's environment
        else:
            assert environment[key] == entry.value, key
    assert not set(HOST_KEYS) & {*environment, *by_name}
    for key in ("GLIDEIN_Site", "GLIDEIN_ResourceName", "ACCEPT_JOBS_FOR_HOURS"):
        assert environment[key] == config.get(key)
    assert environment["SHUTDOWN_GRACE_SECONDS"] == "120"
