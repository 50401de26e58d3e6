"""Habits of OSG's container users the pilot's files serve (SPEC 3, 4.2).

- Logs for a post-mortem: an ended pilot's daemon logs stay under
  ``PILOT_DIR/log/<pilot id>/``, as upstream keeps /pilot/log; bounded, no secrets.
- The live configuration is named beside the state file, where the image's
  /etc/condor/condor_config looks: HTCondor's real parser (the PyPI bindings)
  reads it as the image's tools would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ospool_ep.pilot import prepare
from ospool_ep.pilot import workdir as pilotdir


def pilot_with_logs(root: Path, pilot_id: str) -> pilotdir.PilotDirectory:
    directory = pilotdir.create(root=root, pilot_id=pilot_id)
    log = directory.path / "log"
    log.mkdir()
    (log / "MasterLog").write_text("master started\n")
    (log / "StartLog").write_text("startd started\n")
    (log / ".startd_claim_id.slot1").write_text("<1.2.3.4:9618>#123#1#...\n")
    (log / ".master_address").write_text("<1.2.3.4:9618>\n")
    (directory.path / "execute").mkdir()
    (directory.path / "execute" / "job-output").write_text("job data\n")
    return directory


def test_an_ended_pilots_daemon_logs_stay_under_pilot_dir_log_by_its_id(tmp_path: Path) -> None:
    pilot_with_logs(tmp_path, "abc").remove()

    kept = tmp_path / "log" / "abc"
    assert not (tmp_path / "ospool-ep-abc").exists()
    assert sorted(p.name for p in kept.iterdir()) == ["MasterLog", "StartLog"]
    assert (kept / "MasterLog").read_text() == "master started\n"


def test_kept_logs_hold_no_claim_id_or_address_file_and_no_job_data(tmp_path: Path) -> None:
    """HTCondor's dot files in LOG name capabilities (a claim id is one): never kept."""
    pilot_with_logs(tmp_path, "abc").remove()
    kept = list((tmp_path / "log").rglob("*"))
    assert not [p for p in kept if p.name.startswith(".") or p.name == "job-output"]


def test_only_the_newest_pilots_logs_are_kept(tmp_path: Path) -> None:
    for n in range(pilotdir.KEEP_LOGS + 2):
        pilot_with_logs(tmp_path, f"p{n}").remove()
        os.utime(tmp_path / "log" / f"p{n}", (1000.0 + n, 1000.0 + n))
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert names == [f"p{n}" for n in range(2, pilotdir.KEEP_LOGS + 2)]


def test_a_dead_pilots_logs_are_kept_when_the_next_pilot_collects_it(tmp_path: Path) -> None:
    """A killed pilot (OOM, docker kill) is the post-mortem that matters most."""
    dead = pilot_with_logs(tmp_path, "dead")
    os.close(dead.lock_fd)  # as if its process died

    assert pilotdir.collect_stale(root=tmp_path).removed == (dead.path,)
    assert (tmp_path / "log" / "dead" / "StartLog").exists()


def test_a_log_directory_that_is_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "pilot"
    root.mkdir()
    (root / "log").symlink_to(elsewhere)

    removal = pilot_with_logs(root, "abc").remove()

    assert removal.complete
    assert list(elsewhere.iterdir()) == []


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(self, level: str, msg: str, /, **fields: object) -> None:
        del fields
        self.events.append((level, msg))


def htcondor_param(config: Path, *names: str) -> dict[str, str | None]:
    """Values as HTCondor's own parser reads them with CONDOR_CONFIG=config."""
    reader = (
        "import json, sys, htcondor2\n"
        "print(json.dumps({k: htcondor2.param.get(k) for k in sys.argv[1:]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", reader, *names],
        env={**os.environ, "CONDOR_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    values: dict[str, str | None] = json.loads(result.stdout)
    return values


def image_root_config(tmp_path: Path, published: Path) -> Path:
    """The image's /etc/condor/condor_config (Dockerfile), pointed at ``published``."""
    debian = tmp_path / "condor_config.debian"
    debian.write_text("LOCAL_DIR = /var\nDEBIAN_DEFAULTS = true\n")
    root = tmp_path / "condor_config"
    root.write_text(
        f"include ifexist : {published}\n"
        f"if ! defined {prepare.LIVE_CONFIG_MARK}\n"
        f"  include : {debian}\n"
        "endif\n"
    )
    return root


def live_pilot_config(tmp_path: Path) -> Path:
    config_dir = tmp_path / "pilot" / "config"
    (config_dir / "config.d").mkdir(parents=True)
    (config_dir / "condor_config").write_text(
        f"LOCAL_DIR = {tmp_path}/pilot\nLOCAL_CONFIG_DIR = {config_dir}/config.d\n"
    )
    (config_dir / "config.d" / "10-daemons.conf").write_text("DAEMON_LIST = MASTER, STARTD\n")
    return config_dir / "condor_config"


def test_the_live_config_is_published_beside_the_state_file_and_htcondor_reads_it(
    tmp_path: Path,
) -> None:
    environ = {"OSPOOL_EP_STATE_FILE": str(tmp_path / "state" / "state.json")}
    live = live_pilot_config(tmp_path)
    recorder = Recorder()

    prepare.publish_live_config(live, environ=environ, emitter=recorder)

    published = tmp_path / "state" / prepare.LIVE_CONFIG_NAME
    assert recorder.events == []
    values = htcondor_param(
        image_root_config(tmp_path, published), "LOCAL_DIR", "DAEMON_LIST", "DEBIAN_DEFAULTS"
    )
    assert values == {
        "LOCAL_DIR": f"{tmp_path}/pilot",
        "DAEMON_LIST": "MASTER, STARTD",
        "DEBIAN_DEFAULTS": None,
    }


def test_with_no_pilot_debians_config_is_read_and_an_ended_ones_is_no_error(
    tmp_path: Path,
) -> None:
    published = tmp_path / "state" / prepare.LIVE_CONFIG_NAME
    root = image_root_config(tmp_path, published)
    assert htcondor_param(root, "LOCAL_DIR")["LOCAL_DIR"] == "/var"

    published.parent.mkdir()
    published.write_text(prepare.live_config_text(tmp_path / "gone" / "condor_config"))
    values = htcondor_param(root, "LOCAL_DIR", prepare.LIVE_CONFIG_MARK)
    assert values["LOCAL_DIR"] != f"{tmp_path}/gone"


def test_a_state_directory_that_is_a_symlink_gets_no_live_config_but_a_warning(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").symlink_to(elsewhere)
    environ = {"OSPOOL_EP_STATE_FILE": str(tmp_path / "state" / "state.json")}
    recorder = Recorder()

    prepare.publish_live_config(live_pilot_config(tmp_path), environ=environ, emitter=recorder)

    assert list(elsewhere.iterdir()) == []
    ((level, message),) = recorder.events
    assert level == "warning"
    assert "CONDOR_CONFIG=" in message


def test_a_home_that_is_missing_or_not_writable_is_not_a_home(tmp_path: Path) -> None:
    """Under docker a forced uid gets HOME=/; the pilot then gives its daemons its own directory."""
    assert prepare.writable_home(str(tmp_path))
    assert not prepare.writable_home(None)
    assert not prepare.writable_home("")
    assert not prepare.writable_home(str(tmp_path / "absent"))
    plain = tmp_path / "file"
    plain.write_text("")
    assert not prepare.writable_home(str(plain))
