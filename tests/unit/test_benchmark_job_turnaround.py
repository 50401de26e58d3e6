"""The pure parts of benchmarks/job_turnaround.py: its event-log reading, the figures
it computes from them, its arguments and its output lines (the pool run itself is
the benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
from paths import FIXTURES, REPO

LOG = (FIXTURES / "userlog" / "three-sleep-jobs.log").read_text()
"""A real HTCondor 25 event log: three `sleep 1` jobs through an ospool-ep pilot,
written with the benchmark's DEFAULT_USERLOG_FORMAT_OPTIONS (cluster 1)."""


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "job_turnaround", REPO / "benchmarks" / "job_turnaround.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


def test_every_event_of_a_real_log_is_read_with_its_job_and_sub_second_time() -> None:
    events = bench.parse_user_log(LOG)
    assert [(e.code, e.proc) for e in events if e.code == bench.SUBMIT] == [(0, 0), (0, 1), (0, 2)]
    assert {e.cluster for e in events} == {1}
    first = events[0]
    # 2026-12-01 16:31:26.449Z
    assert first.seconds == pytest.approx(1796142686.449)
    terminated = [e for e in events if e.code == bench.TERMINATED]
    assert [(e.proc, e.exit_code) for e in terminated] == [(1, 0), (0, 0), (2, 0)]
    assert all(e.exit_code is None for e in events if e.code != bench.TERMINATED)


def test_whole_second_local_timestamps_are_read_too() -> None:
    """HTCondor's default format (ISO date, no fraction, no Z) must not be skipped."""
    text = "000 (007.003.000) 2026-12-01 16:31:26 Job submitted from host: <1.2.3.4:9618>\n...\n"
    (event,) = bench.parse_user_log(text)
    assert (event.code, event.cluster, event.proc) == (0, 7, 3)
    assert event.seconds == pytest.approx(1796142686.0)


def test_the_figures_run_from_the_first_submit_to_the_last_termination() -> None:
    figures = bench.turnaround(bench.parse_user_log(LOG), 3)
    # First submit 16:31:26.449, last termination 16:31:31.796.
    assert figures.makespan == pytest.approx(5.347)
    assert figures.per_job == pytest.approx([29.645 - 26.449, 29.643 - 26.449, 31.796 - 26.450])
    # Each job's first start is its input transfer (event 040), not its execute event.
    assert figures.in_slot == pytest.approx([29.645 - 27.555, 29.643 - 27.548, 31.796 - 29.687])


def test_a_job_that_exited_non_zero_gives_no_figure() -> None:
    failed = LOG.replace(
        "005 (001.002.000) 2026-12-01 16:31:31.796Z Job terminated.\n"
        "\t(1) Normal termination (return value 0)",
        "005 (001.002.000) 2026-12-01 16:31:31.796Z Job terminated.\n"
        "\t(1) Normal termination (return value 3)",
    )
    assert failed != LOG
    with pytest.raises(bench.BenchError, match=r"no normal exit with code 0: procs \[2\]"):
        bench.turnaround(bench.parse_user_log(failed), 3)


def test_jobs_missing_from_the_log_are_named() -> None:
    """Fewer jobs in the log than were submitted (a lost or still running job) is an error."""
    with pytest.raises(bench.BenchError, match=r"not submitted: procs \[3, 4\]"):
        bench.turnaround(bench.parse_user_log(LOG), 5)
    unfinished = [
        e for e in bench.parse_user_log(LOG) if not (e.proc == 2 and e.code == bench.TERMINATED)
    ]
    with pytest.raises(bench.BenchError, match=r"not terminated: procs \[2\]"):
        bench.turnaround(unfinished, 3)


def test_the_defaults_are_spec_14s_fifty_jobs_on_two_cpus_with_the_proc_unmask() -> None:
    args = bench.parse_args([])
    assert (args.jobs, args.job_seconds, args.cpus, args.rounds) == (50, 1, 2, 1)
    assert args.security_opt == ["unmask=/proc/*"]
    assert args.pilot_env == {}
    assert args.require_contained is False


def test_extra_pilot_environment_and_security_options_are_taken_as_given() -> None:
    args = bench.parse_args(
        [
            "--pilot-env",
            "JOB_CONTAINMENT=required",
            "--pilot-env",
            "SINGULARITY_BIND_EXTRA=/a:/b,/c",
            "--security-opt",
            "unmask=/proc/*",
            "--security-opt",
            "label=disable",
        ]
    )
    assert args.pilot_env == {"JOB_CONTAINMENT": "required", "SINGULARITY_BIND_EXTRA": "/a:/b,/c"}
    assert args.security_opt == ["unmask=/proc/*", "label=disable"]


@pytest.mark.parametrize("bad", ["JOB_CONTAINMENT", "=required", "1X=y", "A B=c"])
def test_a_malformed_pilot_env_is_refused_naming_it(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(["--pilot-env", bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--pilot-env {bad!r}: expected NAME=VALUE" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--jobs", "--cpus", "--rounds", "--job-seconds"])
def test_counts_below_one_are_refused(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args([option, "0"])
    assert f"{option} must be at least 1" in capsys.readouterr().err


def test_the_ratio_is_the_product_over_the_bare_startd_of_the_median_rounds() -> None:
    def run(makespan: float, per_job: float, in_slot: float) -> object:
        return bench.Turnaround(makespan=makespan, per_job=[per_job], in_slot=[in_slot])

    values = bench.figures(
        {
            bench.PRODUCT: [run(60.0, 30.0, 2.0), run(66.0, 32.0, 2.2), run(90.0, 40.0, 2.4)],
            bench.REFERENCE: [run(50.0, 25.0, 1.1), run(55.0, 27.0, 1.2), run(40.0, 20.0, 1.0)],
        },
        [True, True, False],
        50,
    )
    assert values["50 jobs, ospool-ep run: submit -> all completed (s)"] == 66.0
    assert values["50 jobs, bare condor_startd: submit -> all completed (s)"] == 50.0
    assert values["job turnaround ratio (target <= 1.3)"] == pytest.approx(66.0 / 50.0)
    assert values["per job, ospool-ep run: started -> completed, median (s)"] == 2.2
    assert values["ospool-ep slot: OSPOOL_EP_JOBS_CONTAINED (each round)"] == "True, True, False"
    assert values["rounds"] == 3


def test_figures_print_as_the_other_benchmarks_do() -> None:
    lines = bench.format_figures({"a float": 1.234, "a count": 3, "a word": "undefined"})
    assert lines == [f"{'a float':80s} 1.23", f"{'a count':80s} 3", f"{'a word':80s} undefined"]
