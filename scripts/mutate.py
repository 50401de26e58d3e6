#!/usr/bin/env python3
"""Mutation testing of the pure modules with mutmut; prints the score of each module.

    scripts/mutate.py                      every pure module (make mutate)
    scripts/mutate.py tokens policy        only these
    scripts/mutate.py --changed-since REF  the pure modules changed since REF (make mutate-changed)
    scripts/mutate.py --report             summarise the last run again, run nothing

mutmut names a mutant after its file's path, and the tests import ``ospool_ep``
from ``entrypoint/``: the two agree only in a ``src/`` layout. So mutmut runs in
``.mutmut/``, a stage where ``src/ospool_ep`` is a link to the package (and
``tests/`` to the tests); its results stay there between runs, and a rerun
checks only the functions that changed.

Score = killed / (mutants - accepted equivalents). A timeout counts as killed
(the mutant made a test hang: caught). Equivalent mutants (no test can tell them
apart from the original) are listed with their reasons in
``tests/mutation-equivalents.txt``, by function and mutated line, so the list
survives renumbering.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / ".mutmut"
PACKAGE = "ospool_ep"
MODULES = (
    "inputs.settings",
    "inputs.values",
    "inputs.variables",
    "inputs.classad",
    "inputs.tokens",
    "inputs.attributes",
    "inputs.policy",
    "inputs.pools",
    "findings",
    "exitcodes",
    "pilot.render",
    "pilot.dropin",
)
"""The pure modules: settings and value parsers, tokens, attributes, policy, render, findings."""
RENDER_FUNCTIONS = (
    "_checked",
    "_isotime",
    "update_interval",
    "job_environment",
    "verify_tree",
)
"""render.py's filters and its verification; its I/O plumbing is left out. (The drain
drop-in's text, retirement_until and drain_config, is in dropin.py: scored whole.)"""
TESTS = (
    "tests/unit/inputs/test_tokens.py",
    "tests/unit/inputs/test_token_boundaries.py",
    "tests/unit/inputs/test_policy.py",
    "tests/unit/inputs/test_lifetime_boundaries.py",
    "tests/unit/inputs/test_settings.py",
    "tests/unit/inputs/test_attributes.py",
    "tests/unit/pilot/test_render.py",
    "tests/unit/host/test_host_config.py",
    "tests/contract/test_defence_layers.py",
    "tests/unit/test_contracts_exitcodes.py",
    "tests/unit/inputs/test_pools_contracts.py",
    "tests/unit/inputs/test_tokens_contracts.py",
    "tests/unit/inputs/test_classad_contracts.py",
    "tests/unit/inputs/test_values_contracts.py",
    "tests/unit/inputs/test_settings_contracts.py",
    "tests/unit/inputs/test_attributes_contracts.py",
    "tests/unit/pilot/test_render_contracts.py",
)
"""The tests that exercise those modules in-process (mutmut then picks, per mutant,
only the ones that reached the mutated function)."""
ORDER_DEPENDENT = (
    "tests/unit/inputs/test_attributes.py::test_a_single_classad_expression_is_accepted_verbatim[0x1F]",
    "tests/unit/inputs/test_attributes.py::test_validated_attributes_read_back_from_htcondor_config_exactly_as_written",
)
"""Tests whose outcome depends on what ran before in the same process, which mutmut's
repeated in-process runs expose: classad2 parses ``0x1F`` as ``0`` in a fresh process
but refuses it once other expressions were parsed (the bindings' lexer keeps state)."""
EQUIVALENTS = REPO / "tests" / "mutation-equivalents.txt"
LINKS = {
    "src/ospool_ep": "../../entrypoint/ospool_ep",
    "tests": "../tests",
    "condor_config.d": "../condor_config.d",
    "systemd": "../systemd",
    "rpm": "../rpm",
    "scripts": "../scripts",
}
KILLED = {"killed", "timeout", "caught by type check"}


def stage_config() -> str:
    only = ", ".join(f'"{source_path(m)}"' for m in MODULES)
    tests = ", ".join(f'"{t}"' for t in TESTS if (REPO / t).exists())
    deselect = ", ".join(f'"--deselect", "{t}"' for t in ORDER_DEPENDENT)
    return f"""# Written by scripts/mutate.py; the stage mutmut runs in.
[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["tests/support"]
addopts = "-ra --strict-markers"
markers = ["container: needs podman", "slow: takes minutes"]

[tool.mutmut]
source_paths = ["src/{PACKAGE}"]
only_mutate = [{only}]
also_copy = [
    "src/{PACKAGE}/templates", "condor_config.d", "systemd", "rpm", "scripts", "conftest.py",
]
pytest_add_cli_args = [
    "-m", "not container and not slow", "-p", "no:cacheprovider", "-q", {deselect},
]
pytest_add_cli_args_test_selection = [{tests}]
use_git_change_detection = false
"""


# mutmut runs pytest many times in one process. pytest escapes explicit parametrize
# ids in place, so a test module imported by an earlier run yields different node
# ids (escaped twice) and mutmut's chosen tests are "not found": test modules are
# imported afresh for each run.
STAGE_CONFTEST = """\
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent / "tests"


def pytest_sessionstart(session):
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if Path(origin).name.startswith("test_") and TESTS in Path(origin).parents:
            del sys.modules[name]
"""


def prepare_stage() -> None:
    (STAGE / "src").mkdir(parents=True, exist_ok=True)
    for name, target in LINKS.items():
        link = STAGE / name
        if not link.is_symlink():
            link.symlink_to(target)
    for name, text in (("pyproject.toml", stage_config()), ("conftest.py", STAGE_CONFTEST)):
        path = STAGE / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def source_path(module: str) -> str:
    """``inputs.values`` -> ``src/ospool_ep/inputs/values.py`` (in the stage)."""
    return f"src/{PACKAGE}/{module.replace('.', '/')}.py"


def changed_modules(base: str) -> list[str]:
    """The pure modules whose file differs between ``base`` and the work tree."""
    done = subprocess.run(
        ["git", "diff", "--name-only", base, "--", "entrypoint/ospool_ep"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"mutate: cannot compare with {base!r}: {done.stderr.strip()}", file=sys.stderr)
        return []
    package = Path("entrypoint") / PACKAGE
    changed = {
        ".".join(Path(line).relative_to(package).with_suffix("").parts)
        for line in done.stdout.split()
    }
    return [m for m in MODULES if m in changed]


def patterns(modules: list[str]) -> list[str]:
    result = []
    for module in modules:
        if module == "pilot.render":
            result += [f"{PACKAGE}.pilot.render.x_{name}__mutmut_*" for name in RENDER_FUNCTIONS]
        else:
            result.append(f"{PACKAGE}.{module}.*")
    return result


def run_mutmut(modules: list[str], *, budget: float | None, children: int) -> bool:
    """Run mutmut on ``modules``; False if the budget ran out first."""
    mutmut = Path(sys.executable).parent / "mutmut"
    command = [str(mutmut), "run", "--max-children", str(children), *patterns(modules)]
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("PYTHONPATH", None)
    started = time.monotonic()
    with (STAGE / "mutmut-run.log").open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=STAGE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            print(f"mutate: stopped after the {budget:.0f} s budget; unchecked mutants are shown")
            return False
    print(f"mutate: mutmut ran {time.monotonic() - started:.0f} s (log: {STAGE}/mutmut-run.log)")
    if process.returncode != 0:
        print(f"mutate: mutmut exited {process.returncode}; see the log", file=sys.stderr)
        return False
    return True


@dataclass
class Score:
    module: str
    statuses: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def killed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in KILLED)

    @property
    def unchecked(self) -> int:
        return self.statuses["not checked"]

    @property
    def score(self) -> float | None:
        judged = self.total - len(self.equivalent)
        return None if judged <= 0 else 100.0 * self.killed / judged


def load_equivalents() -> set[tuple[str, str]]:
    """(function, mutated line) pairs accepted as equivalent; ``#`` starts a reason."""
    accepted = set()
    for raw in EQUIVALENTS.read_text().splitlines():
        if raw.startswith("#") or not raw.strip():
            continue
        key, _, _reason = raw.partition("  # ")
        function, _, line = key.partition(" | ")
        accepted.add((function.strip(), line.strip()))
    return accepted


def mutated_line(name: str, path: str) -> str:
    """The mutant's own line(s) (``+`` side of its diff), stripped and joined by ``; ``."""
    diff = get_diff_for_mutant(name, path=path)
    added = [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return "; ".join(added)


def function_of(name: str) -> str:
    """``ospool_ep.inputs.tokens.x__duration__mutmut_3`` -> ``inputs.tokens._duration``."""
    module, _, mangled = name.partition("__mutmut_")[0].rpartition(".")
    function = mangled.removeprefix("x_").replace("xǁ", "").replace("ǁ", ".")
    return f"{module.removeprefix(PACKAGE + '.')}.{function}"


def scores(modules: list[str]) -> list[Score]:
    accepted = load_equivalents()
    result = []
    os.chdir(STAGE)
    for module in modules:
        score = Score(module)
        path = source_path(module)
        meta = STAGE / "mutants" / f"{path}.meta"
        if meta.exists():
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            for name, code in sorted(codes.items()):
                function = function_of(name)
                if module == "pilot.render" and function.partition(".")[2] not in RENDER_FUNCTIONS:
                    continue
                status = status_by_exit_code[code]
                score.statuses[status] += 1
                if status in KILLED or status == "not checked":
                    continue
                line = mutated_line(name, path)
                if (function, line) in accepted:
                    score.equivalent.append(name)
                else:
                    score.survivors.append(f"{name} [{status}]  {function} | {line}")
        result.append(score)
    return result


def report(results: list[Score]) -> None:
    print(f"{'module':14} {'mutants':>7} {'killed':>6} {'equiv':>5} {'left':>5} {'score':>7}")
    for s in results:
        shown = "   n/a" if s.score is None else f"{s.score:6.1f}%"
        note = f"  ({s.unchecked} not checked)" if s.unchecked else ""
        if s.total == 0:
            note = "  (no functions to mutate: pinned by value in its own tests)"
        print(
            f"{s.module:14} {s.total:7} {s.killed:6} {len(s.equivalent):5} "
            f"{len(s.survivors):5} {shown}{note}"
        )
    survivors = [line for s in results for line in s.survivors]
    if survivors:
        print("\nsurviving mutants (scripts/mutate.py shows them: .venv/bin/mutmut show NAME,")
        print(f"run in {STAGE}):")
        for line in survivors:
            print("  " + line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--changed-since", metavar="REF", help="only modules changed since REF")
    parser.add_argument("--budget", type=float, help="stop mutmut after this many seconds")
    parser.add_argument("--fail-under", type=float, help="exit 1 if a checked module scores less")
    parser.add_argument("--report", action="store_true", help="summarise the last run only")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"not a pure module: {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    modules = list(args.modules) or list(MODULES)
    if args.changed_since:
        modules = [m for m in changed_modules(args.changed_since) if m in modules]
        if not modules:
            print(f"mutate: no pure module changed since {args.changed_since}; nothing to mutate")
            return 0
    print("mutate: modules " + ", ".join(modules))
    prepare_stage()
    complete = True
    if not args.report:
        complete = run_mutmut(modules, budget=args.budget, children=args.max_children)
    results = scores(modules)
    report(results)
    if args.fail_under is not None:
        low = [
            s.module
            for s in results
            if s.score is not None and s.unchecked == 0 and s.score < args.fail_under
        ]
        if low:
            print(f"mutate: below {args.fail_under:.0f}%: {', '.join(low)}")
            return 1
    return 0 if complete or args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
