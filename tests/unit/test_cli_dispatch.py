"""Any command that is not a subcommand runs as given, as in any image (SPEC 3).

Through the installed console script, as ``docker run IMAGE /bin/bash -c ...``
runs it: the image's ENTRYPOINT is ``ospool-ep``, so what a site or OSG's CI
puts after the image name arrives here as argv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from venv_tools import ospool_ep_command

from ospool_ep import cli


def ospool_ep(*argv: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    if path is not None:
        environ["PATH"] = path
    return subprocess.run(
        [*ospool_ep_command(), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def test_a_program_given_by_path_runs_with_its_arguments_and_its_exit_status() -> None:
    result = ospool_ep("/bin/sh", "-c", 'echo "hi $0"; exit 7')
    assert result.returncode == 7
    assert result.stdout == "hi /bin/sh\n"


def test_the_program_replaces_the_entrypoint_process_so_it_gets_the_signals(
    tmp_path: Path,
) -> None:
    """exec, not a child: the program has the entry point's pid (PID 1 in a container)."""
    script = tmp_path / "pid.sh"
    script.write_text('#!/bin/sh\necho "$$"\n')
    script.chmod(0o755)
    process = subprocess.Popen(
        [*ospool_ep_command(), str(script)], stdout=subprocess.PIPE, text=True
    )
    out, _ = process.communicate(timeout=60)
    assert out.strip() == str(process.pid)


def test_a_program_named_on_path_runs_with_argv0_as_given(tmp_path: Path) -> None:
    tool = tmp_path / "condor_fake_tool"
    tool.write_text('#!/bin/sh\necho "$0 $*"\n')
    tool.chmod(0o755)
    result = ospool_ep("condor_fake_tool", "-a", "b", path=f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["-a", "b"]
    assert Path(result.stdout.split()[0]).name == "condor_fake_tool"


def test_a_mistyped_subcommand_that_is_no_program_is_a_usage_error_with_a_did_you_mean() -> None:
    result = ospool_ep("chekc")
    assert result.returncode == 2
    assert "did you mean 'check'?" in result.stderr
    assert "usage: ospool-ep" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_word_with_no_close_subcommand_is_a_usage_error_naming_it() -> None:
    result = ospool_ep("no-such-program-xyz")
    assert result.returncode == 2
    assert "'no-such-program-xyz' is neither a command" in result.stderr
    assert "did you mean" not in result.stderr


def test_a_missing_path_exits_127_and_a_non_executable_one_126(tmp_path: Path) -> None:
    plain = tmp_path / "data.txt"
    plain.write_text("not a program\n")
    missing = ospool_ep(str(tmp_path / "absent"))
    assert missing.returncode == cli.NOT_FOUND
    assert "no such file" in missing.stderr
    denied = ospool_ep(str(plain))
    assert denied.returncode == cli.NOT_EXECUTABLE
    assert "cannot run it" in denied.stderr


@pytest.mark.parametrize("argv", [("--help",), ("version", "--help"), ("render", "--help")])
def test_help_still_belongs_to_ospool_ep(argv: tuple[str, ...]) -> None:
    result = ospool_ep(*argv)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ospool-ep")


def test_a_bad_option_of_a_subcommand_is_still_argparse_usage_error() -> None:
    result = ospool_ep("render")
    assert result.returncode == 2
    assert "--output" in result.stderr


def test_a_subcommand_wins_over_a_program_of_the_same_name_on_path(tmp_path: Path) -> None:
    impostor = tmp_path / "version"
    impostor.write_text("#!/bin/sh\necho impostor\n")
    impostor.chmod(0o755)
    result = ospool_ep("version", path=f"{tmp_path}:{os.environ.get('PATH', '')}")
    assert result.returncode == 0
    assert result.stdout.startswith("ospool-ep ")


def test_the_subcommand_list_is_the_parsers() -> None:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    assert set(cli.SUBCOMMANDS) == set(commands.choices or ())


def test_called_with_an_argv_a_program_runs_as_a_child_and_this_process_survives() -> None:
    assert cli.main([sys.executable, "-c", "raise SystemExit(5)"]) == 5
