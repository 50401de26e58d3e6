"""procfs.descends_from: whether a signal's sender is in the supervisor's own tree (SPEC 7.5).

A fake /proc (real files, in the kernel's ``stat`` format) stands for the
process trees the supervisor meets: jobs below condor_master, a job that
detached and was reparented, an ``exec`` session whose parent is outside the
namespace (ppid 0), and senders already gone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ospool_ep.pilot.procfs import descends_from

SUPERVISOR = 1


def fake_proc(tmp_path: Path, parents: dict[int, int]) -> Path:
    for pid, ppid in parents.items():
        directory = tmp_path / str(pid)
        directory.mkdir()
        # A name with a space and a ')' as jobs may choose: the parser takes the last ')'.
        (directory / "stat").write_text(f"{pid} (a job) x) S {ppid} {pid} {pid} 0 -1\n")
    return tmp_path


TREE = {
    1: 0,  # the supervisor, PID 1 of the namespace
    10: 1,  # condor_master
    11: 10,  # condor_startd
    12: 11,  # condor_starter
    13: 12,  # a job
    14: 13,  # the job's child
    20: 1,  # a job's grandchild that detached: reparented to PID 1
    30: 0,  # `docker exec pilot bash`: its parent is outside the namespace
    31: 30,  # `ospool-ep drain` from that shell
    40: 41,  # a process whose parent has just exited
}


@pytest.mark.parametrize(
    ("sender", "below"),
    [
        pytest.param(13, True, id="a-job"),
        pytest.param(14, True, id="a-jobs-child"),
        pytest.param(10, True, id="condor_master"),
        pytest.param(20, True, id="a-detached-job"),
        pytest.param(1, True, id="the-supervisor-itself"),
        pytest.param(30, False, id="an-exec-session"),
        pytest.param(31, False, id="a-tool-run-from-an-exec-session"),
        pytest.param(99, None, id="a-sender-already-gone"),
        pytest.param(40, None, id="a-chain-broken-by-an-exit"),
    ],
)
def test_the_sender_is_placed_by_its_parent_chain(
    tmp_path: Path, sender: int, below: bool | None
) -> None:
    proc = fake_proc(tmp_path, TREE)

    assert descends_from(sender, SUPERVISOR, proc=proc) is below


def test_a_supervisor_that_is_not_pid_1_sees_outside_processes_as_outside(tmp_path: Path) -> None:
    """Under Slurm's `node` runtime the supervisor is an ordinary process: slurmstepd,
    its parent, is outside the pilot's tree; the jobs below it are inside."""
    proc = fake_proc(tmp_path, {1: 0, 500: 1, 600: 500, 601: 600, 602: 601})

    assert descends_from(500, 600, proc=proc) is False
    assert descends_from(602, 600, proc=proc) is True


def test_a_loop_in_a_changing_proc_is_not_trusted(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {7: 8, 8: 7})

    assert descends_from(7, SUPERVISOR, proc=proc) is None
