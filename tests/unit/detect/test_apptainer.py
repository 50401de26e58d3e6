"""Apptainer: a candidate counts only after a trivial container run succeeds."""

from __future__ import annotations

from pathlib import Path

from ospool_ep.detect import apptainer

RUNS = """#!/bin/sh
case "$1" in
--version) echo "apptainer version 9.9" ;;
exec) shift; while [ "${1#-}" != "$1" ]; do echo "$1" >>"$0.flags"; shift; done; exec "$1$2" ;;
esac
"""
BROKEN = """#!/bin/sh
case "$1" in
--version) echo "apptainer version 9.9" ;;
*) echo "FATAL: could not create user namespace" >&2; exit 255 ;;
esac
"""


def sandbox(tmp_path: Path) -> Path:
    """Like HTCondor's singularity_test_sandbox: /exit_37 exits 37."""
    box = tmp_path / "sandbox"
    box.mkdir()
    (box / "exit_37").write_text("#!/bin/sh\nexit 37\n")
    (box / "exit_37").chmod(0o755)
    return box


def binary(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_a_binary_that_runs_the_test_container_works(tmp_path: Path) -> None:
    good = binary(tmp_path, "apptainer", RUNS)
    tested = apptainer.find_working([good], sandbox=sandbox(tmp_path))
    assert tested.works and tested.path == good
    assert tested.version == "apptainer version 9.9"
    assert Path(good + ".flags").read_text().split() == ["--contain", "--ipc", "--pid"]


def test_without_pid_namespaces_the_test_run_has_no_pid_flag(tmp_path: Path) -> None:
    good = binary(tmp_path, "apptainer", RUNS)
    assert apptainer.find_working([good], pid_namespace=False, sandbox=sandbox(tmp_path)).works
    assert "--pid" not in Path(good + ".flags").read_text().split()


def test_a_binary_that_cannot_run_containers_is_skipped_for_the_next(tmp_path: Path) -> None:
    """The image's broken one fails its run; the next candidate (CVMFS's) is used."""
    broken = binary(tmp_path, "broken", BROKEN)
    good = binary(tmp_path, "apptainer", RUNS)
    box = sandbox(tmp_path)
    assert not apptainer.test_binary(broken, sandbox=box).works
    tested = apptainer.find_working([str(tmp_path / "absent"), broken, good], sandbox=box)
    assert tested.path == good


def test_none_working_is_reported_with_what_was_tried(tmp_path: Path) -> None:
    broken = binary(tmp_path, "broken", BROKEN)
    box = sandbox(tmp_path)
    tested = apptainer.find_working([broken], sandbox=box)
    assert not tested.works
    assert "exited 255, not 37" in tested.detail
    assert "could not create user namespace" in tested.detail
    assert apptainer.find_working([], sandbox=box).detail == (
        "no apptainer in the image or in CVMFS"
    )


def test_candidates_are_the_images_then_cvmfs(tmp_path: Path) -> None:
    binary(tmp_path, "apptainer", RUNS)
    found = apptainer.candidates(cvmfs_root="/cvmfs", search_path=str(tmp_path))
    assert found == [
        str(tmp_path / "apptainer"),
        "/cvmfs/oasis.opensciencegrid.org/mis/apptainer/current/bin/apptainer",
    ]
    assert apptainer.candidates(cvmfs_root=None, search_path=str(tmp_path / "none")) == []


def test_debians_singularity_link_is_not_tested_twice(tmp_path: Path) -> None:
    """Debian's apptainer package links ``singularity`` to ``apptainer``: one candidate."""
    binary(tmp_path, "apptainer", RUNS)
    (tmp_path / "singularity").symlink_to(tmp_path / "apptainer")
    assert apptainer.candidates(cvmfs_root=None, search_path=str(tmp_path)) == [
        str(tmp_path / "apptainer")
    ]


MASKED_PROC = """#!/bin/sh
case "$1" in
--version) echo "apptainer version 1.4.5" ;;
*) echo "WARNING: passwd file doesn't exist in container, not updating" >&2
   echo "FATAL:   container creation failed: mount hook function failure: mount proc->/proc \
error: while mounting proc: can't mount proc filesystem to /proc: operation not permitted" >&2
   echo "INFO:    Cleanup error: while unmounting a directory" >&2
   exit 255 ;;
esac
"""


def test_a_refused_proc_mount_is_reported_with_the_run_option_that_fixes_it(
    tmp_path: Path,
) -> None:
    """Apptainer 1.4.5 in a podman or docker container that masks /proc (their default):
    the report gives Apptainer's FATAL line, not the noise around it, and the fix."""
    masked = binary(tmp_path, "apptainer", MASKED_PROC)
    tested = apptainer.test_binary(masked, sandbox=sandbox(tmp_path))
    assert not tested.works
    assert "FATAL:   container creation failed" not in tested.detail  # whitespace folded
    assert "FATAL: container creation failed: mount hook function failure" in tested.detail
    assert "can't mount proc filesystem to /proc" in tested.detail
    assert "passwd file" not in tested.detail and "Cleanup error" not in tested.detail
    assert "--security-opt unmask=/proc/*" in tested.detail
    assert "--security-opt systempaths=unconfined" in tested.detail
