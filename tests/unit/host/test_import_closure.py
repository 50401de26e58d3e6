"""``scripts/import_closure.py``: the files an entry point imports from its own packages.

The RPM ships the launcher's closure (``test_launch_rpm``); the CVMFS cron probe,
which the startd runs on a bare interpreter, must reach only the standard
library too. The tool's rules (nested packages, relative imports, what counts
as an import) are checked on small packages written here, under this
interpreter and under Python 3.9, which ``make rpm`` uses on EL9.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from host_closure import CRON_PROBE, closure_files, copy_modules, import_closure
from units import python39


@pytest.fixture(params=["this", "3.9"])
def python(request: pytest.FixtureRequest) -> str:
    """The interpreter running the tool: this one, and EL9's 3.9 (no
    ``sys.stdlib_module_names``) where the machine has one."""
    if request.param == "this":
        return sys.executable
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no python3.9 on this machine")
    return interpreter


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def closure_of(root: Path, *entries: str | Path, python: str) -> list[str]:
    done = import_closure(*entries, path=root, relative_to=root, python=python)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


def problems_of(root: Path, *entries: str | Path, python: str) -> list[str]:
    done = import_closure(*entries, path=root, relative_to=root, python=python)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    return done.stderr.splitlines()


# ---------------------------------------------------------------------------
# The boundaries of this project


def test_the_cvmfs_cron_probe_imports_only_the_standard_library(tmp_path: Path) -> None:
    """Its closure (``apptainer``, imported by the ``startup`` command, included)
    runs from a copy on an interpreter without site-packages."""
    done = import_closure(CRON_PROBE)
    assert done.returncode == 0, done.stderr
    assert "entrypoint/ospool_ep/cvmfs/probe.py" in done.stdout.splitlines()
    copy_modules(closure_files(CRON_PROBE), tmp_path)
    argv = ["cvmfs_probe", "startup", "--root", str(tmp_path), "--apptainer", "/nonexistent"]
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",  # no site-packages: only the standard library and the copy
            "-c",
            f"import runpy, sys; sys.path.insert(0, {str(tmp_path)!r}); sys.argv[:] = {argv!r}; "
            f"runpy.run_module({CRON_PROBE!r}, run_name='__main__', alter_sys=True)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert '"apptainer"' in run.stdout


# ---------------------------------------------------------------------------
# The tool's rules, on packages written here

NESTED = {
    "pkg/__init__.py": "from pkg.version import VERSION\n",
    "pkg/version.py": "VERSION = '1'\n",
    "pkg/main.py": """\
        import json
        from . import helper
        from .host.deep import leaf
        from pkg import VERSION
        """,
    "pkg/helper.py": """\
        def values():
            from .inputs import values  # runs when called: counted

            return values
        """,
    "pkg/inputs/__init__.py": "",
    "pkg/inputs/values.py": "import re\n",
    "pkg/inputs/unused.py": "",
    "pkg/host/__init__.py": "",
    "pkg/host/deep/__init__.py": "",
    "pkg/host/deep/leaf.py": "from ...inputs.values import *\nfrom .. import sibling\n",
    "pkg/host/sibling.py": "import os.path\n",
    "pkg/unused.py": "import jinja2\n",
}


def test_nested_packages_and_relative_imports_are_followed(tmp_path: Path, python: str) -> None:
    """Every module reached, at any depth, with the ``__init__.py`` of each package
    above it (Python runs them first); ``from package import x`` takes ``x`` when it
    is a module; modules nothing imports stay out."""
    root = write(tmp_path, NESTED)
    assert closure_of(root, "pkg.main", python=python) == [
        "pkg/__init__.py",
        "pkg/helper.py",
        "pkg/host/__init__.py",
        "pkg/host/deep/__init__.py",
        "pkg/host/deep/leaf.py",
        "pkg/host/sibling.py",
        "pkg/inputs/__init__.py",
        "pkg/inputs/values.py",
        "pkg/main.py",
        "pkg/version.py",
    ]


def test_importing_a_deep_module_brings_every_package_above_it(tmp_path: Path, python: str) -> None:
    root = write(tmp_path, NESTED)
    assert closure_of(root, "pkg.host.sibling", python=python) == [
        "pkg/__init__.py",
        "pkg/host/__init__.py",
        "pkg/host/sibling.py",
        "pkg/version.py",
    ]


def test_imports_under_type_checking_do_not_count_and_its_else_does(
    tmp_path: Path, python: str
) -> None:
    """``if TYPE_CHECKING:`` is false when the program runs; ``try:`` bodies may run."""
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/main.py": """\
                import typing
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    import jinja2
                    from pkg import typed_only
                else:
                    from pkg import runtime
                if typing.TYPE_CHECKING:
                    from . import typed_only
                try:
                    import pkg.optional
                except ImportError:
                    pass
                """,
            "pkg/typed_only.py": "",
            "pkg/runtime.py": "",
            "pkg/optional.py": "",
        },
    )
    assert closure_of(root, "pkg.main", python=python) == [
        "pkg/__init__.py",
        "pkg/main.py",
        "pkg/optional.py",
        "pkg/runtime.py",
    ]


def test_a_third_party_import_is_an_error_naming_the_file_and_line(
    tmp_path: Path, python: str
) -> None:
    """Inside a function too; pip is installed, but it is not the standard library."""
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/main.py": """\
                import os
                from pkg.sub import mod


                def later():
                    import pip
                """,
            "pkg/sub/__init__.py": "",
            "pkg/sub/mod.py": "from jinja2 import Template\n",
        },
    )
    problems = problems_of(root, "pkg.main", python=python)
    assert len(problems) == 2, problems
    assert f"import_closure: {root}/pkg/main.py:6: imports pip, which is neither" in problems[0]
    assert f"{root}/pkg/sub/mod.py:1: imports jinja2, which is neither" in problems[1]


def test_a_module_of_the_package_that_does_not_exist_is_an_error(
    tmp_path: Path, python: str
) -> None:
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/main.py": """\
                import pkg.gone
                from .missing import name
                from ... import beyond
                """,
        },
    )
    problems = problems_of(root, "pkg.main", python=python)
    assert [problem.split(f"{root}/pkg/main.py:")[1] for problem in problems] == [
        f"1: imports pkg.gone, which is not under {root}",
        f"2: imports pkg.missing, which is not under {root}",
        "3: a relative import beyond the top-level package",
    ]


def test_a_script_is_followed_and_not_listed_and_a_file_under_the_path_is_its_module(
    tmp_path: Path, python: str
) -> None:
    """``rpm/ospool-ep`` is such a script; a module given by its file keeps its
    package, so its relative imports resolve."""
    root = write(tmp_path, NESTED)
    script = write(tmp_path / "bin", {"tool": "import sys\nfrom pkg.host import sibling\n"})
    assert closure_of(root, script / "tool", python=python) == [
        "pkg/__init__.py",
        "pkg/host/__init__.py",
        "pkg/host/sibling.py",
        "pkg/version.py",
    ]
    assert "pkg/host/deep/leaf.py" in closure_of(
        root, root / "pkg/host/deep/leaf.py", python=python
    )


def test_an_entry_that_is_neither_a_file_nor_a_module_is_an_error(
    tmp_path: Path, python: str
) -> None:
    root = write(tmp_path, {"pkg/__init__.py": ""})
    assert problems_of(root, "pkg.nothing", python=python) == [
        f"import_closure: pkg.nothing: no such file, nor a module under {root}"
    ]


def test_a_file_this_python_cannot_parse_is_an_error_naming_the_line(tmp_path: Path) -> None:
    """EL9's 3.9 has no ``match``: ``make rpm`` there says so instead of a traceback."""
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no python3.9 on this machine")
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/main.py": "import os\n\nmatch os.name:\n    case _:\n        pass\n",
        },
    )
    (problem,) = problems_of(root, "pkg.main", python=interpreter)
    assert problem.startswith(f"import_closure: {root}/pkg/main.py:3: invalid syntax")
    assert problem.endswith("(for Python 3.9)")
