"""Files the supervisor rewrites while a job could touch them are replaced, never opened."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from ospool_ep.pilot import atomic, render


def test_a_fifo_at_the_name_is_replaced_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no reader blocks any open for writing; replacing by rename never opens it."""
    target = tmp_path / "95-drain.conf"
    os.mkfifo(target)
    done = threading.Event()

    def write() -> None:
        atomic.replace_file(target, "START = False\n")
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert done.is_set(), "replace_file blocked on a FIFO"
    assert stat.S_ISREG(target.lstat().st_mode)
    assert target.read_text() == "START = False\n"


def test_a_symlink_at_the_name_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    target = tmp_path / "state"
    target.symlink_to(victim)
    atomic.replace_file(target, "new\n", mode=0o600)
    assert victim.read_text() == "keep me\n"
    assert not target.is_symlink()
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    atomic.replace_file(tmp_path / "a", "1")
    atomic.replace_file(tmp_path / "a", "2")
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_a_directory_swapped_for_a_symlink_is_replaced_and_its_target_kept(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("x")
    config_d = tmp_path / "config.d"
    config_d.symlink_to(elsewhere)
    atomic.replace_directory(config_d, {"10-a.conf": "A = 1\n"})
    assert not config_d.is_symlink()
    assert sorted(p.name for p in config_d.iterdir()) == ["10-a.conf"]
    assert (elsewhere / "precious").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.d", "elsewhere"]


def test_the_drain_drop_in_replaces_a_fifo_left_in_config_d(tmp_path: Path) -> None:
    """SPEC 7.5: a FIFO in place of the drain drop-in must not freeze the drain."""
    render.write_tree({f"{render.CONFIG_SUBDIR}/10-x.conf": "X = 1\n"}, output=tmp_path)
    drain = tmp_path / render.DRAIN_FILE
    os.mkfifo(drain)
    render.write_tree(
        {f"{render.CONFIG_SUBDIR}/10-x.conf": "X = 2\n", "condor_config": "Y = 1\n"},
        output=tmp_path,
    )
    assert not drain.exists()  # config.d/ is swapped whole: the FIFO went with the old one
    assert (tmp_path / render.CONFIG_SUBDIR / "10-x.conf").read_text() == "X = 2\n"
